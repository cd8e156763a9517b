// ComputeBackend: the one interface through which the dispatch engine runs
// work, whatever computes it — the CPU kernels (cpu_backend.h), the CUDA
// kernels (a later issue), or the fault-injecting simulated device
// (simulated_gpu_backend.h) used by tests and demos.
//
// A backend computes exactly the job it is given: the executor hands it one
// chunk at a time as a job of its own (queries narrowed to the chunk's rows,
// scores narrowed to their rows). It reports errors as backend_errors.h
// classifies them: INVALID_ARGUMENT for bad input (such as a non-finite
// vector), RESOURCE_EXHAUSTED for device OOM, StickyDeviceError() when the
// device is unusable for the rest of the process, anything else for a
// device failure. It never aborts the process.
//
// Thread-safety: every implementation must allow concurrent calls of every
// method from any thread.
#ifndef ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_
#define ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/memory_pressure.h"
#include "core/jobs.h"

namespace engram::core {

// What a backend is and can do; fixed for its lifetime.
struct BackendCapabilities {
  std::string name;  // the backend's name(): "cpu", "simulated-gpu", ...
  BackendKind kind = BackendKind::kCpu;  // kCpu or kGpu: how it is counted
  // Selects the config profile (hybrid_config.h): the GPU's name, or for the
  // CPU its SIMD target.
  std::string device_name;
  bool supports_cosine = true;
  bool supports_spread = true;
  bool has_memory_probe = false;  // QueryMemory() can succeed
  uint64_t memory_bytes = 0;      // device memory; 0 for the CPU
  int threads = 0;                // CPU threads used; 0 for a device
};

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  virtual absl::string_view name() const = 0;
  virtual BackendCapabilities Capabilities() const = 0;

  // Computes `job`. top_k == 0: fills out->scores, which holds exactly
  // Q*N floats; top_k > 0: replaces out->top with Q lists, best first.
  // Leaves out->report alone. The job's views must stay valid for the call.
  virtual absl::Status Cosine(const CosineJob& job, CosineOutput* out) = 0;

  // Computes the activation of every node into out->result. Leaves out->top
  // (the executor selects it) and out->report alone.
  virtual absl::Status Spread(const SpreadJob& job, SpreadOutput* out) = 0;

  // The device's free and total memory now. UNIMPLEMENTED for a backend
  // without device memory (the CPU).
  virtual absl::StatusOr<DeviceMemoryInfo> QueryMemory() = 0;
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_
