// The engram.similarity.v1.Similarity service on gRPC's callback API.
//
// Each handler only translates: it checks admission, hands the request to
// the engine's worker threads, and answers from there. Heavy work never runs
// on gRPC's threads. Every call gets a request id (the caller's
// x-request-id, or a new one, echoed in the trailing metadata) that every log
// line of the call carries, engine lines included.
//
// Every call is counted from the moment its headers arrive (unary calls are
// served as UnaryCalls, unary_call.h, for that), so that a drain waits for
// a call whose request is still in transit instead of letting gRPC cancel
// it. Admission (admission.h) bounds the calls and bytes in flight: beyond it a
// call is refused at once with RESOURCE_EXHAUSTED and the trailing metadata
// entry grpc-retry-pushback-ms (gRPC's own retry hint, which a client retry
// policy that lists RESOURCE_EXHAUSTED honours). A call's deadline and
// cancellation are checked before its work starts and between its chunks
// and hops (call_interrupt.h).
//
// Thread-safety: handlers run concurrently on gRPC threads; shared state
// lives in the thread-safe Admission, RpcMetrics and Engine.
#ifndef ENGRAM_SERVER_SIMILARITY_SERVICE_H_
#define ENGRAM_SERVER_SIMILARITY_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/interrupt.h"
#include "core/engine.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "google/protobuf/message.h"
#include "server/admission.h"
#include "server/collection_handlers.h"
#include "server/readiness.h"
#include "server/request_context.h"
#include "server/rpc_metrics.h"
#include "server/unary_call.h"

namespace engram::server {

class CallScope;

class SimilarityService final
    : public ::engram::similarity::v1::Similarity::CallbackService {
 public:
  struct Options {
    Admission::Options admission;
    // Unary requests and responses on a per-call protobuf arena
    // (unary_call.h); off only to measure what it saves.
    bool request_arena = true;
    std::string version;
  };

  // `engine`, `metrics` and `readiness` are not owned and must outlive the
  // service. INVALID_ARGUMENT for bad admission options.
  static absl::StatusOr<std::unique_ptr<SimilarityService>> Create(
      const Options& options, core::Engine* engine, RpcMetrics* metrics,
      const Readiness* readiness);

  // The two client-streaming uploads (the unary methods are registered in
  // the constructor, as UnaryCalls): forwarded to CollectionHandlers.
  grpc::ServerReadReactor<::engram::similarity::v1::UploadCollectionRequest>*
  UploadCollection(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::UploadCollectionResponse* response) override {
    return collections_.UploadCollection(context, response);
  }
  grpc::ServerReadReactor<::engram::similarity::v1::PutGraphRequest>* PutGraph(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::GraphInfo* response) override {
    return collections_.PutGraph(context, response);
  }
  // From now on new calls are refused with UNAVAILABLE and the
  // grpc-retry-pushback-ms trailer; calls whose headers arrived before run
  // to completion.
  void StartDraining();
  // Blocks until no call is in flight or `deadline` passes; true when
  // drained.
  bool WaitForDrain(absl::Time deadline);
  // Blocks until no call has arrived or ended for `quiet`, or `deadline`
  // passes.
  void WaitForQuiet(absl::Duration quiet, absl::Time deadline);
  // The drain's stop time: every call still in flight is ended with
  // UNAVAILABLE (and the retry hint), at once when it waits for its client,
  // at its next chunk or hop when it computes (Admission::StopCalls).
  void StopCalls();

 private:
  SimilarityService(const Options& options, core::Engine* engine,
                    RpcMetrics* metrics, const Readiness* readiness,
                    std::unique_ptr<Admission> admission);

  // Serves the unary method `method` as UnaryCalls (unary_call.h), each
  // handed to `(owner->*handle)`.
  template <typename Owner, typename Request, typename Response>
  void ServeUnary(Method method, Owner* owner,
                  void (Owner::*handle)(UnaryCall*, const Request*, Response*));

  void HandleBatchCosine(
      UnaryCall* call,
      const ::engram::similarity::v1::BatchCosineRequest* request,
      ::engram::similarity::v1::BatchCosineResponse* response);
  void HandleSpread(UnaryCall* call,
                    const ::engram::similarity::v1::SpreadRequest* request,
                    ::engram::similarity::v1::SpreadResponse* response);
  void HandleGetStats(UnaryCall* call,
                      const ::engram::similarity::v1::GetStatsRequest* request,
                      ::engram::similarity::v1::GetStatsResponse* response);
  // Counts a failed compute call as a rejection when it was one: over a
  // limit (`report` empty: refused before dispatch), or a GPU-only request
  // the GPU could not take.
  void CountRejection(const absl::Status& status,
                      const dispatch::ExecutionReport& report);

  // The shape every computing RPC shares (call_scope.h): admit (costing
  // `cost` bytes) or refuse, then run `run(interrupt)` on the engine's
  // workers with the call's log context, answer, and release the
  // admission.
  template <typename Run>
  void Compute(UnaryCall* call, Method method, uint64_t cost,
               google::protobuf::Message* response, Run run);
  // Compute for a call whose scope is already open (a Spread that waited
  // for its graph): admits and runs, or refuses, and answers `call`.
  template <typename Run>
  void Start(std::shared_ptr<CallScope> scope, UnaryCall* call, uint64_t cost,
             google::protobuf::Message* response, Run run);

  absl::Status RunBatchCosine(
      const ::engram::similarity::v1::BatchCosineRequest& request,
      const base::Interrupt* interrupt,
      ::engram::similarity::v1::BatchCosineResponse* response);
  // `graph` is the resident graph the request names, or null for an inline
  // one.
  absl::Status RunSpread(const ::engram::similarity::v1::SpreadRequest& request,
                         const collections::Graph* graph,
                         const base::Interrupt* interrupt,
                         ::engram::similarity::v1::SpreadResponse* response);

  const Options options_;
  core::Engine* const engine_;
  RpcMetrics* const metrics_;
  const Readiness* const readiness_;
  const std::unique_ptr<Admission> admission_;
  const absl::Time started_;
  CollectionHandlers collections_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_SIMILARITY_SERVICE_H_
