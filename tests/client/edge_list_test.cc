// Edge list parsing: accepted layouts (tabs, spaces, comments, blank lines,
// CRLF) and each error with the line number it names.
#include "client/edge_list.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P3(IsEdge, source, target, weight, "") {
  return arg.source == static_cast<uint32_t>(source) &&
         arg.target == static_cast<uint32_t>(target) && arg.weight == weight;
}

class EdgeListTest : public ::testing::Test {
 protected:
  static void ExpectError(const std::string& text, const std::string& message) {
    auto edges = ParseEdgeList(text);
    EXPECT_EQ(edges.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(edges.status().message(), HasSubstr(message)) << text;
  }
};

TEST_F(EdgeListTest, ParsesTabSeparatedLinesInOrder) {
  auto edges = ParseEdgeList("0\t1\t0.5\n2\t0\t1\n1\t2\t0.25\n");
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_THAT(*edges,
              ::testing::ElementsAre(IsEdge(0, 1, 0.5f), IsEdge(2, 0, 1.0f),
                                     IsEdge(1, 2, 0.25f)));
}

TEST_F(EdgeListTest, AcceptsSpacesMixedWhitespaceAndCrlf) {
  auto edges = ParseEdgeList(
      "0 1 0.5\n"
      "  3 \t 4\t\t1e-1  \n"
      "5    6 2\r\n"
      "7 8 +3.5");  // No final newline.
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_THAT(*edges,
              ::testing::ElementsAre(IsEdge(0, 1, 0.5f), IsEdge(3, 4, 0.1f),
                                     IsEdge(5, 6, 2.0f), IsEdge(7, 8, 3.5f)));
}

TEST_F(EdgeListTest, SkipsCommentsAndBlankLines) {
  auto edges = ParseEdgeList(
      "# source target weight\n"
      "\n"
      "   \t \n"
      "0 1 0.5  # a trailing comment\n"
      "    # an indented comment\n"
      "1 0 0.5#no space\n");
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_THAT(*edges,
              ::testing::ElementsAre(IsEdge(0, 1, 0.5f), IsEdge(1, 0, 0.5f)));
}

TEST_F(EdgeListTest, EmptyInputHasNoEdges) {
  auto edges = ParseEdgeList("");
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_TRUE(edges->empty());
}

TEST_F(EdgeListTest, AcceptsTheLargestIdThatKeepsTheCountIn32Bits) {
  auto edges = ParseEdgeList("4294967294 0 1\n");
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_EQ(NumNodesFor(*edges), 4294967295u);
}

TEST_F(EdgeListTest, ErrorsNameTheLineCountingCommentsAndBlanks) {
  ExpectError("# header\n\n0 1 1\nx 1 1\n", "line 4: source id 'x'");
}

TEST_F(EdgeListTest, RejectsNonIntegerIds) {
  ExpectError("0 1 1\nabc 1 1\n", "line 2: source id 'abc' is not an integer");
  ExpectError("1.5 1 1\n", "line 1: source id '1.5' is not an integer");
  ExpectError("1 2e3 1\n", "line 1: target id '2e3' is not an integer");
  ExpectError("1 - 1\n", "line 1: target id '-' is not an integer");
}

TEST_F(EdgeListTest, RejectsNegativeIds) {
  ExpectError("0 1 1\n0 1 1\n-3 1 1\n", "line 3: source id -3 is negative");
  ExpectError("0 -1 1\n", "line 1: target id -1 is negative");
}

TEST_F(EdgeListTest, RejectsIdsTooLargeForTheApi) {
  ExpectError("4294967295 0 1\n", "line 1: source id 4294967295 is too large");
  ExpectError("0 99999999999999999999999 1\n", "line 1: target id");
}

TEST_F(EdgeListTest, RejectsNonNumericWeights) {
  ExpectError("0 1 1\n0 1 heavy\n", "line 2: weight 'heavy' is not a number");
  ExpectError("0 1 0.5x\n", "line 1: weight '0.5x' is not a number");
}

TEST_F(EdgeListTest, RejectsNonFiniteWeights) {
  ExpectError("0 1 nan\n", "line 1: weight 'nan' is not finite");
  ExpectError("0 1 1\n0 1 -inf\n", "line 2: weight '-inf' is not finite");
  ExpectError("0 1 1e40\n", "line 1: weight '1e40' is not finite");
}

TEST_F(EdgeListTest, RejectsMissingAndExtraFields) {
  ExpectError("0 1 1\n0 1\n", "line 2: missing field");
  ExpectError("0 1\n", "no weight");
  ExpectError("7\n",
              "line 1: missing field: expected 'source target "
              "weight', no target");
  ExpectError("0 1 1 9\n", "line 1: expected 3 fields");
  ExpectError("0\t1\t1\t# ok\n0\t1\t1\t2\n", "line 2: expected 3 fields");
}

TEST_F(EdgeListTest, NumNodesForIsLargestIdPlusOne) {
  EXPECT_EQ(NumNodesFor({}), 0u);
  const std::vector<Edge> edges = {{0, 9, 1.0f}, {4, 2, 1.0f}};
  EXPECT_EQ(NumNodesFor(edges), 10u);
}

TEST_F(EdgeListTest, ReadsFileAndPrefixesErrorsWithThePath) {
  const std::string good = ::testing::TempDir() + "/edge_list_good.tsv";
  std::ofstream(good) << "# graph\n0\t1\t0.5\n1\t0\t0.5\n";
  auto edges = ReadEdgeListFile(good);
  ASSERT_TRUE(edges.ok()) << edges.status();
  EXPECT_EQ(edges->size(), 2u);

  const std::string bad = ::testing::TempDir() + "/edge_list_bad.tsv";
  std::ofstream(bad) << "0\t1\t0.5\n1\t0\n";
  edges = ReadEdgeListFile(bad);
  EXPECT_EQ(edges.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(edges.status().message(),
              HasSubstr(bad + ": line 2: missing field"));
}

TEST_F(EdgeListTest, MissingFileIsNotFound) {
  auto edges = ReadEdgeListFile(::testing::TempDir() + "/no_such_graph.tsv");
  EXPECT_EQ(edges.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(edges.status().message(), HasSubstr("no_such_graph.tsv"));
}

TEST_F(EdgeListTest, ParsesAGraphUpdateInAnyOrder) {
  auto update = ParseGraphUpdate(
      "# changes\nadd 4 0 0.5\nremove 1 2\nadd_nodes 2\nset 0 1 0.25  # w\n"
      "add_nodes 3\r\nadd 0 4 1\n");
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->add_nodes, 5u);
  ASSERT_EQ(update->remove_edges.size(), 1u);
  EXPECT_EQ(update->remove_edges[0].source, 1u);
  EXPECT_EQ(update->remove_edges[0].target, 2u);
  EXPECT_THAT(update->set_weights, ElementsAre(IsEdge(0, 1, 0.25f)));
  EXPECT_THAT(update->add_edges,
              ElementsAre(IsEdge(4, 0, 0.5f), IsEdge(0, 4, 1.0f)));
}

TEST_F(EdgeListTest, AGraphUpdateErrorNamesTheLine) {
  for (const auto& [text, message] :
       std::vector<std::pair<std::string, std::string>>{
           {"add 0 1 0.5\ndrop 1 2\n", "line 2: unknown change 'drop'"},
           {"remove 1 2 0.5\n", "line 1: 'remove' takes 2 fields, got 3"},
           {"set 0 1\n", "line 1: 'set' takes 3 fields, got 2"},
           {"add -1 2 0.5\n", "line 1: source id -1 is negative"},
           {"set 0 1 inf\n", "line 1: weight 'inf' is not finite"},
           {"add_nodes x\n", "line 1: add_nodes count 'x'"},
           {"add_nodes 4294967295\nadd_nodes 1\n", "line 2: add_nodes"}}) {
    auto update = ParseGraphUpdate(text);
    EXPECT_EQ(update.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(update.status().message(), HasSubstr(message)) << text;
  }
  const std::string path = ::testing::TempDir() + "/graph_update_bad.txt";
  std::ofstream(path) << "add 0 1 0.5\nadd 0 1\n";
  EXPECT_THAT(ReadGraphUpdateFile(path).status().message(),
              HasSubstr(path + ": line 2:"));
}

}  // namespace
}  // namespace engram::client
