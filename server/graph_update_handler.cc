// UpdateGraph (collection_handlers.h): admitted at the cost of its
// request, applied on the engine's workers.
#include <memory>

#include "core/logging.h"
#include "core/resident_graph_update.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

void CollectionHandlers::UpdateGraph(UnaryCall* call,
                                     const v1::UpdateGraphRequest* request,
                                     v1::UpdateGraphResponse* response) {
  auto scope = std::make_shared<CallScope>(
      call->context(), Method::kUpdateGraph, admission_, metrics_);
  if (absl::Status refused = scope->Admit(request->ByteSizeLong());
      !refused.ok()) {
    scope->Finish(call, refused, response);
    return;
  }
  scope->Queued();
  engine_->Submit([this, call, request, response, scope] {
    scope->Dequeued();
    const core::ScopedLogContext log_context = scope->LogContext();
    absl::Status status = scope->BeforeWork();
    if (status.ok()) {
      collections::GraphUpdateOptions options;
      options.idempotency_key = request->idempotency_key();
      options.expected_version = request->expected_version();
      absl::StatusOr<collections::GraphUpdateResult> result =
          core::UpdateResidentGraph(engine_->resident().graphs(),
                                    request->name(),
                                    GraphEditFromProto(*request), options);
      if (result.ok()) GraphUpdateToProto(*result, response);
      status = scope->AfterWork(result.status());
    }
    scope->Finish(call, status, response);
  });
}

}  // namespace engram::server
