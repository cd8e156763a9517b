// CollectionStore: named collections of float32 vectors held resident in host
// memory, so that a search sends only its queries. Host memory holds
// the authoritative copy; a device cache (not built yet, see below) may hold
// copies of what fits the GPU.
//
// Lifecycle of the data:
//   CreateCollection(spec)          an empty collection, visible at once
//   BeginUpload(options) -> upload  rows staged invisibly, chunk by chunk
//   upload->Commit()                the rows become visible atomically
//   upload->Abort() / destruction   the staged rows and their budget go away
//   Delete(name)                    the name disappears at once
// An upload can also create its collection (UploadOptions::create), in which
// case the collection appears only at Commit, with all its rows: a failed or
// cancelled upload never leaves a half collection visible.
//
// Storage: a collection version is a list of immutable Segments, one per
// committed upload, each a contiguous 64-byte-aligned N x d float32 block
// with its precomputed norms and optional stored ids. Appending makes a new
// version that shares the old segments and adds one: readers holding the old
// version are untouched, nothing is copied, and the budget is charged only
// for the new rows. Copy-on-write would need the whole collection twice
// during every append (and a budget reservation for it); chunked storage in
// small fixed blocks would split every search into many kernel calls. One
// segment per upload keeps a collection loaded once from a file in one block,
// i.e. one kernel pass per search, and lets a device cache upload only the
// new segment after an append.
//
// Rows are contiguous (stride == dimension) so that a segment is directly a
// kernels::MatrixView, which has no row stride: each segment starts on a
// 64-byte boundary, and so does every row whenever the dimension is a
// multiple of 16 (every common embedding width). Padding rows for other
// widths would force a copy on every search.
//
// Readers get std::shared_ptr<const Collection> snapshots: a search holds
// one for its whole run, so Delete or a concurrent append never invalidates
// it. Memory returns to the budget when the last holder of a segment lets
// go, not when the name is deleted.
//
// Device residency seam: Collection::uid() (one per created collection,
// never reused) and Segment::id() (one per committed block) are stable
// identities a GPU cache can key copies by, and CollectionObserver tells it
// about commits (to upload ahead of use) and deletions (to drop copies).
// Describe() reports residency "host" until such a cache exists.
//
// Durability seam: a CollectionJournal (the data directory, data_dir.h) is
// told of every create, committed upload and delete before it becomes
// visible, and a failure there leaves the previous version visible. A
// durable upload's rows reach the journal while they arrive, through the
// SegmentWriter it hands out at BeginUpload, so that the commit does not
// write them all at once. A collection restored from the journal, or loaded
// from an operator's file, is not journaled again (UploadOptions::durable). A
// collection whose stored copy cannot be read is held as lost (MarkLost): its
// calls answer that error until it is deleted.
//
// Thread-safety: CollectionStore's methods may be called concurrently (one
// mutex over the name table, never held while rows are copied, allocated or
// checked, nor while the observer or the journal runs; commits and deletes
// are serialised by a second mutex, taken first, so the journal sees them in
// the order they become visible). Collection and Segment are immutable
// and safe to share. A CollectionUpload is used by one thread at a time; the
// store must outlive its uploads.
#ifndef ENGRAM_CORE_COLLECTIONS_COLLECTION_STORE_H_
#define ENGRAM_CORE_COLLECTIONS_COLLECTION_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/collections/memory_budget.h"
#include "core/collections/resident_metrics.h"
#include "core/collections/row_labels.h"
#include "core/collections/row_selection.h"
#include "kernels/large_buffer.h"
#include "kernels/types.h"

namespace engram::collections {

// Sorted, so Describe, List and snapshot files are deterministic.
using Metadata = std::map<std::string, std::string>;

// Keyed uploads a collection remembers (UploadOptions::idempotency_key).
inline constexpr size_t kMaxCommittedKeys = 64;

// An upload's idempotency key and the version its commit made.
struct CommittedKey {
  std::string key;
  uint64_t version = 0;
};

// Largest accepted dimension; far above any embedding in use, low enough
// that rows * dimension arithmetic cannot overflow.
inline constexpr uint32_t kMaxDimension = 1u << 16;
// Rows are numbered by uint32 in top-k results (kernels::ScoredIndex).
inline constexpr uint64_t kMaxCollectionRows = 0xffffffffu;
// Keys and values of metadata: bounded so Describe stays small.
inline constexpr size_t kMaxMetadataEntries = 64;
inline constexpr size_t kMaxMetadataBytes = 64 << 10;

// The rows of one committed upload. Immutable.
class Segment {
 public:
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Process-wide unique identity of this block (see NewResidentId()).
  uint64_t id() const { return id_; }
  // Index of the first row in the collection; fixed at commit, since rows
  // are only ever appended.
  uint64_t first_row() const { return first_row_; }
  uint64_t rows() const { return vectors_.rows; }
  uint32_t dimension() const { return static_cast<uint32_t>(vectors_.cols); }
  // rows x dimension, row-major, 64-byte aligned.
  const kernels::MatrixView& vectors() const { return vectors_; }
  // |row| for every row, computed in float64 at upload.
  absl::Span<const float> norms() const {
    return absl::MakeConstSpan(norms_.data(), norms_.size());
  }
  // The stored ids, or empty when the upload gave none.
  absl::Span<const uint64_t> ids() const { return ids_view_; }
  // The stored id of local row `i`: the uploaded id, or its row index in the
  // collection when the upload gave none.
  uint64_t IdOf(uint64_t i) const {
    return ids_view_.empty() ? first_row_ + i : ids_view_[i];
  }
  // Host bytes held: vectors, norms, ids and labels.
  uint64_t bytes() const {
    return reservation_.bytes() + labels_reservation_.bytes();
  }
  // Whether the rows lie in memory the segment does not own but keeps
  // alive, such as a mapped segment file (CollectionUpload::AdoptRows).
  bool adopted() const { return backing_ != nullptr; }
  // The rows' labels, or null when none was given.
  const SegmentLabels* labels() const { return labels_.get(); }

 private:
  friend class CollectionStore;
  friend class CollectionUpload;
  Segment() = default;

  std::shared_ptr<const SegmentLabels> labels_;
  Reservation labels_reservation_;
  uint64_t id_ = 0;
  uint64_t first_row_ = 0;
  // Owned rows and ids; empty when adopted.
  kernels::LargeBuffer<float> data_;
  kernels::LargeBuffer<float> norms_;
  kernels::LargeBuffer<uint64_t> ids_;
  // Keeps adopted rows valid; null for owned ones.
  std::shared_ptr<const void> backing_;
  kernels::MatrixView vectors_;
  absl::Span<const uint64_t> ids_view_;
  Reservation reservation_;
};

class RowIndex;

// One immutable version of a collection.
class Collection {
 public:
  Collection(const Collection&) = delete;
  Collection& operator=(const Collection&) = delete;

  const std::string& name() const { return name_; }
  uint32_t dimension() const { return dimension_; }
  const Metadata& metadata() const { return metadata_; }
  // One per created collection; a deleted and re-created name gets a new one.
  uint64_t uid() const { return uid_; }
  // 1 when created, +1 per committed append.
  uint64_t version() const { return version_; }
  uint64_t rows() const { return rows_; }
  // Host bytes of all segments.
  uint64_t bytes() const { return bytes_; }
  // "upload", or the file the collection was loaded from.
  const std::string& source() const { return source_; }
  // In row order; segment i holds rows [first_row, first_row + rows).
  const std::vector<std::shared_ptr<const Segment>>& segments() const {
    return segments_;
  }
  // The stored id of row `row` (< rows()). O(log segments).
  uint64_t IdOf(uint64_t row) const;
  // Whether any segment carries uploaded ids (else ids are row indices).
  bool has_ids() const;
  // The keys of the last kMaxCommittedKeys keyed uploads, oldest first.
  const std::vector<CommittedKey>& committed_keys() const {
    return *committed_keys_;
  }
  // Whether an upload with `key` is among them.
  bool Committed(absl::string_view key) const;

  // Rows replaced or deleted (tombstones): never searched, kept until a
  // compaction copies the live rows into a new version. Bit r of
  // dead_words() is set when row r is dead; empty when no row is.
  absl::Span<const uint64_t> dead_words() const {
    return dead_ == nullptr ? absl::Span<const uint64_t>()
                            : absl::MakeConstSpan(*dead_);
  }
  uint64_t dead_rows() const { return dead_count_; }
  uint64_t live_rows() const { return rows_ - dead_count_; }
  bool IsLive(uint64_t row) const {
    return dead_ == nullptr || (((*dead_)[row >> 6] >> (row & 63)) & 1) == 0;
  }
  // The rows this version killed that the previous one served (ascending):
  // what the journal stores of a replace or a delete.
  const std::vector<uint64_t>& killed() const { return killed_; }
  // This version does not extend the previous one: its segments replace
  // them (a compaction). The journal then stores it whole.
  bool rewritten() const { return rewritten_; }
  // Every live row holding `id` (ascending). Built on first use, then
  // carried over incrementally by later versions. Thread-safe.
  std::vector<uint64_t> RowsOf(uint64_t id) const;
  // The live rows as a selection searches apply (row_selection.h), made on
  // first use and shared by every search of this version; null when every
  // row is live. Thread-safe.
  std::shared_ptr<const RowSelection> LiveRows() const;
  // Whether every row carries an uploaded id, as UpsertRows and DeleteRows
  // need (an empty collection does).
  bool ids_everywhere() const;

 private:
  friend class CollectionStore;
  friend class CollectionUpload;
  friend class RowIndex;
  Collection() = default;
  // The index RowsOf reads, built when missing.
  std::shared_ptr<const RowIndex> Index() const;

  std::shared_ptr<const std::vector<uint64_t>> dead_;
  uint64_t dead_count_ = 0;
  std::vector<uint64_t> killed_;
  bool rewritten_ = false;
  // What RowsOf and LiveRows build on first use.
  mutable absl::Mutex cache_mu_;
  mutable std::shared_ptr<const RowIndex> index_ ABSL_GUARDED_BY(cache_mu_);
  mutable std::shared_ptr<const RowSelection> live_ ABSL_GUARDED_BY(cache_mu_);

  std::string name_;
  uint32_t dimension_ = 0;
  Metadata metadata_;
  uint64_t uid_ = 0;
  uint64_t version_ = 0;
  uint64_t rows_ = 0;
  uint64_t bytes_ = 0;
  std::string source_;
  std::vector<std::shared_ptr<const Segment>> segments_;
  // Shared by versions until a keyed upload makes a new list.
  std::shared_ptr<const std::vector<CommittedKey>> committed_keys_ =
      std::make_shared<const std::vector<CommittedKey>>();
};

// What Describe and List report.
struct CollectionInfo {
  std::string name;
  uint32_t dimension = 0;
  uint64_t rows = 0;  // live rows
  uint64_t tombstones = 0;
  uint64_t bytes = 0;
  Metadata metadata;
  uint64_t uid = 0;
  uint64_t version = 0;
  uint64_t segments = 0;
  bool has_ids = false;
  // Where copies live: "host" (the GPU cache will add to it).
  std::string residency = "host";
  // "ready", "appending" while an append upload is staged against it,
  // "behind" when the shared catalog holds a newer version this replica
  // could not load (it serves this one; `error` says why), or "lost" when
  // its stored copy could not be read (`error` says why).
  std::string load_state = "ready";
  std::string error;
  std::string source;
};

// What Describe reports of one version, as if it were the current one and
// "ready" (a call's answer about the version it committed).
CollectionInfo DescribeVersion(const Collection& collection);

// What to create: an empty collection, or the one an upload creates.
struct CollectionSpec {
  std::string name;
  uint32_t dimension = 0;  // [1, kMaxDimension]
  Metadata metadata;
};

struct UploadOptions {
  std::string name;
  // true: the upload creates collection `name` (ALREADY_EXISTS when the name
  // is taken or another upload is creating it; the name stays reserved, and
  // invisible, until Commit or Abort). false: rows are appended to the
  // existing collection `name` (NOT_FOUND when there is none).
  bool create = false;
  // create: the new collection's dimension. Append: 0, or it must equal the
  // collection's (INVALID_ARGUMENT otherwise).
  uint32_t dimension = 0;
  Metadata metadata;  // create only
  // The rows the upload will bring, >= 1. The whole upload is reserved from
  // the budget (RESOURCE_EXHAUSTED) and allocated at BeginUpload, so a
  // refused upload allocates nothing and an accepted one cannot run out of
  // budget half-way.
  uint64_t rows = 0;
  // Every chunk carries one id per row (else none may).
  bool with_ids = false;
  // Recorded as Collection::source(); empty means "upload".
  std::string source;
  // The version the commit makes: 0 for the next one (1 for a create). A
  // restore from the data directory or a change loaded from the shared
  // catalog gives the stored one (appends only when not `durable`).
  uint64_t version = 0;
  // Whether the journal is told of the commit: false for data that is
  // already on disk (restored from the journal, or an operator's file).
  bool durable = true;
  // The rows come as blocks, each kept as a segment of its own (a restore
  // of several segment files): StageRows allocates each block when it is
  // staged, and AdoptRows takes rows that already lie in memory the caller
  // provides (a mapped file) without copying them. BeginUpload reserves the
  // budget for every row but allocates nothing; Append is refused. Not for
  // an upload the journal stores (durable, with a journal).
  bool blocks = false;
  // Optional: when the collection has committed an upload with this key,
  // Commit publishes nothing and returns the current version
  // (CollectionUpload::replayed()). Callers check FindCommitted() before
  // staging; Commit checks again for a duplicate that raced this one.
  std::string idempotency_key = {};
  // Restoring (a create, or an append that is not `durable`): the keys the
  // stored version remembers, which replace the collection's.
  std::vector<CommittedKey> restored_keys = {};
  // UpsertRows: the live rows holding an id the upload brings are killed
  // by its commit (they become tombstones), so that each id ends with the
  // uploaded row alone. Requires with_ids and a collection whose rows all
  // carry ids (FAILED_PRECONDITION otherwise); ids must be unique within
  // the upload (INVALID_ARGUMENT at Append).
  bool replace_ids = false;
  // > 0: Commit applies only to that version of the collection (ABORTED
  // otherwise, nothing committed).
  uint64_t expected_version = 0;
  // Restoring a stored version (not `durable`): its dead rows (ascending),
  // which replace the collection's.
  std::vector<uint64_t> restored_dead = {};
  // A create that may find the name taken: its commit replaces the
  // collection then (a stored version that does not extend the one served,
  // loaded beside it and swapped in). Not `durable` only.
  bool replace = false;
};

// The rows of one durable upload, stored while they arrive, so that its
// commit has little left to write (CollectionJournal::BeginSegment). Used by
// the upload's thread, one call at a time; an implementation may work on its
// own threads meanwhile.
class SegmentWriter {
 public:
  // Removes what was stored, unless Finish succeeded: an upload that is not
  // committed leaves no file.
  virtual ~SegmentWriter() = default;
  // Stores rows [first_row, first_row + rows) of the upload, which come in
  // order: `vectors` (rows x the dimension) and, when the upload has ids,
  // `ids` (else null). Both point into the staged segment and are read
  // until Finish returns or the writer is destroyed, so they must not change
  // meanwhile. The storing may finish later: an error is returned by this
  // call or a later one, or by Finish; after one, every call fails.
  virtual absl::Status Write(uint64_t first_row, const float* vectors,
                             const uint64_t* ids, uint64_t rows) = 0;
  // Once every declared row was written: completes the stored copy and
  // returns the handle that CollectionJournal::Commit or DiscardSegment
  // takes, as WriteSegment does.
  virtual absl::StatusOr<std::string> Finish() = 0;
};

// Makes changes durable before they become visible (see the file comment).
// BeginSegment, WriteSegment and the SegmentWriter run outside the store's
// locks (they may take long); Commit and Delete run under the store's commit
// mutex, so for one store they never overlap and come in the order the
// changes become visible. Implementations must be thread-safe and must not
// call back into the store.
class CollectionJournal {
 public:
  virtual ~CollectionJournal() = default;
  // Starts storing the rows of a durable upload to collection `name` (rows
  // x dimension, with ids or not) as they arrive; the upload then commits
  // the writer's handle instead of calling WriteSegment. Null: this journal
  // stores a segment whole at commit (WriteSegment). Errors refuse the
  // upload.
  virtual absl::StatusOr<std::unique_ptr<SegmentWriter>> BeginSegment(
      absl::string_view name, uint32_t dimension, uint64_t rows,
      bool with_ids) {
    return nullptr;
  }
  // Stores the rows of `segment`, a staged upload to collection `name`, and
  // returns the handle Commit or DiscardSegment takes.
  virtual absl::StatusOr<std::string> WriteSegment(absl::string_view name,
                                                   const Segment& segment) = 0;
  // Removes a written segment that will not be committed.
  virtual void DiscardSegment(const std::string& handle) = 0;
  // Makes `next` the stored version of its collection. `added` is the
  // handle of its new last segment, or empty when it adds none (an empty
  // collection created). On error the stored version is unchanged.
  virtual absl::Status Commit(const Collection& next,
                              const std::string& added) = 0;
  // Removes collection `name` from storage (OK when it holds none).
  virtual absl::Status Delete(absl::string_view name) = 0;
};

// Told about visible changes, on the thread that made them, after the
// store's lock is released. The GPU residency cache implements it.
// Implementations must be thread-safe and must not call back into the store
// synchronously.
class CollectionObserver {
 public:
  virtual ~CollectionObserver() = default;
  // A new version is visible (created by an upload or appended to).
  virtual void OnCommitted(
      const std::shared_ptr<const Collection>& current) = 0;
  // Collection `uid` was deleted (its versions die with their last reader).
  virtual void OnDeleted(uint64_t uid, const std::string& name) = 0;
};

class CollectionStore;
class CollectionUpload;

// Rows a loader writes straight into an upload's own storage, sparing the
// copy Append makes (CollectionUpload::StageRows): the caller fills
// vectors() and ids(), has every row checked by Check, and hands the block
// to CollectionUpload::Receive, which only then counts the rows as received.
// Until then the rows are not part of the upload, so a block that is never
// received (bad data, a failed read) leaves the upload as it was.
//
// Thread-safety: vectors(), ids() and Check may be used from several threads
// at once for disjoint rows (Check counts the rows it passed in an atomic,
// relaxed: Receive reads the count after the caller joined those threads).
// Receive and destruction need the caller's own synchronisation with them.
class StagedRows {
 public:
  StagedRows(const StagedRows&) = delete;
  StagedRows& operator=(const StagedRows&) = delete;

  // The block's first row, numbered within the upload.
  uint64_t first_row() const { return first_row_; }
  uint64_t rows() const { return rows_; }
  uint32_t dimension() const { return dimension_; }
  // rows() x dimension() floats, row-major, uninitialised until written;
  // null for adopted rows (CollectionUpload::AdoptRows), already in place.
  float* vectors() { return vectors_; }
  // One id per row when the upload is with_ids, else null; null for
  // adopted rows.
  uint64_t* ids() { return ids_; }

  // Checks rows [begin, end) of the block (local numbers) as Append checks
  // a chunk, in place, and computes their norms. INVALID_ARGUMENT names the
  // first bad row of the range by its number within the upload. Each row
  // must be checked once; a refused range may be checked again after it
  // was rewritten.
  absl::Status Check(uint64_t begin, uint64_t end);

 private:
  friend class CollectionUpload;
  // `checked` is what Check reads: `vectors` when the caller fills them,
  // the adopted rows otherwise (`vectors` null).
  StagedRows(const CollectionUpload* upload, uint64_t serial,
             uint64_t first_row, uint64_t rows, uint32_t dimension,
             float* vectors, const float* checked, float* norms, uint64_t* ids)
      : upload_(upload),
        serial_(serial),
        first_row_(first_row),
        rows_(rows),
        dimension_(dimension),
        vectors_(vectors),
        checked_rows_(checked),
        norms_(norms),
        ids_(ids) {}

  const CollectionUpload* const upload_;
  // Which of the upload's stagings this is (CollectionUpload::staged_).
  const uint64_t serial_;
  const uint64_t first_row_;
  const uint64_t rows_;
  const uint32_t dimension_;
  float* const vectors_;
  const float* const checked_rows_;
  float* const norms_;
  uint64_t* const ids_;
  std::atomic<uint64_t> checked_{0};
};

// A staged upload (see the file comment). Not thread-safe: one stream feeds
// it. Destroying it without Commit aborts it.
class CollectionUpload {
 public:
  CollectionUpload(const CollectionUpload&) = delete;
  CollectionUpload& operator=(const CollectionUpload&) = delete;
  ~CollectionUpload();

  // Copies `chunk` (chunk.cols == the dimension) and, when the upload is
  // with_ids, `ids` (one per row; otherwise `ids` must be empty), computing
  // the norms as it goes. INVALID_ARGUMENT names the field and the row
  // (numbered within the upload): a wrong width, a wrong id count, more rows
  // than declared, a non-finite value, or a squared norm that overflows
  // float32. A durable upload's rows go on to the journal's SegmentWriter,
  // whose errors (a full or failing disk) come back here or at Commit. A
  // refused chunk leaves the upload as it was, so the caller may Abort or go
  // on. FAILED_PRECONDITION after Commit or Abort.
  // `labels`: none, or one per row of the chunk (INVALID_ARGUMENT naming
  // "labels[i]" for a bad one); rows without are unlabelled.
  absl::Status Append(const kernels::MatrixView& chunk,
                      absl::Span<const uint64_t> ids = {},
                      absl::Span<const RowLabels> labels = {});

  // For loaders that read rows straight into place (see StagedRows): the
  // storage of the next `rows` rows. INVALID_ARGUMENT for 0 rows or more
  // than remain; FAILED_PRECONDITION after Commit or Abort, and for an upload
  // the journal stores (durable, with a journal): the rows it loads are
  // already stored, and a journaled upload's rows go through Append. Staging
  // reserves nothing: the block must be received (or dropped) before the
  // upload is used otherwise, and it must not outlive the upload.
  absl::StatusOr<std::unique_ptr<StagedRows>> StageRows(uint64_t rows);

  // For a `blocks` upload whose next `rows` rows already lie in memory
  // that `backing` keeps valid and unchanged for as long as it lives (a
  // mapped segment file): `vectors` (rows x the dimension, row-major,
  // 64-byte aligned, as the kernels read segments) and, when not null,
  // `ids` (one per row, 8-byte aligned). They become a segment of their own
  // without a copy; with null `ids` in an upload with ids, the rows' ids are
  // their numbers in the collection. The returned block computes the norms
  // in Check and is received as a staged one. INVALID_ARGUMENT for
  // misaligned rows or ids the upload does not take; otherwise errors as
  // StageRows.
  absl::StatusOr<std::unique_ptr<StagedRows>> AdoptRows(
      uint64_t rows, const float* vectors, const uint64_t* ids,
      std::shared_ptr<const void> backing);

  // Labels for upload rows [first_row, first_row + labels.size()), in any
  // order before Commit (a restore reads them apart from the rows).
  // INVALID_ARGUMENT for rows past the declared ones or a bad label.
  absl::Status AddLabels(uint64_t first_row,
                         absl::Span<const RowLabels> labels);

  // Counts the rows of `block` as received. FAILED_PRECONDITION, receiving
  // nothing, unless every row of it passed StagedRows::Check and it is
  // this upload's next block (no Append or other block came between).
  absl::Status Receive(const StagedRows& block);

  // Makes the rows visible as one new version and returns it. The upload is
  // finished whatever the outcome; on error nothing becomes visible and the
  // budget is given back. FAILED_PRECONDITION when fewer rows than declared
  // arrived; NOT_FOUND when the collection appended to was deleted meanwhile;
  // RESOURCE_EXHAUSTED when concurrent appends took the collection past
  // kMaxCollectionRows; the journal's errors for a durable upload.
  absl::StatusOr<std::shared_ptr<const Collection>> Commit();

  // Discards the staged rows and gives the budget and (for a creating
  // upload) the name back. Idempotent; a no-op after Commit.
  void Abort();

  const std::string& name() const { return options_.name; }
  uint32_t dimension() const { return dimension_; }
  uint64_t rows_expected() const { return options_.rows; }
  uint64_t rows_received() const { return rows_received_; }
  // After Commit: the upload's key had been committed already, so nothing
  // was published and Commit returned the current version.
  bool replayed() const { return replayed_; }
  // After the Commit of a replace_ids upload: how many of its ids the
  // collection held (their rows were replaced).
  uint64_t replaced() const { return replaced_; }

 private:
  friend class CollectionStore;
  CollectionUpload(CollectionStore* store, const UploadOptions& options,
                   uint32_t dimension, uint64_t target_uid);

  CollectionStore* const store_;
  const UploadOptions options_;
  const uint32_t dimension_;
  const uint64_t target_uid_;  // append: the collection's uid; create: 0
  bool finished_ = false;
  bool replayed_ = false;
  uint64_t replaced_ = 0;
  uint64_t rows_received_ = 0;
  // One per received row once any chunk brought labels (earlier rows get
  // empty ones).
  std::vector<RowLabels> labels_;
  // replace_ids: the ids received so far, to refuse a repeated one.
  absl::flat_hash_map<uint64_t, uint64_t> upsert_ids_;
  std::unique_ptr<Segment> staged_;
  // A durable upload's rows on their way to the journal, read from staged_:
  // always reset before staged_ is.
  std::unique_ptr<SegmentWriter> writer_;
  // A `blocks` upload (no staged_): the budget for every row, split among
  // the blocks' segments at Commit, and the blocks staged so far in row
  // order, the last one not yet received when their rows pass
  // rows_received_.
  Reservation reservation_;
  std::vector<std::unique_ptr<Segment>> blocks_;
  // Counts StageRows and AdoptRows calls: a `blocks` upload receives only
  // the latest staging, whose storage is the last block (an earlier one's
  // was dropped with it, and its address may have been reused since).
  uint64_t stagings_ = 0;
  // Checks shared by StageRows and AdoptRows.
  absl::Status CheckStageable(uint64_t rows) const;
  // A `blocks` upload: drops a staged block that was never received.
  void DropUnreceivedBlock();
};

// What DeleteRows did.
struct DeleteRowsResult {
  // As committed, or the current version when nothing was deleted (or the
  // call was replayed).
  std::shared_ptr<const Collection> collection;
  uint64_t deleted = 0;
  // The ids the collection did not hold, in the order given, once each.
  std::vector<uint64_t> not_found;
  bool replayed = false;
};

// Bounds of one DeleteRows call.
inline constexpr size_t kMaxDeleteIds = size_t{1} << 20;

class CollectionStore {
 public:
  struct Options {
    // Shared with the GraphStore; required.
    std::shared_ptr<MemoryBudget> budget;
    // A collection whose dead rows (tombstones) reach this share of its
    // rows, and at least compact_min_dead_rows, is compacted in the
    // background after the commit that got it there: its live rows are
    // copied into one new segment, committed as a new version with the
    // same contents. (0, 1]; 1 compacts only collections with no live row
    // left.
    double compact_dead_share = 0.2;
    uint64_t compact_min_dead_rows = 1024;
    // false: no background compaction (Compact() still works).
    bool compact_in_background = true;
    // Borrowed; may be null.
    ResidentMetrics* metrics = nullptr;
    // Borrowed; may be null. See CollectionObserver.
    CollectionObserver* observer = nullptr;
    // Borrowed; may be null (nothing is durable). See CollectionJournal.
    CollectionJournal* journal = nullptr;
  };

  // INVALID_ARGUMENT without a budget or for a compaction option out of
  // range. Starts the compaction thread when compact_in_background.
  static absl::StatusOr<std::unique_ptr<CollectionStore>> Create(
      const Options& options);

  // Stops the compaction thread (a compaction under way finishes first).
  ~CollectionStore();

  // Makes an empty collection. INVALID_ARGUMENT for a bad name, dimension or
  // metadata; ALREADY_EXISTS when the name is taken or being created.
  absl::StatusOr<std::shared_ptr<const Collection>> CreateCollection(
      const CollectionSpec& spec) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // An empty collection restored from the journal at `version`, not
  // journaled again. Errors as CreateCollection.
  absl::StatusOr<std::shared_ptr<const Collection>> RestoreEmpty(
      const CollectionSpec& spec, uint64_t version, const std::string& source)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Holds `name` as lost: its stored copy cannot be read (`why`, a
  // DATA_LOSS naming the file). Get, Describe and appends answer `why`;
  // creates answer ALREADY_EXISTS; Delete removes it (and its files).
  // ALREADY_EXISTS when the name is visible or being created.
  absl::Status MarkLost(const std::string& name, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Starts a staged upload (UploadOptions says which checks apply). Errors:
  // INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, RESOURCE_EXHAUSTED (the
  // budget, or rows past kMaxCollectionRows), and the journal's when it
  // cannot start storing a durable upload (BeginSegment); nothing is
  // reserved, allocated or made visible on error.
  absl::StatusOr<std::unique_ptr<CollectionUpload>> BeginUpload(
      const UploadOptions& options) ABSL_LOCKS_EXCLUDED(mu_);

  // Kills the live rows holding each of `ids`, as one new version (told to
  // the journal first). Ids the collection does not hold are reported, not
  // an error; when none is held nothing is committed. INVALID_ARGUMENT for
  // no ids or more than kMaxDeleteIds; NOT_FOUND, the lost error;
  // FAILED_PRECONDITION when the collection has rows without ids; ABORTED
  // when expected_version > 0 and differs from the current version. A
  // committed `idempotency_key` replays (nothing applied).
  absl::StatusOr<DeleteRowsResult> DeleteRows(absl::string_view name,
                                              absl::Span<const uint64_t> ids,
                                              absl::string_view idempotency_key,
                                              uint64_t expected_version)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Restores a stored version that only killed rows (a DeleteRows another
  // replica committed): `dead` (ascending) becomes the collection's dead
  // rows at `version`, with `keys`. NOT_FOUND when absent; FAILED_PRECONDITION
  // when a dead row is past the collection's rows or the version is not newer.
  absl::StatusOr<std::shared_ptr<const Collection>> RestoreDeletions(
      absl::string_view name, uint64_t version,
      const std::vector<uint64_t>& dead, const std::vector<CommittedKey>& keys)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Copies the live rows of `name` into one new segment and commits them
  // as the next version (Collection::rewritten()): row numbers change, ids,
  // labels and scores do not. Searches keep the version they hold. Returns
  // the current version unchanged when it has no dead row; ABORTED when a
  // commit landed while the copy was made (nothing committed; the next
  // trigger retries); RESOURCE_EXHAUSTED when the budget cannot hold the
  // copy beside the current version; NOT_FOUND.
  absl::StatusOr<std::shared_ptr<const Collection>> Compact(
      absl::string_view name) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Compactions the background thread completed, and its last failure
  // (OK when none), for tests and stats.
  uint64_t compactions() const ABSL_LOCKS_EXCLUDED(compact_mu_);
  absl::Status last_compaction_error() const ABSL_LOCKS_EXCLUDED(compact_mu_);
  // Blocks until the background thread has nothing queued or running.
  void WaitForCompactions() const ABSL_LOCKS_EXCLUDED(compact_mu_);

  // Removes the name at once (NOT_FOUND when absent). Searches holding a
  // version finish with it; staged appends to it fail at Commit.
  absl::Status Delete(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Delete without telling the journal: the name was deleted elsewhere
  // (another replica, through the shared catalog). Also forgets a lost name.
  absl::Status Evict(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Records that the shared catalog holds a newer version of `name` than
  // this replica could load (`why`): Describe and List say "behind" until
  // the name's next commit. No-op for an absent name.
  void SetBehind(absl::string_view name, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The current version of `name` once it is at least `min_version`,
  // waiting up to `timeout` for it (a newer version arriving from the shared
  // catalog); returns at once when min_version is 0. NOT_FOUND when the name
  // stays absent and UNAVAILABLE when it stays behind, naming both versions.
  absl::StatusOr<std::shared_ptr<const Collection>> GetAtLeast(
      absl::string_view name, uint64_t min_version,
      absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

  // The current version; NOT_FOUND when absent (a collection being created
  // by an upload is absent until its Commit).
  absl::StatusOr<std::shared_ptr<const Collection>> Get(
      absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<CollectionInfo> Describe(absl::string_view name) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The current version of `name` when it has committed an upload keyed
  // `key`; null otherwise (also for an absent name or an empty key).
  std::shared_ptr<const Collection> FindCommitted(absl::string_view name,
                                                  absl::string_view key) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Every visible collection, by name.
  std::vector<CollectionInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<MemoryBudget>& budget() const {
    return options_.budget;
  }

 private:
  friend class CollectionUpload;
  struct Entry {
    std::shared_ptr<const Collection> current;
    int appends_staged = 0;
    // Why a newer version from the catalog is not loaded (SetBehind).
    absl::Status behind;
  };

  explicit CollectionStore(const Options& options) : options_(options) {}
  CollectionInfo InfoOf(const Entry& entry) const;
  // Publishes the upload's staged segment (CollectionUpload::Commit).
  absl::StatusOr<std::shared_ptr<const Collection>> Publish(
      CollectionUpload* upload) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // CreateCollection and RestoreEmpty: an empty collection at `version`
  // becomes visible, told to the journal first when `durable`.
  absl::StatusOr<std::shared_ptr<const Collection>> AddEmpty(
      const CollectionSpec& spec, uint64_t version, const std::string& source,
      bool durable) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Delete (journaled) and Evict (not).
  absl::Status Remove(absl::string_view name, bool journaled)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // The error a lost name answers, or OK.
  absl::Status LostLocked(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a finished upload's claim on its name or collection.
  void Unstage(const CollectionUpload& upload) ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A copy of `current` as the start of its next version (version + 1).
  static std::shared_ptr<Collection> Successor(const Collection& current);
  // Records an idempotency key as committed by `next`.
  static void AddCommittedKey(Collection* next, std::string key);
  // Makes `dead` (row numbers) the dead rows of `next`, replacing its
  // own; DATA_LOSS for a row past its rows (a damaged stored version).
  static absl::Status SetDead(Collection* next,
                              const std::vector<uint64_t>& dead);
  // Adds `rows` (live rows of `next`'s predecessor) to the dead rows of
  // `next` and records them as the rows it killed; grows the bitmap over
  // rows appended.
  static absl::Status KillRows(Collection* next, std::vector<uint64_t> rows);
  // Publishes `next` (built under commit_mu_ from `current`): journal,
  // name table, observer. The journal's error leaves `current` served.
  absl::Status PublishLocked(std::shared_ptr<Collection> next,
                             const std::string& handle, bool journaled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `name` for background compaction when `c` passes the options'
  // thresholds. Called after this process's own changes only (UpsertRows,
  // DeleteRows, uploads), never for versions restored or loaded from the
  // catalog.
  void MaybeCompact(const Collection& c) ABSL_LOCKS_EXCLUDED(compact_mu_);
  void CompactLoop() ABSL_LOCKS_EXCLUDED(compact_mu_);

  const Options options_;
  // Serialises commits and deletes (see the file comment). Taken before mu_.
  absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, Entry, std::less<>> collections_ ABSL_GUARDED_BY(mu_);
  // Names whose stored copy could not be read, and why.
  std::map<std::string, absl::Status, std::less<>> lost_ ABSL_GUARDED_BY(mu_);
  // Names reserved by creating uploads, invisible until Commit.
  std::map<std::string, int, std::less<>> creating_ ABSL_GUARDED_BY(mu_);

  // Background compaction: names queued, one compacted at a time.
  mutable absl::Mutex compact_mu_;
  std::vector<std::string> compact_queue_ ABSL_GUARDED_BY(compact_mu_);
  bool compacting_ ABSL_GUARDED_BY(compact_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(compact_mu_) = false;
  uint64_t compactions_ ABSL_GUARDED_BY(compact_mu_) = 0;
  absl::Status compact_error_ ABSL_GUARDED_BY(compact_mu_);
  std::thread compactor_;
};

// Checks a spec as CreateCollection does (name, dimension, metadata sizes).
absl::Status ValidateCollectionSpec(const CollectionSpec& spec);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_COLLECTION_STORE_H_
