#include "server/collection_handlers.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "core/collections/search_batcher.h"
#include "core/logging.h"
#include "core/validation.h"
#include "server/call_interrupt.h"
#include "server/proto_conversion.h"
#include "server/rpc_call.h"

namespace engram::server {
namespace {

namespace v1 = ::engram::similarity::v1;

// `engine` says where the rows are resident (the store knows only its host
// copy).
void InfoToProto(const core::Engine& engine,
                 const collections::CollectionInfo& info,
                 v1::CollectionInfo* out) {
  out->set_name(info.name);
  out->set_dimension(info.dimension);
  out->set_count(info.rows);
  out->set_bytes(info.bytes);
  out->mutable_metadata()->insert(info.metadata.begin(), info.metadata.end());
  out->set_residency(engine.ResidencyOf(info.uid));
  out->set_load_state(info.load_state);
  out->set_version(info.version);
  out->set_segments(info.segments);
  out->set_has_ids(info.has_ids);
  out->set_source(info.source);
}

void InfoToProto(const collections::GraphInfo& info, v1::GraphInfo* out) {
  out->set_name(info.name);
  out->set_num_nodes(info.num_nodes);
  out->set_num_edges(info.num_edges);
  out->set_bytes(info.bytes);
  out->set_residency(info.residency);
  out->set_load_state(info.load_state);
  out->set_source(info.source);
}

collections::Metadata MetadataFromProto(
    const google::protobuf::Map<std::string, std::string>& map) {
  return collections::Metadata(map.begin(), map.end());
}

// An empty name is INVALID_ARGUMENT naming `field`; the stores check the
// rest of a name's rules with the same wording.
absl::Status RequireName(absl::string_view field, const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  }
  return absl::OkStatus();
}

// Answers a unary call at once, on this thread.
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                 RpcMetrics& metrics, const RpcCall& call,
                                 const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(EndRpcCall(metrics, call, status));
  return reactor;
}

// What a SearchCollection call costs admission: its queries and the lists
// (an id, a row and a score per entry) or the scores it can produce.
uint64_t SearchCost(const v1::SearchCollectionRequest& request,
                    uint64_t collection_rows,
                    const core::RequestLimits& limits) {
  const uint64_t q = request.queries().rows();
  const uint64_t outputs =
      request.top_k() == 0
          ? q * collection_rows
          : q * std::min<uint64_t>(request.top_k(), collection_rows) * 4;
  return sizeof(float) *
         (static_cast<uint64_t>(request.queries().values_size()) +
          std::min(outputs, limits.max_output_elements));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const collections::Graph>>
CollectionHandlers::ResolveGraph(const std::string& name) const {
  absl::StatusOr<std::shared_ptr<const collections::Graph>> graph =
      engine_->resident().graphs().Get(name);
  if (!graph.ok() && graph.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("graph_name: no graph named '", name, "'"));
  }
  return graph;
}

// --- Collections: management ---

grpc::ServerUnaryReactor* CollectionHandlers::CreateCollection(
    grpc::CallbackServerContext* context,
    const v1::CreateCollectionRequest* request, v1::CollectionInfo* response) {
  const RpcCall call = StartRpcCall(context, Method::kCreateCollection);
  absl::Status status = RequireName("name", request->name());
  if (status.ok()) {
    collections::CollectionSpec spec;
    spec.name = request->name();
    spec.dimension = request->dimension();
    spec.metadata = MetadataFromProto(request->metadata());
    auto created = engine_->resident().collections().CreateCollection(spec);
    status = created.status();
    if (created.ok()) {
      auto info = engine_->resident().collections().Describe(spec.name);
      if (info.ok()) InfoToProto(*engine_, *info, response);
    }
  }
  return Answer(context, *metrics_, call, status);
}

grpc::ServerUnaryReactor* CollectionHandlers::DeleteCollection(
    grpc::CallbackServerContext* context,
    const v1::DeleteCollectionRequest* request,
    v1::DeleteCollectionResponse* /*response*/) {
  const RpcCall call = StartRpcCall(context, Method::kDeleteCollection);
  absl::Status status = RequireName("name", request->name());
  if (status.ok())
    status = engine_->resident().DeleteCollection(request->name());
  return Answer(context, *metrics_, call, status);
}

grpc::ServerUnaryReactor* CollectionHandlers::ListCollections(
    grpc::CallbackServerContext* context,
    const v1::ListCollectionsRequest* /*request*/,
    v1::ListCollectionsResponse* response) {
  const RpcCall call = StartRpcCall(context, Method::kListCollections);
  for (const collections::CollectionInfo& info :
       engine_->resident().collections().List()) {
    InfoToProto(*engine_, info, response->add_collections());
  }
  return Answer(context, *metrics_, call, absl::OkStatus());
}

grpc::ServerUnaryReactor* CollectionHandlers::DescribeCollection(
    grpc::CallbackServerContext* context,
    const v1::DescribeCollectionRequest* request,
    v1::CollectionInfo* response) {
  const RpcCall call = StartRpcCall(context, Method::kDescribeCollection);
  absl::Status status = RequireName("name", request->name());
  if (status.ok()) {
    auto info = engine_->resident().collections().Describe(request->name());
    status = info.status();
    if (info.ok()) InfoToProto(*engine_, *info, response);
  }
  return Answer(context, *metrics_, call, status);
}

// --- Collections: upload ---

// What both streaming uploads share: admission, the read loop with each
// message processed on the engine's workers (copying a chunk and computing
// its norms is the heavy part, kept off gRPC's threads), commit when the
// client closes its side, abort on any error or cancellation, and the call's
// bookkeeping. The derived reactor handles one message (Process) and the
// end of the stream (Commit) on its staged `upload_`. Start() must be called
// once the derived object is fully built: gRPC may call back at once.
template <typename Request, typename Response, typename Upload>
class CollectionHandlers::StreamReactor
    : public grpc::ServerReadReactor<Request> {
 public:
  void Start() {
    ticket_ = owner_->admission_->Admit(0);
    if (ticket_.verdict != Admission::Verdict::kAdmitted) {
      Done(AdmissionRefusal(*owner_->admission_, ticket_, context_,
                            *owner_->metrics_));
      return;
    }
    owner_->metrics_->CallStarted();
    this->StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (a complete stream commits) or the call
      // is gone (cancelled, deadline, broken connection: abort).
      Done(context_->IsCancelled() ? absl::CancelledError(absl::StrCat(
                                         "the ", what_,
                                         " stream was cancelled; nothing was "
                                         "stored"))
                                   : Commit());
      return;
    }
    owner_->engine_->Submit([this] {
      absl::Status status = Process(message_);
      if (status.ok()) {
        message_.Clear();
        this->StartRead(&message_);
      } else {
        Done(status);
      }
    });
  }

  void OnDone() override {
    // Aborts a staged upload that was not committed.
    if (upload_ != nullptr) upload_->Abort();
    if (ticket_.verdict == Admission::Verdict::kAdmitted) {
      owner_->admission_->Release(ticket_);
    }
    delete this;
  }

 protected:
  StreamReactor(CollectionHandlers* owner, grpc::CallbackServerContext* context,
                Response* response, Method method, absl::string_view what)
      : owner_(owner),
        response_(response),
        context_(context),
        call_(StartRpcCall(context, method)),
        what_(what) {}

  // One message of the stream; an error ends the call (and aborts).
  virtual absl::Status Process(const Request& message) = 0;
  // The client closed its side: commit what was staged, fill the response.
  virtual absl::Status Commit() = 0;

  CollectionHandlers* const owner_;
  Response* const response_;
  std::unique_ptr<Upload> upload_;

 private:
  void Done(const absl::Status& status) {
    if (!status.ok()) {
      if (upload_ != nullptr) upload_->Abort();
      response_->Clear();
    }
    if (ticket_.verdict == Admission::Verdict::kAdmitted) {
      owner_->metrics_->CallEnded();
    }
    this->Finish(EndRpcCall(*owner_->metrics_, call_, status));
  }

  grpc::CallbackServerContext* const context_;
  const RpcCall call_;
  const absl::string_view what_;
  Admission::Ticket ticket_;
  Request message_;
};

class CollectionHandlers::UploadReactor final
    : public StreamReactor<v1::UploadCollectionRequest,
                           v1::UploadCollectionResponse,
                           collections::CollectionUpload> {
 public:
  UploadReactor(CollectionHandlers* owner, grpc::CallbackServerContext* context,
                v1::UploadCollectionResponse* response)
      : StreamReactor(owner, context, response, Method::kUploadCollection,
                      "upload") {}

 private:
  absl::Status Process(const v1::UploadCollectionRequest& message) override {
    if (message.has_header()) {
      if (upload_ != nullptr) {
        return absl::InvalidArgumentError(
            "header: only the first message of an upload may be a header");
      }
      return Begin(message.header());
    }
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the first message of an upload must be a header (name, "
          "create, dimension, total_rows)");
    }
    if (!message.has_chunk()) {
      return absl::InvalidArgumentError(
          "message: every message after the header must be a chunk");
    }
    const v1::UploadChunk& chunk = message.chunk();
    const uint32_t d = upload_->dimension();
    if (chunk.vectors_size() == 0 ||
        chunk.vectors_size() % static_cast<int>(d) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk.vectors has ", chunk.vectors_size(),
          " values, expected a positive multiple of the dimension ", d));
    }
    kernels::MatrixView rows;
    rows.data = chunk.vectors().data();
    rows.cols = d;
    rows.rows = static_cast<size_t>(chunk.vectors_size()) / d;
    return upload_->Append(
        rows, absl::MakeConstSpan(chunk.ids().data(), chunk.ids_size()));
  }

  absl::Status Begin(const v1::UploadHeader& header) {
    ENGRAM_RETURN_IF_ERROR(RequireName("header.name", header.name()));
    if (header.total_rows() == 0) {
      return absl::InvalidArgumentError(
          "header.total_rows must be >= 1 (the rows the upload brings)");
    }
    if (!header.create() && !header.metadata().empty()) {
      return absl::InvalidArgumentError(
          "header.metadata is only accepted when the upload creates the "
          "collection (create = true)");
    }
    collections::UploadOptions options;
    options.name = header.name();
    options.create = header.create();
    options.dimension = header.dimension();
    options.metadata = MetadataFromProto(header.metadata());
    options.rows = header.total_rows();
    options.with_ids = header.with_ids();
    ENGRAM_ASSIGN_OR_RETURN(
        upload_,
        owner_->engine_->resident().collections().BeginUpload(options));
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the stream ended without an upload header");
    }
    if (upload_->rows_received() < upload_->rows_expected()) {
      const uint64_t received = upload_->rows_received();
      upload_->Abort();
      return absl::InvalidArgumentError(absl::StrCat(
          "header.total_rows: the stream ended after ", received, " of ",
          upload_->rows_expected(), " rows; nothing was stored"));
    }
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const collections::Collection> c,
                            upload_->Commit());
    response_->set_rows_uploaded(upload_->rows_received());
    auto info = owner_->engine_->resident().collections().Describe(c->name());
    if (info.ok()) {
      InfoToProto(*owner_->engine_, *info, response_->mutable_collection());
    }
    return absl::OkStatus();
  }
};

grpc::ServerReadReactor<v1::UploadCollectionRequest>*
CollectionHandlers::UploadCollection(grpc::CallbackServerContext* context,
                                     v1::UploadCollectionResponse* response) {
  auto* reactor = new UploadReactor(this, context, response);
  reactor->Start();
  return reactor;
}

// --- Collections: search ---

class CollectionHandlers::SearchReactor final
    : public grpc::ServerUnaryReactor {
 public:
  SearchReactor(CollectionHandlers* owner, grpc::CallbackServerContext* context,
                const v1::SearchCollectionRequest* request,
                v1::SearchCollectionResponse* response)
      : owner_(owner),
        context_(context),
        request_(request),
        response_(response),
        call_(StartRpcCall(context, Method::kSearchCollection)) {}

  // Runs on the gRPC thread that received the call, before the reactor is
  // returned: gRPC calls OnDone only after that, so `this` lives until
  // Start() returns whatever the callbacks do meanwhile.
  void Start() {
    const absl::Status resolved = Resolve();
    if (!resolved.ok()) {
      Answer(resolved);
      return;
    }
    ticket_ = owner_->admission_->Admit(
        SearchCost(*request_, collection_->rows(), owner_->engine_->limits()));
    if (ticket_.verdict != Admission::Verdict::kAdmitted) {
      Answer(AdmissionRefusal(*owner_->admission_, ticket_, context_,
                              *owner_->metrics_));
      return;
    }
    owner_->metrics_->CallStarted();
    if (request_->top_k() == 0) {
      owner_->metrics_->Queued();
      owner_->engine_->Submit([this] {
        owner_->metrics_->Dequeued();
        const core::ScopedLogContext log_context(call_.ids.request_id,
                                                 call_.ids.traceparent);
        Answer(AllScores());
      });
      return;
    }
    auto batcher = owner_->engine_->resident().BatcherFor(collection_->name());
    if (!batcher.ok()) {
      Answer(batcher.status());
      return;
    }
    batcher_ = *std::move(batcher);
    collections::SearchRequest search;
    search.collection = collection_;
    search.queries = queries_;
    search.top_k = request_->top_k();
    if (request_->has_min_score()) search.min_score = request_->min_score();
    search.placement = PlacementFromProto(request_->placement());
    absl::StatusOr<collections::SearchTicket> ticket = batcher_->Search(
        std::move(search),
        [this](absl::StatusOr<collections::SearchResult> result) {
          Answer(Fill(std::move(result)));
        });
    if (!ticket.ok()) {
      if (ticket.status().code() == absl::StatusCode::kResourceExhausted) {
        // A full search queue is overload too: the same retry hint.
        MarkOverloaded(context_, *owner_->metrics_,
                       owner_->admission_->RetryAfter());
      }
      Answer(ticket.status());
      return;
    }
    absl::MutexLock lock(&mu_);
    search_ticket_ = *ticket;
  }

  void OnCancel() override {
    std::optional<collections::SearchTicket> ticket;
    {
      absl::MutexLock lock(&mu_);
      if (!answered_) ticket = search_ticket_;
    }
    // A call still waiting is removed from its queue and answered CANCELLED
    // here; one already in a pass finishes with it.
    if (ticket.has_value()) batcher_->Cancel(*ticket);
  }

  void OnDone() override {
    if (ticket_.verdict == Admission::Verdict::kAdmitted) {
      owner_->admission_->Release(ticket_);
    }
    delete this;
  }

 private:
  absl::Status Resolve() {
    ENGRAM_RETURN_IF_ERROR(RequireName("collection", request_->collection()));
    auto collection =
        owner_->engine_->resident().collections().Get(request_->collection());
    if (!collection.ok()) {
      if (collection.status().code() == absl::StatusCode::kNotFound) {
        return absl::NotFoundError(absl::StrCat(
            "collection: no collection named '", request_->collection(), "'"));
      }
      return collection.status();
    }
    collection_ = *std::move(collection);
    const v1::Matrix& q = request_->queries();
    ENGRAM_RETURN_IF_ERROR(core::ValidateMatrixShape(
        "queries", q.rows(), q.cols(), q.values_size()));
    if (q.cols() != collection_->dimension()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "queries.cols is ", q.cols(), " but collection '",
          collection_->name(), "' has dimension ", collection_->dimension()));
    }
    if (request_->placement() != v1::PLACEMENT_AUTO &&
        request_->placement() != v1::PLACEMENT_CPU_ONLY &&
        request_->placement() != v1::PLACEMENT_GPU_ONLY) {
      return absl::InvalidArgumentError("placement has an unknown value");
    }
    if (request_->top_k() == 0 && request_->has_min_score()) {
      return absl::InvalidArgumentError(
          "min_score is only accepted with top_k > 0");
    }
    const uint64_t outputs =
        request_->top_k() == 0
            ? static_cast<uint64_t>(q.rows()) * collection_->rows()
            : static_cast<uint64_t>(q.rows()) *
                  std::min<uint64_t>(request_->top_k(), collection_->rows());
    if (outputs > owner_->engine_->limits().max_output_elements) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "top_k: the response would carry ", outputs,
          " scores (Q = ", q.rows(), ", count = ", collection_->rows(),
          "), more than the limit of ",
          owner_->engine_->limits().max_output_elements,
          request_->top_k() == 0 ? "; top_k = 0 is for small collections, "
                                   "ask for top_k > 0"
                                 : ""));
    }
    queries_.data = q.values().data();
    queries_.rows = q.rows();
    queries_.cols = q.cols();
    return absl::OkStatus();
  }

  // top_k == 0: every score, segment by segment, straight into the
  // response (through a scratch buffer when there are several segments).
  absl::Status AllScores() {
    const CallInterrupt interrupt(context_);
    ENGRAM_RETURN_IF_ERROR(interrupt.Check());
    const uint64_t q = queries_.rows;
    const uint64_t n = collection_->rows();
    const int count = static_cast<int>(q * n);
    response_->mutable_scores()->Reserve(count);
    float* scores = response_->mutable_scores()->AddNAlreadyReserved(count);
    core::ExecutionReport report;
    double seconds = 0;
    std::vector<float> scratch;
    for (const auto& segment : collection_->segments()) {
      if (segment->rows() == 0) continue;
      core::CosineJob job;
      job.queries = queries_;
      job.targets = segment->vectors();
      job.resident_targets = segment->id();
      job.placement = PlacementFromProto(request_->placement());
      job.interrupt = &interrupt;
      core::CosineOutput out;
      const bool direct = collection_->segments().size() == 1;
      if (direct) {
        out.scores = absl::MakeSpan(scores, count);
      } else {
        scratch.resize(q * segment->rows());
        out.scores = absl::MakeSpan(scratch);
      }
      ENGRAM_RETURN_IF_ERROR(owner_->engine_->CosineResident(job, &out));
      if (!direct) {
        for (uint64_t i = 0; i < q; ++i) {
          std::copy(scratch.begin() + i * segment->rows(),
                    scratch.begin() + (i + 1) * segment->rows(),
                    scores + i * n + segment->first_row());
        }
      }
      seconds += out.report.compute_seconds;
      report = out.report;
    }
    report.compute_seconds = seconds;
    response_->mutable_ids()->Reserve(static_cast<int>(n));
    for (uint64_t row = 0; row < n; ++row) {
      response_->add_ids(collection_->IdOf(row));
    }
    ReportToProto(report, response_->mutable_report());
    response_->set_batch_queries(static_cast<uint32_t>(q));
    response_->set_batch_requests(1);
    response_->set_collection_version(collection_->version());
    return absl::OkStatus();
  }

  absl::Status Fill(absl::StatusOr<collections::SearchResult> result) {
    ENGRAM_RETURN_IF_ERROR(result.status());
    response_->mutable_results()->Reserve(static_cast<int>(result->top.size()));
    for (const std::vector<collections::SearchHit>& list : result->top) {
      v1::CollectionHits* hits = response_->add_results();
      const int k = static_cast<int>(list.size());
      hits->mutable_ids()->Reserve(k);
      hits->mutable_scores()->Reserve(k);
      hits->mutable_rows()->Reserve(k);
      for (const collections::SearchHit& hit : list) {
        hits->add_ids(hit.id);
        hits->add_scores(hit.score);
        hits->add_rows(hit.row);
      }
    }
    ReportToProto(result->report, response_->mutable_report());
    response_->set_batch_queries(result->batch_queries);
    response_->set_batch_requests(result->batch_requests);
    response_->set_queue_seconds(result->queue_seconds);
    response_->set_collection_version(collection_->version());
    return absl::OkStatus();
  }

  // Answers the call, once. Nothing of `this` may be touched after
  // Finish(): OnDone may run and delete it at once.
  void Answer(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (answered_) return;
      answered_ = true;
    }
    if (!status.ok()) response_->Clear();
    if (status.code() == absl::StatusCode::kCancelled ||
        status.code() == absl::StatusCode::kDeadlineExceeded) {
      owner_->metrics_->RecordInterruption(status.code());
    }
    if (ticket_.verdict == Admission::Verdict::kAdmitted) {
      owner_->metrics_->CallEnded();
    }
    Finish(EndRpcCall(*owner_->metrics_, call_, status));
  }

  CollectionHandlers* const owner_;
  grpc::CallbackServerContext* const context_;
  const v1::SearchCollectionRequest* const request_;
  v1::SearchCollectionResponse* const response_;
  const RpcCall call_;
  Admission::Ticket ticket_;
  std::shared_ptr<const collections::Collection> collection_;
  kernels::MatrixView queries_;
  std::shared_ptr<collections::SearchBatcher> batcher_;

  absl::Mutex mu_;
  std::optional<collections::SearchTicket> search_ticket_ ABSL_GUARDED_BY(mu_);
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerUnaryReactor* CollectionHandlers::SearchCollection(
    grpc::CallbackServerContext* context,
    const v1::SearchCollectionRequest* request,
    v1::SearchCollectionResponse* response) {
  auto* reactor = new SearchReactor(this, context, request, response);
  reactor->Start();
  return reactor;
}

// --- Graphs ---

class CollectionHandlers::PutGraphReactor final
    : public StreamReactor<v1::PutGraphRequest, v1::GraphInfo,
                           collections::GraphUpload> {
 public:
  PutGraphReactor(CollectionHandlers* owner,
                  grpc::CallbackServerContext* context, v1::GraphInfo* response)
      : StreamReactor(owner, context, response, Method::kPutGraph, "graph") {}

 private:
  absl::Status Process(const v1::PutGraphRequest& message) override {
    if (message.has_header()) {
      if (upload_ != nullptr) {
        return absl::InvalidArgumentError(
            "header: only the first message of a graph put may be a header");
      }
      const v1::PutGraphHeader& header = message.header();
      ENGRAM_RETURN_IF_ERROR(RequireName("header.name", header.name()));
      collections::GraphPutOptions options;
      options.name = header.name();
      options.num_nodes = header.num_nodes();
      options.num_edges = header.num_edges();
      ENGRAM_ASSIGN_OR_RETURN(
          upload_, owner_->engine_->resident().graphs().BeginPut(options));
      return absl::OkStatus();
    }
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the first message of a graph put must be a header (name, "
          "num_nodes, num_edges)");
    }
    if (!message.has_chunk()) {
      return absl::InvalidArgumentError(
          "message: every message after the header must be a chunk");
    }
    const v1::PutGraphChunk& chunk = message.chunk();
    if (chunk.targets_size() != chunk.weights_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk.weights has ", chunk.weights_size(),
                       " entries, expected one per chunk.targets entry (",
                       chunk.targets_size(), ")"));
    }
    if (chunk.row_offsets_size() > 0) {
      ENGRAM_RETURN_IF_ERROR(upload_->AppendRowOffsets(absl::MakeConstSpan(
          chunk.row_offsets().data(), chunk.row_offsets_size())));
    }
    if (chunk.targets_size() > 0) {
      ENGRAM_RETURN_IF_ERROR(upload_->AppendEdges(
          absl::MakeConstSpan(chunk.targets().data(), chunk.targets_size()),
          absl::MakeConstSpan(chunk.weights().data(), chunk.weights_size())));
    }
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the stream ended without a graph header");
    }
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const collections::Graph> graph,
                            upload_->Commit());
    auto info = owner_->engine_->resident().graphs().Describe(graph->name());
    if (info.ok()) InfoToProto(*info, response_);
    return absl::OkStatus();
  }
};

grpc::ServerReadReactor<v1::PutGraphRequest>* CollectionHandlers::PutGraph(
    grpc::CallbackServerContext* context, v1::GraphInfo* response) {
  auto* reactor = new PutGraphReactor(this, context, response);
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::DeleteGraph(
    grpc::CallbackServerContext* context, const v1::DeleteGraphRequest* request,
    v1::DeleteGraphResponse* /*response*/) {
  const RpcCall call = StartRpcCall(context, Method::kDeleteGraph);
  absl::Status status = RequireName("name", request->name());
  if (status.ok())
    status = engine_->resident().graphs().Delete(request->name());
  return Answer(context, *metrics_, call, status);
}

grpc::ServerUnaryReactor* CollectionHandlers::ListGraphs(
    grpc::CallbackServerContext* context,
    const v1::ListGraphsRequest* /*request*/,
    v1::ListGraphsResponse* response) {
  const RpcCall call = StartRpcCall(context, Method::kListGraphs);
  for (const collections::GraphInfo& info :
       engine_->resident().graphs().List()) {
    InfoToProto(info, response->add_graphs());
  }
  return Answer(context, *metrics_, call, absl::OkStatus());
}

grpc::ServerUnaryReactor* CollectionHandlers::DescribeGraph(
    grpc::CallbackServerContext* context,
    const v1::DescribeGraphRequest* request, v1::GraphInfo* response) {
  const RpcCall call = StartRpcCall(context, Method::kDescribeGraph);
  absl::Status status = RequireName("name", request->name());
  if (status.ok()) {
    auto info = engine_->resident().graphs().Describe(request->name());
    status = info.status();
    if (info.ok()) InfoToProto(*info, response);
  }
  return Answer(context, *metrics_, call, status);
}

}  // namespace engram::server
