// SearchBatcher: dynamic batching of top-k searches against resident
// collections. Concurrent calls on the same collection version are coalesced
// into one batch, up to max_batch_queries queries or until the oldest has
// waited max_queue_delay, and the batch is executed as ONE multi-query pass
// (the collection is read once for all of them: the blocked kernel on the
// CPU, one GEMM on the GPU); each caller then gets exactly its own lists.
//
// The pass itself is injected (BatchExecutor). In production it is the
// engine: SearchSegments() below with a SegmentSearch that builds a
// dispatch::CosineJob {queries = the batch's concatenated queries, targets =
// the segment's rows, top_k = the batch's largest k, min_score = the batch's
// lowest (none if any caller has none), placement} and calls
// core::Engine::Cosine. MakeKernelExecutor() runs the CPU kernels directly,
// for tests and benchmarks.
//
// Pass slots: at most max_concurrent_passes batched passes run at once.
// While they are all busy, arriving calls keep joining the forming batch
// (up to max_batch_queries) instead of starting passes of their own; the
// delay bound only decides how long a batch waits for company while a slot
// is free. Without the bound every call arriving during a long pass would
// start its own nearly empty pass after the delay, and under load the
// passes would compete for the memory they were meant to share. When a pass
// ends, the batch due next lingers briefly (max_pass_linger) so the callers
// that pass answered can join it with their next calls.
//
// Threading: one dispatcher thread per batcher decides when a batch is due
// (full, or its oldest call's delay is up, and a pass slot free) and hands
// it to the injected
// TaskRunner (in production core::Engine::Submit, so the pass runs on the
// engine's workers); without a runner the pass runs on the dispatcher
// thread. The dispatcher never computes and never blocks on a pass when a
// runner is given. Search() never blocks: it validates, enqueues and
// returns. Completion callbacks run on the thread that ran the pass (or,
// for Cancel, on the canceller's thread), never under the batcher's lock;
// they may run before Search() returns, must be quick (hand the result to
// the gRPC reactor) and must not call back into the batcher synchronously
// except Cancel() of another ticket.
//
// Batching off (enabled = false, or max_batch_queries = 1): every call is
// its own pass, handed to the runner directly from Search() (through the
// dispatcher when there is no runner) without waiting for a pass slot, so a
// benchmark can compare both.
//
// Admission: at most max_pending_requests calls may be admitted and not yet
// completed (waiting or in a running pass); beyond that Search() returns
// RESOURCE_EXHAUSTED at once, before anything is queued. Calls are never
// split across passes; a call with max_batch_queries queries or more runs
// alone. Calls on different versions of a collection (an append landed in
// between) or with different placements never share a pass.
//
// Thread-safety: all methods may be called concurrently. One mutex guards
// the queues and counters; it is held only for queue bookkeeping.
#ifndef ENGRAM_CORE_COLLECTIONS_SEARCH_BATCHER_H_
#define ENGRAM_CORE_COLLECTIONS_SEARCH_BATCHER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/collections/collection_store.h"
#include "core/collections/resident_metrics.h"
#include "core/collections/row_selection.h"
#include "core/dispatch/jobs.h"
#include "kernels/thread_pool.h"
#include "kernels/types.h"

namespace engram::collections {

// One search call.
struct SearchRequest {
  // The version to search, from CollectionStore::Get(); held until the call
  // completes, so a concurrent Delete or append does not affect it.
  std::shared_ptr<const Collection> collection;
  // Q x dimension, borrowed: the caller keeps it alive until its callback
  // has run (the gRPC request message does).
  kernels::MatrixView queries;
  uint32_t top_k = 10;  // >= 1
  std::optional<float> min_score;
  dispatch::Placement placement = dispatch::Placement::kAuto;
  // The rows the call may return (its filter and the version's live rows,
  // row_filter.h SelectRows); null: every row. Calls share a pass only
  // with calls holding the same selection (the version's live rows, for
  // calls without a filter).
  std::shared_ptr<const RowSelection> rows;
};

struct SearchHit {
  uint64_t id = 0;   // the stored id (Collection::IdOf)
  uint32_t row = 0;  // the row in the collection version searched
  float score = 0;
};

struct SearchResult {
  // One list per query of the call, best first (kernels::BetterThan), at
  // most top_k entries, none below min_score.
  std::vector<std::vector<SearchHit>> top;
  // Of the pass the call ran in (shared with the other calls in it).
  dispatch::ExecutionReport report;
  uint32_t batch_queries = 0;
  uint32_t batch_requests = 0;
  // From admission to the start of the pass.
  double queue_seconds = 0;
};

// Called exactly once per admitted call: the result, the pass's error,
// CANCELLED (Cancel) or UNAVAILABLE (the batcher shut down first).
using SearchCallback = absl::AnyInvocable<void(absl::StatusOr<SearchResult>)>;

// What one pass computes: for every row of `queries`, the best `top_k` rows
// of `collection` that `mask` admits with score >= min_score (when set),
// best first, indices numbered in the whole collection version.
struct BatchPass {
  const Collection* collection = nullptr;
  kernels::MatrixView queries;
  uint32_t top_k = 0;
  std::optional<float> min_score;
  dispatch::Placement placement = dispatch::Placement::kAuto;
  // Over the whole version's rows; all rows when its words are null.
  kernels::RowMask mask;
};

struct BatchPassOutput {
  std::vector<kernels::TopKList> top;  // one per query row
  dispatch::ExecutionReport report;
};

// Runs a pass; called concurrently for different batches.
using BatchExecutor =
    std::function<absl::Status(const BatchPass&, BatchPassOutput*)>;
// Runs a task on some worker thread (core::Engine::Submit).
using TaskRunner = std::function<void(absl::AnyInvocable<void()>)>;

// Top-k of `queries` against the rows of one segment that `mask` admits
// (the pass's mask sliced to the segment), indices local to the segment.
// The segment, not just its rows, so that a device holding a copy of it
// under segment.id() can read that.
using SegmentSearch = std::function<absl::Status(
    const kernels::MatrixView& queries, const Segment& segment,
    const kernels::RowMask& mask, uint32_t top_k,
    std::optional<float> min_score, std::vector<kernels::TopKList>* out)>;

// Runs `search` once per segment of pass.collection that the mask admits a
// row of and merges the lists into collection-wide row indices (one call,
// no merge, for the common single-segment collection). An empty collection
// or a mask admitting nothing gives empty lists.
absl::Status SearchSegments(const BatchPass& pass, const SegmentSearch& search,
                            std::vector<kernels::TopKList>* out);

// A BatchExecutor over kernels::cpu::CosineTopK on `pool` (borrowed; nullptr:
// the calling thread). Reports BackendKind::kCpu and the compute time.
BatchExecutor MakeKernelExecutor(kernels::ThreadPool* pool);

// Identifies an admitted call, for Cancel.
using SearchTicket = uint64_t;

// How SearchBatcher::ValidateOptions names the options: the fields' own
// names, or the caller's (the server's flags).
struct SearchBatcherOptionNames {
  const char* max_batch_queries = "max_batch_queries";
  const char* max_queue_delay = "max_queue_delay";
  const char* max_concurrent_passes = "max_concurrent_passes";
  const char* max_pending_requests = "max_pending_requests";
  const char* max_pass_linger = "max_pass_linger";
};

class SearchBatcher {
 public:
  struct Options {
    // false: every call is its own pass (see the file comment).
    bool enabled = true;
    // Queries per pass, [1, 65536]; 1 turns batching off.
    uint32_t max_batch_queries = 64;
    // How long the oldest call of a partial batch may wait for more while a
    // pass slot is free, [0, 1 s]. The default is a small fraction of a CPU
    // pass over a large collection.
    absl::Duration max_queue_delay = absl::Microseconds(200);
    // Batched passes running at once, [1, 1024]. One CPU pass already uses
    // every worker of the kernel pool, so a second one over the same
    // collection only splits the cores and reads the rows twice; more
    // slots pay where passes run on different devices.
    uint32_t max_concurrent_passes = 1;
    // When a batched pass ends, batches still forming wait a little longer
    // before they go, even if their delay is up: min(max_pass_linger,
    // pass_linger_fraction x that pass's duration). The callers the pass
    // just answered often send their next call within a round trip; without
    // the wait, the calls that queued during the pass would leave without
    // them, and closed-loop callers would settle into groups that alternate
    // passes of half the size. The fraction bounds what the wait costs a
    // busy collection (1/64: under 2% of its throughput) and keeps it near
    // zero for fast passes. [0, 1 s] and [0, 1]; 0 turns it off.
    absl::Duration max_pass_linger = absl::Milliseconds(2);
    double pass_linger_fraction = 1.0 / 64;
    // Calls admitted and not yet completed, [1, 2^20].
    uint32_t max_pending_requests = 1024;
    // Required.
    BatchExecutor execute;
    // Null: passes run on the dispatcher thread.
    TaskRunner run;
    // Borrowed; may be null.
    ResidentMetrics* metrics = nullptr;
  };

  // How ValidateOptions names the options (defined outside the class so
  // that it can be a default argument).
  using OptionNames = SearchBatcherOptionNames;
  // INVALID_ARGUMENT naming the first option out of range; the executor
  // and runner are not checked.
  static absl::Status ValidateOptions(const Options& options,
                                      const OptionNames& names = {});

  // INVALID_ARGUMENT for an option out of range or no executor. Starts the
  // dispatcher thread.
  static absl::StatusOr<std::unique_ptr<SearchBatcher>> Create(
      const Options& options);

  // Fails the calls still waiting with UNAVAILABLE, then waits for running
  // passes to finish (their callbacks run), then stops the dispatcher.
  ~SearchBatcher();

  SearchBatcher(const SearchBatcher&) = delete;
  SearchBatcher& operator=(const SearchBatcher&) = delete;

  // Admits a call; `done` runs later, exactly once. Returns at once with,
  // and without ever calling `done`: INVALID_ARGUMENT (no collection; queries
  // empty, of the wrong width (naming queries.cols and the collection's
  // dimension) or with a non-finite value or overflowing norm (naming the
  // row); top_k 0; min_score not finite), RESOURCE_EXHAUSTED (too many
  // calls pending), UNAVAILABLE (shutting down).
  absl::StatusOr<SearchTicket> Search(SearchRequest request,
                                      SearchCallback done)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Removes a waiting call: its callback runs now, on this thread, with
  // CANCELLED, and true is returned. False when the call is already in a
  // full batch waiting for a pass slot or in a pass (its result will still
  // be delivered) or has completed.
  bool Cancel(SearchTicket ticket) ABSL_LOCKS_EXCLUDED(mu_);

  // Calls admitted and not yet completed.
  uint32_t pending() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Call {
    SearchTicket ticket = 0;
    SearchRequest request;
    SearchCallback done;
    absl::Time admitted;
  };
  // Calls that share a pass: same collection version, placement and rows.
  struct Key {
    const Collection* collection;
    dispatch::Placement placement;
    const RowSelection* rows;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.collection, k.placement, k.rows);
    }
    friend bool operator==(const Key& a, const Key& b) {
      return a.collection == b.collection && a.placement == b.placement &&
             a.rows == b.rows;
    }
  };
  struct Queue {
    std::vector<std::unique_ptr<Call>> calls;
    uint64_t queries = 0;
    absl::Time oldest;
  };
  using Batch = std::vector<std::unique_ptr<Call>>;

  explicit SearchBatcher(const Options& options);
  bool batching() const {
    return options_.enabled && options_.max_batch_queries > 1;
  }
  void DispatchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Moves a queue's calls into ready_ and forgets the queue.
  void FlushLocked(const Key& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves due batches from ready_ into `due`, as many as there are free
  // pass slots, flushing queues whose delay is up when ready_ runs dry; the
  // earliest deadline of a queue still forming goes to *next.
  void TakeDueLocked(absl::Time now, std::vector<Batch>* due, absl::Time* next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands a batch to the runner (or runs it here); in_flight_ already
  // counts it, and running_ too when `slot` (a batched pass, not a call
  // run alone).
  void Launch(Batch batch, bool slot) ABSL_LOCKS_EXCLUDED(mu_);
  void RunBatch(Batch batch, bool slot) ABSL_LOCKS_EXCLUDED(mu_);
  // Delivers one call's outcome and retires it from pending_.
  void Complete(Call& call, absl::StatusOr<SearchResult> result)
      ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::CondVar wake_;  // the dispatcher: new work or shutdown
  absl::CondVar idle_;  // the destructor: in_flight_ reached 0
  absl::flat_hash_map<Key, Queue> queues_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SearchTicket, Key> waiting_ ABSL_GUARDED_BY(mu_);
  // Formed batches (full, or flushed when their delay was up) waiting for
  // a pass slot, oldest first.
  std::vector<Batch> ready_ ABSL_GUARDED_BY(mu_);
  uint32_t running_ ABSL_GUARDED_BY(mu_) = 0;  // batched passes running
  uint32_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // batches launched, not done
  SearchTicket next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  // Until then, queues whose delay is up keep forming (Options::
  // max_pass_linger); set when a batched pass ends.
  absl::Time linger_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread dispatcher_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_SEARCH_BATCHER_H_
