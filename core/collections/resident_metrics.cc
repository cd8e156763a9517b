#include "core/collections/resident_metrics.h"

namespace engram::collections {
namespace {

prometheus::Gauge* Gauge(prometheus::Registry& registry, const char* name,
                         const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
      {});
}

prometheus::Counter* Counter(prometheus::Registry& registry, const char* name,
                             const char* help,
                             const prometheus::Labels& labels) {
  return &prometheus::BuildCounter()
              .Name(name)
              .Help(help)
              .Register(registry)
              .Add(labels);
}

// Powers of two up to 4096: a pass holds at most max_batch_queries queries,
// and the interesting question is whether batches form at all (1) or fill.
prometheus::Histogram::BucketBoundaries SizeBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1; v <= 4096; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

ResidentMetrics::ResidentMetrics(prometheus::Registry& registry) {
  collections_ = Gauge(registry, "engram_resident_collections",
                       "Resident vector collections visible to searches.");
  collection_bytes_ =
      Gauge(registry, "engram_resident_collection_bytes",
            "Host bytes of the current versions of the resident collections "
            "(vectors, norms, ids).");
  tombstones_ =
      Gauge(registry, "engram_resident_collection_tombstones",
            "Rows replaced or deleted in the current versions of the resident "
            "collections, masked out of searches until compacted away.");
  auto& compactions =
      prometheus::BuildCounter()
          .Name("engram_resident_compactions_total")
          .Help("Background compactions of resident collections, by outcome.")
          .Register(registry);
  compactions_done_ = &compactions.Add({{"outcome", "done"}});
  compactions_failed_ = &compactions.Add({{"outcome", "failed"}});
  graphs_ = Gauge(registry, "engram_resident_graphs",
                  "Resident graphs visible to spreading requests.");
  graph_bytes_ = Gauge(registry, "engram_resident_graph_bytes",
                       "Host bytes of the resident graphs.");
  auto& budget =
      prometheus::BuildGauge()
          .Name("engram_resident_memory_budget_bytes")
          .Help(
              "The host memory budget of resident data: its limit, and the "
              "bytes reserved (visible data, staged uploads and versions "
              "still held by running requests).")
          .Register(registry);
  budget_limit_ = &budget.Add({{"state", "limit"}});
  budget_reserved_ = &budget.Add({{"state", "reserved"}});
  budget_refusals_ =
      Counter(registry, "engram_resident_budget_refusals_total",
              "Uploads and loads refused because they would exceed the "
              "memory budget.",
              {});
  evictions_ = Counter(registry, "engram_resident_evictions_total",
                       "Device copies of resident data evicted (least "
                       "recently used first); the host copy is never evicted.",
                       {{"device", "gpu"}});
  auto& queries = prometheus::BuildHistogram()
                      .Name("engram_search_batch_queries")
                      .Help("Queries in one executed search pass.")
                      .Register(registry);
  batch_queries_ = &queries.Add({}, SizeBuckets());
  auto& requests = prometheus::BuildHistogram()
                       .Name("engram_search_batch_requests")
                       .Help("Search calls coalesced into one executed pass.")
                       .Register(registry);
  batch_requests_ = &requests.Add({}, SizeBuckets());
  // From 1 us (a pass that starts at once) to 100 ms (a saturated queue);
  // the configured delay bound is a few hundred microseconds.
  auto& delay = prometheus::BuildHistogram()
                    .Name("engram_search_queue_delay_seconds")
                    .Help(
                        "Time a search call waited from admission until its "
                        "pass started.")
                    .Register(registry);
  queue_delay_ =
      &delay.Add({}, prometheus::Histogram::BucketBoundaries{
                         1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 3e-4, 5e-4,
                         1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1});
  queue_full_ = Counter(registry, "engram_search_rejected_total",
                        "Search calls refused at admission, by reason.",
                        {{"reason", "queue_full"}});
  cancelled_ = Counter(
      registry, "engram_search_cancelled_total",
      "Search calls cancelled while waiting, before their pass ran.", {});
}

void ResidentMetrics::SetCollections(uint64_t count, uint64_t bytes) {
  collections_->Set(static_cast<double>(count));
  collection_bytes_->Set(static_cast<double>(bytes));
}

void ResidentMetrics::SetTombstones(uint64_t rows) {
  tombstones_->Set(static_cast<double>(rows));
}

void ResidentMetrics::OnCompaction(bool done) {
  (done ? compactions_done_ : compactions_failed_)->Increment();
}

void ResidentMetrics::SetGraphs(uint64_t count, uint64_t bytes) {
  graphs_->Set(static_cast<double>(count));
  graph_bytes_->Set(static_cast<double>(bytes));
}

void ResidentMetrics::SetBudget(uint64_t limit_bytes, uint64_t reserved_bytes) {
  budget_limit_->Set(static_cast<double>(limit_bytes));
  budget_reserved_->Set(static_cast<double>(reserved_bytes));
}

void ResidentMetrics::OnBudgetRefusal() { budget_refusals_->Increment(); }
void ResidentMetrics::OnEviction() { evictions_->Increment(); }

void ResidentMetrics::OnBatch(uint64_t queries, uint64_t requests) {
  batch_queries_->Observe(static_cast<double>(queries));
  batch_requests_->Observe(static_cast<double>(requests));
}

void ResidentMetrics::OnQueueDelay(double seconds) {
  queue_delay_->Observe(seconds);
}

void ResidentMetrics::OnQueueFull() { queue_full_->Increment(); }
void ResidentMetrics::OnCancelled() { cancelled_->Increment(); }

}  // namespace engram::collections
