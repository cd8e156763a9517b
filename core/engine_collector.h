// EngineCollector, the prometheus::Collectable the exposer scrapes: the
// engine's registry plus what is derived from component state at scrape
// time (the breaker and GPU memory gauges, engram_gpu_speedup_estimate and
// the process_* families). server/ mounts the exposer over it
// (Engine::collectable()); GetStats takes its snapshot through Refresh().
//
// Thread-safety: Collect() and Refresh() may be called concurrently; see the
// class.
#ifndef ENGRAM_CORE_ENGINE_COLLECTOR_H_
#define ENGRAM_CORE_ENGINE_COLLECTOR_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/collections/catalog.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/memory_ledger.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"
#include "core/engine_stats.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace engram::core {

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
    const dispatch::CircuitBreaker* breaker = nullptr;  // required
    const dispatch::PerformanceModel* model = nullptr;  // required
    const dispatch::MemoryPressureMonitor* memory =
        nullptr;                       // null without a GPU
    dispatch::Clock* clock = nullptr;  // nullptr: Clock::Real()
    // The shared catalog (--catalog), or null: engram_catalog_connected
    // and engram_catalog_state_seconds.
    const collections::Catalog* catalog = nullptr;
    // Null without a GPU or with the ledger disabled.
    const dispatch::DeviceMemoryLedger* ledger = nullptr;
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
  dispatch::Clock* const clock_;

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
  prometheus::Gauge* ledger_reserved_ = nullptr;
  prometheus::Gauge* ledger_capacity_ = nullptr;
  // Set from the ledger's own counts, as memory_query_failures_.
  prometheus::Counter* ledger_waits_ = nullptr;
  prometheus::Counter* ledger_refusals_ = nullptr;
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_ENGINE_COLLECTOR_H_
