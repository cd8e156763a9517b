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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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
// dimension, else INVALID_ARGUMENT) and its `ids` to `upload`; the upload's
// own errors otherwise (CollectionUpload::Append). Nothing is retained from
// the spans.
absl::Status AppendVectors(collections::CollectionUpload& upload,
                           absl::Span<const float> vectors,
                           absl::Span<const uint64_t> ids);

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

}  // namespace engram::core

#endif  // ENGRAM_CORE_RESIDENT_UPLOAD_H_
