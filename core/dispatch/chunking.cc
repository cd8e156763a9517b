#include "core/dispatch/chunking.h"

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace engram::dispatch {
namespace {

constexpr absl::string_view kChunkPayload = "type.engram.dev/chunk-index";
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

uint64_t SatMul(uint64_t a, uint64_t b) {
  if (a != 0 && b > kMax / a) return kMax;
  return a * b;
}

uint64_t SatAdd(uint64_t a, uint64_t b) { return b > kMax - a ? kMax : a + b; }

}  // namespace

uint64_t JobFootprint::BytesFor(uint64_t chunk_items) const {
  return SatAdd(fixed_bytes, SatMul(per_item_bytes, chunk_items));
}

JobFootprint CosineFootprint(uint64_t queries, uint64_t targets, uint64_t dim,
                             uint32_t top_k, bool targets_resident) {
  constexpr uint64_t kFloat = sizeof(float);
  constexpr uint64_t kScored = sizeof(uint32_t) + sizeof(float);
  JobFootprint f;
  f.items = queries;
  f.splittable = true;
  f.fixed_bytes = targets_resident
                      ? 0
                      : SatMul(SatAdd(SatMul(targets, dim), targets), kFloat);
  uint64_t per_query = SatMul(dim + 1, kFloat);  // the row and its norm
  per_query = SatAdd(per_query, SatMul(targets, kFloat));  // a score row
  if (top_k > 0) per_query = SatAdd(per_query, SatMul(top_k, kScored));
  f.per_item_bytes = per_query;
  return f;
}

JobFootprint CosineFootprint(const CosineJob& job, bool targets_resident) {
  if (job.mask.all()) {
    return CosineFootprint(job.queries.rows, job.targets.rows, job.queries.cols,
                           job.top_k, targets_resident);
  }
  const uint64_t admitted = job.scored_targets();
  JobFootprint f = CosineFootprint(job.queries.rows, admitted, job.queries.cols,
                                   job.top_k, targets_resident);
  f.fixed_bytes =
      SatAdd(f.fixed_bytes, RowMaskFootprintBytes(job.targets.rows, admitted));
  return f;
}

uint64_t RowMaskFootprintBytes(uint64_t targets, uint64_t admitted) {
  const uint64_t words = targets / 64 + 1;
  return SatAdd(SatMul(words, sizeof(uint64_t) + sizeof(uint32_t)),
                SatMul(admitted, sizeof(uint32_t)));
}

uint64_t ResidentFootprintBytes(uint64_t rows, uint64_t dim) {
  uint64_t bytes = SatMul(SatMul(rows, dim), sizeof(float));
  bytes = SatAdd(bytes, SatMul(rows, sizeof(double)));
  return SatAdd(bytes, SatMul(SatAdd(rows, 1), sizeof(uint32_t)));
}

JobFootprint SpreadFootprint(const SpreadJob& job) {
  const uint64_t nodes = job.num_nodes();
  const uint64_t edges = job.num_edges();
  uint64_t bytes = SatMul(nodes + 1, sizeof(uint32_t));  // offsets
  bytes =
      SatAdd(bytes, SatMul(edges, sizeof(uint32_t) + sizeof(float)));  // edges
  bytes = SatAdd(bytes, SatMul(job.seeds.size(), sizeof(kernels::SpreadSeed)));
  bytes = SatAdd(bytes, SatMul(nodes, 3 * sizeof(float) + sizeof(uint32_t)));
  JobFootprint f;
  f.items = 1;
  f.splittable = false;
  f.fixed_bytes = bytes;
  f.per_item_bytes = 0;
  return f;
}

uint64_t ItemsThatFit(const JobFootprint& footprint, uint64_t budget_bytes) {
  if (footprint.items == 0) return 0;
  if (!footprint.splittable) {
    return footprint.TotalBytes() <= budget_bytes ? footprint.items : 0;
  }
  if (footprint.fixed_bytes >= budget_bytes) return 0;
  const uint64_t room = budget_bytes - footprint.fixed_bytes;
  if (footprint.per_item_bytes == 0) return footprint.items;
  return std::min(footprint.items, room / footprint.per_item_bytes);
}

std::optional<size_t> FailedChunkIndex(const absl::Status& status) {
  const auto payload = status.GetPayload(kChunkPayload);
  if (!payload.has_value()) return std::nullopt;
  size_t index = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &index)) return std::nullopt;
  return index;
}

absl::Status ChunkError(const ChunkFailure& failure) {
  absl::Status status(
      failure.error.code(),
      absl::StrCat("chunk ", failure.chunk_index, " (items [", failure.begin,
                   ", ", failure.end, ")): ", failure.error.message()));
  failure.error.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& value) {
        status.SetPayload(url, value);
      });
  status.SetPayload(kChunkPayload,
                    absl::Cord(absl::StrCat(failure.chunk_index)));
  return status;
}

absl::Status RunChunks(
    size_t total, size_t chunk_size,
    absl::FunctionRef<absl::Status(size_t, size_t, size_t)> fn,
    ChunkFailure* failure) {
  if (total == 0) return absl::OkStatus();
  if (chunk_size == 0) {
    return absl::InvalidArgumentError("chunk size must be at least 1");
  }
  size_t index = 0;
  for (size_t begin = 0, end = 0; begin < total; begin = end, ++index) {
    end = begin + std::min(chunk_size, total - begin);
    absl::Status status = fn(index, begin, end);
    if (!status.ok()) {
      ChunkFailure f{index, begin, end, std::move(status)};
      absl::Status wrapped = ChunkError(f);
      if (failure != nullptr) *failure = std::move(f);
      return wrapped;
    }
  }
  return absl::OkStatus();
}

}  // namespace engram::dispatch
