#include "core/dispatch/calibration.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::HasSubstr;

// Wraps a backend so that calls cost extra time on `clock` the way a real
// GPU's do: the backend's very first call pays `first_call` (context, lane,
// pinned staging), the first call at each new shape pays `new_shape` (pool
// growth, cuBLAS handle), and the calls numbered in `hiccups` (1-based,
// counting every call) pay `hiccup` (another tenant, say).
class ColdStartBackend final : public ComputeBackend {
 public:
  ColdStartBackend(ComputeBackend* inner, ManualClock* clock,
                   absl::Duration first_call, absl::Duration new_shape)
      : inner_(inner),
        clock_(clock),
        first_call_(first_call),
        new_shape_(new_shape) {}

  void AddHiccup(uint64_t call, absl::Duration cost) {
    hiccups_.insert(call);
    hiccup_ = cost;
  }

  absl::string_view name() const override { return inner_->name(); }
  BackendCapabilities Capabilities() const override {
    return inner_->Capabilities();
  }
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override {
    Cold(Operation::kCosine, job.work());
    return inner_->Cosine(job, out);
  }
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override {
    Cold(Operation::kSpread, job.work());
    return inner_->Spread(job, out);
  }
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    return inner_->QueryMemory();
  }

  uint64_t calls() const { return calls_; }

 private:
  void Cold(Operation op, uint64_t work) {
    ++calls_;
    if (calls_ == 1) clock_->Advance(first_call_);
    if (shapes_.insert({op, work}).second) clock_->Advance(new_shape_);
    if (hiccups_.count(calls_) > 0) clock_->Advance(hiccup_);
  }

  ComputeBackend* const inner_;
  ManualClock* const clock_;
  const absl::Duration first_call_;
  const absl::Duration new_shape_;
  absl::Duration hiccup_;
  std::set<uint64_t> hiccups_;
  std::set<std::pair<Operation, uint64_t>> shapes_;
  uint64_t calls_ = 0;
};

// Two simulated devices with known costs on a ManualClock make the measured
// crossover exact: the "cpu" has no launch overhead but costs 1 ns per unit,
// the "gpu" costs 1 ms per launch and 10 ps per unit.
class CalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dispatch::testing::SimulatedGpuBackend::Options slow;
    slow.name = "slow";
    slow.clock = &clock_;
    slow.launch_overhead = absl::ZeroDuration();
    slow.seconds_per_unit = 1e-9;
    cpu_ = *dispatch::testing::SimulatedGpuBackend::Create(slow);
    dispatch::testing::SimulatedGpuBackend::Options fast;
    fast.name = "fast";
    fast.device_name = "Fast Device 9000";
    fast.clock = &clock_;
    fast.launch_overhead = absl::Milliseconds(1);
    fast.seconds_per_unit = 1e-11;
    gpu_ = *dispatch::testing::SimulatedGpuBackend::Create(fast);
    options_.cosine_dim = 16;
    options_.cosine_targets = 256;  // 4096 units per query
    options_.cosine_queries = {1, 64, 512, 1024};
    options_.spread_nodes = {100, 1000};  // at most 16000 units: never wins
    options_.spread_degree = 4;
    options_.spread_hops = 4;
    options_.repetitions = 3;
    // Dense, inline shapes only: the tests below count on them (the shapes
    // the full sweep adds have a test of their own).
    options_.cosine_top_k = {0};
    options_.cosine_resident = false;
  }

  ManualClock clock_;
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> cpu_;
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu_;
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
  // The GPU lost spreading at every size measured (up to 1000 nodes x 4
  // edges x 4 hops): those stay on the CPU, larger ones are left open.
  EXPECT_EQ(config->min_gpu_work_spread, 16001u);
  EXPECT_THAT(profile,
              HasSubstr("# the GPU lost at every measured size up to 16000"));
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

// What misled the sweep on an H200: every first call was timed. Here the
// "gpu" pays 500 ms on its first call and 90 ms at each new shape (a cuBLAS
// handle, pool growth), which would hide that it wins from Q = 512 on.
TEST_F(CalibrationTest, FirstCallsAreWarmUpAndNotTimed) {
  ColdStartBackend cold_gpu(gpu_.get(), &clock_, absl::Milliseconds(500),
                            absl::Milliseconds(90));
  ColdStartBackend cold_cpu(cpu_.get(), &clock_, absl::Milliseconds(5),
                            absl::Milliseconds(1));
  auto model = PerformanceModel::Create({});
  ASSERT_TRUE(model.ok());
  auto table =
      RunCalibration(cold_cpu, &cold_gpu, options_, &clock_, model->get());
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->rows.size(), 6u);
  // Exactly the warm figures of MeasuresTheSpeedupAndTheCrossover.
  const CrossoverRow& q1 = table->rows[0];
  EXPECT_NEAR(q1.cpu_seconds, 4096 * 1e-9, 1e-9);
  EXPECT_NEAR(q1.gpu_seconds, 1e-3 + 4096 * 1e-11, 1e-9);
  const CrossoverRow& q512 = table->rows[2];
  EXPECT_NEAR(q512.cpu_seconds, 512 * 4096 * 1e-9, 1e-9);
  EXPECT_NEAR(q512.gpu_seconds, 1e-3 + 512 * 4096 * 1e-11, 1e-9);
  EXPECT_EQ(table->cosine_min_gpu_work, uint64_t{512} * 4096);
  EXPECT_EQ(table->spread_min_gpu_work, kNeverGpu);
  // One untimed call, then three timed ones, per size and backend.
  EXPECT_EQ(cold_gpu.calls(), 6u * 4);
  EXPECT_EQ(cold_cpu.calls(), 6u * 4);
  EXPECT_EQ(table->gpu_errors, 0u);
  // The model was seeded with warm timings only.
  const PerfSnapshot s = (*model)->Snapshot(Operation::kCosine, 512 * 4096);
  EXPECT_EQ(s.gpu.samples, 3u);
  EXPECT_NEAR(s.gpu.Predict(512 * 4096), 1e-3 + 512 * 4096 * 1e-11, 1e-9);
  EXPECT_LT(s.gpu.Predict(512 * 4096), s.cpu.Predict(512 * 4096));
}

// The same cold backend without the warm-up: the check above is not vacuous.
TEST_F(CalibrationTest, WithoutWarmUpTheFirstCallWouldBeTimed) {
  ColdStartBackend cold_gpu(gpu_.get(), &clock_, absl::Milliseconds(500),
                            absl::Milliseconds(90));
  options_.warmup_calls = 0;
  options_.repetitions = 1;
  auto table = RunCalibration(*cpu_, &cold_gpu, options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_NEAR(table->rows[0].gpu_seconds, 0.591 + 4096 * 1e-11, 1e-9);
  EXPECT_NEAR(table->rows[2].gpu_seconds, 0.091 + 512 * 4096 * 1e-11, 1e-9);
  EXPECT_EQ(table->cosine_min_gpu_work, kNeverGpu);
}

// One slow timed call in three (after the warm-up) moves neither the table
// nor the model: both take the median.
TEST_F(CalibrationTest, ASlowRepetitionDoesNotMoveTheMedianOrTheModel) {
  ColdStartBackend gpu(gpu_.get(), &clock_, absl::ZeroDuration(),
                       absl::ZeroDuration());
  // Calls 1-4 are Q = 1 (one warm-up, three timed); 5-8 are Q = 64.
  gpu.AddHiccup(3, absl::Milliseconds(200));
  gpu.AddHiccup(8, absl::Milliseconds(200));
  auto model = PerformanceModel::Create({});
  ASSERT_TRUE(model.ok());
  auto table = RunCalibration(*cpu_, &gpu, options_, &clock_, model->get());
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_NEAR(table->rows[0].gpu_seconds, 1e-3 + 4096 * 1e-11, 1e-9);
  EXPECT_NEAR(table->rows[1].gpu_seconds, 1e-3 + 64 * 4096 * 1e-11, 1e-9);
  const PerfSnapshot s = (*model)->Snapshot(Operation::kCosine, 64 * 4096);
  EXPECT_EQ(s.gpu.samples, 3u);
  EXPECT_NEAR(s.gpu.Predict(64 * 4096), 1e-3 + 64 * 4096 * 1e-11, 1e-9);
}

TEST_F(CalibrationTest, WarmUpFailuresAreCountedNotFatal) {
  // The first GPU call (a warm-up) fails; the timed ones succeed.
  gpu_->FailNextCalls(1, absl::InternalError("cold"));
  auto table = RunCalibration(*cpu_, gpu_.get(), options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->gpu_errors, 1u);
  EXPECT_NEAR(table->rows[0].gpu_seconds, 1e-3 + 4096 * 1e-11, 1e-9);
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
  bad = options_;
  bad.warmup_calls = 11;
  EXPECT_EQ(
      RunCalibration(*cpu_, nullptr, bad, &clock_, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(CalibrationTest, TheSweepCoversTopKAndResidentShapes) {
  // A device that charges for copying the targets in: resident targets
  // spare it, and the GPU's fitted model learns the byte rate.
  dispatch::testing::SimulatedGpuBackend::Options copying;
  copying.name = "copying";
  copying.device_name = "Copying Device";
  copying.clock = &clock_;
  copying.launch_overhead = absl::Microseconds(100);
  copying.seconds_per_unit = 1e-11;
  copying.seconds_per_target_byte = 1e-9;
  auto gpu = *dispatch::testing::SimulatedGpuBackend::Create(copying);
  ASSERT_TRUE(gpu->Capabilities().supports_residency);
  options_.cosine_queries = {1, 64};
  options_.cosine_top_k = {0, 10};
  options_.cosine_resident = true;
  auto model = *PerformanceModel::Create({});
  auto table = RunCalibration(*cpu_, gpu.get(), options_, &clock_, model.get());
  ASSERT_TRUE(table.ok()) << table.status();
  std::map<std::string, const CrossoverRow*> by_shape;
  for (const CrossoverRow& r : table->rows) by_shape[r.shape] = &r;
  // 2 query counts x 2 top_k x inline and resident, then the spreading.
  EXPECT_EQ(table->rows.size(), 8u + options_.spread_nodes.size());
  const CrossoverRow* in = by_shape["Q=64 N=256 d=16 top-10"];
  const CrossoverRow* resident = by_shape["Q=64 N=256 d=16 top-10 resident"];
  ASSERT_NE(in, nullptr);
  ASSERT_NE(resident, nullptr);
  EXPECT_EQ(resident->cpu_seconds, in->cpu_seconds);
  EXPECT_LT(resident->gpu_seconds, in->gpu_seconds);
  // Rows stay by operation, then work.
  for (size_t i = 1; i < table->rows.size(); ++i) {
    EXPECT_LE(std::make_pair(table->rows[i - 1].op, table->rows[i - 1].work),
              std::make_pair(table->rows[i].op, table->rows[i].work));
  }
  // The resident rows read the copy, which is gone after the sweep.
  EXPECT_GT(gpu->stats().resident_hits, 0u);
  EXPECT_EQ(gpu->stats().resident_uploads, 1u);
  EXPECT_EQ(gpu->stats().resident_evictions, 1u);
  const CostFit fit = model->Fit(Operation::kCosine, BackendKind::kGpu);
  ASSERT_TRUE(fit.usable);
  EXPECT_GT(fit.seconds_per_byte, 0.0);
}

TEST(StoredCalibrationTest, RoundTripsExactly) {
  StoredCalibration c;
  c.gpu_device = "NVIDIA H100 80GB HBM3";
  c.cosine_min_gpu_work = uint64_t{1} << 26;
  CostFit gpu;
  gpu.usable = true;
  gpu.fixed_seconds = 3.0000000000000001e-5;
  gpu.seconds_per_byte = 1.0 / 3e10;
  gpu.seconds_per_unit = 1e-12 / 7;
  gpu.samples = 24;
  gpu.min_work = 65536;
  gpu.max_work = uint64_t{1} << 33;
  gpu.relative_error = 0.0123;
  c.fits[0][1] = gpu;
  CostFit cpu = gpu;
  cpu.seconds_per_byte = 0;
  c.fits[1][0] = cpu;
  auto parsed = ParseStoredCalibration(FormatStoredCalibration(c));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->gpu_device, c.gpu_device);
  EXPECT_EQ(parsed->cosine_min_gpu_work, c.cosine_min_gpu_work);
  EXPECT_FALSE(parsed->spread_min_gpu_work.has_value());
  const CostFit& got = parsed->fits[0][1];
  EXPECT_TRUE(got.usable);
  EXPECT_EQ(got.fixed_seconds, gpu.fixed_seconds);  // bit for bit
  EXPECT_EQ(got.seconds_per_byte, gpu.seconds_per_byte);
  EXPECT_EQ(got.seconds_per_unit, gpu.seconds_per_unit);
  EXPECT_EQ(got.samples, 24u);
  EXPECT_EQ(got.max_work, gpu.max_work);
  EXPECT_TRUE(parsed->fits[1][0].usable);
  EXPECT_FALSE(parsed->fits[0][0].usable);  // not stored: none
  EXPECT_FALSE(parsed->fits[1][1].usable);
}

TEST(StoredCalibrationTest, WhatCannotBeReadIsRefusedNamingTheLine) {
  for (const auto& [text, what] :
       std::vector<std::pair<std::string, std::string>>{
           {"gpu_device = x\n", "no \"format = 1\" line"},
           {"format = 2\n", "line 1: unsupported format"},
           {"format = 1\ncosine.gpu = 1 2 3\n", "line 2: expected seven"},
           {"format = 1\n# note\ncosine.gpu = -1 0 0 3 1 2 0\n",
            "line 3: expected seven"},
           {"format = 1\ncosine.tpu = 1 0 0 3 1 2 0\n", "unknown key"},
           {"format = 1\ncosine_min_gpu_work = lots\n", "not a work count"},
           {"format = 1\nno equals sign\n", "line 2: expected key = value"}}) {
    auto parsed = ParseStoredCalibration(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr(what)) << text;
  }
}

TEST_F(CalibrationTest, TheSmallestGpuWinIsTheSmallestWorkItWonAt) {
  auto table = RunCalibration(*cpu_, gpu_.get(), options_, &clock_, nullptr);
  ASSERT_TRUE(table.ok()) << table.status();
  // The crossover needs every larger size won; the smallest win is any
  // size won, here the same, and spreading never won.
  EXPECT_EQ(SmallestGpuWin(*table, Operation::kCosine),
            table->cosine_min_gpu_work);
  EXPECT_FALSE(SmallestGpuWin(*table, Operation::kSpread).has_value());
  CrossoverTable made;
  made.rows = {{Operation::kCosine, 100, "", 1.0, 2.0},
               {Operation::kCosine, 200, "", 2.0, 1.0},
               {Operation::kCosine, 400, "", 4.0, 5.0},
               {Operation::kCosine, 800, "", 8.0, std::nan("")}};
  EXPECT_EQ(SmallestGpuWin(made, Operation::kCosine), 200u);
}

}  // namespace
}  // namespace engram::dispatch
