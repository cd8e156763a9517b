// CPU/GPU parity of the CUDA backend (ctest label gpu): CudaBackend against
// CpuBackend on the same jobs, cosine (dense and top-k, ties, tiny and zero
// vectors, non-finite input) and spreading (every case of
// tests/data/spreading-cases.json, random graphs under every decay), then
// the HybridExecutor running GPU-only requests on the real device. Every test
// skips, saying why, without a GPU (and in a build without CUDA).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/residency/device_residency.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/gpu_device.h"
#include "kernels/thread_pool.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/random_data.h"
#include "tests/testing/spreading_cases.h"
#include "tests/testing/stop_after_checks.h"

namespace engram::dispatch {
namespace {

using kernels::MatrixView;
using kernels::TopKList;

// Cosine scores are in [-1, 1]; the GPU sums the float32 dot products in
// another order than the CPU.
constexpr double kScoreTolerance = 1e-5;
// The case file's values are float64 rounded to 9 decimals.
constexpr double kSpecTolerance = 1e-6;

class CudaParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = kernels::ListGpuDevices();
    if (!devices.ok()) {
      // scripts/gpu-check.sh sets it: on the GPU machine a skip is a failure.
      if (std::getenv("ENGRAM_REQUIRE_GPU") != nullptr) {
        FAIL() << "ENGRAM_REQUIRE_GPU is set but there is no GPU: "
               << devices.status().message();
      }
      GTEST_SKIP() << "no GPU: " << devices.status().message();
    }
    pool_ = std::make_unique<kernels::ThreadPool>(4);
    cpu_ = *CpuBackend::Create({pool_.get()});
    CudaBackend::Options options;
    options.pool = pool_.get();
    auto gpu = CudaBackend::Create(options);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = *std::move(gpu);
  }

  struct CosineRun {
    absl::Status status;
    std::vector<float> scores;
    std::vector<TopKList> top;
  };

  static CosineRun Run(ComputeBackend& backend, const CosineJob& job) {
    CosineRun run;
    CosineOutput out;
    if (job.top_k == 0) {
      run.scores.assign(job.queries.rows * job.targets.rows, -7.0f);
      out.scores = absl::MakeSpan(run.scores);
    }
    run.status = backend.Cosine(job, &out);
    run.top = std::move(out.top);
    return run;
  }

  static SpreadOutput RunSpread(ComputeBackend& backend, const SpreadJob& job,
                                absl::Status* status) {
    SpreadOutput out;
    *status = backend.Spread(job, &out);
    return out;
  }

  // GPU and CPU results of one spreading job, compared: bit for bit, since
  // both add the same float64 terms in the same order.
  void ExpectSameSpread(const SpreadJob& job) {
    absl::Status cpu_status, gpu_status;
    const SpreadOutput cpu = RunSpread(*cpu_, job, &cpu_status);
    const SpreadOutput gpu = RunSpread(*gpu_, job, &gpu_status);
    ASSERT_TRUE(cpu_status.ok()) << cpu_status;
    ASSERT_TRUE(gpu_status.ok()) << gpu_status;
    ASSERT_EQ(gpu.result.activation.size(), cpu.result.activation.size());
    for (size_t v = 0; v < cpu.result.activation.size(); ++v) {
      const double want = cpu.result.activation[v];
      ASSERT_NEAR(gpu.result.activation[v], want,
                  1e-4 * std::max(1.0, std::abs(want)))
          << "node " << v;
    }
    EXPECT_EQ(gpu.result.activation, cpu.result.activation);
    EXPECT_EQ(gpu.result.hops, cpu.result.hops);
    EXPECT_EQ(gpu.result.edges_traversed, cpu.result.edges_traversed);
  }

  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<CpuBackend> cpu_;
  std::unique_ptr<CudaBackend> gpu_;
};

CosineJob MakeJob(const std::vector<float>& queries, size_t q,
                  const std::vector<float>& targets, size_t n, size_t d,
                  uint32_t top_k = 0) {
  CosineJob job;
  job.queries = MatrixView{queries.data(), q, d};
  job.targets = MatrixView{targets.data(), n, d};
  job.top_k = top_k;
  return job;
}

void ExpectScoresNear(const std::vector<float>& gpu,
                      const std::vector<float>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], kScoreTolerance) << "score " << i;
  }
}

// Same lists up to the order of entries whose scores are within the
// tolerance of each other (the two sides round differently); `scores` are
// the CPU's dense scores, row-major by query.
void ExpectSameTopK(const std::vector<TopKList>& gpu,
                    const std::vector<TopKList>& cpu,
                    const std::vector<float>& scores, size_t n) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t j = 0; j < cpu.size(); ++j) {
    SCOPED_TRACE(absl::StrCat("query ", j));
    ASSERT_EQ(gpu[j].size(), cpu[j].size());
    for (size_t i = 0; i < cpu[j].size(); ++i) {
      EXPECT_NEAR(gpu[j][i].score, cpu[j][i].score, kScoreTolerance);
      if (gpu[j][i].index != cpu[j][i].index) {
        EXPECT_NEAR(scores[j * n + gpu[j][i].index],
                    scores[j * n + cpu[j][i].index], 2 * kScoreTolerance)
            << "rank " << i << ": GPU " << gpu[j][i].index << ", CPU "
            << cpu[j][i].index;
      }
    }
  }
}

TEST_F(CudaParityTest, DenseScoresMatchTheCpu) {
  for (size_t d : {size_t{3}, size_t{128}, size_t{768}, size_t{1001}}) {
    for (size_t q : {size_t{1}, size_t{5}, size_t{16}, size_t{40}}) {
      for (size_t n : {size_t{1}, size_t{777}, size_t{4096}}) {
        SCOPED_TRACE(absl::StrCat("Q ", q, ", N ", n, ", d ", d));
        const auto queries = testing::RandomMatrix(q, d, 10 + q);
        const auto targets = testing::RandomMatrix(n, d, 20 + n);
        const CosineJob job = MakeJob(queries, q, targets, n, d);
        const CosineRun cpu = Run(*cpu_, job);
        const CosineRun gpu = Run(*gpu_, job);
        ASSERT_TRUE(cpu.status.ok()) << cpu.status;
        ASSERT_TRUE(gpu.status.ok()) << gpu.status;
        ExpectScoresNear(gpu.scores, cpu.scores);
      }
    }
  }
}

TEST_F(CudaParityTest, TopKListsMatchTheCpu) {
  const size_t n = 3000;
  for (size_t d : {size_t{8}, size_t{768}}) {
    for (size_t q : {size_t{1}, size_t{20}}) {
      const auto queries = testing::RandomMatrix(q, d, 3);
      const auto targets = testing::RandomMatrix(n, d, 4);
      CosineJob dense = MakeJob(queries, q, targets, n, d);
      const CosineRun all = Run(*cpu_, dense);
      ASSERT_TRUE(all.status.ok());
      for (uint32_t k : {1u, 10u, 3000u, 3100u}) {
        for (bool with_min : {false, true}) {
          SCOPED_TRACE(absl::StrCat("Q ", q, ", d ", d, ", k ", k,
                                    with_min ? ", min_score 0.1" : ""));
          CosineJob job = MakeJob(queries, q, targets, n, d, k);
          if (with_min) job.min_score = 0.1f;
          const CosineRun cpu = Run(*cpu_, job);
          const CosineRun gpu = Run(*gpu_, job);
          ASSERT_TRUE(cpu.status.ok()) << cpu.status;
          ASSERT_TRUE(gpu.status.ok()) << gpu.status;
          ExpectSameTopK(gpu.top, cpu.top, all.scores, n);
        }
      }
    }
  }
}

TEST_F(CudaParityTest, TiesGoToTheLowerIndexAsOnTheCpu) {
  // Every target row appears three times, and a block of zero rows scores 0
  // for every query: exact ties, broken by the lower index on both sides.
  const size_t q = 4, d = 64, distinct = 300, zeros = 50;
  const auto base = testing::RandomMatrix(distinct, d, 7);
  std::vector<float> targets;
  for (int copy = 0; copy < 3; ++copy) {
    targets.insert(targets.end(), base.begin(), base.end());
  }
  targets.resize(targets.size() + zeros * d, 0.0f);
  const size_t n = 3 * distinct + zeros;
  auto queries = testing::RandomMatrix(q, d, 8);
  // The last query is zero: every score is 0 and the list is 0, 1, 2, ...
  std::fill(queries.end() - d, queries.end(), 0.0f);
  for (uint32_t k : {3u, 40u, 1000u}) {
    SCOPED_TRACE(absl::StrCat("k ", k));
    const CosineJob job = MakeJob(queries, q, targets, n, d, k);
    const CosineRun cpu = Run(*cpu_, job);
    const CosineRun gpu = Run(*gpu_, job);
    ASSERT_TRUE(cpu.status.ok()) << cpu.status;
    ASSERT_TRUE(gpu.status.ok()) << gpu.status;
    ASSERT_EQ(gpu.top.size(), q);
    for (size_t j = 0; j < q; ++j) {
      ASSERT_EQ(gpu.top[j].size(), cpu.top[j].size());
      for (size_t i = 0; i < cpu.top[j].size(); ++i) {
        EXPECT_EQ(gpu.top[j][i].index, cpu.top[j][i].index)
            << "query " << j << ", rank " << i;
        EXPECT_NEAR(gpu.top[j][i].score, cpu.top[j][i].score, kScoreTolerance);
      }
    }
    EXPECT_EQ(gpu.top[q - 1][0].index, 0u);
    EXPECT_EQ(gpu.top[q - 1][0].score, 0.0f);
  }
}

TEST_F(CudaParityTest, TinyAndZeroVectorsScoreLikeTheCpu) {
  const size_t q = 3, n = 40, d = 33;
  auto queries = testing::RandomMatrix(q, d, 1);
  auto targets = testing::RandomMatrix(n, d, 2);
  // Row 5: elements near 1e-30, whose squares underflow float32; row 6:
  // zero; row 7: huge but finite; query 1: tiny; query 2: zero.
  for (size_t c = 0; c < d; ++c) {
    targets[5 * d + c] *= 1e-30f;
    targets[6 * d + c] = 0.0f;
    targets[7 * d + c] *= 1e15f;
    queries[1 * d + c] *= 1e-35f;
    queries[2 * d + c] = 0.0f;
  }
  for (uint32_t k : {0u, 5u}) {
    const CosineJob job = MakeJob(queries, q, targets, n, d, k);
    const CosineRun cpu = Run(*cpu_, job);
    const CosineRun gpu = Run(*gpu_, job);
    ASSERT_TRUE(cpu.status.ok()) << cpu.status;
    ASSERT_TRUE(gpu.status.ok()) << gpu.status;
    if (k == 0) {
      ExpectScoresNear(gpu.scores, cpu.scores);
      EXPECT_EQ(gpu.scores[0 * n + 6], 0.0f);
      EXPECT_EQ(gpu.scores[2 * n + 9], 0.0f);
      EXPECT_NE(gpu.scores[0 * n + 5], 0.0f);
    }
  }
}

TEST_F(CudaParityTest, NonFiniteInputIsRejectedWithTheCpuMessage) {
  const size_t q = 2, n = 400, d = 16;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* what;
    std::vector<std::pair<size_t, float>> targets;  // (flat index, value)
    std::vector<std::pair<size_t, float>> queries;
  };
  const std::vector<Case> cases = {
      {"NaN in target row 17", {{17 * d + 3, nan}}, {}},
      {"the lowest of two bad rows",
       {{300 * d + 1, nan}, {5 * d + 9, inf}},
       {}},
      {"overflowing norm", {{40 * d + 0, 3e19f}, {40 * d + 1, 3e19f}}, {}},
      {"a bad query wins", {{2 * d, nan}}, {{1 * d + 4, -inf}}},
  };
  for (const Case& c : cases) {
    for (uint32_t k : {0u, 3u}) {
      SCOPED_TRACE(absl::StrCat(c.what, ", top_k ", k));
      auto queries = testing::RandomMatrix(q, d, 1);
      auto targets = testing::RandomMatrix(n, d, 2);
      for (const auto& [i, v] : c.targets) targets[i] = v;
      for (const auto& [i, v] : c.queries) queries[i] = v;
      const CosineJob job = MakeJob(queries, q, targets, n, d, k);
      const CosineRun cpu = Run(*cpu_, job);
      const CosineRun gpu = Run(*gpu_, job);
      EXPECT_EQ(cpu.status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(gpu.status, cpu.status);
    }
  }
}

TEST_F(CudaParityTest, DeviceOutOfMemoryIsADeviceOutOfMemoryError) {
  CudaBackend::Options options;
  options.memory_limit_bytes = uint64_t{32} << 20;
  auto small = CudaBackend::Create(options);
  ASSERT_TRUE(small.ok()) << small.status();
  const size_t q = 64, n = 200000, d = 4;
  const auto queries = testing::RandomMatrix(q, d, 1);
  const auto targets = testing::RandomMatrix(n, d, 2);
  const CosineRun run =
      Run(**small, MakeJob(queries, q, targets, n, d, /*top_k=*/5));
  EXPECT_EQ(ClassifyBackendError(run.status), BackendErrorClass::kOutOfMemory)
      << run.status;
  EXPECT_EQ(run.status.code(), absl::StatusCode::kResourceExhausted);
  auto memory = (*small)->QueryMemory();
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->total_bytes, options.memory_limit_bytes);
}

TEST_F(CudaParityTest, SpreadMatchesEverySpecCase) {
  auto cases = testing::LoadSpreadCases(testing::kSpreadCasesPath);
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_FALSE(cases->empty());
  for (const testing::SpreadCase& c : *cases) {
    SCOPED_TRACE(c.name() + " (" + c.note() + ")");
    const std::vector<kernels::SpreadSeed> seeds = testing::ToSeeds(c);
    SpreadJob job;
    job.graph = testing::ToGraphView(c.graph());
    job.seeds = seeds;
    job.params = testing::ToKernelParams(c.params());
    ExpectSameSpread(job);
    absl::Status status;
    const SpreadOutput gpu = RunSpread(*gpu_, job, &status);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(gpu.result.activation.size(),
              static_cast<size_t>(c.expected().activation_size()));
    for (int v = 0; v < c.expected().activation_size(); ++v) {
      EXPECT_NEAR(gpu.result.activation[v], c.expected().activation(v),
                  kSpecTolerance)
          << "node " << v;
    }
    EXPECT_EQ(gpu.result.hops, c.expected().hops());
    EXPECT_EQ(gpu.result.edges_traversed, c.expected().edges_traversed());
  }
}

TEST_F(CudaParityTest, SpreadMatchesTheCpuOnRandomGraphsUnderEveryDecay) {
  struct Variant {
    const char* name;
    kernels::DecayKind decay;
    float param;
    float threshold;
    float cap;
    uint32_t max_hops;
    std::vector<float> hop_thresholds;
  };
  const std::vector<Variant> variants = {
      {"exponential",
       kernels::DecayKind::kExponential,
       0.7f,
       0.01f,
       1.0f,
       4,
       {}},
      {"power law", kernels::DecayKind::kPowerLaw, 1.5f, 0.001f, 1.0f, 6, {}},
      {"linear", kernels::DecayKind::kLinear, 0.2f, 0.0f, 1.0f, 6, {}},
      {"constant, saturating",
       kernels::DecayKind::kConstant,
       1.0f,
       0.0001f,
       0.3f,
       10,
       {}},
      {"hop thresholds",
       kernels::DecayKind::kExponential,
       0.3f,
       0.01f,
       1.0f,
       5,
       {0.2f, 0.05f, 0.0f}},
      {"seeds only",
       kernels::DecayKind::kExponential,
       0.7f,
       0.01f,
       1.0f,
       0,
       {}},
  };
  for (const auto& [nodes, degree, seed] :
       std::vector<std::tuple<uint32_t, uint32_t, uint64_t>>{
           {1, 0, 1}, {500, 3, 2}, {20000, 12, 3}}) {
    const testing::RandomCsrGraph graph =
        testing::RandomGraph(nodes, degree, seed);
    // Repeated and zero seeds, as the API allows.
    std::vector<kernels::SpreadSeed> seeds = {
        {0, 0.6f}, {0, 0.7f}, {nodes / 2, 0.0f}, {nodes - 1, 0.25f}};
    for (const Variant& v : variants) {
      SCOPED_TRACE(absl::StrCat(nodes, " nodes, ", v.name));
      SpreadJob job;
      job.graph = graph.view();
      job.seeds = seeds;
      job.params.decay = v.decay;
      job.params.decay_param = v.param;
      job.params.threshold = v.threshold;
      job.params.max_activation = v.cap;
      job.params.max_hops = v.max_hops;
      job.params.hop_thresholds = v.hop_thresholds;
      ExpectSameSpread(job);
    }
  }
}

// A resident graph with updates not yet merged: the GPU spreads over the
// flattened graph, the CPU through the overlay, and both give the bits of
// the graph built from scratch.
TEST_F(CudaParityTest, SpreadOverAnUpdatedGraphMatchesTheCpu) {
  collections::MemoryBudget::Options budget_options;
  auto budget = *collections::MemoryBudget::Create(budget_options);
  collections::GraphStore::Options options;
  options.budget = budget;
  options.validate = [](const kernels::GraphView&) { return absl::OkStatus(); };
  options.background_merge = false;
  auto store = *collections::GraphStore::Create(options);
  const testing::RandomCsrGraph graph = testing::RandomGraph(20000, 8, 31);
  ASSERT_TRUE(store->Put("g", graph.view()).ok());
  testing::EdgeListGraph reference(graph.view());
  std::mt19937_64 rng(32);
  for (int i = 0; i < 20; ++i) {
    const collections::GraphEdit edit = testing::RandomGraphEdit(
        reference, static_cast<testing::GraphEditKind>(i % 5), 200, rng);
    reference.Apply(edit);
    ASSERT_TRUE(store->Update("g", edit, {}).ok());
  }
  const auto stored = *store->Get("g");
  ASSERT_NE(stored->overlay(), nullptr);
  const std::vector<kernels::SpreadSeed> seeds = {
      {0, 0.6f}, {5, 0.7f}, {19999, 0.25f}, {20001, 0.5f}};
  SpreadJob job;
  job.graph = stored->base();
  job.overlay = stored->overlay();
  job.seeds = seeds;
  job.params.threshold = 0.0005f;
  job.params.max_hops = 8;
  ExpectSameSpread(job);
  const testing::RandomCsrGraph scratch = reference.ToCsr();
  SpreadJob flat = job;
  flat.graph = scratch.view();
  flat.overlay = nullptr;
  absl::Status flat_status, overlay_status;
  const SpreadOutput expected = RunSpread(*gpu_, flat, &flat_status);
  const SpreadOutput got = RunSpread(*gpu_, job, &overlay_status);
  ASSERT_TRUE(flat_status.ok() && overlay_status.ok());
  EXPECT_EQ(got.result.activation, expected.result.activation);
}

class CudaExecutorTest : public CudaParityTest {
 protected:
  HybridExecutor& Make() {
    HybridConfig config;
    config.memory.refresh_interval = absl::ZeroDuration();
    store_ = *ConfigStore::Create(config);
    HybridExecutor::Options options;
    options.cpu = cpu_.get();
    options.gpu = gpu_.get();
    options.config = store_.get();
    auto executor = HybridExecutor::Create(options);
    EXPECT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    return *executor_;
  }

  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<HybridExecutor> executor_;
};

TEST_F(CudaExecutorTest, GpuOnlyRequestsRunOnTheGpuAndMatchTheCpu) {
  HybridExecutor& executor = Make();
  const size_t q = 8, n = 5000, d = 96;
  const auto queries = testing::RandomMatrix(q, d, 1);
  const auto targets = testing::RandomMatrix(n, d, 2);
  CosineJob job = MakeJob(queries, q, targets, n, d);
  job.placement = Placement::kGpuOnly;
  std::vector<float> scores(q * n);
  CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  ASSERT_TRUE(executor.Cosine(job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.fallback_reason, "");
  ExpectScoresNear(scores,
                   Run(*cpu_, MakeJob(queries, q, targets, n, d)).scores);

  const testing::RandomCsrGraph graph = testing::RandomGraph(4000, 5, 9);
  const std::vector<kernels::SpreadSeed> seeds = {{1, 1.0f}, {2, 0.5f}};
  SpreadJob spread;
  spread.graph = graph.view();
  spread.seeds = seeds;
  spread.top_k = 10;
  spread.placement = Placement::kGpuOnly;
  SpreadOutput spread_out;
  ASSERT_TRUE(executor.Spread(spread, &spread_out).ok());
  EXPECT_EQ(spread_out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(spread_out.top.size(), 10u);
}

TEST_F(CudaExecutorTest, AStopBetweenGpuHopsIsTheCallersNotADeviceFailure) {
  HybridExecutor& executor = Make();
  const testing::RandomCsrGraph graph = testing::RandomGraph(20000, 12, 3);
  const std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}, {7, 0.5f}};
  // The executor's check before the call, then hops 1 and 2 pass; hop 3's
  // check stops the GPU mid-spread.
  testing::StopAfterChecks stop(3, absl::DeadlineExceededError("too late"));
  SpreadJob spread;
  spread.graph = graph.view();
  spread.seeds = seeds;
  spread.params.decay = kernels::DecayKind::kConstant;
  spread.params.decay_param = 1.0f;
  spread.params.threshold = 0.0f;
  spread.params.max_hops = 10;
  spread.placement = Placement::kGpuOnly;
  spread.interrupt = &stop;
  SpreadOutput out;
  const absl::Status status = executor.Spread(spread, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  // A device failure would have been charged to the breaker.
  const BreakerSnapshot breaker = executor.breaker().Snapshot();
  EXPECT_EQ(breaker.window_failures, 0u);
  EXPECT_EQ(breaker.consecutive_failures, 0u);
}

TEST_F(CudaExecutorTest, TheDevicesMemoryProbeSizesTheChunks) {
  CudaBackend::Options options;
  options.pool = pool_.get();
  options.memory_limit_bytes = uint64_t{48} << 20;
  auto small = CudaBackend::Create(options);
  ASSERT_TRUE(small.ok()) << small.status();
  gpu_ = *std::move(small);
  HybridExecutor& executor = Make();
  // 64 queries x 200000 scores (51 MB) do not fit 48 MiB at once.
  const size_t q = 64, n = 200000, d = 4;
  const auto queries = testing::RandomMatrix(q, d, 1);
  const auto targets = testing::RandomMatrix(n, d, 2);
  CosineJob job = MakeJob(queries, q, targets, n, d, 5);
  job.placement = Placement::kGpuOnly;
  CosineOutput out;
  const absl::Status status = executor.Cosine(job, &out);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_GT(out.report.chunks, 1u);
  const CosineRun cpu = Run(*cpu_, MakeJob(queries, q, targets, n, d, 5));
  const CosineRun all = Run(*cpu_, MakeJob(queries, q, targets, n, d));
  ExpectSameTopK(out.top, cpu.top, all.scores, n);
}

// The whole residency path on the device: a committed segment is uploaded
// by DeviceResidency ahead of use, and a search naming it runs on the GPU
// against the copy (no targets copied in) with the CPU's results.
TEST_F(CudaExecutorTest, ResidentSegmentsAreSearchedFromTheDeviceCopy) {
  HybridExecutor& executor = Make();
  residency::DeviceResidency::Options options;
  options.gpu = gpu_.get();
  options.memory = executor.memory_monitor();
  auto residency = residency::DeviceResidency::Create(options);
  ASSERT_TRUE(residency.ok()) << residency.status();
  collections::MemoryBudget::Options budget;
  budget.limit_bytes = uint64_t{1} << 30;
  collections::CollectionStore::Options store_options;
  store_options.budget = *collections::MemoryBudget::Create(budget);
  store_options.observer = residency->get();
  auto store = *collections::CollectionStore::Create(store_options);

  const size_t q = 6, n = 50000, d = 128;
  const auto rows = testing::RandomMatrix(n, d, 21);
  collections::UploadOptions upload_options;
  upload_options.name = "c";
  upload_options.create = true;
  upload_options.dimension = d;
  upload_options.rows = n;
  auto upload = *store->BeginUpload(upload_options);
  ASSERT_TRUE(upload->Append(MatrixView{rows.data(), n, d}).ok());
  auto collection = upload->Commit();
  ASSERT_TRUE(collection.ok()) << collection.status();
  ASSERT_TRUE((*residency)->WaitIdle(absl::Seconds(60)));
  const collections::Segment& segment = *(*collection)->segments().front();
  ASSERT_TRUE(gpu_->HoldsResident(segment.id()))
      << (*residency)->stats().upload_failures << " upload failures";

  const auto queries = testing::RandomMatrix(q, d, 22);
  CosineJob job = MakeJob(queries, q, rows, n, d, 10);
  job.targets = segment.vectors();
  job.placement = Placement::kGpuOnly;
  job.resident_targets = segment.id();
  (*residency)->Touch(**collection);
  CosineOutput out;
  ASSERT_TRUE(executor.Cosine(job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(gpu_->resident_stats().hits, 1u);
  const CosineRun cpu = Run(*cpu_, MakeJob(queries, q, rows, n, d, 10));
  const CosineRun all = Run(*cpu_, MakeJob(queries, q, rows, n, d));
  ExpectSameTopK(out.top, cpu.top, all.scores, n);

  // Deleting the collection frees the device copy.
  ASSERT_TRUE(store->Delete("c").ok());
  EXPECT_FALSE(gpu_->HoldsResident(segment.id()));
  EXPECT_EQ(gpu_->ResidentBytes(), 0u);
}

}  // namespace
}  // namespace engram::dispatch
