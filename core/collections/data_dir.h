// DataDir: the durable copy of what clients wrote to the resident stores
// (--data_dir). It is the stores' journal: every create, committed upload,
// graph put and delete is on disk before it becomes visible, and at start-up
// Load() brings it all back.
//
// Layout, under the directory given:
//   collections/<name>.manifest   what one collection version is made of
//                                 (manifest.proto, framed: "ENGRMMAN", u32
//                                 length, u32 CRC32C of the message, the
//                                 message)
//   segments/<name>.<random>.seg  the rows of one committed upload, in the
//                                 collection snapshot format (snapshot.h)
//   graphs/<name>.graph           a graph, in the graph snapshot format
//   graphs/<name>.edits           the updates made to it since that file
//                                 was written (graph_edit_log.h)
//
// Nothing is rewritten in place. An upload's rows go to a new segment file
// while they arrive (segment_file_writer.h: written in place under a
// temporary name, with its writeback started as it goes), and at commit the
// file gets its header, is fsynced and renamed, and the folder fsynced; the
// commit point is the atomic replacement of the collection's manifest by
// one that lists the new segment and the new version. A delete removes the
// manifest (durably) before its segments. So a crash at any instant leaves
// the old version or the new one, and at worst files that no manifest
// names, which Load() removes (temporaries of interrupted writes, segments
// of commits that never reached their manifest, segments of a delete that
// stopped half-way).
//
// Loading: each collection's segments are read back into one in-memory
// segment (one kernel pass per search) at the stored version. A manifest or
// segment that cannot be read (truncated, a checksum mismatch, a wrong
// shape) takes only its own collection or graph out of service: it is held
// as lost in its store (DATA_LOSS naming the file, until it is deleted)
// while everything else loads. While any manifest is unreadable no segment
// is removed as unreferenced, since that manifest may name it.
//
// Errors of the disk during a write: RESOURCE_EXHAUSTED for a full disk or
// quota, UNAVAILABLE for any other failure (read-only, permissions, I/O),
// both naming the file; nothing becomes visible and the previous version is
// still served. An upload sets its file's disk space aside when it begins,
// so a disk too full for it refuses it then, before its rows are sent; a
// failure while its rows stream is answered to the chunk after it, or at
// the commit.
//
// A collection the store holds from elsewhere (an operator's file declared
// with --resident_config) is first written here when a client changes it:
// its earlier rows are written as a segment of their own with the change.
//
// Graphs: a put writes the graph file. An update is appended to the
// graph's edit log and fsynced (the log is created beside the file by the
// first update; a graph the directory does not hold at the updated
// version, such as one of an operator's file, is written whole first). A
// merge writes the merged graph aside, then renames it over the graph file
// and rewrites the log with only the updates it does not hold: a crash in
// between leaves a log whose older updates the file already holds, which
// loading skips by version. Loading applies the log's updates to the file,
// so the graph comes back exactly, at its version, with its keys. A torn
// last record (a crash during an append, never acknowledged) is cut off; a
// log whose graph file is gone (a delete that stopped half-way) and a
// merge's file that was never renamed are removed. One limit: the graph
// file keeps versions below 2^32 only; past that the log's base version is
// trusted, which a crash inside a merge's two steps can make wrong.
//
// Shared mode (a Catalog, catalog.h): several replicas serve one directory
// (a ReadWriteMany volume), and the catalog, not the manifest files, is the
// commit point. The manifests live in the catalog under
// "collections/<name>" and graphs under "graphs/<name>" (a GraphManifest
// naming graphs/<name>.<random>.graph, so a replaced graph never
// overwrites a file another replica may be reading). A commit is one
// conditional write on the revision this replica last saw of the name:
// a replica that is behind gets ABORTED (or ALREADY_EXISTS for a create)
// and nothing is committed, so two replicas never both make version v + 1.
// When the catalog cannot be reached a write answers UNAVAILABLE, and its
// segment file is kept, since the write may have reached the catalog.
// A graph's entry (GraphManifest) names its file and, in order, the files
// of the updates made since (graphs/<name>.<random>.edit, one update
// each); an update is one conditional write that adds its file, so every
// replica sees every update, in order, and one that is behind gets
// ABORTED. A merge writes a new graph file and an entry naming it with
// only the updates it does not hold; the files it replaces are removed a
// while later (kRetiredGraphFileAge), since a replica may still be reading
// them. Every replica merges in its own memory, but only the one that made
// the entry's last write shares its merge (or any, once the entry lists
// kSharedMergeAnyReplicaEdits updates), so that followers' merges do not
// move the entry under the writer's next update. A follower whose graph
// descends from the same put applies only the updates it lacks (reading their
// files) without reloading the graph; a merge's entry, whose content it already
// has, only replaces its record. Every replica follows the catalog (Follow()):
// a newer version of a collection is loaded beside the one being served (only
// its new segments when it extends the local version) and swapped in
// atomically; a delete evicts; a resync (after a compaction or a reconnect)
// reconciles the whole listing. A version that cannot be loaded (the memory
// budget, a damaged file) leaves the old one served and marked "behind". Files
// no catalog entry names are removed at start-up only when older than an hour,
// since other replicas may be writing them (an upload whose stream stalls
// longer than that may lose its temporary file so; its commit then fails and
// nothing is committed).
//
// Thread-safety: the journal methods may be called from any thread (the
// stores serialise commits per store); one mutex guards the in-memory copy
// of the manifests and is held while a manifest is replaced. Load() must run
// before the stores are used by anything else. Changes from the catalog are
// applied on the catalog's watch thread, one at a time, through the stores'
// public methods and with no lock of this class held while rows load.
#ifndef ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_
#define ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "absl/types/span.h"
#include "core/collections/catalog.h"
#include "core/collections/collection_store.h"
#include "core/collections/declarations.h"
#include "core/collections/graph_edit_log.h"
#include "core/collections/graph_store.h"
#include "core/collections/manifest.pb.h"

namespace engram::collections {

inline constexpr absl::string_view kManifestMagic = "ENGRMMAN";

class DataDir final : public CollectionJournal {
 public:
  struct Options {
    // The directory; created when missing (its parent must exist).
    std::string path;
    // Shared mode (see the file comment); null: this process alone.
    std::shared_ptr<Catalog> catalog;
    // Shared mode: told of every collection and graph loaded or evicted
    // from the catalog after Load(), on the catalog's thread (for logs).
    std::function<void(const LoadOutcome&)> on_catalog_change;
    // Segment files are mapped rather than read into memory where they
    // allow it (AppendSegmentSnapshot's `map`): a load then checks the rows
    // in place, the page cache's pages become the collection's, and each
    // stored segment stays a segment of its own. The rows still count
    // against the memory budget. false: every segment is read into memory.
    bool map_segments = true;
  };

  // Opens (creating when missing) the data directory and its folders.
  // INVALID_ARGUMENT for an empty path; the errors of mkdir.
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(const Options& options);
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(const std::string& path);

  // Stops following the catalog.
  ~DataDir() override;

  // Loads every stored collection and graph into the stores (see the file
  // comment) and removes what no manifest names. One outcome per stored
  // collection and graph (declaration.kind, name and path filled in);
  // failures are held as lost in their store. Shared mode: UNAVAILABLE when
  // the catalog cannot be listed (nothing was loaded; call again).
  absl::StatusOr<std::vector<LoadOutcome>> Load(CollectionStore* collections,
                                                GraphStore* graphs)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Shared mode, after Load(): applies every later change in the catalog to
  // the stores until StopFollowing() or destruction. FAILED_PRECONDITION
  // without a catalog or before Load().
  absl::Status Follow() ABSL_LOCKS_EXCLUDED(mu_);
  // Idempotent; waits for a change being applied.
  void StopFollowing();

  const std::string& path() const { return path_; }
  // The shared catalog, or null.
  Catalog* catalog() const { return catalog_.get(); }
  // Files Load() removed as leftovers of interrupted writes and deletes.
  uint64_t leftovers_removed() const { return leftovers_removed_; }

  // CollectionJournal. BeginSegment's writer stores a durable upload's rows
  // as they arrive; WriteSegment stores a segment whole.
  absl::StatusOr<std::unique_ptr<SegmentWriter>> BeginSegment(
      absl::string_view name, uint32_t dimension, uint64_t rows,
      bool with_ids) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> WriteSegment(absl::string_view name,
                                           const Segment& segment) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void DiscardSegment(const std::string& handle) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Commit(const Collection& next, const std::string& added) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Delete(absl::string_view name) override ABSL_LOCKS_EXCLUDED(mu_);

  // Graphs: a put graph is written whole; a delete removes its file.
  // Returns the version the graph is stored under: its own (kept in its
  // file), or in shared mode the catalog revision of the put.
  absl::StatusOr<uint64_t> CommitGraph(const Graph& graph)
      ABSL_LOCKS_EXCLUDED(mu_, graph_mu_);
  absl::Status DeleteGraph(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_, graph_mu_);
  // GraphJournal's updates and merges (see the file comment).
  absl::StatusOr<uint64_t> CommitGraphEdit(const Graph& previous,
                                           const Graph& next,
                                           const GraphEdit& edit,
                                           absl::string_view key)
      ABSL_LOCKS_EXCLUDED(mu_, graph_mu_);
  absl::StatusOr<std::string> WriteGraphMerge(const Graph& merged)
      ABSL_LOCKS_EXCLUDED(mu_, graph_mu_);
  absl::Status CommitGraphMerge(const Graph& merged, const Graph& current,
                                const std::string& handle)
      ABSL_LOCKS_EXCLUDED(mu_, graph_mu_);
  void DiscardGraphMerge(const std::string& handle);

  // The GraphJournal to give the GraphStore: the graph methods above (an
  // adapter, since both journals name their methods Commit and Delete).
  GraphJournal* graph_journal() { return &graph_journal_; }

 private:
  class GraphSide final : public GraphJournal {
   public:
    explicit GraphSide(DataDir* dir) : dir_(dir) {}
    absl::StatusOr<uint64_t> Commit(const Graph& graph) override {
      return dir_->CommitGraph(graph);
    }
    absl::Status Delete(absl::string_view name) override {
      return dir_->DeleteGraph(name);
    }
    absl::StatusOr<uint64_t> CommitEdit(const Graph& previous,
                                        const Graph& next,
                                        const GraphEdit& edit,
                                        absl::string_view key) override {
      return dir_->CommitGraphEdit(previous, next, edit, key);
    }
    absl::StatusOr<std::string> WriteMerge(const Graph& merged) override {
      return dir_->WriteGraphMerge(merged);
    }
    absl::Status CommitMerge(const Graph& merged, const Graph& current,
                             const std::string& handle) override {
      return dir_->CommitGraphMerge(merged, current, handle);
    }
    void DiscardMerge(const std::string& handle) override {
      dir_->DiscardGraphMerge(handle);
    }

   private:
    DataDir* const dir_;
  };

  // BeginSegment's writer (data_dir.cc).
  class StreamedSegment;

  // Applies the catalog's changes (Follow()).
  class Follower final : public CatalogWatcher {
   public:
    explicit Follower(DataDir* dir) : dir_(dir) {}
    void OnEvents(absl::Span<const CatalogEvent> events) override;
    void OnResync(const CatalogSnapshot& snapshot) override;

   private:
    DataDir* const dir_;
  };

  DataDir(std::string path, const Options& options)
      : path_(std::move(path)),
        catalog_(options.catalog),
        on_catalog_change_(options.on_catalog_change),
        map_segments_(options.map_segments),
        graph_journal_(this),
        follower_(this) {}
  // What a client sees of a failed write: RESOURCE_EXHAUSTED for a full
  // disk (it may free up), UNAVAILABLE for anything else the disk refused.
  static absl::Status WriteError(const absl::Status& status);
  // `name`.<64 random bits><suffix>: unique among the files any process
  // writes to the directory.
  static std::string UniqueFileName(absl::string_view name,
                                    absl::string_view suffix);
  // Removes the segment files `manifest` names, not durably: a file that
  // survives a crash is named by no manifest and removed at start-up.
  void RemoveSegmentFiles(const storage::CollectionManifest& manifest) const;
  // Loads the graph file at `path` into `store` as `name`: `outcome` gets
  // its rows and bytes, or the error (RESOURCE_EXHAUSTED for the budget,
  // DATA_LOSS for anything wrong with the file).
  static void LoadGraphFile(const std::string& path, const std::string& name,
                            uint64_t version, GraphStore* store,
                            LoadOutcome* outcome,
                            std::vector<CommittedKey> restored_keys = {});
  // Loads graph `name` of the directory alone: its file, then its edit
  // log's updates; opens the log for appending.
  LoadOutcome LoadStoredGraph(const std::string& name, GraphStore* store)
      ABSL_LOCKS_EXCLUDED(graph_mu_);
  std::string ManifestPath(absl::string_view name) const;
  std::string SegmentPath(absl::string_view file) const;
  std::string GraphPath(absl::string_view name) const;
  std::string GraphLogPath(absl::string_view name) const;
  // Records a written segment until it is committed or discarded, and
  // returns its handle.
  std::string AddPending(storage::SegmentRef ref) ABSL_LOCKS_EXCLUDED(mu_);
  // Writes `segment` under a new unique name and describes it.
  absl::StatusOr<storage::SegmentRef> StoreSegment(absl::string_view name,
                                                   const Segment& segment);
  absl::Status WriteManifest(const storage::CollectionManifest& manifest);
  LoadOutcome LoadCollection(const std::string& manifest_path,
                             CollectionStore* store, bool* unreadable)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Loads the segments of `manifest` from index `skip` on into `store`: as
  // a new collection (`create`), or appended to the current version, which
  // must hold the segments before `skip`. `where` names the manifest in
  // errors.
  // With `replace`, a create loads beside the collection served under the
  // name and takes its place at the commit (a version that does not extend
  // the served one). The version's dead rows and its segments' labels are
  // read as well.
  absl::Status LoadSegments(const storage::CollectionManifest& manifest,
                            int skip, bool create, CollectionStore* store,
                            const std::string& where, bool replace = false);
  // Removes what no manifest names: every such segment (embedded), or only
  // files older than `min_age` (shared, where others may be writing).
  void RemoveUnreferenced(absl::Duration min_age) ABSL_LOCKS_EXCLUDED(mu_);

  // Shared mode (data_dir_catalog.cc).
  absl::Status CommitToCatalog(storage::CollectionManifest manifest,
                               const std::string& added, uint64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeleteFromCatalog(absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> CommitGraphToCatalog(const Graph& graph)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DeleteGraphFromCatalog(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<uint64_t> CommitGraphEditToCatalog(const Graph& previous,
                                                    const GraphEdit& edit,
                                                    absl::string_view key)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CommitGraphMergeToCatalog(const Graph& merged,
                                         const Graph& current,
                                         const std::string& file)
      ABSL_LOCKS_EXCLUDED(mu_);
  // OK when this replica is the one to share a merge of graph `name`
  // (see the file comment); FAILED_PRECONDITION otherwise.
  absl::Status SharesGraphMerge(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SharesGraphMergeLocked(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the files retired by merges once they are old enough that no
  // replica still reads them.
  void RemoveRetiredGraphFiles() ABSL_LOCKS_EXCLUDED(mu_);
  // Brings graph `name` to the catalog's `manifest` (resolved): applies
  // the updates it lacks when its graph descends from the same put (and
  // `local`, the entry this replica held before, tells which), else
  // loads the graph anew.
  void ApplyGraphManifest(const std::string& name,
                          const storage::GraphManifest& manifest,
                          const absl::optional<storage::GraphManifest>& local,
                          LoadOutcome* outcome);
  absl::StatusOr<std::vector<LoadOutcome>> LoadFromCatalog()
      ABSL_LOCKS_EXCLUDED(mu_);
  // One catalog entry put or deleted; returns what happened (for logs), or
  // nothing when this replica already had it.
  absl::optional<LoadOutcome> ApplyPut(const CatalogEntry& entry)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::optional<LoadOutcome> ApplyDelete(const CatalogEntry& entry)
      ABSL_LOCKS_EXCLUDED(mu_);
  LoadOutcome ApplyCollection(const std::string& name,
                              const CatalogEntry& entry)
      ABSL_LOCKS_EXCLUDED(mu_);
  LoadOutcome ApplyGraph(const std::string& name, const CatalogEntry& entry)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Resync(const CatalogSnapshot& snapshot) ABSL_LOCKS_EXCLUDED(mu_);
  void Report(const absl::optional<LoadOutcome>& outcome);

  const std::string path_;
  const std::shared_ptr<Catalog> catalog_;
  const std::function<void(const LoadOutcome&)> on_catalog_change_;
  const bool map_segments_;
  GraphSide graph_journal_;
  Follower follower_;
  uint64_t leftovers_removed_ = 0;
  // Set by Load(); the stores changes from the catalog are applied to.
  CollectionStore* collections_ = nullptr;
  GraphStore* graphs_ = nullptr;
  // The catalog revision Load() listed; Follow() starts after it.
  int64_t loaded_revision_ = -1;
  bool following_ = false;

  absl::Mutex mu_;
  // The stored manifest of every collection the directory holds.
  std::map<std::string, storage::CollectionManifest, std::less<>> manifests_
      ABSL_GUARDED_BY(mu_);
  // Segments written and not yet committed or discarded, by handle.
  std::map<std::string, storage::SegmentRef> pending_ ABSL_GUARDED_BY(mu_);
  // Shared mode: the catalog revision of each collection's manifest and of
  // each graph's entry this replica holds.
  std::map<std::string, int64_t, std::less<>> revisions_ ABSL_GUARDED_BY(mu_);
  // Resolved (GraphManifest's zeros filled in with the entry's revision).
  std::map<std::string, storage::GraphManifest, std::less<>> graph_entries_
      ABSL_GUARDED_BY(mu_);
  // Shared mode: files merges replaced, and when.
  std::vector<std::pair<absl::Time, std::string>> retired_graph_files_
      ABSL_GUARDED_BY(mu_);
  // Shared mode: the revision of this replica's own last write of each
  // graph's entry (a put, an update or a merge).
  std::map<std::string, int64_t, std::less<>> own_graph_writes_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t, std::less<>> graph_revisions_
      ABSL_GUARDED_BY(mu_);
  // Segments whose commit may have reached the catalog though it answered
  // with an error: DiscardSegment keeps their files.
  std::set<std::string> uncertain_ ABSL_GUARDED_BY(mu_);

  // The directory alone: what each graph's files hold. Taken after mu_
  // where both are held.
  struct StoredGraph {
    // The version the graph file holds.
    uint64_t file_version = 0;
    // The open edit log; null until the first update since the file.
    std::unique_ptr<GraphEditLogWriter> log;
  };
  absl::Mutex graph_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::map<std::string, StoredGraph, std::less<>> stored_graphs_
      ABSL_GUARDED_BY(graph_mu_);
};

// Resolves a graph entry read at `mod_revision`: every version it leaves 0
// (see GraphManifest) becomes that revision.
storage::GraphManifest ResolveGraphManifest(storage::GraphManifest manifest,
                                            int64_t mod_revision);

// Shared mode's catalog keys.
std::string CollectionCatalogKey(absl::string_view name);
std::string GraphCatalogKey(absl::string_view name);

// The manifest file format: encode and decode (DATA_LOSS naming `path` for
// a bad magic, length or checksum, or a message that does not parse).
std::string EncodeManifest(const storage::CollectionManifest& manifest);
absl::StatusOr<storage::CollectionManifest> DecodeManifest(
    const std::string& path, absl::string_view bytes);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_
