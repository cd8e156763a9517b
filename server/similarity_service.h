// The engram.similarity.v1.Similarity service on gRPC's callback API.
//
// Each handler only translates: it checks admission, hands the request to
// the engine's worker threads, and answers from there. Heavy work never runs
// on gRPC's threads. Every call gets a request id (the caller's
// x-request-id, or a new one, echoed in the trailing metadata) that every log
// line of the call carries, engine lines included.
//
// Thread-safety: handlers run concurrently on gRPC threads; the draining
// state and in-flight count are guarded by mu_.
#ifndef ENGRAM_SERVER_SIMILARITY_SERVICE_H_
#define ENGRAM_SERVER_SIMILARITY_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/engine.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "google/protobuf/message.h"
#include "server/readiness.h"
#include "server/request_context.h"
#include "server/rpc_metrics.h"

namespace engram::server {

class SimilarityService final
    : public ::engram::similarity::v1::Similarity::CallbackService {
 public:
  // `engine`, `metrics` and `readiness` are not owned and must outlive the
  // service.
  SimilarityService(core::Engine* engine, RpcMetrics* metrics,
                    const Readiness* readiness, std::string version);

  grpc::ServerUnaryReactor* BatchCosine(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::BatchCosineRequest* request,
      ::engram::similarity::v1::BatchCosineResponse* response) override;
  grpc::ServerUnaryReactor* Spread(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::SpreadRequest* request,
      ::engram::similarity::v1::SpreadResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::GetStatsRequest* request,
      ::engram::similarity::v1::GetStatsResponse* response) override;

  // From now on new calls are refused with UNAVAILABLE; calls already
  // accepted run to completion.
  void StartDraining() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no accepted call is in flight or `deadline` passes; returns
  // true when drained.
  bool WaitForDrain(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no call has arrived for `quiet`, or `deadline` passes.
  // Stopping the gRPC server kills calls whose messages are still in transit
  // (the client sees CANCELLED); waiting for quiet lets them arrive and be
  // refused with UNAVAILABLE instead, which clients retry elsewhere.
  void WaitForQuiet(absl::Duration quiet, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Admits a call unless draining; every admitted call must EndCall().
  bool BeginCall() ABSL_LOCKS_EXCLUDED(mu_);
  void EndCall() ABSL_LOCKS_EXCLUDED(mu_);
  // One call's bookkeeping, from arrival to answer.
  struct Call {
    Method method = Method::kBatchCosine;
    absl::Time start;
    RequestIds ids;
  };
  // Reads the call's ids and echoes the request id to the caller.
  static Call StartCall(grpc::CallbackServerContext* context, Method method);
  // Answers `reactor`, records the call and logs it (debug).
  void Finish(grpc::ServerUnaryReactor* reactor, const Call& call,
              const absl::Status& status);
  // Counts a failed compute call as a rejection when it was one: over a
  // limit (`report` empty: refused before dispatch), or a GPU-only request
  // the GPU could not take.
  void CountRejection(const absl::Status& status,
                      const core::ExecutionReport& report);
  // Status for a call whose client gave up before its work started.
  static absl::Status AbandonedStatus(grpc::CallbackServerContext* context);

  // The shape every computing RPC shares: admit or refuse, then run
  // `run()` on the engine's workers with the call's log context, answer,
  // and release the admission.
  template <typename Run>
  grpc::ServerUnaryReactor* Compute(grpc::CallbackServerContext* context,
                                    Method method,
                                    google::protobuf::Message* response,
                                    Run run);

  absl::Status RunBatchCosine(
      const ::engram::similarity::v1::BatchCosineRequest& request,
      ::engram::similarity::v1::BatchCosineResponse* response);
  absl::Status RunSpread(const ::engram::similarity::v1::SpreadRequest& request,
                         ::engram::similarity::v1::SpreadResponse* response);

  core::Engine* const engine_;
  RpcMetrics* const metrics_;
  const Readiness* const readiness_;
  const std::string version_;
  const absl::Time started_;

  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_arrival_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_SIMILARITY_SERVICE_H_
