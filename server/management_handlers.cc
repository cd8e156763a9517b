// The unary collection and graph RPCs: map operations on the stores,
// admitted at the cost of their request and answered on the gRPC thread
// (collection_handlers.h).
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

void CollectionHandlers::CreateCollection(
    UnaryCall* call, const v1::CreateCollectionRequest* request,
    v1::CollectionInfo* response) {
  CallScope scope(call->context(), Method::kCreateCollection, admission_,
                  metrics_);
  absl::Status status = scope.Enter(request->ByteSizeLong());
  if (status.ok()) status = core::ValidateRequiredName("name", request->name());
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
  scope.Finish(call, status, nullptr);
}

void CollectionHandlers::DeleteCollection(
    UnaryCall* call, const v1::DeleteCollectionRequest* request,
    v1::DeleteCollectionResponse* /*response*/) {
  CallScope scope(call->context(), Method::kDeleteCollection, admission_,
                  metrics_);
  absl::Status status = scope.Enter(request->ByteSizeLong());
  if (status.ok()) status = core::ValidateRequiredName("name", request->name());
  if (status.ok()) {
    status = engine_->resident().DeleteCollection(request->name());
  }
  scope.Finish(call, status, nullptr);
}

void CollectionHandlers::ListCollections(
    UnaryCall* call, const v1::ListCollectionsRequest* request,
    v1::ListCollectionsResponse* response) {
  CallScope scope(call->context(), Method::kListCollections, admission_,
                  metrics_);
  if (absl::Status status = scope.Enter(request->ByteSizeLong());
      !status.ok()) {
    scope.Finish(call, status, nullptr);
    return;
  }
  for (const collections::CollectionInfo& info :
       engine_->resident().collections().List()) {
    CollectionInfoToProto(info, engine_->ResidencyOf(info.uid),
                          response->add_collections());
  }
  scope.Finish(call, absl::OkStatus(), nullptr);
}

void CollectionHandlers::DescribeCollection(
    UnaryCall* call, const v1::DescribeCollectionRequest* request,
    v1::CollectionInfo* response) {
  // Shared: a call that waits for min_version is answered from the waiting
  // thread (ResidentData::WhenAtLeast).
  auto scope = std::make_shared<CallScope>(
      call->context(), Method::kDescribeCollection, admission_, metrics_);
  absl::Status status = scope->Enter(request->ByteSizeLong());
  if (status.ok()) status = core::ValidateRequiredName("name", request->name());
  if (!status.ok()) {
    scope->Finish(call, status, nullptr);
    return;
  }
  core::ResidentData& resident = engine_->resident();
  resident.WhenAtLeast(
      request->name(), request->min_version(),
      resident.options().min_version_wait,
      [this, scope, call, request,
       response](absl::StatusOr<std::shared_ptr<const collections::Collection>>
                     current) {
        absl::Status answer = current.status();
        if (answer.ok()) {
          auto info =
              engine_->resident().collections().Describe(request->name());
          answer = info.status();
          if (info.ok()) {
            // The version waited for, or a later one.
            CollectionInfoToProto(*info, engine_->ResidencyOf(info->uid),
                                  response);
          }
        } else if (absl::IsUnavailable(answer)) {
          scope->AddRetryPushback(kMinVersionRetryAfter);
        }
        scope->Finish(call, answer, nullptr);
      });
}

void CollectionHandlers::DeleteGraph(UnaryCall* call,
                                     const v1::DeleteGraphRequest* request,
                                     v1::DeleteGraphResponse* /*response*/) {
  CallScope scope(call->context(), Method::kDeleteGraph, admission_, metrics_);
  absl::Status status = scope.Enter(request->ByteSizeLong());
  if (status.ok()) status = core::ValidateRequiredName("name", request->name());
  if (status.ok()) {
    status = engine_->resident().graphs().Delete(request->name());
  }
  scope.Finish(call, status, nullptr);
}

void CollectionHandlers::ListGraphs(UnaryCall* call,
                                    const v1::ListGraphsRequest* request,
                                    v1::ListGraphsResponse* response) {
  CallScope scope(call->context(), Method::kListGraphs, admission_, metrics_);
  if (absl::Status status = scope.Enter(request->ByteSizeLong());
      !status.ok()) {
    scope.Finish(call, status, nullptr);
    return;
  }
  for (const collections::GraphInfo& info :
       engine_->resident().graphs().List()) {
    GraphInfoToProto(info, response->add_graphs());
  }
  scope.Finish(call, absl::OkStatus(), nullptr);
}

void CollectionHandlers::DescribeGraph(UnaryCall* call,
                                       const v1::DescribeGraphRequest* request,
                                       v1::GraphInfo* response) {
  // As DescribeCollection: a call that waits for min_version is answered
  // from the waiting thread.
  auto scope = std::make_shared<CallScope>(
      call->context(), Method::kDescribeGraph, admission_, metrics_);
  absl::Status status = scope->Enter(request->ByteSizeLong());
  if (status.ok()) status = core::ValidateRequiredName("name", request->name());
  if (!status.ok()) {
    scope->Finish(call, status, nullptr);
    return;
  }
  core::ResidentData& resident = engine_->resident();
  resident.WhenGraphAtLeast(
      request->name(), request->min_version(),
      resident.options().min_version_wait,
      [this, scope, call, request, response](
          absl::StatusOr<std::shared_ptr<const collections::Graph>> current) {
        absl::Status answer = current.status();
        if (answer.ok()) {
          auto info = engine_->resident().graphs().Describe(request->name());
          answer = info.status();
          // The version waited for, or a later one.
          if (info.ok()) GraphInfoToProto(*info, response);
        } else if (absl::IsUnavailable(answer)) {
          scope->AddRetryPushback(kMinVersionRetryAfter);
        }
        scope->Finish(call, answer, nullptr);
      });
}

}  // namespace engram::server
