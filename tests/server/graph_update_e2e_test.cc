// End-to-end tests of UpdateGraph and the spread node filters: the real
// engram-server binary called through the client library, results checked
// bit for bit against spreading the graph built from scratch inline.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

struct Server {
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::SimilarityClient> client;
};

Server StartServer(std::vector<std::string> flags) {
  flags.push_back("--worker_threads=2");
  flags.push_back("--log_level=warning");
  Server s;
  auto process = testing::ServerProcess::Start(
      ENGRAM_SERVER_BINARY, flags, testing::ServerProcess::Options());
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return s;
  s.process = *std::move(process);
  client::SimilarityClient::Options options;
  options.target = s.process->grpc_target();
  options.timeout = testing::Scaled(absl::Seconds(30));
  auto created = client::SimilarityClient::Create(options);
  EXPECT_TRUE(created.ok()) << created.status();
  if (created.ok()) s.client = *std::move(created);
  return s;
}

pb::Graph ToProto(const testing::RandomCsrGraph& g) {
  pb::Graph graph;
  graph.set_num_nodes(g.num_nodes);
  graph.mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  graph.mutable_targets()->Add(g.targets.begin(), g.targets.end());
  graph.mutable_weights()->Add(g.weights.begin(), g.weights.end());
  return graph;
}

client::GraphUpdate ToClient(const collections::GraphEdit& edit) {
  client::GraphUpdate update;
  update.add_nodes = edit.add_nodes;
  for (const auto& e : edit.remove_edges) {
    update.remove_edges.push_back({e.source, e.target});
  }
  for (const auto& e : edit.set_weights) {
    update.set_weights.push_back({e.source, e.target, e.weight});
  }
  for (const auto& e : edit.add_edges) {
    update.add_edges.push_back({e.source, e.target, e.weight});
  }
  return update;
}

pb::SpreadRequest SpreadOf(uint32_t num_nodes) {
  pb::SpreadRequest request;
  for (uint32_t v = 1; v < num_nodes; v += num_nodes / 7) {
    pb::Seed* seed = request.add_seeds();
    seed->set_node(v);
    seed->set_activation(0.8f);
  }
  request.mutable_params()->set_max_hops(6);
  request.mutable_params()->set_threshold(0.0005f);
  request.mutable_params()->set_exponential_rate(0.3f);
  return request;
}

class GraphUpdateE2ETest : public ::testing::Test {
 protected:
  // Puts `graph_` as "g" and applies `rounds` random updates of every kind
  // to it and to the reference.
  void PutAndUpdate(const client::SimilarityClient& c, int rounds) {
    auto put = c.PutGraph("g", ToProto(graph_));
    ASSERT_TRUE(put.ok()) << put.status();
    version_ = put->version();
    for (int i = 0; i < rounds; ++i) {
      const collections::GraphEdit edit = testing::RandomGraphEdit(
          reference_, static_cast<testing::GraphEditKind>(i % 5), 40, rng_);
      const collections::GraphEditCounts expected = reference_.Apply(edit);
      auto updated = c.UpdateGraph(client::MakeUpdateGraphRequest(
          "g", ToClient(edit), absl::StrCat("key", i)));
      ASSERT_TRUE(updated.ok()) << updated.status() << " round " << i;
      EXPECT_GT(updated->graph().version(), version_);
      version_ = updated->graph().version();
      EXPECT_EQ(updated->edges_removed(), expected.edges_removed);
      EXPECT_EQ(updated->edges_reweighted(), expected.edges_reweighted);
      EXPECT_EQ(updated->edges_added(), expected.edges_added);
      EXPECT_EQ(updated->not_found(), expected.not_found);
      EXPECT_EQ(updated->not_found_edges_size(),
                static_cast<int>(expected.not_found_edges.size()));
      EXPECT_EQ(updated->graph().num_nodes(), reference_.num_nodes());
      EXPECT_EQ(updated->graph().num_edges(), reference_.num_edges());
      EXPECT_FALSE(updated->replayed());
    }
  }

  // The named graph spreads exactly as the reference graph sent inline.
  void ExpectSpreadsAsTheReference(const client::SimilarityClient& c,
                                   pb::Placement placement) {
    pb::SpreadRequest inline_request = SpreadOf(reference_.num_nodes());
    inline_request.set_placement(placement);
    *inline_request.mutable_graph() = ToProto(reference_.ToCsr());
    pb::SpreadRequest named = inline_request;
    named.clear_graph();
    named.set_graph_name("g");
    named.set_min_version(version_);
    auto a = c.Spread(inline_request);
    auto b = c.Spread(named);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->graph_version(), version_);
    ASSERT_EQ(a->activation_size(), b->activation_size());
    for (int i = 0; i < a->activation_size(); ++i) {
      ASSERT_EQ(a->activation(i), b->activation(i)) << "node " << i;
    }
    EXPECT_EQ(a->hops(), b->hops());
    EXPECT_EQ(a->edges_traversed(), b->edges_traversed());
  }

  const testing::RandomCsrGraph graph_ = testing::RandomGraph(3000, 5, 71);
  testing::EdgeListGraph reference_{graph_.view()};
  std::mt19937_64 rng_{72};
  uint64_t version_ = 0;
};

TEST_F(GraphUpdateE2ETest, UpdatesSpreadAsTheGraphBuiltFromScratch) {
  Server s = StartServer({"--simulated_gpu"});
  ASSERT_NE(s.client, nullptr);
  PutAndUpdate(*s.client, 10);
  auto info = s.client->DescribeGraph("g", version_);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), version_);
  // Merged in the background by now, or not: the same graph either way.
  EXPECT_EQ(info->num_edges(), reference_.num_edges());
  for (const pb::Placement placement :
       {pb::PLACEMENT_CPU_ONLY, pb::PLACEMENT_GPU_ONLY, pb::PLACEMENT_AUTO}) {
    SCOPED_TRACE(placement);
    ExpectSpreadsAsTheReference(*s.client, placement);
  }
  // A resent update is answered, not applied.
  client::GraphUpdate again;
  again.add_nodes = 5;
  auto replay =
      s.client->UpdateGraph(client::MakeUpdateGraphRequest("g", again, "key3"));
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed());
  EXPECT_EQ(replay->graph().version(), version_);
  EXPECT_EQ(replay->graph().num_nodes(), reference_.num_nodes());
  const std::string metrics =
      *testing::HttpGet(s.process->metrics_port(), "/metrics");
  EXPECT_EQ(testing::SampleValue(metrics, "engram_requests_total",
                                 {{"method", "UpdateGraph"}, {"code", "OK"}}),
            11.0);
}

TEST_F(GraphUpdateE2ETest, ABadUpdateNamesItsFieldAndChangesNothing) {
  Server s = StartServer({});
  ASSERT_NE(s.client, nullptr);
  client::GraphUpdate update;
  update.add_edges = {{1, 2, 0.5f}};
  EXPECT_EQ(s.client->UpdateGraph(client::MakeUpdateGraphRequest("g", update))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  PutAndUpdate(*s.client, 0);
  update.add_nodes = 1;
  update.add_edges.push_back({3000, 3001, 1.0f});
  auto bad = s.client->UpdateGraph(client::MakeUpdateGraphRequest("g", update));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("add_edges[1].target"));
  update.add_edges.pop_back();
  update.set_weights = {{1, 2, -1.0f}};
  bad = s.client->UpdateGraph(client::MakeUpdateGraphRequest("g", update));
  EXPECT_THAT(bad.status().message(), HasSubstr("set_weights[0].weight"));
  update.set_weights.clear();
  auto stale = s.client->UpdateGraph(
      client::MakeUpdateGraphRequest("g", update, "", version_ + 100));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  pb::UpdateGraphRequest long_key =
      client::MakeUpdateGraphRequest("g", update, std::string(129, 'k'));
  EXPECT_THAT(s.client->UpdateGraph(long_key).status().message(),
              HasSubstr("idempotency_key"));
  EXPECT_EQ(s.client->DescribeGraph("g")->version(), version_);
  auto applied = s.client->UpdateGraph(
      client::MakeUpdateGraphRequest("g", update, "", version_));
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->graph().num_nodes(), 3001u);
}

TEST_F(GraphUpdateE2ETest, NodeFiltersGiveTheSameAnswerInlineAndByName) {
  Server s = StartServer({"--simulated_gpu"});
  ASSERT_NE(s.client, nullptr);
  PutAndUpdate(*s.client, 4);
  pb::SpreadRequest plain = SpreadOf(reference_.num_nodes());
  *plain.mutable_graph() = ToProto(reference_.ToCsr());
  auto unfiltered = s.client->Spread(plain);
  ASSERT_TRUE(unfiltered.ok());

  pb::SpreadRequest filtered = plain;
  // Every other seed is admitted.
  uint32_t ignored = 0;
  for (int i = 0; i < plain.seeds_size(); ++i) {
    if (i % 2 == 0) {
      filtered.mutable_seed_nodes()->add_nodes(plain.seeds(i).node());
    } else {
      ++ignored;  // the seeds' nodes are distinct
    }
  }
  for (uint32_t v = 0; v < reference_.num_nodes(); v += 3) {
    filtered.mutable_result_nodes()->add_nodes(v);
  }
  pb::SpreadRequest by_name = filtered;
  by_name.clear_graph();
  by_name.set_graph_name("g");
  for (const pb::Placement placement :
       {pb::PLACEMENT_CPU_ONLY, pb::PLACEMENT_GPU_ONLY}) {
    filtered.set_placement(placement);
    by_name.set_placement(placement);
    auto a = s.client->Spread(filtered);
    auto b = s.client->Spread(by_name);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->seeds_ignored(), ignored);
    EXPECT_EQ(b->seeds_ignored(), ignored);
    ASSERT_EQ(a->activation_size(), b->activation_size());
    bool reached_a_result = false;
    for (int i = 0; i < a->activation_size(); ++i) {
      ASSERT_EQ(a->activation(i), b->activation(i)) << i;
      if (i % 3 != 0) {
        ASSERT_EQ(a->activation(i), 0.0f) << i;
      }
      reached_a_result = reached_a_result || a->activation(i) > 0;
    }
    EXPECT_TRUE(reached_a_result);

    filtered.set_top_k(4);
    by_name.set_top_k(4);
    auto top_a = s.client->Spread(filtered);
    auto top_b = s.client->Spread(by_name);
    ASSERT_TRUE(top_a.ok() && top_b.ok());
    ASSERT_EQ(top_a->top_nodes_size(), 4);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(top_a->top_nodes(i) % 3, 0u);
      EXPECT_EQ(top_a->top_nodes(i), top_b->top_nodes(i));
      EXPECT_EQ(top_a->top_activation(i), top_b->top_activation(i));
    }
    filtered.set_top_k(0);
    by_name.set_top_k(0);
  }
  by_name.mutable_result_nodes()->add_nodes(reference_.num_nodes());
  auto bad = s.client->Spread(by_name);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("result_nodes.nodes["));
}

TEST_F(GraphUpdateE2ETest, AcknowledgedUpdatesSurviveSigkill) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/graph_update_e2e_", getpid());
  ASSERT_EQ(std::system(absl::StrCat("rm -rf '", dir, "'").c_str()), 0);
  {
    Server s = StartServer({"--data_dir=" + dir});
    ASSERT_NE(s.client, nullptr);
    PutAndUpdate(*s.client, 8);
    s.process->Signal(SIGKILL);
    ASSERT_TRUE(
        s.process->WaitForExit(testing::Scaled(absl::Seconds(10))).ok());
  }
  Server s = StartServer({"--data_dir=" + dir});
  ASSERT_NE(s.client, nullptr);
  auto info = s.client->DescribeGraph("g");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), version_);
  ExpectSpreadsAsTheReference(*s.client, pb::PLACEMENT_CPU_ONLY);
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

}  // namespace
}  // namespace engram
