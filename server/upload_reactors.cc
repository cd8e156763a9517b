// The client-streaming uploads: UploadCollection and PutGraph
// (collection_handlers.h). The reactors read the messages and hand each to
// the call's upload stream (upload_streams.h), which decides what each
// message may be; the data's rules and copying are core's
// (core/resident_upload.h).
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/upload_streams.h"

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
                           CollectionUploadStream> {
 public:
  UploadReactor(CollectionHandlers* owner, grpc::CallbackServerContext* context,
                v1::UploadCollectionResponse* response)
      : StreamReactor(owner, context, response, Method::kUploadCollection,
                      "upload") {
    upload_ = std::make_unique<CollectionUploadStream>(owner->engine_);
  }

 private:
  absl::Status Process(const v1::UploadCollectionRequest& message) override {
    return upload_->Process(message);
  }
  absl::Status Commit() override { return upload_->Commit(response_); }
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
                           GraphUploadStream> {
 public:
  PutGraphReactor(CollectionHandlers* owner,
                  grpc::CallbackServerContext* context, v1::GraphInfo* response)
      : StreamReactor(owner, context, response, Method::kPutGraph, "graph") {
    upload_ = std::make_unique<GraphUploadStream>(owner->engine_);
  }

 private:
  absl::Status Process(const v1::PutGraphRequest& message) override {
    return upload_->Process(message);
  }
  absl::Status Commit() override { return upload_->Commit(response_); }
};

grpc::ServerReadReactor<v1::PutGraphRequest>* CollectionHandlers::PutGraph(
    grpc::CallbackServerContext* context, v1::GraphInfo* response) {
  auto* reactor = new PutGraphReactor(this, context, response);
  reactor->Start();
  return reactor;
}

}  // namespace engram::server
