// Tests of the CUDA backend that need no GPU: how CUDA errors become statuses,
// the top-k key encoding, and the checks GpuContext makes before it looks for
// a device. They run in every CUDA build, CI's included.
#include "kernels/cuda/cuda_check.h"

#include <cstring>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/topk_kernels.h"
#include "kernels/gpu_device.h"

namespace engram::kernels::cuda {
namespace {

using ::testing::HasSubstr;

TEST(CudaCheckTest, SuccessIsOk) {
  EXPECT_EQ(ClassifyCudaError(cudaSuccess), GpuErrorKind::kNone);
  EXPECT_TRUE(CudaCallStatus(cudaSuccess, "cudaFoo()").ok());
}

TEST(CudaCheckTest, AllocationFailureIsOutOfMemory) {
  const absl::Status status =
      CudaCallStatus(cudaErrorMemoryAllocation, "cudaMallocAsync(&p, n, s)");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kOutOfMemory);
  EXPECT_THAT(status.message(), HasSubstr("cudaMallocAsync(&p, n, s)"));
  EXPECT_THAT(status.message(), HasSubstr("cudaErrorMemoryAllocation"));
}

TEST(CudaCheckTest, ContextCorruptingErrorsAreSticky) {
  for (cudaError_t error :
       {cudaErrorIllegalAddress, cudaErrorLaunchFailure,
        cudaErrorMisalignedAddress, cudaErrorIllegalInstruction,
        cudaErrorHardwareStackError, cudaErrorInvalidAddressSpace,
        cudaErrorInvalidPc, cudaErrorAssert, cudaErrorLaunchTimeout,
        cudaErrorECCUncorrectable, cudaErrorNvlinkUncorrectable,
        cudaErrorContained}) {
    SCOPED_TRACE(cudaGetErrorName(error));
    EXPECT_EQ(ClassifyCudaError(error), GpuErrorKind::kSticky);
    const absl::Status status = CudaCallStatus(error, "cudaStreamSynchronize");
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kSticky);
    EXPECT_THAT(status.message(), HasSubstr("unusable until restart"));
  }
}

TEST(CudaCheckTest, OtherErrorsAreUnavailableAndNotSticky) {
  for (cudaError_t error :
       {cudaErrorInvalidValue, cudaErrorNoDevice, cudaErrorInsufficientDriver,
        cudaErrorNoKernelImageForDevice, cudaErrorLaunchOutOfResources,
        cudaErrorNotReady, cudaErrorUnknown}) {
    SCOPED_TRACE(cudaGetErrorName(error));
    EXPECT_EQ(ClassifyCudaError(error), GpuErrorKind::kOther);
    const absl::Status status = CudaCallStatus(error, "call");
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kOther);
  }
}

absl::Status FailsAt(cudaError_t error, int* reached) {
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaSuccess);
  ++*reached;
  ENGRAM_CUDA_RETURN_IF_ERROR(error);
  ++*reached;
  return absl::OkStatus();
}

TEST(CudaCheckTest, MacroReturnsTheFirstFailureAndNamesTheCall) {
  int reached = 0;
  const absl::Status status = FailsAt(cudaErrorIllegalAddress, &reached);
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kSticky);
  EXPECT_THAT(status.message(), HasSubstr("error"));
  reached = 0;
  EXPECT_TRUE(FailsAt(cudaSuccess, &reached).ok());
  EXPECT_EQ(reached, 2);
}

TEST(CudaCheckTest, OutOfMemoryIsNeitherStickyNorStaleForTheNextCall) {
  // The retry at half size (the executor's answer to device OOM) depends on
  // both: an OOM must not lock the context, and when found left over in the
  // thread's last-error slot it must not fail a later call.
  EXPECT_NE(ClassifyCudaError(cudaErrorMemoryAllocation),
            GpuErrorKind::kSticky);
  EXPECT_TRUE(StaleCudaErrorStatus(cudaErrorMemoryAllocation).ok());
  EXPECT_EQ(GpuErrorKindOf(CheckCudaCall(cudaErrorMemoryAllocation, "c")),
            GpuErrorKind::kOutOfMemory);
}

TEST(CudaCheckTest, AStaleErrorFailsTheNextCallOnlyWhenSticky) {
  EXPECT_TRUE(StaleCudaErrorStatus(cudaSuccess).ok());
  for (cudaError_t error :
       {cudaErrorMemoryAllocation, cudaErrorInvalidValue, cudaErrorNotReady,
        cudaErrorInvalidResourceHandle, cudaErrorLaunchOutOfResources}) {
    SCOPED_TRACE(cudaGetErrorName(error));
    EXPECT_TRUE(StaleCudaErrorStatus(error).ok());
  }
  for (cudaError_t error : {cudaErrorIllegalAddress, cudaErrorLaunchFailure}) {
    SCOPED_TRACE(cudaGetErrorName(error));
    const absl::Status status = StaleCudaErrorStatus(error);
    EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kSticky);
    EXPECT_THAT(status.message(), HasSubstr(cudaGetErrorName(error)));
  }
}

TEST(CudaCheckTest, CheckCudaCallReportsLikeCudaCallStatus) {
  EXPECT_TRUE(CheckCudaCall(cudaSuccess, "cudaFoo()").ok());
  for (cudaError_t error : {cudaErrorMemoryAllocation, cudaErrorInvalidValue,
                            cudaErrorIllegalAddress}) {
    SCOPED_TRACE(cudaGetErrorName(error));
    EXPECT_EQ(CheckCudaCall(error, "cudaFoo()"),
              CudaCallStatus(error, "cudaFoo()"));
  }
}

// On a machine with a GPU, what the fix of the stale-error bug rests on: a
// failed runtime call leaves its error in the thread's last-error slot (where
// a kernel launcher's cudaGetLastError() would find it), and the checking
// macro clears it. Without a driver the runtime's initialisation error never
// clears, so this needs a GPU.
TEST(CudaCheckTest, TheMacroClearsTheThreadsLastError) {
  if (!ListGpuDevices().ok()) GTEST_SKIP() << "needs a GPU";
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  // An ordinal past the last device: cudaErrorInvalidDevice, not sticky.
  ASSERT_EQ(cudaSetDevice(count + 7), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  auto fails = [&]() -> absl::Status {
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaSetDevice(count + 7));
    return absl::OkStatus();
  };
  EXPECT_FALSE(fails().ok());
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
  // What GpuContext does before each call.
  ASSERT_EQ(cudaSetDevice(count + 7), cudaErrorInvalidDevice);
  EXPECT_TRUE(TakeStaleCudaError().ok());
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
  DiscardCudaError(cudaSetDevice(count + 7));
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
}

TEST(CudaCheckTest, LongCallTextIsCut) {
  const std::string call(500, 'x');
  const absl::Status status =
      CudaCallStatus(cudaErrorInvalidValue, call.c_str());
  EXPECT_LT(status.message().size(), 300u);
  EXPECT_THAT(status.message(), HasSubstr("..."));
}

TEST(GpuErrorTest, KindsRoundTripThroughTheStatus) {
  EXPECT_TRUE(GpuError(GpuErrorKind::kNone, "x").ok());
  EXPECT_EQ(GpuErrorKindOf(GpuError(GpuErrorKind::kOutOfMemory, "x")),
            GpuErrorKind::kOutOfMemory);
  EXPECT_EQ(GpuErrorKindOf(GpuError(GpuErrorKind::kSticky, "x")),
            GpuErrorKind::kSticky);
  EXPECT_EQ(GpuErrorKindOf(GpuError(GpuErrorKind::kOther, "x")),
            GpuErrorKind::kOther);
  // A caller's error carries no kind.
  EXPECT_EQ(GpuErrorKindOf(absl::InvalidArgumentError("bad row")),
            GpuErrorKind::kNone);
  EXPECT_EQ(GpuErrorKindOf(absl::ResourceExhaustedError("no kind")),
            GpuErrorKind::kNone);
}

TEST(TopKKeyTest, DecodesScoreAndIndex) {
  // The device's encoding, written out on the host.
  auto encode = [](float score, uint32_t index) {
    uint32_t bits;
    std::memcpy(&bits, &score, sizeof(bits));
    bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    return (static_cast<unsigned long long>(bits) << 32) |
           (0xffffffffu - index);
  };
  for (float score : {1.0f, 0.5f, 0.0f, -0.25f, -1.0f,
                      std::numeric_limits<float>::denorm_min()}) {
    for (uint32_t index : {0u, 7u, 0xfffffffeu}) {
      const ScoredIndex decoded = DecodeTopKKey(encode(score, index));
      EXPECT_EQ(decoded.score, score);
      EXPECT_EQ(decoded.index, index);
    }
  }
  // A larger key is a better entry: higher score, then lower index.
  EXPECT_GT(encode(0.5f, 9), encode(0.25f, 0));
  EXPECT_GT(encode(-0.25f, 9), encode(-0.5f, 0));
  EXPECT_GT(encode(0.5f, 3), encode(0.5f, 4));
}

TEST(GpuContextOptionsTest, CreateRejectsOptionsOutOfRange) {
  auto rejects = [](GpuContext::Options options, const char* what) {
    auto context = GpuContext::Create(options);
    EXPECT_EQ(context.status().code(), absl::StatusCode::kInvalidArgument)
        << what;
    EXPECT_THAT(context.status().message(), HasSubstr(what));
  };
  GpuContext::Options o;
  o.staging_bytes = 1024;
  rejects(o, "staging_bytes");
  o = GpuContext::Options();
  o.max_streams = 0;
  rejects(o, "max_streams");
  o = GpuContext::Options();
  o.gemm_min_queries = 0;
  rejects(o, "gemm_min_queries");
  o = GpuContext::Options();
  o.spread_push_max_fraction = 1.5;
  rejects(o, "spread_push_max_fraction");
  o = GpuContext::Options();
  o.device_ordinal = -1;
  rejects(o, "device_ordinal");
}

TEST(GpuContextOptionsTest, WithoutAGpuCreateIsUnavailableWithTheReason) {
  if (ListGpuDevices().ok()) GTEST_SKIP() << "a GPU is present";
  auto context = GpuContext::Create(GpuContext::Options());
  EXPECT_EQ(context.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(context.status().message().empty());
}

TEST(GpuContextOptionsTest, AMissingDeviceOrdinalIsUnavailable) {
  if (!ListGpuDevices().ok()) GTEST_SKIP() << "no GPU at all";
  GpuContext::Options o;
  o.device_ordinal = 1000;
  EXPECT_EQ(GpuContext::Create(o).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace engram::kernels::cuda
