#include "core/collections/graph_store.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/collections/names.h"
#include "kernels/graph_overlay.h"

namespace engram::collections {
namespace {

absl::Status Finished(const std::string& name) {
  return absl::FailedPreconditionError(
      absl::StrCat("put of graph \"", name, "\" is already finished"));
}

// Adds `key` at `version` to `keys`, keeping the last kMaxCommittedKeys.
std::shared_ptr<const std::vector<CommittedKey>> WithKey(
    const std::vector<CommittedKey>& keys, const std::string& key,
    uint64_t version) {
  auto next = std::make_shared<std::vector<CommittedKey>>(keys);
  next->push_back({key, version});
  if (next->size() > kMaxCommittedKeys) {
    next->erase(next->begin(),
                next->begin() + (next->size() - kMaxCommittedKeys));
  }
  return next;
}

}  // namespace

bool Graph::Committed(absl::string_view key) const {
  for (const CommittedKey& k : *committed_keys_) {
    if (k.key == key) return true;
  }
  return false;
}

// --- GraphUpload ---

GraphUpload::~GraphUpload() { Abort(); }

absl::Status GraphUpload::AppendRowOffsets(absl::Span<const uint32_t> offsets) {
  if (finished_) return Finished(options_.name);
  const uint64_t expected = uint64_t{options_.num_nodes} + 1;
  if (offsets.size() > expected - offsets_received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.row_offsets brings ", offsets.size(),
                     " entries, but only ", expected - offsets_received_,
                     " of the declared num_nodes + 1 = ", expected, " remain"));
  }
  std::memcpy(staged_->row_offsets.data() + offsets_received_, offsets.data(),
              offsets.size() * sizeof(uint32_t));
  offsets_received_ += offsets.size();
  return absl::OkStatus();
}

absl::Status GraphUpload::AppendEdges(absl::Span<const uint32_t> targets,
                                      absl::Span<const float> weights) {
  if (finished_) return Finished(options_.name);
  if (targets.size() != weights.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "graph.weights has ", weights.size(),
        " entries, expected one per target (", targets.size(), ")"));
  }
  if (targets.size() > options_.num_edges - edges_received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.targets brings ", targets.size(),
                     " edges, but only ", options_.num_edges - edges_received_,
                     " of the declared ", options_.num_edges, " remain"));
  }
  std::memcpy(staged_->targets.data() + edges_received_, targets.data(),
              targets.size() * sizeof(uint32_t));
  std::memcpy(staged_->weights.data() + edges_received_, weights.data(),
              weights.size() * sizeof(float));
  edges_received_ += targets.size();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Graph>> GraphUpload::Commit() {
  if (finished_) return Finished(options_.name);
  const uint64_t expected_offsets = uint64_t{options_.num_nodes} + 1;
  if (offsets_received_ != expected_offsets ||
      edges_received_ != options_.num_edges) {
    const std::string what = absl::StrCat(
        "put of graph \"", options_.name, "\" received ", offsets_received_,
        " of ", expected_offsets, " row offsets and ", edges_received_, " of ",
        options_.num_edges, " edges; nothing was committed");
    Abort();
    return absl::FailedPreconditionError(what);
  }
  absl::Status valid = store_->options_.validate(staged_->view);
  if (!valid.ok()) {
    Abort();
    return valid;
  }
  absl::StatusOr<std::shared_ptr<const Graph>> published =
      store_->Publish(this);
  Abort();
  return published;
}

void GraphUpload::Abort() {
  if (finished_) return;
  finished_ = true;
  staged_.reset();
  store_->Unstage(*this);
}

// --- GraphStore ---

absl::StatusOr<std::unique_ptr<GraphStore>> GraphStore::Create(
    const Options& options) {
  if (options.budget == nullptr) {
    return absl::InvalidArgumentError("graph store: a budget is required");
  }
  if (!options.validate) {
    return absl::InvalidArgumentError(
        "graph store: a graph validator is required");
  }
  if (!(options.merge_share > 0.0 && options.merge_share <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph store: merge_share is ", options.merge_share,
                     ", must be in (0, 1]"));
  }
  if (options.merge_max_updates == 0) {
    return absl::InvalidArgumentError(
        "graph store: merge_max_updates must be >= 1");
  }
  std::unique_ptr<GraphStore> store(new GraphStore(options));
  {
    absl::MutexLock lock(&store->mu_);
    store->UpdateGaugesLocked();
  }
  if (options.background_merge) {
    GraphStore* self = store.get();
    store->merge_thread_ = std::thread([self] { self->RunMerges(); });
  }
  return store;
}

GraphStore::~GraphStore() {
  {
    absl::MutexLock lock(&merge_mu_);
    merge_stop_ = true;
  }
  if (merge_thread_.joinable()) merge_thread_.join();
}

absl::StatusOr<std::unique_ptr<GraphUpload>> GraphStore::BeginPut(
    const GraphPutOptions& options) {
  ENGRAM_RETURN_IF_ERROR(ValidateName("name", options.name));
  if (options.num_nodes == 0) {
    return absl::InvalidArgumentError("graph.num_nodes must be >= 1");
  }
  if (options.num_edges > kMaxGraphEdges) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", options.num_edges,
                     " edges, over the limit of ", kMaxGraphEdges));
  }
  auto taken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return graphs_.count(options.name) > 0 ||
           putting_.count(options.name) > 0 || lost_.count(options.name) > 0;
  };
  auto exists = [&] {
    return absl::AlreadyExistsError(
        absl::StrCat("graph \"", options.name, "\" already exists"));
  };
  {
    absl::MutexLock lock(&mu_);
    if (taken()) return exists();
  }
  const uint64_t offsets = uint64_t{options.num_nodes} + 1;
  const uint64_t bytes = offsets * sizeof(uint32_t) +
                         options.num_edges * (sizeof(uint32_t) + sizeof(float));
  ENGRAM_ASSIGN_OR_RETURN(
      Reservation reservation,
      options_.budget->Reserve(
          bytes,
          absl::StrCat("graph \"", options.name, "\" (", options.num_nodes,
                       " nodes, ", options.num_edges, " edges)")));
  auto graph = std::make_unique<GraphCsr>();
  try {
    graph->row_offsets = kernels::LargeBuffer<uint32_t>(offsets);
    graph->targets = kernels::LargeBuffer<uint32_t>(options.num_edges);
    graph->weights = kernels::LargeBuffer<float>(options.num_edges);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes for graph \"", options.name, "\""));
  }
  graph->reservation = std::move(reservation);
  graph->view.num_nodes = options.num_nodes;
  graph->view.row_offsets =
      absl::MakeConstSpan(graph->row_offsets.data(), offsets);
  graph->view.targets =
      absl::MakeConstSpan(graph->targets.data(), options.num_edges);
  graph->view.weights =
      absl::MakeConstSpan(graph->weights.data(), options.num_edges);
  {
    absl::MutexLock lock(&mu_);
    if (taken()) return exists();
    putting_[options.name] = 1;
  }
  std::unique_ptr<GraphUpload> upload(new GraphUpload(this, options));
  upload->staged_ = std::move(graph);
  return upload;
}

absl::StatusOr<std::shared_ptr<const Graph>> GraphStore::Put(
    absl::string_view name, const kernels::GraphView& graph,
    absl::string_view source) {
  GraphPutOptions options;
  options.name = std::string(name);
  options.num_nodes = graph.num_nodes;
  options.num_edges = graph.num_edges();
  options.source = std::string(source);
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<GraphUpload> upload,
                          BeginPut(options));
  ENGRAM_RETURN_IF_ERROR(upload->AppendRowOffsets(graph.row_offsets));
  ENGRAM_RETURN_IF_ERROR(upload->AppendEdges(graph.targets, graph.weights));
  return upload->Commit();
}

absl::StatusOr<std::shared_ptr<const Graph>> GraphStore::Publish(
    GraphUpload* upload) {
  std::shared_ptr<Graph> graph(new Graph());
  graph->csr_ = std::move(upload->staged_);
  graph->name_ = upload->options_.name;
  graph->uid_ = NewResidentId();
  graph->source_ =
      upload->options_.source.empty() ? "upload" : upload->options_.source;
  graph->committed_keys_ = std::make_shared<const std::vector<CommittedKey>>(
      upload->options_.restored_keys);
  {
    // Handed out before the journal runs, so that concurrent puts of
    // different names never share a version; a failed commit leaves a gap.
    absl::MutexLock lock(&mu_);
    graph->version_ = upload->options_.version != 0 ? upload->options_.version
                                                    : last_version_ + 1;
    last_version_ = std::max(last_version_, graph->version_);
  }
  if (upload->options_.durable && options_.journal != nullptr) {
    ENGRAM_ASSIGN_OR_RETURN(graph->version_, options_.journal->Commit(*graph));
  }
  graph->base_version_ = graph->version_;
  absl::MutexLock lock(&mu_);
  last_version_ = std::max(last_version_, graph->version_);
  // The name was reserved in putting_, so nothing else holds it.
  graphs_[graph->name_] = graph;
  UpdateGaugesLocked();
  return std::shared_ptr<const Graph>(std::move(graph));
}

void GraphStore::Unstage(const GraphUpload& upload) {
  absl::MutexLock lock(&mu_);
  putting_.erase(upload.options_.name);
}

absl::Status GraphStore::Delete(absl::string_view name) {
  return Remove(name, /*journaled=*/true);
}

absl::Status GraphStore::Evict(absl::string_view name) {
  return Remove(name, /*journaled=*/false);
}

absl::Status GraphStore::Remove(absl::string_view name, bool journaled) {
  absl::MutexLock serial(&write_mu_);
  if (auto merging = merging_.find(name); merging != merging_.end()) {
    merging_.erase(merging);
  }
  {
    absl::MutexLock lock(&mu_);
    if (graphs_.count(name) == 0 && lost_.count(name) == 0) {
      return absl::NotFoundError(
          absl::StrCat("graph \"", name, "\" does not exist"));
    }
  }
  if (journaled && options_.journal != nullptr) {
    ENGRAM_RETURN_IF_ERROR(options_.journal->Delete(name));
  }
  absl::MutexLock lock(&mu_);
  lost_.erase(std::string(name));
  if (auto it = graphs_.find(name); it != graphs_.end()) graphs_.erase(it);
  UpdateGaugesLocked();
  return absl::OkStatus();
}

absl::Status GraphStore::MarkLost(const std::string& name,
                                  const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (graphs_.count(name) > 0 || putting_.count(name) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("graph \"", name, "\" already exists"));
  }
  lost_[name] = why;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Graph>> GraphStore::Get(
    absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  if (auto lost = lost_.find(name); lost != lost_.end()) return lost->second;
  auto it = graphs_.find(name);
  if (it == graphs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("graph \"", name, "\" does not exist"));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<const Graph>> GraphStore::GetAtLeast(
    absl::string_view name, uint64_t min_version) const {
  if (min_version == 0) return Get(name);
  absl::MutexLock lock(&mu_);
  if (auto lost = lost_.find(name); lost != lost_.end()) return lost->second;
  auto it = graphs_.find(name);
  if (it == graphs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("graph \"", name, "\" does not exist on this replica"));
  }
  if (it->second->version() < min_version) {
    return absl::UnavailableError(
        absl::StrCat("min_version: graph \"", name, "\" is at version ",
                     it->second->version(), " on this replica, min_version is ",
                     min_version, "; another replica may have it"));
  }
  return it->second;
}

GraphInfo DescribeVersion(const Graph& g) {
  GraphInfo info;
  info.name = g.name();
  info.num_nodes = g.num_nodes();
  info.num_edges = g.num_edges();
  info.bytes = g.bytes();
  info.uid = g.uid();
  info.version = g.version();
  info.pending_changes = g.pending_changes();
  info.source = g.source();
  return info;
}

absl::StatusOr<GraphInfo> GraphStore::Describe(absl::string_view name) const {
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Graph> graph, Get(name));
  return DescribeVersion(*graph);
}

std::vector<GraphInfo> GraphStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<GraphInfo> out;
  out.reserve(graphs_.size());
  for (const auto& [name, graph] : graphs_)
    out.push_back(DescribeVersion(*graph));
  for (const auto& [name, why] : lost_) {
    GraphInfo info;
    info.name = name;
    info.load_state = "lost";
    info.error = std::string(why.message());
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const GraphInfo& a, const GraphInfo& b) {
    return a.name < b.name;
  });
  return out;
}

void GraphStore::UpdateGaugesLocked() {
  if (options_.metrics == nullptr) return;
  uint64_t bytes = 0;
  for (const auto& [name, graph] : graphs_) bytes += graph->bytes();
  options_.metrics->SetGraphs(graphs_.size(), bytes);
}

// --- Updates and merges ---

absl::StatusOr<GraphUpdateResult> GraphStore::Update(
    absl::string_view name, const GraphEdit& edit,
    const GraphUpdateOptions& options) {
  GraphUpdateResult result;
  bool merge = false;
  {
    absl::MutexLock serial(&write_mu_);
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Graph> current, Get(name));
    if (!options.idempotency_key.empty() &&
        current->Committed(options.idempotency_key)) {
      result.graph = std::move(current);
      result.replayed = true;
      return result;
    }
    const std::string what = absl::StrCat("graph \"", name, "\"");
    if (options.expected_version != 0 &&
        current->version() != options.expected_version) {
      return absl::AbortedError(
          absl::StrCat(what, " is at version ", current->version(),
                       ", not expected_version ", options.expected_version,
                       "; nothing was committed"));
    }
    if (options.version != 0 && options.version <= current->version()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "an update of ", what, " committed as version ", options.version,
          " cannot follow version ", current->version()));
    }
    ENGRAM_RETURN_IF_ERROR(ValidateGraphEdit(edit, current->num_nodes()));
    ENGRAM_ASSIGN_OR_RETURN(
        std::shared_ptr<const GraphChanges> changes,
        GraphChanges::Apply(current->base(), current->changes(), edit,
                            *options_.budget, what, &result.counts));
    const GraphEditCounts& counts = result.counts;
    // An update applied from elsewhere is published even when it changes
    // nothing here, so that the version is the one it was committed with.
    if (options.version == 0 && edit.add_nodes == 0 &&
        counts.edges_removed == 0 && counts.edges_reweighted == 0 &&
        counts.edges_added == 0) {
      result.graph = std::move(current);
      return result;
    }
    if (options_.validate_size) {
      const absl::Status size =
          options_.validate_size(changes->num_nodes(), changes->num_edges());
      if (!size.ok()) {
        return absl::Status(size.code(), absl::StrCat("update of ", what, ": ",
                                                      size.message()));
      }
    }
    std::shared_ptr<Graph> next(new Graph());
    next->name_ = current->name_;
    next->uid_ = current->uid_;
    next->base_version_ = current->base_version_;
    next->source_ = current->source_;
    next->csr_ = current->csr_;
    next->changes_ = std::move(changes);
    next->committed_keys_ = current->committed_keys_;
    {
      absl::MutexLock lock(&mu_);
      next->version_ =
          options.version != 0 ? options.version : last_version_ + 1;
      last_version_ = std::max(last_version_, next->version_);
    }
    if (options.version == 0 && options_.journal != nullptr) {
      ENGRAM_ASSIGN_OR_RETURN(
          next->version_, options_.journal->CommitEdit(
                              *current, *next, edit, options.idempotency_key));
    }
    if (!options.idempotency_key.empty()) {
      next->committed_keys_ = WithKey(current->committed_keys(),
                                      options.idempotency_key, next->version_);
    }
    {
      absl::MutexLock lock(&mu_);
      last_version_ = std::max(last_version_, next->version_);
      // write_mu_ keeps deletes out, so the name still holds `current`.
      graphs_[next->name_] = next;
      UpdateGaugesLocked();
    }
    if (auto it = merging_.find(name);
        it != merging_.end() && it->second.uid == next->uid_) {
      MergeState& state = it->second;
      for (const GraphEdgeRef& e : edit.remove_edges) {
        state.touched.push_back(e.source);
      }
      for (const GraphWeightedEdge& e : edit.set_weights) {
        state.touched.push_back(e.source);
      }
      for (const GraphWeightedEdge& e : edit.add_edges) {
        state.touched.push_back(e.source);
      }
      state.pending_changes +=
          counts.edges_removed + counts.edges_reweighted + counts.edges_added;
      ++state.edits;
    } else {
      merge = options_.background_merge && WantsMerge(*next);
    }
    result.graph = std::move(next);
  }
  if (merge) RequestMerge(std::string(name));
  return result;
}

bool GraphStore::WantsMerge(const Graph& graph) const {
  const GraphChanges* changes = graph.changes();
  if (changes == nullptr) return false;
  const kernels::GraphView& base = graph.base();
  const double held =
      static_cast<double>(changes->replaced_edges()) +
      static_cast<double>(changes->replaced_nodes()) +
      static_cast<double>(changes->num_nodes() - base.num_nodes);
  const double size = static_cast<double>(base.num_edges()) + base.num_nodes;
  return held > options_.merge_share * size ||
         changes->edits() >= options_.merge_max_updates;
}

absl::StatusOr<bool> GraphStore::Merge(absl::string_view name) {
  absl::MutexLock one_at_a_time(&merge_run_mu_);
  std::shared_ptr<const Graph> snapshot;
  {
    absl::MutexLock serial(&write_mu_);
    ENGRAM_ASSIGN_OR_RETURN(snapshot, Get(name));
    if (snapshot->changes() == nullptr) return false;
    MergeState& state = merging_[std::string(name)];
    state = MergeState();
    state.uid = snapshot->uid();
    state.version = snapshot->version();
  }
  auto forget = [&] {
    absl::MutexLock serial(&write_mu_);
    if (auto it = merging_.find(name);
        it != merging_.end() && it->second.uid == snapshot->uid()) {
      merging_.erase(it);
    }
  };

  // The rebuild, off every lock: spreads and updates go on meanwhile.
  const uint32_t num_nodes = snapshot->num_nodes();
  const uint64_t num_edges = snapshot->num_edges();
  const uint64_t bytes = (uint64_t{num_nodes} + 1) * sizeof(uint32_t) +
                         num_edges * (sizeof(uint32_t) + sizeof(float));
  const std::string what = absl::StrCat("graph \"", name, "\"");
  absl::StatusOr<Reservation> reservation = options_.budget->Reserve(
      bytes, absl::StrCat(what, " (merging its changes)"));
  if (!reservation.ok()) {
    forget();
    return reservation.status();
  }
  auto csr = std::make_shared<GraphCsr>();
  try {
    csr->row_offsets = kernels::LargeBuffer<uint32_t>(uint64_t{num_nodes} + 1);
    csr->targets = kernels::LargeBuffer<uint32_t>(num_edges);
    csr->weights = kernels::LargeBuffer<float>(num_edges);
  } catch (const std::bad_alloc&) {
    forget();
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes to merge ", what));
  }
  csr->reservation = *std::move(reservation);
  kernels::CopyOverlaidGraph(snapshot->base(), *snapshot->overlay(),
                             csr->row_offsets.data(), csr->targets.data(),
                             csr->weights.data());
  csr->view.num_nodes = num_nodes;
  csr->view.row_offsets =
      absl::MakeConstSpan(csr->row_offsets.data(), uint64_t{num_nodes} + 1);
  csr->view.targets = absl::MakeConstSpan(csr->targets.data(), num_edges);
  csr->view.weights = absl::MakeConstSpan(csr->weights.data(), num_edges);

  std::shared_ptr<Graph> merged(new Graph());
  merged->name_ = snapshot->name_;
  merged->uid_ = snapshot->uid_;
  merged->version_ = snapshot->version_;
  merged->base_version_ = snapshot->version_;
  merged->source_ = snapshot->source_;
  merged->committed_keys_ = snapshot->committed_keys_;
  merged->csr_ = csr;
  std::string handle;
  bool written = false;
  if (options_.journal != nullptr) {
    // A merge changes no content: one the journal cannot store is still
    // served, and the journal keeps the edits it would have folded in.
    absl::StatusOr<std::string> stored = options_.journal->WriteMerge(*merged);
    if (stored.ok()) {
      handle = *std::move(stored);
      written = true;
    }
  }

  absl::MutexLock serial(&write_mu_);
  auto state = merging_.find(name);
  absl::StatusOr<std::shared_ptr<const Graph>> current = Get(name);
  if (state == merging_.end() || !current.ok() ||
      (*current)->uid() != snapshot->uid()) {
    // Deleted, or deleted and put again, while the merge ran.
    if (state != merging_.end()) merging_.erase(state);
    if (written) options_.journal->DiscardMerge(handle);
    return false;
  }
  MergeState changed = std::move(state->second);
  merging_.erase(state);
  std::shared_ptr<const Graph> next = merged;
  if ((*current)->version() != snapshot->version()) {
    std::sort(changed.touched.begin(), changed.touched.end());
    changed.touched.erase(
        std::unique(changed.touched.begin(), changed.touched.end()),
        changed.touched.end());
    absl::StatusOr<std::shared_ptr<const GraphChanges>> rebased =
        GraphChanges::Rebase(csr->view, (*current)->base(),
                             *(*current)->changes(), changed.touched,
                             changed.pending_changes, changed.edits,
                             *options_.budget, what);
    if (!rebased.ok()) {
      if (written) options_.journal->DiscardMerge(handle);
      return rebased.status();
    }
    std::shared_ptr<Graph> carried(new Graph());
    carried->name_ = (*current)->name_;
    carried->uid_ = (*current)->uid_;
    carried->version_ = (*current)->version_;
    carried->base_version_ = snapshot->version_;
    carried->source_ = (*current)->source_;
    carried->committed_keys_ = (*current)->committed_keys_;
    carried->csr_ = csr;
    carried->changes_ = *std::move(rebased);
    next = std::move(carried);
  }
  if (written) {
    options_.journal->CommitMerge(*merged, **current, handle).IgnoreError();
  }
  {
    absl::MutexLock lock(&mu_);
    graphs_[next->name()] = next;
    UpdateGaugesLocked();
  }
  {
    absl::MutexLock lock(&merge_mu_);
    ++merges_completed_;
  }
  return true;
}

uint64_t GraphStore::merges_completed() const {
  absl::MutexLock lock(&merge_mu_);
  return merges_completed_;
}

void GraphStore::RequestMerge(const std::string& name) {
  absl::MutexLock lock(&merge_mu_);
  if (std::find(merge_queue_.begin(), merge_queue_.end(), name) ==
      merge_queue_.end()) {
    merge_queue_.push_back(name);
  }
}

bool GraphStore::MergeWorkOrStop() const {
  return merge_stop_ || !merge_queue_.empty();
}

void GraphStore::RunMerges() {
  for (;;) {
    std::string name;
    {
      absl::MutexLock lock(&merge_mu_);
      merge_mu_.Await(absl::Condition(this, &GraphStore::MergeWorkOrStop));
      if (merge_stop_) return;
      name = std::move(merge_queue_.front());
      merge_queue_.erase(merge_queue_.begin());
    }
    // A merge that fails (the budget cannot hold a second CSR now) is
    // asked for again by the graph's next update.
    Merge(name).IgnoreError();
  }
}

}  // namespace engram::collections
