#include "kernels/cuda/cuda_check.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace engram::kernels::cuda {
namespace {

// A call's text is the macro argument; long argument lists are cut so that a
// message stays one readable line.
constexpr size_t kMaxCallText = 120;

}  // namespace

GpuErrorKind ClassifyCudaError(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return GpuErrorKind::kNone;
    case cudaErrorMemoryAllocation:
      return GpuErrorKind::kOutOfMemory;
    // driver_types.h: "This leaves the process in an inconsistent state and
    // any further CUDA work will return the same error", or the context is
    // gone or the hardware reported an uncorrectable fault.
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContained:
    case cudaErrorMpsClientTerminated:
    case cudaErrorExternalDevice:
      return GpuErrorKind::kSticky;
    default:
      return GpuErrorKind::kOther;
  }
}

absl::Status CudaCallStatus(cudaError_t error, const char* call) {
  const GpuErrorKind kind = ClassifyCudaError(error);
  if (kind == GpuErrorKind::kNone) return absl::OkStatus();
  std::string text(call);
  if (text.size() > kMaxCallText) {
    text = absl::StrCat(text.substr(0, kMaxCallText), "...");
  }
  return GpuError(
      kind, absl::StrCat(text, ": ", cudaGetErrorName(error), " (",
                         cudaGetErrorString(error), ")",
                         kind == GpuErrorKind::kSticky
                             ? "; the CUDA context is unusable until restart"
                             : ""));
}

absl::Status CheckCudaCall(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return absl::OkStatus();
  DiscardCudaError(error);
  return CudaCallStatus(error, call);
}

void DiscardCudaError(cudaError_t error) {
  // The failed call set the slot; reading it resets it (a sticky error stays
  // in the context regardless, and the next call returns it again).
  if (error != cudaSuccess) static_cast<void>(cudaGetLastError());
}

absl::Status StaleCudaErrorStatus(cudaError_t stale) {
  if (ClassifyCudaError(stale) != GpuErrorKind::kSticky) {
    return absl::OkStatus();
  }
  return CudaCallStatus(stale, "an earlier CUDA call on this thread");
}

absl::Status TakeStaleCudaError() {
  return StaleCudaErrorStatus(cudaGetLastError());
}

}  // namespace engram::kernels::cuda
