// engram-cli's resident-data commands: parsing of `collection` and
// `graph` actions (update included), the search request, metadata,
// `spread --graph_name` and its node filters, `bench --rpc=SearchCollection`,
// and the row commands (upsert, delete-rows, labels, search filters) from
// flags and files to requests and printed answers, against an in-process
// fake server. Runs against the real server are in
// tests/server/resident_cli_e2e_test.cc.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "client/cli/request_builders.h"
#include "client/npy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_similarity_server.h"

namespace engram::client::cli {
namespace {

namespace v1 = ::engram::similarity::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

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
  const std::string collection = UsageText(Subcommand::kCollection);
  EXPECT_THAT(collection,
              HasSubstr("create|upload|append|delete|list|describe|search|"
                        "upsert|delete-rows"));
  for (const char* flag :
       {"--labels=FILE.jsonl", "--id_list=ID,ID,...", "--expected_version=V",
        "--filter=JSON|@FILE", "--idempotency_key=KEY"}) {
    EXPECT_THAT(collection, HasSubstr(flag));
  }
}

TEST(ResidentCommandsTest, ParsesRowCommandFlags) {
  auto upsert = ParseArgs({"collection", "upsert", "--name=docs",
                           "--file=v.npy", "--ids=i.npy", "--labels=l.jsonl",
                           "--idempotency_key=k1", "--expected_version=4"});
  ASSERT_TRUE(upsert.ok()) << upsert.status();
  EXPECT_EQ(upsert->collection.action, "upsert");
  EXPECT_EQ(upsert->collection.file, "v.npy");
  EXPECT_EQ(upsert->collection.ids_file, "i.npy");
  EXPECT_EQ(upsert->collection.labels_file, "l.jsonl");
  EXPECT_EQ(upsert->collection.idempotency_key, "k1");
  EXPECT_EQ(upsert->collection.expected_version, 4u);
  auto deleted =
      ParseArgs({"collection", "delete-rows", "--name=docs", "--id_list=1,2"});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->collection.action, "delete-rows");
  EXPECT_EQ(deleted->collection.id_list, "1,2");
  auto search = ParseArgs({"collection", "search", "--name=docs",
                           "--random=1,4", "--filter=@f.json"});
  ASSERT_TRUE(search.ok()) << search.status();
  EXPECT_EQ(search->collection.filter, "@f.json");
  EXPECT_FALSE(
      ParseArgs({"collection", "upsert", "--expected_version=-1"}).ok());
}

TEST(ResidentCommandsTest, ParsesIdLists) {
  auto ids = ParseIdList(" 3,18446744073709551615 , 0");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(3u, 18446744073709551615u, 0u));
  for (const auto& [text, message] :
       std::vector<std::pair<const char*, const char*>>{
           {"", "no ids given"},
           {"1,,2", "id ''"},
           {"-1", "id '-1'"},
           {"+1", "id '+1'"},
           {"18446744073709551616", "id '18446744073709551616'"},
           {"1.5", "id '1.5'"}}) {
    auto refused = ParseIdList(text);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(refused.status().message(), HasSubstr(message)) << text;
  }
}

TEST(ResidentCommandsTest, ParsesFiltersInlineOrFromAFile) {
  auto inline_filter = ParseRowFilter(
      R"({"deny_ids":["7"],"where":{"tag":{"key":"kind","values":[{"text":"episode"}]}}})");
  ASSERT_TRUE(inline_filter.ok()) << inline_filter.status();
  EXPECT_THAT(inline_filter->deny_ids(), ElementsAre(7u));
  EXPECT_EQ(inline_filter->where().tag().key(), "kind");

  const std::string path = ::testing::TempDir() + "/cli_filter.json";
  std::ofstream(path) << "{\n  \"where\": {\"range\": {\"name\": \"t\", "
                         "\"max\": 2.5}}\n}\n";
  auto from_file = ParseRowFilter("@" + path);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->where().range().max(), 2.5);

  auto bad = ParseRowFilter(R"({"where":{"tag":{"kye":"kind"}}})");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("--filter: not a RowFilter in JSON: (where.tag) kye"));
  const std::string bad_path = ::testing::TempDir() + "/cli_filter_bad.json";
  std::ofstream(bad_path) << "{\"allow_ids\": [\"x\"]}";
  auto bad_file = ParseRowFilter("@" + bad_path);
  EXPECT_EQ(bad_file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_file.status().message(),
              HasSubstr("--filter " + bad_path + ": not a RowFilter"));
  EXPECT_THAT(bad_file.status().message(), HasSubstr("allow_ids"));
  auto missing = ParseRowFilter("@/nonexistent/filter.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("--filter: cannot open '/nonexistent/filter.json'"));
  EXPECT_THAT(ParseRowFilter("@").status().message(), HasSubstr("no file"));
}

// Whole `collection` runs against the fake server, with input files.
class ResidentRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::FakeSimilarityServer::Start();
    ASSERT_NE(server_, nullptr);
  }

  // Runs engram-cli with `args` and the fake's address; returns the exit
  // code and fills out_ and err_ (taken for a terminal when
  // `err_is_terminal`).
  int RunCli(std::vector<std::string> args, bool err_is_terminal = false) {
    args.insert(args.begin(), "engram-cli");
    args.push_back(absl::StrCat("--server=", server_->target()));
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    out_.str("");
    err_.str("");
    return Main(static_cast<int>(argv.size()), argv.data(), out_, err_,
                err_is_terminal);
  }

  static std::string Temp(const std::string& name,
                          const std::string& contents) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  // A .npy file of `rows` x `cols` float32 values 0, 1, 2, ...
  static std::string RowsFile(const std::string& name, int rows, int cols) {
    FloatMatrix matrix;
    matrix.rows = rows;
    matrix.cols = cols;
    for (int i = 0; i < rows * cols; ++i) matrix.values.push_back(i);
    const std::string path = ::testing::TempDir() + "/" + name;
    EXPECT_TRUE(WriteNpyFile(path, matrix).ok());
    return path;
  }

  // A .npy file of '<u8' ids, laid out as numpy writes it.
  static std::string IdsFile(const std::string& name,
                             const std::vector<uint64_t>& ids) {
    std::string header =
        absl::StrCat("{'descr': '<u8', 'fortran_order': False, 'shape': (",
                     ids.size(), ",), }");
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes("\x93NUMPY\x01\x00", 8);
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>(header.size() >> 8);
    bytes += header;
    for (uint64_t id : ids) {
      for (int b = 0; b < 8; ++b) bytes += static_cast<char>(id >> (8 * b));
    }
    return Temp(name, bytes);
  }

  // Runs `args`, expecting a usage error containing `message` and no call.
  void ExpectRefused(const std::vector<std::string>& args,
                     const std::string& message) {
    EXPECT_EQ(RunCli(args), kExitUsage) << ::testing::PrintToString(args);
    EXPECT_THAT(err_.str(), HasSubstr(message))
        << ::testing::PrintToString(args);
    EXPECT_EQ(out_.str(), "");
    EXPECT_EQ(server_->similarity().calls(), 0);
  }

  std::unique_ptr<testing::FakeSimilarityServer> server_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(ResidentRunTest, UpsertSendsRowsIdsLabelsAndPrintsTheCounts) {
  v1::UpsertRowsResponse canned;
  canned.mutable_collection()->set_name("docs");
  canned.mutable_collection()->set_version(5);
  canned.mutable_collection()->set_count(12);
  canned.mutable_collection()->set_tombstones(1);
  canned.set_inserted(2);
  canned.set_replaced(1);
  server_->similarity().SetUpsertResponse(canned);
  const std::string rows = RowsFile("upsert_rows.npy", 3, 2);
  const std::string ids = IdsFile("upsert_ids.npy", {10, 11, 12});
  const std::string labels =
      Temp("upsert_labels.jsonl",
           "{\"tags\":[{\"key\":\"kind\",\"text\":\"episode\"}]}\n"
           "\n"
           "{\"tags\":[{\"key\":\"user\",\"integer\":\"42\"}],"
           "\"attributes\":{\"t\":1.5}}\n");

  ASSERT_EQ(RunCli({"collection", "upsert", "--name=docs", "--file=" + rows,
                    "--ids=" + ids, "--labels=" + labels,
                    "--idempotency_key=batch-1", "--expected_version=4"}),
            kExitOk)
      << err_.str();

  const v1::UpsertRowsRequest sent =
      server_->similarity().last_upsert_request();
  EXPECT_EQ(sent.collection(), "docs");
  EXPECT_EQ(sent.vectors().rows(), 3u);
  EXPECT_EQ(sent.vectors().cols(), 2u);
  EXPECT_THAT(sent.vectors().values(), ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_THAT(sent.ids(), ElementsAre(10u, 11u, 12u));
  ASSERT_EQ(sent.labels_size(), 3);
  EXPECT_EQ(sent.labels(0).tags(0).text(), "episode");
  EXPECT_EQ(sent.labels(1).ByteSizeLong(), 0u);
  EXPECT_EQ(sent.labels(2).tags(0).integer(), 42);
  EXPECT_EQ(sent.labels(2).attributes().at("t"), 1.5);
  EXPECT_EQ(sent.idempotency_key(), "batch-1");
  EXPECT_EQ(sent.expected_version(), 4u);
  const std::string out = out_.str();
  EXPECT_THAT(out, StartsWith("{\"collection\":{\"name\":\"docs\""));
  EXPECT_THAT(out, HasSubstr("\"version\":\"5\""));
  EXPECT_THAT(out, HasSubstr("\"tombstones\":\"1\""));
  EXPECT_THAT(out, HasSubstr("\"inserted\":\"2\",\"replaced\":\"1\""));
  EXPECT_THAT(out, HasSubstr("\"replayed\":false"));
  EXPECT_EQ(err_.str(), "");
}

TEST_F(ResidentRunTest, UpsertWithoutLabelsSendsNone) {
  const std::string rows = RowsFile("upsert_plain.npy", 2, 2);
  const std::string ids = IdsFile("upsert_plain_ids.npy", {1, 2});
  ASSERT_EQ(RunCli({"collection", "upsert", "--name=docs", "--file=" + rows,
                    "--ids=" + ids}),
            kExitOk)
      << err_.str();
  const v1::UpsertRowsRequest sent =
      server_->similarity().last_upsert_request();
  EXPECT_EQ(sent.labels_size(), 0);
  EXPECT_EQ(sent.idempotency_key(), "");
  EXPECT_EQ(sent.expected_version(), 0u);
}

TEST_F(ResidentRunTest, DeleteRowsSendsListedAndFiledIdsAndPrintsNotFound) {
  v1::DeleteRowsResponse canned;
  canned.mutable_collection()->set_version(6);
  canned.set_deleted(2);
  canned.set_not_found(2);
  canned.add_not_found_ids(8);
  canned.add_not_found_ids(9);
  server_->similarity().SetDeleteRowsResponse(canned);
  const std::string ids = IdsFile("delete_ids.npy", {8, 9});

  ASSERT_EQ(RunCli({"collection", "delete-rows", "--name=docs",
                    "--id_list=3, 4", "--ids=" + ids, "--idempotency_key=del-1",
                    "--expected_version=5"}),
            kExitOk)
      << err_.str();

  const v1::DeleteRowsRequest sent =
      server_->similarity().last_delete_rows_request();
  EXPECT_EQ(sent.collection(), "docs");
  EXPECT_THAT(sent.ids(), ElementsAre(3u, 4u, 8u, 9u));
  EXPECT_EQ(sent.idempotency_key(), "del-1");
  EXPECT_EQ(sent.expected_version(), 5u);
  EXPECT_THAT(out_.str(), HasSubstr("\"deleted\":\"2\",\"not_found\":\"2\","
                                    "\"not_found_ids\":[\"8\",\"9\"]"));

  ASSERT_EQ(
      RunCli({"collection", "delete-rows", "--name=docs", "--id_list=77"}),
      kExitOk)
      << err_.str();
  EXPECT_THAT(server_->similarity().last_delete_rows_request().ids(),
              ElementsAre(77u));
}

TEST_F(ResidentRunTest, UploadSendsEachChunkTheLabelsOfItsRows) {
  v1::UploadCollectionResponse canned;
  canned.set_rows_uploaded(3);
  server_->similarity().SetUploadResponse(canned);
  const std::string rows = RowsFile("upload_rows.npy", 3, 2);
  const std::string labels =
      Temp("upload_labels.jsonl",
           "{\"tags\":[{\"key\":\"row\",\"integer\":\"0\"}]}\n"
           "{\"tags\":[{\"key\":\"row\",\"integer\":\"1\"}]}\n"
           "{\"tags\":[{\"key\":\"row\",\"integer\":\"2\"}]}\n");

  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows,
                    "--labels=" + labels, "--chunk_rows=2"}),
            kExitOk)
      << err_.str();

  const auto messages = server_->similarity().last_upload_messages();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].header().total_rows(), 3u);
  const v1::UploadChunk& first = messages[1].chunk();
  ASSERT_EQ(first.labels_size(), 2);
  EXPECT_EQ(first.labels(0).tags(0).integer(), 0);
  EXPECT_EQ(first.labels(1).tags(0).integer(), 1);
  const v1::UploadChunk& second = messages[2].chunk();
  EXPECT_EQ(second.vectors_size(), 2);
  ASSERT_EQ(second.labels_size(), 1);
  EXPECT_EQ(second.labels(0).tags(0).integer(), 2);
  EXPECT_THAT(out_.str(), HasSubstr("\"rows_uploaded\":\"3\""));
}

TEST_F(ResidentRunTest, UploadWithProgressPrintsProgressLinesAndTheLastOne) {
  const std::string rows = RowsFile("progress_rows.npy", 5, 2);
  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows,
                    "--chunk_rows=2", "--progress"}),
            kExitOk)
      << err_.str();
  // Plain lines, not redrawn: the first chunk's (the later ones follow
  // within a second, so they are not shown), then the final line. 8 bytes
  // of values a row.
  const std::string err = err_.str();
  EXPECT_EQ(err.find('\r'), std::string::npos);
  std::vector<std::string> lines = absl::StrSplit(err, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << err;
  EXPECT_THAT(lines[0], StartsWith("16 B / 40 B  "));
  EXPECT_THAT(lines[0], HasSubstr(" rows/s  40%"));
  EXPECT_THAT(lines[1], StartsWith("done: 40 B, 5 rows in 0:0"));
  EXPECT_THAT(out_.str(), StartsWith("{"));
  EXPECT_EQ(server_->similarity().last_upload_messages().size(), 4u);
}

TEST_F(ResidentRunTest, UploadShowsNoProgressOffATerminalUnlessAsked) {
  const std::string rows = RowsFile("quiet_rows.npy", 5, 2);
  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows,
                    "--chunk_rows=2"}),
            kExitOk);
  EXPECT_EQ(err_.str(), "");
  // --quiet wins over --progress, and over a terminal.
  ASSERT_EQ(RunCli({"collection", "append", "--name=docs", "--file=" + rows,
                    "--progress", "--quiet"}),
            kExitOk);
  EXPECT_EQ(err_.str(), "");
  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows,
                    "--quiet"},
                   /*err_is_terminal=*/true),
            kExitOk);
  EXPECT_EQ(err_.str(), "");
  EXPECT_THAT(out_.str(), StartsWith("{"));
}

TEST_F(ResidentRunTest, UploadOnATerminalRedrawsOneLineAndEndsIt) {
  const std::string rows = RowsFile("terminal_rows.npy", 5, 2);
  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows,
                    "--chunk_rows=2"},
                   /*err_is_terminal=*/true),
            kExitOk);
  const std::string err = err_.str();
  EXPECT_THAT(err, StartsWith("\r16 B / 40 B  "));
  EXPECT_THAT(err, HasSubstr("\rdone: 40 B, 5 rows in 0:0"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
  EXPECT_EQ(err.back(), '\n');
}

TEST_F(ResidentRunTest, FailedUploadEndsTheProgressBeforeTheError) {
  server_->similarity().SetStatus(
      grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "docs exists"));
  const std::string rows = RowsFile("failed_rows.npy", 3, 2);
  ASSERT_EQ(RunCli({"collection", "upload", "--name=docs", "--file=" + rows},
                   /*err_is_terminal=*/true),
            kExitRpcError);
  const std::string err = err_.str();
  EXPECT_THAT(err, Not(HasSubstr("done")));
  EXPECT_THAT(err, HasSubstr("\nerror: ALREADY_EXISTS: docs exists\n"));
}

TEST_F(ResidentRunTest, GraphPutWithProgressCountsEdges) {
  v1::GraphInfo canned;
  canned.set_num_edges(3);
  server_->similarity().SetPutGraphResponse(canned);
  const std::string edges =
      Temp("progress_edges.tsv", "0 1 0.5\n1 2 0.25\n2 0 1\n");
  ASSERT_EQ(RunCli({"graph", "put", "--name=g", "--graph=" + edges,
                    "--chunk_entries=2", "--progress"}),
            kExitOk)
      << err_.str();
  // 4 row offsets (16 bytes), then 3 edges (24 bytes).
  std::vector<std::string> lines =
      absl::StrSplit(err_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << err_.str();
  EXPECT_THAT(lines[0], StartsWith("8 B / 40 B  0 edges/s  20%"));
  EXPECT_THAT(lines[1], StartsWith("done: 40 B, 3 edges in 0:0"));
  EXPECT_THAT(out_.str(), HasSubstr("\"num_edges\":\"3\""));
  const auto messages = server_->similarity().last_put_graph_messages();
  ASSERT_EQ(messages.size(), 1u + 2u + 2u);
  EXPECT_EQ(messages[0].header().name(), "g");
}

TEST(ResidentCommandsTest, ProgressAndQuietAreSwitches) {
  auto parsed = ParseArgs({"collection", "upload", "--progress", "--name=a"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->common.progress);
  EXPECT_FALSE(parsed->common.quiet);
  EXPECT_EQ(parsed->collection.name, "a");  // --name was not its value
  parsed = ParseArgs({"graph", "put", "--quiet", "--progress=false"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->common.quiet);
  EXPECT_FALSE(parsed->common.progress);
  parsed = ParseArgs({"stats", "--quiet"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->common.quiet);
  // --progress is for the commands that stream.
  EXPECT_FALSE(ParseArgs({"stats", "--progress"}).ok());
  EXPECT_FALSE(ParseArgs({"graph", "put", "--quiet=maybe"}).ok());
  EXPECT_THAT(UsageText(Subcommand::kCollection), HasSubstr("  --progress\n"));
  EXPECT_THAT(UsageText(std::nullopt), HasSubstr("  --quiet\n"));
}

TEST_F(ResidentRunTest, SearchSendsTheFilterAndPrintsRowsSearched) {
  v1::SearchCollectionResponse canned;
  canned.set_rows_searched(17);
  canned.set_collection_version(3);
  server_->similarity().SetSearchResponse(canned);
  const std::string filter = Temp(
      "search_filter.json",
      "{\"allow_ids\":[1,2,3],\"where\":{\"any\":{\"predicates\":["
      "{\"tag\":{\"key\":\"kind\"}},"
      "{\"range\":{\"name\":\"t\",\"min\":0.5,\"min_exclusive\":true}}]}}}");

  ASSERT_EQ(RunCli({"collection", "search", "--name=docs", "--random=2,4",
                    "--top_k=3", "--filter=@" + filter}),
            kExitOk)
      << err_.str();

  const v1::SearchCollectionRequest sent =
      server_->similarity().last_search_request();
  EXPECT_EQ(sent.collection(), "docs");
  EXPECT_EQ(sent.queries().rows(), 2u);
  EXPECT_EQ(sent.top_k(), 3u);
  EXPECT_THAT(sent.filter().allow_ids(), ElementsAre(1u, 2u, 3u));
  const v1::PredicateList& any = sent.filter().where().any();
  ASSERT_EQ(any.predicates_size(), 2);
  EXPECT_EQ(any.predicates(0).tag().key(), "kind");
  EXPECT_EQ(any.predicates(0).tag().values_size(), 0);
  EXPECT_EQ(any.predicates(1).range().min(), 0.5);
  EXPECT_TRUE(any.predicates(1).range().min_exclusive());
  EXPECT_THAT(out_.str(), HasSubstr("\"rows_searched\":\"17\""));

  ASSERT_EQ(RunCli({"collection", "search", "--name=docs", "--random=1,4",
                    "--filter={\"deny_ids\":[5]}"}),
            kExitOk)
      << err_.str();
  EXPECT_THAT(server_->similarity().last_search_request().filter().deny_ids(),
              ElementsAre(5u));
  ASSERT_EQ(RunCli({"collection", "search", "--name=docs", "--random=1,4"}),
            kExitOk)
      << err_.str();
  EXPECT_FALSE(server_->similarity().last_search_request().has_filter());
}

TEST_F(ResidentRunTest, RefusesBadLabelsNamingTheFileAndLine) {
  const std::string rows = RowsFile("bad_labels_rows.npy", 2, 2);
  const std::string ids = IdsFile("bad_labels_ids.npy", {1, 2});
  const std::string bad =
      Temp("bad_labels.jsonl",
           "{}\n{\"tags\":[{\"key\":\"user\",\"integer\":\"forty-two\"}]}\n");
  ExpectRefused({"collection", "upload", "--name=docs", "--file=" + rows,
                 "--labels=" + bad},
                bad + ": line 2: not a RowLabels in JSON: (tags[0].integer)");
  ExpectRefused({"collection", "upsert", "--name=docs", "--file=" + rows,
                 "--ids=" + ids, "--labels=" + bad},
                bad + ": line 2: ");
  ExpectRefused({"collection", "append", "--name=docs", "--file=" + rows,
                 "--labels=/nonexistent/labels.jsonl"},
                "cannot open '/nonexistent/labels.jsonl'");
}

TEST_F(ResidentRunTest, RefusesALabelCountOtherThanOnePerRow) {
  const std::string rows = RowsFile("count_rows.npy", 3, 2);
  const std::string ids = IdsFile("count_ids.npy", {1, 2, 3});
  const std::string two = Temp("two_labels.jsonl", "{}\n{}\n");
  ExpectRefused({"collection", "upload", "--name=docs", "--file=" + rows,
                 "--labels=" + two},
                "--labels " + two + " holds 2 lines for the 3 rows of --file");
  const std::string four = Temp("four_labels.jsonl", "{}\n\n\n\n");
  ExpectRefused({"collection", "upsert", "--name=docs", "--file=" + rows,
                 "--ids=" + ids, "--labels=" + four},
                "--labels " + four + " holds 4 lines for the 3 rows");
  const std::string few_ids = IdsFile("count_few_ids.npy", {1, 2});
  ExpectRefused({"collection", "upsert", "--name=docs", "--file=" + rows,
                 "--ids=" + few_ids},
                "--ids holds 2 ids for the 3 rows of --file");
}

TEST_F(ResidentRunTest, RefusesBadFiltersNamingTheField) {
  ExpectRefused(
      {"collection", "search", "--name=docs", "--random=1,4",
       "--filter={\"where\":{\"range\":{\"name\":\"t\",\"min\":\"low\"}}}"},
      "--filter: not a RowFilter in JSON: (where.range.min)");
  ExpectRefused({"collection", "search", "--name=docs", "--random=1,4",
                 "--filter={\"deny\":[1]}"},
                "--filter: not a RowFilter in JSON: deny: Cannot find field");
  ExpectRefused({"collection", "search", "--name=docs", "--random=1,4",
                 "--filter={\"deny_ids\":[1]"},
                "--filter: not a RowFilter in JSON: ");
  ExpectRefused({"collection", "search", "--name=docs", "--random=1,4",
                 "--filter=@/nonexistent/f.json"},
                "error: NOT_FOUND: --filter: cannot open");
}

TEST_F(ResidentRunTest, RefusesMissingOrMisplacedRowFlags) {
  const std::string rows = RowsFile("flag_rows.npy", 1, 2);
  const std::string ids = IdsFile("flag_ids.npy", {1});
  ExpectRefused({"collection", "upsert", "--name=docs", "--file=" + rows},
                "collection upsert needs --ids");
  ExpectRefused({"collection", "upsert", "--name=docs", "--ids=" + ids},
                "collection upsert needs --file");
  ExpectRefused({"collection", "upsert", "--file=" + rows, "--ids=" + ids},
                "collection upsert needs --name");
  ExpectRefused({"collection", "delete-rows", "--name=docs"},
                "collection delete-rows needs --id_list=ID,... or --ids");
  ExpectRefused({"collection", "delete-rows", "--name=docs", "--id_list=1,x"},
                "--id_list: id 'x' is not a non-negative 64-bit integer");
  ExpectRefused(
      {"collection", "upload", "--name=docs", "--file=" + rows, "--filter={}"},
      "--filter applies to collection search, not upload");
  ExpectRefused({"collection", "search", "--name=docs", "--random=1,2",
                 "--labels=l.jsonl"},
                "--labels applies to collection upload, append, upsert, not "
                "search");
  ExpectRefused({"collection", "append", "--name=docs", "--file=" + rows,
                 "--expected_version=3"},
                "--expected_version applies to collection upsert, "
                "delete-rows, not append");
  ExpectRefused({"collection", "upsert", "--name=docs", "--file=" + rows,
                 "--ids=" + ids, "--id_list=1"},
                "--id_list applies to collection delete-rows, not upsert");
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
