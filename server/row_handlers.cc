// UpsertRows and DeleteRows: rows of a resident collection changed by id,
// each call one version (collection_handlers.h). Like the management calls
// they are admitted at the cost of their request and answered on the gRPC
// thread: the work is a copy and check of the call's rows and the journal's
// write, which a create or delete does too.
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/resident_upload.h"
#include "core/validation.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

namespace {

// DeleteRowsResponse lists this many unknown ids, and counts them all.
constexpr size_t kMaxListedNotFound = 1024;

}  // namespace

void CollectionHandlers::UpsertRows(UnaryCall* call,
                                    const v1::UpsertRowsRequest* request,
                                    v1::UpsertRowsResponse* response) {
  CallScope scope(call->context(), Method::kUpsertRows, admission_, metrics_);
  absl::Status status = scope.Enter(request->ByteSizeLong());
  if (status.ok()) {
    status = [&]() -> absl::Status {
      std::vector<collections::RowLabels> labels;
      if (request->labels_size() > 0) {
        ENGRAM_ASSIGN_OR_RETURN(labels,
                                RowLabelsFromProto(request->labels(), 0));
      }
      core::UpsertRequest upsert;
      upsert.name = request->collection();
      upsert.rows = request->vectors().rows();
      upsert.cols = request->vectors().cols();
      upsert.vectors = absl::MakeConstSpan(request->vectors().values().data(),
                                           request->vectors().values_size());
      upsert.ids =
          absl::MakeConstSpan(request->ids().data(), request->ids_size());
      upsert.labels = labels;
      upsert.idempotency_key = request->idempotency_key();
      upsert.expected_version = request->expected_version();
      ENGRAM_ASSIGN_OR_RETURN(
          core::UpsertOutcome outcome,
          core::UpsertRows(engine_->resident().collections(), upsert));
      const collections::CollectionInfo info =
          collections::DescribeVersion(*outcome.collection);
      CollectionInfoToProto(info, engine_->ResidencyOf(info.uid),
                            response->mutable_collection());
      response->set_inserted(outcome.inserted);
      response->set_replaced(outcome.replaced);
      response->set_replayed(outcome.replayed);
      return absl::OkStatus();
    }();
  }
  scope.Finish(call, status, nullptr);
}

void CollectionHandlers::DeleteRows(UnaryCall* call,
                                    const v1::DeleteRowsRequest* request,
                                    v1::DeleteRowsResponse* response) {
  CallScope scope(call->context(), Method::kDeleteRows, admission_, metrics_);
  absl::Status status = scope.Enter(request->ByteSizeLong());
  if (status.ok()) {
    status = [&]() -> absl::Status {
      ENGRAM_RETURN_IF_ERROR(
          core::ValidateRequiredName("collection", request->collection()));
      if (request->ids_size() == 0 || static_cast<size_t>(request->ids_size()) >
                                          collections::kMaxDeleteIds) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ids has ", request->ids_size(), " entries, must be 1 to ",
            collections::kMaxDeleteIds));
      }
      ENGRAM_RETURN_IF_ERROR(core::ValidateIdempotencyKey(
          "idempotency_key", request->idempotency_key()));
      ENGRAM_ASSIGN_OR_RETURN(
          collections::DeleteRowsResult result,
          engine_->resident().collections().DeleteRows(
              request->collection(),
              absl::MakeConstSpan(request->ids().data(), request->ids_size()),
              request->idempotency_key(), request->expected_version()));
      const collections::CollectionInfo info =
          collections::DescribeVersion(*result.collection);
      CollectionInfoToProto(info, engine_->ResidencyOf(info.uid),
                            response->mutable_collection());
      response->set_deleted(result.deleted);
      response->set_not_found(result.not_found.size());
      for (size_t i = 0; i < result.not_found.size() && i < kMaxListedNotFound;
           ++i) {
        response->add_not_found_ids(result.not_found[i]);
      }
      response->set_replayed(result.replayed);
      return absl::OkStatus();
    }();
  }
  scope.Finish(call, status, nullptr);
}

}  // namespace engram::server
