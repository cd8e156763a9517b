// Filtered search and tombstones over a resident collection, on the CPU
// path a search pass takes (SearchSegments over the masked kernels), each
// against the unfiltered pass over the same collection in the same run:
//
//   BM_Unfiltered                 the whole collection (the baseline)
//   BM_Filtered/P                 a tag predicate selecting P% of the rows
//                                 (rows tagged at random), the selection
//                                 evaluated in every iteration as a
//                                 search's is
//   BM_Tombstoned                 10% of the rows deleted (masked out)
//   BM_Compacted                  the same live rows compacted
//
// Args: Q, then P for BM_Filtered, then threads (1: the calling thread
// alone, 0: every hardware thread).
//
// Counters: ns_per_row is the time per row scored (the rows the filter or
// the tombstones leave), the figure the unfiltered pass is compared with.
// ENGRAM_BENCH_ROWS sets the collection's rows (default 1 Mi, 768 wide:
// 3 GiB; the tombstoned and compacted collections double that).
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/resident_bench_util.h"
#include "benchmark/benchmark.h"
#include "core/collections/collection_store.h"
#include "core/collections/row_filter.h"
#include "core/collections/search_batcher.h"
#include "kernels/thread_pool.h"

namespace engram::collections::bench {
namespace {

constexpr uint32_t kTopK = 10;

uint64_t BenchRows() {
  const char* rows = std::getenv("ENGRAM_BENCH_ROWS");
  return rows == nullptr ? uint64_t{1} << 20 : std::strtoull(rows, nullptr, 10);
}

struct Fixture {
  std::unique_ptr<CollectionStore> store;
  std::shared_ptr<const Collection> labelled;    // "bucket" tags
  std::shared_ptr<const Collection> tombstoned;  // 10% deleted
  std::shared_ptr<const Collection> compacted;
  std::unique_ptr<kernels::ThreadPool> pool;
  std::vector<float> queries;
};

Fixture& Data() {
  static Fixture* fixture = [] {
    auto* f = new Fixture();
    CollectionStore::Options options;
    options.budget = BigBudget();
    options.compact_in_background = false;
    f->store = *CollectionStore::Create(options);
    const uint64_t rows = BenchRows();
    const std::vector<float> values = Rows(rows);
    std::vector<uint64_t> ids(rows);
    std::vector<RowLabels> labels(rows);
    std::mt19937_64 rng(7);
    for (uint64_t i = 0; i < rows; ++i) {
      ids[i] = i;
      labels[i].tags.push_back(
          {"bucket", TagValue::Integer(static_cast<int64_t>(rng() % 100))});
    }
    for (const char* name : {"labelled", "tombstoned"}) {
      UploadOptions o;
      o.name = name;
      o.create = true;
      o.dimension = kDimension;
      o.rows = rows;
      o.with_ids = true;
      auto upload = *f->store->BeginUpload(o);
      const uint64_t step = kStepBytes / (kDimension * sizeof(float));
      for (uint64_t r = 0; r < rows; r += step) {
        const uint64_t n = std::min(step, rows - r);
        absl::Status s = upload->Append(
            kernels::MatrixView{values.data() + r * kDimension,
                                static_cast<size_t>(n), kDimension},
            absl::MakeConstSpan(ids.data() + r, n),
            std::string(name) == "labelled"
                ? absl::MakeConstSpan(labels.data() + r, n)
                : absl::Span<const RowLabels>());
        if (!s.ok()) std::abort();
      }
      if (!upload->Commit().ok()) std::abort();
    }
    f->labelled = *f->store->Get("labelled");
    std::vector<uint64_t> doomed;
    for (uint64_t i = 0; i < rows; ++i) {
      if (rng() % 10 == 0) doomed.push_back(i);
    }
    f->tombstoned =
        f->store->DeleteRows("tombstoned", doomed, "", 0)->collection;
    // Compact a copy: the tombstoned version stays as it is.
    f->compacted = *f->store->Compact("tombstoned");
    f->pool = std::make_unique<kernels::ThreadPool>(0);
    f->queries = Rows(64, 99);
    return f;
  }();
  return *fixture;
}

void Search(benchmark::State& state, const Collection& collection,
            const RowFilter* filter, bool evaluate_each_time,
            size_t threads_arg = 1) {
  Fixture& f = Data();
  const uint32_t q = static_cast<uint32_t>(state.range(0));
  const bool one_thread = state.range(threads_arg) == 1;
  BatchExecutor execute =
      MakeKernelExecutor(one_thread ? nullptr : f.pool.get());
  std::shared_ptr<const RowSelection> rows = SelectRows(collection, filter);
  const uint64_t scored = rows == nullptr ? collection.rows() : rows->passed;
  for (auto _ : state) {
    if (evaluate_each_time) rows = SelectRows(collection, filter);
    BatchPass pass;
    pass.collection = &collection;
    pass.queries = kernels::MatrixView{f.queries.data(), q, kDimension};
    pass.top_k = kTopK;
    if (rows != nullptr) pass.mask = rows->mask();
    BatchPassOutput out;
    if (!execute(pass, &out).ok()) state.SkipWithError("search failed");
    benchmark::DoNotOptimize(out.top.data());
  }
  state.counters["rows_scored"] = static_cast<double>(scored);
  state.counters["ns_per_row"] =
      benchmark::Counter(static_cast<double>(scored) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate |
                             benchmark::Counter::kInvert);
}

void BM_Unfiltered(benchmark::State& state) {
  Search(state, *Data().labelled, nullptr, false);
}

void BM_Filtered(benchmark::State& state) {
  const int percent = static_cast<int>(state.range(1));
  RowFilter filter;
  Predicate where;
  where.kind = Predicate::Kind::kTag;
  where.key = "bucket";
  for (int b = 0; b < percent; ++b)
    where.values.push_back(TagValue::Integer(b));
  filter.where = where;
  Search(state, *Data().labelled, &filter, true, 2);
}

void BM_Tombstoned(benchmark::State& state) {
  Search(state, *Data().tombstoned, nullptr, false);
}

void BM_Compacted(benchmark::State& state) {
  Search(state, *Data().compacted, nullptr, false);
}

// Q = 1 takes the row kernel, Q = 16 and 64 the panel kernel.
BENCHMARK(BM_Unfiltered)
    ->ArgsProduct({{1, 16, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Filtered)
    ->ArgsProduct({{1, 16, 64}, {1, 10, 50}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Tombstoned)
    ->ArgsProduct({{1, 16, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Compacted)
    ->ArgsProduct({{1, 16, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace engram::collections::bench

BENCHMARK_MAIN();
