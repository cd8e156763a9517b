#include "client/similarity_client.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/status_conversion.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;

absl::Status ValidateTimeout(absl::Duration timeout, absl::string_view what) {
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be positive, got ", absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  for (char c : request_id) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request id must be printable ASCII (0x20-0x7E) to travel as gRPC "
          "metadata");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimilarityClient>> SimilarityClient::Create(
    const Options& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("target must not be empty");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(options.timeout, "timeout"));
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be positive, got ", options.max_message_bytes));
  }
  // Only the policies that need no further service config are accepted, so a
  // typo fails here instead of silently falling back to pick_first.
  const std::string& policy = options.load_balancing_policy;
  if (!policy.empty() && policy != "pick_first" && policy != "round_robin") {
    return absl::InvalidArgumentError(
        absl::StrCat("load_balancing_policy must be empty, \"pick_first\" or "
                     "\"round_robin\", got \"",
                     policy, "\""));
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // A retry policy retries only calls whose request fits gRPC's retry
  // buffer (256 KiB per call by default): every request this client may
  // send must, or a large call cut off by a draining replica is lost. The
  // buffer holds the bytes already being sent; it copies nothing.
  args.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, options.max_message_bytes);
  if (!options.service_config_json.empty()) {
    args.SetServiceConfigJSON(options.service_config_json);
  }
  if (!policy.empty()) args.SetLoadBalancingPolicyName(policy);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials
                                     : grpc::InsecureChannelCredentials();
  return absl::WrapUnique(new SimilarityClient(
      grpc::CreateCustomChannel(options.target, credentials, args),
      options.timeout));
}

absl::StatusOr<std::unique_ptr<SimilarityClient>>
SimilarityClient::CreateFromChannel(std::shared_ptr<grpc::Channel> channel,
                                    absl::Duration timeout) {
  if (channel == nullptr) {
    return absl::InvalidArgumentError("channel must not be null");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(timeout, "timeout"));
  return absl::WrapUnique(new SimilarityClient(std::move(channel), timeout));
}

SimilarityClient::SimilarityClient(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration timeout)
    : channel_(std::move(channel)),
      timeout_(timeout),
      stub_(v1::Similarity::NewStub(channel_)),
      health_stub_(health::Health::NewStub(channel_)) {}

absl::Status SimilarityClient::PrepareContext(
    const CallOptions& call, grpc::ClientContext* context) const {
  const absl::Duration timeout = call.timeout.value_or(timeout_);
  ENGRAM_RETURN_IF_ERROR(ValidateTimeout(timeout, "call timeout"));
  ENGRAM_RETURN_IF_ERROR(ValidateRequestId(call.request_id));
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  if (!call.request_id.empty()) {
    context->AddMetadata(kRequestIdMetadataKey, call.request_id);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BatchCosineResponse> SimilarityClient::BatchCosine(
    const v1::BatchCosineRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::BatchCosineResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->BatchCosine(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::SpreadResponse> SimilarityClient::Spread(
    const v1::SpreadRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::SpreadResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->Spread(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::GetStatsResponse> SimilarityClient::GetStats(
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::GetStatsResponse response;
  ENGRAM_RETURN_IF_ERROR(FromGrpcStatus(
      stub_->GetStats(&context, v1::GetStatsRequest(), &response)));
  return response;
}

namespace {

// Calls a unary method of `stub` with a prepared context.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> Unary(v1::Similarity::Stub& stub, Method method,
                               grpc::ClientContext* context,
                               const Request& request) {
  Response response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus((stub.*method)(context, request, &response)));
  return response;
}

}  // namespace

absl::StatusOr<v1::CollectionInfo> SimilarityClient::CreateCollection(
    const v1::CreateCollectionRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::CreateCollectionRequest, v1::CollectionInfo>(
      *stub_, &v1::Similarity::Stub::CreateCollection, &context, request);
}

namespace {

// The bytes row `row` adds to a chunk message: its values and id as packed
// repeated fields hold them (an id counted at 8 bytes, the size of a large
// varint) and its labels as one length-delimited entry. Enough to keep a
// chunk near its target size; the exact size is the encoder's business.
uint64_t RowBytes(std::size_t cols, bool with_ids,
                  absl::Span<const v1::RowLabels> labels, std::size_t row) {
  uint64_t bytes = cols * sizeof(float) + (with_ids ? sizeof(uint64_t) : 0);
  if (!labels.empty()) {
    const std::size_t size = labels[row].ByteSizeLong();
    bytes +=
        1 + google::protobuf::io::CodedOutputStream::VarintSize64(size) + size;
  }
  return bytes;
}

}  // namespace

absl::StatusOr<v1::UploadCollectionResponse> SimilarityClient::UploadCollection(
    const UploadOptions& options, const FloatMatrix& vectors,
    absl::Span<const uint64_t> ids, absl::Span<const v1::RowLabels> labels,
    const CallOptions& call) const {
  if (vectors.rows == 0 || vectors.cols == 0 ||
      vectors.values.size() != vectors.rows * vectors.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vectors must be a non-empty rows x cols matrix, got ", vectors.rows,
        " x ", vectors.cols, " with ", vectors.values.size(), " values"));
  }
  if (!ids.empty() && ids.size() != vectors.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("ids has ", ids.size(), " entries, expected one per row (",
                     vectors.rows, ")"));
  }
  if (!labels.empty() && labels.size() != vectors.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.size(),
        " entries, expected none or one per row (", vectors.rows, ")"));
  }
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::UploadCollectionResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadCollectionRequest>> writer =
      stub_->UploadCollection(&context, &response);
  v1::UploadCollectionRequest message;
  v1::UploadHeader* header = message.mutable_header();
  header->set_name(options.name);
  header->set_create(options.create);
  header->set_dimension(static_cast<uint32_t>(vectors.cols));
  header->set_total_rows(vectors.rows);
  header->set_with_ids(!ids.empty());
  header->set_idempotency_key(options.idempotency_key);
  header->mutable_metadata()->insert(options.metadata.begin(),
                                     options.metadata.end());
  // The payload bytes of rows [first, end), as RowBytes counts them.
  auto bytes_of = [&](uint64_t first, uint64_t end) {
    if (labels.empty()) {
      return (end - first) * RowBytes(vectors.cols, !ids.empty(), labels, 0);
    }
    uint64_t bytes = 0;
    for (uint64_t row = first; row < end; ++row) {
      bytes += RowBytes(vectors.cols, !ids.empty(), labels, row);
    }
    return bytes;
  };
  TransferProgress progress;
  if (options.progress) {
    progress.total_bytes = bytes_of(0, vectors.rows);
    progress.total_items = vectors.rows;
  }
  bool writing = writer->Write(message);
  uint64_t first = 0;
  while (writing && first < vectors.rows) {
    // Rows go in while the chunk has room for them; the first always does.
    uint64_t end = first + 1;
    uint64_t chunk_bytes = 0;
    if (options.chunk_rows > 0) {
      end = std::min<uint64_t>(vectors.rows, first + options.chunk_rows);
      if (options.progress) chunk_bytes = bytes_of(first, end);
    } else {
      chunk_bytes = RowBytes(vectors.cols, !ids.empty(), labels, first);
      while (end < vectors.rows) {
        const uint64_t next = RowBytes(vectors.cols, !ids.empty(), labels, end);
        if (chunk_bytes + next > options.chunk_bytes) break;
        chunk_bytes += next;
        ++end;
      }
    }
    message.Clear();
    v1::UploadChunk* chunk = message.mutable_chunk();
    const float* begin = vectors.values.data() + first * vectors.cols;
    chunk->mutable_vectors()->Add(begin, begin + (end - first) * vectors.cols);
    if (!ids.empty()) {
      chunk->mutable_ids()->Add(ids.begin() + first, ids.begin() + end);
    }
    if (!labels.empty()) {
      chunk->mutable_labels()->Reserve(static_cast<int>(end - first));
      for (uint64_t row = first; row < end; ++row) {
        *chunk->add_labels() = labels[row];
      }
    }
    writing = writer->Write(message);
    if (writing && options.progress) {
      progress.bytes_sent += chunk_bytes;
      progress.items_sent = end;
      options.progress(progress);
    }
    first = end;
  }
  // A failed Write means the server answered early (an error); Finish
  // returns that answer either way.
  if (writing) writer->WritesDone();
  ENGRAM_RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response;
}

absl::Status SimilarityClient::DeleteCollection(const std::string& name,
                                                const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::DeleteCollectionRequest request;
  request.set_name(name);
  return Unary<v1::DeleteCollectionRequest, v1::DeleteCollectionResponse>(
             *stub_, &v1::Similarity::Stub::DeleteCollection, &context, request)
      .status();
}

absl::StatusOr<v1::ListCollectionsResponse> SimilarityClient::ListCollections(
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::ListCollectionsRequest, v1::ListCollectionsResponse>(
      *stub_, &v1::Similarity::Stub::ListCollections, &context,
      v1::ListCollectionsRequest());
}

absl::StatusOr<v1::CollectionInfo> SimilarityClient::DescribeCollection(
    const std::string& name, const CallOptions& call) const {
  return DescribeCollection(name, /*min_version=*/0, call);
}

absl::StatusOr<v1::CollectionInfo> SimilarityClient::DescribeCollection(
    const std::string& name, uint64_t min_version,
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::DescribeCollectionRequest request;
  request.set_name(name);
  request.set_min_version(min_version);
  return Unary<v1::DescribeCollectionRequest, v1::CollectionInfo>(
      *stub_, &v1::Similarity::Stub::DescribeCollection, &context, request);
}

absl::StatusOr<v1::SearchCollectionResponse> SimilarityClient::SearchCollection(
    const v1::SearchCollectionRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::SearchCollectionRequest, v1::SearchCollectionResponse>(
      *stub_, &v1::Similarity::Stub::SearchCollection, &context, request);
}

absl::StatusOr<v1::UpsertRowsResponse> SimilarityClient::UpsertRows(
    const v1::UpsertRowsRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::UpsertRowsRequest, v1::UpsertRowsResponse>(
      *stub_, &v1::Similarity::Stub::UpsertRows, &context, request);
}

absl::StatusOr<v1::DeleteRowsResponse> SimilarityClient::DeleteRows(
    const v1::DeleteRowsRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::DeleteRowsRequest, v1::DeleteRowsResponse>(
      *stub_, &v1::Similarity::Stub::DeleteRows, &context, request);
}

absl::StatusOr<v1::GraphInfo> SimilarityClient::PutGraph(
    const std::string& name, const v1::Graph& graph, uint64_t chunk_entries,
    const CallOptions& call) const {
  PutGraphOptions options;
  options.name = name;
  options.chunk_entries = chunk_entries;
  return PutGraph(options, graph, call);
}

absl::StatusOr<v1::GraphInfo> SimilarityClient::PutGraph(
    const PutGraphOptions& options, const v1::Graph& graph,
    const CallOptions& call) const {
  const uint64_t chunk_entries = options.chunk_entries;
  if (chunk_entries == 0) {
    return absl::InvalidArgumentError("chunk_entries must be >= 1");
  }
  if (graph.targets_size() != graph.weights_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.weights has ", graph.weights_size(),
                     " entries, expected one per graph.targets entry (",
                     graph.targets_size(), ")"));
  }
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::GraphInfo response;
  std::unique_ptr<grpc::ClientWriter<v1::PutGraphRequest>> writer =
      stub_->PutGraph(&context, &response);
  v1::PutGraphRequest message;
  v1::PutGraphHeader* header = message.mutable_header();
  header->set_name(options.name);
  header->set_num_nodes(graph.num_nodes());
  header->set_num_edges(static_cast<uint64_t>(graph.targets_size()));
  const uint64_t offsets = graph.row_offsets_size();
  const uint64_t edges = graph.targets_size();
  // Payload bytes as TransferProgress counts them.
  constexpr uint64_t kOffsetBytes = sizeof(uint32_t);
  constexpr uint64_t kEdgeBytes = sizeof(uint32_t) + sizeof(float);
  TransferProgress progress;
  progress.total_bytes = offsets * kOffsetBytes + edges * kEdgeBytes;
  progress.total_items = edges;
  auto report = [&](uint64_t bytes, uint64_t new_edges) {
    if (!options.progress) return;
    progress.bytes_sent += bytes;
    progress.items_sent += new_edges;
    options.progress(progress);
  };
  bool writing = writer->Write(message);
  for (uint64_t first = 0; writing && first < offsets; first += chunk_entries) {
    const uint64_t n = std::min(chunk_entries, offsets - first);
    message.Clear();
    message.mutable_chunk()->mutable_row_offsets()->Add(
        graph.row_offsets().begin() + first,
        graph.row_offsets().begin() + first + n);
    writing = writer->Write(message);
    if (writing) report(n * kOffsetBytes, 0);
  }
  for (uint64_t first = 0; writing && first < edges; first += chunk_entries) {
    const uint64_t n = std::min(chunk_entries, edges - first);
    message.Clear();
    v1::PutGraphChunk* chunk = message.mutable_chunk();
    chunk->mutable_targets()->Add(graph.targets().begin() + first,
                                  graph.targets().begin() + first + n);
    chunk->mutable_weights()->Add(graph.weights().begin() + first,
                                  graph.weights().begin() + first + n);
    writing = writer->Write(message);
    if (writing) report(n * kEdgeBytes, n);
  }
  if (writing) writer->WritesDone();
  ENGRAM_RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response;
}

absl::Status SimilarityClient::DeleteGraph(const std::string& name,
                                           const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::DeleteGraphRequest request;
  request.set_name(name);
  return Unary<v1::DeleteGraphRequest, v1::DeleteGraphResponse>(
             *stub_, &v1::Similarity::Stub::DeleteGraph, &context, request)
      .status();
}

absl::StatusOr<v1::ListGraphsResponse> SimilarityClient::ListGraphs(
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::ListGraphsRequest, v1::ListGraphsResponse>(
      *stub_, &v1::Similarity::Stub::ListGraphs, &context,
      v1::ListGraphsRequest());
}

absl::StatusOr<v1::GraphInfo> SimilarityClient::DescribeGraph(
    const std::string& name, const CallOptions& call) const {
  return DescribeGraph(name, /*min_version=*/0, call);
}

absl::StatusOr<v1::GraphInfo> SimilarityClient::DescribeGraph(
    const std::string& name, uint64_t min_version,
    const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  v1::DescribeGraphRequest request;
  request.set_name(name);
  request.set_min_version(min_version);
  return Unary<v1::DescribeGraphRequest, v1::GraphInfo>(
      *stub_, &v1::Similarity::Stub::DescribeGraph, &context, request);
}

absl::StatusOr<v1::UpdateGraphResponse> SimilarityClient::UpdateGraph(
    const v1::UpdateGraphRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  return Unary<v1::UpdateGraphRequest, v1::UpdateGraphResponse>(
      *stub_, &v1::Similarity::Stub::UpdateGraph, &context, request);
}

absl::StatusOr<health::HealthCheckResponse::ServingStatus>
SimilarityClient::Health(const std::string& service,
                         const CallOptions& call) const {
  grpc::ClientContext context;
  ENGRAM_RETURN_IF_ERROR(PrepareContext(call, &context));
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  ENGRAM_RETURN_IF_ERROR(
      FromGrpcStatus(health_stub_->Check(&context, request, &response)));
  return response.status();
}

}  // namespace engram::client
