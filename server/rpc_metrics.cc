#include "server/rpc_metrics.h"

#include "core/metrics.h"
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
  }
  return "unknown";
}

RpcMetrics::RpcMetrics(prometheus::Registry& registry) {
  auto& requests = prometheus::BuildCounter()
                       .Name("engram_requests_total")
                       .Help("Finished RPCs by method and gRPC status code.")
                       .Register(registry);
  auto& durations =
      prometheus::BuildHistogram()
          .Name("engram_request_duration_seconds")
          .Help(
              "RPC latency from arrival to response, by method and gRPC "
              "status code.")
          .Register(registry);
  for (int m = 0; m < kNumMethods; ++m) {
    for (int c = 0; c < kNumGrpcCodes; ++c) {
      const prometheus::Labels labels{
          {"method", MethodName(static_cast<Method>(m))},
          {"code", GrpcCodeName(static_cast<grpc::StatusCode>(c))}};
      requests_[m][c] = &requests.Add(labels);
      durations_[m][c] = &durations.Add(labels, core::LatencyBuckets());
    }
  }
  inflight_ = &prometheus::BuildGauge()
                   .Name("engram_inflight_requests")
                   .Help("RPCs accepted and not yet answered.")
                   .Register(registry)
                   .Add({});
}

void RpcMetrics::RecordCall(Method method, grpc::StatusCode code,
                            double seconds) {
  int c = static_cast<int>(code);
  if (c < 0 || c >= kNumGrpcCodes) c = static_cast<int>(grpc::UNKNOWN);
  const int m = static_cast<int>(method);
  requests_[m][c]->Increment();
  durations_[m][c]->Observe(seconds);
}

uint64_t RpcMetrics::inflight() const {
  const double v = inflight_->Value();
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

}  // namespace engram::server
