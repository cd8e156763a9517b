// ComputeBackend: the one interface through which the dispatch engine runs
// work, whatever computes it — the CPU kernels (cpu_backend.h), the CUDA
// kernels (cuda_backend.h), or the fault-injecting simulated device
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
// Residency: a GPU backend may also hold device copies of target
// matrices under a caller's key (a collection segment's id), uploaded ahead
// of use by core/residency/device_residency.h. A cosine job whose
// resident_targets names such a copy of the targets' shape is computed
// against it, without copying the targets in. The defaults below say
// "unsupported", so a backend without device memory (the CPU) needs nothing.
//
// Thread-safety: every implementation must allow concurrent calls of every
// method from any thread.
#ifndef ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_
#define ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/memory_pressure.h"
#include "kernels/thread_pool.h"
#include "kernels/types.h"

namespace engram::dispatch {

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
  // UploadResident() and the rest of the residency calls are implemented.
  bool supports_residency = false;
};

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  virtual absl::string_view name() const = 0;
  virtual BackendCapabilities Capabilities() const = 0;

  // Computes `job`, honouring its row mask (jobs.h CosineJob::mask).
  // top_k == 0: fills out->scores, which holds exactly Q*M floats (M the
  // admitted rows, N without a mask); top_k > 0: replaces out->top with Q
  // lists, best first. Leaves out->report alone. The job's views must stay
  // valid for the call.
  virtual absl::Status Cosine(const CosineJob& job, CosineOutput* out) = 0;

  // Computes the activation of every node into out->result. Leaves out->top
  // (the executor selects it) and out->report alone.
  virtual absl::Status Spread(const SpreadJob& job, SpreadOutput* out) = 0;

  // The device's free and total memory now. UNIMPLEMENTED for a backend
  // without device memory (the CPU).
  virtual absl::StatusOr<DeviceMemoryInfo> QueryMemory() = 0;

  // Copies `rows` (N x d, N >= 1) to the device and keeps them under `key`
  // (!= 0) until EvictResident(key). The copy's device memory counts as used
  // in QueryMemory(). Blocks for the copy; `rows` need only live for the
  // call. Errors: INVALID_ARGUMENT for a zero key, empty or non-finite rows;
  // ALREADY_EXISTS when `key` is held; device errors classified as for
  // Cosine (DeviceOutOfMemoryError, StickyDeviceError, others), after which
  // nothing is held under `key`. Default: UNIMPLEMENTED.
  virtual absl::Status UploadResident(uint64_t key,
                                      const kernels::MatrixView& rows) {
    (void)key;
    (void)rows;
    return absl::UnimplementedError(
        absl::StrCat(name(), " holds no resident data"));
  }

  // Drops the copy under `key`. Calls already reading it finish with it; its
  // memory is freed after them. NOT_FOUND when nothing is held under `key`.
  // Default: UNIMPLEMENTED.
  virtual absl::Status EvictResident(uint64_t key) {
    (void)key;
    return absl::UnimplementedError(
        absl::StrCat(name(), " holds no resident data"));
  }

  // Whether a copy is held under `key` now (it may be evicted right after:
  // a job naming it then copies its targets in as usual). Default: false.
  virtual bool HoldsResident(uint64_t key) const {
    (void)key;
    return false;
  }

  // Device bytes the resident copies hold. Default: 0.
  virtual uint64_t ResidentBytes() const { return 0; }
};

// Makes a GPU backend over the engine's worker pool (borrowed; it outlives
// the backend). How a caller replaces the engine's search for a CUDA device
// with another device: tests and engram-server's --simulated_gpu demo mode
// inject the simulated one (core/dispatch/testing/) this way.
using GpuBackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<ComputeBackend>>(
        kernels::ThreadPool* pool)>;

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_COMPUTE_BACKEND_H_
