// The message-by-message logic of the client-streaming uploads
// (UploadCollection, PutGraph), without gRPC: what each message may be (a
// header first and only first, then chunks), the replay of a committed
// idempotency key, appending a chunk, committing a complete stream and
// filling the response, and aborting. The reactors (upload_reactors.cc)
// read the messages and forward them here; the fuzz targets
// (tests/fuzz/) drive whole streams through the same classes. The rules
// and the copying themselves are core's (core/resident_upload.h).
//
// A stream ends in one of two ways: the client closed its side (Commit),
// or the call failed or was cancelled (Abort, or destruction). Until
// Commit succeeds nothing becomes visible; an error from Process or Commit
// leaves the caller to Abort, which gives the reserved budget (and a
// created name) back.
//
// Thread-safety: not thread-safe; one stream is fed by one thread at a time
// (the reactor hands each message to a worker only after the previous one
// was processed). The engine must outlive the stream.
#ifndef ENGRAM_SERVER_UPLOAD_STREAMS_H_
#define ENGRAM_SERVER_UPLOAD_STREAMS_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"
#include "core/engine.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::server {

// One UploadCollection stream.
class CollectionUploadStream {
 public:
  explicit CollectionUploadStream(core::Engine* engine) : engine_(engine) {}
  CollectionUploadStream(const CollectionUploadStream&) = delete;
  CollectionUploadStream& operator=(const CollectionUploadStream&) = delete;
  // Aborts a staged upload that was not committed.
  ~CollectionUploadStream() { Abort(); }

  // One message of the stream. The header (first message only) checks its
  // rules and reserves the budget, or finds its idempotency key committed
  // already (the stream's rows are then read and dropped); a chunk is
  // appended. INVALID_ARGUMENT for a message out of place; the header's and
  // the upload's errors otherwise. The caller ends the stream on error.
  absl::Status Process(
      const ::engram::similarity::v1::UploadCollectionRequest& message);

  // The client closed its side: commits what was staged (or answers a
  // replay) and fills `response`. INVALID_ARGUMENT when no header came;
  // core::CommitUpload's errors otherwise.
  absl::Status Commit(
      ::engram::similarity::v1::UploadCollectionResponse* response);

  // Discards a staged upload; idempotent, a no-op after Commit.
  void Abort() {
    if (upload_ != nullptr) upload_->Abort();
  }

 private:
  absl::Status Begin(const ::engram::similarity::v1::UploadHeader& header);

  core::Engine* const engine_;
  std::unique_ptr<collections::CollectionUpload> upload_;
  // Set when the header's key was committed already (Begin).
  std::shared_ptr<const collections::Collection> replay_;
  uint64_t rows_declared_ = 0;
};

// One PutGraph stream.
class GraphUploadStream {
 public:
  explicit GraphUploadStream(core::Engine* engine) : engine_(engine) {}
  GraphUploadStream(const GraphUploadStream&) = delete;
  GraphUploadStream& operator=(const GraphUploadStream&) = delete;
  // Aborts a staged put that was not committed.
  ~GraphUploadStream() { Abort(); }

  // One message of the stream: the header (first message only) starts the
  // put, a chunk appends row offsets and edges. INVALID_ARGUMENT for a
  // message out of place; the store's errors otherwise.
  absl::Status Process(
      const ::engram::similarity::v1::PutGraphRequest& message);

  // The client closed its side: validates and publishes the graph and fills
  // `response`. INVALID_ARGUMENT when no header came; GraphUpload::Commit's
  // errors otherwise.
  absl::Status Commit(::engram::similarity::v1::GraphInfo* response);

  // Discards a staged put; idempotent, a no-op after Commit.
  void Abort() {
    if (upload_ != nullptr) upload_->Abort();
  }

 private:
  core::Engine* const engine_;
  std::unique_ptr<collections::GraphUpload> upload_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_UPLOAD_STREAMS_H_
