// The client-streaming uploads: UploadCollection and PutGraph
// (collection_handlers.h). The reactors read the messages and translate
// them; the rules and the copying are core's (core/resident_upload.h).
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "core/resident_upload.h"
#include "core/validation.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

// What both streaming uploads share: admission, the read loop with each
// message processed on the engine's workers (copying a chunk and computing
// its norms is the heavy part, kept off gRPC's threads), commit when the
// client closes its side, abort on any error or cancellation, the drain's
// stop, and the call's bookkeeping. The derived reactor handles one message
// (Process) and the end of the stream (Commit) on its staged `upload_`.
// Start() must be called once the derived object is fully built: gRPC may
// call back at once.
//
// A drain counts the stream from its headers on (Admission::Arrive) and
// waits for it. At the drain's stop time (StopForDrain) a stream waiting for
// its next message ends at once with UNAVAILABLE and nothing stored; one
// whose message is being processed ends so after it; a commit under way
// completes.
template <typename Request, typename Response, typename Upload>
class CollectionHandlers::StreamReactor
    : public grpc::ServerReadReactor<Request>,
      public Admission::Call {
 public:
  void Start() {
    counted_ = owner_->admission_->Arrive(this);
    if (!counted_) {
      Done(DrainRefusal(context_, *owner_->metrics_));
      return;
    }
    // An upload's memory is reserved from the resident budget by its
    // header, not from admission: it is admitted by count alone.
    if (absl::Status refused = scope_.Admit(0); !refused.ok()) {
      Done(refused);
      return;
    }
    absl::MutexLock lock(&mu_);
    state_ = State::kReading;
    this->StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (state_ == State::kFinished) return;  // the drain stopped it
      state_ = State::kBusy;
    }
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
        absl::MutexLock lock(&mu_);
        if (!stop_requested_) {
          state_ = State::kReading;
          message_.Clear();
          this->StartRead(&message_);
          return;
        }
        status = DrainStop();
      }
      Done(status);
    });
  }

  void StopForDrain() override {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kBusy) {
      stop_requested_ = true;
    } else if (state_ == State::kReading) {
      state_ = State::kFinished;
      Done(DrainStop());
    }
  }

  void OnDone() override {
    if (counted_) owner_->admission_->Leave(this);
    // Aborts a staged upload that was not committed.
    if (upload_ != nullptr) upload_->Abort();
    scope_.Release();
    delete this;
  }

 protected:
  StreamReactor(CollectionHandlers* owner, grpc::CallbackServerContext* context,
                Response* response, Method method, absl::string_view what)
      : owner_(owner),
        response_(response),
        context_(context),
        scope_(context, method, owner->admission_, owner->metrics_),
        what_(what) {}

  // One message of the stream; an error ends the call (and aborts).
  virtual absl::Status Process(const Request& message) = 0;
  // The client closed its side: commit what was staged, fill the response.
  virtual absl::Status Commit() = 0;

  CollectionHandlers* const owner_;
  Response* const response_;
  std::unique_ptr<Upload> upload_;

 private:
  // kReading: a read is outstanding; kBusy: a message or the commit is
  // being handled; kFinished: answered.
  enum class State { kStarting, kReading, kBusy, kFinished };

  // Answers the call; once: each caller holds the stream alone (kStarting
  // or kBusy) or has just claimed it (kReading to kFinished).
  void Done(const absl::Status& status) {
    if (!status.ok() && upload_ != nullptr) upload_->Abort();
    this->Finish(scope_.End(status, response_));
  }

  grpc::CallbackServerContext* const context_;
  CallScope scope_;
  const absl::string_view what_;
  bool counted_ = false;
  Request message_;
  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kStarting;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
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
      if (upload_ != nullptr || replay_ != nullptr) {
        return absl::InvalidArgumentError(
            "header: only the first message of an upload may be a header");
      }
      return Begin(message.header());
    }
    if (upload_ == nullptr && replay_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the first message of an upload must be a header (name, "
          "create, dimension, total_rows)");
    }
    if (!message.has_chunk()) {
      return absl::InvalidArgumentError(
          "message: every message after the header must be a chunk");
    }
    // A resent upload that was committed: its rows are read and dropped.
    if (replay_ != nullptr) return absl::OkStatus();
    const v1::UploadChunk& chunk = message.chunk();
    return core::AppendVectors(
        *upload_,
        absl::MakeConstSpan(chunk.vectors().data(), chunk.vectors_size()),
        absl::MakeConstSpan(chunk.ids().data(), chunk.ids_size()));
  }

  absl::Status Begin(const v1::UploadHeader& header) {
    collections::UploadOptions options;
    options.name = header.name();
    options.create = header.create();
    options.dimension = header.dimension();
    options.metadata = MetadataFromProto(header.metadata());
    options.rows = header.total_rows();
    options.with_ids = header.with_ids();
    options.idempotency_key = header.idempotency_key();
    ENGRAM_RETURN_IF_ERROR(core::ValidateUploadHeader(options));
    collections::CollectionStore& store =
        owner_->engine_->resident().collections();
    // Checked before the budget is reserved: a resend of a committed upload
    // must succeed even when its rows would no longer fit.
    replay_ = store.FindCommitted(options.name, options.idempotency_key);
    if (replay_ != nullptr) {
      rows_declared_ = options.rows;
      return absl::OkStatus();
    }
    ENGRAM_ASSIGN_OR_RETURN(upload_, store.BeginUpload(options));
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    std::shared_ptr<const collections::Collection> c = replay_;
    if (c != nullptr) {
      response_->set_rows_uploaded(rows_declared_);
      response_->set_replayed(true);
    } else {
      if (upload_ == nullptr) {
        return absl::InvalidArgumentError(
            "header: the stream ended without an upload header");
      }
      ENGRAM_ASSIGN_OR_RETURN(c, core::CommitUpload(*upload_));
      response_->set_rows_uploaded(upload_->rows_received());
      response_->set_replayed(upload_->replayed());
    }
    auto info = owner_->engine_->resident().collections().Describe(c->name());
    if (info.ok()) {
      CollectionInfoToProto(*info, owner_->engine_->ResidencyOf(info->uid),
                            response_->mutable_collection());
    }
    return absl::OkStatus();
  }

  // Set when the header's key was committed already (Begin).
  std::shared_ptr<const collections::Collection> replay_;
  uint64_t rows_declared_ = 0;
};

grpc::ServerReadReactor<v1::UploadCollectionRequest>*
CollectionHandlers::UploadCollection(grpc::CallbackServerContext* context,
                                     v1::UploadCollectionResponse* response) {
  auto* reactor = new UploadReactor(this, context, response);
  reactor->Start();
  return reactor;
}

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
      ENGRAM_RETURN_IF_ERROR(
          core::ValidateRequiredName("header.name", header.name()));
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
    return core::AppendGraphChunk(
        *upload_,
        absl::MakeConstSpan(chunk.row_offsets().data(),
                            chunk.row_offsets_size()),
        absl::MakeConstSpan(chunk.targets().data(), chunk.targets_size()),
        absl::MakeConstSpan(chunk.weights().data(), chunk.weights_size()));
  }

  absl::Status Commit() override {
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the stream ended without a graph header");
    }
    ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const collections::Graph> graph,
                            upload_->Commit());
    auto info = owner_->engine_->resident().graphs().Describe(graph->name());
    if (info.ok()) GraphInfoToProto(*info, response_);
    return absl::OkStatus();
  }
};

grpc::ServerReadReactor<v1::PutGraphRequest>* CollectionHandlers::PutGraph(
    grpc::CallbackServerContext* context, v1::GraphInfo* response) {
  auto* reactor = new PutGraphReactor(this, context, response);
  reactor->Start();
  return reactor;
}

}  // namespace engram::server
