// ExecutorObserver: how the executor's events reach metrics and logs without
// core/dispatch depending on prometheus or a logging library.
//
// Every method has an empty default, so an observer overrides only what it
// records. Methods are called on the request's thread, possibly from many
// threads at once, and synchronously: they must be thread-safe and must not
// block or call back into the executor.
#ifndef ENGRAM_CORE_DISPATCH_EXECUTOR_OBSERVER_H_
#define ENGRAM_CORE_DISPATCH_EXECUTOR_OBSERVER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/jobs.h"

namespace engram::dispatch {

// Fallback reasons, as they appear in ExecutionReport::fallback_reason and
// in OnFallback.
// GPU out of memory even after the allowed halvings: the rest ran on the CPU.
inline constexpr absl::string_view kFallbackGpuOom = "gpu_oom";
// Any other GPU failure (including a sticky one or a malformed result): the
// rest ran on the CPU.
inline constexpr absl::string_view kFallbackGpuError = "gpu_error";
// The GPU was chosen but the device memory ledger (memory_ledger.h) had no
// room for the request within its wait: it ran on the CPU before the GPU was
// tried.
inline constexpr absl::string_view kFallbackGpuMemoryBusy = "gpu_memory_busy";

class ExecutorObserver {
 public:
  virtual ~ExecutorObserver() = default;

  // The policy chose `backend` (kCpu, kGpu, or kUnspecified for a refusal)
  // by `rule`; deciding took `decision_seconds` (snapshot included).
  virtual void OnDecision(Operation op, BackendKind backend,
                          absl::string_view rule, double decision_seconds) {}
  // The request moved to the CPU part-way; once per request at most.
  virtual void OnFallback(Operation op, absl::string_view reason) {}
  // The GPU ran out of memory on a chunk.
  virtual void OnOom(Operation op) {}
  // ... and the chunk is retried on the GPU at half its size.
  virtual void OnOomRetry(Operation op) {}
  // One chunk finished on `backend`.
  virtual void OnChunk(Operation op, BackendKind backend) {}
  // A request's work on one backend: once per backend that ran, so a MIXED
  // request reports twice. work_items: vectors compared (rows x N) for
  // cosine, edges traversed for spreading.
  virtual void OnCompute(Operation op, BackendKind backend, double seconds,
                         uint64_t work_items) {}
  // A backend call failed (before any retry or fallback).
  virtual void OnBackendError(Operation op, BackendKind backend,
                              const absl::Status& error) {}
  // The GPU circuit breaker changed state.
  virtual void OnBreakerTransition(const BreakerTransition& transition) {}
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_EXECUTOR_OBSERVER_H_
