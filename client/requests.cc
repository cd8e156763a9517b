#include "client/requests.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;

constexpr std::size_t kMaxDimension = std::numeric_limits<uint32_t>::max();
// Protobuf indexes repeated fields with int.
constexpr std::size_t kMaxRepeated = std::numeric_limits<int>::max();

}  // namespace

absl::StatusOr<v1::Matrix> MakeMatrix(std::size_t rows, std::size_t cols,
                                      absl::Span<const float> values) {
  if (rows > kMaxDimension || cols > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("matrix dimensions ", rows, " x ", cols,
                     " do not fit the API's 32-bit rows and cols"));
  }
  // rows and cols fit 32 bits, so the product fits 64 without overflow.
  if (values.size() != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", rows, " x ", cols, " matrix needs ", rows * cols,
                     " values, got ", values.size()));
  }
  if (values.size() > kMaxRepeated) {
    return absl::InvalidArgumentError(absl::StrCat(
        values.size(), " values exceed one message's limit of ", kMaxRepeated));
  }
  v1::Matrix matrix;
  matrix.set_rows(static_cast<uint32_t>(rows));
  matrix.set_cols(static_cast<uint32_t>(cols));
  matrix.mutable_values()->Assign(values.begin(), values.end());
  return matrix;
}

absl::StatusOr<v1::Matrix> MakeMatrix(const FloatMatrix& matrix) {
  return MakeMatrix(matrix.rows, matrix.cols, matrix.values);
}

v1::BatchCosineRequest MakeCosineRequest(v1::Matrix queries, v1::Matrix targets,
                                         uint32_t top_k,
                                         std::optional<float> min_score,
                                         v1::Placement placement) {
  v1::BatchCosineRequest request;
  *request.mutable_queries() = std::move(queries);
  *request.mutable_targets() = std::move(targets);
  request.set_top_k(top_k);
  if (min_score.has_value()) request.set_min_score(*min_score);
  request.set_placement(placement);
  return request;
}

absl::StatusOr<v1::Graph> MakeGraph(uint32_t num_nodes,
                                    absl::Span<const Edge> edges) {
  if (edges.size() > kMaxRepeated) {
    return absl::InvalidArgumentError(absl::StrCat(
        edges.size(), " edges exceed one message's limit of ", kMaxRepeated));
  }
  for (std::size_t i = 0; i < edges.size(); ++i) {
    const Edge& e = edges[i];
    if (e.source >= num_nodes || e.target >= num_nodes) {
      return absl::InvalidArgumentError(
          absl::StrCat("edge ", i, " (", e.source, " -> ", e.target,
                       ") references a node outside [0, ", num_nodes, ")"));
    }
  }

  // Counting sort by source: linear, and stable by construction.
  std::vector<uint32_t> offsets(static_cast<std::size_t>(num_nodes) + 1, 0);
  for (const Edge& e : edges) ++offsets[e.source + 1];
  for (std::size_t u = 0; u < num_nodes; ++u) offsets[u + 1] += offsets[u];

  v1::Graph graph;
  graph.set_num_nodes(num_nodes);
  graph.mutable_targets()->Resize(static_cast<int>(edges.size()), 0);
  graph.mutable_weights()->Resize(static_cast<int>(edges.size()), 0.0f);
  std::vector<uint32_t> next(offsets.begin(), offsets.end() - 1);
  for (const Edge& e : edges) {
    const int slot = static_cast<int>(next[e.source]++);
    graph.set_targets(slot, e.target);
    graph.set_weights(slot, e.weight);
  }
  graph.mutable_row_offsets()->Assign(offsets.begin(), offsets.end());
  return graph;
}

v1::SpreadRequest MakeSpreadRequest(v1::Graph graph,
                                    absl::Span<const SpreadSeed> seeds,
                                    v1::SpreadParams params, uint32_t top_k,
                                    v1::Placement placement) {
  v1::SpreadRequest request;
  *request.mutable_graph() = std::move(graph);
  for (const SpreadSeed& seed : seeds) {
    v1::Seed* out = request.add_seeds();
    out->set_node(seed.node);
    out->set_activation(seed.activation);
  }
  *request.mutable_params() = std::move(params);
  request.set_top_k(top_k);
  request.set_placement(placement);
  return request;
}

absl::StatusOr<v1::UpsertRowsRequest> MakeUpsertRowsRequest(
    const std::string& collection, const FloatMatrix& vectors,
    absl::Span<const uint64_t> ids, absl::Span<const v1::RowLabels> labels) {
  if (ids.size() != vectors.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("ids has ", ids.size(), " entries, expected one per row (",
                     vectors.rows, ")"));
  }
  if (!labels.empty() && labels.size() != vectors.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.size(),
        " entries, expected none or one per row (", vectors.rows, ")"));
  }
  v1::UpsertRowsRequest request;
  request.set_collection(collection);
  ENGRAM_ASSIGN_OR_RETURN(*request.mutable_vectors(), MakeMatrix(vectors));
  request.mutable_ids()->Assign(ids.begin(), ids.end());
  request.mutable_labels()->Reserve(static_cast<int>(labels.size()));
  for (const v1::RowLabels& row : labels) *request.add_labels() = row;
  return request;
}

v1::DeleteRowsRequest MakeDeleteRowsRequest(const std::string& collection,
                                            absl::Span<const uint64_t> ids) {
  v1::DeleteRowsRequest request;
  request.set_collection(collection);
  request.mutable_ids()->Assign(ids.begin(), ids.end());
  return request;
}

v1::UpdateGraphRequest MakeUpdateGraphRequest(
    const std::string& name, const GraphUpdate& update,
    const std::string& idempotency_key, uint64_t expected_version) {
  v1::UpdateGraphRequest request;
  request.set_name(name);
  request.set_add_nodes(update.add_nodes);
  request.mutable_remove_edges()->Reserve(
      static_cast<int>(update.remove_edges.size()));
  for (const EdgeRef& e : update.remove_edges) {
    v1::EdgeRef* out = request.add_remove_edges();
    out->set_source(e.source);
    out->set_target(e.target);
  }
  for (const auto& [edges, out] :
       {std::pair{&update.set_weights, request.mutable_set_weights()},
        std::pair{&update.add_edges, request.mutable_add_edges()}}) {
    out->Reserve(static_cast<int>(edges->size()));
    for (const Edge& e : *edges) {
      v1::WeightedEdge* edge = out->Add();
      edge->set_source(e.source);
      edge->set_target(e.target);
      edge->set_weight(e.weight);
    }
  }
  request.set_idempotency_key(idempotency_key);
  request.set_expected_version(expected_version);
  return request;
}

}  // namespace engram::client
