#include "core/dispatch/performance_model.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

class PerformanceModelTest : public ::testing::Test {
 protected:
  PerformanceModel::Options BaseOptions() {
    PerformanceModel::Options o;
    o.window_samples = 8;
    o.min_samples = 3;
    o.max_sample_age = absl::Seconds(100);
    o.success_window = 10;
    o.success_max_age = absl::Seconds(100);
    o.probe_initial_interval = absl::Seconds(1);
    o.probe_max_interval = absl::Seconds(8);
    o.probe_backoff = 2.0;
    o.clock = &clock_;
    return o;
  }

  std::unique_ptr<PerformanceModel> Make(const PerformanceModel::Options& o) {
    auto model = PerformanceModel::Create(o);
    EXPECT_TRUE(model.ok()) << model.status();
    return *std::move(model);
  }

  static void Record(PerformanceModel& m, BackendKind backend, uint64_t work,
                     double seconds, int times = 1,
                     Operation op = Operation::kCosine) {
    for (int i = 0; i < times; ++i) {
      ASSERT_TRUE(m.RecordTiming(op, backend, work, seconds).ok());
    }
  }

  ManualClock clock_;
};

TEST_F(PerformanceModelTest, BucketsArePowersOfTwo) {
  EXPECT_EQ(PerformanceModel::BucketOf(0), 0);
  EXPECT_EQ(PerformanceModel::BucketOf(1), 0);
  EXPECT_EQ(PerformanceModel::BucketOf(2), 1);
  EXPECT_EQ(PerformanceModel::BucketOf(3), 1);
  EXPECT_EQ(PerformanceModel::BucketOf(1023), 9);
  EXPECT_EQ(PerformanceModel::BucketOf(1024), 10);
  EXPECT_EQ(PerformanceModel::BucketOf(std::numeric_limits<uint64_t>::max()),
            63);
}

// The original averaged every latency together, so a large batch made small
// ones look slow. Each bucket here keeps its own.
TEST_F(PerformanceModelTest, LatenciesOfDifferentSizesAreKeptApart) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 1024, 0.001, 3);
  Record(*model, BackendKind::kCpu, uint64_t{1} << 20, 0.100, 3);
  PerfSnapshot small = model->Snapshot(Operation::kCosine, 1024);
  PerfSnapshot large = model->Snapshot(Operation::kCosine, uint64_t{1} << 20);
  EXPECT_EQ(small.cpu.samples, 3u);
  EXPECT_DOUBLE_EQ(small.cpu.p50_seconds, 0.001);
  EXPECT_DOUBLE_EQ(small.cpu.p99_seconds, 0.001);
  EXPECT_EQ(large.cpu.samples, 3u);
  EXPECT_DOUBLE_EQ(large.cpu.p50_seconds, 0.100);
  // A bucket without samples predicts nothing: no extrapolation.
  EXPECT_EQ(model->Snapshot(Operation::kCosine, 1 << 15).cpu.samples, 0u);
  EXPECT_FALSE(model->Snapshot(Operation::kCosine, 1 << 15).cpu.usable);
}

// The original let GPU timings into the CPU average.
TEST_F(PerformanceModelTest, GpuTimingsNeverEnterCpuBuckets) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kGpu, 4096, 0.0001, 5);
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 4096);
  EXPECT_EQ(s.cpu.samples, 0u);
  EXPECT_EQ(s.gpu.samples, 5u);
  Record(*model, BackendKind::kCpu, 4096, 0.01, 3);
  s = model->Snapshot(Operation::kCosine, 4096);
  EXPECT_DOUBLE_EQ(s.cpu.p50_seconds, 0.01);
  EXPECT_DOUBLE_EQ(s.gpu.p50_seconds, 0.0001);
}

TEST_F(PerformanceModelTest, OperationsAreKeptApart) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 4096, 0.5, 3, Operation::kSpread);
  EXPECT_EQ(model->Snapshot(Operation::kCosine, 4096).cpu.samples, 0u);
  EXPECT_EQ(model->Snapshot(Operation::kSpread, 4096).cpu.samples, 3u);
}

TEST_F(PerformanceModelTest, RecordRejectsAnythingButOneBackendAndATime) {
  auto model = Make(BaseOptions());
  EXPECT_FALSE(
      model->RecordTiming(Operation::kCosine, BackendKind::kMixed, 10, 1).ok());
  EXPECT_FALSE(
      model->RecordTiming(Operation::kCosine, BackendKind::kUnspecified, 10, 1)
          .ok());
  EXPECT_FALSE(
      model->RecordTiming(Operation::kCosine, BackendKind::kCpu, 10, -1).ok());
  EXPECT_FALSE(model
                   ->RecordTiming(Operation::kCosine, BackendKind::kCpu, 10,
                                  std::nan(""))
                   .ok());
  EXPECT_FALSE(
      model->RecordOutcome(Operation::kCosine, BackendKind::kMixed, true).ok());
}

TEST_F(PerformanceModelTest, ThroughputIsSecondsPerUnitOfWork) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 1024, 0.001);
  Record(*model, BackendKind::kCpu, 2000, 0.003);
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 1500);
  EXPECT_DOUBLE_EQ(s.cpu.seconds_per_unit, 0.004 / 3024.0);
  EXPECT_DOUBLE_EQ(s.cpu.Predict(3024), 0.004);
}

TEST_F(PerformanceModelTest, MeasuresTheSpeedupBetweenBackends) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 1 << 20, 0.010, 3);
  Record(*model, BackendKind::kGpu, 1 << 20, 0.002, 3);
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 1 << 20);
  ASSERT_TRUE(s.cpu.usable && s.gpu.usable);
  EXPECT_DOUBLE_EQ(s.cpu.Predict(1 << 20) / s.gpu.Predict(1 << 20), 5.0);
}

TEST_F(PerformanceModelTest, PercentilesUseNearestRank) {
  PerformanceModel::Options options = BaseOptions();
  options.window_samples = 100;
  auto model = Make(options);
  for (int i = 100; i >= 1; --i) {
    Record(*model, BackendKind::kGpu, 64, i * 0.001);
  }
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 64);
  EXPECT_DOUBLE_EQ(s.gpu.p50_seconds, 0.050);
  EXPECT_DOUBLE_EQ(s.gpu.p95_seconds, 0.095);
  EXPECT_DOUBLE_EQ(s.gpu.p99_seconds, 0.099);
}

TEST_F(PerformanceModelTest, WindowKeepsOnlyTheLatestSamples) {
  auto model = Make(BaseOptions());  // window of 8
  Record(*model, BackendKind::kCpu, 100, 1.0, 8);
  Record(*model, BackendKind::kCpu, 100, 0.5, 8);
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 100);
  EXPECT_EQ(s.cpu.samples, 8u);
  EXPECT_DOUBLE_EQ(s.cpu.p99_seconds, 0.5);
}

TEST_F(PerformanceModelTest, OldSamplesAgeOut) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 100, 1.0, 3);
  clock_.Advance(absl::Seconds(101));
  Record(*model, BackendKind::kCpu, 100, 0.25);
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 100);
  EXPECT_EQ(s.cpu.samples, 1u);
  EXPECT_FALSE(s.cpu.usable);
  EXPECT_DOUBLE_EQ(s.cpu.p50_seconds, 0.25);
}

TEST_F(PerformanceModelTest, EstimateIsUsableFromMinSamples) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 100, 1.0, 2);
  EXPECT_FALSE(model->Snapshot(Operation::kCosine, 100).cpu.usable);
  Record(*model, BackendKind::kCpu, 100, 1.0);
  EXPECT_TRUE(model->Snapshot(Operation::kCosine, 100).cpu.usable);
}

// A lifetime success rate never recovers from an early bad spell; a
// windowed one does.
TEST_F(PerformanceModelTest, SuccessRateIsWindowedNotLifetime) {
  auto model = Make(BaseOptions());  // success window of 10
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(
        model->RecordOutcome(Operation::kCosine, BackendKind::kGpu, false)
            .ok());
  }
  EXPECT_DOUBLE_EQ(model->Snapshot(Operation::kCosine, 1).gpu.success_rate,
                   0.0);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        model->RecordOutcome(Operation::kCosine, BackendKind::kGpu, true).ok());
  }
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 1);
  EXPECT_EQ(s.gpu.outcomes, 10u);
  EXPECT_DOUBLE_EQ(s.gpu.success_rate, 1.0);
}

TEST_F(PerformanceModelTest, SuccessRateForgetsOldOutcomes) {
  auto model = Make(BaseOptions());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        model->RecordOutcome(Operation::kCosine, BackendKind::kGpu, false)
            .ok());
  }
  clock_.Advance(absl::Seconds(101));
  PerfSnapshot s = model->Snapshot(Operation::kCosine, 1);
  EXPECT_EQ(s.gpu.outcomes, 0u);
  EXPECT_DOUBLE_EQ(s.gpu.success_rate, 1.0);
  // The success rate is per operation and backend, not per bucket.
  ASSERT_TRUE(
      model->RecordOutcome(Operation::kCosine, BackendKind::kGpu, false).ok());
  EXPECT_DOUBLE_EQ(
      model->Snapshot(Operation::kCosine, 1 << 30).gpu.success_rate, 0.0);
  EXPECT_DOUBLE_EQ(model->Snapshot(Operation::kCosine, 1).cpu.success_rate,
                   1.0);
}

TEST_F(PerformanceModelTest, ProbesBackOffExponentiallyUpToTheCap) {
  auto model = Make(BaseOptions());
  const uint64_t work = 1 << 12;
  EXPECT_TRUE(model->Snapshot(Operation::kCosine, work).probe_due);
  std::vector<double> gaps;
  absl::Time last = clock_.Now();
  ASSERT_TRUE(model->TryClaimProbe(Operation::kCosine, work));
  EXPECT_FALSE(model->TryClaimProbe(Operation::kCosine, work));
  while (gaps.size() < 5) {
    clock_.Advance(absl::Milliseconds(500));
    if (model->TryClaimProbe(Operation::kCosine, work)) {
      gaps.push_back(absl::ToDoubleSeconds(clock_.Now() - last));
      last = clock_.Now();
    }
  }
  EXPECT_EQ(gaps, (std::vector<double>{1, 2, 4, 8, 8}));
  model->ResetProbeInterval(Operation::kCosine, work);
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(model->TryClaimProbe(Operation::kCosine, work));
}

TEST_F(PerformanceModelTest, ProbesAreClaimedPerBucketAndOperation) {
  auto model = Make(BaseOptions());
  ASSERT_TRUE(model->TryClaimProbe(Operation::kCosine, 1 << 12));
  EXPECT_FALSE(model->Snapshot(Operation::kCosine, 1 << 12).probe_due);
  EXPECT_TRUE(model->Snapshot(Operation::kCosine, 1 << 13).probe_due);
  EXPECT_TRUE(model->Snapshot(Operation::kSpread, 1 << 12).probe_due);
}

TEST_F(PerformanceModelTest, SnapshotAllListsEveryPopulatedBucket) {
  auto model = Make(BaseOptions());
  Record(*model, BackendKind::kCpu, 1 << 5, 0.1);
  Record(*model, BackendKind::kGpu, 1 << 9, 0.1, 1, Operation::kSpread);
  std::vector<PerfSnapshot> all = model->SnapshotAll();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].op, Operation::kCosine);
  EXPECT_EQ(all[0].bucket, 5);
  EXPECT_EQ(all[1].op, Operation::kSpread);
  EXPECT_EQ(all[1].bucket, 9);
}

TEST_F(PerformanceModelTest, CreateRejectsOptionsOutOfRange) {
  auto with = [&](auto mutate) {
    PerformanceModel::Options o = BaseOptions();
    mutate(o);
    return PerformanceModel::Create(o).status().code();
  };
  using O = PerformanceModel::Options;
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(with([](O& o) { o.window_samples = 0; }), kBad);
  EXPECT_EQ(with([](O& o) { o.window_samples = 5000; }), kBad);
  EXPECT_EQ(with([](O& o) { o.min_samples = 9; }), kBad);
  EXPECT_EQ(with([](O& o) { o.min_samples = 0; }), kBad);
  EXPECT_EQ(with([](O& o) { o.max_sample_age = absl::ZeroDuration(); }), kBad);
  EXPECT_EQ(with([](O& o) { o.success_window = 0; }), kBad);
  EXPECT_EQ(with([](O& o) { o.success_max_age = absl::ZeroDuration(); }), kBad);
  EXPECT_EQ(with([](O& o) { o.probe_initial_interval = absl::ZeroDuration(); }),
            kBad);
  EXPECT_EQ(with([](O& o) { o.probe_max_interval = absl::Milliseconds(1); }),
            kBad);
  EXPECT_EQ(with([](O& o) { o.probe_backoff = 0.5; }), kBad);
  EXPECT_EQ(with([](O& o) { o.max_sample_age = absl::Hours(24 * 365); }), kBad);
  EXPECT_EQ(with([](O& o) { o.probe_max_interval = absl::InfiniteDuration(); }),
            kBad);
  EXPECT_EQ(with([](O&) {}), absl::StatusCode::kOk);
}

TEST_F(PerformanceModelTest, ConcurrentRecordAndSnapshotStayConsistent) {
  PerformanceModel::Options options = BaseOptions();
  options.clock = nullptr;  // real clock: the threads do not share a fake one
  auto model = Make(options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        // Sizes differ within each bucket ([2^k, 2^(k+1))), so that a sample
        // read half-written (one write's work, another's seconds) shows up
        // as a wrong throughput even without ThreadSanitizer.
        const uint64_t work = (uint64_t{1} << (10 + (i + t) % 4)) +
                              static_cast<uint64_t>((i * 37 + t * 101) % 1000);
        const BackendKind backend =
            (i + t) % 2 == 0 ? BackendKind::kCpu : BackendKind::kGpu;
        // Every sample costs exactly 1 ns per unit, so any view of a bucket
        // must show exactly that throughput.
        ASSERT_TRUE(model
                        ->RecordTiming(Operation::kCosine, backend, work,
                                       static_cast<double>(work) * 1e-9)
                        .ok());
        ASSERT_TRUE(
            model->RecordOutcome(Operation::kCosine, backend, true).ok());
      }
    });
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        PerfSnapshot s = model->Snapshot(Operation::kCosine,
                                         uint64_t{1} << (10 + (i + t) % 4));
        for (const BackendEstimate* e : {&s.cpu, &s.gpu}) {
          ASSERT_LE(e->samples, 8u);
          ASSERT_LE(e->p50_seconds, e->p95_seconds);
          ASSERT_LE(e->p95_seconds, e->p99_seconds);
          if (e->samples > 0) {
            ASSERT_NEAR(e->seconds_per_unit, 1e-9, 1e-15);
          }
          ASSERT_DOUBLE_EQ(e->success_rate, 1.0);
        }
        model->TryClaimProbe(Operation::kCosine, 1 << 10);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(model->Snapshot(Operation::kCosine, 1 << 10).cpu.samples, 8u);
}

}  // namespace
}  // namespace engram::dispatch
