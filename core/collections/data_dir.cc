#include "core/collections/data_dir.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/collections/names.h"
#include "core/collections/segment_file_writer.h"
#include "core/collections/snapshot.h"
#include "core/collections/stored_rows.h"

namespace engram::collections {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kManifestSuffix = ".manifest";
constexpr absl::string_view kSegmentSuffix = ".seg";
constexpr absl::string_view kGraphSuffix = ".graph";
constexpr absl::string_view kLabelsSuffix = ".labels";
constexpr absl::string_view kDeadSuffix = ".dead";
// Dead rows a manifest lists before they are folded into a dead-rows file:
// a few kilobytes, so that a manifest stays small in the catalog.
constexpr int kMaxListedDeadRows = 1024;
constexpr absl::string_view kGraphLogSuffix = ".edits";
constexpr absl::string_view kGraphMergeSuffix = ".merging";
constexpr size_t kManifestHeaderBytes = 16;  // magic, length, CRC32C
// A manifest lists segments and metadata only; anything larger is corrupt.
constexpr uint32_t kMaxManifestBytes = 64 << 20;

// The names of the regular files in `dir`, sorted.
std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file(error)) {
      names.push_back(it->path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The outcome of loading one stored collection or graph, before the load.
LoadOutcome StoredOutcome(ResidentKind kind, const std::string& name,
                          const std::string& path) {
  LoadOutcome outcome;
  outcome.declaration.kind = kind;
  outcome.declaration.name = name;
  outcome.declaration.path = path;
  outcome.format = FileFormat::kSnapshot;
  outcome.verified_by = "crc32c";
  return outcome;
}

}  // namespace

std::string EncodeManifest(const storage::CollectionManifest& manifest) {
  std::string message;
  manifest.SerializeToString(&message);
  std::string out(kManifestHeaderBytes, '\0');
  std::memcpy(out.data(), kManifestMagic.data(), 8);
  StoreLittleEndian<uint32_t>(out.data() + 8,
                              static_cast<uint32_t>(message.size()));
  StoreLittleEndian<uint32_t>(out.data() + 12,
                              Crc32c(message.data(), message.size()));
  out += message;
  return out;
}

absl::StatusOr<storage::CollectionManifest> DecodeManifest(
    const std::string& path, absl::string_view bytes) {
  if (bytes.size() < kManifestHeaderBytes ||
      bytes.substr(0, 8) != kManifestMagic) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a manifest (too short or wrong magic)"));
  }
  const uint32_t length = LoadLittleEndian<uint32_t>(bytes.data() + 8);
  const uint32_t stored = LoadLittleEndian<uint32_t>(bytes.data() + 12);
  if (length > kMaxManifestBytes ||
      bytes.size() != kManifestHeaderBytes + length) {
    return absl::DataLossError(
        absl::StrCat(path, ": the file has ", bytes.size(), " bytes, its ",
                     "header declares ", kManifestHeaderBytes + length));
  }
  const absl::string_view message = bytes.substr(kManifestHeaderBytes);
  const uint32_t computed = Crc32c(message.data(), message.size());
  if (computed != stored) {
    return absl::DataLossError(absl::StrFormat(
        "%s: manifest checksum mismatch (stored 0x%08x, computed 0x%08x)", path,
        stored, computed));
  }
  storage::CollectionManifest manifest;
  if (!manifest.ParseFromArray(message.data(),
                               static_cast<int>(message.size()))) {
    return absl::DataLossError(
        absl::StrCat(path, ": the manifest does not parse"));
  }
  return manifest;
}

absl::Status DataDir::WriteError(const absl::Status& status) {
  if (status.ok() || status.code() == absl::StatusCode::kResourceExhausted) {
    return status;
  }
  return absl::UnavailableError(
      absl::StrCat("data directory write failed: ", status.message()));
}

std::string DataDir::UniqueFileName(absl::string_view name,
                                    absl::string_view suffix) {
  // 64 bits from the OS's entropy source, not a seed that restarts or other
  // replicas could repeat.
  thread_local std::random_device device;
  const uint64_t value = (uint64_t{device()} << 32) | device();
  return absl::StrFormat("%s.%016x%s", name, value, suffix);
}

void DataDir::RemoveSegmentFiles(
    const storage::CollectionManifest& manifest) const {
  std::error_code ignored;
  for (const auto& segment : manifest.segments()) {
    fs::remove(SegmentPath(segment.file()), ignored);
    if (!segment.labels_file().empty()) {
      fs::remove(SegmentPath(segment.labels_file()), ignored);
    }
  }
  if (!manifest.dead_file().empty()) {
    fs::remove(SegmentPath(manifest.dead_file()), ignored);
  }
}

void DataDir::LoadGraphFile(const std::string& path, const std::string& name,
                            uint64_t version, GraphStore* store,
                            LoadOutcome* outcome,
                            std::vector<CommittedKey> restored_keys) {
  absl::StatusOr<std::shared_ptr<const Graph>> graph =
      LoadGraphSnapshot(path, name, store, version, std::move(restored_keys));
  if (graph.ok()) {
    outcome->rows = (*graph)->num_nodes();
    outcome->bytes = (*graph)->bytes();
  } else {
    outcome->status =
        graph.status().code() == absl::StatusCode::kResourceExhausted
            ? graph.status()
            : absl::DataLossError(graph.status().message());
  }
}

std::string CollectionCatalogKey(absl::string_view name) {
  return absl::StrCat("collections/", name);
}

std::string GraphCatalogKey(absl::string_view name) {
  return absl::StrCat("graphs/", name);
}

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(
    const std::string& path) {
  Options options;
  options.path = path;
  return Open(options);
}

absl::StatusOr<std::unique_ptr<DataDir>> DataDir::Open(const Options& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("data_dir must not be empty");
  }
  std::string root = options.path;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  ENGRAM_RETURN_IF_ERROR(EnsureDirectory(root));
  for (const char* sub : {"collections", "segments", "graphs"}) {
    ENGRAM_RETURN_IF_ERROR(EnsureDirectory(absl::StrCat(root, "/", sub)));
  }
  return std::unique_ptr<DataDir>(new DataDir(std::move(root), options));
}

DataDir::~DataDir() { StopFollowing(); }

std::string DataDir::ManifestPath(absl::string_view name) const {
  return absl::StrCat(path_, "/collections/", name, kManifestSuffix);
}

std::string DataDir::SegmentPath(absl::string_view file) const {
  return absl::StrCat(path_, "/segments/", file);
}

std::string DataDir::GraphPath(absl::string_view name) const {
  return absl::StrCat(path_, "/graphs/", name, kGraphSuffix);
}

std::string DataDir::GraphLogPath(absl::string_view name) const {
  return absl::StrCat(path_, "/graphs/", name, kGraphLogSuffix);
}

absl::StatusOr<storage::SegmentRef> DataDir::StoreSegment(
    absl::string_view name, const Segment& segment) {
  storage::SegmentRef ref;
  ref.set_file(UniqueFileName(name, kSegmentSuffix));
  absl::StatusOr<uint32_t> crc =
      WriteSegmentSnapshot(name, segment, SegmentPath(ref.file()));
  if (!crc.ok()) return WriteError(crc.status());
  ref.set_rows(segment.rows());
  ref.set_payload_crc32c(*crc);
  ref.set_has_ids(!segment.ids().empty());
  return ref;
}

absl::Status DataDir::WriteManifest(
    const storage::CollectionManifest& manifest) {
  const std::string bytes = EncodeManifest(manifest);
  return WriteError(
      WriteFileAtomically(ManifestPath(manifest.name()),
                          [&](FileSink& sink) { return sink.Write(bytes); }));
}

std::string DataDir::AddPending(storage::SegmentRef ref) {
  std::string handle = ref.file();
  absl::MutexLock lock(&mu_);
  pending_[handle] = std::move(ref);
  return handle;
}

absl::StatusOr<std::string> DataDir::WriteSegment(absl::string_view name,
                                                  const Segment& segment) {
  ENGRAM_ASSIGN_OR_RETURN(storage::SegmentRef ref, StoreSegment(name, segment));
  return AddPending(std::move(ref));
}

// The segment file of one upload, written as its rows arrive; once finished
// it is a pending segment like one WriteSegment wrote.
class DataDir::StreamedSegment final : public SegmentWriter {
 public:
  StreamedSegment(DataDir* dir, std::string file, uint64_t rows, bool with_ids,
                  std::unique_ptr<SegmentFileWriter> writer)
      : dir_(dir),
        file_(std::move(file)),
        rows_(rows),
        with_ids_(with_ids),
        writer_(std::move(writer)) {}

  absl::Status Write(uint64_t first_row, const float* vectors,
                     const uint64_t* ids, uint64_t rows) override {
    return WriteError(writer_->Write(first_row, vectors, ids, rows));
  }

  absl::StatusOr<std::string> Finish() override {
    absl::StatusOr<uint32_t> crc = writer_->Finish();
    if (!crc.ok()) return WriteError(crc.status());
    storage::SegmentRef ref;
    ref.set_file(file_);
    ref.set_rows(rows_);
    ref.set_payload_crc32c(*crc);
    ref.set_has_ids(with_ids_);
    return dir_->AddPending(std::move(ref));
  }

 private:
  DataDir* const dir_;
  const std::string file_;
  const uint64_t rows_;
  const bool with_ids_;
  const std::unique_ptr<SegmentFileWriter> writer_;
};

absl::StatusOr<std::unique_ptr<SegmentWriter>> DataDir::BeginSegment(
    absl::string_view name, uint32_t dimension, uint64_t rows, bool with_ids) {
  SegmentFileWriter::Options options;
  options.name = std::string(name);
  options.rows = rows;
  options.dimension = dimension;
  options.with_ids = with_ids;
  std::string file = UniqueFileName(name, kSegmentSuffix);
  options.path = SegmentPath(file);
  absl::StatusOr<std::unique_ptr<SegmentFileWriter>> writer =
      SegmentFileWriter::Create(options);
  if (!writer.ok()) return WriteError(writer.status());
  return std::unique_ptr<SegmentWriter>(new StreamedSegment(
      this, std::move(file), rows, with_ids, *std::move(writer)));
}

void DataDir::DiscardSegment(const std::string& handle) {
  if (handle.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    pending_.erase(handle);
    // The catalog may name it: a resync loads it, or start-up removes it
    // once old enough.
    if (uncertain_.erase(handle) > 0) return;
  }
  // Not durable on purpose: a file that survives a crash is named by no
  // manifest, and Load() removes it.
  std::error_code ignored;
  fs::remove(SegmentPath(handle), ignored);
}

absl::Status DataDir::Commit(const Collection& next, const std::string& added) {
  absl::MutexLock lock(&mu_);
  storage::CollectionManifest manifest;
  auto it = manifests_.find(next.name());
  const bool fresh = it == manifests_.end();
  // Files this commit wrote (removed when it fails) and files the new
  // manifest no longer names (removed once it is committed).
  std::vector<std::string> written;
  storage::CollectionManifest superseded;
  auto fail = [&](absl::Status status) {
    for (const std::string& file : written) {
      std::error_code ignored;
      fs::remove(SegmentPath(file), ignored);
    }
    return status;
  };
  auto store_labels = [&](const Segment& segment,
                          storage::SegmentRef* ref) -> absl::Status {
    if (segment.labels() == nullptr) return absl::OkStatus();
    ref->set_labels_file(UniqueFileName(next.name(), kLabelsSuffix));
    absl::StatusOr<uint32_t> crc =
        WriteLabelsFile(*segment.labels(), SegmentPath(ref->labels_file()));
    if (!crc.ok()) return WriteError(crc.status());
    written.push_back(ref->labels_file());
    ref->set_labels_crc32c(*crc);
    return absl::OkStatus();
  };
  if (!fresh && !next.rewritten()) {
    manifest = it->second;
  } else {
    // New here (a create, or a collection loaded from an operator's file
    // that a client changes now, whose earlier rows must be stored too),
    // or rewritten whole by a compaction.
    if (!fresh) superseded = it->second;
    manifest.set_name(next.name());
    manifest.set_dimension(next.dimension());
    manifest.set_source(next.source());
    for (const auto& [key, value] : next.metadata()) {
      (*manifest.mutable_metadata())[key] = value;
    }
    const size_t earlier =
        next.rewritten() ? 0 : next.segments().size() - (added.empty() ? 0 : 1);
    for (size_t i = 0; i < earlier; ++i) {
      absl::StatusOr<storage::SegmentRef> ref =
          StoreSegment(next.name(), *next.segments()[i]);
      if (!ref.ok()) return fail(ref.status());
      written.push_back(ref->file());
      if (absl::Status s = store_labels(*next.segments()[i], &*ref); !s.ok()) {
        return fail(s);
      }
      *manifest.add_segments() = *std::move(ref);
    }
  }
  if (!added.empty()) {
    auto pending = pending_.find(added);
    if (pending == pending_.end()) {
      return fail(absl::InternalError(
          absl::StrCat("segment ", added, " was not written by this journal")));
    }
    storage::SegmentRef ref = pending->second;
    if (absl::Status s = store_labels(*next.segments().back(), &ref); !s.ok()) {
      return fail(s);
    }
    *manifest.add_segments() = std::move(ref);
  }
  // Dead rows: appended to the manifest's list, folded into a new file once
  // the list is long; written whole for a manifest made from scratch.
  if (fresh || next.rewritten()) {
    manifest.clear_dead_file();
    manifest.clear_dead_crc32c();
    manifest.clear_dead_rows();
  }
  if (!fresh && !next.rewritten()) {
    for (uint64_t row : next.killed()) manifest.add_dead_rows(row);
  }
  const bool fold = manifest.dead_rows_size() > kMaxListedDeadRows ||
                    ((fresh || next.rewritten()) && next.dead_rows() > 0);
  if (fold) {
    if (!manifest.dead_file().empty()) {
      superseded.set_dead_file(manifest.dead_file());
    }
    manifest.set_dead_file(UniqueFileName(next.name(), kDeadSuffix));
    absl::StatusOr<uint32_t> crc = WriteDeadRowsFile(
        next.dead_words(), next.rows(), SegmentPath(manifest.dead_file()));
    if (!crc.ok()) return fail(WriteError(crc.status()));
    written.push_back(manifest.dead_file());
    manifest.set_dead_crc32c(*crc);
    manifest.clear_dead_rows();
  }
  const uint64_t stored_version = fresh ? 0 : it->second.version();
  manifest.set_version(next.version());
  manifest.clear_committed_keys();
  for (const CommittedKey& key : next.committed_keys()) {
    storage::CommittedKey* stored = manifest.add_committed_keys();
    stored->set_key(key.key);
    stored->set_version(key.version);
  }
  if (catalog_ != nullptr) {
    absl::Status committed =
        CommitToCatalog(std::move(manifest), added, stored_version);
    if (!committed.ok()) {
      // An unanswered write may have reached the catalog, which would then
      // name these files: start-up removes them once old enough if not.
      if (absl::IsAborted(committed) || absl::IsAlreadyExists(committed)) {
        return fail(committed);
      }
      return committed;
    }
    // Other replicas may still be reading the superseded files (mapped, on
    // a shared volume): they are left to the start-up sweep of files no
    // entry names (RemoveUnreferenced), as an interrupted write's are.
    return absl::OkStatus();
  }
  if (absl::Status s = WriteManifest(manifest); !s.ok()) return fail(s);
  if (!added.empty()) pending_.erase(added);
  manifests_[next.name()] = std::move(manifest);
  RemoveSegmentFiles(superseded);
  return absl::OkStatus();
}

absl::Status DataDir::Delete(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  if (catalog_ != nullptr) return DeleteFromCatalog(name);
  auto it = manifests_.find(name);
  // The manifest goes first: once it is gone the collection is, whatever
  // happens to its segments.
  ENGRAM_RETURN_IF_ERROR(WriteError(RemoveFileDurably(ManifestPath(name))));
  if (it == manifests_.end()) return absl::OkStatus();
  RemoveSegmentFiles(it->second);
  manifests_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DataDir::CommitGraph(const Graph& graph) {
  if (catalog_ != nullptr) return CommitGraphToCatalog(graph);
  // The name was free, so nothing else writes its files now. A log left by
  // a delete that stopped half-way must not follow the new graph.
  {
    absl::MutexLock lock(&graph_mu_);
    stored_graphs_.erase(graph.name());
  }
  ENGRAM_RETURN_IF_ERROR(
      WriteError(RemoveFileDurably(GraphLogPath(graph.name()))));
  ENGRAM_RETURN_IF_ERROR(
      WriteError(WriteGraphSnapshot(graph, GraphPath(graph.name()))));
  absl::MutexLock lock(&graph_mu_);
  stored_graphs_[graph.name()].file_version = graph.version();
  return graph.version();
}

absl::Status DataDir::DeleteGraph(absl::string_view name) {
  if (catalog_ != nullptr) return DeleteGraphFromCatalog(name);
  // The graph file goes first: once it is gone the graph is, whatever
  // happens to its log (Load removes a log without a graph).
  ENGRAM_RETURN_IF_ERROR(WriteError(RemoveFileDurably(GraphPath(name))));
  {
    absl::MutexLock lock(&graph_mu_);
    if (auto it = stored_graphs_.find(name); it != stored_graphs_.end()) {
      stored_graphs_.erase(it);
    }
  }
  std::error_code ignored;
  fs::remove(GraphLogPath(name), ignored);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DataDir::CommitGraphEdit(const Graph& previous,
                                                  const Graph& next,
                                                  const GraphEdit& edit,
                                                  absl::string_view key) {
  if (catalog_ != nullptr) {
    return CommitGraphEditToCatalog(previous, edit, key);
  }
  const std::string& name = next.name();
  // The store makes one update at a time, so holding this through the
  // fsync delays nothing else.
  absl::MutexLock lock(&graph_mu_);
  StoredGraph& stored = stored_graphs_[name];
  if (stored.log == nullptr) {
    // The first update since the graph file was written: the log starts at
    // the file's version. A graph the directory does not hold at
    // `previous`'s version is written whole first.
    if (stored.file_version == 0 || stored.file_version != previous.version()) {
      ENGRAM_RETURN_IF_ERROR(
          WriteError(WriteGraphSnapshot(previous, GraphPath(name))));
      stored.file_version = previous.version();
    }
    storage::GraphEditLogHeader header;
    header.set_name(name);
    header.set_base_version(previous.version());
    for (const CommittedKey& k : previous.committed_keys()) {
      storage::CommittedKey* stored_key = header.add_committed_keys();
      stored_key->set_key(k.key);
      stored_key->set_version(k.version);
    }
    const std::string log_path = GraphLogPath(name);
    ENGRAM_RETURN_IF_ERROR(WriteError(WriteGraphEditLog(log_path, header, {})));
    absl::StatusOr<std::unique_ptr<GraphEditLogWriter>> writer =
        GraphEditLogWriter::Open(log_path);
    if (!writer.ok()) return WriteError(writer.status());
    stored.log = *std::move(writer);
  }
  ENGRAM_RETURN_IF_ERROR(WriteError(
      stored.log->Append(EncodeGraphEdit(edit, next.version(), key))));
  return next.version();
}

absl::StatusOr<std::string> DataDir::WriteGraphMerge(const Graph& merged) {
  // Another replica's merge to share: this one keeps its merge in memory,
  // and writes nothing.
  if (catalog_ != nullptr) {
    ENGRAM_RETURN_IF_ERROR(SharesGraphMerge(merged.name()));
  }
  const std::string file =
      catalog_ != nullptr ? UniqueFileName(merged.name(), kGraphSuffix)
                          : UniqueFileName(merged.name(), kGraphMergeSuffix);
  ENGRAM_RETURN_IF_ERROR(WriteError(
      WriteGraphSnapshot(merged, absl::StrCat(path_, "/graphs/", file))));
  return file;
}

void DataDir::DiscardGraphMerge(const std::string& handle) {
  std::error_code ignored;
  fs::remove(absl::StrCat(path_, "/graphs/", handle), ignored);
}

absl::Status DataDir::CommitGraphMerge(const Graph& merged,
                                       const Graph& current,
                                       const std::string& handle) {
  if (catalog_ != nullptr) {
    absl::Status committed = CommitGraphMergeToCatalog(merged, current, handle);
    if (!committed.ok()) DiscardGraphMerge(handle);
    return committed;
  }
  const std::string& name = merged.name();
  absl::MutexLock lock(&graph_mu_);
  auto it = stored_graphs_.find(name);
  if (it == stored_graphs_.end()) {
    // Not this directory's graph (an operator's file no update changed).
    DiscardGraphMerge(handle);
    return absl::OkStatus();
  }
  StoredGraph& stored = it->second;
  const std::string log_path = GraphLogPath(name);
  // The updates the merged file does not hold, before the file replaces
  // the old one (the log is read from its start, so any order works; a
  // crash between the two steps leaves a log whose older updates loading
  // skips).
  std::vector<storage::GraphEdit> kept;
  if (stored.log != nullptr) {
    absl::StatusOr<GraphEditLogContents> log = ReadGraphEditLog(log_path);
    if (!log.ok()) {
      DiscardGraphMerge(handle);
      return WriteError(log.status());
    }
    for (storage::GraphEdit& edit : log->edits) {
      if (edit.version() > merged.version()) kept.push_back(std::move(edit));
    }
  }
  if (absl::Status renamed = RenameFileDurably(
          absl::StrCat(path_, "/graphs/", handle), GraphPath(name));
      !renamed.ok()) {
    DiscardGraphMerge(handle);
    return WriteError(renamed);
  }
  stored.file_version = merged.version();
  stored.log.reset();
  storage::GraphEditLogHeader header;
  header.set_name(name);
  header.set_base_version(merged.version());
  for (const CommittedKey& k : merged.committed_keys()) {
    storage::CommittedKey* stored_key = header.add_committed_keys();
    stored_key->set_key(k.key);
    stored_key->set_version(k.version);
  }
  ENGRAM_RETURN_IF_ERROR(WriteError(WriteGraphEditLog(log_path, header, kept)));
  absl::StatusOr<std::unique_ptr<GraphEditLogWriter>> writer =
      GraphEditLogWriter::Open(log_path);
  if (!writer.ok()) return WriteError(writer.status());
  stored.log = *std::move(writer);
  return absl::OkStatus();
}

LoadOutcome DataDir::LoadStoredGraph(const std::string& name,
                                     GraphStore* store) {
  const std::string path = GraphPath(name);
  const std::string log_path = GraphLogPath(name);
  LoadOutcome outcome = StoredOutcome(ResidentKind::kGraph, name, path);
  const absl::Time start = absl::Now();
  auto fail = [&](const absl::Status& status) {
    outcome.status = status.code() == absl::StatusCode::kResourceExhausted
                         ? status
                         : absl::DataLossError(status.message());
    store->Evict(name).IgnoreError();
    store->MarkLost(name, outcome.status).IgnoreError();
    outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    return outcome;
  };
  absl::StatusOr<uint64_t> file_version = ReadGraphSnapshotVersion(path);
  if (!file_version.ok()) return fail(file_version.status());
  absl::StatusOr<GraphEditLogContents> log = ReadGraphEditLog(log_path);
  if (!log.ok() && !absl::IsNotFound(log.status())) return fail(log.status());
  std::vector<CommittedKey> keys;
  uint64_t version = *file_version;
  if (log.ok()) {
    if (log->header.name() != name) {
      return fail(absl::DataLossError(
          absl::StrCat(log_path, ": holds the updates of graph \"",
                       log->header.name(), "\"")));
    }
    // A version past the file's field: the log's base is the file's.
    if (version == 0) version = log->header.base_version();
    for (const auto& k : log->header.committed_keys()) {
      keys.push_back({k.key(), k.version()});
    }
    // The keys of updates the file already holds (a merge that stopped
    // before it rewrote the log).
    for (const storage::GraphEdit& edit : log->edits) {
      if (edit.version() <= version && !edit.idempotency_key().empty()) {
        keys.push_back({edit.idempotency_key(), edit.version()});
      }
    }
    if (keys.size() > kMaxCommittedKeys) {
      keys.erase(keys.begin(), keys.end() - kMaxCommittedKeys);
    }
  }
  LoadGraphFile(path, name, version, store, &outcome, std::move(keys));
  if (!outcome.status.ok()) return fail(outcome.status);
  std::unique_ptr<GraphEditLogWriter> writer;
  if (log.ok()) {
    uint64_t last = version;
    for (const storage::GraphEdit& stored : log->edits) {
      if (stored.version() <= version) continue;
      if (stored.version() <= last) {
        return fail(absl::DataLossError(
            absl::StrCat(log_path, ": an update of version ", stored.version(),
                         " follows version ", last)));
      }
      absl::StatusOr<GraphEdit> edit = DecodeGraphEdit(stored, log_path);
      if (!edit.ok()) return fail(edit.status());
      GraphUpdateOptions options;
      options.version = stored.version();
      options.idempotency_key = stored.idempotency_key();
      absl::StatusOr<GraphUpdateResult> applied =
          store->Update(name, *edit, options);
      if (!applied.ok()) {
        return fail(absl::Status(
            applied.status().code(),
            absl::StrCat(log_path, ": the update of version ", stored.version(),
                         ": ", applied.status().message())));
      }
      last = stored.version();
    }
    if (log->torn) ++leftovers_removed_;
    absl::StatusOr<std::unique_ptr<GraphEditLogWriter>> opened =
        GraphEditLogWriter::Open(log_path, log->valid_bytes);
    if (!opened.ok()) return fail(opened.status());
    writer = *std::move(opened);
  }
  if (absl::StatusOr<GraphInfo> info = store->Describe(name); info.ok()) {
    outcome.rows = info->num_nodes;
    outcome.bytes = info->bytes;
  }
  {
    absl::MutexLock lock(&graph_mu_);
    StoredGraph& stored = stored_graphs_[name];
    stored.file_version = version;
    stored.log = std::move(writer);
  }
  outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return outcome;
}

absl::Status DataDir::LoadSegments(const storage::CollectionManifest& manifest,
                                   int skip, bool create,
                                   CollectionStore* store,
                                   const std::string& where, bool replace) {
  const std::string& name = manifest.name();
  uint64_t rows = 0;
  uint64_t all_rows = 0;
  bool with_ids = false;
  for (int i = 0; i < manifest.segments_size(); ++i) {
    all_rows += manifest.segments(i).rows();
    if (i < skip) continue;
    rows += manifest.segments(i).rows();
    with_ids = with_ids || manifest.segments(i).has_ids();
  }
  auto located = [&](const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat(where, ": ", status.message()));
  };
  // The version's dead rows: its file's and those it lists.
  std::vector<uint64_t> dead;
  if (!manifest.dead_file().empty()) {
    ENGRAM_ASSIGN_OR_RETURN(dead,
                            ReadDeadRowsFile(SegmentPath(manifest.dead_file()),
                                             manifest.dead_crc32c(), all_rows));
  }
  for (uint64_t row : manifest.dead_rows()) {
    if (row >= all_rows) {
      return absl::DataLossError(absl::StrCat(
          where, ": dead row ", row, " is past the ", all_rows, " rows"));
    }
    dead.push_back(row);
  }
  std::sort(dead.begin(), dead.end());
  dead.erase(std::unique(dead.begin(), dead.end()), dead.end());
  std::vector<CommittedKey> keys;
  for (const auto& key : manifest.committed_keys()) {
    keys.push_back({key.key(), key.version()});
  }
  if (rows == 0 && create) {
    if (!dead.empty()) {
      return absl::DataLossError(
          absl::StrCat(where,
                       ": dead rows listed for a collection without "
                       "rows"));
    }
    if (replace) store->Evict(name).IgnoreError();
    CollectionSpec spec;
    spec.name = name;
    spec.dimension = manifest.dimension();
    spec.metadata =
        Metadata(manifest.metadata().begin(), manifest.metadata().end());
    absl::StatusOr<std::shared_ptr<const Collection>> restored =
        store->RestoreEmpty(spec, manifest.version(), manifest.source());
    return restored.ok() ? absl::OkStatus() : located(restored.status());
  }
  if (rows == 0) {
    // A version that only deleted rows.
    absl::StatusOr<std::shared_ptr<const Collection>> restored =
        store->RestoreDeletions(name, manifest.version(), dead, keys);
    return restored.ok() ? absl::OkStatus() : located(restored.status());
  }
  uint64_t first_row = 0;
  UploadOptions options;
  options.name = name;
  options.create = create;
  options.replace = replace;
  options.dimension = manifest.dimension();
  if (create) {
    options.metadata =
        Metadata(manifest.metadata().begin(), manifest.metadata().end());
    options.source = manifest.source();
  } else {
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Collection> current,
                            store->Get(name));
    first_row = current->rows();
  }
  options.rows = rows;
  options.with_ids = with_ids;
  options.version = manifest.version();
  options.durable = false;
  options.blocks = map_segments_;
  options.restored_keys = std::move(keys);
  options.restored_dead = std::move(dead);
  absl::StatusOr<std::unique_ptr<CollectionUpload>> upload =
      store->BeginUpload(options);
  if (!upload.ok()) return located(upload.status());
  uint64_t upload_row = 0;
  for (int i = skip; i < manifest.segments_size(); ++i) {
    const storage::SegmentRef& segment = manifest.segments(i);
    SegmentExpectation expected;
    expected.rows = segment.rows();
    expected.has_ids = segment.has_ids();
    expected.payload_crc = segment.payload_crc32c();
    absl::Status appended =
        AppendSegmentSnapshot(SegmentPath(segment.file()), expected, first_row,
                              upload->get(), with_ids, map_segments_);
    if (appended.ok() && !segment.labels_file().empty()) {
      absl::StatusOr<std::vector<RowLabels>> labels =
          ReadLabelsFile(SegmentPath(segment.labels_file()),
                         segment.labels_crc32c(), segment.rows());
      appended = labels.ok() ? (*upload)->AddLabels(upload_row, *labels)
                             : labels.status();
    }
    if (!appended.ok()) {
      (*upload)->Abort();
      // A missing or damaged segment is lost data, whatever errno said.
      return absl::DataLossError(appended.message());
    }
    first_row += segment.rows();
    upload_row += segment.rows();
  }
  return (*upload)->Commit().status();
}

LoadOutcome DataDir::LoadCollection(const std::string& manifest_path,
                                    CollectionStore* store, bool* unreadable) {
  const std::string file = fs::path(manifest_path).filename().string();
  const std::string name = file.substr(0, file.size() - kManifestSuffix.size());
  LoadOutcome outcome =
      StoredOutcome(ResidentKind::kCollection, name, manifest_path);
  const absl::Time start = absl::Now();
  auto fail = [&](absl::Status status) {
    outcome.status = status;
    // A lost name still answers, with this error, until it is deleted.
    store->MarkLost(name, status).IgnoreError();
    return outcome;
  };

  std::string bytes;
  {
    absl::StatusOr<FileReader> reader = FileReader::Open(manifest_path);
    if (!reader.ok()) {
      *unreadable = true;
      return fail(absl::DataLossError(reader.status().message()));
    }
    bytes.resize(static_cast<size_t>(
        std::min<uint64_t>(reader->size(), kMaxManifestBytes + 1)));
    if (absl::Status read = reader->Read(bytes.data(), bytes.size());
        !read.ok()) {
      *unreadable = true;
      return fail(absl::DataLossError(read.message()));
    }
  }
  absl::StatusOr<storage::CollectionManifest> manifest =
      DecodeManifest(manifest_path, bytes);
  if (manifest.ok() && manifest->name() != name) {
    manifest = absl::DataLossError(
        absl::StrCat(manifest_path, ": holds collection \"", manifest->name(),
                     "\", not \"", name, "\""));
  }
  if (!manifest.ok()) {
    *unreadable = true;
    storage::CollectionManifest placeholder;
    placeholder.set_name(name);
    {
      absl::MutexLock lock(&mu_);
      manifests_[name] = std::move(placeholder);
    }
    return fail(manifest.status());
  }
  {
    // Known from here on, so that a Delete of a lost collection removes
    // its segments as well as its manifest.
    absl::MutexLock lock(&mu_);
    manifests_[name] = *manifest;
  }

  if (absl::Status loaded =
          LoadSegments(*manifest, 0, /*create=*/true, store, manifest_path);
      !loaded.ok()) {
    return fail(loaded);
  }
  uint64_t rows = 0;
  for (const auto& segment : manifest->segments()) rows += segment.rows();
  outcome.rows = rows;
  if (absl::StatusOr<CollectionInfo> info = store->Describe(name); info.ok()) {
    outcome.bytes = info->bytes;
  }
  outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return outcome;
}

absl::StatusOr<std::vector<LoadOutcome>> DataDir::Load(
    CollectionStore* collections, GraphStore* graphs) {
  collections_ = collections;
  graphs_ = graphs;
  if (catalog_ != nullptr) return LoadFromCatalog();
  std::vector<LoadOutcome> outcomes;
  bool unreadable = false;
  const std::string collections_dir = absl::StrCat(path_, "/collections");
  const std::string graphs_dir = absl::StrCat(path_, "/graphs");
  for (const std::string& dir :
       {collections_dir, absl::StrCat(path_, "/segments"), graphs_dir}) {
    for (const std::string& file : FilesIn(dir)) {
      if (IsAtomicWriteLeftover(file)) {
        std::error_code ignored;
        if (fs::remove(absl::StrCat(dir, "/", file), ignored)) {
          ++leftovers_removed_;
        }
      }
    }
  }
  for (const std::string& file : FilesIn(collections_dir)) {
    if (!absl::EndsWith(file, kManifestSuffix)) continue;
    outcomes.push_back(LoadCollection(absl::StrCat(collections_dir, "/", file),
                                      collections, &unreadable));
  }
  std::set<std::string> graph_files;
  for (const std::string& file : FilesIn(graphs_dir)) {
    if (absl::EndsWith(file, kGraphSuffix)) graph_files.insert(file);
  }
  for (const std::string& file : FilesIn(graphs_dir)) {
    // A merge's file that was never renamed into place, and the log of a
    // graph whose delete stopped after removing its file.
    const bool orphan_log =
        absl::EndsWith(file, kGraphLogSuffix) &&
        graph_files.count(
            absl::StrCat(file.substr(0, file.size() - kGraphLogSuffix.size()),
                         kGraphSuffix)) == 0;
    if (absl::EndsWith(file, kGraphMergeSuffix) || orphan_log) {
      std::error_code ignored;
      if (fs::remove(absl::StrCat(graphs_dir, "/", file), ignored)) {
        ++leftovers_removed_;
      }
    }
  }
  for (const std::string& file : graph_files) {
    outcomes.push_back(LoadStoredGraph(
        file.substr(0, file.size() - kGraphSuffix.size()), graphs));
  }
  if (!unreadable) RemoveUnreferenced(absl::ZeroDuration());
  return outcomes;
}

void DataDir::RemoveUnreferenced(absl::Duration min_age) {
  if (catalog_ != nullptr) {
    for (const std::string& file :
         FilesIn(absl::StrCat(path_, "/collections"))) {
      // A directory written without a catalog: its manifests name segments
      // the catalog does not know, and they are not this mode's to remove.
      if (absl::EndsWith(file, kManifestSuffix)) return;
    }
  }
  std::set<std::string> referenced;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, manifest] : manifests_) {
      for (const auto& segment : manifest.segments()) {
        referenced.insert(segment.file());
        referenced.insert(segment.labels_file());
      }
      referenced.insert(manifest.dead_file());
    }
    for (const auto& [handle, ref] : pending_) referenced.insert(handle);
    for (const auto& [name, entry] : graph_entries_) {
      referenced.insert(entry.file());
      for (const auto& edit : entry.edits()) referenced.insert(edit.file());
    }
    for (const auto& [time, file] : retired_graph_files_) {
      referenced.insert(file);
    }
  }
  const auto now = fs::file_time_type::clock::now();
  auto remove_if_old = [&](const std::string& path) {
    std::error_code error;
    if (min_age > absl::ZeroDuration()) {
      const auto written = fs::last_write_time(path, error);
      if (error || now - written < absl::ToChronoSeconds(min_age)) return;
    }
    if (fs::remove(path, error)) ++leftovers_removed_;
  };
  for (const std::string& file : FilesIn(absl::StrCat(path_, "/segments"))) {
    const bool ours = absl::EndsWith(file, kSegmentSuffix) ||
                      absl::EndsWith(file, kLabelsSuffix) ||
                      absl::EndsWith(file, kDeadSuffix);
    if (!ours || referenced.count(file) > 0) continue;
    remove_if_old(SegmentPath(file));
  }
  if (catalog_ == nullptr) return;
  // Shared mode: graphs and temporaries have unique names as segments do.
  for (const char* sub : {"graphs", "segments", "collections"}) {
    const std::string dir = absl::StrCat(path_, "/", sub);
    for (const std::string& file : FilesIn(dir)) {
      const bool graph = std::string(sub) == "graphs" &&
                         (absl::EndsWith(file, kGraphSuffix) ||
                          absl::EndsWith(file, ".edit")) &&
                         referenced.count(file) == 0;
      if (graph || IsAtomicWriteLeftover(file)) {
        remove_if_old(absl::StrCat(dir, "/", file));
      }
    }
  }
}

}  // namespace engram::collections
