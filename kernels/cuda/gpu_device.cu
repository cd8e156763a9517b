// The CUDA build's side of kernels/gpu_device.h.
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/gpu_device.h"

namespace engram::kernels {

bool BuiltWithCuda() { return true; }

absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver or no device: the CUDA backend is simply unavailable.
    cudaGetLastError();  // clear the non-sticky error
    return absl::UnavailableError(
        absl::StrCat("no usable GPU: ", cudaGetErrorString(err)));
  }
  if (count == 0) return absl::UnavailableError("no GPU device visible");
  std::vector<GpuDeviceInfo> devices;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, i);
    if (err != cudaSuccess) {
      return absl::UnavailableError(
          absl::StrCat("cannot query GPU ", i, ": ", cudaGetErrorString(err)));
    }
    devices.push_back(
        GpuDeviceInfo{i, prop.name, prop.major, prop.minor,
                      static_cast<uint64_t>(prop.totalGlobalMem)});
  }
  return devices;
}

}  // namespace engram::kernels
