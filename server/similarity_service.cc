#include "server/similarity_service.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "core/validation.h"
#include "kernels/status_macros.h"
#include "server/proto_conversion.h"
#include "server/status_conversion.h"

namespace engram::server {

SimilarityService::SimilarityService(core::Engine* engine, RpcMetrics* metrics,
                                     std::string version)
    : engine_(engine),
      metrics_(metrics),
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
  metrics_->CallEnded();
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

void SimilarityService::Finish(grpc::ServerUnaryReactor* reactor, Method method,
                               absl::Time start, const absl::Status& status) {
  const grpc::Status grpc_status = ToGrpcStatus(status);
  metrics_->RecordCall(method, grpc_status.error_code(),
                       absl::ToDoubleSeconds(absl::Now() - start));
  reactor->Finish(grpc_status);
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

grpc::ServerUnaryReactor* SimilarityService::BatchCosine(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::BatchCosineRequest* request,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  if (!BeginCall()) {
    Finish(reactor, Method::kBatchCosine, start, ShuttingDown());
    return reactor;
  }
  engine_->Submit([this, context, request, response, reactor, start] {
    absl::Status status = AbandonedStatus(context);
    if (status.ok()) status = RunBatchCosine(*request, response);
    if (!status.ok()) response->Clear();
    Finish(reactor, Method::kBatchCosine, start, status);
    EndCall();
  });
  return reactor;
}

grpc::ServerUnaryReactor* SimilarityService::Spread(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::SpreadRequest* request,
    ::engram::similarity::v1::SpreadResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  if (!BeginCall()) {
    Finish(reactor, Method::kSpread, start, ShuttingDown());
    return reactor;
  }
  engine_->Submit([this, context, request, response, reactor, start] {
    absl::Status status = AbandonedStatus(context);
    if (status.ok()) status = RunSpread(*request, response);
    if (!status.ok()) response->Clear();
    Finish(reactor, Method::kSpread, start, status);
    EndCall();
  });
  return reactor;
}

grpc::ServerUnaryReactor* SimilarityService::GetStats(
    grpc::CallbackServerContext* context,
    const ::engram::similarity::v1::GetStatsRequest* /*request*/,
    ::engram::similarity::v1::GetStatsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  // A snapshot of counters: cheap enough to answer on the gRPC thread.
  response->set_version(version_);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  response->set_gpu_available(engine_->gpu_available());
  for (const RpcMetrics::MethodCount& m : metrics_->Snapshot()) {
    auto* out = response->add_methods();
    out->set_method(m.method);
    out->set_code(m.code);
    out->set_count(m.count);
  }
  for (const core::EngineMetrics::BackendSnapshot& b :
       engine_->metrics().Snapshot()) {
    auto* out = response->add_backends();
    out->set_operation(core::OperationName(b.operation));
    out->set_backend(BackendToProto(b.backend));
    out->set_requests(b.requests);
    out->set_work_items(b.work_items);
    out->set_compute_seconds_total(b.compute_seconds_total);
    out->set_p50_seconds(b.p50_seconds);
    out->set_p99_seconds(b.p99_seconds);
  }
  response->set_inflight_requests(metrics_->inflight());
  Finish(reactor, Method::kGetStats, start, absl::OkStatus());
  return reactor;
}

absl::Status SimilarityService::RunBatchCosine(
    const ::engram::similarity::v1::BatchCosineRequest& request,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  ENGRAM_ASSIGN_OR_RETURN(core::CosineJob job, CosineJobFromProto(request));
  // Validate before sizing the response: the size limits guard this
  // allocation.
  ENGRAM_RETURN_IF_ERROR(core::ValidateCosineJob(job, engine_->limits()));
  core::CosineOutput out;
  if (job.top_k == 0) {
    const size_t count = job.queries.rows * job.targets.rows;
    response->mutable_scores()->Resize(static_cast<int>(count), 0.0f);
    out.scores =
        absl::MakeSpan(response->mutable_scores()->mutable_data(), count);
  }
  ENGRAM_RETURN_IF_ERROR(engine_->Cosine(job, &out));
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
  ENGRAM_RETURN_IF_ERROR(engine_->Spread(job, &out));
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
