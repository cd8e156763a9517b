// Tests of CudaBackend that need no GPU, run in every build (CUDA or not):
// creating it without a usable GPU fails cleanly with the reason, and its
// errors reach the executor in the classes backend_errors.h defines.
#include "core/dispatch/cuda_backend.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/dispatch/backend_errors.h"
#include "core/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/gpu_device.h"
#include "prometheus/registry.h"

namespace engram::dispatch {
namespace {

using ::testing::HasSubstr;

TEST(CudaBackendTest, CreateWithoutAUsableGpuIsUnavailableWithTheReason) {
  if (kernels::ListGpuDevices().ok()) {
    GTEST_SKIP() << "a GPU is present (tests/core/cuda/cuda_parity_test.cc "
                    "covers it)";
  }
  auto backend = CudaBackend::Create(CudaBackend::Options());
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable);
  if (kernels::BuiltWithCuda()) {
    EXPECT_THAT(backend.status().message(), HasSubstr("GPU"));
  } else {
    EXPECT_EQ(backend.status().message(), "built without the CUDA backend");
  }
}

TEST(CudaBackendTest, EngineWithoutAUsableGpuKeepsTheReason) {
  if (kernels::ListGpuDevices().ok()) GTEST_SKIP() << "a GPU is present";
  core::Engine::Options options;
  options.worker_threads = 1;
  auto engine =
      core::Engine::Create(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_FALSE((*engine)->gpu_available());
  EXPECT_EQ((*engine)->gpu_unavailable_reason(),
            std::string(kernels::ListGpuDevices().status().message()));
}

TEST(CudaBackendTest, DeviceOutOfMemoryShrinksTheChunk) {
  const absl::Status status = CudaBackend::ToBackendError(kernels::GpuError(
      kernels::GpuErrorKind::kOutOfMemory, "cudaMallocFromPoolAsync: oom"));
  EXPECT_EQ(ClassifyBackendError(status), BackendErrorClass::kOutOfMemory);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "cudaMallocFromPoolAsync: oom");
}

TEST(CudaBackendTest, StickyDeviceErrorsLockTheBreakerOpen) {
  const absl::Status status = CudaBackend::ToBackendError(kernels::GpuError(
      kernels::GpuErrorKind::kSticky, "cudaErrorIllegalAddress"));
  EXPECT_EQ(ClassifyBackendError(status), BackendErrorClass::kSticky);
  EXPECT_EQ(status.message(), "cudaErrorIllegalAddress");
}

TEST(CudaBackendTest, OtherDeviceErrorsFeedTheBreaker) {
  const absl::Status status = CudaBackend::ToBackendError(
      kernels::GpuError(kernels::GpuErrorKind::kOther, "cudaErrorUnknown"));
  EXPECT_EQ(ClassifyBackendError(status), BackendErrorClass::kDevice);
}

TEST(CudaBackendTest, BadInputStaysTheCallersError) {
  const absl::Status bad =
      absl::InvalidArgumentError("targets row 3 contains a non-finite value");
  EXPECT_EQ(CudaBackend::ToBackendError(bad), bad);
  EXPECT_EQ(ClassifyBackendError(CudaBackend::ToBackendError(bad)),
            BackendErrorClass::kClient);
  EXPECT_TRUE(CudaBackend::ToBackendError(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace engram::dispatch
