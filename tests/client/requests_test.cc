// The typed request builders: matrix layout, optional fields set only when
// given, the CSR layout MakeGraph derives from an edge list, and the row
// writes' ids and labels.
#include "client/requests.h"

#include <cstdint>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RequestsTest : public ::testing::Test {};

TEST_F(RequestsTest, MakeMatrixCopiesValuesRowMajor) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  auto matrix = MakeMatrix(2, 3, values);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ(matrix->rows(), 2u);
  EXPECT_EQ(matrix->cols(), 3u);
  EXPECT_THAT(matrix->values(), ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST_F(RequestsTest, MakeMatrixRejectsWrongValueCount) {
  const std::vector<float> values = {1, 2, 3, 4, 5};
  auto matrix = MakeMatrix(2, 3, values);
  EXPECT_EQ(matrix.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(matrix.status().message(), HasSubstr("needs 6 values, got 5"));
}

TEST_F(RequestsTest, MakeMatrixRejectsDimensionsBeyond32Bits) {
  auto matrix = MakeMatrix(std::size_t{1} << 32, 0, {});
  EXPECT_EQ(matrix.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RequestsTest, MakeMatrixAcceptsFloatMatrix) {
  FloatMatrix input{1, 2, {0.5f, -0.5f}};
  auto matrix = MakeMatrix(input);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ(matrix->rows(), 1u);
  EXPECT_THAT(matrix->values(), ElementsAre(0.5f, -0.5f));
}

TEST_F(RequestsTest, CosineRequestSetsMinScoreOnlyWhenGiven) {
  v1::Matrix m = *MakeMatrix(1, 1, std::vector<float>{1});
  const v1::BatchCosineRequest without =
      MakeCosineRequest(m, m, 3, std::nullopt);
  EXPECT_FALSE(without.has_min_score());
  EXPECT_EQ(without.top_k(), 3u);
  EXPECT_EQ(without.placement(), v1::PLACEMENT_AUTO);

  // Zero is a real minimum, distinct from "none".
  const v1::BatchCosineRequest with =
      MakeCosineRequest(m, m, 3, 0.0f, v1::PLACEMENT_GPU_ONLY);
  EXPECT_TRUE(with.has_min_score());
  EXPECT_EQ(with.min_score(), 0.0f);
  EXPECT_EQ(with.placement(), v1::PLACEMENT_GPU_ONLY);
  EXPECT_EQ(with.queries().SerializeAsString(), m.SerializeAsString());
}

TEST_F(RequestsTest, MakeGraphGroupsEdgesBySourceIntoCsr) {
  const std::vector<Edge> edges = {
      {2, 0, 0.5f}, {0, 1, 1.0f}, {2, 1, 0.25f}, {0, 2, 2.0f}};
  auto graph = MakeGraph(4, edges);
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(graph->num_nodes(), 4u);
  EXPECT_THAT(graph->row_offsets(), ElementsAre(0, 2, 2, 4, 4));
  EXPECT_THAT(graph->targets(), ElementsAre(1, 2, 0, 1));
  EXPECT_THAT(graph->weights(), ElementsAre(1.0f, 2.0f, 0.5f, 0.25f));
}

TEST_F(RequestsTest, MakeGraphKeepsInputOrderAmongANodesEdges) {
  const std::vector<Edge> edges = {
      {1, 3, 0.1f}, {0, 1, 0.9f}, {1, 0, 0.2f}, {1, 2, 0.3f}, {1, 3, 0.4f}};
  auto graph = MakeGraph(4, edges);
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_THAT(graph->row_offsets(), ElementsAre(0, 1, 5, 5, 5));
  EXPECT_THAT(graph->targets(), ElementsAre(1, 3, 0, 2, 3));
  EXPECT_THAT(graph->weights(), ElementsAre(0.9f, 0.1f, 0.2f, 0.3f, 0.4f));
}

TEST_F(RequestsTest, MakeGraphWithoutEdgesHasZeroOffsets) {
  auto graph = MakeGraph(3, {});
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_THAT(graph->row_offsets(), ElementsAre(0, 0, 0, 0));
  EXPECT_TRUE(graph->targets().empty());
  EXPECT_TRUE(graph->weights().empty());
}

TEST_F(RequestsTest, MakeGraphRejectsEdgesOutsideTheNodeRange) {
  const std::vector<Edge> bad_source = {{0, 1, 1.0f}, {3, 0, 1.0f}};
  auto graph = MakeGraph(3, bad_source);
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(graph.status().message(), HasSubstr("edge 1 (3 -> 0)"));

  const std::vector<Edge> bad_target = {{0, 7, 1.0f}};
  graph = MakeGraph(3, bad_target);
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(graph.status().message(), HasSubstr("edge 0 (0 -> 7)"));
}

TEST_F(RequestsTest, SpreadRequestCopiesSeedsAndLeavesUnsetParamsUnset) {
  v1::Graph graph = *MakeGraph(2, std::vector<Edge>{{0, 1, 1.0f}});
  const std::vector<SpreadSeed> seeds = {{0, 1.0f}, {1, 0.25f}};
  v1::SpreadParams params;
  params.set_max_hops(3);
  const v1::SpreadRequest request =
      MakeSpreadRequest(graph, seeds, params, 5, v1::PLACEMENT_CPU_ONLY);
  ASSERT_EQ(request.seeds_size(), 2);
  EXPECT_EQ(request.seeds(1).node(), 1u);
  EXPECT_EQ(request.seeds(1).activation(), 0.25f);
  EXPECT_EQ(request.params().max_hops(), 3u);
  EXPECT_FALSE(request.params().has_threshold());
  EXPECT_FALSE(request.params().has_max_activation());
  EXPECT_EQ(request.params().decay_case(), v1::SpreadParams::DECAY_NOT_SET);
  EXPECT_EQ(request.top_k(), 5u);
  EXPECT_EQ(request.placement(), v1::PLACEMENT_CPU_ONLY);
  EXPECT_EQ(request.graph().SerializeAsString(), graph.SerializeAsString());
}

TEST_F(RequestsTest, MakeUpsertRowsRequestCarriesRowsIdsAndLabels) {
  FloatMatrix vectors;
  vectors.rows = 2;
  vectors.cols = 3;
  vectors.values = {1, 2, 3, 4, 5, 6};
  const std::vector<uint64_t> ids = {40, 7};
  std::vector<v1::RowLabels> labels(2);
  v1::Tag* tag = labels[1].add_tags();
  tag->set_key("kind");
  tag->set_text("episode");
  (*labels[1].mutable_attributes())["t"] = 1.5;

  auto request = MakeUpsertRowsRequest("docs", vectors, ids, labels);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->collection(), "docs");
  EXPECT_EQ(request->vectors().rows(), 2u);
  EXPECT_EQ(request->vectors().cols(), 3u);
  EXPECT_THAT(request->vectors().values(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(request->ids(), ElementsAre(40u, 7u));
  ASSERT_EQ(request->labels_size(), 2);
  EXPECT_EQ(request->labels(0).ByteSizeLong(), 0u);
  EXPECT_EQ(request->labels(1).SerializeAsString(),
            labels[1].SerializeAsString());
  EXPECT_EQ(request->idempotency_key(), "");
  EXPECT_EQ(request->expected_version(), 0u);

  auto unlabelled = MakeUpsertRowsRequest("docs", vectors, ids);
  ASSERT_TRUE(unlabelled.ok()) << unlabelled.status();
  EXPECT_EQ(unlabelled->labels_size(), 0);
}

TEST_F(RequestsTest, MakeUpsertRowsRequestNeedsOneIdAndNoneOrOneLabelPerRow) {
  FloatMatrix vectors;
  vectors.rows = 2;
  vectors.cols = 1;
  vectors.values = {1, 2};
  auto no_ids = MakeUpsertRowsRequest("docs", vectors, {});
  EXPECT_EQ(no_ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_ids.status().message(), HasSubstr("ids has 0 entries"));
  const std::vector<uint64_t> ids = {1, 2};
  const std::vector<v1::RowLabels> one_label(1);
  auto few_labels = MakeUpsertRowsRequest("docs", vectors, ids, one_label);
  EXPECT_EQ(few_labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(few_labels.status().message(),
              HasSubstr("labels has 1 entries, expected none or one per row"));
}

TEST_F(RequestsTest, MakeDeleteRowsRequestKeepsTheIdsInOrder) {
  const std::vector<uint64_t> ids = {9, 3, 9};
  const v1::DeleteRowsRequest request = MakeDeleteRowsRequest("docs", ids);
  EXPECT_EQ(request.collection(), "docs");
  EXPECT_THAT(request.ids(), ElementsAre(9u, 3u, 9u));
  EXPECT_EQ(request.idempotency_key(), "");
  EXPECT_EQ(request.expected_version(), 0u);
}

TEST_F(RequestsTest, UpdateGraphRequestCarriesEveryList) {
  GraphUpdate update;
  update.add_nodes = 2;
  update.remove_edges = {{1, 2}};
  update.set_weights = {{0, 1, 0.5f}};
  update.add_edges = {{3, 4, 0.25f}, {4, 3, 1.0f}};
  const v1::UpdateGraphRequest request =
      MakeUpdateGraphRequest("kg", update, "key", 7);
  EXPECT_EQ(request.name(), "kg");
  EXPECT_EQ(request.add_nodes(), 2u);
  ASSERT_EQ(request.remove_edges_size(), 1);
  EXPECT_EQ(request.remove_edges(0).source(), 1u);
  EXPECT_EQ(request.remove_edges(0).target(), 2u);
  ASSERT_EQ(request.set_weights_size(), 1);
  EXPECT_EQ(request.set_weights(0).weight(), 0.5f);
  ASSERT_EQ(request.add_edges_size(), 2);
  EXPECT_EQ(request.add_edges(1).source(), 4u);
  EXPECT_EQ(request.add_edges(1).target(), 3u);
  EXPECT_EQ(request.idempotency_key(), "key");
  EXPECT_EQ(request.expected_version(), 7u);
}

}  // namespace
}  // namespace engram::client
