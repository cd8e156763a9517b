#include "server/similarity_service.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/logging.h"
#include "core/validation.h"
#include "server/call_scope.h"
#include "server/proto_conversion.h"

namespace engram::server {

absl::StatusOr<std::unique_ptr<SimilarityService>> SimilarityService::Create(
    const Options& options, core::Engine* engine, RpcMetrics* metrics,
    const Readiness* readiness) {
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Admission> admission,
                          Admission::Create(options.admission));
  return std::unique_ptr<SimilarityService>(new SimilarityService(
      options, engine, metrics, readiness, std::move(admission)));
}

SimilarityService::SimilarityService(const Options& options,
                                     core::Engine* engine, RpcMetrics* metrics,
                                     const Readiness* readiness,
                                     std::unique_ptr<Admission> admission)
    : options_(options),
      engine_(engine),
      metrics_(metrics),
      readiness_(readiness),
      admission_(std::move(admission)),
      started_(absl::Now()),
      collections_(engine, metrics, admission_.get()) {
  ServeUnary(Method::kBatchCosine, this, &SimilarityService::HandleBatchCosine);
  ServeUnary(Method::kSpread, this, &SimilarityService::HandleSpread);
  ServeUnary(Method::kGetStats, this, &SimilarityService::HandleGetStats);
  CollectionHandlers* c = &collections_;
  ServeUnary(Method::kCreateCollection, c,
             &CollectionHandlers::CreateCollection);
  ServeUnary(Method::kDeleteCollection, c,
             &CollectionHandlers::DeleteCollection);
  ServeUnary(Method::kListCollections, c, &CollectionHandlers::ListCollections);
  ServeUnary(Method::kDescribeCollection, c,
             &CollectionHandlers::DescribeCollection);
  ServeUnary(Method::kSearchCollection, c,
             &CollectionHandlers::SearchCollection);
  ServeUnary(Method::kDeleteGraph, c, &CollectionHandlers::DeleteGraph);
  ServeUnary(Method::kListGraphs, c, &CollectionHandlers::ListGraphs);
  ServeUnary(Method::kDescribeGraph, c, &CollectionHandlers::DescribeGraph);
  ServeUnary(Method::kUpdateGraph, c, &CollectionHandlers::UpdateGraph);
  ServeUnary(Method::kUpsertRows, c, &CollectionHandlers::UpsertRows);
  ServeUnary(Method::kDeleteRows, c, &CollectionHandlers::DeleteRows);
}

template <typename Owner, typename Request, typename Response>
void SimilarityService::ServeUnary(Method method, Owner* owner,
                                   void (Owner::*handle)(UnaryCall*,
                                                         const Request*,
                                                         Response*)) {
  // The service's methods are numbered in the proto's order, as Method is
  // (rpc_metrics.h). Registered as bidi streaming, a call reaches the
  // reactor at its headers, not once its request has arrived.
  MarkMethodStreamed(
      static_cast<int>(method),
      new grpc::internal::CallbackBidiHandler<Request, Response>(
          [this, method,
           handler = typename UnaryReactor<Request, Response>::Handler(
               [owner, handle](UnaryCall* call, const Request* request,
                               Response* response) {
                 (owner->*handle)(call, request, response);
               })](grpc::CallbackServerContext* context) {
            return UnaryReactor<Request, Response>::Start(
                context, method, &handler, admission_.get(), metrics_,
                options_.request_arena);
          }));
}

void SimilarityService::StartDraining() { admission_->StartDraining(); }

bool SimilarityService::WaitForDrain(absl::Time deadline) {
  return admission_->WaitForDrain(deadline);
}

void SimilarityService::WaitForQuiet(absl::Duration quiet,
                                     absl::Time deadline) {
  admission_->WaitForQuiet(quiet, deadline);
}

void SimilarityService::StopCalls() { admission_->StopCalls(); }

void SimilarityService::CountRejection(
    const absl::Status& status, const dispatch::ExecutionReport& report) {
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

namespace {

// The engine turns a backend's exceptions into a status (HybridExecutor);
// this catches the rest of the call's own, such as allocating a large
// response, which would otherwise end the process on a worker thread.
template <typename Run>
absl::Status RunCatching(Run& run, const base::Interrupt* interrupt) {
  try {
    return run(interrupt);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "out of host memory while computing this request");
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the request failed on the server: ", e.what()));
  }
}

}  // namespace

template <typename Run>
void SimilarityService::Compute(UnaryCall* call, Method method, uint64_t cost,
                                google::protobuf::Message* response, Run run) {
  Start(std::make_shared<CallScope>(call->context(), method, admission_.get(),
                                    metrics_),
        call, cost, response, std::move(run));
}

template <typename Run>
void SimilarityService::Start(std::shared_ptr<CallScope> scope, UnaryCall* call,
                              uint64_t cost,
                              google::protobuf::Message* response, Run run) {
  if (absl::Status refused = scope->Admit(cost); !refused.ok()) {
    scope->Finish(call, refused, response);
    return;
  }
  scope->Queued();
  engine_->Submit(
      [response, call, scope = std::move(scope), run = std::move(run)] {
        scope->Dequeued();
        // Every line this request's work writes, the engine's included.
        const core::ScopedLogContext log_context = scope->LogContext();
        absl::Status status = scope->BeforeWork();
        if (status.ok()) {
          status = scope->AfterWork(RunCatching(run, &scope->interrupt()));
        }
        scope->Finish(call, status, response);
      });
}

void SimilarityService::HandleBatchCosine(
    UnaryCall* call,
    const ::engram::similarity::v1::BatchCosineRequest* request,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  Compute(call, Method::kBatchCosine,
          AdmissionCost(*request, engine_->limits()), response,
          [this, request, response](const base::Interrupt* stop) {
            return RunBatchCosine(*request, stop, response);
          });
}

void SimilarityService::HandleSpread(
    UnaryCall* call, const ::engram::similarity::v1::SpreadRequest* request,
    ::engram::similarity::v1::SpreadResponse* response) {
  auto scope = std::make_shared<CallScope>(call->context(), Method::kSpread,
                                           admission_.get(), metrics_);
  // Exactly one of graph and graph_name.
  absl::Status shape = absl::OkStatus();
  if (request->has_graph() && !request->graph_name().empty()) {
    shape = absl::InvalidArgumentError(
        "graph, graph_name: give exactly one of them, not both");
  } else if (!request->has_graph() && request->graph_name().empty()) {
    shape = absl::InvalidArgumentError(
        "graph, graph_name: give exactly one of them (neither is set)");
  } else if (request->has_graph() && request->min_version() != 0) {
    shape = absl::InvalidArgumentError(
        "min_version: applies to graph_name; an inline graph has no version");
  }
  if (!shape.ok()) {
    scope->Finish(call, shape, response);
    return;
  }
  if (request->has_graph()) {
    Start(std::move(scope), call, AdmissionCost(*request, engine_->limits()),
          response, [this, request, response](const base::Interrupt* stop) {
            return RunSpread(*request, nullptr, stop, response);
          });
    return;
  }
  // A named graph is resolved once this replica holds min_version of it
  // (at once, or later on the waiting thread), and its snapshot is held by
  // the call until it is answered, so a concurrent DeleteGraph never pulls
  // it from under the spread.
  collections_.ResolveGraph(
      request->graph_name(), request->min_version(),
      [this, scope, call, request, response](
          absl::StatusOr<std::shared_ptr<const collections::Graph>> graph) {
        if (!graph.ok()) {
          if (absl::IsUnavailable(graph.status())) {
            scope->AddRetryPushback(kMinVersionRetryAfter);
          }
          scope->Finish(call, graph.status(), response);
          return;
        }
        const uint64_t cost = AdmissionCost(*request, engine_->limits()) +
                              24 * uint64_t{(*graph)->num_nodes()};
        Start(scope, call, cost, response,
              [this, request, response,
               graph = *std::move(graph)](const base::Interrupt* stop) {
                return RunSpread(*request, graph.get(), stop, response);
              });
      });
}

void SimilarityService::HandleGetStats(
    UnaryCall* call, const ::engram::similarity::v1::GetStatsRequest* request,
    ::engram::similarity::v1::GetStatsResponse* response) {
  CallScope scope(call->context(), Method::kGetStats, admission_.get(),
                  metrics_);
  if (absl::Status status = scope.Enter(request->ByteSizeLong());
      !status.ok()) {
    scope.Finish(call, status, response);
    return;
  }
  // Snapshots of counters and component state: cheap enough to answer on
  // the gRPC thread. The engine's part refreshes the same gauges /metrics
  // shows, from one snapshot.
  response->set_version(options_.version);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  if (const collections::DataDir* dir = engine_->resident().data_dir();
      dir != nullptr && dir->catalog() != nullptr) {
    const collections::CatalogHealth health = dir->catalog()->Health();
    auto* catalog = response->mutable_catalog();
    catalog->set_address(dir->catalog()->Describe());
    catalog->set_connected(health.connected);
    catalog->set_state_seconds(
        health.since == absl::InfinitePast()
            ? absl::ToDoubleSeconds(absl::Now() - started_)
            : absl::ToDoubleSeconds(absl::Now() - health.since));
    catalog->set_revision(health.revision);
    catalog->set_error(health.error);
  }
  response->set_gpu_available(engine_->gpu_available());
  response->set_gpu_name(engine_->gpu_name());
  for (const RpcMetrics::MethodCount& m : metrics_->Snapshot()) {
    auto* out = response->add_methods();
    out->set_method(m.method);
    out->set_code(m.code);
    out->set_count(m.count);
  }
  EngineStatsToProto(engine_->Stats(), response);
  // The other calls: this one is admitted, and counted, too.
  const uint64_t inflight = metrics_->inflight();
  response->set_inflight_requests(inflight > 0 ? inflight - 1 : 0);
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
  scope.Finish(call, absl::OkStatus(), response);
}

absl::Status SimilarityService::RunBatchCosine(
    const ::engram::similarity::v1::BatchCosineRequest& request,
    const base::Interrupt* interrupt,
    ::engram::similarity::v1::BatchCosineResponse* response) {
  ENGRAM_ASSIGN_OR_RETURN(dispatch::CosineJob job, CosineJobFromProto(request));
  job.interrupt = interrupt;
  // Validate before sizing the response: the size limits guard this
  // allocation.
  if (absl::Status valid = core::ValidateCosineJob(job, engine_->limits());
      !valid.ok()) {
    CountRejection(valid, dispatch::ExecutionReport{});
    return valid;
  }
  dispatch::CosineOutput out;
  if (job.top_k == 0) {
    // Reserved, not resized: the kernel writes every score, so zero-filling
    // Q*N floats first would be a wasted pass over the largest buffer.
    // Q*N passed ValidateCosineJob against max_output_elements, which
    // ValidateLimits keeps within kMaxOutputElementsLimit: it fits an int.
    const int count =
        static_cast<int>(uint64_t{job.queries.rows} * job.targets.rows);
    response->mutable_scores()->Reserve(count);
    out.scores = absl::MakeSpan(
        response->mutable_scores()->AddNAlreadyReserved(count), count);
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
      top->mutable_indices()->Reserve(k);
      top->mutable_scores()->Reserve(k);
      for (const kernels::ScoredIndex& entry : list) {
        top->mutable_indices()->AddAlreadyReserved(entry.index);
        top->mutable_scores()->AddAlreadyReserved(entry.score);
      }
    }
  }
  ReportToProto(out.report, response->mutable_report());
  return absl::OkStatus();
}

absl::Status SimilarityService::RunSpread(
    const ::engram::similarity::v1::SpreadRequest& request,
    const collections::Graph* graph, const base::Interrupt* interrupt,
    ::engram::similarity::v1::SpreadResponse* response) {
  std::vector<kernels::SpreadSeed> seeds;
  ENGRAM_ASSIGN_OR_RETURN(dispatch::SpreadJob job,
                          SpreadJobFromProto(request, &seeds));
  if (graph != nullptr) {
    job.graph = graph->base();
    job.overlay = graph->overlay();
    response->set_graph_version(graph->version());
  }
  job.interrupt = interrupt;
  dispatch::SpreadOutput out;
  if (absl::Status computed = engine_->Spread(job, &out); !computed.ok()) {
    CountRejection(computed, out.report);
    return computed;
  }
  if (job.top_k == 0) {
    const std::vector<float>& act = out.result.activation;
    const int count = static_cast<int>(act.size());
    response->mutable_activation()->Reserve(count);
    std::copy(act.begin(), act.end(),
              response->mutable_activation()->AddNAlreadyReserved(count));
  } else {
    const int k = static_cast<int>(out.top.size());
    response->mutable_top_nodes()->Reserve(k);
    response->mutable_top_activation()->Reserve(k);
    for (const kernels::ScoredIndex& entry : out.top) {
      response->mutable_top_nodes()->AddAlreadyReserved(entry.index);
      response->mutable_top_activation()->AddAlreadyReserved(entry.score);
    }
  }
  response->set_hops(out.result.hops);
  response->set_edges_traversed(out.result.edges_traversed);
  response->set_seeds_ignored(out.seeds_ignored);
  ReportToProto(out.report, response->mutable_report());
  return absl::OkStatus();
}

}  // namespace engram::server
