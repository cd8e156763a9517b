// The one way a CUDA runtime error becomes an absl::Status in the CUDA backend
// (a CUDA error fails the request, never the process).
//
// Every CUDA runtime call in kernels/cuda/ goes through
// ENGRAM_CUDA_RETURN_IF_ERROR, which returns CudaCallStatus(error, call) from
// the enclosing function when the call fails. The status carries the error's
// kind (kernels/gpu_device.h GpuErrorKindOf): out-of-memory is told apart
// from other errors, and the sticky errors that leave the CUDA context
// unusable for the rest of the process are recognised.
//
// The runtime also keeps a per-thread "last error": every failing runtime
// call sets it, a successful call leaves it alone, and only
// cudaGetLastError() resets it. Our kernel launchers return
// cudaGetLastError() after `<<<...>>>` (the only way to see a launch error),
// so an error that was already reported as a status but left in that slot is
// reported a second time by the next launch on the same thread, in a later,
// unrelated call. That is how one out-of-memory error (cudaMallocAsync from a
// capped pool) failed the next, fitting call on the same GpuContext. So a
// failed call reported through the macro, or ignored in a destructor through
// DiscardCudaError(), also clears the slot; GpuContext clears what others
// left there before each call (TakeStaleCudaError()).
//
// This header needs the CUDA runtime's headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_
#define ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/gpu_device.h"

namespace engram::kernels::cuda {

// kNone for cudaSuccess; kOutOfMemory for cudaErrorMemoryAllocation; kSticky
// for the errors CUDA documents as leaving the process in an inconsistent
// state (illegal address, launch failure, uncorrectable ECC, ...); kOther for
// everything else.
GpuErrorKind ClassifyCudaError(cudaError_t error);

// OK for cudaSuccess; otherwise GpuError(ClassifyCudaError(error), ...) whose
// message names the call, the error and CUDA's description of it, e.g.
// "cudaMallocAsync(...): cudaErrorMemoryAllocation (out of memory)".
absl::Status CudaCallStatus(cudaError_t error, const char* call);

// What ENGRAM_CUDA_RETURN_IF_ERROR returns: CudaCallStatus(error, call), and
// for a failed call the thread's last-error slot is cleared, so the error is
// reported once, as this status, and not again by the next launch check. (A
// sticky error cannot be cleared: the runtime returns it from every later
// call anyway.)
absl::Status CheckCudaCall(cudaError_t error, const char* call);

// For calls whose failure cannot be reported (destructors, best-effort
// clean-up): clears the thread's last-error slot when `error` is a failure.
void DiscardCudaError(cudaError_t error);

// The status of an error found in the thread's last-error slot before a call
// starts (`stale`, as cudaGetLastError() returned it): OK for cudaSuccess and
// for a non-sticky error, which belongs to some earlier call that has already
// ended (its own status said so, or it was ignored on purpose) and must not
// fail this one; the sticky error itself otherwise, since the CUDA context is
// then unusable whoever saw it first.
absl::Status StaleCudaErrorStatus(cudaError_t stale);

// Reads and clears the thread's last-error slot (cudaGetLastError()) and
// returns StaleCudaErrorStatus() of what was there.
absl::Status TakeStaleCudaError();

}  // namespace engram::kernels::cuda

// Evaluates `call` (an expression of type cudaError_t) once and returns its
// status from the enclosing function (which returns absl::Status or an
// absl::StatusOr) when it is not cudaSuccess, clearing the thread's
// last-error slot (CheckCudaCall).
#define ENGRAM_CUDA_RETURN_IF_ERROR(call)                               \
  do {                                                                  \
    const cudaError_t engram_cuda_error_ = (call);                      \
    if (engram_cuda_error_ != cudaSuccess) {                            \
      return ::engram::kernels::cuda::CheckCudaCall(engram_cuda_error_, \
                                                    #call);             \
    }                                                                   \
  } while (false)

#endif  // ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_
