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
//
// Nothing is rewritten in place. An upload's rows go to a new segment file
// (written to a temporary name, fsynced, renamed, the folder fsynced); the
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
// still served.
//
// A collection the store holds from elsewhere (an operator's file declared
// with --resident_config) is first written here when a client changes it:
// its earlier rows are written as a segment of their own with the change.
//
// Thread-safety: the journal methods may be called from any thread (the
// stores serialise commits per store); one mutex guards the in-memory copy
// of the manifests and is held while a manifest is replaced. Load() must run
// before the stores are used by anything else.
#ifndef ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_
#define ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/collections/collection_store.h"
#include "core/collections/declarations.h"
#include "core/collections/graph_store.h"
#include "core/collections/manifest.pb.h"

namespace engram::collections {

inline constexpr absl::string_view kManifestMagic = "ENGRMMAN";

class DataDir final : public CollectionJournal {
 public:
  // Opens (creating when missing) the data directory at `path` and its
  // folders. INVALID_ARGUMENT for an empty path; the errors of mkdir.
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(const std::string& path);

  // Loads every stored collection and graph into the stores (see the file
  // comment) and removes what no manifest names. One outcome per stored
  // collection and graph (declaration.kind, name and path filled in);
  // failures are held as lost in their store.
  std::vector<LoadOutcome> Load(CollectionStore* collections,
                                GraphStore* graphs) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }
  // Files Load() removed as leftovers of interrupted writes and deletes.
  uint64_t leftovers_removed() const { return leftovers_removed_; }

  // CollectionJournal.
  absl::StatusOr<std::string> WriteSegment(absl::string_view name,
                                           const Segment& segment) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void DiscardSegment(const std::string& handle) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Commit(const Collection& next, const std::string& added) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Delete(absl::string_view name) override ABSL_LOCKS_EXCLUDED(mu_);

  // Graphs: a put graph is written whole; a delete removes its file.
  absl::Status CommitGraph(const Graph& graph);
  absl::Status DeleteGraph(absl::string_view name);

  // The GraphJournal to give the GraphStore: CommitGraph and DeleteGraph
  // (an adapter, since both journals name their methods Commit and Delete).
  GraphJournal* graph_journal() { return &graph_journal_; }

 private:
  class GraphSide final : public GraphJournal {
   public:
    explicit GraphSide(DataDir* dir) : dir_(dir) {}
    absl::Status Commit(const Graph& graph) override {
      return dir_->CommitGraph(graph);
    }
    absl::Status Delete(absl::string_view name) override {
      return dir_->DeleteGraph(name);
    }

   private:
    DataDir* const dir_;
  };

  explicit DataDir(std::string path)
      : path_(std::move(path)), graph_journal_(this) {}
  std::string ManifestPath(absl::string_view name) const;
  std::string SegmentPath(absl::string_view file) const;
  std::string GraphPath(absl::string_view name) const;
  // Writes `segment` under a new unique name and describes it.
  absl::StatusOr<storage::SegmentRef> StoreSegment(absl::string_view name,
                                                   const Segment& segment);
  absl::Status WriteManifest(const storage::CollectionManifest& manifest);
  LoadOutcome LoadCollection(const std::string& manifest_path,
                             CollectionStore* store, bool* unreadable)
      ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveUnreferenced() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  GraphSide graph_journal_;
  uint64_t leftovers_removed_ = 0;

  absl::Mutex mu_;
  // The stored manifest of every collection the directory holds.
  std::map<std::string, storage::CollectionManifest, std::less<>> manifests_
      ABSL_GUARDED_BY(mu_);
  // Segments written and not yet committed or discarded, by handle.
  std::map<std::string, storage::SegmentRef> pending_ ABSL_GUARDED_BY(mu_);
};

// The manifest file format: encode and decode (DATA_LOSS naming `path` for
// a bad magic, length or checksum, or a message that does not parse).
std::string EncodeManifest(const storage::CollectionManifest& manifest);
absl::StatusOr<storage::CollectionManifest> DecodeManifest(
    const std::string& path, absl::string_view bytes);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_DATA_DIR_H_
