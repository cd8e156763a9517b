#include "server/rpc_call.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/logging.h"
#include "server/status_conversion.h"

namespace engram::server {

RpcCall StartRpcCall(grpc::CallbackServerContext* context, Method method) {
  RpcCall call;
  call.method = method;
  call.start = absl::Now();
  call.ids = RequestIdsFromMetadata(context->client_metadata());
  context->AddTrailingMetadata(kRequestIdKey, call.ids.request_id);
  return call;
}

grpc::Status EndRpcCall(RpcMetrics& metrics, const RpcCall& call,
                        const absl::Status& status) {
  grpc::Status grpc_status = ToGrpcStatus(status);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - call.start);
  metrics.RecordCall(call.method, grpc_status.error_code(), seconds);
  if (core::LogEnabled(core::LogLevel::kDebug)) {
    const core::ScopedLogContext log_context(call.ids.request_id,
                                             call.ids.traceparent);
    core::Log(core::LogLevel::kDebug, "rpc",
              {{"method", MethodName(call.method)},
               {"code", GrpcCodeName(grpc_status.error_code())},
               {"seconds", absl::StrCat(seconds)},
               {"message", std::string(status.message())}});
  }
  return grpc_status;
}

void MarkOverloaded(grpc::CallbackServerContext* context, RpcMetrics& metrics,
                    absl::Duration retry_after) {
  metrics.RecordRejection(RejectReason::kOverloaded);
  context->AddTrailingMetadata(
      kRetryPushbackKey, absl::StrCat(absl::ToInt64Milliseconds(retry_after)));
}

absl::Status AdmissionRefusal(const Admission& admission,
                              const Admission::Ticket& ticket,
                              grpc::CallbackServerContext* context,
                              RpcMetrics& metrics) {
  MarkOverloaded(context, metrics, ticket.retry_after);
  return absl::ResourceExhaustedError(absl::StrCat(
      "server overloaded: ", admission.inflight_requests(), " calls (at most ",
      admission.options().max_requests, ") holding ",
      admission.inflight_bytes(), " bytes (at most ",
      admission.options().max_bytes,
      ") are in flight; retry after the "
      "time in the grpc-retry-pushback-ms trailer, or on another replica"));
}

absl::Status DrainRefusal(grpc::CallbackServerContext* context,
                          RpcMetrics& metrics) {
  AddDrainRetryPushback(context);
  metrics.RecordRejection(RejectReason::kDraining);
  return absl::UnavailableError(
      "server is shutting down; retry on another replica");
}

absl::Status DrainStop() {
  return absl::UnavailableError(
      "server is shutting down: the call was still running at the drain "
      "deadline and was stopped; retry it on another replica");
}

void AddDrainRetryPushback(grpc::CallbackServerContext* context) {
  context->AddTrailingMetadata(
      kRetryPushbackKey,
      absl::StrCat(absl::ToInt64Milliseconds(kDrainRetryAfter)));
}

}  // namespace engram::server
