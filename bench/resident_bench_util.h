// What the resident-data benchmarks share: a budget that never refuses,
// graph options that accept any graph, rows that pass the stores' checks,
// and an upload staged in 4 MiB steps and committed.
#ifndef ENGRAM_BENCH_RESIDENT_BENCH_UTIL_H_
#define ENGRAM_BENCH_RESIDENT_BENCH_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"

namespace engram::collections::bench {

inline constexpr uint32_t kDimension = 768;
inline constexpr size_t kStepBytes = size_t{4} << 20;

inline std::shared_ptr<MemoryBudget> BigBudget() {
  MemoryBudget::Options options;
  options.limit_bytes = uint64_t{64} << 30;
  return *MemoryBudget::Create(options);
}

inline GraphStore::Options GraphOptions(std::shared_ptr<MemoryBudget> budget) {
  GraphStore::Options options;
  options.budget = std::move(budget);
  options.validate = [](const kernels::GraphView&) { return absl::OkStatus(); };
  return options;
}

// Values that pass the stores' checks, cheap to make; `seed` varies them.
inline std::vector<float> Rows(uint64_t rows, uint32_t seed = 12345) {
  std::vector<float> values(rows * kDimension);
  uint32_t state = seed;
  for (float& v : values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) * (1.0f / 16777216.0f) - 0.5f;
  }
  return values;
}

// Stages `values` as one upload to `store` (creating collection `name`, or
// appending to it) and commits it.
inline absl::StatusOr<std::shared_ptr<const Collection>> UploadAndCommit(
    CollectionStore& store, const std::string& name,
    const std::vector<float>& values, bool create = true) {
  UploadOptions o;
  o.name = name;
  o.create = create;
  o.dimension = kDimension;
  o.rows = values.size() / kDimension;
  auto upload = store.BeginUpload(o);
  if (!upload.ok()) return upload.status();
  const uint64_t step = kStepBytes / (kDimension * sizeof(float));
  for (uint64_t r = 0; r < o.rows; r += step) {
    const uint64_t n = std::min(step, o.rows - r);
    absl::Status appended = (*upload)->Append(kernels::MatrixView{
        values.data() + r * kDimension, static_cast<size_t>(n), kDimension});
    if (!appended.ok()) return appended;
  }
  return (*upload)->Commit();
}

}  // namespace engram::collections::bench

#endif  // ENGRAM_BENCH_RESIDENT_BENCH_UTIL_H_
