// The CPU backend: the kernels of kernels/cpu behind ComputeBackend.
#ifndef ENGRAM_CORE_DISPATCH_CPU_BACKEND_H_
#define ENGRAM_CORE_DISPATCH_CPU_BACKEND_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/compute_backend.h"
#include "kernels/thread_pool.h"

namespace engram::dispatch {

// Thread-safety: all methods may be called concurrently; concurrent calls
// share the pool (kernels' ParallelFor lets each caller take part, so calls
// made from the pool's own workers cannot deadlock).
class CpuBackend final : public ComputeBackend {
 public:
  static constexpr absl::string_view kName = "cpu";

  struct Options {
    // Borrowed; must outlive the backend. nullptr: each call computes on
    // its calling thread alone.
    kernels::ThreadPool* pool = nullptr;
  };

  // Never fails today; returns StatusOr like every component's Create.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(
      const Options& options);

  absl::string_view name() const override { return kName; }
  BackendCapabilities Capabilities() const override;
  // INTERNAL when out->scores does not hold Q*M floats (a caller bug; M the
  // job's scored_targets()); INVALID_ARGUMENT for non-finite input in an
  // admitted row or a mask that does not cover the targets, from the
  // kernels.
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override;
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override;
  // UNIMPLEMENTED: the CPU has no device memory to watch.
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override;

 private:
  explicit CpuBackend(const Options& options) : options_(options) {}

  const Options options_;
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CPU_BACKEND_H_
