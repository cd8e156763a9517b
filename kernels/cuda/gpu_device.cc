// The CUDA build's device discovery (kernels/gpu_device.h).
#include "kernels/gpu_device.h"

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace engram::kernels {

bool BuiltWithCuda() { return true; }

absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver or no device: the CUDA backend is simply unavailable.
    static_cast<void>(cudaGetLastError());  // clear the non-sticky error
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
    GpuDeviceInfo info;
    info.ordinal = i;
    info.name = prop.name;
    info.compute_capability_major = prop.major;
    info.compute_capability_minor = prop.minor;
    info.total_memory_bytes = static_cast<uint64_t>(prop.totalGlobalMem);
    info.multiprocessors = prop.multiProcessorCount;
    info.memory_bus_width_bits = prop.memoryBusWidth;
    // The memory clock left cudaDeviceProp in CUDA 13; an attribute that
    // cannot be read stays 0 ("unknown").
    if (cudaDeviceGetAttribute(&info.memory_clock_khz,
                               cudaDevAttrMemoryClockRate, i) != cudaSuccess) {
      info.memory_clock_khz = 0;
    }
    static_cast<void>(cudaGetLastError());
    devices.push_back(info);
  }
  return devices;
}

}  // namespace engram::kernels
