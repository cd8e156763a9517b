#include "core/dispatch/calibration.h"

#include <cmath>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::core {
namespace {

using ::testing::HasSubstr;

// Two simulated devices with known costs on a ManualClock make the measured
// crossover exact: the "cpu" has no launch overhead but costs 1 ns per unit,
// the "gpu" costs 1 ms per launch and 10 ps per unit.
class CalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SimulatedGpuBackend::Options slow;
    slow.name = "slow";
    slow.clock = &clock_;
    slow.launch_overhead = absl::ZeroDuration();
    slow.seconds_per_unit = 1e-9;
    cpu_ = *SimulatedGpuBackend::Create(slow);
    SimulatedGpuBackend::Options fast;
    fast.name = "fast";
    fast.device_name = "Fast Device 9000";
    fast.clock = &clock_;
    fast.launch_overhead = absl::Milliseconds(1);
    fast.seconds_per_unit = 1e-11;
    gpu_ = *SimulatedGpuBackend::Create(fast);
    options_.cosine_dim = 16;
    options_.cosine_targets = 256;  // 4096 units per query
    options_.cosine_queries = {1, 64, 512, 1024};
    options_.spread_nodes = {100, 1000};  // at most 16000 units: never wins
    options_.spread_degree = 4;
    options_.spread_hops = 4;
    options_.repetitions = 3;
  }

  ManualClock clock_;
  std::unique_ptr<SimulatedGpuBackend> cpu_;
  std::unique_ptr<SimulatedGpuBackend> gpu_;
  CalibrationOptions options_;
};

TEST_F(CalibrationTest, MeasuresTheSpeedupAndTheCrossover) {
  auto table = RunCalibration(*cpu_, gpu_.get(), options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->rows.size(), 6u);
  const CrossoverRow& q512 = table->rows[2];
  EXPECT_EQ(q512.work, 512u * 4096);
  EXPECT_NEAR(q512.cpu_seconds, 512 * 4096 * 1e-9, 1e-9);
  EXPECT_NEAR(q512.gpu_seconds, 1e-3 + 512 * 4096 * 1e-11, 1e-9);
  // The GPU wins from Q = 512 (2.1 ms vs 1.02 ms), not at Q = 64.
  EXPECT_EQ(table->cosine_min_gpu_work, uint64_t{512} * 4096);
  EXPECT_EQ(table->spread_min_gpu_work, kNeverGpu);
  EXPECT_EQ(table->gpu_device, "Fast Device 9000");
}

TEST_F(CalibrationTest, SeedsThePerformanceModel) {
  auto model = PerformanceModel::Create({});
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(
      RunCalibration(*cpu_, gpu_.get(), options_, &clock_, model->get()).ok());
  PerfSnapshot s = (*model)->Snapshot(Operation::kCosine, 64 * 4096);
  EXPECT_EQ(s.cpu.samples, 3u);
  EXPECT_EQ(s.gpu.samples, 3u);
  EXPECT_GT(s.gpu.Predict(64 * 4096), s.cpu.Predict(64 * 4096));
}

TEST_F(CalibrationTest, FormatsATableAndAConfigProfile) {
  auto table = RunCalibration(*cpu_, gpu_.get(), options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok());
  const std::string text = FormatCrossoverTable(*table);
  EXPECT_THAT(text, HasSubstr("cpu=slow gpu=fast (Fast Device 9000)"));
  EXPECT_THAT(text, HasSubstr("Q=512 N=256 d=16"));
  EXPECT_THAT(text, HasSubstr("cosine min_gpu_work = 2097152"));
  EXPECT_THAT(text, HasSubstr("spread min_gpu_work = never"));
  // The profile is a valid config section that selects itself by name.
  const std::string profile = FormatCrossoverProfile(*table);
  std::string selected;
  auto config = ParseHybridConfig(profile, "Fast Device 9000", &selected);
  ASSERT_TRUE(config.ok()) << config.status() << "\n" << profile;
  EXPECT_EQ(selected, "Fast Device 9000");
  EXPECT_EQ(config->min_gpu_work_cosine, 2097152u);
  EXPECT_EQ(config->min_gpu_work_spread, kNeverGpu);
}

TEST_F(CalibrationTest, WithoutAGpuMeasuresTheCpuOnly) {
  auto table = RunCalibration(*cpu_, nullptr, options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok());
  EXPECT_FALSE(table->cosine_min_gpu_work.has_value());
  EXPECT_TRUE(std::isnan(table->rows[0].gpu_seconds));
  EXPECT_EQ(FormatCrossoverProfile(*table), "");
}

TEST_F(CalibrationTest, GpuFailuresAreCountedNotFatal) {
  gpu_->FailNextCalls(100, absl::InternalError("broken"));
  auto table = RunCalibration(*cpu_, gpu_.get(), options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok());
  EXPECT_GT(table->gpu_errors, 0u);
  EXPECT_THAT(FormatCrossoverTable(*table), HasSubstr("failed"));
}

TEST_F(CalibrationTest, RejectsOptionsOutOfRange) {
  CalibrationOptions bad = options_;
  bad.repetitions = 0;
  EXPECT_EQ(
      RunCalibration(*cpu_, nullptr, bad, &clock_, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.cosine_queries = {0};
  EXPECT_FALSE(RunCalibration(*cpu_, nullptr, bad, &clock_, nullptr).ok());
  bad = options_;
  bad.spread_hops = 65;
  EXPECT_FALSE(RunCalibration(*cpu_, nullptr, bad, &clock_, nullptr).ok());
}

}  // namespace
}  // namespace engram::core
