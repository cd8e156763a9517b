// engram-cli's resident-data commands: parsing of `collection` and
// `graph` actions, the search request, metadata, `spread --graph_name` and
// `bench --rpc=SearchCollection`. Runs against the real server are in
// tests/server/resident_cli_e2e_test.cc.
#include <string>
#include <vector>

#include "client/cli/commands.h"
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

}  // namespace
}  // namespace engram::client::cli
