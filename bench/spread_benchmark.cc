// Spreading activation on R-MAT graphs (bench/bench_data.h), the same
// graphs scripts/bench.sh hands to scipy for the CSR matvec peer.
//
// - BM_SpreadDense: every node seeded, threshold 0, constant decay 0.5: the
//   frontier is every node with an in-edge, on every hop, so each hop is a
//   full matvec's worth of edges. edges/s = edges_traversed / time of the
//   whole call (seeding, any in-edge build and output included); the
//   marginal rate of a hop, comparable with a CSR matvec's nnz / time, is
//   the difference between the 5-hop and the 1-hop runs (scripts/bench.sh).
// - BM_SpreadFewSeeds: a handful of seeds with the API's defaults
//   (exponential 0.7, threshold 0.01, cap 1, 4 hops), the service's typical
//   request; compared with the same number of dense matvecs. With uniform
//   weights R-MAT's hubs gather enough input to pass the threshold and the
//   frontier spreads over much of the graph by hop 3; with fan-normalised
//   weights (bench_data.h) it stays local.
//
// Args: scale (2^scale nodes, average out-degree 16), mode (0 auto, 1 sparse
// push, 2 dense push, 3 pull), threads (1: the calling thread alone, 0: all
// hardware threads).
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "bench/bench_data.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/spread.h"
#include "kernels/thread_pool.h"

namespace engram::bench {
namespace {

using kernels::SpreadParams;
using kernels::SpreadResult;
using kernels::SpreadSeed;
using kernels::ThreadPool;
using kernels::cpu::SpreadMode;

constexpr int kAvgDegree = 16;
constexpr uint64_t kGraphSeed = 3;

const CsrGraph& Graph(int scale, RmatWeights weights = RmatWeights::kUniform) {
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

int AllThreads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool* Pool(int threads) {
  if (threads == 0) threads = AllThreads();
  if (threads == 1) return nullptr;
  static auto* pools = new std::map<int, std::unique_ptr<ThreadPool>>;
  auto& pool = (*pools)[threads];
  if (pool == nullptr) pool = std::make_unique<ThreadPool>(threads - 1);
  return pool.get();
}

void RunSpread(benchmark::State& state, const CsrGraph& graph,
               const std::vector<SpreadSeed>& seeds,
               const SpreadParams& params) {
  const auto mode = static_cast<SpreadMode>(state.range(1));
  ThreadPool* pool = Pool(static_cast<int>(state.range(2)));
  SpreadResult result;
  kernels::cpu::SpreadStats stats;
  for (auto _ : state) {
    const absl::Status status = kernels::cpu::Spread(
        graph.view(), seeds, params, pool, &result, mode, &stats);
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(result.activation.data());
  }
  state.counters["edges"] = static_cast<double>(result.edges_traversed);
  state.counters["graph_edges"] = static_cast<double>(graph.targets.size());
  state.counters["hops"] = result.hops;
  state.counters["pull_hops"] = stats.pull_hops;
  state.counters["dense_push_hops"] = stats.dense_push_hops;
  state.counters["push_hops"] = stats.push_hops;
  state.counters["edges/s"] = benchmark::Counter(
      static_cast<double>(result.edges_traversed) * state.iterations(),
      benchmark::Counter::kIsRate);
  state.counters["threads"] =
      state.range(2) == 0 ? AllThreads() : state.range(2);
}

void BM_SpreadDense(benchmark::State& state) {
  const CsrGraph& graph = Graph(static_cast<int>(state.range(0)));
  const uint32_t n = graph.num_nodes;
  std::vector<SpreadSeed> seeds(n);
  for (uint32_t v = 0; v < n; ++v) seeds[v] = {v, 1e-3f};
  SpreadParams params;
  params.max_hops = static_cast<uint32_t>(state.range(3));
  params.decay = kernels::DecayKind::kConstant;
  params.decay_param = 0.5f;
  params.threshold = 0.0f;
  params.max_activation = 1e30f;
  RunSpread(state, graph, seeds, params);
}
BENCHMARK(BM_SpreadDense)
    ->ArgNames({"scale", "mode", "threads", "hops"})
    ->ArgsProduct({{16, 20}, {0, 1, 2, 3}, {1, 0}, {1, 5}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Args: scale, mode, threads, weights (0 uniform, 1 fan-normalised).
void BM_SpreadFewSeeds(benchmark::State& state) {
  const CsrGraph& graph = Graph(static_cast<int>(state.range(0)),
                                static_cast<RmatWeights>(state.range(3)));
  const uint32_t n = graph.num_nodes;
  // Five seeds spread over the id range (ids are scrambled, so these are
  // ordinary nodes, not the hubs).
  std::vector<SpreadSeed> seeds;
  for (uint32_t i = 0; i < 5; ++i) seeds.push_back({n / 5 * i + 7, 1.0f});
  RunSpread(state, graph, seeds, SpreadParams());
}
BENCHMARK(BM_SpreadFewSeeds)
    ->ArgNames({"scale", "mode", "threads", "weights"})
    ->ArgsProduct({{16, 20},
                   {0},
                   {1, 0},
                   {static_cast<int>(RmatWeights::kUniform),
                    static_cast<int>(RmatWeights::kFanNormalized)}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace engram::bench

BENCHMARK_MAIN();
