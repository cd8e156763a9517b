#include "core/resident_upload.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/validation.h"
#include "kernels/types.h"

namespace engram::core {

absl::Status ValidateUploadHeader(const collections::UploadOptions& options) {
  ENGRAM_RETURN_IF_ERROR(ValidateRequiredName("header.name", options.name));
  if (options.rows == 0) {
    return absl::InvalidArgumentError(
        "header.total_rows must be >= 1 (the rows the upload brings)");
  }
  if (!options.idempotency_key.empty()) {
    const std::string& key = options.idempotency_key;
    if (key.size() > 128) {
      return absl::InvalidArgumentError(
          absl::StrCat("header.idempotency_key is ", key.size(),
                       " characters, at most 128 allowed"));
    }
    for (size_t i = 0; i < key.size(); ++i) {
      if (key[i] < 0x21 || key[i] > 0x7e) {
        return absl::InvalidArgumentError(absl::StrCat(
            "header.idempotency_key has a character other than printable "
            "ASCII at position ",
            i));
      }
    }
  }
  if (!options.create && !options.metadata.empty()) {
    return absl::InvalidArgumentError(
        "header.metadata is only accepted when the upload creates the "
        "collection (create = true)");
  }
  return absl::OkStatus();
}

absl::Status AppendVectors(collections::CollectionUpload& upload,
                           absl::Span<const float> vectors,
                           absl::Span<const uint64_t> ids) {
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
  return upload.Append(rows, ids);
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

}  // namespace engram::core
