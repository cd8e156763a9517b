// CallScope: one RPC's bookkeeping from arrival to answer, the same for
// every handler, unary or streaming: the request ids (StartRpcCall),
// admission by count and bytes, the in-flight and queued gauges, the
// client's cancellation and deadline before and after the work, the
// per-method metrics and status conversion at the end (EndRpcCall), and
// the admission given back once the answer has left.
//
// A handler makes one when the call arrives and keeps it until the call is
// done: on the stack of a call answered at once, in the task handed to the
// workers, or as a member of a reactor (destroyed in OnDone). The order of
// a computing call:
//
//   CallScope scope(context, method, &admission, &metrics);
//   if (absl::Status refused = scope.Admit(cost); !refused.ok()) -> answer
//   scope.Queued();  ... on a worker: scope.Dequeued();
//   absl::Status status = scope.BeforeWork();
//   if (status.ok()) status = scope.AfterWork(Run(&scope.interrupt()));
//   answer with scope.End(status, response), then Release()
//
// Every call is admitted, the ones answered from the stores' maps
// (collection management, GetStats) included, at the cost of their request:
// a flood of them is bounded like any other, and their deadline and
// cancellation are checked before they run.
//
// Thread-safety: not thread-safe. A call's scope is used by one thread at
// a time: the gRPC thread that received it, then the worker or callback
// that answers it; the hand-off (Engine::Submit, the batcher's callback,
// gRPC's reactor callbacks) orders the accesses. interrupt() may be
// checked from any thread while the call is unanswered.
#ifndef ENGRAM_SERVER_CALL_SCOPE_H_
#define ENGRAM_SERVER_CALL_SCOPE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "base/interrupt.h"
#include "core/logging.h"
#include "google/protobuf/message.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"
#include "server/admission.h"
#include "server/call_interrupt.h"
#include "server/rpc_call.h"
#include "server/rpc_metrics.h"
#include "server/unary_call.h"

namespace engram::server {

class CallScope {
 public:
  // Starts the call (StartRpcCall: reads its ids, echoes the request id).
  // Nothing is owned. `admission` and `metrics` must outlive this;
  // `context` must outlive every call but Release() and the destructor
  // (gRPC may destroy it once the call is answered).
  CallScope(grpc::CallbackServerContext* context, Method method,
            Admission* admission, RpcMetrics* metrics);
  // Gives the admission back if Release() was not called.
  ~CallScope();

  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  // Asks admission for `cost` bytes, at most once. OK when admitted: the
  // in-flight gauge counts the call from now until End(). Otherwise the
  // refusal to answer with, already counted as a rejection: UNAVAILABLE
  // while draining, RESOURCE_EXHAUSTED with the grpc-retry-pushback-ms
  // trailer when overloaded.
  absl::Status Admit(uint64_t cost);
  bool admitted() const { return admitted_; }

  // Admit(cost), then BeforeWork(): for a call answered on the thread that
  // received it.
  absl::Status Enter(uint64_t cost);

  // A refusal decided after admission by a queue of its own (a full search
  // queue): counted as overloaded, with admission's current retry hint.
  void MarkOverloaded();

  // Adds the grpc-retry-pushback-ms trailer, so that a client's retry
  // policy tries the call again after `after` (on another replica, with
  // round_robin): for an UNAVAILABLE this replica may soon answer
  // differently, such as a min_version it has not loaded yet.
  void AddRetryPushback(absl::Duration after);
  // The call waits for a worker (the queued gauge), and a worker took it.
  void Queued();
  void Dequeued();

  // The call's cancellation and deadline, and the drain's stop, for the
  // work to stop between its chunks and hops.
  const base::Interrupt& interrupt() const { return interrupt_; }

  // Every log line written while it lives carries the call's ids.
  core::ScopedLogContext LogContext() const {
    return core::ScopedLogContext(call_.ids.request_id, call_.ids.traceparent);
  }

  // Before the work: OK, or the client's stop as "... before its work
  // started", counted as an abandoned call (rejected{reason="abandoned"}),
  // or the drain's stop.
  absl::Status BeforeWork() const;

  // After the work that returned `status`: a CANCELLED or DEADLINE_EXCEEDED
  // the work reported is counted as an interruption; otherwise, when the
  // client stopped waiting meanwhile (its deadline passed or it cancelled
  // during the last chunk), that stop replaces `status`, since the client
  // sees that code and the metrics must too.
  absl::Status AfterWork(absl::Status status) const;

  // The end of the call, once: clears `response` (may be null) on error,
  // adds the retry hint to an UNAVAILABLE the drain's stop caused, drops
  // the in-flight gauge of an admitted call (before the answer leaves, so a
  // client that scrapes after its answer never sees its own call), records
  // the method, code and latency, logs the call (debug) and returns the
  // status to answer with.
  grpc::Status End(const absl::Status& status,
                   google::protobuf::Message* response);

  // Gives the admission back, once the answer has left (the drain waits
  // for it). Idempotent; a no-op for a call not admitted.
  void Release();

  // For a unary call (unary_call.h): End, Answer, then Release. Nothing of
  // the call may be touched afterwards.
  void Finish(UnaryCall* call, const absl::Status& status,
              google::protobuf::Message* response);

 private:
  grpc::CallbackServerContext* const context_;
  Admission* const admission_;
  RpcMetrics* const metrics_;
  const RpcCall call_;
  const CallInterrupt interrupt_;
  Admission::Ticket ticket_;
  bool admitted_ = false;
  bool released_ = false;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_CALL_SCOPE_H_
