// The Prometheus families the engine records, the observer through which the
// dispatch engine reports into them, the collector that refreshes the gauges
// derived from component state on every scrape, and the structured stats
// (GetStats) read from the same children.
//
// The families live in core/ so the engine records its numbers where they
// happen; server/ mounts the pull exposer over EngineCollector and adds its
// per-RPC families to the same registry. Every child is created up front
// (label values are bounded): the hot path only increments or observes.
// docs/metrics.md is the catalogue.
//
// Thread-safety: all methods may be called concurrently (prometheus-cpp
// counters, gauges and histograms are internally synchronised; the rolling
// windows and the last-error record have their own mutexes).
#ifndef ENGRAM_CORE_METRICS_H_
#define ENGRAM_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/executor_observer.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"
#include "core/histograms.h"
#include "core/metric_labels.h"
#include "core/process_sample.h"
#include "core/rolling_counter.h"
#include "prometheus/client_metric.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace engram::core {

// What the components looked like at one refresh: each piece is consistent
// in itself (docs/concurrency.md), and the gauges and GetStats of that
// refresh are built from exactly these values.
struct EngineStateSnapshot {
  absl::Time at;
  BreakerSnapshot breaker;
  std::optional<MemoryAssessment> memory;  // none without a GPU
  std::vector<PerfSnapshot> perf;          // every measured bucket
  // Per operation (cosine, spread): the model's windowed outcomes, which
  // do not depend on the bucket.
  std::array<PerfSnapshot, 2> outcomes;
};

// The structured stats GetStats returns: totals read from the same children
// /metrics exposes, windowed figures from the rolling windows fed by the
// same events, and the state snapshot the gauges were refreshed from.
struct EngineStats {
  struct Backend {
    Operation operation = Operation::kCosine;
    BackendKind backend = BackendKind::kCpu;
    uint64_t requests = 0;  // engram_compute_duration_seconds_count
    uint64_t work_items = 0;
    double compute_seconds_total = 0;
    double p50_seconds = 0;  // from the histogram, as histogram_quantile()
    double p99_seconds = 0;
    double requests_per_second = 0;  // over the window
    double work_items_per_second = 0;
    double success_rate = 1;  // the performance model's windowed outcomes
    uint32_t success_outcomes = 0;
  };
  struct OperationStats {
    Operation operation = Operation::kCosine;
    uint64_t requests = 0;  // dispatch decisions since start-up
    uint64_t requests_in_window = 0;
    uint64_t fallbacks = 0;    // all reasons, since start-up
    double fallback_rate = 0;  // fallbacks / requests, in the window
    uint64_t ooms = 0;
    uint64_t oom_retries = 0;
    double ooms_per_minute = 0;
  };
  struct Fallback {
    Operation operation = Operation::kCosine;
    std::string reason;
    uint64_t count = 0;  // since start-up
    uint64_t count_in_window = 0;
    double rate = 0;  // count_in_window / the operation's requests in it
  };
  struct Speedup {
    Operation operation = Operation::kCosine;
    std::string size_bucket;  // as the metric label, "2^b"
    uint64_t min_work = 0;
    double speedup = 0;  // CPU seconds per unit / GPU seconds per unit
    double cpu_seconds_per_unit = 0;
    double gpu_seconds_per_unit = 0;
    uint32_t cpu_samples = 0;
    uint32_t gpu_samples = 0;
  };

  // The window the windowed figures cover: a minute, or the time since
  // start-up when that is shorter.
  double window_seconds = 0;
  std::vector<Backend> backends;  // pairs that computed at least once
  std::vector<OperationStats> operations;
  std::vector<Fallback> fallbacks;  // reasons seen at least once
  std::vector<Speedup> speedups;    // buckets measured on both backends
  BreakerSnapshot breaker;
  std::optional<MemoryAssessment> memory;
  std::string last_gpu_error;  // empty when the GPU never failed
  double last_gpu_error_age_seconds = 0;
};

class EngineMetrics final : public ExecutorObserver {
 public:
  struct Options {
    // Times the rolling windows; borrowed; nullptr: Clock::Real().
    Clock* clock = nullptr;
  };

  // Registers the engine's families in `registry`, which must outlive this.
  explicit EngineMetrics(prometheus::Registry& registry);
  EngineMetrics(prometheus::Registry& registry, const Options& options);

  // ExecutorObserver: the dispatch engine's events. Warnings (fallbacks,
  // OOMs, breaker transitions) go through LogLimited.
  void OnDecision(Operation op, BackendKind backend, absl::string_view rule,
                  double decision_seconds) override;
  void OnFallback(Operation op, absl::string_view reason) override;
  void OnOom(Operation op) override;
  void OnOomRetry(Operation op) override;
  void OnChunk(Operation op, BackendKind backend) override;
  void OnCompute(Operation op, BackendKind backend, double seconds,
                 uint64_t work_items) override;
  void OnBackendError(Operation op, BackendKind backend,
                      const absl::Status& error) override;
  void OnBreakerTransition(const BreakerTransition& transition) override;

  struct BackendSnapshot {
    Operation operation;
    BackendKind backend;
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
  uint64_t FallbackCount(Operation op, absl::string_view reason) const;

  // The structured stats of `state` (taken by EngineCollector::Refresh).
  EngineStats Stats(const EngineStateSnapshot& state) const;

 private:
  static constexpr int kOps = 2;       // cosine, spread
  static constexpr int kBackends = 2;  // cpu, gpu (as the executor reports)
  static constexpr int kRules = 9;     // dispatch_policy.h's, then "other"
  static int OpIndex(Operation op) { return op == Operation::kCosine ? 0 : 1; }
  static int BackendIndex(BackendKind backend) {
    return backend == BackendKind::kGpu ? 1 : 0;
  }

  template <typename T>
  using PerOp = std::array<T, kOps>;
  template <typename T>
  using PerOpBackend = std::array<std::array<T, kBackends>, kOps>;

  void RecordFallback(int op, int reason, absl::string_view executor_reason);

  Clock* const clock_;
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

// The prometheus::Collectable the exposer scrapes. Each Collect() first
// refreshes the gauges derived from component state (breaker, GPU memory)
// from one fresh snapshot, then returns the registry's families plus those
// computed on the spot: engram_gpu_speedup_estimate (only buckets measured
// on both backends, so the series appear and disappear with the model's
// window) and the process_* families.
//
// Thread-safety: Collect() and Refresh() may be called concurrently; one
// mutex serialises refreshes so gauges never mix two snapshots.
class EngineCollector final : public prometheus::Collectable {
 public:
  struct Sources {
    const CircuitBreaker* breaker = nullptr;        // required
    const PerformanceModel* model = nullptr;        // required
    const MemoryPressureMonitor* memory = nullptr;  // null without a GPU
    Clock* clock = nullptr;                         // nullptr: Clock::Real()
  };

  // Registers the derived gauges in `registry`. `registry` and the sources
  // must outlive this.
  EngineCollector(std::shared_ptr<prometheus::Registry> registry,
                  const Sources& sources);

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Takes a snapshot, sets the gauges from it and returns it. Never probes
  // the device (the memory monitor's cached reading is used).
  EngineStateSnapshot Refresh() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  const Sources sources_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  prometheus::Gauge* breaker_state_ = nullptr;
  prometheus::Gauge* breaker_failures_ = nullptr;
  prometheus::Gauge* breaker_retry_after_ = nullptr;
  prometheus::Gauge* memory_free_ = nullptr;
  prometheus::Gauge* memory_total_ = nullptr;
  prometheus::Gauge* memory_limit_ = nullptr;
  prometheus::Gauge* memory_age_ = nullptr;
  // A counter set from the monitor's own count: advanced by the difference
  // under mu_.
  prometheus::Counter* memory_query_failures_ = nullptr;
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_METRICS_H_
