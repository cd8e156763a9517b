// The Prometheus families of resident collections and graphs and of the
// search batcher: what the memory budget, both stores and SearchBatcher
// record. Like core/metrics.h, every child is created up front so the hot
// path only sets, increments or observes; the names are catalogued with the
// others in docs/metrics.md when the server wires them in.
//
// The stores and the batcher take a `ResidentMetrics*` that may be null (no
// metrics), so tests and benchmarks can run without a registry.
//
// Thread-safety: all methods may be called concurrently (prometheus-cpp
// metrics are internally synchronised).
#ifndef ENGRAM_CORE_COLLECTIONS_RESIDENT_METRICS_H_
#define ENGRAM_CORE_COLLECTIONS_RESIDENT_METRICS_H_

#include <cstdint>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace engram::collections {

class ResidentMetrics {
 public:
  // Registers the families in `registry`, which must outlive this.
  explicit ResidentMetrics(prometheus::Registry& registry);

  ResidentMetrics(const ResidentMetrics&) = delete;
  ResidentMetrics& operator=(const ResidentMetrics&) = delete;

  // engram_resident_collections / engram_resident_collection_bytes: the
  // visible collections and the host bytes of their current versions.
  void SetCollections(uint64_t count, uint64_t bytes);
  // engram_resident_collection_tombstones: rows replaced or deleted in the
  // current versions, not yet compacted away.
  void SetTombstones(uint64_t rows);
  // engram_resident_compactions_total{outcome="done"|"failed"}: background
  // compactions (a commit landing first is neither: it is retried).
  void OnCompaction(bool done);
  // engram_resident_graphs / engram_resident_graph_bytes.
  void SetGraphs(uint64_t count, uint64_t bytes);
  // engram_resident_memory_budget_bytes{state="limit"|"reserved"}. Reserved
  // includes staged uploads and versions still held by running searches.
  void SetBudget(uint64_t limit_bytes, uint64_t reserved_bytes);
  // engram_resident_budget_refusals_total: uploads refused by the budget.
  void OnBudgetRefusal();
  // engram_resident_evictions_total{device}: copies dropped from a device
  // cache. Nothing here evicts yet; the GPU residency cache will call it.
  void OnEviction();

  // engram_search_batch_queries / engram_search_batch_requests: the size of
  // one executed pass, in queries and in calls coalesced.
  void OnBatch(uint64_t queries, uint64_t requests);
  // engram_search_queue_delay_seconds: from admission to the pass starting.
  void OnQueueDelay(double seconds);
  // engram_search_rejected_total{reason="queue_full"}.
  void OnQueueFull();
  // engram_search_cancelled_total: callers removed while waiting.
  void OnCancelled();

 private:
  prometheus::Gauge* collections_ = nullptr;
  prometheus::Gauge* collection_bytes_ = nullptr;
  prometheus::Gauge* tombstones_ = nullptr;
  prometheus::Counter* compactions_done_ = nullptr;
  prometheus::Counter* compactions_failed_ = nullptr;
  prometheus::Gauge* graphs_ = nullptr;
  prometheus::Gauge* graph_bytes_ = nullptr;
  prometheus::Gauge* budget_limit_ = nullptr;
  prometheus::Gauge* budget_reserved_ = nullptr;
  prometheus::Counter* budget_refusals_ = nullptr;
  prometheus::Counter* evictions_ = nullptr;
  prometheus::Histogram* batch_queries_ = nullptr;
  prometheus::Histogram* batch_requests_ = nullptr;
  prometheus::Histogram* queue_delay_ = nullptr;
  prometheus::Counter* queue_full_ = nullptr;
  prometheus::Counter* cancelled_ = nullptr;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_RESIDENT_METRICS_H_
