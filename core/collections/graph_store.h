// GraphStore: named CSR graphs held resident in host memory, so that a
// spreading request can name a graph instead of sending it.
//
// A graph is put whole by a staged upload: BeginPut() reserves the budget
// for num_nodes and num_edges (RESOURCE_EXHAUSTED before anything is
// allocated) and claims the name (ALREADY_EXISTS); the row offsets and the
// edges arrive in chunks, in order; Commit() validates the complete graph
// and makes it visible atomically. Abort, a failed Commit or destroying the
// upload leaves nothing visible and gives the budget and the name back.
// Graphs are immutable once visible (a graph is replaced by Delete + put);
// each put gets a version larger than every earlier put's (see
// Graph::version), so that a reader can ask for a put it knows of
// (GetAtLeast) and tell a replaced graph from its successor. Readers hold
// std::shared_ptr<const Graph> snapshots, so Delete never pulls a graph from
// under a running spread.
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
// target ids, weights, and the max_nodes / max_edges limits).
//
// Durability seam: a GraphJournal (the data directory, data_dir.h) stores a
// put graph before it becomes visible and removes it before a delete does;
// a failure there changes nothing visible. A graph loaded from a file is not
// journaled (GraphPutOptions::durable). A graph whose stored copy cannot be
// read is held as lost (MarkLost) until it is deleted.
//
// Thread-safety: GraphStore's methods may be called concurrently (one mutex
// over the name table, never held while data is copied, validated or
// journaled; deletes are serialised by a second mutex, taken first). Graph
// is immutable. A GraphUpload is used by one thread at a time; the store
// must outlive its uploads.
#ifndef ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_
#define ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/collections/memory_budget.h"
#include "core/collections/resident_metrics.h"
#include "kernels/large_buffer.h"
#include "kernels/types.h"

namespace engram::collections {

// Checks a complete graph; INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a
// size limit) naming the field, as core::ValidateSpreadJob does.
using GraphValidator = std::function<absl::Status(const kernels::GraphView&)>;

// CSR indices are uint32 (kernels::GraphView).
inline constexpr uint64_t kMaxGraphEdges = 0xffffffffu;

// One resident graph. Immutable.
class Graph {
 public:
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }
  // Process-wide unique identity (NewResidentId()), for a device cache.
  uint64_t uid() const { return uid_; }
  // Larger than the version of every graph put before it in this store,
  // whatever its name, so a graph put again after a delete has a larger
  // version than the one it replaces. Where it comes from: the journal's
  // commit (shared mode: the catalog revision of the put, the same on every
  // replica; the data directory alone: the store's counter, kept in the
  // graph's file), or the store's counter when nothing is journaled.
  uint64_t version() const { return version_; }
  uint32_t num_nodes() const { return view_.num_nodes; }
  uint64_t num_edges() const { return view_.num_edges(); }
  // Borrows the graph's arrays: valid while this Graph is alive.
  const kernels::GraphView& view() const { return view_; }
  uint64_t bytes() const { return reservation_.bytes(); }
  // "upload", or the file the graph was loaded from.
  const std::string& source() const { return source_; }

 private:
  friend class GraphStore;
  friend class GraphUpload;
  Graph() = default;

  std::string name_;
  uint64_t uid_ = 0;
  uint64_t version_ = 0;
  std::string source_;
  kernels::LargeBuffer<uint32_t> row_offsets_;
  kernels::LargeBuffer<uint32_t> targets_;
  kernels::LargeBuffer<float> weights_;
  kernels::GraphView view_;
  Reservation reservation_;
};

struct GraphInfo {
  std::string name;
  uint32_t num_nodes = 0;
  uint64_t num_edges = 0;
  uint64_t bytes = 0;
  uint64_t uid = 0;
  uint64_t version = 0;
  std::string residency = "host";
  // "ready", or "lost" when its stored copy could not be read (`error`).
  std::string load_state = "ready";
  std::string source;
  std::string error;
};

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
};

// Stores graphs before they become visible (see the file comment). Commit
// runs on the committing thread with no store lock held (the name is
// reserved, so no other put or delete of it can run); Delete under the
// store's delete mutex. Implementations must be thread-safe.
class GraphJournal {
 public:
  virtual ~GraphJournal() = default;
  // Returns the version the graph was stored under: graph.version() (the
  // store's counter), or one the journal chose that is larger than every
  // version it returned before (the shared catalog's revision).
  virtual absl::StatusOr<uint64_t> Commit(const Graph& graph) = 0;
  // OK when nothing is stored under `name`.
  virtual absl::Status Delete(absl::string_view name) = 0;
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
  std::unique_ptr<Graph> staged_;
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
  };

  // INVALID_ARGUMENT without a budget or a validator.
  static absl::StatusOr<std::unique_ptr<GraphStore>> Create(
      const Options& options);

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
      ABSL_LOCKS_EXCLUDED(delete_mu_, mu_);
  // Delete without telling the journal: the name was deleted or replaced
  // elsewhere (another replica, through the shared catalog).
  absl::Status Evict(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(delete_mu_, mu_);
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
      ABSL_LOCKS_EXCLUDED(delete_mu_, mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  absl::Mutex delete_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Graph>, std::less<>> graphs_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status, std::less<>> lost_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int, std::less<>> putting_ ABSL_GUARDED_BY(mu_);
  // The largest version published or handed out so far.
  uint64_t last_version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_GRAPH_STORE_H_
