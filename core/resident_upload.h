// The engine's side of the streaming uploads (UploadCollection, PutGraph)
// that is not the stores' own: the header's rules, turning a chunk's flat
// values into rows, and committing only a complete stream. The gRPC layer
// reads the messages and passes their fields here.
//
// Messages name the API field (as in similarity.proto), like validation.h.
//
// Thread-safety: the functions are reentrant; an upload is used by one
// caller at a time (the stores' contract).
#ifndef ENGRAM_CORE_RESIDENT_UPLOAD_H_
#define ENGRAM_CORE_RESIDENT_UPLOAD_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"

namespace engram::core {

// An upload header's rules beyond the store's: a name, at least one row,
// metadata only when the upload creates the collection, an idempotency key
// of at most 128 printable ASCII characters. INVALID_ARGUMENT naming the
// header field.
absl::Status ValidateUploadHeader(const collections::UploadOptions& options);

// Appends one chunk of `vectors` (flat, a positive multiple of the upload's
// dimension, else INVALID_ARGUMENT), its `ids` and its `labels` (none or
// one per row) to `upload`; the upload's own errors otherwise
// (CollectionUpload::Append). Nothing is retained from the spans.
absl::Status AppendVectors(
    collections::CollectionUpload& upload, absl::Span<const float> vectors,
    absl::Span<const uint64_t> ids,
    absl::Span<const collections::RowLabels> labels = {});

// Commits an upload whose stream ended: INVALID_ARGUMENT (and the upload
// aborted) when fewer rows arrived than the header declared, so that the
// caller hears which field was wrong; CollectionUpload::Commit's errors
// otherwise.
absl::StatusOr<std::shared_ptr<const collections::Collection>> CommitUpload(
    collections::CollectionUpload& upload);

// Appends one chunk of a graph put: row offsets and edges (targets and
// weights of equal length, else INVALID_ARGUMENT), either part may be
// empty; GraphUpload's errors otherwise.
absl::Status AppendGraphChunk(collections::GraphUpload& upload,
                              absl::Span<const uint32_t> row_offsets,
                              absl::Span<const uint32_t> targets,
                              absl::Span<const float> weights);

// UpsertRows as the message carries it (spans borrowed for the call).
struct UpsertRequest {
  std::string name;
  uint64_t rows = 0;
  uint64_t cols = 0;
  absl::Span<const float> vectors;                  // rows x cols
  absl::Span<const uint64_t> ids;                   // one per row
  absl::Span<const collections::RowLabels> labels;  // none or one per row
  std::string idempotency_key;
  uint64_t expected_version = 0;
};

struct UpsertOutcome {
  std::shared_ptr<const collections::Collection> collection;
  uint64_t inserted = 0;  // ids new to the collection
  uint64_t replaced = 0;  // ids whose rows were replaced
  bool replayed = false;
};

// Replaces or appends the rows of `request` as one version
// (UploadOptions::replace_ids). INVALID_ARGUMENT naming the field for a bad
// shape, id count, label count or key; the store's errors otherwise
// (NOT_FOUND, FAILED_PRECONDITION for a collection with rows without ids,
// ABORTED for expected_version, INVALID_ARGUMENT for a repeated id or a bad
// value or label, RESOURCE_EXHAUSTED for the budget).
absl::StatusOr<UpsertOutcome> UpsertRows(collections::CollectionStore& store,
                                         const UpsertRequest& request);

}  // namespace engram::core

#endif  // ENGRAM_CORE_RESIDENT_UPLOAD_H_
