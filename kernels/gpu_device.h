// GPU discovery, the seam between the CPU-only build and the CUDA backend.
//
// The same declarations are implemented by kernels/cuda/gpu_device.cu when
// the CUDA backend is built and by kernels/gpu_device_none.cc otherwise, so a
// caller asks "is there a GPU?" the same way in both builds.
#ifndef ENGRAM_KERNELS_GPU_DEVICE_H_
#define ENGRAM_KERNELS_GPU_DEVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace engram::kernels {

struct GpuDeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  uint64_t total_memory_bytes = 0;
};

// True when this binary contains the CUDA backend.
bool BuiltWithCuda();

// The visible GPUs. UNAVAILABLE (with the reason: built without CUDA, no
// driver, no device) when there is none; never aborts.
absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices();

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_GPU_DEVICE_H_
