// The CPU-only build's side of kernels/gpu_device.h.
#include "absl/status/status.h"
#include "kernels/gpu_device.h"

namespace engram::kernels {

bool BuiltWithCuda() { return false; }

absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices() {
  return absl::UnavailableError("built without the CUDA backend");
}

}  // namespace engram::kernels
