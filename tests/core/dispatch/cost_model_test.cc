#include "core/dispatch/cost_model.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/performance_model.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

// A backend's true cost per call: fixed + bytes x per_byte + work x
// per_unit.
struct TrueCost {
  double fixed = 0;
  double per_byte = 0;
  double per_unit = 0;
  double Of(uint64_t work, uint64_t bytes) const {
    return fixed + per_byte * static_cast<double>(bytes) +
           per_unit * static_cast<double>(work);
  }
};

std::vector<CostObservation> Observe(const TrueCost& cost,
                                     const std::vector<uint64_t>& works,
                                     uint64_t bytes_per_unit) {
  std::vector<CostObservation> out;
  for (uint64_t w : works) {
    const uint64_t bytes = w / 64 * bytes_per_unit + 4096;
    out.push_back({w, bytes, cost.Of(w, bytes)});
  }
  return out;
}

TEST(FitCostTest, RecoversTheThreeParametersAndPredictsUnseenSizes) {
  const TrueCost gpu{3e-5, 1e-10, 1e-12};
  std::vector<uint64_t> works;
  for (int b = 16; b <= 26; b += 2) {
    works.push_back(uint64_t{1} << b);
    works.push_back((uint64_t{3} << b) / 2);
  }
  // Two shapes per size (bytes not proportional to work), as inline and
  // many-query requests make.
  std::vector<CostObservation> seen = Observe(gpu, works, 4);
  const std::vector<CostObservation> other = Observe(gpu, works, 1);
  seen.insert(seen.end(), other.begin(), other.end());
  const CostFit fit = FitCost(seen, 3);
  ASSERT_TRUE(fit.usable);
  EXPECT_NEAR(fit.fixed_seconds, gpu.fixed, gpu.fixed * 1e-3);
  EXPECT_NEAR(fit.seconds_per_byte, gpu.per_byte, gpu.per_byte * 1e-3);
  EXPECT_NEAR(fit.seconds_per_unit, gpu.per_unit, gpu.per_unit * 1e-3);
  EXPECT_LT(fit.relative_error, 1e-6);
  // 256 times past the largest size seen, and in one call or sixteen.
  const uint64_t w = uint64_t{1} << 34;
  const uint64_t bytes = w / 64 * 4 + 4096;
  EXPECT_NEAR(fit.Predict(1, w, bytes), gpu.Of(w, bytes),
              gpu.Of(w, bytes) * 1e-3);
  EXPECT_NEAR(fit.Predict(16, w, 16 * bytes), 16 * gpu.Of(w / 16, bytes),
              16 * gpu.Of(w / 16, bytes) * 1e-3);
}

TEST(FitCostTest, ParametersNeverGoBelowZero) {
  // Times that shrink with size would ask for a negative rate: the fit
  // keeps every parameter at zero or above.
  std::vector<CostObservation> seen;
  for (int i = 1; i <= 8; ++i) {
    seen.push_back({uint64_t{1000} * i, 0, 1e-3 / i});
  }
  const CostFit fit = FitCost(seen, 3);
  EXPECT_GE(fit.fixed_seconds, 0.0);
  EXPECT_GE(fit.seconds_per_byte, 0.0);
  EXPECT_GE(fit.seconds_per_unit, 0.0);
  EXPECT_GT(fit.fixed_seconds + fit.seconds_per_unit, 0.0);
}

TEST(FitCostTest, TheCpuFitsWithoutBytes) {
  const TrueCost cpu{5e-6, 0, 2.5e-10};
  std::vector<CostObservation> seen;
  for (int b = 10; b <= 24; ++b) {
    const uint64_t w = uint64_t{1} << b;
    seen.push_back({w, 0, cpu.Of(w, 0)});
  }
  const CostFit fit = FitCost(seen, 3);
  ASSERT_TRUE(fit.usable);
  EXPECT_EQ(fit.seconds_per_byte, 0.0);
  EXPECT_NEAR(fit.fixed_seconds, cpu.fixed, cpu.fixed * 1e-3);
  EXPECT_NEAR(fit.seconds_per_unit, cpu.per_unit, cpu.per_unit * 1e-3);
}

TEST(FitCostTest, OneSizeOrTooFewSamplesIsNotUsable) {
  std::vector<CostObservation> one_size(10, {4096, 0, 1e-3});
  EXPECT_FALSE(FitCost(one_size, 3).usable);
  EXPECT_EQ(FitCost(one_size, 3).samples, 10u);
  std::vector<CostObservation> two = {{1000, 0, 1e-3}, {8000, 0, 8e-3}};
  EXPECT_FALSE(FitCost(two, 3).usable);
  EXPECT_TRUE(FitCost(two, 2).usable);
  EXPECT_FALSE(FitCost({}, 1).usable);
}

TEST(PerformanceModelFitTest, TimingsWithTheirBytesFitPerOperationAndBackend) {
  ManualClock clock;
  PerformanceModel::Options options;
  options.clock = &clock;
  auto model = *PerformanceModel::Create(options);
  const TrueCost gpu{2e-5, 1e-10, 1e-12};
  for (int b = 16; b <= 30; ++b) {
    const uint64_t w = uint64_t{1} << b;
    const uint64_t bytes = w / 16;
    ASSERT_TRUE(model
                    ->RecordTiming(Operation::kCosine, BackendKind::kGpu, w,
                                   gpu.Of(w, bytes), bytes)
                    .ok());
    ASSERT_TRUE(model
                    ->RecordTiming(Operation::kCosine, BackendKind::kGpu, w,
                                   gpu.Of(w, bytes / 4), bytes / 4)
                    .ok());
  }
  const CostFit fit = model->Fit(Operation::kCosine, BackendKind::kGpu);
  ASSERT_TRUE(fit.usable);
  EXPECT_EQ(fit.samples, 30u);
  EXPECT_NEAR(fit.seconds_per_byte, gpu.per_byte, gpu.per_byte * 1e-3);
  // The snapshot carries the same fits; the other backend and operation
  // have none.
  const PerfSnapshot s = model->Snapshot(Operation::kCosine, 1 << 20);
  EXPECT_TRUE(s.gpu_fit.usable);
  EXPECT_FALSE(s.cpu_fit.usable);
  EXPECT_FALSE(model->Fit(Operation::kSpread, BackendKind::kGpu).usable);
  // Samples past max_sample_age leave the fit.
  clock.Advance(options.max_sample_age + absl::Seconds(1));
  EXPECT_EQ(model->Fit(Operation::kCosine, BackendKind::kGpu).samples, 0u);
}

// A backend that computes nothing: each call spends its true cost on the
// clock and returns empty top-k lists. The targets are never read, so a
// job may name far more of them than it holds.
class TimedBackend final : public ComputeBackend {
 public:
  TimedBackend(BackendKind kind, TrueCost cost, Clock* clock,
               uint64_t memory_bytes)
      : kind_(kind), cost_(cost), clock_(clock), memory_(memory_bytes) {}

  absl::string_view name() const override {
    return kind_ == BackendKind::kGpu ? "timed-gpu" : "timed-cpu";
  }
  BackendCapabilities Capabilities() const override {
    BackendCapabilities c;
    c.name = std::string(name());
    c.kind = kind_;
    c.device_name = "timed";
    c.has_memory_probe = kind_ == BackendKind::kGpu;
    c.memory_bytes = kind_ == BackendKind::kGpu ? memory_ : 0;
    return c;
  }
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override {
    clock_->SleepFor(absl::Seconds(Seconds(job)));
    out->top.assign(job.queries.rows, {});
    return absl::OkStatus();
  }
  absl::Status Spread(const SpreadJob&, SpreadOutput*) override {
    return absl::UnimplementedError("cosine only");
  }
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    if (kind_ != BackendKind::kGpu) return absl::UnimplementedError("cpu");
    return DeviceMemoryInfo{memory_, memory_};
  }
  // What one call of `job` costs: the device moves the job's footprint.
  double Seconds(const CosineJob& job) const {
    const uint64_t bytes =
        kind_ == BackendKind::kGpu ? CosineFootprint(job).TotalBytes() : 0;
    return cost_.Of(job.work(), bytes);
  }

 private:
  const BackendKind kind_;
  const TrueCost cost_;
  Clock* const clock_;
  const uint64_t memory_;
};

class NeverStop final : public base::Interrupt {
 public:
  absl::Status Check() const override { return absl::OkStatus(); }
};

struct DecisionCase {
  std::string name;
  TrueCost cpu;
  TrueCost gpu;
};

class CostModelDecisionTest : public ::testing::TestWithParam<DecisionCase> {};

// After a warm-up over work 2^16..2^28, requests of 2^16..2^34 (most of
// their sizes never seen, large ones chunked on both backends) go to the
// backend that is faster for them at least 90% of the time, and probes
// stay within their share.
TEST_P(CostModelDecisionTest, NinetyPercentOfAutoDecisionsPickTheFasterOne) {
  const DecisionCase& c = GetParam();
  ManualClock clock;
  constexpr uint64_t kGpuMemory = uint64_t{96} << 30;
  TimedBackend cpu(BackendKind::kCpu, c.cpu, &clock, 0);
  TimedBackend gpu(BackendKind::kGpu, c.gpu, &clock, kGpuMemory);
  HybridConfig config;
  config.min_gpu_work_cosine = 0;  // the model decides every size
  config.max_chunk_queries = 32;   // many-query requests split on the GPU
  config.cpu_chunk_work = uint64_t{1} << 28;
  config.memory.refresh_interval = absl::ZeroDuration();
  auto store = *ConfigStore::Create(config);
  HybridExecutor::Options options;
  options.cpu = &cpu;
  options.gpu = &gpu;
  options.config = store.get();
  options.clock = &clock;
  auto executor = *HybridExecutor::Create(options);

  constexpr uint32_t kDim = 256;
  std::vector<float> queries(256 * kDim, 0.5f);
  const float target = 0.5f;
  NeverStop never;
  std::mt19937_64 rng(7);
  auto run = [&](int max_log_work, bool* correct, bool* probe) {
    std::uniform_real_distribution<double> log_work(16, max_log_work);
    const uint64_t work = static_cast<uint64_t>(std::exp2(log_work(rng)));
    const uint64_t q = uint64_t{1}
                       << std::uniform_int_distribution<int>(0, 8)(rng);
    const uint64_t n = std::max<uint64_t>(1, work / (q * kDim));
    CosineJob job;
    job.queries = kernels::MatrixView{queries.data(), q, kDim};
    job.targets = kernels::MatrixView{&target, n, kDim};
    job.top_k = 10;
    // Half the requests are stoppable, so the CPU runs them in pieces.
    if (rng() % 2 == 0) job.interrupt = &never;
    CosineOutput out;
    ASSERT_TRUE(executor->Cosine(job, &out).ok());
    // The true times as the executor runs the request: the CPU in pieces of
    // cpu_chunk_work when stoppable, the GPU in chunks of max_chunk_queries.
    const uint64_t row_work = n * kDim;
    const uint64_t cpu_rows =
        job.interrupt != nullptr
            ? std::max<uint64_t>(1, config.cpu_chunk_work / row_work)
            : q;
    double cpu_seconds = 0, gpu_seconds = 0;
    for (uint64_t at = 0; at < q; at += cpu_rows) {
      CosineJob part = job;
      part.queries.rows = std::min(cpu_rows, q - at);
      cpu_seconds += cpu.Seconds(part);
    }
    for (uint64_t at = 0; at < q; at += config.max_chunk_queries) {
      CosineJob part = job;
      part.queries.rows = std::min<uint64_t>(config.max_chunk_queries, q - at);
      gpu_seconds += gpu.Seconds(part);
    }
    const BackendKind faster =
        cpu_seconds <= gpu_seconds ? BackendKind::kCpu : BackendKind::kGpu;
    // Within 5% either is a right answer.
    const bool tie = std::abs(cpu_seconds - gpu_seconds) <=
                     0.05 * std::min(cpu_seconds, gpu_seconds);
    *correct = tie || out.report.backend == faster;
    *probe = out.report.decided_by == "probe";
  };
  for (int i = 0; i < 300; ++i) {
    bool correct, probe;
    run(28, &correct, &probe);
  }
  int correct_count = 0, probes = 0;
  constexpr int kRequests = 1000;
  for (int i = 0; i < kRequests; ++i) {
    bool correct = false, probe = false;
    run(34, &correct, &probe);
    correct_count += correct ? 1 : 0;
    probes += probe ? 1 : 0;
  }
  RecordProperty("correct_of_1000", correct_count);
  RecordProperty("probes_of_1000", probes);
  EXPECT_GE(correct_count, kRequests * 9 / 10) << c.name;
  // The share (5%) plus the two probes that may be banked.
  EXPECT_LE(probes, kRequests * config.probe_max_share + 2) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    GpuFasterAndSlower, CostModelDecisionTest,
    ::testing::Values(
        // A device with a launch cost and a transfer rate: inline targets
        // with few queries are faster on the CPU, many queries on the GPU.
        DecisionCase{"GpuFasterForManyQueries",
                     {5e-6, 0, 2.5e-10},
                     {3e-5, 1e-10, 1e-12}},
        // A device slower than the CPU at every size.
        DecisionCase{
            "GpuSlowerEverywhere", {5e-6, 0, 2.5e-10}, {3e-5, 1e-10, 5e-10}}),
    [](const ::testing::TestParamInfo<DecisionCase>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace engram::dispatch
