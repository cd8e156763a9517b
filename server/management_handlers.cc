// The unary collection and graph RPCs: map operations on the stores,
// answered on the gRPC thread (collection_handlers.h).
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/validation.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

void CollectionHandlers::ResolveGraph(
    const std::string& name, uint64_t min_version,
    core::ResidentData::GraphCallback done) const {
  core::ResidentData& resident = engine_->resident();
  resident.WhenGraphAtLeast(
      name, min_version, resident.options().min_version_wait,
      [name, min_version, done = std::move(done)](
          absl::StatusOr<std::shared_ptr<const collections::Graph>> graph) {
        if (!graph.ok() && absl::IsNotFound(graph.status())) {
          graph = absl::NotFoundError(
              absl::StrCat("graph_name: no graph named '", name, "'",
                           min_version > 0 ? " on this replica" : ""));
        }
        done(std::move(graph));
      });
}

grpc::ServerUnaryReactor* CollectionHandlers::CreateCollection(
    grpc::CallbackServerContext* context,
    const v1::CreateCollectionRequest* request, v1::CollectionInfo* response) {
  CallScope scope(context, Method::kCreateCollection, admission_, metrics_);
  absl::Status status = core::ValidateRequiredName("name", request->name());
  if (status.ok()) {
    collections::CollectionSpec spec;
    spec.name = request->name();
    spec.dimension = request->dimension();
    spec.metadata = MetadataFromProto(request->metadata());
    auto created = engine_->resident().collections().CreateCollection(spec);
    status = created.status();
    if (created.ok()) {
      auto info = engine_->resident().collections().Describe(spec.name);
      if (info.ok()) {
        CollectionInfoToProto(*info, engine_->ResidencyOf(info->uid), response);
      }
    }
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scope.Finish(reactor, status, nullptr);
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::DeleteCollection(
    grpc::CallbackServerContext* context,
    const v1::DeleteCollectionRequest* request,
    v1::DeleteCollectionResponse* /*response*/) {
  CallScope scope(context, Method::kDeleteCollection, admission_, metrics_);
  absl::Status status = core::ValidateRequiredName("name", request->name());
  if (status.ok()) {
    status = engine_->resident().DeleteCollection(request->name());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scope.Finish(reactor, status, nullptr);
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::ListCollections(
    grpc::CallbackServerContext* context,
    const v1::ListCollectionsRequest* /*request*/,
    v1::ListCollectionsResponse* response) {
  CallScope scope(context, Method::kListCollections, admission_, metrics_);
  for (const collections::CollectionInfo& info :
       engine_->resident().collections().List()) {
    CollectionInfoToProto(info, engine_->ResidencyOf(info.uid),
                          response->add_collections());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scope.Finish(reactor, absl::OkStatus(), nullptr);
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::DescribeCollection(
    grpc::CallbackServerContext* context,
    const v1::DescribeCollectionRequest* request,
    v1::CollectionInfo* response) {
  // Shared: a call that waits for min_version is answered from the waiting
  // thread (ResidentData::WhenAtLeast).
  auto scope = std::make_shared<CallScope>(context, Method::kDescribeCollection,
                                           admission_, metrics_);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status status = core::ValidateRequiredName("name", request->name());
      !status.ok()) {
    scope->Finish(reactor, status, nullptr);
    return reactor;
  }
  core::ResidentData& resident = engine_->resident();
  resident.WhenAtLeast(
      request->name(), request->min_version(),
      resident.options().min_version_wait,
      [this, scope, reactor, request,
       response](absl::StatusOr<std::shared_ptr<const collections::Collection>>
                     current) {
        absl::Status status = current.status();
        if (status.ok()) {
          auto info =
              engine_->resident().collections().Describe(request->name());
          status = info.status();
          if (info.ok()) {
            // The version waited for, or a later one.
            CollectionInfoToProto(*info, engine_->ResidencyOf(info->uid),
                                  response);
          }
        } else if (absl::IsUnavailable(status)) {
          scope->AddRetryPushback(kMinVersionRetryAfter);
        }
        scope->Finish(reactor, status, nullptr);
      });
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::DeleteGraph(
    grpc::CallbackServerContext* context, const v1::DeleteGraphRequest* request,
    v1::DeleteGraphResponse* /*response*/) {
  CallScope scope(context, Method::kDeleteGraph, admission_, metrics_);
  absl::Status status = core::ValidateRequiredName("name", request->name());
  if (status.ok()) {
    status = engine_->resident().graphs().Delete(request->name());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scope.Finish(reactor, status, nullptr);
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::ListGraphs(
    grpc::CallbackServerContext* context,
    const v1::ListGraphsRequest* /*request*/,
    v1::ListGraphsResponse* response) {
  CallScope scope(context, Method::kListGraphs, admission_, metrics_);
  for (const collections::GraphInfo& info :
       engine_->resident().graphs().List()) {
    GraphInfoToProto(info, response->add_graphs());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scope.Finish(reactor, absl::OkStatus(), nullptr);
  return reactor;
}

grpc::ServerUnaryReactor* CollectionHandlers::DescribeGraph(
    grpc::CallbackServerContext* context,
    const v1::DescribeGraphRequest* request, v1::GraphInfo* response) {
  // As DescribeCollection: a call that waits for min_version is answered
  // from the waiting thread.
  auto scope = std::make_shared<CallScope>(context, Method::kDescribeGraph,
                                           admission_, metrics_);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status status = core::ValidateRequiredName("name", request->name());
      !status.ok()) {
    scope->Finish(reactor, status, nullptr);
    return reactor;
  }
  core::ResidentData& resident = engine_->resident();
  resident.WhenGraphAtLeast(
      request->name(), request->min_version(),
      resident.options().min_version_wait,
      [this, scope, reactor, request, response](
          absl::StatusOr<std::shared_ptr<const collections::Graph>> current) {
        absl::Status status = current.status();
        if (status.ok()) {
          auto info = engine_->resident().graphs().Describe(request->name());
          status = info.status();
          // The version waited for, or a later one.
          if (info.ok()) GraphInfoToProto(*info, response);
        } else if (absl::IsUnavailable(status)) {
          scope->AddRetryPushback(kMinVersionRetryAfter);
        }
        scope->Finish(reactor, status, nullptr);
      });
  return reactor;
}

}  // namespace engram::server
