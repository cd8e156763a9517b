#include "core/resident_upload.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/collections/row_labels.h"
#include "core/validation.h"
#include "kernels/types.h"

namespace engram::core {

absl::Status ValidateUploadHeader(const collections::UploadOptions& options) {
  ENGRAM_RETURN_IF_ERROR(ValidateRequiredName("header.name", options.name));
  if (options.rows == 0) {
    return absl::InvalidArgumentError(
        "header.total_rows must be >= 1 (the rows the upload brings)");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateIdempotencyKey("header.idempotency_key",
                                                options.idempotency_key));
  if (!options.create && !options.metadata.empty()) {
    return absl::InvalidArgumentError(
        "header.metadata is only accepted when the upload creates the "
        "collection (create = true)");
  }
  return absl::OkStatus();
}

absl::Status AppendVectors(collections::CollectionUpload& upload,
                           absl::Span<const float> vectors,
                           absl::Span<const uint64_t> ids,
                           absl::Span<const collections::RowLabels> labels) {
  const uint32_t d = upload.dimension();
  if (vectors.empty() || vectors.size() % d != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk.vectors has ", vectors.size(),
        " values, expected a positive multiple of the dimension ", d));
  }
  kernels::MatrixView rows;
  rows.data = vectors.data();
  rows.cols = d;
  rows.rows = vectors.size() / d;
  return upload.Append(rows, ids, labels);
}

absl::StatusOr<std::shared_ptr<const collections::Collection>> CommitUpload(
    collections::CollectionUpload& upload) {
  if (upload.rows_received() < upload.rows_expected()) {
    const uint64_t received = upload.rows_received();
    upload.Abort();
    return absl::InvalidArgumentError(absl::StrCat(
        "header.total_rows: the stream ended after ", received, " of ",
        upload.rows_expected(), " rows; nothing was stored"));
  }
  return upload.Commit();
}

absl::Status AppendGraphChunk(collections::GraphUpload& upload,
                              absl::Span<const uint32_t> row_offsets,
                              absl::Span<const uint32_t> targets,
                              absl::Span<const float> weights) {
  if (targets.size() != weights.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk.weights has ", weights.size(),
                     " entries, expected one per chunk.targets entry (",
                     targets.size(), ")"));
  }
  if (!row_offsets.empty()) {
    ENGRAM_RETURN_IF_ERROR(upload.AppendRowOffsets(row_offsets));
  }
  if (!targets.empty()) {
    ENGRAM_RETURN_IF_ERROR(upload.AppendEdges(targets, weights));
  }
  return absl::OkStatus();
}

absl::StatusOr<UpsertOutcome> UpsertRows(collections::CollectionStore& store,
                                         const UpsertRequest& request) {
  ENGRAM_RETURN_IF_ERROR(ValidateRequiredName("collection", request.name));
  ENGRAM_RETURN_IF_ERROR(ValidateMatrixShape(
      "vectors", request.rows, request.cols, request.vectors.size()));
  if (request.ids.size() != request.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ids has ", request.ids.size(),
        " entries, expected one per row of vectors (", request.rows, ")"));
  }
  if (!request.labels.empty() && request.labels.size() != request.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels has ", request.labels.size(),
                     " entries, expected none or one per row of vectors (",
                     request.rows, ")"));
  }
  ENGRAM_RETURN_IF_ERROR(
      ValidateIdempotencyKey("idempotency_key", request.idempotency_key));
  UpsertOutcome outcome;
  if (std::shared_ptr<const collections::Collection> done =
          store.FindCommitted(request.name, request.idempotency_key)) {
    outcome.collection = std::move(done);
    outcome.replayed = true;
    return outcome;
  }
  collections::UploadOptions options;
  options.name = request.name;
  // 0: Append names vectors.cols when the width is wrong.
  options.dimension = 0;
  options.rows = request.rows;
  options.with_ids = true;
  options.replace_ids = true;
  options.expected_version = request.expected_version;
  options.idempotency_key = request.idempotency_key;
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<collections::CollectionUpload> upload,
                          store.BeginUpload(options));
  const kernels::MatrixView rows{request.vectors.data(), request.rows,
                                 request.cols};
  ENGRAM_RETURN_IF_ERROR(upload->Append(rows, request.ids, request.labels));
  ENGRAM_ASSIGN_OR_RETURN(outcome.collection, upload->Commit());
  outcome.replayed = upload->replayed();
  outcome.replaced = upload->replaced();
  outcome.inserted = outcome.replayed ? 0 : request.rows - outcome.replaced;
  return outcome;
}

}  // namespace engram::core
