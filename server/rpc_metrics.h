// Per-RPC metric families: requests by method and status code, latency by
// method, the in-flight and queued gauges, rejections by reason, and calls
// stopped part-way by their client's cancellation or deadline.
// Registered in the engine's registry so one /metrics page carries
// everything (docs/metrics.md).
//
// Thread-safety: all methods may be called concurrently.
#ifndef ENGRAM_SERVER_RPC_METRICS_H_
#define ENGRAM_SERVER_RPC_METRICS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/status_conversion.h"

namespace engram::server {

enum class Method {
  kBatchCosine = 0,
  kSpread = 1,
  kGetStats = 2,
  kCreateCollection = 3,
  kUploadCollection = 4,
  kDeleteCollection = 5,
  kListCollections = 6,
  kDescribeCollection = 7,
  kSearchCollection = 8,
  kUpsertRows = 9,
  kDeleteRows = 10,
  kPutGraph = 11,
  kDeleteGraph = 12,
  kListGraphs = 13,
  kDescribeGraph = 14,
  kUpdateGraph = 15,
};
inline constexpr int kNumMethods = 16;
const char* MethodName(Method method);  // "BatchCosine", ...

// Why a call was refused without computing (engram_rejected_requests_total).
enum class RejectReason {
  kDraining = 0,        // the server is shutting down (UNAVAILABLE)
  kTooLarge = 1,        // over a --max_* limit (RESOURCE_EXHAUSTED)
  kGpuUnavailable = 2,  // PLACEMENT_GPU_ONLY the GPU could not take
  kAbandoned = 3,       // cancelled or past its deadline before it ran
  kOverloaded = 4,      // over the admission bound (RESOURCE_EXHAUSTED)
};
inline constexpr int kNumRejectReasons = 5;
const char* RejectReasonName(RejectReason reason);  // "draining", ...

class RpcMetrics {
 public:
  // Registers the families in `registry`, which must outlive this.
  explicit RpcMetrics(prometheus::Registry& registry);

  // One finished call.
  void RecordCall(Method method, grpc::StatusCode code, double seconds);
  void RecordRejection(RejectReason reason);
  // A call whose work stopped part-way: `code` is kCancelled or
  // kDeadlineExceeded (others are ignored).
  void RecordInterruption(absl::StatusCode code);
  void CallStarted() { inflight_->Increment(); }
  void CallEnded() { inflight_->Decrement(); }
  // A call handed to the worker threads / picked up by one.
  void Queued() { queued_->Increment(); }
  void Dequeued() { queued_->Decrement(); }
  uint64_t inflight() const;
  uint64_t queued() const;

  struct MethodCount {
    std::string method;
    std::string code;
    uint64_t count = 0;
  };
  // Non-zero (method, code) counts, read from the exposed counters.
  std::vector<MethodCount> Snapshot() const;

  struct RejectionCount {
    std::string reason;
    uint64_t count = 0;
  };
  // Every reason, zero counts included, read from the exposed counters.
  std::vector<RejectionCount> Rejections() const;

 private:
  std::array<std::array<prometheus::Counter*, kNumGrpcCodes>, kNumMethods>
      requests_{};
  std::array<prometheus::Histogram*, kNumMethods> durations_{};
  std::array<prometheus::Counter*, kNumRejectReasons> rejected_{};
  prometheus::Counter* interrupted_cancelled_ = nullptr;
  prometheus::Counter* interrupted_deadline_ = nullptr;
  prometheus::Gauge* inflight_ = nullptr;
  prometheus::Gauge* queued_ = nullptr;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_RPC_METRICS_H_
