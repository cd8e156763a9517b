// UnaryCall: a unary RPC of the Similarity service, served so that the
// server holds the call from the moment its headers arrive.
//
// gRPC's callback API hands a unary call to its handler only once the whole
// request message has arrived, and Server::Shutdown() cancels the calls
// still receiving theirs: a client whose 90 MB request was in transit at
// SIGTERM would see CANCELLED, which no retry policy retries. So each unary
// method is registered as bidi streaming (grpc::Service::MarkMethodStreamed;
// the wire protocol is the same, clients see no difference): gRPC hands the
// call over at its headers, UnaryReactor counts it in Admission at once
// (Arrive) and reads the one request message itself. A drain therefore
// waits for it like any other call, and refuses only calls that arrive
// after it began.
//
// The handler gets the call once the request is read, as
// `handler(call, request, response)`, and answers it exactly once with
// Answer(); after that it touches nothing of the call. Request and response
// live on the call's protobuf arena unless `use_arena` is false (one block
// allocation for most calls instead of one per field, freed at once).
//
// Thread-safety: Answer(), SetOnCancel() and SetOnDone() may be called from
// any thread, once the handler has the call; gRPC's reactions and the
// drain's StopForDrain() are serialized with them by the reactor's mutex.
#ifndef ENGRAM_SERVER_UNARY_CALL_H_
#define ENGRAM_SERVER_UNARY_CALL_H_

#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"
#include "server/admission.h"
#include "server/rpc_call.h"
#include "server/rpc_metrics.h"

namespace engram::server {

// What a unary handler holds of its call.
class UnaryCall {
 public:
  virtual ~UnaryCall() = default;

  virtual grpc::CallbackServerContext* context() const = 0;
  // Answers the call with `status` (and the response when OK). Once; the
  // handler touches nothing of the call afterwards (the call may be gone).
  virtual void Answer(const grpc::Status& status) = 0;
  // Runs `on_cancel` (on a gRPC thread, at most once) when the call is
  // cancelled before the handler answered it.
  virtual void SetOnCancel(std::function<void()> on_cancel) = 0;
  // Runs `on_done` once the call is over: answered, and every gRPC reaction
  // finished. The last thing that happens to the call; state the handler
  // keeps for the call's lifetime can be freed there.
  virtual void SetOnDone(std::function<void()> on_done) = 0;
};

template <typename Request, typename Response>
class UnaryReactor final : public UnaryCall,
                           public grpc::ServerBidiReactor<Request, Response>,
                           public Admission::Call {
 public:
  using Handler = std::function<void(UnaryCall*, const Request*, Response*)>;

  // Starts the call: counts it in or refuses it (draining), then reads the
  // request. Nothing is owned; everything must outlive the call.
  static UnaryReactor* Start(grpc::CallbackServerContext* context,
                             Method method, const Handler* handler,
                             Admission* admission, RpcMetrics* metrics,
                             bool use_arena) {
    auto* reactor = new UnaryReactor(context, method, handler, admission,
                                     metrics, use_arena);
    reactor->Begin();
    return reactor;
  }

  grpc::CallbackServerContext* context() const override { return context_; }

  void Answer(const grpc::Status& status) override {
    bool send;
    {
      absl::MutexLock lock(&mu_);
      send = state_ != State::kAnswered;
      state_ = State::kAnswered;
    }
    if (send) Send(status);
    // Only now: gRPC's OnDone, which may come at once on another thread,
    // must not delete the call while this thread is still in it.
    LetGo(/*from_grpc=*/false);
  }

  void SetOnCancel(std::function<void()> on_cancel) override {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(on_cancel);
  }

  void SetOnDone(std::function<void()> on_done) override {
    absl::MutexLock lock(&mu_);
    on_done_ = std::move(on_done);
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      // The drain answered the call while its request was arriving.
      if (state_ == State::kAnswered) return;
      if (ok) {
        state_ = State::kHandling;
        handler_holds_ = true;
      } else {
        state_ = State::kAnswered;
      }
    }
    if (!ok) {
      // A closed stream without a message, a message that does not parse,
      // or a call that is gone.
      const RpcCall call = StartRpcCall(context_, method_);
      Send(EndRpcCall(*metrics_, call,
                      context_->IsCancelled()
                          ? absl::CancelledError("the call was cancelled")
                          : absl::InvalidArgumentError(absl::StrCat(
                                "request: the call carried no ",
                                Request::descriptor()->full_name(),
                                " message, or one that does not parse"))));
      return;
    }
    (*handler_)(this, request_, response_);
  }

  void OnCancel() override {
    std::function<void()> on_cancel;
    {
      absl::MutexLock lock(&mu_);
      if (!handler_holds_) return;
      on_cancel = std::move(on_cancel_);
      on_cancel_ = nullptr;
    }
    // Outside the lock: it may answer the call at once. The handler's state
    // lives until on_done, which gRPC runs only after this returns.
    if (on_cancel) on_cancel();
  }

  void OnDone() override {
    if (counted_) admission_->Leave(this);
    LetGo(/*from_grpc=*/true);
  }

  void StopForDrain() override {
    absl::MutexLock lock(&mu_);
    // A handler that holds the call answers it: its work sees the stop.
    if (state_ != State::kReading) return;
    state_ = State::kAnswered;
    const RpcCall call = StartRpcCall(context_, method_);
    AddDrainRetryPushback(context_);
    Send(EndRpcCall(*metrics_, call, DrainStop()));
  }

 private:
  enum class State { kReading, kHandling, kAnswered };

  UnaryReactor(grpc::CallbackServerContext* context, Method method,
               const Handler* handler, Admission* admission,
               RpcMetrics* metrics, bool use_arena)
      : context_(context),
        method_(method),
        handler_(handler),
        admission_(admission),
        metrics_(metrics),
        arena_(ArenaOptions(initial_block_)),
        request_(google::protobuf::Arena::CreateMessage<Request>(
            use_arena ? &arena_ : nullptr)),
        response_(google::protobuf::Arena::CreateMessage<Response>(
            use_arena ? &arena_ : nullptr)) {}

  ~UnaryReactor() override {
    // Messages on no arena are the reactor's own.
    if (request_->GetArena() == nullptr) delete request_;
    if (response_->GetArena() == nullptr) delete response_;
  }

  void Begin() {
    counted_ = admission_->Arrive(this);
    if (counted_) {
      this->StartRead(request_);
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      state_ = State::kAnswered;
    }
    const RpcCall call = StartRpcCall(context_, method_);
    Send(EndRpcCall(*metrics_, call, DrainRefusal(context_, *metrics_)));
  }

  void Send(const grpc::Status& status) {
    if (status.ok()) {
      this->StartWriteAndFinish(response_, grpc::WriteOptions(), status);
    } else {
      this->Finish(status);
    }
  }

  // Gives up this side's hold on the call: gRPC's (OnDone) or the
  // handler's (Answer). Whichever comes second deletes the call, in the
  // same critical section that saw the other gone; the first touches
  // nothing of the call afterwards. (A call the drain answered may still be
  // in its handler's work when gRPC is done with it.)
  void LetGo(bool from_grpc) {
    std::function<void()> on_done;
    {
      absl::MutexLock lock(&mu_);
      if (from_grpc) {
        grpc_done_ = true;
      } else {
        handler_holds_ = false;
      }
      if (!grpc_done_ || handler_holds_) return;
      on_done = std::move(on_done_);
    }
    if (on_done) on_done();
    delete this;
  }

  // The first block lives in the reactor itself: a small call allocates
  // nothing more. Large repeated fields get blocks of their own size.
  static google::protobuf::ArenaOptions ArenaOptions(char* initial_block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = initial_block;
    options.initial_block_size = kInitialBlockBytes;
    options.max_block_size = 1 << 20;
    return options;
  }

  static constexpr size_t kInitialBlockBytes = 2048;

  grpc::CallbackServerContext* const context_;
  const Method method_;
  const Handler* const handler_;
  Admission* const admission_;
  RpcMetrics* const metrics_;
  bool counted_ = false;
  alignas(16) char initial_block_[kInitialBlockBytes];
  google::protobuf::Arena arena_;
  Request* const request_;
  Response* const response_;

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kReading;
  bool handler_holds_ ABSL_GUARDED_BY(mu_) = false;
  bool grpc_done_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_UNARY_CALL_H_
