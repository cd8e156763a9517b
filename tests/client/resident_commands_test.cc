// engram-cli's resident-data commands: parsing of `collection` and
// `graph` actions, the search request, metadata, `spread --graph_name` and
// `bench --rpc=SearchCollection`. Runs against the real server are in
// tests/server/resident_cli_e2e_test.cc.
#include <fstream>
#include <string>
#include <vector>

#include "client/cli/commands.h"
#include "client/cli/request_builders.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client::cli {
namespace {

using ::testing::HasSubstr;

TEST(ResidentCommandsTest, CollectionNeedsAKnownAction) {
  auto missing = ParseArgs({"collection"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("needs an action"));
  auto unknown = ParseArgs({"collection", "frobnicate", "--name=a"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("frobnicate"));
  auto graph = ParseArgs({"graph", "upload"});
  EXPECT_FALSE(graph.ok());
}

TEST(ResidentCommandsTest, ParsesCollectionFlags) {
  auto parsed =
      ParseArgs({"collection", "upload", "--name=docs", "--file=/tmp/v.npy",
                 "--chunk_rows=128", "--metadata=owner=me,model=m1"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed->subcommand, Subcommand::kCollection);
  EXPECT_EQ(parsed->collection.action, "upload");
  EXPECT_EQ(parsed->collection.name, "docs");
  EXPECT_EQ(parsed->collection.file, "/tmp/v.npy");
  EXPECT_EQ(parsed->collection.chunk_rows, 128u);
  auto metadata = ParseMetadata(parsed->collection.metadata);
  ASSERT_TRUE(metadata.ok());
  EXPECT_EQ(metadata->at("owner"), "me");
  EXPECT_EQ(metadata->at("model"), "m1");
  EXPECT_FALSE(ParseMetadata("novalue").ok());
  // A flag of another subcommand is refused.
  EXPECT_FALSE(ParseArgs({"collection", "list", "--seeds=0:1"}).ok());
}

TEST(ResidentCommandsTest, ParsesGraphFlags) {
  auto parsed = ParseArgs(
      {"graph", "put", "--name=g", "--graph=/tmp/e.tsv", "--chunk_entries=10"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->graph.action, "put");
  EXPECT_EQ(parsed->graph.name, "g");
  EXPECT_EQ(parsed->graph.graph_path, "/tmp/e.tsv");
  EXPECT_EQ(parsed->graph.chunk_entries, 10u);
}

TEST(ResidentCommandsTest, BuildsSearchRequestFromRandomQueries) {
  CosineOptions options;
  options.random = "3,16";
  options.top_k = 7;
  options.min_score = 0.25f;
  auto request = BuildSearchRequest("docs", options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->collection(), "docs");
  EXPECT_EQ(request->queries().rows(), 3u);
  EXPECT_EQ(request->queries().cols(), 16u);
  EXPECT_EQ(request->queries().values_size(), 48);
  EXPECT_EQ(request->top_k(), 7u);
  EXPECT_FLOAT_EQ(request->min_score(), 0.25f);
  options.random = "3,16,5";
  EXPECT_FALSE(BuildSearchRequest("docs", options).ok());
  options.random = "";
  EXPECT_FALSE(BuildSearchRequest("docs", options).ok());  // no queries
}

TEST(ResidentCommandsTest, SpreadTakesExactlyOneOfGraphAndGraphName) {
  SpreadOptions options;
  options.seeds = "0:1";
  options.graph_name = "knowledge";
  auto request = BuildSpreadRequest(options);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->graph_name(), "knowledge");
  EXPECT_FALSE(request->has_graph());
  options.graph_path = "/tmp/e.tsv";
  EXPECT_FALSE(BuildSpreadRequest(options).ok());
  options.graph_path.clear();
  options.graph_name.clear();
  EXPECT_FALSE(BuildSpreadRequest(options).ok());
}

TEST(ResidentCommandsTest, BenchBuildsSearchCollectionRequests) {
  auto parsed =
      ParseArgs({"bench", "--rpc=SearchCollection", "--collection=docs",
                 "--random=1,768", "--top_k=10"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto request = BuildBenchRequest(*parsed);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->method,
            "/engram.similarity.v1.Similarity/SearchCollection");
  EXPECT_THAT(request->shape, HasSubstr("Q=1 d=768 top_k=10"));
  auto no_collection =
      ParseArgs({"bench", "--rpc=SearchCollection", "--random=1,768"});
  ASSERT_TRUE(no_collection.ok());
  EXPECT_FALSE(BuildBenchRequest(*no_collection).ok());
}

TEST(ResidentCommandsTest, HelpListsTheNewCommands) {
  const std::string overview = UsageText(std::nullopt);
  EXPECT_THAT(overview, HasSubstr("collection"));
  EXPECT_THAT(overview, HasSubstr("graph"));
  EXPECT_THAT(UsageText(Subcommand::kCollection),
              HasSubstr("create|upload|append|delete|list|describe|search"));
}

TEST(ResidentCommandsTest, GraphUpdateTakesChangesFromFlagsAndAFile) {
  const std::string path = ::testing::TempDir() + "/cli_graph_update.txt";
  std::ofstream(path) << "add_nodes 1\nremove 5 6\nadd 7 8 0.5\n";
  auto parsed = ParseArgs({"graph", "update", "--name=g", "--edits=" + path,
                           "--add_nodes=2", "--remove_edges=1:2,3:4",
                           "--set_weights=0:1:0.25", "--add_edges=2:0:1",
                           "--idempotency_key=k", "--expected_version=9"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->graph.action, "update");
  auto request = BuildUpdateGraphRequest(parsed->graph);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->name(), "g");
  EXPECT_EQ(request->add_nodes(), 3u);
  ASSERT_EQ(request->remove_edges_size(), 3);  // the file's first
  EXPECT_EQ(request->remove_edges(0).source(), 5u);
  EXPECT_EQ(request->remove_edges(2).target(), 4u);
  ASSERT_EQ(request->set_weights_size(), 1);
  EXPECT_EQ(request->set_weights(0).weight(), 0.25f);
  ASSERT_EQ(request->add_edges_size(), 2);
  EXPECT_EQ(request->add_edges(1).source(), 2u);
  EXPECT_EQ(request->idempotency_key(), "k");
  EXPECT_EQ(request->expected_version(), 9u);
}

TEST(ResidentCommandsTest, GraphUpdateRefusesEmptyAndMalformedChanges) {
  GraphOptions options;
  options.name = "g";
  EXPECT_THAT(BuildUpdateGraphRequest(options).status().message(),
              HasSubstr("needs a change"));
  options.remove_edges = "1:2:3";
  EXPECT_THAT(BuildUpdateGraphRequest(options).status().message(),
              HasSubstr("--remove_edges: '1:2:3': expected source:target"));
  options.remove_edges.clear();
  options.add_edges = "1:x:0.5";
  EXPECT_THAT(BuildUpdateGraphRequest(options).status().message(),
              HasSubstr("target 'x'"));
  options.add_edges = "1:2:nan";
  EXPECT_FALSE(BuildUpdateGraphRequest(options).ok());
  options.add_edges.clear();
  options.edits_path = ::testing::TempDir() + "/no_such_update.txt";
  EXPECT_EQ(BuildUpdateGraphRequest(options).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ResidentCommandsTest, SpreadSendsTheNodeFilters) {
  auto parsed = ParseArgs({"spread", "--graph_name=kg", "--seeds=0:1,2:1",
                           "--seed_nodes=0,5", "--result_nodes=1,2,3"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto request = BuildSpreadRequest(parsed->spread);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_THAT(request->seed_nodes().nodes(), ::testing::ElementsAre(0, 5));
  EXPECT_THAT(request->result_nodes().nodes(), ::testing::ElementsAre(1, 2, 3));
  parsed->spread.result_nodes = "1,-2";
  EXPECT_THAT(BuildSpreadRequest(parsed->spread).status().message(),
              HasSubstr("--result_nodes"));
  parsed->spread.result_nodes.clear();
  request = BuildSpreadRequest(parsed->spread);
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(request->has_result_nodes());
}

}  // namespace
}  // namespace engram::client::cli
