#include "kernels/cpu/spread.h"

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/topk.h"
#include "kernels/graph_overlay.h"
#include "kernels/thread_pool.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/spreading_cases.h"
#include "tests/testing/stop_after_checks.h"

namespace engram::kernels::cpu {
namespace {

using ::testing::HasSubstr;

// The case file's values are float64 rounded to 9 decimals; the kernel keeps
// float32 weights and outputs, which differ by ~1e-8.
constexpr double kSpecTolerance = 1e-6;
constexpr double kReferenceTolerance = 1e-5;

std::vector<std::unique_ptr<ThreadPool>> Pools() {
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  for (int n : {1, 2, 4}) pools.push_back(std::make_unique<ThreadPool>(n));
  return pools;
}

std::string PoolName(const ThreadPool* pool) {
  return pool == nullptr ? "no pool"
                         : std::to_string(pool->num_threads()) + " threads";
}

// A small graph owned by the test, given as CSR arrays.
struct Graph {
  std::vector<uint32_t> row_offsets;
  std::vector<uint32_t> targets;
  std::vector<float> weights;

  GraphView view() const {
    return GraphView{static_cast<uint32_t>(row_offsets.size() - 1), row_offsets,
                     targets, weights};
  }
};

SpreadParams Constant(float factor, float threshold) {
  SpreadParams params;
  params.decay = DecayKind::kConstant;
  params.decay_param = factor;
  params.threshold = threshold;
  return params;
}

SpreadResult RunSpread(const GraphView& graph,
                       const std::vector<SpreadSeed>& seeds,
                       const SpreadParams& params, ThreadPool* pool = nullptr) {
  SpreadResult result;
  const absl::Status status = Spread(graph, seeds, params, pool, &result);
  EXPECT_TRUE(status.ok()) << status;
  return result;
}

void ExpectActivations(const std::vector<float>& got,
                       const std::vector<double>& expected, double tolerance) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t v = 0; v < got.size(); ++v) {
    EXPECT_NEAR(got[v], expected[v], tolerance) << "node " << v;
  }
}

class SpreadTest : public ::testing::Test {
 protected:
  static std::vector<testing::SpreadCase> LoadCases() {
    auto cases = testing::LoadSpreadCases(testing::kSpreadCasesPath);
    EXPECT_TRUE(cases.ok()) << cases.status();
    return cases.ok() ? *std::move(cases) : std::vector<testing::SpreadCase>();
  }
};

// A chain 0 -> 1 -> ... -> n-1 with unit weights: one node per hop.
Graph Chain(uint32_t n) {
  Graph g;
  for (uint32_t v = 0; v <= n; ++v) g.row_offsets.push_back(v < n ? v : n - 1);
  for (uint32_t v = 0; v + 1 < n; ++v) {
    g.targets.push_back(v + 1);
    g.weights.push_back(1.0f);
  }
  return g;
}

TEST(SpreadInterruptTest, StopsBeforeTheNextHopInEveryMode) {
  const Graph chain = Chain(20);
  const SpreadParams params = Constant(1.0f, 0.0f);
  for (SpreadMode mode : {SpreadMode::kPush, SpreadMode::kDensePush,
                          SpreadMode::kPull, SpreadMode::kAuto}) {
    ThreadPool pool(2);
    testing::StopAfterChecks interrupt(3, absl::CancelledError("stop"));
    SpreadResult result;
    const absl::Status status =
        Spread(chain.view(), {{0, 1.0f}}, params, &pool, &result, mode,
               /*stats=*/nullptr, &interrupt);
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled)
        << static_cast<int>(mode);
    // Checked before hops 1..4; the fourth check stopped it.
    EXPECT_EQ(interrupt.checks(), 4) << static_cast<int>(mode);
  }
}

TEST(SpreadInterruptTest, AnInterruptThatNeverFiresChangesNothing) {
  const Graph chain = Chain(20);
  const SpreadParams params = Constant(1.0f, 0.0f);
  testing::StopAfterChecks never(1 << 30, absl::CancelledError("unused"));
  SpreadResult with;
  ASSERT_TRUE(Spread(chain.view(), {{0, 1.0f}}, params, nullptr, &with,
                     SpreadMode::kAuto, nullptr, &never)
                  .ok());
  const SpreadResult without = RunSpread(chain.view(), {{0, 1.0f}}, params);
  EXPECT_EQ(with.activation, without.activation);
  EXPECT_EQ(with.hops, without.hops);
  // One check per hop that ran (max_hops = 4 by default).
  EXPECT_EQ(never.checks(), 4);
}

TEST_F(SpreadTest, SpecCasesFileHasTheElevenWorkedCases) {
  EXPECT_EQ(LoadCases().size(), 11u);
}

TEST_F(SpreadTest, MatchesEverySpecCaseOnEveryPoolSize) {
  const auto cases = LoadCases();
  ASSERT_FALSE(cases.empty());
  const auto pools = Pools();
  for (const testing::SpreadCase& c : cases) {
    const GraphView graph = testing::ToGraphView(c.graph());
    const std::vector<SpreadSeed> seeds = testing::ToSeeds(c);
    const SpreadParams params = testing::ToKernelParams(c.params());
    const std::vector<double> expected(c.expected().activation().begin(),
                                       c.expected().activation().end());
    for (const auto& pool : pools) {
      SCOPED_TRACE(c.name() + " (" + c.note() + "), " + PoolName(pool.get()));
      const SpreadResult result = RunSpread(graph, seeds, params, pool.get());
      ExpectActivations(result.activation, expected, kSpecTolerance);
      EXPECT_EQ(result.hops, c.expected().hops());
      EXPECT_EQ(result.edges_traversed, c.expected().edges_traversed());
    }
  }
}

TEST_F(SpreadTest, TopKOfSpecCasesBreaksTiesByLowerNode) {
  int cases_with_top = 0;
  for (const testing::SpreadCase& c : LoadCases()) {
    if (c.expected().top_nodes().empty()) continue;
    ++cases_with_top;
    SCOPED_TRACE(c.name());
    const size_t k =
        c.has_top_k() ? c.top_k() : c.expected().top_nodes().size();
    const SpreadResult result =
        RunSpread(testing::ToGraphView(c.graph()), testing::ToSeeds(c),
                  testing::ToKernelParams(c.params()));
    const TopKList top =
        TopKOfDense(result.activation, k, std::numeric_limits<float>::lowest());
    ASSERT_EQ(top.size(), static_cast<size_t>(c.expected().top_nodes_size()));
    for (size_t i = 0; i < top.size(); ++i) {
      EXPECT_EQ(top[i].index, c.expected().top_nodes(i)) << "rank " << i;
      EXPECT_NEAR(top[i].score, c.expected().top_activation(i), kSpecTolerance)
          << "rank " << i;
    }
  }
  EXPECT_GE(cases_with_top, 1);
}

// The reference is checked against the same file, so that agreeing with it on
// random graphs below means agreeing with the spec.
TEST_F(SpreadTest, ReferenceMatchesEverySpecCase) {
  for (const testing::SpreadCase& c : LoadCases()) {
    SCOPED_TRACE(c.name());
    const std::vector<SpreadSeed> seeds = testing::ToSeeds(c);
    const auto ref =
        testing::ReferenceSpread(testing::ToGraphView(c.graph()), seeds,
                                 testing::ToKernelParams(c.params()));
    ASSERT_EQ(ref.activation.size(), c.expected().activation_size());
    for (size_t v = 0; v < ref.activation.size(); ++v) {
      EXPECT_NEAR(ref.activation[v], c.expected().activation(v), kSpecTolerance)
          << "node " << v;
    }
    EXPECT_EQ(ref.hops, c.expected().hops());
    EXPECT_EQ(ref.edges_traversed, c.expected().edges_traversed());
  }
}

TEST_F(SpreadTest, ParamsAbsentFromTheFileTakeTheApiDefaults) {
  const SpreadParams params =
      testing::ToKernelParams(engram::similarity::v1::SpreadParams());
  EXPECT_EQ(params.max_hops, 4u);
  EXPECT_EQ(params.decay, DecayKind::kExponential);
  EXPECT_FLOAT_EQ(params.decay_param, 0.7f);
  EXPECT_FLOAT_EQ(params.threshold, 0.01f);
  EXPECT_TRUE(params.hop_thresholds.empty());
  EXPECT_FLOAT_EQ(params.max_activation, 1.0f);
}

// Hand-computed: node 1 already holds 0.5 and receives 0.02 < theta = 0.05.
// The new value 0.52 reaches theta, so it is written, but the increase does
// not, so nothing travels on from node 1.
TEST_F(SpreadTest, WritesANodeThatReachesThetaButForwardsOnlyALargeIncrease) {
  const Graph g{{0, 1, 2, 2}, {1, 2}, {0.02f, 1.0f}};
  const SpreadResult r =
      RunSpread(g.view(), {{0, 1.0f}, {1, 0.5f}}, Constant(1.0f, 0.05f));
  // Hop 1 pushes from {0, 1}: node 1 += 0.02, node 2 += 0.5. Hop 2 pushes
  // only from node 2, which has no out-edges.
  ExpectActivations(r.activation, {1.0, 0.52, 0.5}, 1e-7);
  EXPECT_EQ(r.hops, 1u);
  EXPECT_EQ(r.edges_traversed, 2u);
}

// Hand-computed: the cap cuts node 1's increase to 0.1, and only that 0.1
// travels on at hop 2.
TEST_F(SpreadTest, OnlyTheIncreaseLeftUnderTheCapTravelsOn) {
  const Graph g{{0, 1, 2, 2}, {1, 2}, {1.0f, 1.0f}};
  const SpreadResult r =
      RunSpread(g.view(), {{0, 1.0f}, {1, 0.9f}}, Constant(0.5f, 0.01f));
  // Hop 1 from {0: 1.0, 1: 0.9}: node 1 = min(1, 0.9 + 0.5) = 1 (delta 0.1),
  // node 2 = 0.45. Hop 2 from {1: 0.1, 2: 0.45}: node 2 += 0.05.
  ExpectActivations(r.activation, {1.0, 1.0, 0.5}, 1e-7);
  EXPECT_EQ(r.hops, 2u);
  EXPECT_EQ(r.edges_traversed, 3u);
}

// Hand-computed: node 1 is already at the cap, so its input changes nothing
// and the hop does not count, though its edge was traversed.
TEST_F(SpreadTest, HopsCountOnlyHopsThatChangedAnActivation) {
  const Graph g{{0, 1, 1}, {1}, {1.0f}};
  const SpreadResult r =
      RunSpread(g.view(), {{0, 1.0f}, {1, 1.0f}}, Constant(1.0f, 0.01f));
  ExpectActivations(r.activation, {1.0, 1.0}, 0.0);
  EXPECT_EQ(r.hops, 0u);
  EXPECT_EQ(r.edges_traversed, 1u);
}

TEST_F(SpreadTest, ZeroMaxHopsLeavesOnlyTheSeeds) {
  const Graph g{{0, 1, 2, 2}, {1, 2}, {1.0f, 1.0f}};
  SpreadParams params;
  params.max_hops = 0;
  const SpreadResult r = RunSpread(g.view(), {{0, 0.8f}, {2, 1.7f}}, params);
  ExpectActivations(r.activation, {0.8, 0.0, 1.0}, 1e-7);  // 1.7 capped
  EXPECT_EQ(r.hops, 0u);
  EXPECT_EQ(r.edges_traversed, 0u);
}

TEST_F(SpreadTest, NoSeedsActivateNothing) {
  const Graph g{{0, 1, 2, 2}, {1, 2}, {1.0f, 1.0f}};
  const SpreadResult r = RunSpread(g.view(), {}, SpreadParams());
  ExpectActivations(r.activation, {0.0, 0.0, 0.0}, 0.0);
  EXPECT_EQ(r.hops, 0u);
  EXPECT_EQ(r.edges_traversed, 0u);
}

// Hand-computed: node 2 gets 0.3 * 0.5 from node 0 and 0.6 * 0.5 from node 1
// in the same hop; the sum 0.45 is what travels to node 3 at hop 2.
TEST_F(SpreadTest, SumsInputsFromSeveralSourcesBeforeThresholding) {
  const Graph g{{0, 1, 2, 3, 3}, {2, 2, 3}, {1.0f, 1.0f, 1.0f}};
  const SpreadResult r =
      RunSpread(g.view(), {{0, 0.3f}, {1, 0.6f}}, Constant(0.5f, 0.2f));
  // Hop 1: in[2] = 0.15 + 0.3 = 0.45 >= 0.2. Hop 2: in[3] = 0.225.
  ExpectActivations(r.activation, {0.3, 0.6, 0.45, 0.225}, 1e-7);
  EXPECT_EQ(r.hops, 2u);
  EXPECT_EQ(r.edges_traversed, 3u);
}

struct RandomCase {
  const char* name;
  uint32_t num_nodes;
  uint32_t avg_degree;
  SpreadParams params;
};

std::vector<RandomCase> RandomCases() {
  std::vector<RandomCase> cases;
  SpreadParams exponential;
  exponential.max_hops = 6;
  exponential.decay_param = 0.3f;
  exponential.threshold = 0.002f;
  cases.push_back({"exponential", 3000, 6, exponential});

  SpreadParams power;
  power.decay = DecayKind::kPowerLaw;
  power.decay_param = 0.5f;
  power.threshold = 0.005f;
  power.max_activation = 2.0f;
  cases.push_back({"power_law", 2000, 4, power});

  SpreadParams linear;
  linear.max_hops = 5;
  linear.decay = DecayKind::kLinear;
  linear.decay_param = 0.15f;
  linear.threshold = 0.001f;
  cases.push_back({"linear", 1500, 8, linear});

  SpreadParams constant = Constant(0.4f, 0.01f);
  constant.max_hops = 8;
  constant.hop_thresholds = {0.0f, 0.02f, 0.05f};
  cases.push_back({"constant_hop_thresholds", 4000, 3, constant});

  SpreadParams saturating = Constant(0.9f, 0.0001f);
  saturating.max_hops = 10;
  cases.push_back({"saturating", 500, 12, saturating});
  return cases;
}

std::vector<SpreadSeed> RandomSeeds(uint32_t num_nodes, size_t count,
                                    uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> node(0, num_nodes - 1);
  std::uniform_real_distribution<float> activation(0.05f, 1.0f);
  std::vector<SpreadSeed> seeds;
  for (size_t i = 0; i < count; ++i)
    seeds.push_back({node(rng), activation(rng)});
  seeds.push_back(seeds.front());  // a duplicate seed adds
  return seeds;
}

TEST_F(SpreadTest, RandomGraphsMatchTheDenseReference) {
  uint64_t seed = 100;
  for (const RandomCase& c : RandomCases()) {
    SCOPED_TRACE(c.name);
    const auto graph = testing::RandomGraph(c.num_nodes, c.avg_degree, ++seed);
    const auto seeds = RandomSeeds(c.num_nodes, 6, ++seed);
    const auto ref = testing::ReferenceSpread(graph.view(), seeds, c.params);
    const SpreadResult r = RunSpread(graph.view(), seeds, c.params);
    ExpectActivations(r.activation, ref.activation, kReferenceTolerance);
    EXPECT_EQ(r.hops, ref.hops);
    EXPECT_EQ(r.edges_traversed, ref.edges_traversed);
    // A case that stops at once would not test much.
    EXPECT_GE(ref.hops, 2u);
  }
}

TEST_F(SpreadTest, OutputIsBitIdenticalWhateverThePoolSize) {
  const auto pools = Pools();
  uint64_t seed = 200;
  for (const RandomCase& c : RandomCases()) {
    SCOPED_TRACE(c.name);
    const auto graph = testing::RandomGraph(c.num_nodes, c.avg_degree, ++seed);
    const auto seeds = RandomSeeds(c.num_nodes, 6, ++seed);
    const SpreadResult first = RunSpread(graph.view(), seeds, c.params);
    for (const auto& pool : pools) {
      SCOPED_TRACE(PoolName(pool.get()));
      const SpreadResult r =
          RunSpread(graph.view(), seeds, c.params, pool.get());
      EXPECT_TRUE(r.activation == first.activation);
      EXPECT_EQ(r.hops, first.hops);
      EXPECT_EQ(r.edges_traversed, first.edges_traversed);
    }
  }
}

TEST_F(SpreadTest, SeedOutOfRangeIsInvalidArgument) {
  const Graph g{{0, 1, 1}, {1}, {1.0f}};
  SpreadResult r;
  const std::vector<SpreadSeed> seeds = {{2, 1.0f}};
  const absl::Status status =
      Spread(g.view(), seeds, SpreadParams(), nullptr, &r);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("seeds[0]"));
}

TEST_F(SpreadTest, EdgeTargetOutOfRangeIsInvalidArgument) {
  const Graph g{{0, 1, 1}, {5}, {1.0f}};
  SpreadResult r;
  const std::vector<SpreadSeed> seeds = {{0, 1.0f}};
  const absl::Status status =
      Spread(g.view(), seeds, SpreadParams(), nullptr, &r);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("graph.targets[0]"));
}

TEST_F(SpreadTest, MismatchedRowOffsetsAreInvalidArgument) {
  const std::vector<uint32_t> offsets = {0, 1};
  const std::vector<uint32_t> targets = {1};
  const std::vector<float> weights = {1.0f};
  const GraphView graph{3, offsets, targets, weights};
  SpreadResult r;
  EXPECT_EQ(Spread(graph, {}, SpreadParams(), nullptr, &r).code(),
            absl::StatusCode::kInvalidArgument);
}

// A pull and a dense push sum each node's terms in the sparse push's order,
// so forcing any hop kind, on any pool, gives the same bits as the serial
// sparse push.
TEST_F(SpreadTest, PullAndPushHopsGiveBitIdenticalResults) {
  const auto pools = Pools();
  uint64_t seed = 300;
  for (const RandomCase& c : RandomCases()) {
    SCOPED_TRACE(c.name);
    const auto graph = testing::RandomGraph(c.num_nodes, c.avg_degree, ++seed);
    const auto seeds = RandomSeeds(c.num_nodes, 6, ++seed);
    SpreadResult push;
    SpreadStats push_stats;
    ASSERT_TRUE(Spread(graph.view(), seeds, c.params, nullptr, &push,
                       SpreadMode::kPush, &push_stats)
                    .ok());
    EXPECT_EQ(push_stats.pull_hops, 0u);
    for (const auto& pool : pools) {
      for (SpreadMode mode :
           {SpreadMode::kPull, SpreadMode::kDensePush, SpreadMode::kAuto}) {
        SCOPED_TRACE(::testing::Message() << PoolName(pool.get()) << " mode "
                                          << static_cast<int>(mode));
        SpreadResult r;
        SpreadStats stats;
        ASSERT_TRUE(
            Spread(graph.view(), seeds, c.params, pool.get(), &r, mode, &stats)
                .ok());
        EXPECT_TRUE(r.activation == push.activation);
        EXPECT_EQ(r.hops, push.hops);
        EXPECT_EQ(r.edges_traversed, push.edges_traversed);
        if (mode == SpreadMode::kPull) {
          EXPECT_EQ(stats.push_hops + stats.dense_push_hops, 0u);
          EXPECT_GE(stats.pull_hops, 2u);
        }
        if (mode == SpreadMode::kDensePush) {
          EXPECT_EQ(stats.push_hops + stats.pull_hops, 0u);
          EXPECT_GE(stats.dense_push_hops, 2u);
        }
      }
    }
  }
}

// Every node seeded and no threshold: every hop's frontier is most of the
// graph, which the cost model must give to a dense pass (parallel over
// destination ranges); a forced pull builds more than one bucket of
// in-edges.
TEST_F(SpreadTest, DenseFrontiersTakeDensePassesAndMatchTheReference) {
  const uint32_t n = 12000;
  const auto graph = testing::RandomGraph(n, 6, 400);
  std::vector<SpreadSeed> seeds;
  for (uint32_t v = 0; v < n; v += 1) seeds.push_back({v, 1e-3f * (1 + v % 7)});
  SpreadParams params = Constant(0.5f, 0.0f);
  params.max_hops = 5;
  params.max_activation = 1e6f;
  const auto ref = testing::ReferenceSpread(graph.view(), seeds, params);
  SpreadResult push;
  ASSERT_TRUE(
      Spread(graph.view(), seeds, params, nullptr, &push, SpreadMode::kPush)
          .ok());
  ExpectActivations(push.activation, ref.activation, kReferenceTolerance);
  for (const auto& pool : Pools()) {
    SCOPED_TRACE(PoolName(pool.get()));
    SpreadResult r;
    SpreadStats stats;
    ASSERT_TRUE(Spread(graph.view(), seeds, params, pool.get(), &r,
                       SpreadMode::kAuto, &stats)
                    .ok());
    EXPECT_GE(stats.dense_push_hops + stats.pull_hops, 4u);
    EXPECT_TRUE(r.activation == push.activation);
    EXPECT_EQ(r.hops, ref.hops);
    EXPECT_EQ(r.edges_traversed, ref.edges_traversed);
    SpreadResult pulled;
    ASSERT_TRUE(Spread(graph.view(), seeds, params, pool.get(), &pulled,
                       SpreadMode::kPull)
                    .ok());
    EXPECT_TRUE(pulled.activation == push.activation);
  }
}

// A graph with a target out of range fails, or not, exactly as the sparse
// push would have it, whichever hop kind is forced: the pull cannot index
// it and pushes instead, the dense push hands the failing hop to the sparse
// push.
TEST_F(SpreadTest, ForcedDenseHopsOnAMalformedGraphBehaveAsThePush) {
  const Graph reached{{0, 1, 1}, {5}, {1.0f}};
  const std::vector<SpreadSeed> seeds = {{0, 1.0f}};
  SpreadResult r;
  SpreadStats stats;
  for (SpreadMode mode : {SpreadMode::kDensePush, SpreadMode::kPull}) {
    const absl::Status status = Spread(reached.view(), seeds, SpreadParams(),
                                       nullptr, &r, mode, &stats);
    EXPECT_THAT(std::string(status.message()), HasSubstr("graph.targets[0]"));
  }

  // Node 2's bad edge is never reached from node 0.
  const Graph unreached{{0, 1, 1, 2}, {1, 9}, {1.0f, 1.0f}};
  for (SpreadMode mode :
       {SpreadMode::kPush, SpreadMode::kDensePush, SpreadMode::kPull}) {
    ASSERT_TRUE(Spread(unreached.view(), seeds, SpreadParams(), nullptr, &r,
                       mode, &stats)
                    .ok());
    EXPECT_EQ(stats.pull_hops, 0u);  // never indexed
    EXPECT_GT(r.activation[1], 0.0f);
  }
}

// A graph changed after its CSR was built, held as kernels/graph_overlay.h
// describes it, with its arrays, and the same graph as a CSR built from
// scratch: the lists of `changed` nodes replaced, `added` nodes past the
// base, some with lists of their own.
struct OverlaidGraph {
  testing::RandomCsrGraph base;
  Graph scratch;
  uint32_t page_shift = 3;
  std::vector<std::vector<uint32_t>> lists;  // per page: list index by node
  std::vector<std::vector<uint32_t>> offsets;
  std::vector<std::vector<uint32_t>> targets;
  std::vector<std::vector<float>> weights;
  std::vector<GraphOverlay::Page> pages;
  std::vector<const GraphOverlay::Page*> page_table;
  GraphOverlay overlay;
};

std::unique_ptr<OverlaidGraph> RandomOverlaidGraph(uint32_t base_nodes,
                                                   uint32_t added,
                                                   uint32_t avg_degree,
                                                   uint64_t seed) {
  auto g = std::make_unique<OverlaidGraph>();
  g->base = testing::RandomGraph(base_nodes, avg_degree, seed);
  const uint32_t n = base_nodes + added;
  std::mt19937_64 rng(seed + 1);
  std::uniform_int_distribution<uint32_t> node(0, n - 1);
  std::uniform_int_distribution<uint32_t> degree(0, 2 * avg_degree);
  std::uniform_real_distribution<float> weight(0.05f, 1.0f);
  std::bernoulli_distribution replace(0.2);
  // Every node's list in the changed graph, and whether it is replaced.
  std::vector<std::vector<std::pair<uint32_t, float>>> final_lists(n);
  std::vector<bool> replaced(n, false);
  for (uint32_t u = 0; u < n; ++u) {
    if (u < base_nodes && !replace(rng)) {
      for (uint32_t e = g->base.row_offsets[u]; e < g->base.row_offsets[u + 1];
           ++e) {
        final_lists[u].push_back({g->base.targets[e], g->base.weights[e]});
      }
      continue;
    }
    // Past the base, half the added nodes have no list at all.
    if (u >= base_nodes && u % 2 == 0) continue;
    replaced[u] = true;
    const uint32_t d = degree(rng);
    for (uint32_t e = 0; e < d; ++e) {
      final_lists[u].push_back({node(rng), weight(rng)});
    }
  }
  g->scratch.row_offsets.push_back(0);
  for (const auto& list : final_lists) {
    for (const auto& [v, w] : list) {
      g->scratch.targets.push_back(v);
      g->scratch.weights.push_back(w);
    }
    g->scratch.row_offsets.push_back(
        static_cast<uint32_t>(g->scratch.targets.size()));
  }
  const uint32_t page_nodes = 1u << g->page_shift;
  const uint32_t page_count = (n + page_nodes - 1) / page_nodes;
  g->lists.resize(page_count);
  g->offsets.resize(page_count);
  g->targets.resize(page_count);
  g->weights.resize(page_count);
  g->pages.resize(page_count);
  for (uint32_t p = 0; p < page_count; ++p) {
    g->lists[p].assign(page_nodes, GraphOverlay::kBaseList);
    g->offsets[p].push_back(0);
    for (uint32_t k = 0; k < page_nodes; ++k) {
      const uint32_t u = p * page_nodes + k;
      if (u >= n || !replaced[u]) continue;
      g->lists[p][k] = static_cast<uint32_t>(g->offsets[p].size() - 1);
      for (const auto& [v, w] : final_lists[u]) {
        g->targets[p].push_back(v);
        g->weights[p].push_back(w);
      }
      g->offsets[p].push_back(static_cast<uint32_t>(g->targets[p].size()));
    }
    g->pages[p] = {g->lists[p].data(), g->offsets[p].data(),
                   g->targets[p].data(), g->weights[p].data()};
    // A page no node of which changed is left out, as the store does.
    g->page_table.push_back(g->offsets[p].size() > 1 ? &g->pages[p] : nullptr);
  }
  g->overlay.num_nodes = n;
  g->overlay.num_edges = g->scratch.targets.size();
  g->overlay.page_shift = g->page_shift;
  g->overlay.pages = g->page_table;
  return g;
}

TEST(GraphOverlayTest, CopyGivesTheGraphBuiltFromScratch) {
  const auto g = RandomOverlaidGraph(300, 40, 5, 900);
  ASSERT_TRUE(CheckOverlayShape(g->base.view(), g->overlay).ok());
  CsrGraph flat;
  ASSERT_TRUE(MaterializeOverlaidGraph(g->base.view(), g->overlay, &flat).ok());
  const GraphView v = flat.view();
  EXPECT_EQ(v.num_nodes, 340u);
  EXPECT_EQ(std::vector<uint32_t>(v.row_offsets.begin(), v.row_offsets.end()),
            g->scratch.row_offsets);
  EXPECT_EQ(std::vector<uint32_t>(v.targets.begin(), v.targets.end()),
            g->scratch.targets);
  EXPECT_EQ(std::vector<float>(v.weights.begin(), v.weights.end()),
            g->scratch.weights);
}

TEST(GraphOverlayTest, AMalformedOverlayIsInvalidArgument) {
  const auto g = RandomOverlaidGraph(100, 10, 3, 901);
  GraphOverlay fewer_nodes = g->overlay;
  fewer_nodes.num_nodes = 50;
  EXPECT_EQ(CheckOverlayShape(g->base.view(), fewer_nodes).code(),
            absl::StatusCode::kInvalidArgument);
  GraphOverlay short_table = g->overlay;
  short_table.pages = short_table.pages.subspan(1);
  EXPECT_THAT(CheckOverlayShape(g->base.view(), short_table).message(),
              HasSubstr("pages"));
  SpreadResult r;
  EXPECT_EQ(Spread(g->base.view(), g->overlay, {{110, 1.0f}}, SpreadParams(),
                   nullptr, &r)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Reading through an overlay sums every node's terms in the order the CSR
// built from scratch holds them, so every hop kind on every pool gives the
// bits of the scratch graph's sparse push.
TEST_F(SpreadTest, AnOverlaidGraphSpreadsAsTheGraphBuiltFromScratch) {
  const auto pools = Pools();
  uint64_t seed = 700;
  for (const RandomCase& c : RandomCases()) {
    SCOPED_TRACE(c.name);
    const auto g = RandomOverlaidGraph(c.num_nodes, c.num_nodes / 10,
                                       c.avg_degree, ++seed);
    const auto seeds = RandomSeeds(c.num_nodes + c.num_nodes / 10, 6, ++seed);
    SpreadResult expected;
    ASSERT_TRUE(Spread(g->scratch.view(), seeds, c.params, nullptr, &expected,
                       SpreadMode::kPush)
                    .ok());
    for (const auto& pool : pools) {
      for (SpreadMode mode : {SpreadMode::kPush, SpreadMode::kDensePush,
                              SpreadMode::kPull, SpreadMode::kAuto}) {
        SCOPED_TRACE(::testing::Message() << PoolName(pool.get()) << " mode "
                                          << static_cast<int>(mode));
        SpreadResult r;
        SpreadStats stats;
        ASSERT_TRUE(Spread(g->base.view(), g->overlay, seeds, c.params,
                           pool.get(), &r, mode, &stats)
                        .ok());
        EXPECT_TRUE(r.activation == expected.activation);
        EXPECT_EQ(r.hops, expected.hops);
        EXPECT_EQ(r.edges_traversed, expected.edges_traversed);
        if (mode == SpreadMode::kPull) {
          EXPECT_GE(stats.pull_hops, 1u);
        }
        if (mode == SpreadMode::kDensePush) {
          EXPECT_GE(stats.dense_push_hops, 1u);
        }
      }
    }
  }
}

}  // namespace
}  // namespace engram::kernels::cpu
