#include "core/collections/graph_store.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/collections/names.h"

namespace engram::collections {
namespace {

absl::Status Finished(const std::string& name) {
  return absl::FailedPreconditionError(
      absl::StrCat("put of graph \"", name, "\" is already finished"));
}

}  // namespace

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
  std::memcpy(staged_->row_offsets_.data() + offsets_received_, offsets.data(),
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
  std::memcpy(staged_->targets_.data() + edges_received_, targets.data(),
              targets.size() * sizeof(uint32_t));
  std::memcpy(staged_->weights_.data() + edges_received_, weights.data(),
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
  absl::Status valid = store_->options_.validate(staged_->view_);
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
  std::unique_ptr<GraphStore> store(new GraphStore(options));
  {
    absl::MutexLock lock(&store->mu_);
    store->UpdateGaugesLocked();
  }
  return store;
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
  std::unique_ptr<Graph> graph(new Graph());
  try {
    graph->row_offsets_ = kernels::LargeBuffer<uint32_t>(offsets);
    graph->targets_ = kernels::LargeBuffer<uint32_t>(options.num_edges);
    graph->weights_ = kernels::LargeBuffer<float>(options.num_edges);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes for graph \"", options.name, "\""));
  }
  graph->reservation_ = std::move(reservation);
  graph->view_.num_nodes = options.num_nodes;
  graph->view_.row_offsets =
      absl::MakeConstSpan(graph->row_offsets_.data(), offsets);
  graph->view_.targets =
      absl::MakeConstSpan(graph->targets_.data(), options.num_edges);
  graph->view_.weights =
      absl::MakeConstSpan(graph->weights_.data(), options.num_edges);
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
  std::shared_ptr<Graph> graph = std::move(upload->staged_);
  graph->name_ = upload->options_.name;
  graph->uid_ = NewResidentId();
  graph->source_ =
      upload->options_.source.empty() ? "upload" : upload->options_.source;
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
  absl::MutexLock serial(&delete_mu_);
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

namespace {
GraphInfo InfoOf(const Graph& g) {
  GraphInfo info;
  info.name = g.name();
  info.num_nodes = g.num_nodes();
  info.num_edges = g.num_edges();
  info.bytes = g.bytes();
  info.uid = g.uid();
  info.version = g.version();
  info.source = g.source();
  return info;
}
}  // namespace

absl::StatusOr<GraphInfo> GraphStore::Describe(absl::string_view name) const {
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Graph> graph, Get(name));
  return InfoOf(*graph);
}

std::vector<GraphInfo> GraphStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<GraphInfo> out;
  out.reserve(graphs_.size());
  for (const auto& [name, graph] : graphs_) out.push_back(InfoOf(*graph));
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

}  // namespace engram::collections
