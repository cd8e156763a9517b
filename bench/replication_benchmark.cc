// Shared mode's replication lag (core/collections/data_dir.h): from a commit
// acknowledged at replica A until the version is searchable at replica B.
// Both replicas live in this process, each with its own stores, DataDir and
// EtcdCatalog over one data directory and one real etcd at
// $ENGRAM_BENCH_ETCD (host:port; scripts/bench-replication.sh starts one on
// loopback), so the lag is etcd's watch plus B's load, without gRPC serving:
//   BM_SmallAppendLag  100 appends of 16 rows x 768 at A, one after the
//                      other: p50, p99 and max of the lag (B polls nothing:
//                      GetAtLeast wakes when the version is published);
//   BM_LargeLag        one upload of $ENGRAM_BENCH_ROWS rows x 768 (default
//                      2^16, 192 MiB; 2^19 is 1.5 GiB) at A: the lag, B's
//                      own timing of applying it (apply_s), and against them
//                      a fresh replica's start-up load of the same version
//                      (load_s), the baseline in the same run.
// The data directory is $ENGRAM_BENCH_DIR (default /tmp)/engram_replication.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "bench/resident_bench_util.h"
#include "benchmark/benchmark.h"
#include "core/collections/data_dir.h"
#include "server/catalog/etcd_catalog.h"

namespace engram::collections {
namespace {

using bench::BigBudget;
using bench::GraphOptions;
using bench::kDimension;
using bench::Rows;
using bench::UploadAndCommit;

std::string Folder() {
  const char* root = std::getenv("ENGRAM_BENCH_DIR");
  return absl::StrCat(root != nullptr ? root : "/tmp", "/engram_replication");
}

// One replica: stores over the shared folder, following the catalog.
struct Replica {
  absl::Status Start(const std::string& prefix) {
    const char* etcd = std::getenv("ENGRAM_BENCH_ETCD");
    if (etcd == nullptr) {
      return absl::FailedPreconditionError(
          "set ENGRAM_BENCH_ETCD=host:port (scripts/bench-replication.sh)");
    }
    server::catalog::EtcdCatalog::Options catalog;
    catalog.endpoints = {etcd};
    catalog.prefix = prefix;
    DataDir::Options options;
    options.path = Folder();
    ENGRAM_ASSIGN_OR_RETURN(options.catalog,
                            server::catalog::EtcdCatalog::Create(catalog));
    options.on_catalog_change = [this](const LoadOutcome& outcome) {
      last_apply_s.store(outcome.seconds);
    };
    ENGRAM_ASSIGN_OR_RETURN(dir, DataDir::Open(options));
    auto budget = BigBudget();
    CollectionStore::Options store;
    store.budget = budget;
    store.journal = dir.get();
    ENGRAM_ASSIGN_OR_RETURN(collections, CollectionStore::Create(store));
    GraphStore::Options graph = GraphOptions(budget);
    graph.journal = dir->graph_journal();
    ENGRAM_ASSIGN_OR_RETURN(graphs, GraphStore::Create(graph));
    ENGRAM_ASSIGN_OR_RETURN(loaded, dir->Load(collections.get(), graphs.get()));
    return dir->Follow();
  }
  ~Replica() {
    if (dir != nullptr) dir->StopFollowing();
  }

  std::unique_ptr<DataDir> dir;
  std::unique_ptr<CollectionStore> collections;
  std::unique_ptr<GraphStore> graphs;
  std::vector<LoadOutcome> loaded;
  // How long the last change from the catalog took to apply (the load of
  // its new segments), as the data directory timed it.
  std::atomic<double> last_apply_s{0};
};

// A prefix of its own per run, so that runs never see each other's data.
std::string FreshPrefix() {
  return absl::StrCat("bench-", absl::ToUnixNanos(absl::Now()));
}

// A fresh data directory and catalog prefix, and replicas A and B started
// on them; false (the benchmark skipped with the reason) when one fails.
bool StartPair(benchmark::State& state, const std::string& prefix, Replica* a,
               Replica* b) {
  std::system(absl::StrCat("rm -rf '", Folder(), "'").c_str());
  for (Replica* r : {a, b}) {
    if (absl::Status s = r->Start(prefix); !s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return false;
    }
  }
  return true;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const size_t i =
      std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[i];
}

void BM_SmallAppendLag(benchmark::State& state) {
  constexpr int kAppends = 100;
  for (auto _ : state) {
    Replica a, b;
    if (!StartPair(state, FreshPrefix(), &a, &b)) return;
    if (!a.collections->CreateCollection({"docs", kDimension, {}}).ok()) {
      state.SkipWithError("create failed");
      return;
    }
    std::vector<double> lag_ms;
    std::vector<double> commit_ms;
    for (int i = 0; i < kAppends; ++i) {
      const std::vector<float> rows = Rows(16, 1000 + i);
      const absl::Time begin = absl::Now();
      auto committed = UploadAndCommit(*a.collections, "docs", rows, false);
      const absl::Time acknowledged = absl::Now();
      if (!committed.ok()) {
        state.SkipWithError(std::string(committed.status().message()).c_str());
        return;
      }
      auto seen = b.collections->GetAtLeast("docs", (*committed)->version(),
                                            absl::Seconds(30));
      const absl::Time searchable = absl::Now();
      if (!seen.ok()) {
        state.SkipWithError(std::string(seen.status().message()).c_str());
        return;
      }
      commit_ms.push_back(absl::ToDoubleMilliseconds(acknowledged - begin));
      lag_ms.push_back(absl::ToDoubleMilliseconds(searchable - acknowledged));
    }
    state.counters["lag_p50_ms"] = Percentile(lag_ms, 0.50);
    state.counters["lag_p99_ms"] = Percentile(lag_ms, 0.99);
    state.counters["lag_max_ms"] = Percentile(lag_ms, 1.0);
    state.counters["commit_p50_ms"] = Percentile(commit_ms, 0.50);
  }
}

void BM_LargeLag(benchmark::State& state) {
  const uint64_t rows = static_cast<uint64_t>(state.range(0));
  const std::vector<float> values = Rows(rows);
  for (auto _ : state) {
    const std::string prefix = FreshPrefix();
    double lag_s = 0;
    double apply_s = 0;
    {
      Replica a, b;
      if (!StartPair(state, prefix, &a, &b)) return;
      auto committed = UploadAndCommit(*a.collections, "big", values);
      const absl::Time acknowledged = absl::Now();
      if (!committed.ok()) {
        state.SkipWithError(std::string(committed.status().message()).c_str());
        return;
      }
      auto seen = b.collections->GetAtLeast("big", (*committed)->version(),
                                            absl::Minutes(10));
      lag_s = absl::ToDoubleSeconds(absl::Now() - acknowledged);
      if (!seen.ok()) {
        state.SkipWithError(std::string(seen.status().message()).c_str());
        return;
      }
      // B reports the apply after publishing the version: wait for it.
      const absl::Time give_up = absl::Now() + absl::Seconds(10);
      while (b.last_apply_s.load() == 0 && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      apply_s = b.last_apply_s.load();
    }
    // The baseline: a replica starting now loads the same version.
    const absl::Time start = absl::Now();
    Replica c;
    if (absl::Status s = c.Start(prefix);
        !s.ok() || c.loaded.size() != 1 || !c.loaded[0].status.ok()) {
      state.SkipWithError("the fresh replica did not load the collection");
      return;
    }
    const double load_s = absl::ToDoubleSeconds(absl::Now() - start);
    state.counters["lag_s"] = lag_s;
    // B's own timing of the apply: the part of the lag spent loading (it
    // may start before A's commit returns, so it can exceed the lag).
    state.counters["apply_s"] = apply_s;
    state.counters["load_s"] = load_s;
    state.counters["lag_over_load"] = lag_s / load_s;
    state.counters["bytes"] = static_cast<double>(rows * kDimension * 4);
  }
}

}  // namespace
}  // namespace engram::collections

int main(int argc, char** argv) {
  const char* env = std::getenv("ENGRAM_BENCH_ROWS");
  const int64_t rows = env != nullptr ? std::atoll(env) : int64_t{1} << 16;
  benchmark::RegisterBenchmark("BM_SmallAppendLag",
                               engram::collections::BM_SmallAppendLag)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_LargeLag", engram::collections::BM_LargeLag)
      ->ArgNames({"rows"})
      ->Arg(rows)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
