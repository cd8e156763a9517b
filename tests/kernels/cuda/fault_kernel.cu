#include "tests/kernels/cuda/fault_kernel.h"

namespace engram::kernels::cuda::testing {
namespace {

__global__ void WriteThrough(int* pointer) { *pointer = 1; }

}  // namespace

cudaError_t TriggerIllegalAddress() {
  WriteThrough<<<1, 1>>>(reinterpret_cast<int*>(0x10));
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess) return launch;
  return cudaDeviceSynchronize();
}

}  // namespace engram::kernels::cuda::testing
