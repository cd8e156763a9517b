// engram-cli's `collection` and `graph` commands and `spread --graph_name`
// against the real engram-server, in process through cli::Main.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/npy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

class ResidentCliE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto process = testing::ServerProcess::Start(
        ENGRAM_SERVER_BINARY, {"--worker_threads=2", "--log_level=warning",
                               "--min_version_wait=200ms"});
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = process->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  struct Result {
    int code = -1;
    std::string out;
    std::string err;
  };
  static Result Cli(std::vector<std::string> args) {
    args.insert(args.begin(), "engram-cli");
    args.push_back("--server=" + server_->grpc_target());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    std::ostringstream out, err;
    Result r;
    r.code =
        client::cli::Main(static_cast<int>(argv.size()), argv.data(), out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
  }
  static std::string Temp(const std::string& name) {
    return absl::StrCat(::testing::TempDir(), "/resident_cli_", getpid(), "_",
                        name);
  }

  static testing::ServerProcess* server_;
};

testing::ServerProcess* ResidentCliE2ETest::server_ = nullptr;

TEST_F(ResidentCliE2ETest, CollectionCommandsEndToEnd) {
  client::FloatMatrix rows;
  rows.rows = 50;
  rows.cols = 8;
  rows.values = testing::RandomMatrix(50, 8, 3);
  const std::string npy = Temp("rows.npy");
  ASSERT_TRUE(client::WriteNpyFile(npy, rows).ok());

  Result r = Cli({"collection", "create", "--name=empty", "--dimension=8"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"name\":\"empty\""));
  r = Cli({"collection", "create", "--name=empty", "--dimension=8"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));

  r = Cli({"collection", "upload", "--name=docs", "--file=" + npy,
           "--chunk_rows=7", "--metadata=model=test"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"rows_uploaded\":\"50\""));
  r = Cli({"collection", "append", "--name=docs", "--file=" + npy});
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cli({"collection", "describe", "--name=docs"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"count\":\"100\""));
  EXPECT_THAT(r.out, HasSubstr("\"model\":\"test\""));
  // A version the server has answers; one it never reaches answers
  // UNAVAILABLE (after --min_version_wait), naming min_version.
  r = Cli({"collection", "describe", "--name=docs", "--min_version=2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"version\":\"2\""));
  r = Cli({"collection", "search", "--name=docs", "--random=1,8", "--top_k=1",
           "--min_version=3"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.err, HasSubstr("min_version"));
  r = Cli({"collection", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"docs\""));
  EXPECT_THAT(r.out, HasSubstr("\"empty\""));

  r = Cli({"collection", "search", "--name=docs", "--random=2,8", "--top_k=3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"results\""));
  r = Cli({"collection", "search", "--name=docs", "--random=2,9", "--top_k=3"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));

  r = Cli({"collection", "delete", "--name=docs"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = Cli({"collection", "describe", "--name=docs"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  r = Cli({"collection", "upload", "--name=x", "--file=" + Temp("none.npy")});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(Cli({"collection", "delete", "--name=empty"}).code, 0);
  std::remove(npy.c_str());
}

TEST_F(ResidentCliE2ETest, UploadWithIdsFileReturnsThoseIds) {
  client::FloatMatrix rows;
  rows.rows = 20;
  rows.cols = 4;
  rows.values = testing::RandomMatrix(20, 4, 11);
  const std::string npy = Temp("id_rows.npy");
  ASSERT_TRUE(client::WriteNpyFile(npy, rows).ok());
  // '<u8' ids 1000000000000 + 7 * row, written as numpy would.
  std::string header =
      "{'descr': '<u8', 'fortran_order': False, 'shape': (20,), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string ids_bytes("\x93NUMPY\x01\x00", 8);
  ids_bytes += static_cast<char>(header.size() & 0xff);
  ids_bytes += static_cast<char>(header.size() >> 8);
  ids_bytes += header;
  for (uint64_t i = 0; i < 20; ++i) {
    const uint64_t id = 1000000000000 + 7 * i;
    for (int b = 0; b < 8; ++b) ids_bytes += static_cast<char>(id >> (8 * b));
  }
  const std::string ids = Temp("ids.npy");
  std::ofstream(ids, std::ios::binary) << ids_bytes;

  Result r = Cli({"collection", "upload", "--name=with_ids", "--file=" + npy,
                  "--ids=" + ids, "--chunk_rows=6"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Row 13 searched for itself: its stored id comes back first.
  client::FloatMatrix query;
  query.rows = 1;
  query.cols = 4;
  query.values.assign(rows.values.begin() + 13 * 4,
                      rows.values.begin() + 14 * 4);
  const std::string query_npy = Temp("id_query.npy");
  ASSERT_TRUE(client::WriteNpyFile(query_npy, query).ok());
  r = Cli({"collection", "search", "--name=with_ids", "--queries=" + query_npy,
           "--top_k=1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"1000000000091\""));

  // One id short: refused before connecting, naming the flag.
  std::string short_bytes = ids_bytes.substr(0, ids_bytes.size() - 8);
  const std::string shape = "(20,)";
  short_bytes.replace(short_bytes.find(shape), shape.size(), "(19,)");
  const std::string short_ids = Temp("short_ids.npy");
  std::ofstream(short_ids, std::ios::binary) << short_bytes;
  r = Cli({"collection", "upload", "--name=short", "--file=" + npy,
           "--ids=" + short_ids});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--ids holds 19 ids for the 20 rows"));
  EXPECT_EQ(Cli({"collection", "describe", "--name=short"}).code, 1);
  EXPECT_EQ(Cli({"collection", "delete", "--name=with_ids"}).code, 0);
  for (const std::string& f : {npy, ids, query_npy, short_ids}) {
    std::remove(f.c_str());
  }
}

TEST_F(ResidentCliE2ETest, GraphCommandsAndSpreadByName) {
  const std::string edges = Temp("edges.tsv");
  {
    std::ofstream out(edges);
    out << "0\t1\t0.9\n1\t2\t0.8\n2\t0\t0.5\n";
  }
  Result r = Cli(
      {"graph", "put", "--name=kg", "--graph=" + edges, "--chunk_entries=2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"num_edges\":\"3\""));
  // The put's answer carries the graph's version (JSON prints uint64 as a
  // string).
  const size_t at = r.out.find("\"version\":\"");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string version =
      r.out.substr(at + 11, r.out.find('"', at + 11) - (at + 11));
  r = Cli({"graph", "describe", "--name=kg", "--min_version=" + version});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"version\":\"" + version + "\""));
  r = Cli({"graph", "describe", "--name=kg",
           "--min_version=" + std::to_string(std::stoull(version) + 1000)});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  r = Cli(
      {"spread", "--graph_name=kg", "--seeds=0:1", "--min_version=" + version});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"graph_version\":\"" + version + "\""));
  r = Cli({"spread", "--graph=" + edges, "--seeds=0:1", "--min_version=1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--min_version"));
  r = Cli({"graph", "list"});
  EXPECT_THAT(r.out, HasSubstr("\"kg\""));

  const Result named = Cli({"spread", "--graph_name=kg", "--seeds=0:1"});
  const Result inline_spread =
      Cli({"spread", "--graph=" + edges, "--seeds=0:1"});
  EXPECT_EQ(named.code, 0) << named.err;
  EXPECT_EQ(inline_spread.code, 0) << inline_spread.err;
  // The same activations (the reports' timings differ).
  EXPECT_EQ(named.out.substr(0, named.out.find("\"report\"")),
            inline_spread.out.substr(0, inline_spread.out.find("\"report\"")));
  r = Cli({"spread", "--graph_name=absent", "--seeds=0:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));

  EXPECT_EQ(Cli({"graph", "delete", "--name=kg"}).code, 0);
  r = Cli({"graph", "delete", "--name=kg"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  std::remove(edges.c_str());
}

TEST_F(ResidentCliE2ETest, GraphUpdateAndSpreadNodeFilters) {
  const std::string edges = Temp("update_edges.tsv");
  {
    std::ofstream out(edges);
    out << "0\t1\t0.9\n1\t2\t0.8\n2\t0\t0.5\n";
  }
  ASSERT_EQ(Cli({"graph", "put", "--name=ug", "--graph=" + edges}).code, 0);
  Result r = Cli({"graph", "update", "--name=ug", "--add_nodes=1",
                  "--add_edges=3:0:0.5,1:3:0.75", "--remove_edges=2:0,2:1",
                  "--set_weights=0:1:0.25", "--idempotency_key=cli-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"num_nodes\":4"));
  EXPECT_THAT(r.out, HasSubstr("\"edges_added\":\"2\""));
  EXPECT_THAT(r.out, HasSubstr("\"edges_removed\":\"1\""));
  EXPECT_THAT(r.out, HasSubstr("\"edges_reweighted\":\"1\""));
  EXPECT_THAT(r.out, HasSubstr("\"not_found\":\"1\""));
  EXPECT_THAT(r.out, HasSubstr("\"replayed\":false"));
  // The same command again is answered, not applied.
  r = Cli({"graph", "update", "--name=ug", "--add_nodes=1",
           "--add_edges=3:0:0.5,1:3:0.75", "--remove_edges=2:0,2:1",
           "--set_weights=0:1:0.25", "--idempotency_key=cli-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"replayed\":true"));
  EXPECT_THAT(r.out, HasSubstr("\"num_nodes\":4"));

  const std::string changes = Temp("changes.txt");
  {
    std::ofstream out(changes);
    out << "# one more\nadd 2 3 1\n";
  }
  r = Cli({"graph", "update", "--name=ug", "--edits=" + changes,
           "--expected_version=1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("ABORTED"));
  r = Cli({"graph", "update", "--name=ug", "--edits=" + changes});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Cli({"graph", "update", "--name=ug"}).code, 2);

  // The updated graph spreads as the same edges sent inline.
  const std::string updated = Temp("updated_edges.tsv");
  {
    std::ofstream out(updated);
    out << "0\t1\t0.25\n1\t2\t0.8\n1\t3\t0.75\n2\t3\t1\n3\t0\t0.5\n";
  }
  const Result named = Cli({"spread", "--graph_name=ug", "--seeds=0:1,2:1",
                            "--seed_nodes=0", "--result_nodes=1,3"});
  const Result inline_spread =
      Cli({"spread", "--graph=" + updated, "--seeds=0:1,2:1", "--seed_nodes=0",
           "--result_nodes=1,3"});
  EXPECT_EQ(named.code, 0) << named.err;
  EXPECT_EQ(inline_spread.code, 0) << inline_spread.err;
  EXPECT_THAT(named.out, HasSubstr("\"seeds_ignored\":1"));
  const auto activations = [](const std::string& out) {
    return out.substr(0, out.find("\"report\""));
  };
  EXPECT_EQ(activations(named.out), activations(inline_spread.out));
  EXPECT_THAT(named.out, HasSubstr("\"activation\":[0,"));
  r = Cli({"spread", "--graph_name=ug", "--seeds=0:1", "--result_nodes=9"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("result_nodes.nodes[0]"));
  std::remove(edges.c_str());
  std::remove(changes.c_str());
  std::remove(updated.c_str());
}

TEST_F(ResidentCliE2ETest, BenchSearchesAResidentCollection) {
  EXPECT_EQ(Cli({"collection", "create", "--name=bench", "--dimension=4"}).code,
            0);
  const Result r = Cli({"bench", "--rpc=SearchCollection", "--collection=bench",
                        "--random=1,4", "--top_k=1", "--duration=300ms",
                        "--warmup=100ms", "--concurrency=2", "--format=json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("SearchCollection"));
  EXPECT_THAT(r.out, HasSubstr("\"errors\":{}"));
}

}  // namespace
}  // namespace engram
