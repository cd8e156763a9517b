// EngineMetrics, the executor's observer: it owns the Prometheus families
// the engine records (compute time, work items, chunks, dispatch decisions,
// fallbacks, OOMs, GPU errors, breaker transitions) and the rolling windows
// fed by the same events, and reads both back for GetStats (EngineStats,
// core/engine_stats.h).
//
// The families live in core/ so the engine records its numbers where they
// happen; server/ mounts the pull exposer over EngineCollector
// (core/engine_collector.h) and adds its per-RPC families to the same
// registry. Every child is created up front (label values are bounded): the
// hot path only increments or observes. docs/metrics.md is the catalogue.
//
// Thread-safety: all methods may be called concurrently (prometheus-cpp
// counters and histograms are internally synchronised; the rolling windows
// and the last-error record have their own mutexes).
#ifndef ENGRAM_CORE_ENGINE_METRICS_H_
#define ENGRAM_CORE_ENGINE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/executor_observer.h"
#include "core/dispatch/jobs.h"
#include "core/engine_stats.h"
#include "core/metric_labels.h"
#include "core/rolling_counter.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram::core {

class EngineMetrics final : public dispatch::ExecutorObserver {
 public:
  struct Options {
    // Times the rolling windows; borrowed; nullptr: Clock::Real().
    dispatch::Clock* clock = nullptr;
  };

  // Registers the engine's families in `registry`, which must outlive this.
  explicit EngineMetrics(prometheus::Registry& registry);
  EngineMetrics(prometheus::Registry& registry, const Options& options);

  // ExecutorObserver: the dispatch engine's events. Warnings (fallbacks,
  // OOMs, breaker transitions) go through LogLimited.
  void OnDecision(dispatch::Operation op, dispatch::BackendKind backend,
                  absl::string_view rule, double decision_seconds) override;
  void OnFallback(dispatch::Operation op, absl::string_view reason) override;
  void OnOom(dispatch::Operation op) override;
  void OnOomRetry(dispatch::Operation op) override;
  void OnChunk(dispatch::Operation op, dispatch::BackendKind backend) override;
  void OnCompute(dispatch::Operation op, dispatch::BackendKind backend,
                 double seconds, uint64_t work_items) override;
  void OnBackendError(dispatch::Operation op, dispatch::BackendKind backend,
                      const absl::Status& error) override;
  void OnBreakerTransition(
      const dispatch::BreakerTransition& transition) override;

  struct BackendSnapshot {
    dispatch::Operation operation;
    dispatch::BackendKind backend;
    uint64_t requests = 0;
    uint64_t work_items = 0;
    double compute_seconds_total = 0;
    double p50_seconds = 0;
    double p99_seconds = 0;
  };
  // Every (operation, backend) pair that has computed at least once, read
  // from the same children /metrics exposes.
  std::vector<BackendSnapshot> Snapshot() const;

  // engram_gpu_fallbacks_total{operation, reason} (a metric reason, e.g.
  // "oom"); 0 for an unknown reason.
  uint64_t FallbackCount(dispatch::Operation op,
                         absl::string_view reason) const;

  // The structured stats of `state` (taken by EngineCollector::Refresh).
  EngineStats Stats(const EngineStateSnapshot& state) const;

 private:
  static constexpr int kOps = 2;       // cosine, spread
  static constexpr int kBackends = 2;  // cpu, gpu (as the executor reports)
  static constexpr int kRules = 9;     // dispatch_policy.h's, then "other"
  static int OpIndex(dispatch::Operation op) {
    return op == dispatch::Operation::kCosine ? 0 : 1;
  }
  static int BackendIndex(dispatch::BackendKind backend) {
    return backend == dispatch::BackendKind::kGpu ? 1 : 0;
  }

  template <typename T>
  using PerOp = std::array<T, kOps>;
  template <typename T>
  using PerOpBackend = std::array<std::array<T, kBackends>, kOps>;

  void RecordFallback(int op, int reason, absl::string_view executor_reason);

  dispatch::Clock* const clock_;
  const absl::Time created_;

  PerOpBackend<prometheus::Histogram*> compute_{};
  PerOpBackend<prometheus::Counter*> work_items_{};
  PerOpBackend<prometheus::Counter*> chunks_{};
  // [op][backend cpu/gpu/none][rule]
  std::array<std::array<std::array<prometheus::Counter*, kRules>, 3>, kOps>
      decisions_{};
  prometheus::Histogram* decision_seconds_ = nullptr;
  std::array<std::array<prometheus::Counter*, kNumFallbackReasons>, kOps>
      fallbacks_{};
  PerOp<prometheus::Counter*> ooms_{};
  PerOp<prometheus::Counter*> oom_retries_{};
  // [op][device, sticky]
  std::array<std::array<prometheus::Counter*, 2>, kOps> gpu_errors_{};
  // [from][to] by BreakerStateValue; null on the diagonal.
  std::array<std::array<prometheus::Counter*, 4>, 4> breaker_transitions_{};

  // Windows fed by the same events as the counters above.
  PerOp<RollingCounter> decisions_window_;
  std::array<std::array<RollingCounter, kNumFallbackReasons>, kOps>
      fallbacks_window_;
  PerOp<RollingCounter> ooms_window_;
  PerOpBackend<RollingCounter> computes_window_;
  PerOpBackend<RollingCounter> work_items_window_;

  // Set once the breaker is forced open (terminal): breaker rejections from
  // then on count as "unavailable". Relaxed: a request racing the transition
  // may still count as breaker_open, which is what it saw.
  std::atomic<bool> gpu_lost_{false};

  mutable absl::Mutex last_error_mu_;
  std::string last_gpu_error_ ABSL_GUARDED_BY(last_error_mu_);
  absl::Time last_gpu_error_at_ ABSL_GUARDED_BY(last_error_mu_) =
      absl::InfinitePast();
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_ENGINE_METRICS_H_
