// Typed builders for the Similarity API's request messages: they turn plain
// client values (float spans, edge lists, seeds) into the proto messages of
// proto/engram/similarity/v1/similarity.proto.
//
// The builders check only what they need to lay the message out (a matrix's
// size, edge ids within the graph); the server remains the judge of everything
// else (matching dimensions, weights, limits). All functions are thread-safe.
#ifndef ENGRAM_CLIENT_REQUESTS_H_
#define ENGRAM_CLIENT_REQUESTS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/types.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::client {

// A rows x cols Matrix holding a copy of `values` (row-major). Returns
// INVALID_ARGUMENT when values.size() != rows * cols or a dimension does not
// fit the message's uint32 fields.
absl::StatusOr<engram::similarity::v1::Matrix> MakeMatrix(
    std::size_t rows, std::size_t cols, absl::Span<const float> values);

// MakeMatrix for a FloatMatrix.
absl::StatusOr<engram::similarity::v1::Matrix> MakeMatrix(
    const FloatMatrix& matrix);

// A BatchCosine request; min_score is set only when given, so the server can
// tell "no minimum" from a minimum of 0.
engram::similarity::v1::BatchCosineRequest MakeCosineRequest(
    engram::similarity::v1::Matrix queries,
    engram::similarity::v1::Matrix targets, uint32_t top_k,
    std::optional<float> min_score,
    engram::similarity::v1::Placement placement =
        engram::similarity::v1::PLACEMENT_AUTO);

// The CSR Graph of `edges` over nodes [0, num_nodes). Edges are grouped by
// source with a stable sort, so a node's out-edges keep their input order.
// Returns INVALID_ARGUMENT naming the first edge whose source or target is
// not below num_nodes.
absl::StatusOr<engram::similarity::v1::Graph> MakeGraph(
    uint32_t num_nodes, absl::Span<const Edge> edges);

// A Spread request. `params` is copied as given: its unset optional fields
// leave the server's defaults in force.
engram::similarity::v1::SpreadRequest MakeSpreadRequest(
    engram::similarity::v1::Graph graph, absl::Span<const SpreadSeed> seeds,
    engram::similarity::v1::SpreadParams params, uint32_t top_k,
    engram::similarity::v1::Placement placement =
        engram::similarity::v1::PLACEMENT_AUTO);

// An UpsertRows request for `collection`: `vectors` (rows x dimension) with
// one id per row and, when `labels` is not empty, one RowLabels per row.
// The idempotency key and expected version are left for the caller to set.
// Returns INVALID_ARGUMENT, naming `ids` or `labels`, for a count that is not
// one per row, and as MakeMatrix for the vectors.
absl::StatusOr<engram::similarity::v1::UpsertRowsRequest> MakeUpsertRowsRequest(
    const std::string& collection, const FloatMatrix& vectors,
    absl::Span<const uint64_t> ids,
    absl::Span<const engram::similarity::v1::RowLabels> labels = {});

// A DeleteRows request for `collection` and `ids`, in order; the
// idempotency key and expected version are left for the caller to set.
engram::similarity::v1::DeleteRowsRequest MakeDeleteRowsRequest(
    const std::string& collection, absl::Span<const uint64_t> ids);

// An UpdateGraph request for graph `name`. `idempotency_key` (may be empty)
// and `expected_version` (0: none) are sent as given.
engram::similarity::v1::UpdateGraphRequest MakeUpdateGraphRequest(
    const std::string& name, const GraphUpdate& update,
    const std::string& idempotency_key = "", uint64_t expected_version = 0);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_REQUESTS_H_
