// A fault-injecting stand-in for a GPU, for tests, demos and capacity
// planning without one ("simulated-gpu").
//
// It computes with the CPU kernels, so its results are the CPU's, but it
// behaves like a device: each call costs a launch overhead plus a cost per
// unit of work (spent through the injected Clock, so with a ManualClock it
// costs no real time), it has a memory capacity and reports free memory, a
// call whose footprint (chunking.h) does not fit fails with device OOM, and
// it fails on demand: at random with a set probability (device errors and
// OOM), in bursts, after a number of calls with a sticky error, or through
// the injection methods; and it can stall (latency spikes).
//
// Residency: it holds resident copies (UploadResident) as bookkeeping only —
// their bytes (chunking.h ResidentFootprintBytes) count against its memory,
// an upload that does not fit fails with device OOM, uploads fail on demand
// (FailNextUploads, and every one after a sticky error), and a cosine job
// whose resident_targets names a copy of its targets' shape needs no room
// for the targets and does not pay their copy (seconds_per_target_byte).
// Results are still computed by the CPU kernels from the job's host targets,
// so they are the CPU's whether the copy was used or not.
//
// Thread-safety: all methods may be called concurrently. Concurrent calls
// hold their footprints in device memory at the same time, as on a real
// device, so they can push each other into OOM.
#ifndef ENGRAM_CORE_DISPATCH_TESTING_SIMULATED_GPU_BACKEND_H_
#define ENGRAM_CORE_DISPATCH_TESTING_SIMULATED_GPU_BACKEND_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/cpu_backend.h"
#include "kernels/thread_pool.h"

namespace engram::dispatch::testing {

class SimulatedGpuBackend final : public ComputeBackend {
 public:
  struct Options {
    std::string name = "simulated-gpu";         // non-empty
    std::string device_name = "Simulated GPU";  // selects config profiles
    kernels::ThreadPool* pool = nullptr;        // borrowed; for the CPU kernels
    Clock* clock = nullptr;  // borrowed; nullptr means Clock::Real()
    absl::Duration launch_overhead = absl::Microseconds(20);  // >= 0
    // Per unit of work (CosineJob::work(), Q*N*d over the admitted rows, for
    // cosine; edges x hops for spreading).
    double seconds_per_unit = 1e-12;  // [0, 1]
    // [0, 1]: the host-to-device copy, per byte: what a cosine job pays for
    // targets it does not hold resident (N x d floats), and an upload for
    // its rows. 0 (the default) leaves copies out of the cost model.
    double seconds_per_target_byte = 0.0;
    uint64_t memory_bytes = uint64_t{16} << 30;  // > 0: total device memory
    // Memory other tenants hold; free = memory - reserved - in flight.
    uint64_t reserved_bytes = 0;     // <= memory_bytes
    double error_probability = 0.0;  // [0, 1]: a call fails (UNAVAILABLE)
    double burst_probability = 0.0;  // [0, 1]: a call starts a burst ...
    uint32_t burst_length = 1;       // ... of this many failing calls, >= 1
    // [0, 1]: a call fails with device OOM whatever its size (another
    // tenant's allocation, fragmentation).
    double oom_probability = 0.0;
    // [0, 1]: a call that runs takes spike_latency longer (a throttled or
    // contended device).
    double spike_probability = 0.0;
    absl::Duration spike_latency = absl::Milliseconds(50);  // >= 0
    // The call with this number (1-based) fails with a sticky error, and so
    // does every call after it. 0: never.
    uint64_t sticky_after_calls = 0;
    uint64_t seed = 1;  // for the random failures
  };

  // Counts since creation.
  struct Stats {
    uint64_t calls = 0;
    uint64_t successes = 0;
    uint64_t ooms = 0;
    uint64_t device_errors = 0;  // injected failures, sticky ones included
    // Residency: successful and failed UploadResident calls, copies dropped
    // by EvictResident, and cosine calls that read a resident copy.
    uint64_t resident_uploads = 0;
    uint64_t resident_upload_failures = 0;
    uint64_t resident_evictions = 0;
    uint64_t resident_hits = 0;
  };

  // One call, as the device saw it.
  struct CallRecord {
    Operation op = Operation::kCosine;
    uint64_t items = 0;  // query rows for cosine, 1 for spreading
    uint64_t bytes = 0;  // its footprint
    absl::StatusCode outcome = absl::StatusCode::kOk;
    bool resident = false;  // cosine read resident targets
  };

  // INVALID_ARGUMENT for an option outside its range.
  static absl::StatusOr<std::unique_ptr<SimulatedGpuBackend>> Create(
      const Options& options);

  absl::string_view name() const override { return options_.name; }
  BackendCapabilities Capabilities() const override;
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Spends launch_overhead plus the copy (seconds_per_target_byte), then
  // holds ResidentFootprintBytes(N, d) until EvictResident. Fails (holding
  // nothing) with a queued FailNextUploads error, a StickyDeviceError once
  // the device is sticky, or DeviceOutOfMemoryError when the copy does not
  // fit in free memory or exceeds SetOomAboveBytes.
  absl::Status UploadResident(uint64_t key,
                              const kernels::MatrixView& rows) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status EvictResident(uint64_t key) override ABSL_LOCKS_EXCLUDED(mu_);
  bool HoldsResident(uint64_t key) const override ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t ResidentBytes() const override ABSL_LOCKS_EXCLUDED(mu_);

  // After the next `after` calls (which run as usual), `n` calls fail with
  // `error` (which may be a StickyDeviceError or a DeviceOutOfMemoryError)
  // before any other check. Adds to what is already queued.
  void FailNextCalls(uint32_t n, absl::Status error, uint32_t after = 0)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Likewise for UploadResident calls (a queue of their own: cosine and
  // spreading calls do not consume it).
  void FailNextUploads(uint32_t n, absl::Status error, uint32_t after = 0)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Calls whose footprint exceeds `bytes` fail with OOM whatever the free
  // memory (fragmentation, or a probe that over-reports). 0: no such limit.
  void SetOomAboveBytes(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void SetReservedBytes(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // QueryMemory() fails with `error` until set back to OK.
  void SetMemoryProbeError(absl::Status error) ABSL_LOCKS_EXCLUDED(mu_);
  // Every later call fails with a sticky error.
  void InjectStickyError() ABSL_LOCKS_EXCLUDED(mu_);
  // Replaces Options::error_probability from now on; [0, 1], else
  // INVALID_ARGUMENT.
  absl::Status SetErrorProbability(double p) ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  // The last kHistory calls, oldest first.
  std::vector<CallRecord> history() const ABSL_LOCKS_EXCLUDED(mu_);
  static constexpr size_t kHistory = 4096;

 private:
  SimulatedGpuBackend(const Options& options, std::unique_ptr<CpuBackend> cpu);

  struct ResidentCopy {
    uint64_t rows = 0;
    uint64_t cols = 0;
    uint64_t bytes = 0;
  };

  // Decides the fate of one call and, when it may run, reserves its bytes
  // and sets *spike to the extra latency it suffers (zero for most).
  absl::Status Admit(Operation op, uint64_t items, uint64_t bytes,
                     absl::Duration* spike) ABSL_LOCKS_EXCLUDED(mu_);
  // Frees the call's bytes and records its outcome.
  void Finish(Operation op, uint64_t items, uint64_t bytes, bool resident,
              const absl::Status& outcome) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the job's resident_targets names a copy of its targets' shape.
  bool ReadsResident(const CosineJob& job) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t FreeBytesLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void RecordCallLocked(const CallRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  const std::unique_ptr<CpuBackend> cpu_;

  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  uint64_t reserved_bytes_ ABSL_GUARDED_BY(mu_);
  uint64_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t oom_above_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t burst_left_ ABSL_GUARDED_BY(mu_) = 0;
  double error_probability_ ABSL_GUARDED_BY(mu_);
  bool sticky_ ABSL_GUARDED_BY(mu_) = false;
  // Verdicts for the coming calls, in order; OK lets a call run as usual.
  std::deque<absl::Status> forced_ ABSL_GUARDED_BY(mu_);
  std::deque<absl::Status> forced_uploads_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, ResidentCopy> resident_ ABSL_GUARDED_BY(mu_);
  uint64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status probe_error_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::deque<CallRecord> history_ ABSL_GUARDED_BY(mu_);
};

// An Engine::Options::gpu_backend factory: a SimulatedGpuBackend with
// `options`, over the pool the engine passes (options.pool is replaced).
// When `created` is not null, *created is set to the backend made, which the
// engine owns: how a test or engram-server reaches it to inject faults.
GpuBackendFactory SimulatedGpuFactory(SimulatedGpuBackend::Options options,
                                      SimulatedGpuBackend** created = nullptr);

}  // namespace engram::dispatch::testing

#endif  // ENGRAM_CORE_DISPATCH_TESTING_SIMULATED_GPU_BACKEND_H_
