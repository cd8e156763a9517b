// The device memory ledger inside HybridExecutor: concurrent requests share
// one budget (no OOM storm where each plans against all of it), a request
// that does not fit waits and then goes to the CPU (AUTO) or fails naming
// the bytes (GPU_ONLY), and no path leaves bytes reserved.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/thread_pool.h"
#include "tests/core/dispatch/executor_test_util.h"

namespace engram::dispatch {
namespace {

using ::engram::dispatch::testing::CosineCase;
using ::engram::dispatch::testing::CountingObserver;
using ::engram::dispatch::testing::RecordingBackend;
using ::engram::dispatch::testing::SimulatedGpuBackend;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Forwards to `inner`. Each cosine call first checks the executor's ledger
// (the caller holds its reservation then): its reserved bytes must be within
// its capacity. With a gate set, calls block until it opens.
class CheckingBackend final : public ComputeBackend {
 public:
  explicit CheckingBackend(ComputeBackend* inner) : inner_(inner) {}

  absl::string_view name() const override { return inner_->name(); }
  BackendCapabilities Capabilities() const override {
    return inner_->Capabilities();
  }
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override {
    Check();
    entered_.fetch_add(1);
    absl::Notification* gate = gate_.load();
    if (gate != nullptr) gate->WaitForNotification();
    return inner_->Cosine(job, out);
  }
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override {
    Check();
    return inner_->Spread(job, out);
  }
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    return inner_->QueryMemory();
  }

  void set_ledger(const DeviceMemoryLedger* ledger) { ledger_.store(ledger); }
  void set_gate(absl::Notification* gate) { gate_.store(gate); }
  int entered() const { return entered_.load(); }
  int checks() const { return checks_.load(); }
  int over_budget() const { return over_budget_.load(); }

 private:
  void Check() {
    const DeviceMemoryLedger* ledger = ledger_.load();
    if (ledger == nullptr) return;
    const DeviceMemoryLedger::Stats s = ledger->stats();
    checks_.fetch_add(1);
    if (s.has_reading && s.reserved_bytes > s.capacity_bytes) {
      over_budget_.fetch_add(1);
    }
  }

  ComputeBackend* const inner_;
  std::atomic<const DeviceMemoryLedger*> ledger_{nullptr};
  std::atomic<absl::Notification*> gate_{nullptr};
  std::atomic<int> entered_{0};
  std::atomic<int> checks_{0};
  std::atomic<int> over_budget_{0};
};

class ExecutorMemoryLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<kernels::ThreadPool>(2);
    CpuBackend::Options cpu;
    cpu.pool = pool_.get();
    cpu_ = *CpuBackend::Create(cpu);
  }

  void MakeGpu(uint64_t memory_bytes, absl::Duration launch_overhead,
               double seconds_per_unit) {
    SimulatedGpuBackend::Options gpu;
    gpu.pool = pool_.get();
    gpu.launch_overhead = launch_overhead;
    gpu.seconds_per_unit = seconds_per_unit;
    gpu.memory_bytes = memory_bytes;
    auto backend = SimulatedGpuBackend::Create(gpu);
    ASSERT_TRUE(backend.ok()) << backend.status();
    sim_ = *std::move(backend);
    recording_ = std::make_unique<RecordingBackend>(sim_.get());
    gpu_ = std::make_unique<CheckingBackend>(recording_.get());
  }

  static HybridConfig Config(bool ledger) {
    HybridConfig c;
    c.min_gpu_work_cosine = 1000;
    c.probe_enabled = false;
    c.min_chunk_queries = 16;
    c.max_chunk_queries = 4096;
    c.max_oom_retries = 4;
    // One reading, taken idle before the load starts (Make): every request
    // plans against the same free memory, which is what makes concurrent
    // requests overcommit without the ledger.
    c.memory.refresh_interval = absl::Seconds(60);
    c.memory.stale_after = absl::Seconds(60);
    c.ledger.enabled = ledger;
    c.ledger.max_wait = absl::Milliseconds(20);
    return c;
  }

  HybridExecutor& Make(const HybridConfig& config) {
    store_ = *ConfigStore::Create(config);
    HybridExecutor::Options options;
    options.cpu = cpu_.get();
    options.gpu = gpu_.get();
    options.config = store_.get();
    options.observer = &observer_;
    auto executor = HybridExecutor::Create(options);
    EXPECT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    gpu_->set_ledger(executor_->memory_ledger());
    // The reading every request plans against.
    EXPECT_TRUE(executor_->memory_monitor()->Assess().has_reading);
    return *executor_;
  }

  // The CPU backend's scores for `c`.
  std::vector<float> CpuScores(const CosineCase& c) {
    std::vector<float> scores(c.q * c.n);
    CosineOutput out;
    out.scores = absl::MakeSpan(scores);
    EXPECT_TRUE(cpu_->Cosine(c.job, &out).ok());
    return scores;
  }

  static ::testing::AssertionResult SameScores(const std::vector<float>& got,
                                               const std::vector<float>& want) {
    if (got.size() != want.size()) {
      return ::testing::AssertionFailure() << "size " << got.size();
    }
    for (size_t i = 0; i < got.size(); ++i) {
      if (!(std::abs(got[i] - want[i]) <= testing::kScoreTolerance)) {
        return ::testing::AssertionFailure()
               << "score " << i << " is " << got[i] << ", CPU " << want[i];
      }
    }
    return ::testing::AssertionSuccess();
  }

  uint64_t Reserved() const {
    return executor_->memory_ledger()->stats().reserved_bytes;
  }

  struct LoadResult {
    uint64_t device_ooms = 0;  // as the simulated device counted them
    int wrong = 0;             // requests failed or with wrong scores
    HybridExecutor::Counters counters;
  };

  // 32 threads, one large cosine request each, released together. With
  // `refresh` set, readings are refreshed that often (zero: by every
  // request) while the load runs, instead of once before it.
  LoadResult RunConcurrentLoad(
      bool ledger, absl::Duration refresh = absl::InfiniteDuration()) {
    constexpr int kRequests = 32;
    // 256 queries x 1024 targets x 32 dims: about 1.2 MB of device memory
    // each, against 3.2 MB of budget: three fit at once, not 32.
    MakeGpu(uint64_t{4} << 20, absl::Microseconds(20), 1e-10);
    HybridConfig config = Config(ledger);
    if (refresh != absl::InfiniteDuration()) {
      config.memory.refresh_interval = refresh;
    }
    HybridExecutor& executor = Make(config);
    std::vector<std::unique_ptr<CosineCase>> cases;
    std::vector<std::vector<float>> want;
    for (int i = 0; i < kRequests; ++i) {
      cases.push_back(std::make_unique<CosineCase>(256, 1024, 32, 500 + i));
      want.push_back(CpuScores(*cases.back()));
    }
    std::atomic<int> wrong{0};
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kRequests; ++i) {
      threads.emplace_back([&, i] {
        CosineCase& c = *cases[i];
        std::vector<float> scores(c.q * c.n, std::nanf(""));
        CosineOutput out;
        out.scores = absl::MakeSpan(scores);
        ready.fetch_add(1);
        while (ready.load() < kRequests) std::this_thread::yield();
        const absl::Status status = executor.Cosine(c.job, &out);
        if (!status.ok() || !SameScores(scores, want[i])) wrong.fetch_add(1);
      });
    }
    for (std::thread& t : threads) t.join();
    LoadResult r;
    r.device_ooms = sim_->stats().ooms;
    r.wrong = wrong.load();
    r.counters = executor.counters();
    return r;
  }

  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<CpuBackend> cpu_;
  std::unique_ptr<SimulatedGpuBackend> sim_;
  std::unique_ptr<RecordingBackend> recording_;
  std::unique_ptr<CheckingBackend> gpu_;
  std::unique_ptr<ConfigStore> store_;
  CountingObserver observer_;
  std::unique_ptr<HybridExecutor> executor_;
};

TEST_F(ExecutorMemoryLedgerTest,
       ConcurrentLargeRequestsRunWithoutOomAndMatchTheCpuWithTheLedger) {
  const LoadResult r = RunConcurrentLoad(/*ledger=*/true);
  EXPECT_EQ(r.device_ooms, 0u);
  EXPECT_EQ(r.counters.ooms, 0u);
  EXPECT_EQ(r.wrong, 0);
  // Every GPU call found the reservations within the budget.
  EXPECT_GT(gpu_->checks(), 0);
  EXPECT_EQ(gpu_->over_budget(), 0);
  const DeviceMemoryLedger::Stats s = executor_->memory_ledger()->stats();
  EXPECT_LE(s.peak_reserved_bytes, s.capacity_bytes);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_GT(s.granted, 0u);
  RecordProperty("device_ooms", static_cast<int>(r.device_ooms));
  RecordProperty("memory_busy_fallbacks",
                 static_cast<int>(r.counters.fallbacks_gpu_memory_busy));
  RecordProperty("ledger_waits", static_cast<int>(s.waits));
  RecordProperty("ledger_shrunk", static_cast<int>(s.shrunk));
  std::printf(
      "with the ledger: %llu device OOMs, %llu memory_busy "
      "fallbacks, %llu waits, %llu shrunk grants, peak %llu of %llu\n",
      static_cast<unsigned long long>(r.device_ooms),
      static_cast<unsigned long long>(r.counters.fallbacks_gpu_memory_busy),
      static_cast<unsigned long long>(s.waits),
      static_cast<unsigned long long>(s.shrunk),
      static_cast<unsigned long long>(s.peak_reserved_bytes),
      static_cast<unsigned long long>(s.capacity_bytes));
}

// Readings taken while the load runs count the running requests' memory as
// used: the ledger adds those bytes back rather than subtracting them twice,
// and the last quiet reading caps what calls between launch and allocation
// would make it over-state.
TEST_F(ExecutorMemoryLedgerTest,
       ConcurrentLargeRequestsRunWithoutOomWhenReadingsAreTakenUnderLoad) {
  const LoadResult r = RunConcurrentLoad(/*ledger=*/true, absl::ZeroDuration());
  EXPECT_EQ(r.device_ooms, 0u);
  EXPECT_EQ(r.wrong, 0);
  EXPECT_EQ(gpu_->over_budget(), 0);
  const DeviceMemoryLedger::Stats s = executor_->memory_ledger()->stats();
  EXPECT_LE(s.peak_reserved_bytes, s.quiet_capacity_bytes);
  EXPECT_EQ(s.reserved_bytes, 0u);
  std::printf("readings under load, with the ledger: %llu device OOMs\n",
              static_cast<unsigned long long>(r.device_ooms));
}

// The same load without the ledger: the tests above can fail.
TEST_F(ExecutorMemoryLedgerTest,
       ConcurrentLargeRequestsRunOutOfMemoryWithoutTheLedger) {
  const LoadResult r = RunConcurrentLoad(/*ledger=*/false);
  EXPECT_EQ(executor_->memory_ledger(), nullptr);
  EXPECT_GT(r.device_ooms, 0u);
  EXPECT_EQ(r.wrong, 0);  // OOM halving and fallback still give the answer
  std::printf("without the ledger: %llu device OOMs, %llu oom fallbacks\n",
              static_cast<unsigned long long>(r.device_ooms),
              static_cast<unsigned long long>(r.counters.fallbacks_gpu_oom));
}

class ExecutorLedgerWaitTest : public ExecutorMemoryLedgerTest {
 protected:
  // A request of 64 queries holds its reservation inside a gated GPU call;
  // `c` (64 queries, min chunk 64) then finds too little left.
  void SetUp() override {
    ExecutorMemoryLedgerTest::SetUp();
    MakeGpu(uint64_t{1} << 20, absl::ZeroDuration(), 0);
    HybridConfig config = Config(true);
    config.min_chunk_queries = 64;
    config.ledger.max_wait = LedgerWait();
    Make(config);
    // The holder takes 128 queries' worth (about 0.68 MB of the 0.84 MB
    // budget), leaving less than the waiter's 0.41 MB.
    holder_ = std::make_unique<CosineCase>(128, 1024, 32, 1);
    waiter_ = std::make_unique<CosineCase>(64, 1024, 32, 2);
    gpu_->set_gate(&gate_);
    holder_thread_ = std::thread([this] {
      std::vector<float> scores(holder_->q * holder_->n);
      CosineOutput out;
      out.scores = absl::MakeSpan(scores);
      holder_status_ = executor_->Cosine(holder_->job, &out);
    });
    while (gpu_->entered() == 0) absl::SleepFor(absl::Milliseconds(1));
  }
  void TearDown() override {
    if (!gate_.HasBeenNotified()) gate_.Notify();
    holder_thread_.join();
    EXPECT_TRUE(holder_status_.ok()) << holder_status_;
    EXPECT_EQ(Reserved(), 0u);
  }

  uint64_t WaiterBytes() const {
    return CosineFootprint(waiter_->job).TotalBytes();
  }
  virtual absl::Duration LedgerWait() const { return absl::Milliseconds(20); }

  absl::Notification gate_;
  std::unique_ptr<CosineCase> holder_;
  std::unique_ptr<CosineCase> waiter_;
  std::thread holder_thread_;
  absl::Status holder_status_;
};

TEST_F(ExecutorLedgerWaitTest, ARequestThatDoesNotFitWaitsThenRunsOnTheCpu) {
  ASSERT_GT(Reserved(), 0u);
  const DeviceMemoryLedger::Stats before = executor_->memory_ledger()->stats();
  ASSERT_LT(before.capacity_bytes - before.reserved_bytes, WaiterBytes());
  std::vector<float> scores(waiter_->q * waiter_->n);
  CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(executor_->Cosine(waiter_->job, &out).ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));  // max_wait
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_EQ(out.report.decided_by, "default");  // the GPU was chosen
  EXPECT_EQ(out.report.fallback_reason, kFallbackGpuMemoryBusy);
  EXPECT_TRUE(SameScores(scores, CpuScores(*waiter_)));
  EXPECT_EQ(observer_.count("fallback:gpu_memory_busy"), 1);
  EXPECT_EQ(executor_->counters().fallbacks_gpu_memory_busy, 1u);
  const DeviceMemoryLedger::Stats after = executor_->memory_ledger()->stats();
  EXPECT_EQ(after.waits, before.waits + 1);
  EXPECT_EQ(after.refusals, before.refusals + 1);
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_EQ(gpu_->entered(), 1);  // only the holder reached the device
}

TEST_F(ExecutorLedgerWaitTest, AGpuOnlyRequestThatDoesNotFitNamesTheBytes) {
  std::vector<float> scores(waiter_->q * waiter_->n);
  CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  waiter_->job.placement = Placement::kGpuOnly;
  const absl::Status status = executor_->Cosine(waiter_->job, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr(absl::StrCat("needs ", WaiterBytes(), " bytes")),
                    HasSubstr("available"), HasSubstr("PLACEMENT_GPU_ONLY")));
  EXPECT_EQ(gpu_->entered(), 1);
}

// A wait long enough for the holder to finish its call after the gate
// opens in any build (a sanitized one computes it many times slower): the
// longest the ledger allows.
class ExecutorLedgerReleaseTest : public ExecutorLedgerWaitTest {
 protected:
  absl::Duration LedgerWait() const override { return absl::Seconds(1); }
};

TEST_F(ExecutorLedgerReleaseTest, ARequestGoesOnTheGpuOnceTheHolderReleases) {
  std::thread opener([this] {
    absl::SleepFor(absl::Milliseconds(5));
    gate_.Notify();
  });
  std::vector<float> scores(waiter_->q * waiter_->n);
  CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  waiter_->job.placement = Placement::kGpuOnly;
  // The wait outlasts the holder's call (the gate opens after 5 ms).
  const absl::Status status = executor_->Cosine(waiter_->job, &out);
  opener.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_TRUE(SameScores(scores, CpuScores(*waiter_)));
}

class ExecutorLedgerErrorTest : public ExecutorMemoryLedgerTest {
 protected:
  void SetUp() override {
    ExecutorMemoryLedgerTest::SetUp();
    MakeGpu(uint64_t{64} << 20, absl::ZeroDuration(), 0);
    Make(Config(true));
    case_ = std::make_unique<CosineCase>(200, 256, 16, 3);
  }

  absl::Status Run(Placement placement, CosineOutput* out) {
    scores_.assign(case_->q * case_->n, 0.0f);
    out->scores = absl::MakeSpan(scores_);
    case_->job.placement = placement;
    return executor_->Cosine(case_->job, out);
  }

  std::unique_ptr<CosineCase> case_;
  std::vector<float> scores_;
};

TEST_F(ExecutorLedgerErrorTest, ReservationsAreReleasedOnEveryErrorPath) {
  CosineOutput out;
  // A device error: the rest runs on the CPU.
  sim_->FailNextCalls(1, absl::UnavailableError("device error"));
  ASSERT_TRUE(Run(Placement::kAuto, &out).ok());
  EXPECT_EQ(out.report.fallback_reason, kFallbackGpuError);
  EXPECT_EQ(Reserved(), 0u);

  // The same for a GPU-only request, which fails instead.
  sim_->FailNextCalls(1, absl::UnavailableError("device error"));
  EXPECT_EQ(Run(Placement::kGpuOnly, &out).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Reserved(), 0u);

  // OOM at every size (200, 100, 50 and 25 rows; the floor is 16): the
  // halvings shrink the reservation, then the CPU takes the rest.
  sim_->FailNextCalls(4, DeviceOutOfMemoryError("oom"));
  ASSERT_TRUE(Run(Placement::kAuto, &out).ok());
  EXPECT_EQ(out.report.fallback_reason, kFallbackGpuOom);
  EXPECT_EQ(Reserved(), 0u);
  sim_->FailNextCalls(4, DeviceOutOfMemoryError("oom"));
  EXPECT_EQ(Run(Placement::kGpuOnly, &out).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reserved(), 0u);

  // A backend that throws.
  recording_->ThrowBadAllocOnNextCalls(1);
  ASSERT_TRUE(Run(Placement::kAuto, &out).ok());
  EXPECT_EQ(Reserved(), 0u);

  // A sticky error.
  sim_->InjectStickyError();
  ASSERT_TRUE(Run(Placement::kAuto, &out).ok());
  EXPECT_EQ(Reserved(), 0u);
  EXPECT_EQ(executor_->memory_ledger()->stats().reservations, 0u);
  EXPECT_GT(executor_->memory_ledger()->stats().granted, 0u);
}

TEST_F(ExecutorLedgerErrorTest, SpreadingReservesAndReleasesItsFootprint) {
  engram::testing::RandomCsrGraph graph =
      engram::testing::RandomGraph(2000, 4, 9);
  std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}};
  SpreadJob job;
  job.graph = graph.view();
  job.seeds = seeds;
  job.placement = Placement::kGpuOnly;
  SpreadOutput out;
  ASSERT_TRUE(executor_->Spread(job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_EQ(executor_->memory_ledger()->stats().peak_reserved_bytes,
            SpreadFootprint(job).TotalBytes());
  EXPECT_EQ(Reserved(), 0u);
}

}  // namespace
}  // namespace engram::dispatch
