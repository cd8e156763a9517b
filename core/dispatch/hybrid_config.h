// HybridConfig: every tunable of the hybrid dispatch engine in one validated
// struct, its text file format, per-hardware profiles, and ConfigStore, the
// atomically swapped holder that hot reload goes through.
//
// File format: one `key = value` per line; `#` starts a comment; blank lines
// are ignored. Keys are the field names below; values are integers, decimals
// or true/false. A line `[profile NAME]` starts a profile section: its keys
// override the base keys when the device name contains NAME
// (case-insensitive); when several profiles match, the one with the longest
// NAME wins, so "H100 NVL" beats "H100". Unknown keys, repeated keys in one
// section and values out of range are INVALID_ARGUMENT naming the line.
//
// Hot reload: the executor reads the config once per request, so fields
// marked (hot) take effect on the next request after ConfigStore::Update();
// fields marked (restart) size the breaker, the performance model and the
// memory monitor, which are built once, and take effect at the next start
// (RestartOnlyChanges() lists the ones a reload changed).
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
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"

namespace engram::core {

// Defaults are conservative starting points, not measurements: run the
// calibration (calibration.h) on the target hardware and put its output in a
// profile.
struct HybridConfig {
  // --- Dispatch (hot) ---
  // Work below which a request stays on the CPU: Q*N*d for cosine.
  // [0, 2^62]
  uint64_t min_gpu_work_cosine = uint64_t{1} << 24;
  // Edges x hops for spreading. [0, 2^62]
  uint64_t min_gpu_work_spread = uint64_t{1} << 20;
  // The GPU is chosen only while its expected time times this factor stays
  // within the CPU's. [0.1, 100]
  double gpu_advantage = 1.0;
  // Explore the backend not chosen now and then (performance_model.h).
  bool probe_enabled = true;
  // When false a GPU failure fails the request instead of finishing on the
  // CPU.
  bool cpu_fallback = true;

  // --- Chunking and OOM recovery (hot) ---
  uint32_t max_chunk_queries = 4096;  // [1, 2^24]: GPU cosine chunk cap
  uint32_t min_chunk_queries = 8;     // [1, max_chunk_queries]: halving floor
  uint32_t max_oom_retries = 4;       // [0, 32] halvings per request
  // Q*N*d per CPU cosine call when the request can be cancelled: a stop is
  // seen within one such call (about 10-50 ms of one core). [1, 2^62]
  uint64_t cpu_chunk_work = uint64_t{1} << 27;

  // --- Performance model (restart) ---
  uint32_t perf_window_samples = 64;          // [1, 4096]
  double perf_max_sample_age_seconds = 600;   // (0, 1e7]
  uint32_t perf_min_samples = 3;              // [1, perf_window_samples]
  uint32_t success_window_calls = 100;        // [1, 100000]
  double success_max_age_seconds = 300;       // (0, 1e7]
  double probe_initial_interval_seconds = 1;  // (0, 1e7]
  double probe_max_interval_seconds = 60;     // [initial, 1e7]
  double probe_backoff = 2;                   // [1, 16]

  // --- Circuit breaker (restart) ---
  uint32_t breaker_window_calls = 20;          // [1, 100000]
  uint32_t breaker_min_calls = 10;             // [1, breaker_window_calls]
  double breaker_failure_rate = 0.5;           // (0, 1]
  double breaker_window_seconds = 60;          // (0, 1e7]
  uint32_t breaker_consecutive_failures = 5;   // [1, 100000]
  double breaker_open_initial_seconds = 1;     // (0, 1e7]
  double breaker_open_max_seconds = 60;        // [initial, 1e7]
  double breaker_open_backoff = 2;             // [1, 16]
  double breaker_healthy_reset_seconds = 300;  // (0, 1e7]
  uint32_t breaker_half_open_probes = 3;       // [1, 1000]

  // --- Memory (restart) ---
  double memory_safety_margin = 0.8;     // (0, 1]: share of free memory used
  double memory_high_pressure = 0.9;     // (0, 1]: used/total that is high
  double memory_refresh_seconds = 0.25;  // [0, memory_stale_seconds]
  double memory_stale_seconds = 5;       // (0, 1e7]
};

// OK, or INVALID_ARGUMENT naming the first field outside its range.
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

// The (restart) fields whose values differ between `before` and `after`.
std::vector<std::string> RestartOnlyChanges(const HybridConfig& before,
                                            const HybridConfig& after);

// The component options a config implies; `clock` is borrowed (nullptr:
// Clock::Real()).
CircuitBreaker::Options BreakerOptionsFrom(const HybridConfig& config,
                                           Clock* clock);
PerformanceModel::Options PerformanceModelOptionsFrom(
    const HybridConfig& config, Clock* clock);
MemoryPressureMonitor::Options MemoryMonitorOptionsFrom(
    const HybridConfig& config, Clock* clock);

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

}  // namespace engram::core

#endif  // ENGRAM_CORE_DISPATCH_HYBRID_CONFIG_H_
