// ResidentData: the engine's resident collections and graphs in
// one sub-object, so that core::Engine's header stays about dispatch.
//
// It owns the shared MemoryBudget, the CollectionStore, the GraphStore (whose
// validator is the request path's own ValidateSpreadJob with the engine's
// limits), the ResidentMetrics, and one SearchBatcher per collection name,
// created on the first search of that name. The search pass itself and the
// worker threads are injected by the engine (Engine::SearchResident and
// Engine::Submit), so this file knows nothing of dispatch.
//
// Batchers outlive their collection's deletion only while calls still use
// them: a deleted name's batcher is retired and destroyed once nothing holds
// it and no call is pending (checked on later deletions and creations of
// batchers, and at destruction), so creating and deleting many names does
// not accumulate dispatcher threads.
//
// Durability: with ResidentOptions::data_dir set, a collections::DataDir is
// the stores' journal (every change a client makes is on disk before it is
// visible), and LoadDataDir() brings the directory's contents back at
// start-up, before the declarations file, whose entries then yield to a
// stored collection or graph of the same name (the stored one is what
// clients last wrote).
//
// Start-up loading: LoadDeclarationsFile() reads the declarations format
// (core/collections/declarations.h), loads every entry and logs one JSON
// line per entry; a missing or malformed file, or a failed entry, is logged
// and counted in engram_resident_load_failures_total{kind} and never stops
// the service.
//
// Thread-safety: all methods may be called concurrently; the stores and the
// batchers are thread-safe, and one mutex guards the batcher table.
#ifndef ENGRAM_CORE_RESIDENT_DATA_H_
#define ENGRAM_CORE_RESIDENT_DATA_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/collections/catalog.h"
#include "core/collections/collection_store.h"
#include "core/collections/data_dir.h"
#include "core/collections/declarations.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"
#include "core/collections/resident_metrics.h"
#include "core/collections/search_batcher.h"
#include "core/validation.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace engram::core {

// The resident part of Engine::Options.
struct ResidentOptions {
  // Host bytes resident collections and graphs may hold together
  // (--resident_memory_bytes).
  uint64_t memory_bytes = uint64_t{8} << 30;
  // Where collections and graphs that clients write are kept durably
  // (--data_dir); empty: in memory only, gone at exit.
  std::string data_dir;
  // Whether the data directory's segment files are mapped rather than read
  // where they allow it (--map_segments; DataDir::Options::map_segments).
  bool map_segments = true;
  // Shared mode (--catalog; needs data_dir): the catalog every replica on
  // the same data directory commits through (collections/catalog.h).
  std::shared_ptr<collections::Catalog> catalog;
  // Shared mode: how long to wait between attempts to list the catalog at
  // start-up, while it cannot be reached.
  absl::Duration catalog_retry = absl::Seconds(1);
  // How long a read that names a min_version waits for this replica to
  // load that version before it answers UNAVAILABLE (--min_version_wait).
  absl::Duration min_version_wait = absl::Seconds(2);
  // The share of a collection's rows its tombstones may reach before it is
  // compacted in the background (--compact_dead_share;
  // CollectionStore::Options::compact_dead_share).
  double compact_dead_share = 0.2;
  // Dynamic batching of SearchCollection (--batching, --batch_max_queries,
  // --batch_max_delay, --batch_max_pending, --batch_max_passes,
  // --batch_pass_linger); see search_batcher.h.
  bool batching = true;
  uint32_t batch_max_queries = 64;
  absl::Duration batch_max_delay = absl::Microseconds(200);
  uint32_t batch_max_pending = 1024;
  uint32_t batch_max_passes = 1;
  absl::Duration batch_pass_linger = absl::Milliseconds(2);
  // When a resident graph's CSR is rebuilt from its updates
  // (--graph_merge_share, --graph_merge_max_updates; GraphStore::Options).
  double graph_merge_share = 0.05;
  uint64_t graph_merge_max_updates = 4096;
};

class ResidentData {
 public:
  // `execute` runs one search pass and `run` hands a task to the workers
  // (both required, and must stay callable until this is destroyed).
  // `metrics` (required) and `device_cache` (optional: told of commits and
  // deletions, e.g. residency::DeviceResidency) are borrowed and must outlive
  // this; the engine owns them so that the device cache can report into the
  // metrics after the stores are gone. INVALID_ARGUMENT for options out of
  // range (checked by building a throw-away batcher's options and the
  // budget).
  static absl::StatusOr<std::unique_ptr<ResidentData>> Create(
      const ResidentOptions& options, const RequestLimits& limits,
      collections::BatchExecutor execute, collections::TaskRunner run,
      collections::ResidentMetrics* metrics,
      collections::CollectionObserver* device_cache,
      prometheus::Registry& registry);

  // Fails calls still waiting in batchers (UNAVAILABLE) and waits for the
  // passes in flight.
  ~ResidentData();

  collections::CollectionStore& collections() { return *collections_; }
  collections::GraphStore& graphs() { return *graphs_; }
  collections::MemoryBudget& budget() { return *budget_; }
  collections::ResidentMetrics& metrics() { return *metrics_; }
  const ResidentOptions& options() const { return options_; }

  // The batcher of collection `name`, created on first use. The caller keeps
  // the shared_ptr while it may call Search() or Cancel() on it.
  absl::StatusOr<std::shared_ptr<collections::SearchBatcher>> BatcherFor(
      absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);

  // What WhenAtLeast hands its callback.
  using CollectionCallback = std::function<void(
      absl::StatusOr<std::shared_ptr<const collections::Collection>>)>;

  // Read-your-writes across replicas: calls `done` with collection `name`
  // once this replica serves version `min_version` or later, or when `wait`
  // passes first with UNAVAILABLE naming both versions (NOT_FOUND when the
  // name is absent all along). At once, on this thread, when min_version is
  // 0 or already reached; otherwise on the waiting thread, which polls the
  // store and is woken by every change from the catalog. `done` must not
  // block. Pending waits are answered UNAVAILABLE at destruction.
  void WhenAtLeast(const std::string& name, uint64_t min_version,
                   absl::Duration wait, CollectionCallback done)
      ABSL_LOCKS_EXCLUDED(waiters_mu_);

  using GraphCallback = std::function<void(
      absl::StatusOr<std::shared_ptr<const collections::Graph>>)>;
  // WhenAtLeast for graph `name` (GraphStore::GetAtLeast).
  void WhenGraphAtLeast(const std::string& name, uint64_t min_version,
                        absl::Duration wait, GraphCallback done)
      ABSL_LOCKS_EXCLUDED(waiters_mu_);

  // CollectionStore::Delete, and retires the name's batcher.
  absl::Status DeleteCollection(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Loads what the data directory holds (see the file comment); empty
  // without one. Every outcome is logged and counted like a declaration's.
  // Shared mode: waits until the catalog can be listed (logging each failed
  // attempt), then follows it: every later change another replica commits
  // is applied here and logged (origin "catalog").
  std::vector<collections::LoadOutcome> LoadDataDir();
  // The data directory, or null.
  collections::DataDir* data_dir() { return data_dir_.get(); }

  // Loads the declarations file at `path` (see the file comment). Returns
  // the outcome of every entry; a file that cannot be read or parsed gives
  // its error instead (also logged and counted as kind "config").
  absl::StatusOr<std::vector<collections::LoadOutcome>> LoadDeclarationsFile(
      const std::string& path);

 private:
  ResidentData(const ResidentOptions& options,
               collections::BatchExecutor execute, collections::TaskRunner run)
      : options_(options), execute_(std::move(execute)), run_(std::move(run)) {}
  collections::SearchBatcher::Options BatcherOptions() const;
  // Destroys retired batchers nobody uses any more. Called without mu_
  // held for the destruction itself.
  void ReapRetired() ABSL_LOCKS_EXCLUDED(mu_);
  // Logs and counts one start-up load.
  void Report(const collections::LoadOutcome& outcome, const char* origin);
  // Reports a change applied from the catalog; retires an evicted
  // collection's batcher.
  void OnCatalogChange(const collections::LoadOutcome& outcome)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets `name`'s batcher once no call uses it.
  void RetireBatcher(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_);

  const ResidentOptions options_;
  const collections::BatchExecutor execute_;
  const collections::TaskRunner run_;
  collections::ResidentMetrics* metrics_ = nullptr;
  std::shared_ptr<collections::MemoryBudget> budget_;
  // The stores' journal: declared before them, so it outlives them.
  std::unique_ptr<collections::DataDir> data_dir_;
  std::unique_ptr<collections::CollectionStore> collections_;
  std::unique_ptr<collections::GraphStore> graphs_;
  prometheus::Counter* load_failures_collection_ = nullptr;
  prometheus::Counter* load_failures_graph_ = nullptr;
  prometheus::Counter* load_failures_config_ = nullptr;
  prometheus::Counter* loaded_collection_ = nullptr;
  prometheus::Counter* loaded_graph_ = nullptr;

  // A read waiting for a version this replica does not hold yet.
  struct VersionWaiter {
    absl::Time deadline;
    // Reads the store again and answers the call when the version has
    // arrived, the read failed for another reason, or `last` (the deadline
    // passed); returns whether it answered.
    std::function<bool(bool last)> poll;
    // Answers the call UNAVAILABLE: the server is shutting down.
    std::function<void()> cancel;
  };
  // What WhenAtLeast and WhenGraphAtLeast share: `look` reads the store.
  template <typename T>
  void Await(std::function<absl::StatusOr<T>()> look, uint64_t min_version,
             absl::Duration wait, std::function<void(absl::StatusOr<T>)> done)
      ABSL_LOCKS_EXCLUDED(waiters_mu_);
  // The waiting thread of Await, started by its first wait.
  void RunWaiters() ABSL_LOCKS_EXCLUDED(waiters_mu_);
  void WakeWaiters() ABSL_LOCKS_EXCLUDED(waiters_mu_);

  absl::Mutex waiters_mu_;
  std::vector<VersionWaiter> waiters_ ABSL_GUARDED_BY(waiters_mu_);
  bool waiters_changed_ ABSL_GUARDED_BY(waiters_mu_) = false;
  bool waiters_stop_ ABSL_GUARDED_BY(waiters_mu_) = false;
  std::thread waiter_thread_ ABSL_GUARDED_BY(waiters_mu_);

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<collections::SearchBatcher>,
           std::less<>>
      batchers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<collections::SearchBatcher>> retired_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_RESIDENT_DATA_H_
