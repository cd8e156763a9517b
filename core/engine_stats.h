// The structured stats GetStats returns (EngineStats), and the snapshot of
// component state they and the derived gauges are built from
// (EngineStateSnapshot). EngineCollector (core/engine_collector.h) takes the
// snapshot; EngineMetrics (core/engine_metrics.h) assembles the stats from
// it and from its own children; server/ turns them into the response.
//
// Thread-safety: plain values; a copy may be read from any thread.
#ifndef ENGRAM_CORE_ENGINE_STATS_H_
#define ENGRAM_CORE_ENGINE_STATS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/memory_ledger.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"

namespace engram::core {

// What the components looked like at one refresh: each piece is consistent
// in itself (docs/concurrency.md), and the gauges and GetStats of that
// refresh are built from exactly these values.
struct EngineStateSnapshot {
  absl::Time at;
  dispatch::BreakerSnapshot breaker;
  std::optional<dispatch::MemoryAssessment> memory;  // none without a GPU
  // None without a GPU or with the ledger disabled.
  std::optional<dispatch::DeviceMemoryLedger::Stats> memory_ledger;
  std::vector<dispatch::PerfSnapshot> perf;  // every measured bucket
  // Per operation (cosine, spread): the model's windowed outcomes, which
  // do not depend on the bucket.
  std::array<dispatch::PerfSnapshot, 2> outcomes;
};

// The structured stats GetStats returns: totals read from the same children
// /metrics exposes, windowed figures from the rolling windows fed by the
// same events, and the state snapshot the gauges were refreshed from.
struct EngineStats {
  struct Backend {
    dispatch::Operation operation = dispatch::Operation::kCosine;
    dispatch::BackendKind backend = dispatch::BackendKind::kCpu;
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
    dispatch::Operation operation = dispatch::Operation::kCosine;
    uint64_t requests = 0;  // dispatch decisions since start-up
    uint64_t requests_in_window = 0;
    uint64_t fallbacks = 0;    // all reasons, since start-up
    double fallback_rate = 0;  // fallbacks / requests, in the window
    uint64_t ooms = 0;
    uint64_t oom_retries = 0;
    double ooms_per_minute = 0;
  };
  struct Fallback {
    dispatch::Operation operation = dispatch::Operation::kCosine;
    std::string reason;
    uint64_t count = 0;  // since start-up
    uint64_t count_in_window = 0;
    double rate = 0;  // count_in_window / the operation's requests in it
  };
  struct Speedup {
    dispatch::Operation operation = dispatch::Operation::kCosine;
    std::string size_bucket;  // as the metric label, "2^b"
    uint64_t min_work = 0;
    double speedup = 0;  // CPU seconds per unit / GPU seconds per unit
    double cpu_seconds_per_unit = 0;
    double gpu_seconds_per_unit = 0;
    uint32_t cpu_samples = 0;
    uint32_t gpu_samples = 0;
  };

  // The dispatch engine's fitted cost model of one backend for one
  // operation (dispatch/cost_model.h).
  struct CostModel {
    dispatch::Operation operation = dispatch::Operation::kCosine;
    dispatch::BackendKind backend = dispatch::BackendKind::kCpu;
    dispatch::CostFit fit;
  };

  // The window the windowed figures cover: a minute, or the time since
  // start-up when that is shorter.
  double window_seconds = 0;
  std::vector<Backend> backends;  // pairs that computed at least once
  std::vector<OperationStats> operations;
  std::vector<Fallback> fallbacks;     // reasons seen at least once
  std::vector<Speedup> speedups;       // buckets measured on both backends
  std::vector<CostModel> cost_models;  // fits with at least one sample
  dispatch::BreakerSnapshot breaker;
  std::optional<dispatch::MemoryAssessment> memory;
  // Reserved bytes, capacity, waits and refusals of the device memory ledger.
  std::optional<dispatch::DeviceMemoryLedger::Stats> memory_ledger;
  std::string last_gpu_error;  // empty when the GPU never failed
  double last_gpu_error_age_seconds = 0;
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_ENGINE_STATS_H_
