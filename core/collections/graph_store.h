// GraphStore: named CSR graphs held resident in host memory, so that a
// spreading request can name a graph instead of sending it.
//
// A graph is put whole by a staged upload: BeginPut() reserves the budget
// for num_nodes and num_edges (RESOURCE_EXHAUSTED before anything is
// allocated) and claims the name (ALREADY_EXISTS); the row offsets and the
// edges arrive in chunks, in order; Commit() validates the complete graph
// and makes it visible atomically. Abort, a failed Commit or destroying the
// upload leaves nothing visible and gives the budget and the name back.
// A graph is replaced whole by Delete + put, or changed by Update(): nodes
// added and edges removed, re-weighted and added, as one new version
// (graph_changes.h has the order they apply in). Every put and every update
// gets a version larger than every earlier one's (see Graph::version), so
// that a reader can ask for a write it knows of (GetAtLeast) and tell a
// replaced graph from its successor. Each version is an immutable Graph;
// readers hold std::shared_ptr<const Graph> snapshots, so neither Delete
// nor Update changes anything under a running spread.
//
// Changed graphs: a version is a compact CSR (GraphCsr), shared by every
// version edited from it, plus GraphChanges, the lists of the nodes whose
// edges changed since (the overlay of kernels/graph_overlay.h, which the
// kernels read directly). An update copies only the overlay's pages it
// touches. Once the replaced lists pass Options::merge_share of the graph,
// or Options::merge_max_updates updates were made since the CSR was built,
// a background merge rebuilds the CSR off every lock and publishes the
// same version, physically compact; edits made while it ran are carried
// over onto the new CSR. Spreads and updates are never blocked by it.
//
// Idempotency and optimistic concurrency, as for collection uploads: an
// update with an idempotency key the graph already committed (its last
// kMaxCommittedKeys keyed updates) applies nothing and answers the current
// version as replayed; an update with an expected_version answers ABORTED
// when the graph's version differs.
//
// Validation is the request path's own (core::ValidateSpreadJob over the
// graph, with no seeds and default parameters), injected as a GraphValidator
// so that this library, which engram::core links, does not link back to
// engram::core. The production binding is
//
//   [limits](const kernels::GraphView& g) {
//     dispatch::SpreadJob job;
//     job.graph = g;
//     return core::ValidateSpreadJob(job, limits);
//   }
//
// so a stored graph passes exactly the checks an inline one does (offsets,
// target ids, weights, and the max_nodes / max_edges limits); the size an
// update brings a graph to is checked by core::ValidateGraphSize with the
// same limits (Options::validate_size).
//
// Durability seam: a GraphJournal (the data directory, data_dir.h) stores a
// put graph before it becomes visible, an update before its version does,
// and removes a graph before a delete does; a failure there changes nothing
// visible. A merge is journaled too, so that the journal can drop the
// edits it folded in, but a merge the journal refuses is still published
// (it changes no content). A graph loaded from a file, or an update applied
// from elsewhere (GraphUpdateOptions::version), is not journaled. A graph
// whose stored copy cannot be read is held as lost (MarkLost) until it is
// deleted.
//
// Thread-safety: GraphStore's methods may be called concurrently (one mutex
// over the name table, never held while data is copied, validated or
// journaled; deletes, updates and merges' publications are serialised by a
// second mutex, taken first, which is held while an update is journaled).
// Graph is immutable. A GraphUpload is used by one thread at a time; the
// store must outlive its uploads and its merge thread stops in the
// destructor.
#ifndef ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_
#define ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_

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
#include "absl/types/span.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_changes.h"
#include "core/collections/memory_budget.h"
#include "core/collections/resident_metrics.h"
#include "kernels/graph_overlay.h"
#include "kernels/large_buffer.h"
#include "kernels/types.h"

namespace engram::collections {

// Checks a complete graph; INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a
// size limit) naming the field, as core::ValidateSpreadJob does.
using GraphValidator = std::function<absl::Status(const kernels::GraphView&)>;
// Checks the size an update brings a graph to against the limits a put
// meets (RESOURCE_EXHAUSTED naming the limit), as core::ValidateGraphSize
// does.
using GraphSizeValidator =
    std::function<absl::Status(uint64_t num_nodes, uint64_t num_edges)>;

// A compact CSR graph's storage: what a put stores and a merge rebuilds,
// shared by every version edited from it. Immutable once a Graph holds it.
struct GraphCsr {
  kernels::LargeBuffer<uint32_t> row_offsets;
  kernels::LargeBuffer<uint32_t> targets;
  kernels::LargeBuffer<float> weights;
  kernels::GraphView view;  // of the three arrays
  Reservation reservation;
};

// One version of a resident graph. Immutable.
class Graph {
 public:
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }
  // Process-wide unique identity of the put (NewResidentId()), kept by its
  // updates and merges.
  uint64_t uid() const { return uid_; }
  // Larger than the version of every graph put or updated before it in
  // this store, whatever its name, so a graph put again after a delete has
  // a larger version than the one it replaces, and an update a larger one
  // than every earlier write. Where it comes from: the journal's commit
  // (shared mode: the catalog revision of the put or update, the same on
  // every replica; the data directory alone: the store's counter, kept in
  // the graph's file and edit log), or the store's counter when nothing is
  // journaled. A merge keeps it: the content is the same.
  uint64_t version() const { return version_; }
  uint32_t num_nodes() const {
    return changes_ != nullptr ? changes_->num_nodes() : csr_->view.num_nodes;
  }
  uint64_t num_edges() const {
    return changes_ != nullptr ? changes_->num_edges() : csr_->view.num_edges();
  }
  // The compact CSR the changes apply to; the whole graph when overlay()
  // is null. Borrows the graph's arrays: valid while this Graph is alive.
  const kernels::GraphView& base() const { return csr_->view; }
  // The changes since base() was built, for the kernels to read through
  // (kernels/graph_overlay.h); null when there are none.
  const kernels::GraphOverlay* overlay() const {
    return changes_ != nullptr ? &changes_->overlay() : nullptr;
  }
  // Edges removed, re-weighted and added since base() was built.
  uint64_t pending_changes() const {
    return changes_ != nullptr ? changes_->pending_changes() : 0;
  }
  // The version whose content base() holds.
  uint64_t base_version() const { return base_version_; }
  // Host bytes: the CSR and the changes.
  uint64_t bytes() const {
    return csr_->reservation.bytes() +
           (changes_ != nullptr ? changes_->bytes() : 0);
  }
  // "upload", or the file the graph was loaded from.
  const std::string& source() const { return source_; }
  // The keys of the last kMaxCommittedKeys keyed updates, oldest first.
  const std::vector<CommittedKey>& committed_keys() const {
    return *committed_keys_;
  }
  bool Committed(absl::string_view key) const;

 private:
  friend class GraphStore;
  friend class GraphUpload;
  Graph() = default;
  const GraphChanges* changes() const { return changes_.get(); }

  std::string name_;
  uint64_t uid_ = 0;
  uint64_t version_ = 0;
  uint64_t base_version_ = 0;
  std::string source_;
  std::shared_ptr<const GraphCsr> csr_;
  std::shared_ptr<const GraphChanges> changes_;
  std::shared_ptr<const std::vector<CommittedKey>> committed_keys_ =
      std::make_shared<const std::vector<CommittedKey>>();
};

struct GraphInfo {
  std::string name;
  uint32_t num_nodes = 0;
  uint64_t num_edges = 0;
  uint64_t bytes = 0;
  uint64_t uid = 0;
  uint64_t version = 0;
  uint64_t pending_changes = 0;
  std::string residency = "host";
  // "ready", or "lost" when its stored copy could not be read (`error`).
  std::string load_state = "ready";
  std::string source;
  std::string error;
};

// What Describe and List report of one graph version.
GraphInfo DescribeVersion(const Graph& graph);

struct GraphPutOptions {
  std::string name;
  uint32_t num_nodes = 0;  // >= 1
  uint64_t num_edges = 0;  // <= kMaxGraphEdges
  // Recorded as Graph::source(); empty means "upload".
  std::string source;
  // Whether the journal stores the graph: false for a graph loaded from a
  // file (the data directory's own, or an operator's).
  bool durable = true;
  // The version to publish the graph under: the one it was committed with,
  // for a graph loaded from the data directory or the catalog. 0: the next
  // of the store's counter (or the journal's choice, when durable).
  uint64_t version = 0;
  // A graph loaded with its edits still to replay: the keys it had
  // committed as of `version`.
  std::vector<CommittedKey> restored_keys = {};
};

struct GraphUpdateOptions {
  // Optional, 1 to 128 printable ASCII characters (checked by the caller,
  // core::ValidateIdempotencyKey): an update whose key the graph already
  // committed applies nothing (GraphUpdateResult::replayed).
  std::string idempotency_key = {};
  // > 0: ABORTED unless the graph is at this version.
  uint64_t expected_version = 0;
  // An update committed elsewhere (the data directory's edit log at
  // start-up, another replica through the catalog): the version it was
  // committed with, larger than the graph's; the journal is not told. 0: a
  // client's update, numbered by the store or the journal.
  uint64_t version = 0;
};

struct GraphUpdateResult {
  // The version committed, or the current one when replayed or when the
  // update changed nothing.
  std::shared_ptr<const Graph> graph;
  GraphEditCounts counts;
  bool replayed = false;
};

// Stores graphs before they become visible (see the file comment). Commit
// runs on the committing thread with no store lock held (the name is
// reserved, so no other put or delete of it can run); Delete, CommitEdit
// and CommitMerge under the store's write mutex, so one graph's are never
// concurrent; WriteMerge and DiscardMerge with no store lock held.
// Implementations must be thread-safe.
class GraphJournal {
 public:
  virtual ~GraphJournal() = default;
  // Returns the version the graph was stored under: graph.version() (the
  // store's counter), or one the journal chose that is larger than every
  // version it returned before (the shared catalog's revision).
  virtual absl::StatusOr<uint64_t> Commit(const Graph& graph) = 0;
  // OK when nothing is stored under `name`.
  virtual absl::Status Delete(absl::string_view name) = 0;
  // Stores `edit`, made to `previous` and giving `next` (its version the
  // store's counter), with its idempotency key (may be empty). Returns the
  // version it was stored under, as Commit does. ABORTED when the stored
  // graph has moved past `previous` (shared mode: another replica).
  virtual absl::StatusOr<uint64_t> CommitEdit(const Graph& previous,
                                              const Graph& next,
                                              const GraphEdit& edit,
                                              absl::string_view key) = 0;
  // A merge in two steps, as an upload's rows and commit: WriteMerge
  // stores `merged` (compact: overlay() is null) aside and returns a
  // handle; CommitMerge makes it the stored graph's base, where `current`
  // is the version now served (merged.version() or later; its edits past
  // merged.version() stay journaled); DiscardMerge drops what WriteMerge
  // wrote (a handle CommitMerge refused is discarded by it).
  virtual absl::StatusOr<std::string> WriteMerge(const Graph& merged) = 0;
  virtual absl::Status CommitMerge(const Graph& merged, const Graph& current,
                                   const std::string& handle) = 0;
  virtual void DiscardMerge(const std::string& handle) = 0;
};

class GraphStore;

// A staged put. Not thread-safe; destroying it without Commit aborts it.
class GraphUpload {
 public:
  GraphUpload(const GraphUpload&) = delete;
  GraphUpload& operator=(const GraphUpload&) = delete;
  ~GraphUpload();

  // The next row_offsets entries (num_nodes + 1 in all). INVALID_ARGUMENT
  // when more arrive than declared; FAILED_PRECONDITION once finished.
  absl::Status AppendRowOffsets(absl::Span<const uint32_t> offsets);
  // The next edges: targets and weights of equal length (num_edges in all).
  absl::Status AppendEdges(absl::Span<const uint32_t> targets,
                           absl::Span<const float> weights);

  // Validates the complete graph and makes it visible. The upload is
  // finished whatever the outcome; on error nothing becomes visible.
  // FAILED_PRECONDITION when offsets or edges are missing; the validator's
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for a bad graph.
  absl::StatusOr<std::shared_ptr<const Graph>> Commit();

  // Discards everything; idempotent; a no-op after Commit.
  void Abort();

  const std::string& name() const { return options_.name; }

 private:
  friend class GraphStore;
  GraphUpload(GraphStore* store, const GraphPutOptions& options)
      : store_(store), options_(options) {}

  GraphStore* const store_;
  const GraphPutOptions options_;
  bool finished_ = false;
  uint64_t offsets_received_ = 0;
  uint64_t edges_received_ = 0;
  std::unique_ptr<GraphCsr> staged_;
};

class GraphStore {
 public:
  struct Options {
    // Shared with the CollectionStore; required.
    std::shared_ptr<MemoryBudget> budget;
    // Required: see the file comment for the production binding.
    GraphValidator validate;
    // Borrowed; may be null.
    ResidentMetrics* metrics = nullptr;
    // Borrowed; may be null (nothing is durable).
    GraphJournal* journal = nullptr;
    // Optional: the limits an update must keep a graph within (see the
    // file comment for the production binding); null: only the uint32
    // CSR's.
    GraphSizeValidator validate_size;
    // A graph's CSR is rebuilt in the background once the lists its
    // changes replace hold more than this share of its edges (nodes added
    // and lists replaced count as one edge each). In (0, 1].
    double merge_share = 0.05;
    // ... or once this many updates were made since it was built (>= 1):
    // what the journal keeps of them until a merge (the edit log, the
    // catalog entry's list of update files in shared mode) stays bounded.
    uint64_t merge_max_updates = 4096;
    // false: no merge thread; graphs merge only when Merge() is called.
    bool background_merge = true;
  };

  // INVALID_ARGUMENT without a budget or a validator, or for merge_share
  // or merge_max_updates out of range.
  static absl::StatusOr<std::unique_ptr<GraphStore>> Create(
      const Options& options);

  // Stops the merge thread (a merge under way finishes first).
  ~GraphStore() ABSL_LOCKS_EXCLUDED(merge_mu_);

  // Starts a staged put. INVALID_ARGUMENT for a bad name or num_nodes 0;
  // ALREADY_EXISTS when the name is taken or being put; RESOURCE_EXHAUSTED
  // from the budget or for num_edges over kMaxGraphEdges. Nothing is
  // reserved, allocated or made visible on error.
  absl::StatusOr<std::unique_ptr<GraphUpload>> BeginPut(
      const GraphPutOptions& options) ABSL_LOCKS_EXCLUDED(mu_);

  // Puts a whole graph held in memory: BeginPut, one chunk each, Commit.
  absl::StatusOr<std::shared_ptr<const Graph>> Put(
      absl::string_view name, const kernels::GraphView& graph,
      absl::string_view source = "") ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status Delete(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_);
  // Delete without telling the journal: the name was deleted or replaced
  // elsewhere (another replica, through the shared catalog).
  absl::Status Evict(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_);

  // Applies `edit` to graph `name` as one new version (see the file
  // comment and graph_changes.h), published once the journal has it.
  // NOT_FOUND for an unknown name (a lost one answers its DATA_LOSS);
  // ABORTED for an expected_version the graph is not at, or from the
  // journal; INVALID_ARGUMENT / RESOURCE_EXHAUSTED from ValidateGraphEdit,
  // the size validator and the budget; the journal's errors. An update
  // that changes nothing (no node added, no edge removed, re-weighted or
  // added) commits nothing and answers the current version. Nothing is
  // visible on error.
  absl::StatusOr<GraphUpdateResult> Update(absl::string_view name,
                                           const GraphEdit& edit,
                                           const GraphUpdateOptions& options)
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_, merge_mu_);

  // Rebuilds graph `name`'s CSR now, as the background merge does, on the
  // calling thread; returns whether there was anything to merge. NOT_FOUND
  // for an unknown name; RESOURCE_EXHAUSTED when the budget cannot hold a
  // second CSR meanwhile (nothing changes then).
  absl::StatusOr<bool> Merge(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(merge_run_mu_, write_mu_, mu_, merge_mu_);
  // Merges published since start-up, by Merge() or the merge thread.
  uint64_t merges_completed() const ABSL_LOCKS_EXCLUDED(merge_mu_);
  // Holds `name` as lost (see CollectionStore::MarkLost).
  absl::Status MarkLost(const std::string& name, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::shared_ptr<const Graph>> Get(absl::string_view name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Get, once the graph's version is at least `min_version` (0: any):
  // UNAVAILABLE naming both versions while this store holds an older one,
  // NOT_FOUND while it holds none (a put another replica committed may not
  // have arrived yet). Does not wait: ResidentData retries as changes
  // arrive.
  absl::StatusOr<std::shared_ptr<const Graph>> GetAtLeast(
      absl::string_view name, uint64_t min_version) const
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<GraphInfo> Describe(absl::string_view name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<GraphInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class GraphUpload;
  explicit GraphStore(const Options& options) : options_(options) {}
  absl::StatusOr<std::shared_ptr<const Graph>> Publish(GraphUpload* upload)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Unstage(const GraphUpload& upload) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Remove(absl::string_view name, bool journaled)
      ABSL_LOCKS_EXCLUDED(write_mu_, mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `graph`'s changes have passed merge_share or
  // merge_max_updates.
  bool WantsMerge(const Graph& graph) const;
  // Queues `name` for the merge thread.
  void RequestMerge(const std::string& name) ABSL_LOCKS_EXCLUDED(merge_mu_);
  bool MergeWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(merge_mu_);
  void RunMerges() ABSL_LOCKS_EXCLUDED(merge_mu_);

  // A merge under way: the version it rebuilds, and what changed since.
  struct MergeState {
    uint64_t uid = 0;
    uint64_t version = 0;
    // Sources whose lists updates rewrote after `version`, and what those
    // updates changed.
    std::vector<uint32_t> touched;
    uint64_t pending_changes = 0;
    uint64_t edits = 0;
  };

  const Options options_;
  // Merges, one at a time (Merge() and the merge thread).
  absl::Mutex merge_run_mu_ ABSL_ACQUIRED_BEFORE(write_mu_);
  // Deletes, updates and the publication of merges, one at a time.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<std::string, MergeState, std::less<>> merging_
      ABSL_GUARDED_BY(write_mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Graph>, std::less<>> graphs_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status, std::less<>> lost_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int, std::less<>> putting_ ABSL_GUARDED_BY(mu_);
  // The largest version published or handed out so far.
  uint64_t last_version_ ABSL_GUARDED_BY(mu_) = 0;

  // The merge thread's queue.
  mutable absl::Mutex merge_mu_;
  std::vector<std::string> merge_queue_ ABSL_GUARDED_BY(merge_mu_);
  bool merge_stop_ ABSL_GUARDED_BY(merge_mu_) = false;
  uint64_t merges_completed_ ABSL_GUARDED_BY(merge_mu_) = 0;
  std::thread merge_thread_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_
