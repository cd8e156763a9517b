// The engram.similarity.v1.Similarity service on gRPC's callback API.
//
// Each handler only translates: it checks admission, hands the request to
// the engine's worker threads, and answers from there. Heavy work never runs
// on gRPC's threads. Every call gets a request id (the caller's
// x-request-id, or a new one, echoed in the trailing metadata) that every log
// line of the call carries, engine lines included.
//
// Admission (admission.h) bounds the calls and bytes in flight: beyond it a
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
#include "server/arena_allocator.h"
#include "server/collection_handlers.h"
#include "server/readiness.h"
#include "server/request_context.h"
#include "server/rpc_metrics.h"

namespace engram::server {

class CallScope;

class SimilarityService final
    : public ::engram::similarity::v1::Similarity::CallbackService {
 public:
  struct Options {
    Admission::Options admission;
    // Requests and responses on a per-call protobuf arena
    // (arena_allocator.h); off only to measure what it saves.
    bool request_arena = true;
    std::string version;
  };

  // `engine`, `metrics` and `readiness` are not owned and must outlive the
  // service. INVALID_ARGUMENT for bad admission options.
  static absl::StatusOr<std::unique_ptr<SimilarityService>> Create(
      const Options& options, core::Engine* engine, RpcMetrics* metrics,
      const Readiness* readiness);

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

  // Resident collections and graphs: forwarded to CollectionHandlers
  // (collection_handlers.h).
  grpc::ServerUnaryReactor* CreateCollection(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::CreateCollectionRequest* request,
      ::engram::similarity::v1::CollectionInfo* response) override {
    return collections_.CreateCollection(context, request, response);
  }
  grpc::ServerReadReactor<::engram::similarity::v1::UploadCollectionRequest>*
  UploadCollection(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::UploadCollectionResponse* response) override {
    return collections_.UploadCollection(context, response);
  }
  grpc::ServerUnaryReactor* DeleteCollection(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::DeleteCollectionRequest* request,
      ::engram::similarity::v1::DeleteCollectionResponse* response) override {
    return collections_.DeleteCollection(context, request, response);
  }
  grpc::ServerUnaryReactor* ListCollections(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::ListCollectionsRequest* request,
      ::engram::similarity::v1::ListCollectionsResponse* response) override {
    return collections_.ListCollections(context, request, response);
  }
  grpc::ServerUnaryReactor* DescribeCollection(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::DescribeCollectionRequest* request,
      ::engram::similarity::v1::CollectionInfo* response) override {
    return collections_.DescribeCollection(context, request, response);
  }
  grpc::ServerUnaryReactor* SearchCollection(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::SearchCollectionRequest* request,
      ::engram::similarity::v1::SearchCollectionResponse* response) override {
    return collections_.SearchCollection(context, request, response);
  }
  grpc::ServerReadReactor<::engram::similarity::v1::PutGraphRequest>* PutGraph(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::GraphInfo* response) override {
    return collections_.PutGraph(context, response);
  }
  grpc::ServerUnaryReactor* DeleteGraph(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::DeleteGraphRequest* request,
      ::engram::similarity::v1::DeleteGraphResponse* response) override {
    return collections_.DeleteGraph(context, request, response);
  }
  grpc::ServerUnaryReactor* ListGraphs(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::ListGraphsRequest* request,
      ::engram::similarity::v1::ListGraphsResponse* response) override {
    return collections_.ListGraphs(context, request, response);
  }
  grpc::ServerUnaryReactor* DescribeGraph(
      grpc::CallbackServerContext* context,
      const ::engram::similarity::v1::DescribeGraphRequest* request,
      ::engram::similarity::v1::GraphInfo* response) override {
    return collections_.DescribeGraph(context, request, response);
  }

  // From now on new calls are refused with UNAVAILABLE; calls already
  // accepted run to completion.
  void StartDraining();
  // Blocks until no accepted call is in flight or `deadline` passes; returns
  // true when drained.
  bool WaitForDrain(absl::Time deadline);
  // Blocks until no call has arrived for `quiet`, or `deadline` passes.
  // Stopping the gRPC server kills calls whose messages are still in transit
  // (the client sees CANCELLED); waiting for quiet lets them arrive and be
  // refused with UNAVAILABLE instead, which clients retry elsewhere.
  void WaitForQuiet(absl::Duration quiet, absl::Time deadline);

 private:
  SimilarityService(const Options& options, core::Engine* engine,
                    RpcMetrics* metrics, const Readiness* readiness,
                    std::unique_ptr<Admission> admission);

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
  grpc::ServerUnaryReactor* Compute(grpc::CallbackServerContext* context,
                                    Method method, uint64_t cost,
                                    google::protobuf::Message* response,
                                    Run run);
  // Compute for a call whose scope is already open (a Spread that waited
  // for its graph): admits and runs, or refuses, and answers on `reactor`.
  template <typename Run>
  void Start(std::shared_ptr<CallScope> scope,
             grpc::ServerUnaryReactor* reactor, uint64_t cost,
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
  ArenaMessageAllocator<::engram::similarity::v1::BatchCosineRequest,
                        ::engram::similarity::v1::BatchCosineResponse>
      cosine_allocator_;
  ArenaMessageAllocator<::engram::similarity::v1::SpreadRequest,
                        ::engram::similarity::v1::SpreadResponse>
      spread_allocator_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_SIMILARITY_SERVICE_H_
