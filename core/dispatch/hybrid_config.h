// HybridConfig: every tunable of the hybrid dispatch engine in one validated
// struct, its text file format, per-hardware profiles, and ConfigStore, the
// atomically swapped holder that hot reload goes through.
//
// File format (the lexer is base/key_value_text.h): one `key = value` per
// line; `#` starts a comment; blank lines are ignored. Values are integers,
// decimals or true/false; durations are written in seconds. A line
// `[profile NAME]` starts a profile section: its keys override the base keys
// when the device name contains NAME (case-insensitive); when several
// profiles match, the one with the longest NAME wins, so "H100 NVL" beats
// "H100". Unknown keys, repeated keys in one section and values out of range
// are INVALID_ARGUMENT naming the line. The base keys alone, and the base
// keys with each profile, must make a valid config, whichever device reads
// the file, so a mistake shows on the machine where the file is edited.
//
// Keys: the dispatch fields below are their own keys. The breaker, the
// performance model and the memory monitor keep their Options, with their
// defaults and ranges, in their own headers; their keys are:
//
//   perf_window_samples             model.window_samples
//   perf_max_sample_age_seconds     model.max_sample_age
//   perf_min_samples                model.min_samples
//   success_window_calls            model.success_window
//   success_max_age_seconds         model.success_max_age
//   probe_initial_interval_seconds  model.probe_initial_interval
//   probe_max_interval_seconds      model.probe_max_interval
//   probe_backoff                   model.probe_backoff
//   breaker_window_calls            breaker.window_calls
//   breaker_min_calls               breaker.min_calls
//   breaker_failure_rate            breaker.failure_rate_threshold
//   breaker_window_seconds          breaker.window_duration
//   breaker_consecutive_failures    breaker.consecutive_failures_to_open
//   breaker_open_initial_seconds    breaker.open_initial
//   breaker_open_max_seconds        breaker.open_max
//   breaker_open_backoff            breaker.open_backoff
//   breaker_healthy_reset_seconds   breaker.healthy_reset
//   breaker_half_open_probes        breaker.half_open_probes
//   memory_safety_margin            memory.safety_margin
//   memory_high_pressure            memory.high_pressure_fraction
//   memory_refresh_seconds          memory.refresh_interval
//   memory_stale_seconds            memory.stale_after
//   memory_ledger                   ledger.enabled
//   memory_ledger_wait_seconds      ledger.max_wait
//
// ledger.safety_margin has no key: the executor sets it from
// memory.safety_margin, so the ledger and the monitor share one margin.
//
// Hot reload: the executor reads the config once per request, so the
// dispatch fields (hot) take effect on the next request after
// ConfigStore::Update(); the components' Options (restart) size the breaker,
// the performance model, the memory monitor and the memory ledger, which are
// built once, and
// take effect at the next start (RestartOnlyChanges() lists the keys a reload
// changed).
#ifndef ENGRAM_CORE_DISPATCH_HYBRID_CONFIG_H_
#define ENGRAM_CORE_DISPATCH_HYBRID_CONFIG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/memory_ledger.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"

namespace engram::dispatch {

// Defaults are conservative starting points, not measurements: run the
// calibration (calibration.h) on the target hardware and put its output in a
// profile.
struct HybridConfig {
  // --- Dispatch (hot) ---
  // Work below which a request stays on the CPU: Q*N*d for cosine (N the
  // admitted target rows of a masked job). [0, 2^62]
  uint64_t min_gpu_work_cosine = uint64_t{1} << 24;
  // Edges x hops for spreading. [0, 2^62]
  uint64_t min_gpu_work_spread = uint64_t{1} << 20;
  // The GPU is chosen only while its expected time times this factor stays
  // within the CPU's. [0.1, 100]
  double gpu_advantage = 1.0;
  // Explore the backend not chosen now and then (performance_model.h,
  // dispatch_policy.h).
  bool probe_enabled = true;
  // The most probes may be of the AUTO requests the model decides, over the
  // long run (a credit of this much per such request, a probe spending 1,
  // at most 2 banked). [0, 1]
  double probe_max_share = 0.05;
  // No probe is predicted to cost more than this many times the backend
  // the request would otherwise use. [1, 1e6]
  double probe_max_cost_ratio = 4.0;
  // When false a GPU failure fails the request instead of finishing on the
  // CPU.
  bool cpu_fallback = true;

  // --- Chunking and OOM recovery (hot) ---
  uint32_t max_chunk_queries = 4096;  // [1, 2^24]: GPU cosine chunk cap
  uint32_t min_chunk_queries = 8;     // [1, max_chunk_queries]: halving floor
  uint32_t max_oom_retries = 4;       // [0, 32] halvings per request
  // Q*N*d (N admitted) per CPU cosine call when the request can be
  // cancelled: a stop is seen within one such call (about 10-50 ms of one
  // core). [1, 2^62]
  uint64_t cpu_chunk_work = uint64_t{1} << 27;

  // --- The components' Options (restart) ---
  // Checked by the components' own Validate(). Their `clock` is not part of
  // the config: the executor sets it where it builds them.
  CircuitBreaker::Options breaker;
  PerformanceModel::Options model;
  MemoryPressureMonitor::Options memory;
  DeviceMemoryLedger::Options ledger;
};

// OK, or INVALID_ARGUMENT naming, by its key, the first field outside its
// range: the dispatch fields' ranges are checked here, the components'
// Options by the components' Validate().
absl::Status ValidateHybridConfig(const HybridConfig& config);

// Parses the file format above, starting from the defaults, and applies the
// best profile for `device_name` (none when it is empty). When
// `selected_profile` is not null it receives the profile's NAME, or "" when
// none applied. The result is validated.
absl::StatusOr<HybridConfig> ParseHybridConfig(
    absl::string_view text, absl::string_view device_name,
    std::string* selected_profile = nullptr);

// Reads `path` and parses it as ParseHybridConfig does. NOT_FOUND when the
// file cannot be opened.
absl::StatusOr<HybridConfig> LoadHybridConfigFile(
    const std::string& path, absl::string_view device_name,
    std::string* selected_profile = nullptr);

// Every field as `key = value` lines in the file format (round-trips through
// ParseHybridConfig).
std::string FormatHybridConfig(const HybridConfig& config);

// The keys of the (restart) fields whose values differ between `before` and
// `after`.
std::vector<std::string> RestartOnlyChanges(const HybridConfig& before,
                                            const HybridConfig& after);

// Holds the config in force. Get() returns an immutable snapshot that stays
// valid for as long as the caller holds it, so a request that began under
// the old config finishes under it while new requests see the new one.
//
// Thread-safety: all methods may be called concurrently; Get() and Update()
// hold a mutex only to copy or swap a shared_ptr.
class ConfigStore {
 public:
  // INVALID_ARGUMENT when `initial` is invalid.
  static absl::StatusOr<std::unique_ptr<ConfigStore>> Create(
      const HybridConfig& initial);

  std::shared_ptr<const HybridConfig> Get() const ABSL_LOCKS_EXCLUDED(mu_);

  // Validates and swaps in `next`; an invalid config leaves the current one
  // in force and returns INVALID_ARGUMENT.
  absl::Status Update(const HybridConfig& next) ABSL_LOCKS_EXCLUDED(mu_);

  // LoadHybridConfigFile, then Update; the current config stays on error.
  absl::Status ReloadFromFile(const std::string& path,
                              absl::string_view device_name)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Incremented by every successful Update; 1 after Create.
  uint64_t version() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit ConfigStore(std::shared_ptr<const HybridConfig> initial)
      : config_(std::move(initial)) {}

  mutable absl::Mutex mu_;
  std::shared_ptr<const HybridConfig> config_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_HYBRID_CONFIG_H_
