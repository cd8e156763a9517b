// Per-RPC metric families: requests by method and status code, latency by
// method and status code, and the in-flight gauge. Registered in the
// engine's registry so one /metrics page carries everything.
//
// Thread-safety: all methods may be called concurrently.
#ifndef ENGRAM_SERVER_RPC_METRICS_H_
#define ENGRAM_SERVER_RPC_METRICS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/status_conversion.h"

namespace engram::server {

enum class Method { kBatchCosine = 0, kSpread = 1, kGetStats = 2 };
inline constexpr int kNumMethods = 3;
const char* MethodName(Method method);  // "BatchCosine", ...

class RpcMetrics {
 public:
  // Registers the families in `registry`, which must outlive this.
  explicit RpcMetrics(prometheus::Registry& registry);

  // One finished call.
  void RecordCall(Method method, grpc::StatusCode code, double seconds);
  void CallStarted() { inflight_->Increment(); }
  void CallEnded() { inflight_->Decrement(); }
  uint64_t inflight() const;

  struct MethodCount {
    std::string method;
    std::string code;
    uint64_t count = 0;
  };
  // Non-zero (method, code) counts, read from the exposed counters.
  std::vector<MethodCount> Snapshot() const;

 private:
  std::array<std::array<prometheus::Counter*, kNumGrpcCodes>, kNumMethods>
      requests_{};
  std::array<std::array<prometheus::Histogram*, kNumGrpcCodes>, kNumMethods>
      durations_{};
  prometheus::Gauge* inflight_ = nullptr;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_RPC_METRICS_H_
