#include "core/dispatch/hybrid_executor.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/dispatch/executor_test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/stop_after_checks.h"

namespace engram::dispatch {
namespace {

using ::engram::dispatch::testing::CosineCase;
using ::engram::dispatch::testing::CountingObserver;
using ::engram::dispatch::testing::RecordingBackend;
using ::engram::dispatch::testing::ScoresMatch;
using ::engram::dispatch::testing::TopKMatches;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Le;

constexpr uint64_t kGiB = uint64_t{1} << 30;

class HybridExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu_inner_ = *CpuBackend::Create({});
    dispatch::testing::SimulatedGpuBackend::Options gpu;
    gpu.clock = &clock_;
    gpu.launch_overhead = absl::Microseconds(10);
    gpu.seconds_per_unit = 1e-12;
    gpu.memory_bytes = kGiB;
    gpu_inner_ = *dispatch::testing::SimulatedGpuBackend::Create(gpu);
    cpu_ = std::make_unique<RecordingBackend>(cpu_inner_.get());
    gpu_ = std::make_unique<RecordingBackend>(gpu_inner_.get());
  }

  static HybridConfig TestConfig() {
    HybridConfig c;
    c.min_gpu_work_cosine = 1000;
    c.min_gpu_work_spread = 10;
    c.probe_enabled = false;
    c.min_chunk_queries = 1;
    c.max_chunk_queries = 1024;
    c.max_oom_retries = 4;
    c.memory.refresh_interval =
        absl::ZeroDuration();  // every request sees the device's memory
    c.breaker.consecutive_failures_to_open = 3;
    c.breaker.open_initial = absl::Seconds(1);
    c.breaker.half_open_probes = 1;
    return c;
  }

  HybridExecutor& Make(const HybridConfig& config = TestConfig(),
                       bool with_gpu = true) {
    store_ = *ConfigStore::Create(config);
    HybridExecutor::Options options;
    options.cpu = cpu_.get();
    options.gpu = with_gpu ? gpu_.get() : nullptr;
    options.gpu_unavailable_reason = "built without the CUDA backend";
    options.config = store_.get();
    options.observer = &observer_;
    options.clock = &clock_;
    auto executor = HybridExecutor::Create(options);
    EXPECT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    return *executor_;
  }

  // Runs a dense cosine job; returns the status, fills *scores and *out.
  absl::Status Dense(CosineCase& c, CosineOutput* out,
                     std::vector<float>* scores,
                     Placement placement = Placement::kAuto) {
    scores->assign(c.q * c.n, std::nanf(""));
    out->scores = absl::MakeSpan(*scores);
    c.job.placement = placement;
    return executor_->Cosine(c.job, out);
  }

  // Footprint bytes of `rows` query rows of `c`.
  static uint64_t BytesFor(const CosineCase& c, uint64_t rows) {
    return CosineFootprint(c.job).BytesFor(rows);
  }

  ManualClock clock_;
  std::unique_ptr<CpuBackend> cpu_inner_;
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu_inner_;
  std::unique_ptr<RecordingBackend> cpu_;
  std::unique_ptr<RecordingBackend> gpu_;
  std::unique_ptr<ConfigStore> store_;
  CountingObserver observer_;
  std::unique_ptr<HybridExecutor> executor_;
};

TEST_F(HybridExecutorTest, CreateNeedsACpuBackendAndAConfig) {
  HybridExecutor::Options options;
  EXPECT_FALSE(HybridExecutor::Create(options).ok());
  options.cpu = cpu_.get();
  EXPECT_FALSE(HybridExecutor::Create(options).ok());
  store_ = *ConfigStore::Create(TestConfig());
  options.config = store_.get();
  options.gpu = cpu_.get();  // a CPU backend where the GPU goes
  EXPECT_FALSE(HybridExecutor::Create(options).ok());
  options.gpu = nullptr;
  auto executor = HybridExecutor::Create(options);
  ASSERT_TRUE(executor.ok());
  EXPECT_FALSE((*executor)->has_gpu());
  EXPECT_EQ((*executor)->memory_monitor(), nullptr);
}

TEST_F(HybridExecutorTest, ReportsCapabilities) {
  BackendCapabilities cpu = cpu_->Capabilities();
  EXPECT_EQ(cpu.name, "cpu");
  EXPECT_EQ(cpu.kind, BackendKind::kCpu);
  EXPECT_FALSE(cpu.device_name.empty());  // the SIMD target
  EXPECT_FALSE(cpu.has_memory_probe);
  EXPECT_EQ(cpu_->QueryMemory().status().code(),
            absl::StatusCode::kUnimplemented);
  BackendCapabilities gpu = gpu_->Capabilities();
  EXPECT_EQ(gpu.name, "simulated-gpu");
  EXPECT_EQ(gpu.kind, BackendKind::kGpu);
  EXPECT_EQ(gpu.device_name, "Simulated GPU");
  EXPECT_TRUE(gpu.has_memory_probe);
  EXPECT_EQ(gpu.memory_bytes, kGiB);
  EXPECT_EQ(gpu_->QueryMemory()->total_bytes, kGiB);
}

TEST_F(HybridExecutorTest, SmallWorkGoesToTheCpu) {
  Make();
  CosineCase c(2, 10, 8, 1);  // work 160 < 1000
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.decided_by, "work_below_min");
  EXPECT_EQ(out.report.fallback_reason, "");
  EXPECT_EQ(out.report.chunks, 1u);
  EXPECT_TRUE(gpu_->cosine_rows().empty());
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
}

// Three device failures: TestConfig's breaker opens.
void OpenBreaker(CircuitBreaker& breaker) {
  for (int i = 0; i < 3; ++i) {
    CircuitBreaker::Permit permit = breaker.Admit();
    breaker.Record(permit, absl::InternalError("device lost"));
  }
}

TEST_F(HybridExecutorTest, SmallWorkPaysForNoBreakerMemoryOrModelStep) {
  Make();  // memory read on every request that assesses it
  CosineCase small(2, 10, 8, 1);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(small, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "work_below_min");
  EXPECT_EQ(gpu_->memory_queries(), 0);
  // With the breaker open, a small request is still decided by its size:
  // it never asked the breaker.
  OpenBreaker(executor_->breaker());
  ASSERT_EQ(executor_->breaker().Snapshot().state, BreakerState::kOpen);
  ASSERT_TRUE(Dense(small, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "work_below_min");
  EXPECT_TRUE(ScoresMatch(scores, small.Reference()));
  // A request the GPU could take does assess memory.
  CosineCase large(8, 512, 16, 2);
  ASSERT_TRUE(Dense(large, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "breaker_open");
  EXPECT_GE(gpu_->memory_queries(), 1);
}

TEST_F(HybridExecutorTest, LargeWorkGoesToTheGpuByDefault) {
  Make();
  CosineCase c(32, 64, 16, 2);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.decided_by, "default");
  EXPECT_EQ(out.report.chunks, 1u);
  EXPECT_TRUE(cpu_->cosine_rows().empty());
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
}

TEST_F(HybridExecutorTest, ForcedCpuStaysOnTheCpu) {
  Make();
  CosineCase c(32, 64, 16, 3);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores, Placement::kCpuOnly).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.decided_by, "placement");
  EXPECT_TRUE(gpu_->cosine_rows().empty());
  // A CPU_ONLY request never takes a breaker permit or probes memory.
  EXPECT_EQ(executor_->memory_monitor()->Cached().has_reading, false);
}

TEST_F(HybridExecutorTest, NoGpuMeansCpuAndGpuOnlyIsUnavailable) {
  Make(TestConfig(), /*with_gpu=*/false);
  CosineCase c(32, 64, 16, 4);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "gpu_unavailable");
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  absl::Status status = Dense(c, &out, &scores, Placement::kGpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("built without the CUDA backend"));
  EXPECT_EQ(out.report.decided_by, "gpu_unavailable");
}

TEST_F(HybridExecutorTest, CpuAndGpuResultsAreEquivalent) {
  Make();
  for (uint32_t top_k : {0u, 5u}) {
    CosineCase c(40, 100, 24, 5, top_k);
    CosineOutput on_cpu;
    CosineOutput on_gpu;
    std::vector<float> cpu_scores;
    std::vector<float> gpu_scores;
    ASSERT_TRUE(Dense(c, &on_cpu, &cpu_scores, Placement::kCpuOnly).ok());
    ASSERT_TRUE(Dense(c, &on_gpu, &gpu_scores, Placement::kGpuOnly).ok());
    EXPECT_EQ(on_cpu.report.backend, BackendKind::kCpu);
    EXPECT_EQ(on_gpu.report.backend, BackendKind::kGpu);
    if (top_k == 0) {
      EXPECT_TRUE(ScoresMatch(gpu_scores, c.Reference()));
      EXPECT_TRUE(ScoresMatch(cpu_scores, c.Reference()));
    } else {
      const float all = -std::numeric_limits<float>::infinity();
      EXPECT_TRUE(TopKMatches(on_gpu.top, c.Reference(), c.q, c.n, 5, all));
      EXPECT_TRUE(TopKMatches(on_cpu.top, c.Reference(), c.q, c.n, 5, all));
    }
  }
}

TEST_F(HybridExecutorTest, OrthogonalZeroAndNegativeVectors) {
  Make();
  const std::vector<float> queries = {1, 0, 0, 0};  // q0 = (1,0), q1 = 0
  const std::vector<float> targets = {0, 1, 0, 0, -1, 0, 2, 0, -3, 3};
  CosineJob job;
  job.queries = kernels::MatrixView{queries.data(), 2, 2};
  job.targets = kernels::MatrixView{targets.data(), 5, 2};
  for (Placement placement : {Placement::kCpuOnly, Placement::kGpuOnly}) {
    std::vector<float> scores(10, std::nanf(""));
    CosineOutput out;
    out.scores = absl::MakeSpan(scores);
    job.placement = placement;
    ASSERT_TRUE(executor_->Cosine(job, &out).ok());
    const float r = 1.0f / std::sqrt(2.0f);
    EXPECT_NEAR(scores[0], 0.0f, 1e-6);   // orthogonal
    EXPECT_NEAR(scores[1], 0.0f, 1e-6);   // zero target
    EXPECT_NEAR(scores[2], -1.0f, 1e-6);  // opposite
    EXPECT_NEAR(scores[3], 1.0f, 1e-6);   // same direction, longer
    EXPECT_NEAR(scores[4], -r, 1e-6);
    for (int t = 5; t < 10; ++t) EXPECT_EQ(scores[t], 0.0f);  // zero query
  }
}

TEST_F(HybridExecutorTest, TracksPerformancePerBackend) {
  Make();
  CosineCase c(32, 64, 16, 6);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  // The simulated device spends its modelled time on the injected clock, so
  // the executor measures exactly that.
  const double modelled = 10e-6 + 1e-12 * static_cast<double>(c.job.work());
  // absl::Duration keeps quarter nanoseconds.
  EXPECT_NEAR(out.report.compute_seconds, modelled, 1e-9);
  PerfSnapshot s =
      executor_->performance_model().Snapshot(Operation::kCosine, c.job.work());
  EXPECT_EQ(s.gpu.samples, 1u);
  EXPECT_EQ(s.cpu.samples, 0u);  // GPU timings never enter CPU buckets
  EXPECT_NEAR(s.gpu.p50_seconds, modelled, 1e-9);
  ASSERT_TRUE(Dense(c, &out, &scores, Placement::kCpuOnly).ok());
  s = executor_->performance_model().Snapshot(Operation::kCosine, c.job.work());
  EXPECT_EQ(s.gpu.samples, 1u);
  EXPECT_EQ(s.cpu.samples, 1u);
}

TEST_F(HybridExecutorTest, MixedBatchSizesAreAllCorrectAndKeptApart) {
  Make();
  uint64_t seed = 100;
  for (size_t q : {1, 3, 17, 64}) {
    for (size_t n : {1, 9, 128}) {
      for (uint32_t k : {0u, 4u}) {
        CosineCase c(q, n, 12, seed++, k);
        CosineOutput out;
        std::vector<float> scores;
        ASSERT_TRUE(Dense(c, &out, &scores).ok());
        if (k == 0) {
          ASSERT_TRUE(ScoresMatch(scores, c.Reference())) << q << "x" << n;
        } else {
          ASSERT_TRUE(TopKMatches(out.top, c.Reference(), q, n, k,
                                  -std::numeric_limits<float>::infinity()))
              << q << "x" << n;
        }
      }
    }
  }
  // Different sizes landed in different buckets.
  EXPECT_GE(executor_->performance_model().SnapshotAll().size(), 5u);
}

TEST_F(HybridExecutorTest, ThresholdConfigurationTakesEffectOnTheNextRequest) {
  Make();
  CosineCase c(32, 64, 16, 7);  // work 32768
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  HybridConfig raised = TestConfig();
  raised.min_gpu_work_cosine = 1 << 20;
  ASSERT_TRUE(store_->Update(raised).ok());
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.decided_by, "work_below_min");
}

TEST_F(HybridExecutorTest, ChunksFollowTheMemoryBudget) {
  Make();
  CosineCase c(100, 256, 32, 8);
  // Leave room for about 10 query rows under the 80% margin.
  const uint64_t free_wanted = BytesFor(c, 10) * 10 / 8 + 8;
  gpu_inner_->SetReservedBytes(kGiB - free_wanted);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores, Placement::kGpuOnly).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.chunks, 10u);
  EXPECT_THAT(gpu_->cosine_rows(), Each(Le(10u)));
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
}

TEST_F(HybridExecutorTest, ChunkCapSplitsLargeBatches) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 7;
  Make(config);
  CosineCase c(50, 40, 8, 9, /*top_k=*/3);
  CosineOutput out;
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.report.chunks, 8u);  // 7 x 7 + 1
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(7, 7, 7, 7, 7, 7, 7, 1));
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 3,
                          -std::numeric_limits<float>::infinity()));
  EXPECT_EQ(observer_.count("chunk:gpu"), 8);
}

// The original never retried the GPU with a smaller chunk after an OOM.
TEST_F(HybridExecutorTest, OomRetriesAtHalfSizeOnTheGpuBeforeFallingBack) {
  Make();
  CosineCase c(64, 128, 16, 10);
  gpu_inner_->SetOomAboveBytes(BytesFor(c, 16));
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(64, 32, 16, 16, 16, 16));
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.fallback_reason, "");
  EXPECT_EQ(out.report.chunks, 4u);
  EXPECT_TRUE(cpu_->cosine_rows().empty());
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
  EXPECT_EQ(executor_->counters().ooms, 2u);
  EXPECT_EQ(executor_->counters().oom_retries, 2u);
  EXPECT_EQ(observer_.count("oom"), 2);
  EXPECT_EQ(observer_.count("oom_retry"), 2);
  // OOM says nothing about the device's health.
  EXPECT_EQ(executor_->breaker().Snapshot().consecutive_failures, 0u);
  EXPECT_EQ(executor_->breaker().Snapshot().state, BreakerState::kClosed);
}

TEST_F(HybridExecutorTest, OomAtTheFloorFinishesOnTheCpu) {
  HybridConfig config = TestConfig();
  config.min_chunk_queries = 8;
  config.max_oom_retries = 10;
  Make(config);
  CosineCase c(64, 128, 16, 11);
  gpu_inner_->SetOomAboveBytes(BytesFor(c, 4));  // even the floor fails
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(64, 32, 16, 8));
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(64));
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.fallback_reason, "gpu_oom");
  EXPECT_EQ(out.report.decided_by, "default");
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
  EXPECT_EQ(observer_.count("fallback:gpu_oom"), 1);
  EXPECT_EQ(executor_->counters().fallbacks_gpu_oom, 1u);
}

TEST_F(HybridExecutorTest, OomRetriesAreBounded) {
  HybridConfig config = TestConfig();
  config.max_oom_retries = 1;
  Make(config);
  CosineCase c(64, 128, 16, 12);
  gpu_inner_->SetOomAboveBytes(BytesFor(c, 4));
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(64, 32));
  EXPECT_EQ(out.report.fallback_reason, "gpu_oom");
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
}

TEST_F(HybridExecutorTest, FinishedChunksAreNeverRecomputed) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 10;
  config.max_oom_retries = 0;
  Make(config);
  CosineCase c(45, 64, 16, 13, /*top_k=*/4);
  // Chunks 0 and 1 succeed on the GPU, then it runs out of memory.
  gpu_inner_->FailNextCalls(100, DeviceOutOfMemoryError("injected"),
                            /*after=*/2);
  CosineOutput out;
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(10, 10, 10));
  EXPECT_EQ(gpu_->rows_computed(), 20u);
  // The CPU computes exactly the rows the GPU did not finish.
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(10, 10, 5));
  EXPECT_EQ(cpu_->rows_computed() + gpu_->rows_computed(), 45u);
  EXPECT_EQ(out.report.backend, BackendKind::kMixed);
  EXPECT_EQ(out.report.fallback_reason, "gpu_oom");
  EXPECT_EQ(out.report.chunks, 5u);
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 4,
                          -std::numeric_limits<float>::infinity()));
  EXPECT_EQ(observer_.count("compute:cpu"), 1);
  EXPECT_EQ(observer_.count("compute:gpu"), 1);
  EXPECT_EQ(observer_.work_items("gpu"), 20u * 64);
  EXPECT_EQ(observer_.work_items("cpu"), 25u * 64);
}

TEST_F(HybridExecutorTest, DeviceErrorFeedsTheBreakerAndFinishesOnTheCpu) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 16;
  Make(config);
  CosineCase c(48, 64, 16, 14);
  gpu_inner_->FailNextCalls(1, absl::InternalError("launch failed"),
                            /*after=*/1);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  // The failed chunk and the rest went to the CPU; the GPU was not retried.
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(16, 16));
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(16, 16));
  EXPECT_EQ(out.report.backend, BackendKind::kMixed);
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
  BreakerSnapshot breaker = executor_->breaker().Snapshot();
  EXPECT_EQ(breaker.consecutive_failures, 1u);
  EXPECT_EQ(breaker.last_error, "launch failed");
  EXPECT_EQ(executor_->counters().fallbacks_gpu_error, 1u);
  EXPECT_EQ(observer_.count("error:gpu"), 1);
  EXPECT_EQ(observer_.count("fallback:gpu_error"), 1);
}

TEST_F(HybridExecutorTest, TheSuccessRateCountsRequestsNotChunks) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 16;
  Make(config);
  CosineCase c(64, 64, 16, 31);  // four GPU chunks per request
  CosineOutput out;
  std::vector<float> scores;
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(Dense(c, &out, &scores).ok());
    ASSERT_EQ(out.report.chunks, 4u);
  }
  gpu_inner_->FailNextCalls(1, absl::InternalError("launch failed"),
                            /*after=*/1);
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  const PerfSnapshot perf =
      executor_->performance_model().Snapshot(Operation::kCosine, c.job.work());
  // Nine good requests and one failed: not 37 chunk successes against it.
  EXPECT_EQ(perf.gpu.outcomes, 10u);
  EXPECT_DOUBLE_EQ(perf.gpu.success_rate, 0.9);
  EXPECT_EQ(perf.cpu.outcomes, 1u);  // the fallback's request
}

// A custom policy that always picks the GPU, whatever the snapshot says.
class AlwaysGpuPolicy final : public DispatchPolicy {
 public:
  DispatchDecision Decide(const DispatchSnapshot& snapshot) const override {
    seen_work.push_back(snapshot.work);
    seen_memory_reading.push_back(snapshot.memory.has_reading);
    DispatchDecision d;
    d.backend = BackendKind::kGpu;
    d.rule = "always_gpu";
    return d;
  }
  mutable std::vector<uint64_t> seen_work;
  mutable std::vector<bool> seen_memory_reading;
};

TEST_F(HybridExecutorTest, ACustomPolicyDecidesButNeverPassesAnOpenBreaker) {
  AlwaysGpuPolicy policy;
  store_ = *ConfigStore::Create(TestConfig());
  HybridExecutor::Options options;
  options.cpu = cpu_.get();
  options.gpu = gpu_.get();
  options.config = store_.get();
  options.policy = &policy;
  options.clock = &clock_;
  auto executor = *HybridExecutor::Create(options);
  // Below min_gpu_work too: a custom policy sees the whole snapshot and its
  // choice stands.
  CosineCase small(2, 10, 8, 41);
  CosineOutput out;
  std::vector<float> scores(small.q * small.n);
  out.scores = absl::MakeSpan(scores);
  ASSERT_TRUE(executor->Cosine(small.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.decided_by, "always_gpu");
  ASSERT_EQ(policy.seen_work.size(), 1u);
  EXPECT_EQ(policy.seen_work[0], small.job.work());
  EXPECT_TRUE(policy.seen_memory_reading[0]);
  EXPECT_TRUE(ScoresMatch(scores, small.Reference()));

  // With the breaker open the GPU never runs: AUTO goes to the CPU,
  // GPU_ONLY is refused.
  OpenBreaker(executor->breaker());
  ASSERT_EQ(executor->breaker().Snapshot().state, BreakerState::kOpen);
  const size_t gpu_calls = gpu_->cosine_rows().size();
  ASSERT_TRUE(executor->Cosine(small.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.decided_by, "breaker_open");
  EXPECT_TRUE(ScoresMatch(scores, small.Reference()));
  small.job.placement = Placement::kGpuOnly;
  EXPECT_EQ(executor->Cosine(small.job, &out).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(gpu_->cosine_rows().size(), gpu_calls);
}

TEST_F(HybridExecutorTest, WrongSizeGpuResultIsAnErrorNotSilent) {
  Make();
  CosineCase c(20, 30, 8, 15, /*top_k=*/2);
  gpu_->set_drop_one_list(true);
  CosineOutput out;
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_THAT(executor_->breaker().Snapshot().last_error,
              HasSubstr("returned 19 top-k lists for 20 queries"));
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 2,
                          -std::numeric_limits<float>::infinity()));
}

TEST_F(HybridExecutorTest, GpuOnlyNeverFallsBack) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 8;
  config.max_oom_retries = 1;
  Make(config);
  CosineCase c(32, 64, 16, 16);
  CosineOutput out;
  std::vector<float> scores;

  // Out of memory at the smallest chunk: RESOURCE_EXHAUSTED.
  gpu_inner_->SetOomAboveBytes(BytesFor(c, 2));
  absl::Status status = Dense(c, &out, &scores, Placement::kGpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("PLACEMENT_GPU_ONLY"));
  gpu_inner_->SetOomAboveBytes(0);

  // A device failure in chunk 2: UNAVAILABLE, naming the chunk.
  gpu_inner_->FailNextCalls(1, absl::InternalError("ecc error"), /*after=*/2);
  status = Dense(c, &out, &scores, Placement::kGpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(FailedChunkIndex(status), 2u);
  EXPECT_THAT(status.message(), HasSubstr("ecc error"));

  // Larger than the device: refused before running.
  gpu_inner_->SetReservedBytes(kGiB - BytesFor(c, 1) / 2);
  status = Dense(c, &out, &scores, Placement::kGpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(out.report.decided_by, "memory_pressure");
  gpu_inner_->SetReservedBytes(0);

  // Breaker open: UNAVAILABLE.
  executor_->breaker().ForceOpen("test");
  status = Dense(c, &out, &scores, Placement::kGpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(out.report.decided_by, "breaker_open");

  EXPECT_TRUE(cpu_->cosine_rows().empty());
  EXPECT_EQ(observer_.count("fallback:gpu_oom") +
                observer_.count("fallback:gpu_error"),
            0);
}

TEST_F(HybridExecutorTest, DisabledCpuFallbackFailsTheRequest) {
  HybridConfig config = TestConfig();
  config.cpu_fallback = false;
  Make(config);
  CosineCase c(32, 64, 16, 17);
  gpu_inner_->FailNextCalls(1, absl::InternalError("xid 79"));
  CosineOutput out;
  std::vector<float> scores;
  absl::Status status = Dense(c, &out, &scores);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("CPU fallback is disabled"));
  EXPECT_TRUE(cpu_->cosine_rows().empty());
  // The CPU still serves what the policy sends it.
  CosineCase small(2, 4, 4, 18);
  ASSERT_TRUE(Dense(small, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
}

TEST_F(HybridExecutorTest, ClientErrorsAreReturnedAndNeverCountAgainstTheGpu) {
  Make();
  CosineCase c(32, 64, 16, 19);
  c.queries[5 * 16 + 3] = std::nanf("");
  CosineOutput out;
  std::vector<float> scores;
  absl::Status status = Dense(c, &out, &scores);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(executor_->breaker().Snapshot().consecutive_failures, 0u);
  EXPECT_EQ(executor_->breaker().Snapshot().window_calls, 0u);
  EXPECT_EQ(out.report.fallback_reason, "");
  EXPECT_TRUE(cpu_->cosine_rows().empty());
}

TEST_F(HybridExecutorTest, BreakerOpensRoutesToTheCpuAndRecovers) {
  Make();
  CosineCase c(32, 64, 16, 20);
  CosineOutput out;
  std::vector<float> scores;
  gpu_inner_->FailNextCalls(3, absl::UnavailableError("device busy"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Dense(c, &out, &scores).ok());
    EXPECT_EQ(out.report.fallback_reason, "gpu_error");
    EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
  }
  EXPECT_EQ(executor_->breaker().Snapshot().state, BreakerState::kOpen);
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "breaker_open");
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.fallback_reason, "");

  clock_.Advance(absl::Seconds(1));           // the open wait
  ASSERT_TRUE(Dense(c, &out, &scores).ok());  // the half-open probe
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(executor_->breaker().Snapshot().state, BreakerState::kClosed);
  EXPECT_EQ(observer_.count("breaker:open"), 1);
  EXPECT_EQ(observer_.count("breaker:half_open"), 1);
  EXPECT_EQ(observer_.count("breaker:closed"), 1);
}

TEST_F(HybridExecutorTest, StickyErrorForcesTheBreakerOpenForGood) {
  Make();
  CosineCase c(32, 64, 16, 21);
  CosineOutput out;
  std::vector<float> scores;
  gpu_inner_->InjectStickyError();
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  EXPECT_EQ(executor_->breaker().Snapshot().state, BreakerState::kForcedOpen);
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "breaker_open");
  EXPECT_EQ(observer_.count("breaker:forced_open"), 1);
  EXPECT_EQ(Dense(c, &out, &scores, Placement::kGpuOnly).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(HybridExecutorTest, MemoryPressureSendsWorkToTheCpu) {
  Make();
  CosineCase c(32, 64, 16, 22);
  CosineOutput out;
  std::vector<float> scores;
  gpu_inner_->SetReservedBytes(kGiB / 20 * 19);  // 95% used
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "memory_pressure");
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  gpu_inner_->SetReservedBytes(0);
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
}

TEST_F(HybridExecutorTest, FailingMemoryProbeIsCountedAndGoesStale) {
  Make();
  CosineCase c(32, 64, 16, 23);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());  // a good reading
  gpu_inner_->SetMemoryProbeError(absl::InternalError("nvml timeout"));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);  // still fresh enough
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "memory_pressure");
  MemoryAssessment memory = executor_->memory_monitor()->Cached();
  EXPECT_TRUE(memory.stale);
  EXPECT_EQ(memory.probe_failures, 2u);
  EXPECT_EQ(memory.last_probe_error, "nvml timeout");
}

TEST_F(HybridExecutorTest, PredictedSlowerKeepsWorkOnTheCpu) {
  Make();
  CosineCase c(32, 64, 16, 24);
  PerformanceModel& model = executor_->performance_model();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(model
                    .RecordTiming(Operation::kCosine, BackendKind::kCpu,
                                  c.job.work(), 0.001)
                    .ok());
    ASSERT_TRUE(model
                    .RecordTiming(Operation::kCosine, BackendKind::kGpu,
                                  c.job.work(), 0.002)
                    .ok());
  }
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "predicted_slower");
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
}

TEST_F(HybridExecutorTest, ProbesTheOtherBackendAtABoundedRate) {
  HybridConfig config = TestConfig();
  config.probe_enabled = true;
  config.probe_max_share = 1.0;  // the intervals bound the probes here
  config.model.probe_initial_interval = absl::Seconds(10);
  config.model.probe_max_interval = absl::Seconds(40);
  Make(config);
  CosineCase c(32, 64, 16, 25);
  cpu_->set_cost(&clock_, absl::Milliseconds(1));  // far slower than the GPU
  PerformanceModel& model = executor_->performance_model();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(model
                    .RecordTiming(Operation::kCosine, BackendKind::kGpu,
                                  c.job.work(), 1e-6)
                    .ok());
  }
  CosineOutput out;
  std::vector<float> scores;
  std::vector<std::string> rules;
  for (int second = 0; second < 35; ++second) {
    ASSERT_TRUE(Dense(c, &out, &scores).ok());
    rules.push_back(out.report.decided_by);
    ASSERT_TRUE(ScoresMatch(scores, c.Reference()));
    clock_.Advance(absl::Seconds(1));
  }
  // Probes (of the CPU) at t = 0, 10 and 30 s: intervals of 10 then 20.
  std::vector<int> probes;
  for (int i = 0; i < static_cast<int>(rules.size()); ++i) {
    if (rules[i] == "probe") probes.push_back(i);
  }
  EXPECT_THAT(probes, ElementsAre(0, 10, 30));
  EXPECT_EQ(executor_->counters().probes, 3u);
  EXPECT_EQ(model.Snapshot(Operation::kCosine, c.job.work()).cpu.samples, 3u);
}

// A spreading job on a small random graph, owning its data.
struct SpreadCase {
  engram::testing::RandomCsrGraph graph;
  std::vector<kernels::SpreadSeed> seeds;
  SpreadJob job;

  SpreadCase(uint32_t nodes, uint32_t degree, uint64_t seed, uint32_t top_k)
      : graph(engram::testing::RandomGraph(nodes, degree, seed)) {
    seeds = {{0, 1.0f}, {nodes / 2, 0.5f}};
    job.graph = graph.view();
    job.seeds = seeds;
    job.top_k = top_k;
  }
};

TEST_F(HybridExecutorTest, CancellationStopsTheCpuBeforeTheNextChunk) {
  HybridConfig config = TestConfig();
  config.cpu_chunk_work = 4 * 64 * 16;  // 4 queries per CPU call
  Make(config);
  CosineCase c(40, 64, 16, 41);
  engram::testing::StopAfterChecks stop(
      3, absl::CancelledError("the client cancelled"));
  c.job.interrupt = &stop;
  CosineOutput out;
  std::vector<float> scores;
  const absl::Status status = Dense(c, &out, &scores, Placement::kCpuOnly);
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(status.message(), "the client cancelled");
  // Three chunks ran; the fourth never started, nor did any after it.
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(4, 4, 4));
  EXPECT_EQ(stop.checks(), 4);
}

TEST_F(HybridExecutorTest, WithoutAnInterruptTheCpuTakesTheJobInOneCall) {
  HybridConfig config = TestConfig();
  config.cpu_chunk_work = 4 * 64 * 16;
  Make(config);
  CosineCase c(40, 64, 16, 42);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores, Placement::kCpuOnly).ok());
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(40));
}

TEST_F(HybridExecutorTest, InterruptibleCpuChunksGiveTheSameScores) {
  HybridConfig config = TestConfig();
  config.cpu_chunk_work = 3 * 64 * 16;  // 3 queries per call, a short tail
  Make(config);
  CosineCase c(40, 64, 16, 43, /*top_k=*/5);
  engram::testing::StopAfterChecks never(1 << 30,
                                         absl::CancelledError("unused"));
  c.job.interrupt = &never;
  c.job.placement = Placement::kCpuOnly;
  CosineOutput out;
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.report.chunks, 14u);
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 5,
                          -std::numeric_limits<float>::infinity()));
}

TEST_F(HybridExecutorTest, DeadlineStopsGpuChunksAndNeverCountsAgainstTheGpu) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 8;
  Make(config);
  CosineCase c(48, 64, 16, 44);
  engram::testing::StopAfterChecks stop(
      2, absl::DeadlineExceededError("deadline passed"));
  c.job.interrupt = &stop;
  CosineOutput out;
  std::vector<float> scores;
  const absl::Status status = Dense(c, &out, &scores);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(8, 8));
  EXPECT_TRUE(cpu_->cosine_rows().empty());
  const BreakerSnapshot breaker = executor_->breaker().Snapshot();
  EXPECT_EQ(breaker.consecutive_failures, 0u);
  EXPECT_EQ(executor_->counters().fallbacks_gpu_error, 0u);
}

TEST_F(HybridExecutorTest, SpreadingStopsBetweenHopsAndNotOnTheGpuAccount) {
  Make();
  SpreadCase s(500, 4, 45, /*top_k=*/0);
  s.job.params.max_hops = 10;
  s.job.params.threshold = 0.0f;
  // One check before the call, one per hop (the fourth check, before hop
  // 3, stops it), and one more as the executor tells the stop from a device
  // failure.
  engram::testing::StopAfterChecks stop(
      3, absl::CancelledError("the client cancelled"));
  s.job.interrupt = &stop;
  SpreadOutput out;
  const absl::Status status = executor_->Spread(s.job, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(stop.checks(), 5);
  EXPECT_EQ(executor_->breaker().Snapshot().consecutive_failures, 0u);
  EXPECT_EQ(executor_->counters().fallbacks_gpu_error, 0u);
}

TEST_F(HybridExecutorTest, SpreadingRunsAsOneUnitAndMatchesTheCpu) {
  Make();
  SpreadCase s(500, 4, 26, /*top_k=*/10);
  SpreadOutput on_gpu;
  s.job.placement = Placement::kGpuOnly;
  ASSERT_TRUE(executor_->Spread(s.job, &on_gpu).ok());
  EXPECT_EQ(on_gpu.report.backend, BackendKind::kGpu);
  EXPECT_EQ(on_gpu.report.chunks, 1u);
  SpreadOutput on_cpu;
  s.job.placement = Placement::kCpuOnly;
  ASSERT_TRUE(executor_->Spread(s.job, &on_cpu).ok());
  EXPECT_EQ(on_cpu.report.backend, BackendKind::kCpu);
  EXPECT_EQ(on_gpu.result.activation, on_cpu.result.activation);
  EXPECT_EQ(on_gpu.top, on_cpu.top);
  ASSERT_FALSE(on_cpu.top.empty());
  EXPECT_LE(on_cpu.top.size(), 10u);
  const auto reference =
      engram::testing::ReferenceSpread(s.job.graph, s.job.seeds, s.job.params);
  for (size_t i = 0; i < reference.activation.size(); ++i) {
    ASSERT_NEAR(on_gpu.result.activation[i], reference.activation[i], 1e-5);
  }
}

TEST_F(HybridExecutorTest, SpreadingOomFallsBackWithoutRetrying) {
  Make();
  SpreadCase s(500, 4, 27, /*top_k=*/0);
  gpu_inner_->SetOomAboveBytes(1);
  SpreadOutput out;
  ASSERT_TRUE(executor_->Spread(s.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.fallback_reason, "gpu_oom");
  EXPECT_EQ(out.result.activation.size(), 500u);
  EXPECT_EQ(observer_.count("oom"), 1);
  EXPECT_EQ(observer_.count("oom_retry"), 0);
  EXPECT_EQ(gpu_->spread_calls(), 1);
  s.job.placement = Placement::kGpuOnly;
  EXPECT_EQ(executor_->Spread(s.job, &out).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(HybridExecutorTest, AFailedHostAllocationFailsOnlyItsRequest) {
  Make();
  CosineCase c(4, 64, 16, 21);
  CosineOutput out;
  std::vector<float> scores;
  cpu_->ThrowBadAllocOnNextCalls(1);
  const absl::Status failed = Dense(c, &out, &scores, Placement::kCpuOnly);
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(failed.message(), HasSubstr("out of host memory"));
  // The next request is served.
  CosineOutput next;
  ASSERT_TRUE(Dense(c, &next, &scores, Placement::kCpuOnly).ok());
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
}

TEST_F(HybridExecutorTest, AFailedHostAllocationInACpuFallbackFailsTheRequest) {
  HybridConfig config = TestConfig();
  config.max_chunk_queries = 16;
  Make(config);
  CosineCase c(48, 64, 16, 22);
  gpu_inner_->FailNextCalls(1, absl::InternalError("launch failed"),
                            /*after=*/1);
  cpu_->ThrowBadAllocOnNextCalls(1);
  CosineOutput out;
  std::vector<float> scores;
  const absl::Status failed = Dense(c, &out, &scores);
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted);
  // Spreading too; and the executor answers the next calls.
  SpreadCase s(200, 3, 23, /*top_k=*/0);
  s.job.placement = Placement::kCpuOnly;
  SpreadOutput spread_out;
  cpu_->ThrowBadAllocOnNextCalls(1);
  EXPECT_EQ(executor_->Spread(s.job, &spread_out).code(),
            absl::StatusCode::kResourceExhausted);
  CosineOutput next;
  ASSERT_TRUE(Dense(c, &next, &scores).ok());
  EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
  ASSERT_TRUE(executor_->Spread(s.job, &spread_out).ok());
}

TEST_F(HybridExecutorTest, SmallSpreadingGoesToTheCpu) {
  HybridConfig config = TestConfig();
  config.min_gpu_work_spread = 1 << 20;
  Make(config);
  SpreadCase s(50, 2, 28, /*top_k=*/3);
  SpreadOutput out;
  ASSERT_TRUE(executor_->Spread(s.job, &out).ok());
  EXPECT_EQ(out.report.decided_by, "work_below_min");
  EXPECT_EQ(gpu_->spread_calls(), 0);
}

TEST_F(HybridExecutorTest, OomEventTelemetryReachesTheObserver) {
  Make();
  CosineCase c(64, 128, 16, 29);
  gpu_inner_->SetOomAboveBytes(BytesFor(c, 16));
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(observer_.count("decision:cosine:gpu:default"), 1);
  EXPECT_EQ(observer_.count("oom"), 2);
  EXPECT_EQ(observer_.count("oom_retry"), 2);
  EXPECT_EQ(observer_.count("error:gpu"), 2);
  EXPECT_EQ(observer_.count("chunk:gpu"), 4);
  EXPECT_EQ(observer_.count("compute:gpu"), 1);
  EXPECT_EQ(observer_.work_items("gpu"), 64u * 128);
  EXPECT_EQ(gpu_inner_->stats().ooms, 2u);
}

TEST_F(HybridExecutorTest, ExtremeBatchSizes) {
  HybridConfig config = TestConfig();
  config.min_gpu_work_cosine = 0;
  config.max_chunk_queries = 3;
  Make(config);
  struct Shape {
    size_t q, n, d;
    uint32_t k;
  };
  for (const Shape& shape : std::vector<Shape>{{1, 1, 1, 0},
                                               {1, 1, 1, 5},
                                               {1, 2000, 4, 0},
                                               {500, 1, 3, 0},
                                               {500, 2, 2, 10},
                                               {7, 7, 300, 7}}) {
    CosineCase c(shape.q, shape.n, shape.d, 30 + shape.q, shape.k);
    CosineOutput out;
    std::vector<float> scores;
    ASSERT_TRUE(Dense(c, &out, &scores).ok());
    if (shape.k == 0) {
      EXPECT_TRUE(ScoresMatch(scores, c.Reference()));
    } else {
      EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, shape.k,
                              -std::numeric_limits<float>::infinity()));
    }
    EXPECT_EQ(out.report.chunks, (shape.q + 2) / 3);
  }
}

TEST_F(HybridExecutorTest, OomSafeSmallAndLargeBatchesMatchTheCpu) {
  HybridConfig config = TestConfig();
  config.min_gpu_work_cosine = 0;
  config.max_chunk_queries = 64;
  config.max_oom_retries = 3;
  Make(config);
  for (size_t q : {1, 5, 300}) {
    for (uint32_t k : {0u, 3u}) {
      CosineCase c(q, 100, 8, 40 + q, k);
      // Every other call runs out of memory.
      for (int i = 0; i < 10; ++i) {
        gpu_inner_->FailNextCalls(1, DeviceOutOfMemoryError("injected"), 1);
      }
      CosineOutput out;
      std::vector<float> scores;
      ASSERT_TRUE(Dense(c, &out, &scores).ok());
      if (k == 0) {
        EXPECT_TRUE(ScoresMatch(scores, c.Reference())) << q;
      } else {
        EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, k,
                                -std::numeric_limits<float>::infinity()))
            << q;
      }
    }
  }
}

// A job whose targets the GPU holds resident needs room only for its
// queries and scores: it runs on a GPU too full to take its targets too,
// reads the copy, and gets the CPU's results.
TEST_F(HybridExecutorTest, ResidentTargetsAreLeftOutOfTheFootprint) {
  // The simulated GPU itself, not the recording wrapper (which does not
  // forward residency).
  store_ = *ConfigStore::Create(TestConfig());
  HybridExecutor::Options options;
  options.cpu = cpu_.get();
  options.gpu = gpu_inner_.get();
  options.config = store_.get();
  options.clock = &clock_;
  std::unique_ptr<HybridExecutor> executor = *HybridExecutor::Create(options);

  CosineCase c(4, 4096, 64, 31, /*top_k=*/5);
  constexpr uint64_t kKey = 42;
  ASSERT_TRUE(gpu_inner_->UploadResident(kKey, c.job.targets).ok());
  const JobFootprint staged = CosineFootprint(c.job);
  const JobFootprint resident = CosineFootprint(c.job, true);
  // Leave room for the resident job (at the 0.8 safety margin) but not for
  // the targets.
  const uint64_t free_bytes = resident.TotalBytes() * 2;
  ASSERT_LT(free_bytes, staged.fixed_bytes);
  gpu_inner_->SetReservedBytes(kGiB - gpu_inner_->ResidentBytes() - free_bytes);

  c.job.placement = Placement::kGpuOnly;
  CosineOutput out;
  EXPECT_EQ(executor->Cosine(c.job, &out).code(),
            absl::StatusCode::kResourceExhausted);

  c.job.resident_targets = kKey;
  ASSERT_TRUE(executor->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(out.report.chunks, 1u);
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 5, -2.0f));
  const auto call = gpu_inner_->history().back();
  EXPECT_TRUE(call.resident);
  EXPECT_EQ(call.bytes, resident.TotalBytes());
  EXPECT_EQ(gpu_inner_->stats().resident_hits, 1u);

  // Evicted: the same job no longer fits on the GPU, and AUTO runs it on
  // the CPU from the host copy.
  ASSERT_TRUE(gpu_inner_->EvictResident(kKey).ok());
  EXPECT_EQ(executor->Cosine(c.job, &out).code(),
            absl::StatusCode::kResourceExhausted);
  c.job.placement = Placement::kAuto;
  ASSERT_TRUE(executor->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_TRUE(TopKMatches(out.top, c.Reference(), c.q, c.n, 5, -2.0f));
}

TEST_F(HybridExecutorTest, CalibrateSeedsThePerformanceModel) {
  Make();
  CalibrationOptions options;
  options.cosine_dim = 8;
  options.cosine_targets = 64;
  options.cosine_queries = {1, 16};
  options.cosine_top_k = {0};
  options.cosine_resident = false;
  options.spread_nodes = {100};
  options.repetitions = 3;
  absl::StatusOr<CrossoverTable> table = executor_->Calibrate(options);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->rows.size(), 3u);
  PerfSnapshot s =
      executor_->performance_model().Snapshot(Operation::kCosine, 16 * 64 * 8);
  EXPECT_EQ(s.cpu.samples, 3u);
  EXPECT_EQ(s.gpu.samples, 3u);
  EXPECT_TRUE(s.cpu.usable && s.gpu.usable);
  // A healthy sweep's GPU calls were admitted and recorded as successes.
  EXPECT_EQ(executor_->breaker().Snapshot().state, BreakerState::kClosed);
}

TEST_F(HybridExecutorTest, ACalibrationIsKeptAndPutInForceElsewhere) {
  // Every CPU call costs 1 ms on the test's clock, more than any of the
  // simulated GPU's calls here: the GPU wins at every swept size.
  Make();
  cpu_->set_cost(&clock_, absl::Milliseconds(1));
  CalibrationOptions options;
  options.cosine_dim = 64;
  options.cosine_targets = 1024;
  options.cosine_queries = {1, 64, 512};
  options.spread_nodes = {100, 1000};
  options.repetitions = 3;
  absl::StatusOr<CrossoverTable> table = executor_->Calibrate(options);
  ASSERT_TRUE(table.ok()) << table.status();
  const std::optional<StoredCalibration> kept = executor_->calibration();
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->gpu_device, "Simulated GPU");
  EXPECT_TRUE(kept->fits[0][0].usable);  // cosine on the CPU
  EXPECT_TRUE(kept->fits[0][1].usable);  // and on the GPU
  ASSERT_TRUE(kept->cosine_min_gpu_work.has_value());
  EXPECT_EQ(*kept->cosine_min_gpu_work, uint64_t{1} * 1024 * 64);
  // The measured threshold is now the config's.
  EXPECT_EQ(store_->Get()->min_gpu_work_cosine, *kept->cosine_min_gpu_work);

  // Another executor (a restart) with the stored calibration: its model
  // predicts from the priors before any call, and its config has the
  // thresholds, also after a reload of the file's values.
  const StoredCalibration stored =
      *ParseStoredCalibration(FormatStoredCalibration(*kept));
  Make();
  EXPECT_FALSE(executor_->performance_model()
                   .Fit(Operation::kCosine, BackendKind::kGpu)
                   .usable);
  ASSERT_TRUE(executor_->UseCalibration(stored).ok());
  const CostFit prior =
      executor_->performance_model().Fit(Operation::kCosine, BackendKind::kGpu);
  EXPECT_TRUE(prior.usable);
  EXPECT_TRUE(prior.prior);
  EXPECT_EQ(prior.seconds_per_unit, kept->fits[0][1].seconds_per_unit);
  EXPECT_EQ(store_->Get()->min_gpu_work_cosine, *kept->cosine_min_gpu_work);
  HybridConfig reloaded = TestConfig();
  executor_->AdjustConfig(&reloaded);
  EXPECT_EQ(reloaded.min_gpu_work_cosine, *kept->cosine_min_gpu_work);

  // Measured on another device: refused, nothing changes.
  Make();
  StoredCalibration other = stored;
  other.gpu_device = "Some Other GPU";
  EXPECT_EQ(executor_->UseCalibration(other).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(executor_->calibration().has_value());
  EXPECT_EQ(store_->Get()->min_gpu_work_cosine,
            TestConfig().min_gpu_work_cosine);
}

TEST_F(HybridExecutorTest, ADeviceFailingDuringCalibrationOpensTheBreaker) {
  Make();  // the breaker opens after 3 consecutive failures
  gpu_inner_->FailNextCalls(1000, absl::InternalError("ECC error"));
  CalibrationOptions options;
  options.cosine_dim = 8;
  options.cosine_targets = 64;
  options.cosine_queries = {1, 16, 64};
  options.spread_nodes = {100};
  options.repetitions = 3;
  absl::StatusOr<CrossoverTable> table = executor_->Calibrate(options);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_GT(table->gpu_errors, 0u);
  const BreakerSnapshot breaker = executor_->breaker().Snapshot();
  EXPECT_EQ(breaker.state, BreakerState::kOpen);
  EXPECT_EQ(breaker.last_error, "ECC error");
  // Once open, the sweep stopped calling the device: the three failures
  // that opened it, and no more.
  EXPECT_EQ(gpu_inner_->stats().calls, 3u);
  // Requests see the open breaker.
  CosineCase c(64, 64, 16, 51);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(c, &out, &scores).ok());
  EXPECT_EQ(out.report.decided_by, "breaker_open");
}

}  // namespace
}  // namespace engram::dispatch
