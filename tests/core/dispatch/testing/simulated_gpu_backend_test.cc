#include "core/dispatch/testing/simulated_gpu_backend.h"

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace engram::dispatch::testing {
namespace {

class SimulatedGpuBackendTest : public ::testing::Test {
 protected:
  SimulatedGpuBackendTest()
      : queries_(engram::testing::RandomMatrix(8, 4, 1)),
        targets_(engram::testing::RandomMatrix(16, 4, 2)),
        scores_(8 * 16) {
    job_.queries = kernels::MatrixView{queries_.data(), 8, 4};
    job_.targets = kernels::MatrixView{targets_.data(), 16, 4};
  }

  SimulatedGpuBackend::Options BaseOptions() {
    SimulatedGpuBackend::Options o;
    o.clock = &clock_;
    o.launch_overhead = absl::Microseconds(100);
    o.seconds_per_unit = 1e-9;
    o.memory_bytes = 1 << 20;
    return o;
  }
  std::unique_ptr<SimulatedGpuBackend> Make(
      const SimulatedGpuBackend::Options& o) {
    auto backend = SimulatedGpuBackend::Create(o);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return *std::move(backend);
  }
  absl::Status Call(SimulatedGpuBackend& gpu) {
    CosineOutput out;
    out.scores = absl::MakeSpan(scores_);
    return gpu.Cosine(job_, &out);
  }

  ManualClock clock_;
  std::vector<float> queries_;
  std::vector<float> targets_;
  std::vector<float> scores_;
  CosineJob job_;
};

TEST_F(SimulatedGpuBackendTest, SpendsLaunchOverheadPlusPerUnitCost) {
  auto gpu = Make(BaseOptions());
  const absl::Time start = clock_.Now();
  ASSERT_TRUE(Call(*gpu).ok());
  // 8 x 16 x 4 = 512 units at 1 ns, after a 100 us launch.
  EXPECT_EQ(clock_.Now() - start,
            absl::Microseconds(100) + absl::Nanoseconds(512));
  EXPECT_EQ(gpu->stats().successes, 1u);
  EXPECT_EQ(gpu->name(), "simulated-gpu");
}

TEST_F(SimulatedGpuBackendTest, RunsOutOfMemoryAboveItsCapacity) {
  SimulatedGpuBackend::Options options = BaseOptions();
  const uint64_t needed = CosineFootprint(job_).TotalBytes();
  options.memory_bytes = needed;
  options.reserved_bytes = 1;
  auto gpu = Make(options);
  absl::Status status = Call(*gpu);
  EXPECT_EQ(ClassifyBackendError(status), BackendErrorClass::kOutOfMemory);
  gpu->SetReservedBytes(0);
  EXPECT_TRUE(Call(*gpu).ok());
  gpu->SetOomAboveBytes(needed - 1);
  EXPECT_EQ(ClassifyBackendError(Call(*gpu)), BackendErrorClass::kOutOfMemory);
  EXPECT_EQ(gpu->stats().ooms, 2u);
}

TEST_F(SimulatedGpuBackendTest, ReportsFreeMemoryOrTheInjectedProbeError) {
  SimulatedGpuBackend::Options options = BaseOptions();
  options.reserved_bytes = 1 << 18;
  auto gpu = Make(options);
  absl::StatusOr<DeviceMemoryInfo> info = gpu->QueryMemory();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->total_bytes, 1u << 20);
  EXPECT_EQ(info->free_bytes, (1u << 20) - (1u << 18));
  gpu->SetMemoryProbeError(absl::InternalError("nvml"));
  EXPECT_FALSE(gpu->QueryMemory().ok());
}

TEST_F(SimulatedGpuBackendTest, FailsOnDemandInOrder) {
  auto gpu = Make(BaseOptions());
  gpu->FailNextCalls(2, absl::InternalError("x"), /*after=*/1);
  EXPECT_TRUE(Call(*gpu).ok());
  EXPECT_EQ(Call(*gpu).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Call(*gpu).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(Call(*gpu).ok());
  std::vector<SimulatedGpuBackend::CallRecord> history = gpu->history();
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(history[1].outcome, absl::StatusCode::kInternal);
  EXPECT_EQ(history[0].items, 8u);
}

TEST_F(SimulatedGpuBackendTest, StickyErrorNeverClears) {
  SimulatedGpuBackend::Options options = BaseOptions();
  options.sticky_after_calls = 3;
  auto gpu = Make(options);
  EXPECT_TRUE(Call(*gpu).ok());
  EXPECT_TRUE(Call(*gpu).ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ClassifyBackendError(Call(*gpu)), BackendErrorClass::kSticky);
  }
}

TEST_F(SimulatedGpuBackendTest, RandomErrorsAndBurstsAreSeeded) {
  SimulatedGpuBackend::Options options = BaseOptions();
  options.error_probability = 0.2;
  options.burst_probability = 0.05;
  options.burst_length = 5;
  options.seed = 99;
  auto first = Make(options);
  auto second = Make(options);
  int failures = 0;
  for (int i = 0; i < 200; ++i) {
    const absl::Status a = Call(*first);
    const absl::Status b = Call(*second);
    ASSERT_EQ(a.code(), b.code()) << i;  // same seed, same fate
    if (!a.ok()) {
      ++failures;
      EXPECT_EQ(ClassifyBackendError(a), BackendErrorClass::kDevice);
    }
  }
  EXPECT_GT(failures, 30);
  EXPECT_LT(failures, 120);
}

TEST_F(SimulatedGpuBackendTest, CreateRejectsOptionsOutOfRange) {
  SimulatedGpuBackend::Options o = BaseOptions();
  o.error_probability = 1.5;
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
  o = BaseOptions();
  o.memory_bytes = 0;
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
  o = BaseOptions();
  o.reserved_bytes = o.memory_bytes + 1;
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
  o = BaseOptions();
  o.burst_length = 0;
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
  o = BaseOptions();
  o.seconds_per_target_byte = -1;
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
  o = BaseOptions();
  o.name = "";
  EXPECT_FALSE(SimulatedGpuBackend::Create(o).ok());
}

TEST_F(SimulatedGpuBackendTest, ResidentCopiesCountAgainstMemory) {
  auto gpu = Make(BaseOptions());
  EXPECT_TRUE(gpu->Capabilities().supports_residency);
  const uint64_t bytes = ResidentFootprintBytes(16, 4);
  ASSERT_TRUE(gpu->UploadResident(5, job_.targets).ok());
  EXPECT_TRUE(gpu->HoldsResident(5));
  EXPECT_EQ(gpu->ResidentBytes(), bytes);
  EXPECT_EQ(gpu->QueryMemory()->free_bytes, (1u << 20) - bytes);
  EXPECT_EQ(gpu->UploadResident(5, job_.targets).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(gpu->UploadResident(0, job_.targets).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(gpu->EvictResident(5).ok());
  EXPECT_EQ(gpu->EvictResident(5).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(gpu->ResidentBytes(), 0u);
  EXPECT_EQ(gpu->QueryMemory()->free_bytes, 1u << 20);
  const SimulatedGpuBackend::Stats stats = gpu->stats();
  EXPECT_EQ(stats.resident_uploads, 1u);
  EXPECT_EQ(stats.resident_evictions, 1u);
}

TEST_F(SimulatedGpuBackendTest, UploadsFailOnDemandWhenFullAndWhenSticky) {
  auto gpu = Make(BaseOptions());
  gpu->FailNextUploads(1, DeviceOutOfMemoryError("injected"), /*after=*/1);
  EXPECT_TRUE(gpu->UploadResident(1, job_.targets).ok());
  EXPECT_EQ(ClassifyBackendError(gpu->UploadResident(2, job_.targets)),
            BackendErrorClass::kOutOfMemory);
  EXPECT_FALSE(gpu->HoldsResident(2));
  // Cosine calls do not consume the upload queue, and vice versa.
  gpu->FailNextUploads(1, absl::UnavailableError("device error"));
  EXPECT_TRUE(Call(*gpu).ok());
  EXPECT_EQ(gpu->UploadResident(2, job_.targets).code(),
            absl::StatusCode::kUnavailable);
  gpu->SetReservedBytes((1u << 20) - 100);
  EXPECT_EQ(ClassifyBackendError(gpu->UploadResident(3, job_.targets)),
            BackendErrorClass::kOutOfMemory);
  gpu->SetReservedBytes(0);
  gpu->InjectStickyError();
  EXPECT_EQ(ClassifyBackendError(gpu->UploadResident(4, job_.targets)),
            BackendErrorClass::kSticky);
  EXPECT_EQ(gpu->stats().resident_upload_failures, 4u);
  // Evicting still works on a lost device.
  EXPECT_TRUE(gpu->EvictResident(1).ok());
}

TEST_F(SimulatedGpuBackendTest, AResidentJobSkipsTheTargetCopyAndItsBytes) {
  SimulatedGpuBackend::Options o = BaseOptions();
  o.seconds_per_target_byte = 1e-9;
  auto gpu = Make(o);
  // 16 x 4 floats of targets: 256 bytes, 256 ns of copy; 512 units of work.
  absl::Time start = clock_.Now();
  ASSERT_TRUE(Call(*gpu).ok());
  EXPECT_NEAR(absl::ToDoubleNanoseconds(clock_.Now() - start),
              100e3 + 512 + 256, 1);
  std::vector<float> staged = scores_;
  EXPECT_FALSE(gpu->history().back().resident);
  EXPECT_EQ(gpu->history().back().bytes, CosineFootprint(job_).TotalBytes());

  ASSERT_TRUE(gpu->UploadResident(9, job_.targets).ok());
  job_.resident_targets = 9;
  start = clock_.Now();
  ASSERT_TRUE(Call(*gpu).ok());
  EXPECT_NEAR(absl::ToDoubleNanoseconds(clock_.Now() - start), 100e3 + 512, 1);
  EXPECT_TRUE(gpu->history().back().resident);
  EXPECT_EQ(gpu->history().back().bytes,
            CosineFootprint(job_, true).TotalBytes());
  EXPECT_EQ(scores_, staged);  // the CPU's results either way
  EXPECT_EQ(gpu->stats().resident_hits, 1u);

  // A key held for rows of another shape is not used.
  job_.targets.rows = 8;
  scores_.resize(8 * 8);
  ASSERT_TRUE(Call(*gpu).ok());
  EXPECT_FALSE(gpu->history().back().resident);
}

}  // namespace
}  // namespace engram::dispatch::testing
