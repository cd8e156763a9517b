// The one way a CUDA runtime error becomes an absl::Status in the CUDA backend
// (STYLE.md point 5: a CUDA error fails the request, never the process).
//
// Every CUDA runtime call in kernels/cuda/ goes through
// ENGRAM_CUDA_RETURN_IF_ERROR, which returns CudaCallStatus(error, call) from
// the enclosing function when the call fails. The status carries the error's
// kind (kernels/gpu_device.h GpuErrorKindOf): out-of-memory is told apart
// from other errors, and the sticky errors that leave the CUDA context
// unusable for the rest of the process are recognised.
//
// This header needs the CUDA runtime's headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_
#define ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/gpu_device.h"

namespace engram::kernels::gpu {

// kNone for cudaSuccess; kOutOfMemory for cudaErrorMemoryAllocation; kSticky
// for the errors CUDA documents as leaving the process in an inconsistent
// state (illegal address, launch failure, uncorrectable ECC, ...); kOther for
// everything else.
GpuErrorKind ClassifyCudaError(cudaError_t error);

// OK for cudaSuccess; otherwise GpuError(ClassifyCudaError(error), ...) whose
// message names the call, the error and CUDA's description of it, e.g.
// "cudaMallocAsync(...): cudaErrorMemoryAllocation (out of memory)".
absl::Status CudaCallStatus(cudaError_t error, const char* call);

}  // namespace engram::kernels::gpu

// Evaluates `call` (an expression of type cudaError_t) once and returns its
// status from the enclosing function (which returns absl::Status or an
// absl::StatusOr) when it is not cudaSuccess.
#define ENGRAM_CUDA_RETURN_IF_ERROR(call)                               \
  do {                                                                  \
    const cudaError_t engram_cuda_error_ = (call);                      \
    if (engram_cuda_error_ != cudaSuccess) {                            \
      return ::engram::kernels::gpu::CudaCallStatus(engram_cuda_error_, \
                                                    #call);             \
    }                                                                   \
  } while (false)

#endif  // ENGRAM_KERNELS_CUDA_CUDA_CHECK_H_
