// The resident-data RPCs of engram.similarity.v1.Similarity:
// collections (create, client-streaming upload, delete, list, describe,
// search) and graphs (client-streaming put, delete, list, describe,
// update).
// SimilarityService, the one CallbackService the generated code allows,
// forwards these methods here. The handlers translate the messages, call
// the stores and core (core/resident_search.h, core/resident_upload.h),
// and keep each call's bookkeeping in a CallScope (call_scope.h). They live
// in five files: management_handlers.cc (the unary map operations),
// row_handlers.cc (rows changed by id), upload_reactors.cc (the streaming
// uploads, whose messages are handled by upload_streams.h),
// search_reactor.cc and graph_update_handler.cc.
//
// - The unary calls come as UnaryCalls (unary_call.h), counted from their
//   headers on.
// - Management calls (create, delete, list, describe) are map operations on
//   the stores: admitted at the cost of their request and answered on the
//   gRPC thread, like GetStats.
// - Uploads are grpc::ServerReadReactors, counted from their headers on and
//   admitted by count (their bytes are the resident budget's): a drain waits
//   for a stream in progress and at its stop time aborts it whole
//   (UNAVAILABLE). The header message reserves the
//   memory budget (RESOURCE_EXHAUSTED before anything is allocated), each
//   chunk is copied into the staged upload on the engine's workers, and the
//   rows become visible only when the client closes its side of a complete
//   stream. A cancelled, interrupted or failed stream aborts the staged
//   upload: nothing becomes visible and the budget is given back.
// - SearchCollection is admitted like every computing call (Admission, with
//   its byte cost), resolves the collection's current version and hands the
//   queries to the collection's SearchBatcher; the reactor's OnCancel
//   cancels a call still waiting for its pass. top_k == 0 (every score, for
//   small collections) bypasses the batcher: core::ScoreEveryRow on the
//   workers. Either way a call the client stopped waiting for while it
//   computed is answered with that stop, as BatchCosine and Spread are.
//
// - UpdateGraph is admitted at the cost of its request and applied on the
//   engine's workers (core::UpdateResidentGraph): its lists are copied,
//   checked and applied, and the store journals it (an fsync, or a catalog
//   write in shared mode) before it answers.
// - Read-your-writes across replicas: DescribeCollection, SearchCollection,
//   DescribeGraph and Spread by graph_name with a min_version this replica
//   has not loaded yet wait for it (ResidentData::WhenAtLeast and
//   WhenGraphAtLeast, up to --min_version_wait) and
//   then answer UNAVAILABLE with a grpc-retry-pushback-ms trailer of
//   kMinVersionRetryAfter, so the client's retry policy moves the call to a
//   replica that has it.
//
// Every error names the field and the reason: NOT_FOUND for unknown names,
// ALREADY_EXISTS for taken ones, INVALID_ARGUMENT for a bad message (a
// dimension mismatch included), RESOURCE_EXHAUSTED for the memory budget,
// the batcher's queue or admission.
//
// Thread-safety: handlers run concurrently on gRPC threads; the engine, the
// stores, Admission and RpcMetrics are thread-safe.
#ifndef ENGRAM_SERVER_COLLECTION_HANDLERS_H_
#define ENGRAM_SERVER_COLLECTION_HANDLERS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/collections/graph_store.h"
#include "core/engine.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/admission.h"
#include "server/rpc_metrics.h"
#include "server/unary_call.h"

namespace engram::server {

// The retry hint of a read whose min_version this replica does not have:
// short, since another replica most likely has it now.
inline constexpr absl::Duration kMinVersionRetryAfter = absl::Milliseconds(50);

class CollectionHandlers {
 public:
  // Nothing is owned; everything must outlive the handlers and every call
  // they started.
  CollectionHandlers(core::Engine* engine, RpcMetrics* metrics,
                     Admission* admission)
      : engine_(engine), metrics_(metrics), admission_(admission) {}

  void CreateCollection(
      UnaryCall* call,
      const ::engram::similarity::v1::CreateCollectionRequest* request,
      ::engram::similarity::v1::CollectionInfo* response);
  grpc::ServerReadReactor<::engram::similarity::v1::UploadCollectionRequest>*
  UploadCollection(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::UploadCollectionResponse* response);
  void DeleteCollection(
      UnaryCall* call,
      const ::engram::similarity::v1::DeleteCollectionRequest* request,
      ::engram::similarity::v1::DeleteCollectionResponse* response);
  void ListCollections(
      UnaryCall* call,
      const ::engram::similarity::v1::ListCollectionsRequest* request,
      ::engram::similarity::v1::ListCollectionsResponse* response);
  void DescribeCollection(
      UnaryCall* call,
      const ::engram::similarity::v1::DescribeCollectionRequest* request,
      ::engram::similarity::v1::CollectionInfo* response);
  void SearchCollection(
      UnaryCall* call,
      const ::engram::similarity::v1::SearchCollectionRequest* request,
      ::engram::similarity::v1::SearchCollectionResponse* response);

  void UpsertRows(UnaryCall* call,
                  const ::engram::similarity::v1::UpsertRowsRequest* request,
                  ::engram::similarity::v1::UpsertRowsResponse* response);
  void DeleteRows(UnaryCall* call,
                  const ::engram::similarity::v1::DeleteRowsRequest* request,
                  ::engram::similarity::v1::DeleteRowsResponse* response);

  grpc::ServerReadReactor<::engram::similarity::v1::PutGraphRequest>* PutGraph(
      grpc::CallbackServerContext* context,
      ::engram::similarity::v1::GraphInfo* response);
  void DeleteGraph(UnaryCall* call,
                   const ::engram::similarity::v1::DeleteGraphRequest* request,
                   ::engram::similarity::v1::DeleteGraphResponse* response);
  void ListGraphs(UnaryCall* call,
                  const ::engram::similarity::v1::ListGraphsRequest* request,
                  ::engram::similarity::v1::ListGraphsResponse* response);
  void DescribeGraph(
      UnaryCall* call,
      const ::engram::similarity::v1::DescribeGraphRequest* request,
      ::engram::similarity::v1::GraphInfo* response);
  void UpdateGraph(UnaryCall* call,
                   const ::engram::similarity::v1::UpdateGraphRequest* request,
                   ::engram::similarity::v1::UpdateGraphResponse* response);

  // Calls `done` with the graph a SpreadRequest names in graph_name once
  // this replica holds version `min_version` of it or a later one (0: any),
  // as ResidentData::WhenGraphAtLeast: at once on this thread, or later on
  // the waiting thread. NOT_FOUND naming graph_name when there is none. The
  // snapshot stays valid while the caller holds it.
  void ResolveGraph(const std::string& name, uint64_t min_version,
                    core::ResidentData::GraphCallback done) const;

 private:
  template <typename Request, typename Response, typename Upload>
  class StreamReactor;
  class SearchReactor;
  class UploadReactor;
  class PutGraphReactor;

  core::Engine* const engine_;
  RpcMetrics* const metrics_;
  Admission* const admission_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_COLLECTION_HANDLERS_H_
