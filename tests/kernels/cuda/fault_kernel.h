// A deliberate device fault, for the tests of sticky-error handling: only
// ever called in a child process of its own (the fault ruins the process's
// CUDA context for good).
#ifndef ENGRAM_TESTS_KERNELS_CUDA_FAULT_KERNEL_H_
#define ENGRAM_TESTS_KERNELS_CUDA_FAULT_KERNEL_H_

#include <cuda_runtime_api.h>

namespace engram::kernels::cuda::testing {

// Launches a kernel that writes through an invalid pointer on the current
// device and waits for it; returns the error the wait reports
// (cudaErrorIllegalAddress on a working GPU).
cudaError_t TriggerIllegalAddress();

}  // namespace engram::kernels::cuda::testing

#endif  // ENGRAM_TESTS_KERNELS_CUDA_FAULT_KERNEL_H_
