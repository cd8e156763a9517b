// Device memory pressure, as the dispatch policy and the chunk planner see it.
//
// The monitor reads device memory through an injected probe (the GPU
// backend's QueryMemory) and caches the last good reading with its time.
// The budget a job may use is free_bytes * safety_margin of that reading,
// ALWAYS: the margin covers the driver's own allocations and other tenants
// whether the probe worked or not. A reading older than `stale_after` (or no
// reading at all) counts as high pressure, so a broken probe sends work to
// the CPU rather than into an OOM. Probe failures are counted.
//
// Thread-safety: all methods may be called concurrently. Assess() runs the
// probe outside the monitor's lock, and only one thread probes at a time;
// the others are answered from the cache meanwhile, so a slow probe never
// stalls them.
#ifndef ENGRAM_CORE_DISPATCH_MEMORY_PRESSURE_H_
#define ENGRAM_CORE_DISPATCH_MEMORY_PRESSURE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/option_check.h"

namespace engram::dispatch {

// One reading of a device's memory.
struct DeviceMemoryInfo {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};

// The monitor's verdict at one instant.
struct MemoryAssessment {
  bool has_reading = false;                       // some probe has succeeded
  DeviceMemoryInfo reading;                       // the last good reading
  absl::Duration age = absl::InfiniteDuration();  // since that reading
  bool stale = true;           // no reading, or one older than stale_after
  bool high_pressure = true;   // stale, or used fraction >= the threshold
  double used_fraction = 1.0;  // 1 - free/total of the last reading
  // free_bytes * safety_margin of the last good reading (0 without one).
  // Still set when stale, for GPU-only requests that must try anyway.
  uint64_t budget_bytes = 0;
  uint64_t probe_failures = 0;   // since creation
  std::string last_probe_error;  // empty when the last probe succeeded
};

class MemoryPressureMonitor {
 public:
  struct Options {
    double safety_margin = 0.8;           // (0, 1]
    double high_pressure_fraction = 0.9;  // (0, 1]: used/total that is high
    // Readings younger than this are served from the cache. [0, stale_after]
    absl::Duration refresh_interval = absl::Milliseconds(250);
    // (0, 1e7 s]: the bound is kMaxOptionSeconds (option_check.h).
    absl::Duration stale_after = absl::Seconds(5);
    Clock* clock = nullptr;  // borrowed; nullptr means Clock::Real()
  };
  // Returns the device's free and total memory, or an error. Must be
  // thread-safe with respect to the rest of the backend; it is only ever
  // called by one thread at a time.
  using Probe = std::function<absl::StatusOr<DeviceMemoryInfo>()>;

  // OK, or INVALID_ARGUMENT naming the first option outside its range: the
  // one place these ranges are checked (Create() calls it, and so does the
  // hybrid config for the Options it embeds). `name` spells an option in the
  // message; without it the message reads "memory pressure monitor option
  // MEMBER".
  static absl::Status Validate(const Options& options);
  static absl::Status Validate(const Options& options, OptionNamer name);

  // INVALID_ARGUMENT for an option outside its range (Validate) or an empty
  // probe.
  static absl::StatusOr<std::unique_ptr<MemoryPressureMonitor>> Create(
      const Options& options, Probe probe);

  MemoryPressureMonitor(const MemoryPressureMonitor&) = delete;
  MemoryPressureMonitor& operator=(const MemoryPressureMonitor&) = delete;

  // Probes when the cached reading is older than refresh_interval and no
  // other thread is probing, then assesses. May block for one probe.
  MemoryAssessment Assess() ABSL_LOCKS_EXCLUDED(mu_);

  // Assesses the cached reading without probing; never blocks on the probe.
  MemoryAssessment Cached() const ABSL_LOCKS_EXCLUDED(mu_);

  const Options& options() const { return options_; }

 private:
  MemoryPressureMonitor(const Options& options, Probe probe);
  MemoryAssessment AssessLocked(absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  Probe probe_;

  mutable absl::Mutex mu_;
  bool has_reading_ ABSL_GUARDED_BY(mu_) = false;
  DeviceMemoryInfo reading_ ABSL_GUARDED_BY(mu_);
  absl::Time reading_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_attempt_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool probing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t probe_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_probe_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_MEMORY_PRESSURE_H_
