// The fixed label values and numeric encodings the engine's families share:
// the reasons of engram_gpu_fallbacks_total, the breaker state as
// engram_circuit_breaker_state encodes it, and the size_bucket label of
// engram_gpu_speedup_estimate. The observer (core/engine_metrics.h) and the
// collector (core/engine_collector.h) both spell them from here, so /metrics
// and GetStats agree. docs/metrics.md is the catalogue.
//
// Thread-safety: constants and pure functions; safe from any thread.
#ifndef ENGRAM_CORE_METRIC_LABELS_H_
#define ENGRAM_CORE_METRIC_LABELS_H_

#include <array>
#include <string>

#include "absl/strings/string_view.h"
#include "core/dispatch/circuit_breaker.h"

namespace engram::core {

// The `reason` label values of engram_gpu_fallbacks_total: why work meant for
// the GPU ran on the CPU. The first two happen part-way through a request
// (the executor's ExecutionReport says "gpu_oom" and "gpu_error"); the next
// three are decided before the GPU is tried.
inline constexpr absl::string_view kFallbackReasonOom = "oom";
inline constexpr absl::string_view kFallbackReasonDeviceError = "device_error";
// The breaker is open or half-open without a free probe slot.
inline constexpr absl::string_view kFallbackReasonBreakerOpen = "breaker_open";
// The breaker is forced open (a sticky device error): the GPU is gone for
// the rest of the process.
inline constexpr absl::string_view kFallbackReasonUnavailable = "unavailable";
inline constexpr absl::string_view kFallbackReasonMemoryPressure =
    "memory_pressure";
// The GPU was chosen, but the device memory ledger had no room for the
// request within its wait.
inline constexpr absl::string_view kFallbackReasonMemoryBusy = "memory_busy";
// A fallback reason the executor may add later; counted, not lost.
inline constexpr absl::string_view kFallbackReasonOther = "other";
inline constexpr int kNumFallbackReasons = 7;
// In label order: oom, device_error, breaker_open, unavailable,
// memory_pressure, memory_busy, other.
extern const std::array<absl::string_view, kNumFallbackReasons>
    kFallbackReasons;

// The metric reason for an executor fallback reason (executor_observer.h).
absl::string_view FallbackMetricReason(absl::string_view executor_reason);

// engram_circuit_breaker_state: 0 closed, 1 half-open, 2 open, 3 forced open.
int BreakerStateValue(dispatch::BreakerState state);

// engram_gpu_speedup_estimate's size_bucket label: "2^b" for the
// performance model's bucket b (work in [2^b, 2^(b+1))).
std::string SizeBucketLabel(int bucket);

}  // namespace engram::core

#endif  // ENGRAM_CORE_METRIC_LABELS_H_
