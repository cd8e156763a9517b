#include "server/upload_streams.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "base/status_macros.h"
#include "core/resident_upload.h"
#include "core/validation.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

absl::Status CollectionUploadStream::Process(
    const v1::UploadCollectionRequest& message) {
  if (message.has_header()) {
    if (upload_ != nullptr || replay_ != nullptr) {
      return absl::InvalidArgumentError(
          "header: only the first message of an upload may be a header");
    }
    return Begin(message.header());
  }
  if (upload_ == nullptr && replay_ == nullptr) {
    return absl::InvalidArgumentError(
        "header: the first message of an upload must be a header (name, "
        "create, dimension, total_rows)");
  }
  if (!message.has_chunk()) {
    return absl::InvalidArgumentError(
        "message: every message after the header must be a chunk");
  }
  // A resent upload that was committed: its rows are read and dropped.
  if (replay_ != nullptr) return absl::OkStatus();
  const v1::UploadChunk& chunk = message.chunk();
  std::vector<collections::RowLabels> labels;
  if (chunk.labels_size() > 0) {
    ENGRAM_ASSIGN_OR_RETURN(
        labels, RowLabelsFromProto(chunk.labels(), upload_->rows_received()));
  }
  return core::AppendVectors(
      *upload_,
      absl::MakeConstSpan(chunk.vectors().data(), chunk.vectors_size()),
      absl::MakeConstSpan(chunk.ids().data(), chunk.ids_size()), labels);
}

absl::Status CollectionUploadStream::Begin(const v1::UploadHeader& header) {
  collections::UploadOptions options;
  options.name = header.name();
  options.create = header.create();
  options.dimension = header.dimension();
  options.metadata = MetadataFromProto(header.metadata());
  options.rows = header.total_rows();
  options.with_ids = header.with_ids();
  options.idempotency_key = header.idempotency_key();
  ENGRAM_RETURN_IF_ERROR(core::ValidateUploadHeader(options));
  collections::CollectionStore& store = engine_->resident().collections();
  // Checked before the budget is reserved: a resend of a committed upload
  // must succeed even when its rows would no longer fit.
  replay_ = store.FindCommitted(options.name, options.idempotency_key);
  if (replay_ != nullptr) {
    rows_declared_ = options.rows;
    return absl::OkStatus();
  }
  ENGRAM_ASSIGN_OR_RETURN(upload_, store.BeginUpload(options));
  return absl::OkStatus();
}

absl::Status CollectionUploadStream::Commit(
    v1::UploadCollectionResponse* response) {
  std::shared_ptr<const collections::Collection> c = replay_;
  if (c != nullptr) {
    response->set_rows_uploaded(rows_declared_);
    response->set_replayed(true);
  } else {
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError(
          "header: the stream ended without an upload header");
    }
    ENGRAM_ASSIGN_OR_RETURN(c, core::CommitUpload(*upload_));
    response->set_rows_uploaded(upload_->rows_received());
    response->set_replayed(upload_->replayed());
  }
  auto info = engine_->resident().collections().Describe(c->name());
  if (info.ok()) {
    CollectionInfoToProto(*info, engine_->ResidencyOf(info->uid),
                          response->mutable_collection());
  }
  return absl::OkStatus();
}

absl::Status GraphUploadStream::Process(const v1::PutGraphRequest& message) {
  if (message.has_header()) {
    if (upload_ != nullptr) {
      return absl::InvalidArgumentError(
          "header: only the first message of a graph put may be a header");
    }
    const v1::PutGraphHeader& header = message.header();
    ENGRAM_RETURN_IF_ERROR(
        core::ValidateRequiredName("header.name", header.name()));
    collections::GraphPutOptions options;
    options.name = header.name();
    options.num_nodes = header.num_nodes();
    options.num_edges = header.num_edges();
    ENGRAM_ASSIGN_OR_RETURN(upload_,
                            engine_->resident().graphs().BeginPut(options));
    return absl::OkStatus();
  }
  if (upload_ == nullptr) {
    return absl::InvalidArgumentError(
        "header: the first message of a graph put must be a header (name, "
        "num_nodes, num_edges)");
  }
  if (!message.has_chunk()) {
    return absl::InvalidArgumentError(
        "message: every message after the header must be a chunk");
  }
  const v1::PutGraphChunk& chunk = message.chunk();
  return core::AppendGraphChunk(
      *upload_,
      absl::MakeConstSpan(chunk.row_offsets().data(), chunk.row_offsets_size()),
      absl::MakeConstSpan(chunk.targets().data(), chunk.targets_size()),
      absl::MakeConstSpan(chunk.weights().data(), chunk.weights_size()));
}

absl::Status GraphUploadStream::Commit(v1::GraphInfo* response) {
  if (upload_ == nullptr) {
    return absl::InvalidArgumentError(
        "header: the stream ended without a graph header");
  }
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const collections::Graph> graph,
                          upload_->Commit());
  auto info = engine_->resident().graphs().Describe(graph->name());
  if (info.ok()) GraphInfoToProto(*info, response);
  return absl::OkStatus();
}

}  // namespace engram::server
