#include "server/rpc_metrics.h"

#include "core/histograms.h"
#include "prometheus/family.h"

namespace engram::server {

const char* MethodName(Method method) {
  switch (method) {
    case Method::kBatchCosine:
      return "BatchCosine";
    case Method::kSpread:
      return "Spread";
    case Method::kGetStats:
      return "GetStats";
    case Method::kCreateCollection:
      return "CreateCollection";
    case Method::kUploadCollection:
      return "UploadCollection";
    case Method::kDeleteCollection:
      return "DeleteCollection";
    case Method::kListCollections:
      return "ListCollections";
    case Method::kDescribeCollection:
      return "DescribeCollection";
    case Method::kSearchCollection:
      return "SearchCollection";
    case Method::kUpsertRows:
      return "UpsertRows";
    case Method::kDeleteRows:
      return "DeleteRows";
    case Method::kPutGraph:
      return "PutGraph";
    case Method::kDeleteGraph:
      return "DeleteGraph";
    case Method::kListGraphs:
      return "ListGraphs";
    case Method::kDescribeGraph:
      return "DescribeGraph";
    case Method::kUpdateGraph:
      return "UpdateGraph";
  }
  return "unknown";
}

const char* RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kDraining:
      return "draining";
    case RejectReason::kTooLarge:
      return "too_large";
    case RejectReason::kGpuUnavailable:
      return "gpu_unavailable";
    case RejectReason::kAbandoned:
      return "abandoned";
    case RejectReason::kOverloaded:
      return "overloaded";
  }
  return "unknown";
}

RpcMetrics::RpcMetrics(prometheus::Registry& registry) {
  auto& requests = prometheus::BuildCounter()
                       .Name("engram_requests_total")
                       .Help("Finished RPCs by method and gRPC status code.")
                       .Register(registry);
  // By method only: a code label would multiply the bucket series by 17
  // for latencies that the code-labelled request counter already splits.
  auto& durations =
      prometheus::BuildHistogram()
          .Name("engram_request_duration_seconds")
          .Help(
              "RPC latency from arrival to response, whatever the status, "
              "by method.")
          .Register(registry);
  for (int m = 0; m < kNumMethods; ++m) {
    const char* method = MethodName(static_cast<Method>(m));
    for (int c = 0; c < kNumGrpcCodes; ++c) {
      requests_[m][c] = &requests.Add(
          {{"method", method},
           {"code", GrpcCodeName(static_cast<grpc::StatusCode>(c))}});
    }
    durations_[m] =
        &durations.Add({{"method", method}}, core::LatencyBuckets());
  }
  auto& rejected =
      prometheus::BuildCounter()
          .Name("engram_rejected_requests_total")
          .Help(
              "Calls refused without computing, by reason: draining, "
              "too_large, gpu_unavailable, abandoned, overloaded.")
          .Register(registry);
  for (int r = 0; r < kNumRejectReasons; ++r) {
    rejected_[r] = &rejected.Add(
        {{"reason", RejectReasonName(static_cast<RejectReason>(r))}});
  }
  auto& interrupted =
      prometheus::BuildCounter()
          .Name("engram_interrupted_requests_total")
          .Help(
              "Calls whose work stopped part-way (between chunks or hops) "
              "because the client cancelled or the deadline passed, by "
              "reason: cancelled, deadline_exceeded.")
          .Register(registry);
  interrupted_cancelled_ = &interrupted.Add({{"reason", "cancelled"}});
  interrupted_deadline_ = &interrupted.Add({{"reason", "deadline_exceeded"}});
  inflight_ = &prometheus::BuildGauge()
                   .Name("engram_inflight_requests")
                   .Help("RPCs accepted and not yet answered.")
                   .Register(registry)
                   .Add({});
  queued_ = &prometheus::BuildGauge()
                 .Name("engram_queued_work_items")
                 .Help(
                     "Accepted calls waiting for a worker thread (the "
                     "engine's queue).")
                 .Register(registry)
                 .Add({});
}

void RpcMetrics::RecordCall(Method method, grpc::StatusCode code,
                            double seconds) {
  int c = static_cast<int>(code);
  if (c < 0 || c >= kNumGrpcCodes) c = static_cast<int>(grpc::UNKNOWN);
  const int m = static_cast<int>(method);
  requests_[m][c]->Increment();
  durations_[m]->Observe(seconds);
}

void RpcMetrics::RecordRejection(RejectReason reason) {
  rejected_[static_cast<int>(reason)]->Increment();
}

void RpcMetrics::RecordInterruption(absl::StatusCode code) {
  if (code == absl::StatusCode::kCancelled) {
    interrupted_cancelled_->Increment();
  } else if (code == absl::StatusCode::kDeadlineExceeded) {
    interrupted_deadline_->Increment();
  }
}

uint64_t RpcMetrics::inflight() const {
  const double v = inflight_->Value();
  return v > 0 ? static_cast<uint64_t>(v) : 0;
}

uint64_t RpcMetrics::queued() const {
  const double v = queued_->Value();
  return v > 0 ? static_cast<uint64_t>(v) : 0;
}

std::vector<RpcMetrics::MethodCount> RpcMetrics::Snapshot() const {
  std::vector<MethodCount> out;
  for (int m = 0; m < kNumMethods; ++m) {
    for (int c = 0; c < kNumGrpcCodes; ++c) {
      const double v = requests_[m][c]->Value();
      if (v <= 0) continue;
      out.push_back({MethodName(static_cast<Method>(m)),
                     GrpcCodeName(static_cast<grpc::StatusCode>(c)),
                     static_cast<uint64_t>(v)});
    }
  }
  return out;
}

std::vector<RpcMetrics::RejectionCount> RpcMetrics::Rejections() const {
  std::vector<RejectionCount> out;
  for (int r = 0; r < kNumRejectReasons; ++r) {
    out.push_back({RejectReasonName(static_cast<RejectReason>(r)),
                   static_cast<uint64_t>(rejected_[r]->Value())});
  }
  return out;
}

}  // namespace engram::server
