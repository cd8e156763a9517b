// The steps of one RPC's bookkeeping that CallScope (call_scope.h), which
// every handler uses, is made of: the request ids echoed to the caller, the
// per-method metrics and the debug log line, and the refusals' trailers.
//
// Thread-safety: the functions are reentrant; RpcMetrics is thread-safe.
#ifndef ENGRAM_SERVER_RPC_CALL_H_
#define ENGRAM_SERVER_RPC_CALL_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "server/admission.h"
#include "server/request_context.h"
#include "server/rpc_metrics.h"

namespace engram::server {

// gRPC's retry hint: with an overload refusal, how many milliseconds to wait
// before trying again.
inline constexpr char kRetryPushbackKey[] = "grpc-retry-pushback-ms";

// The retry hint of a call a draining server refused or stopped: short,
// since the retry goes to another replica (GOAWAY has told the client's
// channel to leave this one).
inline constexpr absl::Duration kDrainRetryAfter = absl::Milliseconds(50);

struct RpcCall {
  Method method = Method::kBatchCosine;
  absl::Time start;
  RequestIds ids;
};

// Reads the call's ids and echoes the request id in the trailing metadata
// (not the headers: a response that sends headers is committed, and a
// client's retry policy could no longer retry on another replica).
RpcCall StartRpcCall(grpc::CallbackServerContext* context, Method method);

// Records the finished call in `metrics`, logs it (debug) and returns the
// status to answer with.
grpc::Status EndRpcCall(RpcMetrics& metrics, const RpcCall& call,
                        const absl::Status& status);

// Marks the call's answer as an overload refusal: counts it as
// rejected{reason="overloaded"} and adds the grpc-retry-pushback-ms trailer
// with `retry_after`. For refusals decided after admission too (a full
// search queue).
void MarkOverloaded(grpc::CallbackServerContext* context, RpcMetrics& metrics,
                    absl::Duration retry_after);

// Why `ticket` (not admitted) was refused: RESOURCE_EXHAUSTED with the
// grpc-retry-pushback-ms trailer added to `context`. Records the rejection
// in `metrics`.
absl::Status AdmissionRefusal(const Admission& admission,
                              const Admission::Ticket& ticket,
                              grpc::CallbackServerContext* context,
                              RpcMetrics& metrics);

// The answer to a call that arrived while the server drains: UNAVAILABLE
// with the grpc-retry-pushback-ms trailer of kDrainRetryAfter added to
// `context`, recorded as rejected{reason="draining"}.
absl::Status DrainRefusal(grpc::CallbackServerContext* context,
                          RpcMetrics& metrics);

// The answer to a call the drain stopped at its stop time (UNAVAILABLE),
// and its retry hint, which the code that ends the call adds.
absl::Status DrainStop();
void AddDrainRetryPushback(grpc::CallbackServerContext* context);

}  // namespace engram::server

#endif  // ENGRAM_SERVER_RPC_CALL_H_
