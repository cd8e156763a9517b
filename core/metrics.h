// The Prometheus registry families the engine records, and the observer
// through which the dispatch engine reports into them.
//
// The families live in core/ so the engine records its numbers where they
// happen; server/ mounts the pull exposer over the same registry and adds its
// per-RPC families. Every child is created up front (label values are
// bounded): the hot path only increments or observes.
//
// Thread-safety: all methods may be called concurrently (prometheus-cpp
// counters, gauges and histograms are internally synchronised).
#ifndef ENGRAM_CORE_METRICS_H_
#define ENGRAM_CORE_METRICS_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/dispatch/executor_observer.h"
#include "core/jobs.h"
#include "prometheus/client_metric.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram::core {

// Latency buckets in seconds, from tens of microseconds (a tiny request on
// a warm CPU) to seconds (a large batch or a slow fallback). RPC and compute
// histograms share them so they line up.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// Estimates quantile q (0..1) of a collected histogram by linear
// interpolation inside the bucket, as PromQL's histogram_quantile() does.
// Returns 0 for an empty histogram.
double HistogramQuantile(const prometheus::ClientMetric::Histogram& h,
                         double q);

class EngineMetrics final : public ExecutorObserver {
 public:
  // Registers the engine's families in `registry`, which must outlive this.
  explicit EngineMetrics(prometheus::Registry& registry);

  // ExecutorObserver: the dispatch engine's events.
  void OnDecision(Operation op, BackendKind backend, absl::string_view rule,
                  double decision_seconds) override;
  void OnFallback(Operation op, absl::string_view reason) override;
  void OnOom(Operation op) override;
  void OnOomRetry(Operation op) override;
  void OnChunk(Operation op, BackendKind backend) override;
  void OnCompute(Operation op, BackendKind backend, double seconds,
                 uint64_t work_items) override;
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

  // Fallbacks of `op` with `reason` so far (for stats and tests).
  uint64_t FallbackCount(Operation op, absl::string_view reason) const;

 private:
  static constexpr int kOps = 2;       // cosine, spread
  static constexpr int kBackends = 2;  // cpu, gpu (as the executor reports)
  static int OpIndex(Operation op) { return op == Operation::kCosine ? 0 : 1; }
  static int BackendIndex(BackendKind backend) {
    return backend == BackendKind::kGpu ? 1 : 0;
  }

  template <typename T>
  using PerOp = std::array<T, kOps>;
  template <typename T>
  using PerOpBackend = std::array<std::array<T, kBackends>, kOps>;

  PerOpBackend<prometheus::Histogram*> compute_{};
  PerOpBackend<prometheus::Counter*> work_items_{};
  PerOpBackend<prometheus::Counter*> chunks_{};
  // [op][backend cpu/gpu/none][rule]
  std::array<std::array<std::array<prometheus::Counter*, 9>, 3>, kOps>
      decisions_{};
  prometheus::Histogram* decision_seconds_ = nullptr;
  // [op][reason]
  std::array<std::array<prometheus::Counter*, 2>, kOps> fallbacks_{};
  PerOp<prometheus::Counter*> ooms_{};
  PerOp<prometheus::Counter*> oom_retries_{};
  prometheus::Gauge* breaker_state_ = nullptr;
  // [from][to]
  std::array<std::array<prometheus::Counter*, 4>, 4> breaker_transitions_{};
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_METRICS_H_
