#include "server/similarity_service.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/logging.h"
#include "core/validation.h"
#include "kernels/status_macros.h"
#include "server/proto_conversion.h"
#include "server/status_conversion.h"

namespace engram::server {

SimilarityService::SimilarityService(core::Engine* engine, RpcMetrics* metrics,
                                     const Readiness* readiness,
                                     std::string version)
    : engine_(engine),
      metrics_(metrics),
      readiness_(readiness),
      version_(std::move(version)),
      started_(absl::Now()) {}

bool SimilarityService::BeginCall() {
  absl::MutexLock lock(&mu_);
  last_arrival_ = absl::Now();
  if (draining_) return false;
  ++inflight_;
  metrics_->CallStarted();
  return true;
}

void SimilarityService::EndCall() {
  absl::MutexLock lock(&mu_);
  --inflight_;
}

void SimilarityService::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool SimilarityService::WaitForDrain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return inflight_ == 0;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&drained), deadline);
}

void SimilarityService::WaitForQuiet(absl::Duration quiet,
                                     absl::Time deadline) {
  while (true) {
    absl::Time quiet_at;
    {
      absl::MutexLock lock(&mu_);
      quiet_at = last_arrival_ + quiet;
    }
    const absl::Time now = absl::Now();
    if (now >= quiet_at || now >= deadline) return;
    absl::SleepFor(std::min(quiet_at, deadline) - now);
  }
}

SimilarityService::Call SimilarityService::StartCall(
    grpc::CallbackServerContext* context, Method method) {
  Call call;
  call.method = method;
  call.start = absl::Now();
  call.ids = RequestIdsFromMetadata(context->client_metadata());
  // In the trailers, not the headers: a response that sends headers is
  // committed, and a client's retry policy could no longer retry an error
  // such as UNAVAILABLE while draining on another replica.
  context->AddTrailingMetadata(kRequestIdKey, call.ids.request_id);
  return call;
}

void SimilarityService::Finish(grpc::ServerUnaryReactor* reactor,
                               const Call& call, const absl::Status& status) {
  const grpc::Status grpc_status = ToGrpcStatus(status);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - call.start);
  metrics_->RecordCall(call.method, grpc_status.error_code(), seconds);
  if (core::LogEnabled(core::LogLevel::kDebug)) {
    const core::ScopedLogContext log_context(call.ids.request_id,
                                             call.ids.traceparent);
    core::Log(core::LogLevel::kDebug, "rpc",
              {{"method", MethodName(call.method)},
               {"code", GrpcCodeName(grpc_status.error_code())},
               {"seconds", absl::StrCat(seconds)},
               {"message", std::string(status.message())}});
  }
  reactor->Finish(grpc_status);
}

void SimilarityService::CountRejection(const absl::Status& status,
                                       const core::ExecutionReport& report) {
  const absl::StatusCode code = status.code();
  if (report.decided_by.empty()) {
    // Refused before dispatch: only the size limits give this code there.
    if (code == absl::StatusCode::kResourceExhausted) {
      metrics_->RecordRejection(RejectReason::kTooLarge);
    }
    return;
  }
  if (code == absl::StatusCode::kResourceExhausted ||
      code == absl::StatusCode::kUnavailable) {
    metrics_->RecordRejection(RejectReason::kGpuUnavailable);
  }
}

absl::Status SimilarityService::AbandonedStatus(
    grpc::CallbackServerContext* context) {
  if (context->IsCancelled()) {
    return absl::CancelledError("the call was cancelled before it ran");
  }
  if (std::chrono::system_clock::now() > context->deadline()) {
    return absl::DeadlineExceededError(
        "the call's deadline passed before it ran");
  }
  return absl::OkStatus();
}

namespace {
absl::Status ShuttingDown() {
  return absl::UnavailableError("server is shutting down");
}
}  // namespace

template <typename Run>
grpc::ServerUnaryReactor* SimilarityService::Compute(
    grpc::CallbackServerContext* context, Method method,
    google::protobuf::Message* response, Run run) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Call call = StartCall(context, method);
  if (!BeginCall()) {
    metrics_->RecordRejection(RejectReason::kDraining);
    Finish(reactor, call, ShuttingDown());
    return reactor;
  }
  metrics_->Queued();
  engine_->Submit([this, context, response, reactor, call = std::move(call),
                   run = std::move(run)] {
    metrics_->Dequeued();
    // Every line this request's work writes, the engine's included.
    const core::ScopedLogContext log_context(call.ids.request_id,
                                             call.ids.traceparent);
    absl::Status status = AbandonedStatus(context);
    if (status.ok()) {
      status = run();
    } else {
      metrics_->RecordRejection(RejectReason::kAbandoned);
    }
    if (!status.ok()) response->Clear();
    // The gauge counts calls not yet answered: it drops before the answer
    // leaves, so a client that scrapes after its answer never sees its own
    // call. The drain count (EndCall) drops only after Finish().
    metrics_->CallEnded();
    Finish(reactor, call, status);
    EndCall();
  });
  return reactor;
}

grpc::ServerUnaryReactor* SimilarityService::BatchCosine(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::BatchCosineRequest* request,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  return Compute(
      context, Method::kBatchCosine, response,
      [this, request, response] { return RunBatchCosine(*request, response); });
}

grpc::ServerUnaryReactor* SimilarityService::Spread(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::SpreadRequest* request,
    ::engram::similarity::v1::SpreadResponse* response) {
  return Compute(context, Method::kSpread, response, [this, request, response] {
    return RunSpread(*request, response);
  });
}

grpc::ServerUnaryReactor* SimilarityService::GetStats(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::GetStatsRequest* /*request*/,
    ::engram::similarity::v1::GetStatsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const Call call = StartCall(context, Method::kGetStats);
  // Snapshots of counters and component state: cheap enough to answer on
  // the gRPC thread. The engine's part refreshes the same gauges /metrics
  // shows, from one snapshot.
  response->set_version(version_);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  response->set_gpu_available(engine_->gpu_available());
  response->set_gpu_name(engine_->gpu_name());
  for (const RpcMetrics::MethodCount& m : metrics_->Snapshot()) {
    auto* out = response->add_methods();
    out->set_method(m.method);
    out->set_code(m.code);
    out->set_count(m.count);
  }
  EngineStatsToProto(engine_->Stats(), response);
  response->set_inflight_requests(metrics_->inflight());
  response->set_queued_work_items(metrics_->queued());
  for (const RpcMetrics::RejectionCount& r : metrics_->Rejections()) {
    auto* out = response->add_rejections();
    out->set_reason(r.reason);
    out->set_count(r.count);
  }
  const Readiness::State ready = readiness_->state();
  auto* readiness = response->mutable_readiness();
  readiness->set_serving(ready.serving);
  readiness->set_phase(Readiness::PhaseName(ready.phase));
  readiness->set_reason(ready.reason);
  readiness->set_gpu_required(ready.gpu_required);
  readiness->set_cpu_only(ready.cpu_only);
  Finish(reactor, call, absl::OkStatus());
  return reactor;
}

absl::Status SimilarityService::RunBatchCosine(
    const ::engram::similarity::v1::BatchCosineRequest& request,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  ENGRAM_ASSIGN_OR_RETURN(core::CosineJob job, CosineJobFromProto(request));
  // Validate before sizing the response: the size limits guard this
  // allocation.
  if (absl::Status valid = core::ValidateCosineJob(job, engine_->limits());
      !valid.ok()) {
    CountRejection(valid, core::ExecutionReport{});
    return valid;
  }
  core::CosineOutput out;
  if (job.top_k == 0) {
    const size_t count = job.queries.rows * job.targets.rows;
    response->mutable_scores()->Resize(static_cast<int>(count), 0.0f);
    out.scores =
        absl::MakeSpan(response->mutable_scores()->mutable_data(), count);
  }
  if (absl::Status computed = engine_->Cosine(job, &out); !computed.ok()) {
    CountRejection(computed, out.report);
    return computed;
  }
  if (job.top_k > 0) {
    response->mutable_top()->Reserve(static_cast<int>(out.top.size()));
    for (const kernels::TopKList& list : out.top) {
      auto* top = response->add_top();
      const int k = static_cast<int>(list.size());
      top->mutable_indices()->Resize(k, 0);
      top->mutable_scores()->Resize(k, 0.0f);
      for (int i = 0; i < k; ++i) {
        top->mutable_indices()->Set(i, list[i].index);
        top->mutable_scores()->Set(i, list[i].score);
      }
    }
  }
  ReportToProto(out.report, response->mutable_report());
  return absl::OkStatus();
}

absl::Status SimilarityService::RunSpread(
    const ::engram::similarity::v1::SpreadRequest& request,
    ::engram::similarity::v1::SpreadResponse* response) {
  std::vector<kernels::SpreadSeed> seeds;
  ENGRAM_ASSIGN_OR_RETURN(core::SpreadJob job,
                          SpreadJobFromProto(request, &seeds));
  core::SpreadOutput out;
  if (absl::Status computed = engine_->Spread(job, &out); !computed.ok()) {
    CountRejection(computed, out.report);
    return computed;
  }
  if (job.top_k == 0) {
    const std::vector<float>& act = out.result.activation;
    response->mutable_activation()->Resize(static_cast<int>(act.size()), 0.0f);
    std::copy(act.begin(), act.end(),
              response->mutable_activation()->mutable_data());
  } else {
    const int k = static_cast<int>(out.top.size());
    response->mutable_top_nodes()->Resize(k, 0);
    response->mutable_top_activation()->Resize(k, 0.0f);
    for (int i = 0; i < k; ++i) {
      response->mutable_top_nodes()->Set(i, out.top[i].index);
      response->mutable_top_activation()->Set(i, out.top[i].score);
    }
  }
  response->set_hops(out.result.hops);
  response->set_edges_traversed(out.result.edges_traversed);
  ReportToProto(out.report, response->mutable_report());
  return absl::OkStatus();
}

}  // namespace engram::server
