// Spreading over a resident graph while it is updated one edge at a time:
// what UpdateGraph costs the spreads that share the graph.
//
// BM_SpreadWhileUpdating puts an R-MAT graph (bench/bench_data.h, average
// out-degree 16) into a GraphStore as the server does (background merges
// on, the default merge thresholds), then times spreads over it, each on
// the version current when it starts (GraphStore::Get, then the CPU kernel,
// through the graph's overlay when it has updates not yet merged), with the
// service's typical request: five seeds, the API's defaults. Meanwhile an
// updater thread applies single-edge updates open loop at
// `updates_per_second` (0: none, the baseline), cycling through an edge
// added, an edge removed (one the graph holds) and an edge re-weighted, each
// on a uniformly random source, so that every page of the overlay is
// touched over time. The spreads run on the calling thread alone; the
// updater and the merge thread share what is left of the machine.
//
// Counters: spreads/s (the benchmark's rate), updates/s actually applied,
// update_us (mean time one update took, from the call to its publication),
// late (updates the updater fell behind its schedule by at the end), merges
// (background merges published during the run).
//
// Args: scale (2^scale nodes), weights (0 uniform, 1 fan-normalised),
// updates_per_second.
//
// BM_SingleEdgeUpdate times one single-edge update alone (an add, then a
// remove of it), with no merge (the overlay grows over the run as it would
// between merges); BM_Merge times the rebuild of a graph's CSR after
// `updates` single-edge updates, what the merge thread does off the spreads'
// path. BM_DurableSingleEdgeUpdate is BM_SingleEdgeUpdate with a data
// directory: what the fsync of the edit log adds.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_data.h"
#include "benchmark/benchmark.h"
#include "core/collections/data_dir.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"
#include "kernels/cpu/spread.h"
#include "kernels/graph_overlay.h"

namespace engram::bench {
namespace {

constexpr int kAvgDegree = 16;
constexpr uint64_t kGraphSeed = 3;

const CsrGraph& Graph(int scale, RmatWeights weights) {
  static auto* graphs = new std::map<std::pair<int, RmatWeights>, CsrGraph>;
  auto it = graphs->find({scale, weights});
  if (it == graphs->end()) {
    it = graphs
             ->emplace(std::make_pair(scale, weights),
                       RmatGraph(scale, kAvgDegree, kGraphSeed, weights))
             .first;
  }
  return it->second;
}

std::unique_ptr<collections::GraphStore> MakeStore(
    bool background_merge = true) {
  collections::MemoryBudget::Options budget;
  budget.limit_bytes = uint64_t{16} << 30;
  collections::GraphStore::Options options;
  options.budget = *collections::MemoryBudget::Create(budget);
  // The graph was generated well-formed; the store's checks on a put are
  // the request path's, timed elsewhere.
  options.validate = [](const kernels::GraphView&) { return absl::OkStatus(); };
  options.background_merge = background_merge;
  return *collections::GraphStore::Create(options);
}

// Applies single-edge updates to graph "g" of `store` at `rate` per second
// until stopped, on its own thread.
class Updater {
 public:
  Updater(collections::GraphStore* store, double rate)
      : store_(store), rate_(rate) {
    if (rate_ > 0) thread_ = std::thread([this] { Run(); });
  }
  ~Updater() { Stop(); }

  void Stop() {
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t applied() const { return applied_; }
  uint64_t late() const { return late_; }
  double seconds_updating() const { return seconds_updating_; }
  double seconds_running() const { return seconds_running_; }

 private:
  void Run() {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<float> weight(0.05f, 1.0f);
    const absl::Time start = absl::Now();
    const absl::Duration period = absl::Seconds(1.0 / rate_);
    uint64_t scheduled = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      const absl::Time due = start + period * static_cast<double>(scheduled);
      const absl::Time now = absl::Now();
      if (now < due) {
        absl::SleepFor(std::min(due - now, absl::Milliseconds(1)));
        continue;
      }
      ++scheduled;
      const std::shared_ptr<const collections::Graph> g = *store_->Get("g");
      std::uniform_int_distribution<uint32_t> node(0, g->num_nodes() - 1);
      const uint32_t u = node(rng);
      kernels::NodeEdges edges{g->base().targets.data(),
                               g->base().weights.data(), 0, 0};
      if (g->overlay() != nullptr) {
        edges = kernels::EdgesOf(g->base(), *g->overlay(), u);
      } else {
        edges.begin = g->base().row_offsets[u];
        edges.end = g->base().row_offsets[u + 1];
      }
      collections::GraphEdit edit;
      const int kind = static_cast<int>(scheduled % 3);
      if (kind == 0 || edges.begin == edges.end) {
        edit.add_edges = {{u, node(rng), weight(rng)}};
      } else {
        const uint32_t held =
            edges.targets[edges.begin + rng() % (edges.end - edges.begin)];
        if (kind == 1) {
          edit.remove_edges = {{u, held}};
        } else {
          edit.set_weights = {{u, held, weight(rng)}};
        }
      }
      const absl::Time before = absl::Now();
      if (!store_->Update("g", edit, {}).ok()) continue;
      seconds_updating_ += absl::ToDoubleSeconds(absl::Now() - before);
      ++applied_;
    }
    seconds_running_ = absl::ToDoubleSeconds(absl::Now() - start);
    const uint64_t due_by_now = static_cast<uint64_t>(seconds_running_ * rate_);
    late_ = due_by_now > scheduled ? due_by_now - scheduled : 0;
  }

  collections::GraphStore* const store_;
  const double rate_;
  std::atomic<bool> stop_{false};
  // Written by the updater thread, read after Stop() joined it.
  uint64_t applied_ = 0;
  uint64_t late_ = 0;
  double seconds_updating_ = 0;
  double seconds_running_ = 0;
  std::thread thread_;
};

void BM_SpreadWhileUpdating(benchmark::State& state) {
  const CsrGraph& graph = Graph(static_cast<int>(state.range(0)),
                                static_cast<RmatWeights>(state.range(1)));
  const double rate = static_cast<double>(state.range(2));
  auto store = MakeStore();
  if (!store->Put("g", graph.view()).ok()) {
    state.SkipWithError("the graph does not fit the store");
    return;
  }
  const uint32_t n = graph.num_nodes;
  std::vector<kernels::SpreadSeed> seeds;
  for (uint32_t i = 0; i < 5; ++i) seeds.push_back({n / 5 * i + 7, 1.0f});
  const kernels::SpreadParams params;
  kernels::SpreadResult result;
  Updater updater(store.get(), rate);
  uint64_t edges = 0;
  for (auto _ : state) {
    const std::shared_ptr<const collections::Graph> g = *store->Get("g");
    const absl::Status status =
        g->overlay() != nullptr
            ? kernels::cpu::Spread(g->base(), *g->overlay(), seeds, params,
                                   nullptr, &result)
            : kernels::cpu::Spread(g->base(), seeds, params, nullptr, &result);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    edges += result.edges_traversed;
    benchmark::DoNotOptimize(result.activation.data());
  }
  updater.Stop();
  state.counters["edges/spread"] =
      static_cast<double>(edges) / static_cast<double>(state.iterations());
  state.counters["spreads/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  if (rate > 0) {
    state.counters["updates/s"] =
        static_cast<double>(updater.applied()) / updater.seconds_running();
    state.counters["update_us"] = 1e6 * updater.seconds_updating() /
                                  std::max<uint64_t>(1, updater.applied());
    state.counters["late"] = static_cast<double>(updater.late());
  }
  state.counters["merges"] = static_cast<double>(store->merges_completed());
}
BENCHMARK(BM_SpreadWhileUpdating)
    ->ArgNames({"scale", "weights", "updates_per_second"})
    ->ArgsProduct({{20},
                   {static_cast<int>(RmatWeights::kUniform),
                    static_cast<int>(RmatWeights::kFanNormalized)},
                   {0, 1000}})
    ->MinTime(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Args: scale.
void BM_SingleEdgeUpdate(benchmark::State& state) {
  const CsrGraph& graph =
      Graph(static_cast<int>(state.range(0)), RmatWeights::kUniform);
  auto store = MakeStore(/*background_merge=*/false);
  if (!store->Put("g", graph.view()).ok()) {
    state.SkipWithError("the graph does not fit the store");
    return;
  }
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<uint32_t> node(0, graph.num_nodes - 1);
  uint64_t i = 0;
  for (auto _ : state) {
    const uint32_t u = node(rng);
    collections::GraphEdit edit;
    if (i++ % 2 == 0) {
      edit.add_edges = {{u, u, 0.5f}};
    } else {
      edit.remove_edges = {{u, u}};
    }
    if (!store->Update("g", edit, {}).ok()) {
      state.SkipWithError("update failed");
    }
  }
  state.counters["updates/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SingleEdgeUpdate)
    ->ArgNames({"scale"})
    ->Arg(20)
    ->Iterations(4096)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// BM_SingleEdgeUpdate with a data directory (under $TMPDIR, or /tmp): each
// update appended to the graph's edit log and fsynced before it returns.
// Args: scale.
void BM_DurableSingleEdgeUpdate(benchmark::State& state) {
  const CsrGraph& graph =
      Graph(static_cast<int>(state.range(0)), RmatWeights::kUniform);
  const char* tmp = std::getenv("TMPDIR");
  const std::string path =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/graph_update_bench_",
                   static_cast<int64_t>(::getpid()));
  std::filesystem::remove_all(path);
  auto dir = collections::DataDir::Open(path);
  if (!dir.ok()) {
    state.SkipWithError(dir.status().ToString().c_str());
    return;
  }
  collections::MemoryBudget::Options budget;
  budget.limit_bytes = uint64_t{16} << 30;
  collections::GraphStore::Options options;
  options.budget = *collections::MemoryBudget::Create(budget);
  options.validate = [](const kernels::GraphView&) { return absl::OkStatus(); };
  options.background_merge = false;
  options.journal = (*dir)->graph_journal();
  auto store = *collections::GraphStore::Create(options);
  if (!store->Put("g", graph.view()).ok()) {
    state.SkipWithError("the graph does not fit the store");
    return;
  }
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint32_t> node(0, graph.num_nodes - 1);
  uint64_t i = 0;
  for (auto _ : state) {
    const uint32_t u = node(rng);
    collections::GraphEdit edit;
    if (i++ % 2 == 0) {
      edit.add_edges = {{u, u, 0.5f}};
    } else {
      edit.remove_edges = {{u, u}};
    }
    if (!store->Update("g", edit, {}).ok()) {
      state.SkipWithError("update failed");
    }
  }
  state.counters["updates/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  store.reset();
  dir->reset();
  std::filesystem::remove_all(path);
}
BENCHMARK(BM_DurableSingleEdgeUpdate)
    ->ArgNames({"scale"})
    ->Arg(20)
    ->Iterations(2000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Args: scale, updates.
void BM_Merge(benchmark::State& state) {
  const CsrGraph& graph =
      Graph(static_cast<int>(state.range(0)), RmatWeights::kUniform);
  auto store = MakeStore(/*background_merge=*/false);
  if (!store->Put("g", graph.view()).ok()) {
    state.SkipWithError("the graph does not fit the store");
    return;
  }
  std::mt19937_64 rng(6);
  std::uniform_int_distribution<uint32_t> node(0, graph.num_nodes - 1);
  for (auto _ : state) {
    state.PauseTiming();
    for (int64_t i = 0; i < state.range(1); ++i) {
      collections::GraphEdit edit;
      edit.add_edges = {{node(rng), node(rng), 0.5f}};
      if (!store->Update("g", edit, {}).ok()) {
        state.SkipWithError("update failed");
      }
    }
    state.ResumeTiming();
    const absl::StatusOr<bool> merged = store->Merge("g");
    if (!merged.ok() || !*merged) state.SkipWithError("merge failed");
  }
  state.counters["graph_edges"] = static_cast<double>(graph.targets.size());
}
BENCHMARK(BM_Merge)
    ->ArgNames({"scale", "updates"})
    ->Args({20, 4096})
    ->Iterations(5)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace engram::bench

BENCHMARK_MAIN();
