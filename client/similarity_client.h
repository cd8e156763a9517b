// A blocking client for the Engram Similarity Service (the Similarity RPCs of
// proto/engram/similarity/v1/similarity.proto) and the standard gRPC health
// check, with errors returned as absl::Status.
//
// One SimilarityClient owns one channel; it is thread-safe, and calls from
// many threads share the channel's connections. Every call carries a deadline
// (the client's timeout unless the call overrides it) and, when given, an
// `x-request-id` metadata entry that the server logs with the request.
#ifndef ENGRAM_CLIENT_SIMILARITY_CLIENT_H_
#define ENGRAM_CLIENT_SIMILARITY_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/types.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"

namespace engram::client {

// The metadata key that carries a caller-chosen request id to the server.
inline constexpr char kRequestIdMetadataKey[] = "x-request-id";

// Per-call settings; the defaults send no request id and use the client's
// timeout.
struct CallOptions {
  // Sent as `x-request-id` when non-empty; must be printable ASCII
  // (0x20-0x7E), the character set gRPC allows in text metadata.
  std::string request_id;
  // Replaces the client's timeout for this call when set; must be positive.
  // absl::InfiniteDuration() sends no deadline.
  std::optional<absl::Duration> timeout;
};

// How far a streamed write (UploadCollection, PutGraph) has got, as its
// progress callback sees it. Bytes count the payload the chunks carry, not
// the messages' framing or the header: for an upload each row's values, its
// id and its labels (as UploadOptions.chunk_bytes counts them); for a graph
// 4 bytes per row offset and 8 per edge (target and weight). So bytes_sent
// ends at total_bytes and items_sent at total_items when the stream is
// complete.
struct TransferProgress {
  uint64_t bytes_sent = 0;
  // Rows (UploadCollection) or edges (PutGraph) sent so far; a graph's row
  // offsets go first, so its count stays 0 while they are sent.
  uint64_t items_sent = 0;
  // The whole stream's; unset when unknown (this client always sets them).
  std::optional<uint64_t> total_bytes;
  std::optional<uint64_t> total_items;
};

// Called after each chunk of a streamed write is written, with counts that
// never decrease; not called for chunks the server did not take (a failed
// write ends the stream). It runs on the calling thread between writes, so
// a slow callback slows the stream; it must not throw.
using ProgressCallback = std::function<void(const TransferProgress&)>;

// How UploadCollection streams a matrix.
struct UploadOptions {
  std::string name;
  // true: create the collection (ALREADY_EXISTS when the name is taken);
  // false: append to it (NOT_FOUND when there is none).
  bool create = true;
  std::map<std::string, std::string> metadata;  // create only
  // Rows per chunk message; 0: as many as fit in chunk_bytes.
  uint64_t chunk_rows = 0;
  // Target size of one chunk message, when chunk_rows is 0: its rows' values,
  // ids and labels (a chunk holds at least one row, so one row larger than
  // this is sent alone). Must stay under the server's --max_message_bytes.
  uint64_t chunk_bytes = uint64_t{4} << 20;
  // Optional (UploadHeader.idempotency_key): resending an upload with the
  // same key after an error applies it at most once.
  std::string idempotency_key;
  // Optional: told of each chunk written (see ProgressCallback).
  ProgressCallback progress;
};

// How PutGraph streams a graph.
struct PutGraphOptions {
  std::string name;
  // Row offsets or edges per chunk message; must be >= 1.
  uint64_t chunk_entries = uint64_t{1} << 20;
  // Optional: told of each chunk written (see ProgressCallback).
  ProgressCallback progress;
};

class SimilarityClient {
 public:
  struct Options {
    // A gRPC target: "host:port", "dns:///host:port", "unix:/path", ...
    std::string target = "127.0.0.1:50051";
    // Deadline of every call, measured from its start. Must be positive;
    // absl::InfiniteDuration() sends no deadline.
    absl::Duration timeout = absl::Seconds(30);
    // Largest message sent or received, in bytes; must be positive. Large
    // cosine batches need more than gRPC's 4 MiB default. A retry policy
    // (service_config_json) may retry calls up to this size.
    int max_message_bytes = 256 << 20;
    // "pick_first" or "round_robin"; empty keeps gRPC's default
    // (pick_first). round_robin spreads calls over every address a DNS
    // target resolves to, e.g. the pods behind a headless Service.
    std::string load_balancing_policy;
    // A gRPC service config (JSON) for the channel, e.g.
    // deploy/grpc-service-config.json: load balancing, client-side health
    // checking and a retry policy. Empty: none. load_balancing_policy, when
    // also set, takes precedence over the config's balancing choice.
    std::string service_config_json;
    // Channel credentials; null means insecure (plaintext) credentials.
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    // With TLS credentials: the name the server's certificate must carry,
    // when it differs from the target's host (e.g. a pod IP). Empty: the
    // target's host.
    std::string tls_server_name;
  };

  // Opens a channel to `options.target`. Connecting is lazy, so an
  // unreachable server shows up as UNAVAILABLE on the first call, not here.
  // Returns INVALID_ARGUMENT for an empty target, a non-positive timeout or
  // message size, or an unsupported load-balancing policy.
  static absl::StatusOr<std::unique_ptr<SimilarityClient>> Create(
      const Options& options);

  // Uses an existing channel (shared with the caller), e.g. an in-process
  // channel in tests. Returns INVALID_ARGUMENT for a null channel or a
  // non-positive timeout.
  static absl::StatusOr<std::unique_ptr<SimilarityClient>> CreateFromChannel(
      std::shared_ptr<grpc::Channel> channel,
      absl::Duration timeout = absl::Seconds(30));

  SimilarityClient(const SimilarityClient&) = delete;
  SimilarityClient& operator=(const SimilarityClient&) = delete;

  // The RPCs. A failed call returns the server's status code and message
  // unchanged (DEADLINE_EXCEEDED when the deadline passes, UNAVAILABLE when
  // the server cannot be reached); INVALID_ARGUMENT, without calling, for an
  // invalid CallOptions.
  absl::StatusOr<engram::similarity::v1::BatchCosineResponse> BatchCosine(
      const engram::similarity::v1::BatchCosineRequest& request,
      const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::SpreadResponse> Spread(
      const engram::similarity::v1::SpreadRequest& request,
      const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::GetStatsResponse> GetStats(
      const CallOptions& call = {}) const;

  // Resident collections (docs/api.md). Errors as for the RPCs above.
  absl::StatusOr<engram::similarity::v1::CollectionInfo> CreateCollection(
      const engram::similarity::v1::CreateCollectionRequest& request,
      const CallOptions& call = {}) const;
  // Streams `vectors` (rows x dimension) in chunks: a header (total rows,
  // dimension, whether ids are sent), then the rows. `ids` is empty or
  // holds one id per row; `labels` is empty or holds one RowLabels per row,
  // and each chunk then carries those of its rows. INVALID_ARGUMENT, without
  // calling, for an empty matrix or a wrong id or label count. The rows
  // become visible only if the whole stream arrives; a failed call leaves
  // nothing.
  absl::StatusOr<engram::similarity::v1::UploadCollectionResponse>
  UploadCollection(
      const UploadOptions& options, const FloatMatrix& vectors,
      absl::Span<const uint64_t> ids = {},
      absl::Span<const engram::similarity::v1::RowLabels> labels = {},
      const CallOptions& call = {}) const;
  absl::Status DeleteCollection(const std::string& name,
                                const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::ListCollectionsResponse>
  ListCollections(const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::CollectionInfo> DescribeCollection(
      const std::string& name, const CallOptions& call = {}) const;
  // With `min_version` > 0: from a replica that has at least that version
  // (UNAVAILABLE from one still behind it after the server's wait).
  absl::StatusOr<engram::similarity::v1::CollectionInfo> DescribeCollection(
      const std::string& name, uint64_t min_version,
      const CallOptions& call = {}) const;
  // `request.filter` restricts the rows scored (see RowFilter); the
  // response's rows_searched says how many were.
  absl::StatusOr<engram::similarity::v1::SearchCollectionResponse>
  SearchCollection(
      const engram::similarity::v1::SearchCollectionRequest& request,
      const CallOptions& call = {}) const;
  // Rows changed by id, each call one version (MakeUpsertRowsRequest and
  // MakeDeleteRowsRequest in client/requests.h build the requests). These
  // are writes: deploy/grpc-service-config.json does not retry them, and
  // neither does this client. A caller that got no answer may send the same
  // request again only with an idempotency_key set (the server then applies
  // it at most once and answers `replayed`); with expected_version set, a
  // collection another writer changed meanwhile answers ABORTED.
  absl::StatusOr<engram::similarity::v1::UpsertRowsResponse> UpsertRows(
      const engram::similarity::v1::UpsertRowsRequest& request,
      const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::DeleteRowsResponse> DeleteRows(
      const engram::similarity::v1::DeleteRowsRequest& request,
      const CallOptions& call = {}) const;

  // Resident graphs. PutGraph streams `graph` (CSR, as in SpreadRequest)
  // with at most `options.chunk_entries` row offsets or edges per message.
  // INVALID_ARGUMENT, without calling, for chunk_entries 0 or a weight count
  // other than the edge count.
  absl::StatusOr<engram::similarity::v1::GraphInfo> PutGraph(
      const PutGraphOptions& options,
      const engram::similarity::v1::Graph& graph,
      const CallOptions& call = {}) const;
  // The same, named and chunked by arguments, without progress.
  absl::StatusOr<engram::similarity::v1::GraphInfo> PutGraph(
      const std::string& name, const engram::similarity::v1::Graph& graph,
      uint64_t chunk_entries = uint64_t{1} << 20,
      const CallOptions& call = {}) const;
  absl::Status DeleteGraph(const std::string& name,
                           const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::ListGraphsResponse> ListGraphs(
      const CallOptions& call = {}) const;
  absl::StatusOr<engram::similarity::v1::GraphInfo> DescribeGraph(
      const std::string& name, const CallOptions& call = {}) const;
  // With `min_version` > 0: from a replica that has at least that version
  // of the graph (GraphInfo.version), as DescribeCollection.
  absl::StatusOr<engram::similarity::v1::GraphInfo> DescribeGraph(
      const std::string& name, uint64_t min_version,
      const CallOptions& call = {}) const;
  // One update as one new version (docs/api.md, "Changing a graph");
  // client::MakeUpdateGraphRequest builds the request. With an
  // idempotency_key a resend after an error is applied at most once.
  absl::StatusOr<engram::similarity::v1::UpdateGraphResponse> UpdateGraph(
      const engram::similarity::v1::UpdateGraphRequest& request,
      const CallOptions& call = {}) const;

  // grpc.health.v1.Health/Check for `service` ("" is the whole server).
  // A server without the health service yields UNIMPLEMENTED and an unknown
  // service name NOT_FOUND, as the health protocol specifies.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service, const CallOptions& call = {}) const;

  // The channel, shared; e.g. to inspect its connectivity state.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // The generated stub, for calls the methods above do not shape (tests
  // sending hand-made streams).
  engram::similarity::v1::Similarity::Stub& stub() const { return *stub_; }

 private:
  SimilarityClient(std::shared_ptr<grpc::Channel> channel,
                   absl::Duration timeout);

  // Applies the deadline and request id of `call` to `context`.
  absl::Status PrepareContext(const CallOptions& call,
                              grpc::ClientContext* context) const;

  const std::shared_ptr<grpc::Channel> channel_;
  const absl::Duration timeout_;
  const std::unique_ptr<engram::similarity::v1::Similarity::Stub> stub_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_SIMILARITY_CLIENT_H_
