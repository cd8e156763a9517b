// Many threads through one HybridExecutor at once, with the simulated device
// failing at random, in bursts and for lack of memory: every request that
// may fall back must succeed with the right result, and GPU-only requests
// may fail only with the codes the API allows. Run under ThreadSanitizer in
// CI.
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gtest/gtest.h"
#include "kernels/thread_pool.h"
#include "tests/core/dispatch/executor_test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::dispatch {
namespace {

using ::engram::dispatch::testing::CosineCase;
using ::engram::dispatch::testing::CountingObserver;
using ::engram::dispatch::testing::ScoresMatch;
using ::engram::dispatch::testing::TopKMatches;

constexpr int kThreads = 16;
constexpr int kRequestsPerThread = 40;

struct SpreadCase {
  engram::testing::RandomCsrGraph graph;
  std::vector<kernels::SpreadSeed> seeds;
  SpreadJob job;
  std::vector<double> reference;

  SpreadCase(uint32_t nodes, uint32_t degree, uint64_t seed, uint32_t top_k)
      : graph(engram::testing::RandomGraph(nodes, degree, seed)) {
    seeds = {{0, 1.0f}, {nodes / 3, 0.7f}};
    job.graph = graph.view();
    job.seeds = seeds;
    job.top_k = top_k;
    reference =
        engram::testing::ReferenceSpread(job.graph, job.seeds, job.params)
            .activation;
  }
};

class ExecutorStressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<kernels::ThreadPool>(2);
    CpuBackend::Options cpu;
    cpu.pool = pool_.get();
    cpu_ = *CpuBackend::Create(cpu);
    uint64_t seed = 1000;
    struct Shape {
      size_t q, n, d;
      uint32_t k;
    };
    for (const Shape& s : std::vector<Shape>{{1, 50, 8, 0},
                                             {3, 400, 16, 0},
                                             {64, 128, 32, 0},
                                             {200, 96, 16, 0},
                                             {150, 300, 8, 0},
                                             {17, 17, 17, 5},
                                             {120, 200, 24, 10},
                                             {250, 64, 8, 1},
                                             {5, 1, 4, 3}}) {
      cosine_.push_back(
          std::make_unique<CosineCase>(s.q, s.n, s.d, seed++, s.k));
      cosine_refs_.push_back(cosine_.back()->Reference());
    }
    for (uint32_t nodes : {50u, 800u, 3000u}) {
      spread_.push_back(
          std::make_unique<SpreadCase>(nodes, 4, seed++, nodes % 2 ? 0 : 8));
    }
  }

  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> MakeGpu(
      uint64_t sticky_after) {
    dispatch::testing::SimulatedGpuBackend::Options gpu;
    gpu.pool = pool_.get();
    gpu.launch_overhead = absl::Microseconds(5);
    gpu.seconds_per_unit = 1e-12;
    // Small enough that large jobs are chunked and concurrent requests
    // crowd each other out of memory.
    gpu.memory_bytes = uint64_t{2} << 20;
    gpu.error_probability = 0.05;
    gpu.burst_probability = 0.01;
    gpu.burst_length = 4;
    gpu.sticky_after_calls = sticky_after;
    gpu.seed = 7;
    auto backend = dispatch::testing::SimulatedGpuBackend::Create(gpu);
    EXPECT_TRUE(backend.ok());
    // Chunks the budget allows but the device then refuses: every large
    // request meets OOM and halves.
    (*backend)->SetOomAboveBytes(uint64_t{64} << 10);
    return *std::move(backend);
  }

  static HybridConfig StressConfig() {
    HybridConfig c;
    c.min_gpu_work_cosine = 2000;
    c.min_gpu_work_spread = 100;
    c.min_chunk_queries = 4;
    c.max_chunk_queries = 128;
    c.max_oom_retries = 3;
    c.model.probe_initial_interval = absl::Milliseconds(10);
    c.model.probe_max_interval = absl::Milliseconds(100);
    c.breaker.consecutive_failures_to_open = 4;
    c.breaker.open_initial = absl::Milliseconds(5);
    c.breaker.open_max = absl::Milliseconds(50);
    c.breaker.half_open_probes = 2;
    c.memory.refresh_interval = absl::Milliseconds(1);
    return c;
  }

  // Runs the mixed workload; returns the number of failed GPU_ONLY requests.
  void RunWorkload(HybridExecutor& executor, std::atomic<int>* gpu_only_failed,
                   std::atomic<int>* requests) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(t + 1);
        for (int i = 0; i < kRequestsPerThread; ++i) {
          const int pick = static_cast<int>(rng() % 10);
          const Placement placement = pick == 0   ? Placement::kGpuOnly
                                      : pick == 1 ? Placement::kCpuOnly
                                                  : Placement::kAuto;
          requests->fetch_add(1);
          if (rng() % 4 == 0) {
            const SpreadCase& c = *spread_[rng() % spread_.size()];
            SpreadJob job = c.job;
            job.placement = placement;
            SpreadOutput out;
            const absl::Status status = executor.Spread(job, &out);
            if (!Check(status, placement, gpu_only_failed)) continue;
            ASSERT_EQ(out.result.activation.size(), c.reference.size());
            for (size_t v = 0; v < c.reference.size(); ++v) {
              ASSERT_NEAR(out.result.activation[v], c.reference[v], 1e-5)
                  << "node " << v;
            }
            ASSERT_LE(out.top.size(), c.job.top_k);
          } else {
            const size_t index = rng() % cosine_.size();
            const CosineCase& c = *cosine_[index];
            CosineJob job = c.job;
            job.placement = placement;
            CosineOutput out;
            std::vector<float> scores(job.top_k == 0 ? c.q * c.n : 0);
            out.scores = absl::MakeSpan(scores);
            const absl::Status status = executor.Cosine(job, &out);
            if (!Check(status, placement, gpu_only_failed)) continue;
            if (job.top_k == 0) {
              ASSERT_TRUE(ScoresMatch(scores, cosine_refs_[index]))
                  << "case " << index << " " << out.report.decided_by;
            } else {
              ASSERT_TRUE(TopKMatches(out.top, cosine_refs_[index], c.q, c.n,
                                      job.top_k,
                                      -std::numeric_limits<float>::infinity()))
                  << "case " << index;
            }
            ASSERT_NE(out.report.backend, BackendKind::kUnspecified);
            ASSERT_FALSE(out.report.decided_by.empty());
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }

  // True when the request succeeded and its result must be checked.
  static bool Check(const absl::Status& status, Placement placement,
                    std::atomic<int>* gpu_only_failed) {
    if (status.ok()) return true;
    EXPECT_EQ(placement, Placement::kGpuOnly) << status;
    EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable ||
                status.code() == absl::StatusCode::kResourceExhausted)
        << status;
    gpu_only_failed->fetch_add(1);
    return false;
  }

  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<CpuBackend> cpu_;
  std::vector<std::unique_ptr<CosineCase>> cosine_;
  std::vector<std::vector<double>> cosine_refs_;
  std::vector<std::unique_ptr<SpreadCase>> spread_;
};

TEST_F(ExecutorStressTest, EveryResultIsCorrectUnderInjectedFaults) {
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu =
      MakeGpu(/*sticky_after=*/0);
  auto store = ConfigStore::Create(StressConfig());
  ASSERT_TRUE(store.ok());
  CountingObserver observer;
  HybridExecutor::Options options;
  options.cpu = cpu_.get();
  options.gpu = gpu.get();
  options.config = store->get();
  options.observer = &observer;
  auto executor = HybridExecutor::Create(options);
  ASSERT_TRUE(executor.ok());

  std::atomic<int> gpu_only_failed{0};
  std::atomic<int> requests{0};
  // A config reload in the middle of the run must not disturb anything.
  std::thread reloader([&] {
    for (int i = 0; i < 20; ++i) {
      HybridConfig c = StressConfig();
      c.max_chunk_queries = 32 + 16 * (i % 4);
      c.cpu_fallback = true;
      ASSERT_TRUE((*store)->Update(c).ok());
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  RunWorkload(**executor, &gpu_only_failed, &requests);
  reloader.join();

  const HybridExecutor::Counters counters = (*executor)->counters();
  EXPECT_EQ(counters.requests, static_cast<uint64_t>(requests.load()));
  const dispatch::testing::SimulatedGpuBackend::Stats stats = gpu->stats();
  EXPECT_GT(stats.calls, 0u);
  EXPECT_GT(stats.ooms, 0u);
  EXPECT_EQ(counters.ooms, stats.ooms);
  EXPECT_EQ(observer.count("oom"), static_cast<int>(stats.ooms));
  EXPECT_GT(counters.oom_retries, 0u);
  EXPECT_GT(stats.device_errors, 0u);
  EXPECT_GT(counters.fallbacks_gpu_error, 0u);
  ::testing::Test::RecordProperty("gpu_calls", stats.calls);
  ::testing::Test::RecordProperty("gpu_device_errors", stats.device_errors);
  ::testing::Test::RecordProperty("fallbacks_gpu_oom",
                                  counters.fallbacks_gpu_oom);
  ::testing::Test::RecordProperty("gpu_only_failed", gpu_only_failed.load());
}

TEST_F(ExecutorStressTest, StickyErrorMidRunKeepsEveryAutoResultCorrect) {
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu =
      MakeGpu(/*sticky_after=*/60);
  auto store = ConfigStore::Create(StressConfig());
  ASSERT_TRUE(store.ok());
  HybridExecutor::Options options;
  options.cpu = cpu_.get();
  options.gpu = gpu.get();
  options.config = store->get();
  auto executor = HybridExecutor::Create(options);
  ASSERT_TRUE(executor.ok());
  std::atomic<int> gpu_only_failed{0};
  std::atomic<int> requests{0};
  RunWorkload(**executor, &gpu_only_failed, &requests);
  EXPECT_EQ((*executor)->breaker().Snapshot().state, BreakerState::kForcedOpen);
  EXPECT_GT(gpu_only_failed.load(), 0);
}

}  // namespace
}  // namespace engram::dispatch
