// Tests of kernels::GpuContext on a real GPU (ctest label gpu): the paths the
// backend-level parity tests (tests/core/cuda) do not force one by one, such
// as push-only and pull-only spreading, tiny staging buffers, cuBLAS against
// the fused kernel, device-side top-k of spreading, out-of-memory, a sticky
// fault, and concurrent calls. Every test skips, saying why, without a GPU.
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/cuda_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/cpu/spread.h"
#include "kernels/cpu/topk.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/gpu_device.h"
#include "tests/kernels/cuda/fault_kernel.h"
#include "tests/testing/random_data.h"
#include "tests/testing/stop_after_checks.h"

namespace engram::kernels {
namespace {

using ::testing::HasSubstr;

// The reason GPU tests cannot run here, or empty.
std::string NoGpuReason() {
  auto devices = ListGpuDevices();
  return devices.ok() ? "" : std::string(devices.status().message());
}

class GpuContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = NoGpuReason();
    if (reason.empty()) return;
    // scripts/gpu-check.sh sets it: on the GPU machine a skip is a failure.
    if (std::getenv("ENGRAM_REQUIRE_GPU") != nullptr) {
      FAIL() << "ENGRAM_REQUIRE_GPU is set but there is no GPU: " << reason;
    }
    GTEST_SKIP() << "no GPU: " << reason;
  }

  static std::unique_ptr<GpuContext> Make(
      const GpuContext::Options& options = GpuContext::Options()) {
    auto context = GpuContext::Create(options);
    EXPECT_TRUE(context.ok()) << context.status();
    return context.ok() ? *std::move(context) : nullptr;
  }
};

struct SpreadRun {
  SpreadResult result;
  absl::Status status;
};

SpreadRun CpuSpread(const GraphView& graph,
                    const std::vector<SpreadSeed>& seeds,
                    const SpreadParams& params) {
  SpreadRun run;
  run.status = kernels::cpu::Spread(graph, seeds, params, nullptr, &run.result);
  return run;
}

SpreadRun GpuSpread(GpuContext& gpu, const GraphView& graph,
                    const std::vector<SpreadSeed>& seeds,
                    const SpreadParams& params) {
  SpreadRun run;
  run.status = gpu.Spread(graph, seeds, params, 0, &run.result, nullptr);
  return run;
}

void ExpectSameSpread(const SpreadRun& gpu, const SpreadRun& cpu) {
  ASSERT_TRUE(cpu.status.ok()) << cpu.status;
  ASSERT_TRUE(gpu.status.ok()) << gpu.status;
  // The same float64 additions in the same order: bit for bit.
  EXPECT_EQ(gpu.result.activation, cpu.result.activation);
  EXPECT_EQ(gpu.result.hops, cpu.result.hops);
  EXPECT_EQ(gpu.result.edges_traversed, cpu.result.edges_traversed);
}

std::vector<SpreadSeed> FirstSeeds(uint32_t count, float activation) {
  std::vector<SpreadSeed> seeds;
  for (uint32_t i = 0; i < count; ++i) seeds.push_back({i * 7, activation});
  return seeds;
}

SpreadParams WideParams() {
  // Little decay and a low threshold: the frontier grows to most nodes.
  SpreadParams params;
  params.decay = DecayKind::kConstant;
  params.decay_param = 0.9f;
  params.threshold = 1e-4f;
  params.max_hops = 8;
  params.max_activation = 2.0f;
  return params;
}

TEST_F(GpuContextTest, PushPullAndMixedHopsMatchTheCpuBitForBit) {
  const testing::RandomCsrGraph graph = testing::RandomGraph(3000, 6, 11);
  const std::vector<SpreadSeed> seeds = FirstSeeds(5, 0.8f);
  for (const SpreadParams& params : {SpreadParams(), WideParams()}) {
    const SpreadRun cpu = CpuSpread(graph.view(), seeds, params);
    for (double fraction : {0.0, 1.0, 1.0 / 16}) {
      SCOPED_TRACE(absl::StrCat("push_max_fraction ", fraction, ", max_hops ",
                                params.max_hops));
      GpuContext::Options options;
      options.spread_push_max_fraction = fraction;
      auto gpu = Make(options);
      ASSERT_NE(gpu, nullptr);
      ExpectSameSpread(GpuSpread(*gpu, graph.view(), seeds, params), cpu);
    }
  }
}

TEST_F(GpuContextTest, ANodeWithThousandsOfInputsIsSummedInTheCpuOrder) {
  // Nodes 0..4999 all point at the hub 5000, which points at 5001; every
  // source is a seed, so the hub's input is a 5000-term sum (a warp's job).
  constexpr uint32_t kSources = 5000;
  testing::RandomCsrGraph g;
  g.num_nodes = kSources + 2;
  g.row_offsets.push_back(0);
  for (uint32_t u = 0; u < kSources; ++u) {
    g.targets.push_back(kSources);
    g.weights.push_back(0.1f + 0.8f * static_cast<float>(u % 97) / 97.0f);
    g.row_offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  }
  g.targets.push_back(kSources + 1);
  g.weights.push_back(0.5f);
  g.row_offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  g.row_offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  std::vector<SpreadSeed> seeds;
  for (uint32_t u = 0; u < kSources; ++u) {
    seeds.push_back({u, 1e-3f * static_cast<float>(1 + u % 13)});
  }
  SpreadParams params;
  params.max_activation = 1e6f;
  const SpreadRun cpu = CpuSpread(g.view(), seeds, params);
  for (double fraction : {0.0, 1.0}) {
    SCOPED_TRACE(absl::StrCat("push_max_fraction ", fraction));
    GpuContext::Options options;
    options.spread_push_max_fraction = fraction;
    auto gpu = Make(options);
    ASSERT_NE(gpu, nullptr);
    ExpectSameSpread(GpuSpread(*gpu, g.view(), seeds, params), cpu);
  }
}

TEST_F(GpuContextTest, SpreadStopsBeforeTheNextHopWhenInterrupted) {
  // Little decay: the frontier lives for all 8 hops.
  const testing::RandomCsrGraph graph = testing::RandomGraph(3000, 6, 12);
  const std::vector<SpreadSeed> seeds = FirstSeeds(5, 0.8f);
  for (double fraction : {0.0, 1.0}) {  // pull hops, push hops
    SCOPED_TRACE(absl::StrCat("push_max_fraction ", fraction));
    GpuContext::Options options;
    options.spread_push_max_fraction = fraction;
    auto gpu = Make(options);
    ASSERT_NE(gpu, nullptr);
    testing::StopAfterChecks stop(3, absl::DeadlineExceededError("too late"));
    SpreadResult result;
    const absl::Status status = gpu->Spread(graph.view(), seeds, WideParams(),
                                            0, &result, nullptr, &stop);
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    // Checked before hops 1..4; the fourth check stopped it.
    EXPECT_EQ(stop.checks(), 4);
    // The context stays usable, and an interrupt that never fires changes
    // nothing.
    testing::StopAfterChecks never(1 << 30, absl::CancelledError("unused"));
    SpreadRun run;
    run.status = gpu->Spread(graph.view(), seeds, WideParams(), 0, &run.result,
                             nullptr, &never);
    ExpectSameSpread(run, CpuSpread(graph.view(), seeds, WideParams()));
    // One check a hop run; the last may change nothing and not count.
    EXPECT_GE(never.checks(), static_cast<int>(run.result.hops));
    EXPECT_LE(never.checks(), static_cast<int>(WideParams().max_hops));
  }
}

TEST_F(GpuContextTest, SpreadTopKOnTheDeviceMatchesTheCpuSelection) {
  // A star: node 0 feeds 1..40 with equal weights (ties), and a random graph.
  testing::RandomCsrGraph star_graph;
  star_graph.num_nodes = 60;
  star_graph.row_offsets.assign(61, 40);
  star_graph.row_offsets[0] = 0;
  for (uint32_t v = 1; v <= 40; ++v) {
    star_graph.targets.push_back(v);
    star_graph.weights.push_back(v <= 20 ? 0.5f : 0.25f);
  }
  const testing::RandomCsrGraph random = testing::RandomGraph(2000, 4, 3);
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const testing::RandomCsrGraph& star = star_graph;
  for (const testing::RandomCsrGraph* graph : {&star, &random}) {
    const std::vector<SpreadSeed> seeds = {{0, 1.0f}, {1, 0.3f}};
    const SpreadParams params;
    const SpreadRun cpu = CpuSpread(graph->view(), seeds, params);
    ASSERT_TRUE(cpu.status.ok()) << cpu.status;
    for (uint32_t k : {1u, 5u, 25u, 5000u}) {
      SCOPED_TRACE(absl::StrCat(graph->num_nodes, " nodes, k ", k));
      SpreadResult result;
      TopKList top;
      ASSERT_TRUE(
          gpu->Spread(graph->view(), seeds, params, k, &result, &top).ok());
      EXPECT_TRUE(result.activation.empty());
      EXPECT_EQ(result.hops, cpu.result.hops);
      EXPECT_EQ(top, kernels::cpu::TopKOfDense(
                         cpu.result.activation, k,
                         std::numeric_limits<float>::denorm_min()));
    }
  }
}

TEST_F(GpuContextTest, MalformedGraphsAreRejectedWithTheCpuMessages) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const std::vector<uint32_t> offsets = {0, 2, 1, 3};
  const std::vector<uint32_t> targets = {1, 2, 0};
  const std::vector<float> weights = {1, 1, 1};
  SpreadResult result;
  absl::Status status =
      gpu->Spread(GraphView{3, offsets, targets, weights}, {{0, 1.0f}},
                  SpreadParams(), 0, &result, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("row_offsets decreases at node 1"));
  const std::vector<uint32_t> good_offsets = {0, 1, 2, 3};
  const std::vector<uint32_t> bad_targets = {1, 9, 0};
  status = gpu->Spread(GraphView{3, good_offsets, bad_targets, weights},
                       {{0, 1.0f}}, SpreadParams(), 0, &result, nullptr);
  EXPECT_THAT(status.message(),
              HasSubstr("graph.targets[1] = 9 is out of range for 3 nodes"));
  // The device is fine afterwards.
  EXPECT_TRUE(gpu->Spread(GraphView{3, good_offsets, targets, weights},
                          {{0, 1.0f}}, SpreadParams(), 0, &result, nullptr)
                  .ok());
}

TEST_F(GpuContextTest, TinyStagingBuffersGiveTheSameScores) {
  const size_t q = 3, n = 5000, d = 100;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 1);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 2);
  const MatrixView qv{queries.data(), q, d};
  const MatrixView tv{targets.data(), n, d};
  std::vector<float> big(q * n), small(q * n);
  auto wide = Make();
  GpuContext::Options options;
  options.staging_bytes = size_t{64} << 10;  // 163 rows a tile: 31 tiles
  auto narrow = Make(options);
  ASSERT_NE(wide, nullptr);
  ASSERT_NE(narrow, nullptr);
  ASSERT_TRUE(wide->CosineDense(qv, tv, big.data(), n, 0).ok());
  ASSERT_TRUE(narrow->CosineDense(qv, tv, small.data(), n, 0).ok());
  EXPECT_EQ(small, big);
}

TEST_F(GpuContextTest, CublasAndFusedPathsAgree) {
  GpuContext::Options gemm_options;
  gemm_options.gemm_min_queries = 1;
  auto gemm = Make(gemm_options);
  ASSERT_NE(gemm, nullptr);
  if (!gemm->has_cublas()) {
    GTEST_SKIP() << "cuBLAS not loaded: " << gemm->cublas_status();
  }
  GpuContext::Options fused_options;
  fused_options.gemm_min_queries = 1u << 30;
  auto fused = Make(fused_options);
  ASSERT_NE(fused, nullptr);
  for (size_t d : {size_t{1}, size_t{7}, size_t{768}}) {
    const size_t q = 40, n = 3000;
    const std::vector<float> queries = testing::RandomMatrix(q, d, 5);
    const std::vector<float> targets = testing::RandomMatrix(n, d, 6);
    const MatrixView qv{queries.data(), q, d};
    const MatrixView tv{targets.data(), n, d};
    std::vector<float> a(q * n), b(q * n);
    ASSERT_TRUE(gemm->CosineDense(qv, tv, a.data(), n, 0).ok());
    ASSERT_TRUE(fused->CosineDense(qv, tv, b.data(), n, 0).ok());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_NEAR(a[i], b[i], 1e-5) << "d " << d << ", entry " << i;
    }
  }
}

TEST_F(GpuContextTest, OutOfMemoryIsReportedAndTheContextStaysUsable) {
  GpuContext::Options options;
  options.memory_limit_bytes = uint64_t{32} << 20;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  // Top-k keeps all Q x N scores on the device: 64 x 200000 floats = 51 MB.
  const size_t q = 64, n = 200000, d = 4;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 1);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 2);
  std::vector<TopKList> top;
  const absl::Status status = gpu->CosineTopK(
      MatrixView{queries.data(), q, d}, MatrixView{targets.data(), n, d}, 5,
      -std::numeric_limits<float>::infinity(), 0, &top);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kOutOfMemory);
  EXPECT_EQ(dispatch::ClassifyBackendError(
                dispatch::CudaBackend::ToBackendError(status)),
            dispatch::BackendErrorClass::kOutOfMemory);
  // A quarter of the queries fits, on the same context and thread: the OOM
  // left in the thread's last-error slot must not be reported again by this
  // call's first kernel launch check (what failed here on the H200).
  const absl::Status retry = gpu->CosineTopK(
      MatrixView{queries.data(), q / 4, d}, MatrixView{targets.data(), n, d}, 5,
      -std::numeric_limits<float>::infinity(), 0, &top);
  EXPECT_TRUE(retry.ok()) << retry;
  EXPECT_EQ(top.size(), q / 4);
  // ... with the CPU's answer (the same entries; scores within 1e-5).
  std::vector<TopKList> cpu_top;
  ASSERT_TRUE(kernels::cpu::CosineTopK(MatrixView{queries.data(), q / 4, d},
                                       MatrixView{targets.data(), n, d}, 5,
                                       -std::numeric_limits<float>::infinity(),
                                       0, nullptr, &cpu_top)
                  .ok());
  ASSERT_EQ(top.size(), cpu_top.size());
  for (size_t j = 0; j < top.size(); ++j) {
    ASSERT_EQ(top[j].size(), cpu_top[j].size()) << "query " << j;
    for (size_t i = 0; i < top[j].size(); ++i) {
      EXPECT_EQ(top[j][i].index, cpu_top[j][i].index) << "query " << j;
      EXPECT_NEAR(top[j][i].score, cpu_top[j][i].score, 1e-5);
    }
  }
  // Twice in a row, then the other operations, still usable.
  EXPECT_EQ(gpu->CosineTopK(MatrixView{queries.data(), q, d},
                            MatrixView{targets.data(), n, d}, 5,
                            -std::numeric_limits<float>::infinity(), 0, &top)
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(gpu->CosineTopK(MatrixView{queries.data(), q, d},
                            MatrixView{targets.data(), n, d}, 5,
                            -std::numeric_limits<float>::infinity(), 0, &top)
                .code(),
            absl::StatusCode::kResourceExhausted);
  std::vector<float> dense(2 * 1000);
  const absl::Status dense_status = gpu->CosineDense(
      MatrixView{queries.data(), 2, d}, MatrixView{targets.data(), 1000, d},
      dense.data(), 1000, 0);
  EXPECT_TRUE(dense_status.ok()) << dense_status;
  const testing::RandomCsrGraph graph = testing::RandomGraph(2000, 8, 3);
  const SpreadRun spread =
      GpuSpread(*gpu, graph.view(), FirstSeeds(3, 1.0f), SpreadParams());
  EXPECT_TRUE(spread.status.ok()) << spread.status;
  auto memory = gpu->QueryMemory();
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->total_bytes, options.memory_limit_bytes);
  EXPECT_LE(memory->free_bytes, memory->total_bytes);
}

// The mechanism of the OOM failure above without an OOM: a failed CUDA call
// made by other code on this thread leaves its error in the thread's
// last-error slot; the next call on the context must not report it.
TEST_F(GpuContextTest, AStaleErrorLeftOnTheThreadDoesNotFailTheNextCall) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const size_t q = 20, n = 3000, d = 64;  // q >= 17: cuBLAS when loaded
  const std::vector<float> queries = testing::RandomMatrix(q, d, 4);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 5);
  std::vector<TopKList> top;
  for (size_t rows : {size_t{2}, q}) {
    SCOPED_TRACE(rows);
    int count = 0;
    ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
    ASSERT_EQ(cudaSetDevice(count + 3), cudaErrorInvalidDevice);
    ASSERT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
    const absl::Status status =
        gpu->CosineTopK(MatrixView{queries.data(), rows, d},
                        MatrixView{targets.data(), n, d}, 3, -1.0f, 0, &top);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(top.size(), rows);
  }
  const testing::RandomCsrGraph graph = testing::RandomGraph(1000, 4, 6);
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  ASSERT_EQ(cudaSetDevice(count + 3), cudaErrorInvalidDevice);
  const SpreadRun spread =
      GpuSpread(*gpu, graph.view(), FirstSeeds(2, 1.0f), SpreadParams());
  EXPECT_TRUE(spread.status.ok()) << spread.status;
}

TEST_F(GpuContextTest, QueryMemoryCountsThePoolsIdleMemoryAsFree) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  auto before = gpu->QueryMemory();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->total_bytes, gpu->device().total_memory_bytes);
  EXPECT_GT(before->free_bytes, 0u);
  // A call leaves its memory in the pool, idle: still free to us.
  const size_t q = 2, n = 100000, d = 256;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 1);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 2);
  std::vector<float> out(q * n);
  ASSERT_TRUE(gpu->CosineDense(MatrixView{queries.data(), q, d},
                               MatrixView{targets.data(), n, d}, out.data(), n,
                               0)
                  .ok());
  auto after = gpu->QueryMemory();
  ASSERT_TRUE(after.ok()) << after.status();
  // Other processes may allocate meanwhile; allow them 64 MiB.
  EXPECT_GE(after->free_bytes + (uint64_t{64} << 20), before->free_bytes);
}

TEST_F(GpuContextTest, ConcurrentCallsOnFewerLanesGiveTheSameResults) {
  GpuContext::Options options;
  options.max_streams = 2;
  options.staging_bytes = size_t{256} << 10;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  const size_t q = 4, n = 20000, d = 96;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 8);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 9);
  const MatrixView qv{queries.data(), q, d};
  const MatrixView tv{targets.data(), n, d};
  const testing::RandomCsrGraph graph = testing::RandomGraph(5000, 8, 4);
  const std::vector<SpreadSeed> seeds = FirstSeeds(3, 1.0f);
  std::vector<TopKList> expected_top;
  ASSERT_TRUE(gpu->CosineTopK(qv, tv, 10, -1.0f, 0, &expected_top).ok());
  const SpreadRun expected_spread =
      GpuSpread(*gpu, graph.view(), seeds, SpreadParams());
  ASSERT_TRUE(expected_spread.status.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        std::vector<TopKList> top;
        if (!gpu->CosineTopK(qv, tv, 10, -1.0f, 0, &top).ok() ||
            top != expected_top) {
          ++mismatches[t];
        }
        const SpreadRun run =
            GpuSpread(*gpu, graph.view(), seeds, SpreadParams());
        if (!run.status.ok() ||
            run.result.activation != expected_spread.result.activation) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

// Runs in a child process of its own: makes the device fault, then checks
// that the context and the backend report it as sticky and fail fast after.
[[noreturn]] void FaultThenExpectStickyErrors() {
  auto fail = [](const char* what, const absl::Status& status) {
    std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
    std::_Exit(1);
  };
  auto context = GpuContext::Create(GpuContext::Options());
  if (!context.ok()) fail("create", context.status());
  auto backend =
      dispatch::CudaBackend::Create(dispatch::CudaBackend::Options());
  if (!backend.ok()) fail("create backend", backend.status());
  const std::vector<float> data = testing::RandomMatrix(8, 16, 1);
  const MatrixView view{data.data(), 8, 16};
  std::vector<float> out(64);
  absl::Status status = (*context)->CosineDense(view, view, out.data(), 8, 0);
  if (!status.ok()) fail("first call", status);
  const cudaError_t fault = cuda::testing::TriggerIllegalAddress();
  if (cuda::ClassifyCudaError(fault) != GpuErrorKind::kSticky) {
    std::fprintf(stderr, "the fault gave %s\n", cudaGetErrorName(fault));
    std::_Exit(1);
  }
  status = (*context)->CosineDense(view, view, out.data(), 8, 0);
  if (GpuErrorKindOf(status) != GpuErrorKind::kSticky) fail("after", status);
  status = (*context)->CosineDense(view, view, out.data(), 8, 0);
  if (GpuErrorKindOf(status) != GpuErrorKind::kSticky ||
      status.message().find("earlier error") == std::string::npos) {
    fail("fast failure", status);
  }
  if (GpuErrorKindOf((*context)->QueryMemory().status()) !=
      GpuErrorKind::kSticky) {
    fail("memory probe", (*context)->QueryMemory().status());
  }
  dispatch::CosineJob job;
  job.queries = view;
  job.targets = view;
  dispatch::CosineOutput output;
  output.scores = absl::MakeSpan(out);
  status = (*backend)->Cosine(job, &output);
  if (dispatch::ClassifyBackendError(status) !=
      dispatch::BackendErrorClass::kSticky) {
    fail("backend", status);
  }
  std::fprintf(stderr, "sticky verdict: ok\n");
  std::_Exit(0);
}

using GpuContextDeathTest = GpuContextTest;

TEST_F(GpuContextDeathTest, AnIllegalAddressIsStickyAndLaterCallsFailFast) {
  // The child re-executes this binary, so it starts with a fresh context.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(FaultThenExpectStickyErrors(), ::testing::ExitedWithCode(0),
              "sticky verdict: ok");
}

}  // namespace
}  // namespace engram::kernels
