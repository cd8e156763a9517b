#include "core/dispatch/memory_pressure.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/clock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

// A device whose memory reading the test sets; counts probes.
class FakeDevice {
 public:
  void Set(uint64_t free, uint64_t total) {
    absl::MutexLock lock(&mu_);
    reading_ = DeviceMemoryInfo{free, total};
    error_ = absl::OkStatus();
  }
  void Fail(absl::Status error) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
  }
  int probes() const { return probes_.load(); }

  MemoryPressureMonitor::Probe AsProbe() {
    return [this]() -> absl::StatusOr<DeviceMemoryInfo> {
      probes_.fetch_add(1);
      absl::MutexLock lock(&mu_);
      if (!error_.ok()) return error_;
      return reading_;
    };
  }

 private:
  mutable absl::Mutex mu_;
  DeviceMemoryInfo reading_ ABSL_GUARDED_BY(mu_){10 * kGiB, 16 * kGiB};
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> probes_{0};
};

class MemoryPressureTest : public ::testing::Test {
 protected:
  MemoryPressureMonitor::Options BaseOptions() {
    MemoryPressureMonitor::Options o;
    o.refresh_interval = absl::Seconds(1);
    o.stale_after = absl::Seconds(10);
    o.clock = &clock_;
    return o;
  }
  std::unique_ptr<MemoryPressureMonitor> Make(
      const MemoryPressureMonitor::Options& o) {
    auto monitor = MemoryPressureMonitor::Create(o, device_.AsProbe());
    EXPECT_TRUE(monitor.ok()) << monitor.status();
    return *std::move(monitor);
  }

  ManualClock clock_;
  FakeDevice device_;
};

TEST_F(MemoryPressureTest, CreatesWithDefaultOptions) {
  auto monitor = MemoryPressureMonitor::Create({}, device_.AsProbe());
  ASSERT_TRUE(monitor.ok());
  EXPECT_DOUBLE_EQ((*monitor)->options().safety_margin, 0.8);
  EXPECT_EQ(device_.probes(), 0);  // nothing is probed before it is asked
}

// The original applied its 80% margin only when the VRAM query failed.
TEST_F(MemoryPressureTest, SafetyMarginAppliesWhenTheQuerySucceeds) {
  auto monitor = Make(BaseOptions());
  device_.Set(10 * kGiB, 16 * kGiB);
  MemoryAssessment a = monitor->Assess();
  ASSERT_TRUE(a.has_reading);
  EXPECT_EQ(a.reading.free_bytes, 10 * kGiB);
  EXPECT_EQ(a.budget_bytes, 8 * kGiB);
}

TEST_F(MemoryPressureTest, SafetyMarginIsConfigurable) {
  MemoryPressureMonitor::Options options = BaseOptions();
  options.safety_margin = 0.5;
  auto monitor = Make(options);
  device_.Set(10 * kGiB, 16 * kGiB);
  EXPECT_EQ(monitor->Assess().budget_bytes, 5 * kGiB);
  options.safety_margin = 1.0;
  EXPECT_EQ(Make(options)->Assess().budget_bytes, 10 * kGiB);
  for (double bad : {0.0, -0.1, 1.01}) {
    options.safety_margin = bad;
    EXPECT_EQ(MemoryPressureMonitor::Create(options, device_.AsProbe())
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST_F(MemoryPressureTest, CreateRejectsBadOptionsAndAnEmptyProbe) {
  EXPECT_FALSE(MemoryPressureMonitor::Create(BaseOptions(), nullptr).ok());
  MemoryPressureMonitor::Options options = BaseOptions();
  options.high_pressure_fraction = 0;
  EXPECT_FALSE(MemoryPressureMonitor::Create(options, device_.AsProbe()).ok());
  options = BaseOptions();
  options.stale_after = absl::ZeroDuration();
  EXPECT_FALSE(MemoryPressureMonitor::Create(options, device_.AsProbe()).ok());
  options = BaseOptions();
  options.refresh_interval = absl::Seconds(11);
  EXPECT_FALSE(MemoryPressureMonitor::Create(options, device_.AsProbe()).ok());
  options = BaseOptions();
  options.stale_after = absl::InfiniteDuration();
  EXPECT_FALSE(MemoryPressureMonitor::Create(options, device_.AsProbe()).ok());
}

TEST_F(MemoryPressureTest, ReadingIsCachedWithinTheRefreshInterval) {
  auto monitor = Make(BaseOptions());
  monitor->Assess();
  monitor->Assess();
  clock_.Advance(absl::Milliseconds(999));
  monitor->Assess();
  EXPECT_EQ(device_.probes(), 1);
  clock_.Advance(absl::Milliseconds(1));
  monitor->Assess();
  EXPECT_EQ(device_.probes(), 2);
}

TEST_F(MemoryPressureTest, ProbeFailureKeepsTheLastGoodReadingWithItsAge) {
  auto monitor = Make(BaseOptions());
  device_.Set(10 * kGiB, 16 * kGiB);
  monitor->Assess();
  device_.Fail(absl::InternalError("driver busy"));
  clock_.Advance(absl::Seconds(2));
  MemoryAssessment a = monitor->Assess();
  EXPECT_TRUE(a.has_reading);
  EXPECT_EQ(a.reading.free_bytes, 10 * kGiB);
  EXPECT_EQ(a.age, absl::Seconds(2));
  EXPECT_FALSE(a.stale);
  EXPECT_FALSE(a.high_pressure);
  EXPECT_EQ(a.probe_failures, 1u);
  EXPECT_EQ(a.last_probe_error, "driver busy");
  EXPECT_EQ(a.budget_bytes, 8 * kGiB);
}

TEST_F(MemoryPressureTest, StaleReadingCountsAsHighPressure) {
  auto monitor = Make(BaseOptions());
  monitor->Assess();
  device_.Fail(absl::InternalError("driver gone"));
  for (int i = 0; i < 11; ++i) {
    clock_.Advance(absl::Seconds(1));
    monitor->Assess();
  }
  MemoryAssessment a = monitor->Cached();
  EXPECT_TRUE(a.has_reading);
  EXPECT_TRUE(a.stale);
  EXPECT_TRUE(a.high_pressure);
  EXPECT_EQ(a.probe_failures, 11u);
  // The budget of the last reading is still reported for GPU-only requests.
  EXPECT_EQ(a.budget_bytes, 8 * kGiB);
}

TEST_F(MemoryPressureTest, NoReadingIsHighPressureWithNoBudget) {
  auto monitor = Make(BaseOptions());
  device_.Fail(absl::UnavailableError("no device"));
  MemoryAssessment a = monitor->Assess();
  EXPECT_FALSE(a.has_reading);
  EXPECT_TRUE(a.stale);
  EXPECT_TRUE(a.high_pressure);
  EXPECT_EQ(a.budget_bytes, 0u);
  EXPECT_EQ(a.probe_failures, 1u);
}

TEST_F(MemoryPressureTest, DetectsPressureFromTheUsedFraction) {
  auto monitor = Make(BaseOptions());  // high at 90% used
  device_.Set(8 * kGiB, 16 * kGiB);
  EXPECT_FALSE(monitor->Assess().high_pressure);
  device_.Set(kGiB, 16 * kGiB);
  clock_.Advance(absl::Seconds(1));
  MemoryAssessment a = monitor->Assess();
  EXPECT_TRUE(a.high_pressure);
  EXPECT_NEAR(a.used_fraction, 15.0 / 16.0, 1e-12);
  EXPECT_FALSE(a.stale);
}

TEST_F(MemoryPressureTest, ImplausibleReadingCountsAsAProbeFailure) {
  auto monitor = Make(BaseOptions());
  device_.Set(20 * kGiB, 16 * kGiB);
  MemoryAssessment a = monitor->Assess();
  EXPECT_FALSE(a.has_reading);
  EXPECT_EQ(a.probe_failures, 1u);
  EXPECT_NE(a.last_probe_error.find("implausible"), std::string::npos);
}

TEST_F(MemoryPressureTest, BatchSizeAdaptsUnderPressure) {
  auto monitor = Make(BaseOptions());
  const JobFootprint job = CosineFootprint(/*queries=*/1 << 20,
                                           /*targets=*/100000, /*dim=*/256,
                                           /*top_k=*/0);
  std::vector<uint64_t> chunk;
  for (uint64_t free : {12 * kGiB, 6 * kGiB, 2 * kGiB, kGiB / 4}) {
    device_.Set(free, 16 * kGiB);
    clock_.Advance(absl::Seconds(1));
    const uint64_t budget = monitor->Assess().budget_bytes;
    chunk.push_back(ItemsThatFit(job, budget));
    EXPECT_LE(job.BytesFor(chunk.back()), budget);
    EXPECT_GT(job.BytesFor(chunk.back() + 1), budget);
  }
  EXPECT_GT(chunk[0], chunk[1]);
  EXPECT_GT(chunk[1], chunk[2]);
  EXPECT_GT(chunk[2], chunk[3]);
  // A quarter GiB still holds the targets (about 103 MB) and some queries.
  EXPECT_GT(chunk[3], 0u);
}

TEST_F(MemoryPressureTest, ConcurrentPressureQueriesProbeOneAtATime) {
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> probes{0};
  MemoryPressureMonitor::Options options;
  options.refresh_interval = absl::ZeroDuration();  // probe whenever free
  options.stale_after = absl::Seconds(60);
  auto monitor = MemoryPressureMonitor::Create(
      options, [&]() -> absl::StatusOr<DeviceMemoryInfo> {
        const int now = in_flight.fetch_add(1) + 1;
        int seen = max_in_flight.load();
        while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
        }
        absl::SleepFor(absl::Microseconds(200));
        const int n = probes.fetch_add(1);
        in_flight.fetch_sub(1);
        if (n % 3 == 2) return absl::InternalError("flaky");
        return DeviceMemoryInfo{(8 + n % 4) * kGiB, 16 * kGiB};
      });
  ASSERT_TRUE(monitor.ok());
  (*monitor)->Assess();  // a first good reading
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        MemoryAssessment a = (*monitor)->Assess();
        ASSERT_TRUE(a.has_reading);
        ASSERT_GE(a.reading.free_bytes, 8 * kGiB);
        ASSERT_LE(a.reading.free_bytes, 11 * kGiB);
        ASSERT_EQ(a.budget_bytes,
                  static_cast<uint64_t>(a.reading.free_bytes * 0.8));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(max_in_flight.load(), 1);
  EXPECT_GT(probes.load(), 1);
  EXPECT_EQ((*monitor)->Cached().probe_failures,
            static_cast<uint64_t>(probes.load() / 3));
}

}  // namespace
}  // namespace engram::dispatch
