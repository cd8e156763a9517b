// DataDir's shared mode: commits through the catalog, and the changes other
// replicas commit applied to this replica's stores (data_dir.h).
#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/collections/data_dir.h"
#include "core/collections/graph_edit_log.h"
#include "core/collections/snapshot.h"

namespace engram::collections {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kCollectionsPrefix = "collections/";
constexpr absl::string_view kGraphsPrefix = "graphs/";
// Files no catalog entry names are left this long to the replica that may
// be writing them (see RemoveUnreferenced).
constexpr absl::Duration kSharedLeftoverAge = absl::Hours(1);
// Files a graph's merge replaced are removed this long after it, so that a
// replica applying the entries before the merge can still read them.
constexpr absl::Duration kRetiredGraphFileAge = absl::Minutes(10);
constexpr absl::string_view kGraphEditSuffix = ".edit";
// An entry listing this many updates is merged by whichever replica merges
// first, not only by its last writer (see data_dir.h).
constexpr int kSharedMergeAnyReplicaEdits = 8192;

LoadOutcome CatalogOutcome(ResidentKind kind, const std::string& name,
                           const Catalog& catalog, absl::string_view key) {
  LoadOutcome outcome;
  outcome.declaration.kind = kind;
  outcome.declaration.name = name;
  outcome.declaration.path = absl::StrCat(catalog.Describe(), "/", key);
  outcome.format = FileFormat::kSnapshot;
  outcome.verified_by = "crc32c";
  return outcome;
}

// A failed catalog write as a client sees it. `what` names what was
// written; `create` turns a lost race into ALREADY_EXISTS.
absl::Status CommitError(const absl::Status& status, absl::string_view what,
                         bool create) {
  if (absl::IsAborted(status)) {
    if (create) {
      return absl::AlreadyExistsError(
          absl::StrCat(what, " was created on another replica meanwhile"));
    }
    return absl::AbortedError(absl::StrCat(
        what,
        " was changed on another replica meanwhile; nothing was "
        "committed (retry once this replica has the newer version)"));
  }
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
    return absl::UnavailableError(
        absl::StrCat("the catalog did not confirm the change to ", what,
                     " (it may or may not have been committed; resend with "
                     "the same idempotency key): ",
                     status.message()));
  }
  return status;
}

}  // namespace

absl::Status DataDir::CommitToCatalog(storage::CollectionManifest manifest,
                                      const std::string& added,
                                      uint64_t stored_version) {
  const std::string& name = manifest.name();
  const std::string what = absl::StrCat("collection \"", name, "\"");
  auto known = revisions_.find(name);
  const int64_t expected = known == revisions_.end() ? 0 : known->second;
  // Another replica's version may be loaded into the store but not yet
  // recorded here (ApplyCollection records it last): the store then numbers
  // this commit past the stored version, and it must not commit.
  if (expected != 0 && manifest.version() != stored_version + 1) {
    return CommitError(absl::AbortedError("version moved"), what, false);
  }
  absl::StatusOr<int64_t> revision = catalog_->PutIf(
      CollectionCatalogKey(name), EncodeManifest(manifest), expected);
  if (!revision.ok()) {
    if (!added.empty() && !absl::IsAborted(revision.status())) {
      uncertain_.insert(added);
    }
    return CommitError(revision.status(), what, expected == 0);
  }
  if (!added.empty()) pending_.erase(added);
  revisions_[name] = *revision;
  manifests_[name] = std::move(manifest);
  return absl::OkStatus();
}

absl::Status DataDir::DeleteFromCatalog(absl::string_view name) {
  auto known = revisions_.find(name);
  if (known == revisions_.end()) {
    // Not in the catalog: a collection of an operator's file.
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> revision =
      catalog_->DeleteIf(CollectionCatalogKey(name), known->second);
  if (!revision.ok()) {
    return CommitError(revision.status(),
                       absl::StrCat("collection \"", name, "\""), false);
  }
  revisions_.erase(known);
  if (auto it = manifests_.find(name); it != manifests_.end()) {
    RemoveSegmentFiles(it->second);
    manifests_.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DataDir::CommitGraphToCatalog(const Graph& graph) {
  storage::GraphManifest entry;
  entry.set_name(graph.name());
  entry.set_file(UniqueFileName(graph.name(), ".graph"));
  entry.set_source(graph.source());
  const std::string path = absl::StrCat(path_, "/graphs/", entry.file());
  if (absl::Status written = WriteGraphSnapshot(graph, path); !written.ok()) {
    return WriteError(written);
  }
  absl::MutexLock lock(&mu_);
  auto known = graph_revisions_.find(graph.name());
  const int64_t expected = known == graph_revisions_.end() ? 0 : known->second;
  absl::StatusOr<int64_t> revision = catalog_->PutIf(
      GraphCatalogKey(graph.name()), entry.SerializeAsString(), expected);
  const std::string what = absl::StrCat("graph \"", graph.name(), "\"");
  if (!revision.ok()) {
    if (absl::IsAborted(revision.status())) {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
    return CommitError(revision.status(), what, expected == 0);
  }
  graph_revisions_[graph.name()] = *revision;
  own_graph_writes_[graph.name()] = *revision;
  graph_entries_[graph.name()] =
      ResolveGraphManifest(std::move(entry), *revision);
  // The revision, not the store's counter: every replica that loads this
  // put sees the same number (ApplyGraph).
  return static_cast<uint64_t>(*revision);
}

storage::GraphManifest ResolveGraphManifest(storage::GraphManifest manifest,
                                            int64_t mod_revision) {
  const uint64_t revision = static_cast<uint64_t>(mod_revision);
  if (manifest.version() == 0) manifest.set_version(revision);
  if (manifest.file_version() == 0) manifest.set_file_version(revision);
  if (manifest.put_version() == 0) manifest.set_put_version(revision);
  for (auto& edit : *manifest.mutable_edits()) {
    if (edit.version() == 0) edit.set_version(revision);
  }
  for (auto& key : *manifest.mutable_committed_keys()) {
    if (key.version() == 0) key.set_version(revision);
  }
  return manifest;
}

absl::StatusOr<uint64_t> DataDir::CommitGraphEditToCatalog(
    const Graph& previous, const GraphEdit& edit, absl::string_view key) {
  RemoveRetiredGraphFiles();
  const std::string& name = previous.name();
  const std::string what = absl::StrCat("graph \"", name, "\"");
  {
    absl::MutexLock lock(&mu_);
    if (graph_revisions_.count(name) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, " was loaded from ", previous.source(),
          " on this replica and is not shared through the catalog; put it to "
          "update it"));
    }
  }
  // The update's own file first, as an upload's segment: the entry that
  // names it is the commit.
  const std::string file = UniqueFileName(name, kGraphEditSuffix);
  const std::string path = absl::StrCat(path_, "/graphs/", file);
  storage::GraphEditLogHeader header;
  header.set_name(name);
  const storage::GraphEdit stored = EncodeGraphEdit(edit, 0, key);
  ENGRAM_RETURN_IF_ERROR(
      WriteError(WriteGraphEditLog(path, header, {&stored, 1})));
  absl::MutexLock lock(&mu_);
  auto known = graph_revisions_.find(name);
  auto entry = graph_entries_.find(name);
  auto drop = [&] {
    std::error_code ignored;
    fs::remove(path, ignored);
  };
  if (known == graph_revisions_.end() || entry == graph_entries_.end()) {
    drop();
    return absl::NotFoundError(absl::StrCat(what, " was deleted meanwhile"));
  }
  // Another replica's update may be recorded here but not yet applied to
  // the store (ApplyGraph records it first): then `previous` is behind.
  if (entry->second.version() != previous.version()) {
    drop();
    return CommitError(absl::AbortedError("version moved"), what, false);
  }
  storage::GraphManifest next = entry->second;
  storage::GraphEditRef* ref = next.add_edits();
  ref->set_file(file);
  ref->set_version(0);
  next.set_version(0);
  if (!key.empty()) {
    storage::CommittedKey* added = next.add_committed_keys();
    added->set_key(std::string(key));
    added->set_version(0);
    const int excess =
        next.committed_keys_size() - static_cast<int>(kMaxCommittedKeys);
    if (excess > 0) {
      next.mutable_committed_keys()->DeleteSubrange(0, excess);
    }
  }
  absl::StatusOr<int64_t> revision = catalog_->PutIf(
      GraphCatalogKey(name), next.SerializeAsString(), known->second);
  if (!revision.ok()) {
    // Kept when the write may have reached the catalog: the entry then
    // names it.
    if (absl::IsAborted(revision.status())) drop();
    return CommitError(revision.status(), what, false);
  }
  known->second = *revision;
  own_graph_writes_[name] = *revision;
  entry->second = ResolveGraphManifest(std::move(next), *revision);
  return static_cast<uint64_t>(*revision);
}

absl::Status DataDir::CommitGraphMergeToCatalog(const Graph& merged,
                                                const Graph& current,
                                                const std::string& file) {
  RemoveRetiredGraphFiles();
  const std::string& name = merged.name();
  const std::string what = absl::StrCat("graph \"", name, "\"");
  absl::MutexLock lock(&mu_);
  auto known = graph_revisions_.find(name);
  auto entry = graph_entries_.find(name);
  if (known == graph_revisions_.end() || entry == graph_entries_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is not in the catalog"));
  }
  if (entry->second.version() != current.version()) {
    return CommitError(absl::AbortedError("version moved"), what, false);
  }
  ENGRAM_RETURN_IF_ERROR(SharesGraphMergeLocked(name));
  const storage::GraphManifest& old = entry->second;
  storage::GraphManifest next = old;
  next.set_file(file);
  next.set_file_version(merged.version());
  next.clear_edits();
  std::vector<std::string> retired = {old.file()};
  for (const storage::GraphEditRef& edit : old.edits()) {
    if (edit.version() > merged.version()) {
      *next.add_edits() = edit;
    } else {
      retired.push_back(edit.file());
    }
  }
  absl::StatusOr<int64_t> revision = catalog_->PutIf(
      GraphCatalogKey(name), next.SerializeAsString(), known->second);
  if (!revision.ok()) return CommitError(revision.status(), what, false);
  known->second = *revision;
  own_graph_writes_[name] = *revision;
  entry->second = std::move(next);
  const absl::Time now = absl::Now();
  for (std::string& retired_file : retired) {
    retired_graph_files_.push_back({now, std::move(retired_file)});
  }
  return absl::OkStatus();
}

absl::Status DataDir::SharesGraphMergeLocked(absl::string_view name) const {
  auto known = graph_revisions_.find(name);
  auto entry = graph_entries_.find(name);
  auto own = own_graph_writes_.find(name);
  if (known == graph_revisions_.end() || entry == graph_entries_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("graph \"", name, "\" is not in the catalog"));
  }
  if ((own == own_graph_writes_.end() || own->second != known->second) &&
      entry->second.edits_size() < kSharedMergeAnyReplicaEdits) {
    return absl::FailedPreconditionError(
        absl::StrCat("graph \"", name,
                     "\": the replica that wrote its entry last shares its "
                     "merge"));
  }
  return absl::OkStatus();
}

absl::Status DataDir::SharesGraphMerge(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  return SharesGraphMergeLocked(name);
}

void DataDir::RemoveRetiredGraphFiles() {
  std::vector<std::string> due;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time cutoff = absl::Now() - kRetiredGraphFileAge;
    auto old_end = std::find_if(
        retired_graph_files_.begin(), retired_graph_files_.end(),
        [&](const auto& retired) { return retired.first > cutoff; });
    for (auto it = retired_graph_files_.begin(); it != old_end; ++it) {
      due.push_back(std::move(it->second));
    }
    retired_graph_files_.erase(retired_graph_files_.begin(), old_end);
  }
  for (const std::string& file : due) {
    std::error_code ignored;
    fs::remove(absl::StrCat(path_, "/graphs/", file), ignored);
  }
}

absl::Status DataDir::DeleteGraphFromCatalog(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto known = graph_revisions_.find(name);
  if (known == graph_revisions_.end()) return absl::OkStatus();
  absl::StatusOr<int64_t> revision =
      catalog_->DeleteIf(GraphCatalogKey(name), known->second);
  if (!revision.ok()) {
    return CommitError(revision.status(), absl::StrCat("graph \"", name, "\""),
                       false);
  }
  graph_revisions_.erase(known);
  own_graph_writes_.erase(std::string(name));
  if (auto it = graph_entries_.find(name); it != graph_entries_.end()) {
    std::error_code ignored;
    fs::remove(absl::StrCat(path_, "/graphs/", it->second.file()), ignored);
    for (const storage::GraphEditRef& edit : it->second.edits()) {
      fs::remove(absl::StrCat(path_, "/graphs/", edit.file()), ignored);
    }
    graph_entries_.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LoadOutcome>> DataDir::LoadFromCatalog() {
  ENGRAM_ASSIGN_OR_RETURN(CatalogSnapshot snapshot, catalog_->List());
  std::vector<LoadOutcome> outcomes;
  for (const CatalogEntry& entry : snapshot.entries) {
    if (absl::optional<LoadOutcome> outcome = ApplyPut(entry)) {
      outcomes.push_back(*std::move(outcome));
    }
  }
  loaded_revision_ = snapshot.revision;
  RemoveUnreferenced(kSharedLeftoverAge);
  return outcomes;
}

absl::Status DataDir::Follow() {
  if (catalog_ == nullptr) {
    return absl::FailedPreconditionError("the data directory has no catalog");
  }
  if (loaded_revision_ < 0) {
    return absl::FailedPreconditionError(
        "the data directory must be loaded before it follows the catalog");
  }
  ENGRAM_RETURN_IF_ERROR(catalog_->Watch(loaded_revision_, &follower_));
  following_ = true;
  return absl::OkStatus();
}

void DataDir::StopFollowing() {
  if (catalog_ != nullptr && following_) catalog_->StopWatch();
  following_ = false;
}

void DataDir::Report(const absl::optional<LoadOutcome>& outcome) {
  if (outcome.has_value() && on_catalog_change_) on_catalog_change_(*outcome);
}

void DataDir::Follower::OnEvents(absl::Span<const CatalogEvent> events) {
  for (const CatalogEvent& event : events) {
    dir_->Report(event.type == CatalogEvent::Type::kPut
                     ? dir_->ApplyPut(event.entry)
                     : dir_->ApplyDelete(event.entry));
  }
}

void DataDir::Follower::OnResync(const CatalogSnapshot& snapshot) {
  dir_->Resync(snapshot);
}

absl::optional<LoadOutcome> DataDir::ApplyPut(const CatalogEntry& entry) {
  if (absl::StartsWith(entry.key, kCollectionsPrefix)) {
    const std::string name(entry.key.substr(kCollectionsPrefix.size()));
    {
      absl::MutexLock lock(&mu_);
      auto known = revisions_.find(name);
      if (known != revisions_.end() && known->second >= entry.mod_revision) {
        return absl::nullopt;  // this replica's own commit, or older
      }
    }
    return ApplyCollection(name, entry);
  }
  if (absl::StartsWith(entry.key, kGraphsPrefix)) {
    const std::string name(entry.key.substr(kGraphsPrefix.size()));
    {
      absl::MutexLock lock(&mu_);
      auto known = graph_revisions_.find(name);
      if (known != graph_revisions_.end() &&
          known->second >= entry.mod_revision) {
        return absl::nullopt;
      }
    }
    return ApplyGraph(name, entry);
  }
  return absl::nullopt;  // a key of a later build: not ours to judge
}

LoadOutcome DataDir::ApplyCollection(const std::string& name,
                                     const CatalogEntry& entry) {
  LoadOutcome outcome =
      CatalogOutcome(ResidentKind::kCollection, name, *catalog_, entry.key);
  const absl::Time start = absl::Now();
  const std::string where = outcome.declaration.path;
  absl::StatusOr<storage::CollectionManifest> manifest =
      DecodeManifest(where, entry.value);
  if (manifest.ok() && manifest->name() != name) {
    manifest = absl::DataLossError(
        absl::StrCat(where, ": holds collection \"", manifest->name(), "\""));
  }
  // Recorded before the stores change, so that from the moment a local
  // call can see the new version this replica commits and deletes against
  // its revision; a commit meanwhile numbers itself after the version the
  // store still serves and is refused (CommitToCatalog).
  storage::CollectionManifest local;
  bool have_local = false;
  int64_t local_revision = 0;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = manifests_.find(name); it != manifests_.end()) {
      local = it->second;
      have_local = true;
      local_revision = revisions_[name];
    }
    revisions_[name] = entry.mod_revision;
    if (manifest.ok()) {
      manifests_[name] = *manifest;
    } else {
      storage::CollectionManifest placeholder;
      placeholder.set_name(name);
      manifests_[name] = std::move(placeholder);
    }
  }
  absl::StatusOr<std::shared_ptr<const Collection>> current =
      collections_->Get(name);
  if (!manifest.ok()) {
    outcome.status = manifest.status();
    if (current.ok()) {
      collections_->SetBehind(name, outcome.status);
    } else {
      collections_->Evict(name).IgnoreError();
      collections_->MarkLost(name, outcome.status).IgnoreError();
    }
    return outcome;
  }

  // The local version extends to the new one when the new one keeps every
  // local segment, in order: only the new segments are read.
  bool extends = current.ok() && have_local &&
                 manifest->dimension() == (*current)->dimension() &&
                 manifest->version() > (*current)->version() &&
                 manifest->segments_size() >= local.segments_size();
  for (int i = 0; extends && i < local.segments_size(); ++i) {
    extends = local.segments(i).file() == manifest->segments(i).file();
  }
  absl::Status loaded;
  if (extends) {
    loaded = LoadSegments(*manifest, local.segments_size(), /*create=*/false,
                          collections_, where);
  } else {
    // New here, re-created under the same name, rewritten by a compaction,
    // or unreadable until now: the whole version is loaded beside the one
    // served, which it replaces only once it is complete.
    if (!current.ok() && !absl::IsNotFound(current.status())) {
      collections_->Evict(name).IgnoreError();  // forgets a lost name
    }
    loaded = LoadSegments(*manifest, 0, /*create=*/true, collections_, where,
                          /*replace=*/current.ok());
    if (!loaded.ok() && !current.ok()) {
      collections_->MarkLost(name, loaded).IgnoreError();
    }
  }
  if (!loaded.ok()) {
    outcome.status = loaded;
    if (current.ok()) {
      // The old version stays served, marked behind; this replica's view
      // goes back to it, so that a resync or the next version retries and
      // its own writes are refused by the catalog until then.
      collections_->SetBehind(name, loaded);
      absl::MutexLock lock(&mu_);
      revisions_[name] = local_revision;
      manifests_[name] = std::move(local);
    }
    return outcome;
  }
  for (const auto& segment : manifest->segments())
    outcome.rows += segment.rows();
  if (absl::StatusOr<CollectionInfo> info = collections_->Describe(name);
      info.ok()) {
    outcome.bytes = info->bytes;
  }
  outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return outcome;
}

LoadOutcome DataDir::ApplyGraph(const std::string& name,
                                const CatalogEntry& entry) {
  LoadOutcome outcome =
      CatalogOutcome(ResidentKind::kGraph, name, *catalog_, entry.key);
  const absl::Time start = absl::Now();
  storage::GraphManifest stored;
  const bool parsed =
      stored.ParseFromString(entry.value) && stored.name() == name;
  const storage::GraphManifest manifest =
      ResolveGraphManifest(std::move(stored), entry.mod_revision);
  absl::optional<storage::GraphManifest> local;
  int64_t local_revision = 0;
  {
    // Recorded first, as for collections (ApplyCollection).
    absl::MutexLock lock(&mu_);
    if (auto it = graph_entries_.find(name); it != graph_entries_.end()) {
      local = it->second;
      local_revision = graph_revisions_[name];
    }
    graph_revisions_[name] = entry.mod_revision;
    graph_entries_[name] = manifest;
  }
  if (!parsed) {
    outcome.status = absl::DataLossError(absl::StrCat(
        outcome.declaration.path, ": not a graph entry of \"", name, "\""));
  } else {
    ApplyGraphManifest(name, manifest, local, &outcome);
    if (absl::IsNotFound(outcome.status) && local.has_value()) {
      // A file of this entry is gone: a later entry (a merge that retired
      // it, or a delete) supersedes it. This replica keeps the version it
      // serves and its record of it until that entry arrives.
      absl::MutexLock lock(&mu_);
      if (graph_revisions_[name] == entry.mod_revision) {
        graph_revisions_[name] = local_revision;
        graph_entries_[name] = *local;
      }
      outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      return outcome;
    }
  }
  if (!outcome.status.ok()) {
    graphs_->Evict(name).IgnoreError();
    graphs_->MarkLost(name, outcome.status).IgnoreError();
  }
  outcome.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return outcome;
}

void DataDir::ApplyGraphManifest(
    const std::string& name, const storage::GraphManifest& manifest,
    const absl::optional<storage::GraphManifest>& local, LoadOutcome* outcome) {
  const std::string graphs_dir = absl::StrCat(path_, "/graphs/");
  // Reads and applies the entry's updates past `after`, in order.
  auto apply_edits = [&](uint64_t after) -> absl::Status {
    std::vector<std::pair<GraphEdit, const storage::GraphEditRef*>> edits;
    std::vector<std::string> keys;
    for (const storage::GraphEditRef& ref : manifest.edits()) {
      if (ref.version() <= after) continue;
      const std::string path = graphs_dir + ref.file();
      ENGRAM_ASSIGN_OR_RETURN(GraphEditLogContents file,
                              ReadGraphEditLog(path));
      if (file.edits.size() != 1 || file.header.name() != name) {
        return absl::DataLossError(
            absl::StrCat(path, ": not one update of graph \"", name, "\""));
      }
      ENGRAM_ASSIGN_OR_RETURN(GraphEdit edit,
                              DecodeGraphEdit(file.edits[0], path));
      edits.push_back({std::move(edit), &ref});
      keys.push_back(file.edits[0].idempotency_key());
    }
    // Every file was read before the first is applied, so that a missing
    // one (NOT_FOUND) leaves the served version as it was.
    for (size_t i = 0; i < edits.size(); ++i) {
      GraphUpdateOptions options;
      options.version = edits[i].second->version();
      options.idempotency_key = keys[i];
      absl::StatusOr<GraphUpdateResult> applied =
          graphs_->Update(name, edits[i].first, options);
      if (!applied.ok()) {
        return absl::Status(applied.status().code(),
                            absl::StrCat(graphs_dir, edits[i].second->file(),
                                         ": ", applied.status().message()));
      }
    }
    return absl::OkStatus();
  };
  auto describe = [&] {
    if (absl::StatusOr<GraphInfo> info = graphs_->Describe(name); info.ok()) {
      outcome->rows = info->num_nodes;
      outcome->bytes = info->bytes;
    }
  };

  absl::StatusOr<std::shared_ptr<const Graph>> current = graphs_->Get(name);
  if (current.ok() && local.has_value() &&
      local->put_version() == manifest.put_version() &&
      (*current)->version() >= manifest.file_version()) {
    // The same graph, behind or level: only its missing updates, if any.
    outcome->declaration.path = graphs_dir + manifest.file();
    const absl::Status applied = apply_edits((*current)->version());
    if (applied.ok()) {
      outcome->updated = true;
      describe();
      return;
    }
    if (!absl::IsNotFound(applied)) {
      outcome->status = applied;
      return;
    }
    // An update's file is gone: the whole graph, if its files are there.
  }
  const std::string path = graphs_dir + manifest.file();
  outcome->declaration.path = path;
  std::error_code error;
  bool files_there = fs::exists(path, error);
  for (const storage::GraphEditRef& ref : manifest.edits()) {
    files_there = files_there && fs::exists(graphs_dir + ref.file(), error);
  }
  if (!files_there) {
    outcome->status = absl::NotFoundError(
        absl::StrCat(path, " or one of its updates' files is gone"));
    return;
  }
  graphs_->Evict(name).IgnoreError();
  std::vector<CommittedKey> keys;
  for (const storage::CommittedKey& key : manifest.committed_keys()) {
    if (key.version() <= manifest.file_version()) {
      keys.push_back({key.key(), key.version()});
    }
  }
  LoadGraphFile(path, name, manifest.file_version(), graphs_, outcome,
                std::move(keys));
  if (!outcome->status.ok()) return;
  const absl::Status applied = apply_edits(manifest.file_version());
  if (!applied.ok()) {
    outcome->status = absl::IsNotFound(applied)
                          ? absl::DataLossError(applied.message())
                          : applied;
    return;
  }
  describe();
}

absl::optional<LoadOutcome> DataDir::ApplyDelete(const CatalogEntry& entry) {
  ResidentKind kind;
  std::string name;
  {
    absl::MutexLock lock(&mu_);
    // A name this replica holds at a later revision was created again
    // after this delete. One it does not hold any more was deleted here,
    // or while a load of it was under way: evicting is then harmless, or
    // removes what that load published after the delete.
    if (absl::StartsWith(entry.key, kCollectionsPrefix)) {
      kind = ResidentKind::kCollection;
      name = entry.key.substr(kCollectionsPrefix.size());
      auto it = revisions_.find(name);
      if (it != revisions_.end() && it->second > entry.mod_revision) {
        return absl::nullopt;
      }
      if (it != revisions_.end()) revisions_.erase(it);
      manifests_.erase(name);
    } else if (absl::StartsWith(entry.key, kGraphsPrefix)) {
      kind = ResidentKind::kGraph;
      name = entry.key.substr(kGraphsPrefix.size());
      auto it = graph_revisions_.find(name);
      if (it != graph_revisions_.end() && it->second > entry.mod_revision) {
        return absl::nullopt;
      }
      if (it != graph_revisions_.end()) graph_revisions_.erase(it);
      graph_entries_.erase(name);
    } else {
      return absl::nullopt;
    }
  }
  LoadOutcome outcome = CatalogOutcome(kind, name, *catalog_, entry.key);
  outcome.status = kind == ResidentKind::kCollection ? collections_->Evict(name)
                                                     : graphs_->Evict(name);
  if (absl::IsNotFound(outcome.status)) return absl::nullopt;  // our own
  outcome.evicted = true;
  return outcome;
}

void DataDir::Resync(const CatalogSnapshot& snapshot) {
  std::set<std::string> present;
  for (const CatalogEntry& entry : snapshot.entries) {
    present.insert(entry.key);
    Report(ApplyPut(entry));
  }
  std::vector<std::string> gone;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, revision] : revisions_) {
      if (present.count(CollectionCatalogKey(name)) == 0) {
        gone.push_back(CollectionCatalogKey(name));
      }
    }
    for (const auto& [name, revision] : graph_revisions_) {
      if (present.count(GraphCatalogKey(name)) == 0) {
        gone.push_back(GraphCatalogKey(name));
      }
    }
  }
  for (const std::string& key : gone) {
    CatalogEntry entry;
    entry.key = key;
    entry.mod_revision = snapshot.revision;
    Report(ApplyDelete(entry));
  }
}

}  // namespace engram::collections
