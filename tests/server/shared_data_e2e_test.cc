// End-to-end tests of shared mode: three engram-server processes on one
// data directory and one real etcd (started by the test on loopback), as
// the Kubernetes overlays run them. What a client wrote at one replica is
// read at the others with min_version, concurrent writes at two replicas
// add up, etcd going away stops writes but not reads, and a restart of
// every replica brings everything back. Row changes and graph edits made
// at one replica are searched and spread at the others as the writer
// answers them.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/server/etcd_process.h"
#include "tests/server/server_process.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

constexpr uint32_t kDim = 16;

struct Replica {
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::SimilarityClient> client;
};

client::FloatMatrix Random(size_t rows, size_t cols, uint64_t seed) {
  client::FloatMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.values = testing::RandomMatrix(rows, cols, seed);
  return m;
}

// Row `r` of `m` as a one-query search of `name` for its best match.
pb::SearchCollectionRequest FindRow(const std::string& name,
                                    const client::FloatMatrix& m, size_t r,
                                    uint64_t min_version) {
  client::FloatMatrix row;
  row.rows = 1;
  row.cols = m.cols;
  row.values.assign(m.values.begin() + r * m.cols,
                    m.values.begin() + (r + 1) * m.cols);
  pb::SearchCollectionRequest request;
  request.set_collection(name);
  *request.mutable_queries() = *client::MakeMatrix(row);
  request.set_top_k(1);
  request.set_min_version(min_version);
  return request;
}

// A search's answer without what depends on the pass it ran in, for
// comparing replicas.
std::string Answer(pb::SearchCollectionResponse response) {
  response.clear_report();
  response.clear_batch_queries();
  response.clear_batch_requests();
  response.clear_queue_seconds();
  return response.SerializeAsString();
}

class SharedDataE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = absl::StrCat(
        ::testing::TempDir(), "/shared_e2e_", getpid(), "_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(std::system(absl::StrCat("rm -rf '", data_dir_, "'").c_str()), 0);
    etcd_ = testing::EtcdProcess::Start();
    ASSERT_NE(etcd_, nullptr);
    for (int i = 0; i < 3; ++i) {
      replicas_.push_back(StartReplica());
      ASSERT_NE(replicas_.back().client, nullptr);
    }
  }
  void TearDown() override {
    replicas_.clear();
    etcd_.reset();
    std::system(absl::StrCat("rm -rf '", data_dir_, "'").c_str());
  }

  Replica StartReplica() {
    Replica r;
    auto process = testing::ServerProcess::Start(
        ENGRAM_SERVER_BINARY,
        {"--data_dir=" + data_dir_,
         absl::StrCat("--catalog=etcd://", etcd_->endpoint(), "/engram-e2e"),
         "--min_version_wait=" +
             absl::FormatDuration(testing::Scaled(absl::Seconds(2))),
         "--resident_memory_bytes=268435456", "--worker_threads=2",
         "--log_level=warning"});
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return r;
    r.process = *std::move(process);
    client::SimilarityClient::Options options;
    options.target = r.process->grpc_target();
    options.timeout = testing::Scaled(absl::Seconds(30));
    auto created = client::SimilarityClient::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) r.client = *std::move(created);
    return r;
  }

  client::SimilarityClient& at(int i) { return *replicas_[i].client; }

  // Uploads with a key, resending on ABORTED (another replica committed
  // first) and UNAVAILABLE, as a client with a retry loop does.
  absl::StatusOr<pb::UploadCollectionResponse> UploadRetrying(
      int replica, client::UploadOptions options,
      const client::FloatMatrix& rows, const std::vector<uint64_t>& ids) {
    const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(60));
    while (true) {
      auto done = at(replica).UploadCollection(options, rows, ids);
      if (done.ok() || absl::Now() > give_up) return done;
      if (!absl::IsAborted(done.status()) &&
          !absl::IsUnavailable(done.status())) {
        return done;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // Waits until every replica serves `name` at `version` or later: a write
  // to a replica that has not loaded the name yet would answer NOT_FOUND.
  void WaitEverywhere(const std::string& name, uint64_t version) {
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<pb::CollectionInfo> info;
      const absl::Time give_up =
          absl::Now() + testing::Scaled(absl::Seconds(20));
      do {
        info = at(i).DescribeCollection(name, version);
      } while (absl::IsUnavailable(info.status()) && absl::Now() < give_up);
      ASSERT_TRUE(info.ok()) << "replica " << i << ": " << info.status();
    }
  }

  std::string data_dir_;
  std::unique_ptr<testing::EtcdProcess> etcd_;
  std::vector<Replica> replicas_;
};

TEST_F(SharedDataE2ETest, AnUploadAtOneReplicaIsSearchableAtEveryOther) {
  const client::FloatMatrix rows = Random(300, kDim, 1);
  std::vector<uint64_t> ids(rows.rows);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 1000 + 3 * i;
  client::UploadOptions upload;
  upload.name = "docs";
  auto created = at(0).UploadCollection(upload, rows, ids);
  ASSERT_TRUE(created.ok()) << created.status();
  const uint64_t version = created->collection().version();

  const client::FloatMatrix queries = Random(5, kDim, 2);
  pb::SearchCollectionRequest search;
  search.set_collection("docs");
  *search.mutable_queries() = *client::MakeMatrix(queries);
  search.set_top_k(10);
  search.set_min_version(version);
  std::vector<std::string> answers;
  for (int i = 0; i < 3; ++i) {
    auto found = at(i).SearchCollection(search);
    ASSERT_TRUE(found.ok()) << "replica " << i << ": " << found.status();
    EXPECT_EQ(found->collection_version(), version);
    answers.push_back(Answer(*found));
  }
  EXPECT_EQ(answers[1], answers[0]);
  EXPECT_EQ(answers[2], answers[0]);

  // A version nobody has: UNAVAILABLE naming min_version, with a retry
  // hint for the client's retry policy.
  grpc::ClientContext context;
  search.set_min_version(version + 5);
  pb::SearchCollectionResponse response;
  const grpc::Status behind =
      at(1).stub().SearchCollection(&context, search, &response);
  EXPECT_EQ(behind.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(behind.error_message(), HasSubstr("min_version"));
  EXPECT_EQ(context.GetServerTrailingMetadata().count("grpc-retry-pushback-ms"),
            1u);

  pb::DescribeCollectionRequest describe;
  describe.set_name("docs");
  describe.set_min_version(version);
  grpc::ClientContext describe_context;
  pb::CollectionInfo info;
  ASSERT_TRUE(
      at(2).stub().DescribeCollection(&describe_context, describe, &info).ok());
  EXPECT_EQ(info.count(), rows.rows);
  EXPECT_EQ(info.version(), version);
}

TEST_F(SharedDataE2ETest, ConcurrentAppendsAtTwoReplicasAddUp) {
  pb::CreateCollectionRequest create;
  create.set_name("docs");
  create.set_dimension(kDim);
  ASSERT_TRUE(at(0).CreateCollection(create).ok());
  WaitEverywhere("docs", 1);
  constexpr int kAppends = 12;
  constexpr size_t kRows = 20;
  std::vector<client::FloatMatrix> batches;
  for (int i = 0; i < 2 * kAppends; ++i)
    batches.push_back(Random(kRows, kDim, 10 + i));
  auto writer = [&](int replica, int first) {
    for (int i = first; i < first + kAppends; ++i) {
      client::UploadOptions append;
      append.name = "docs";
      append.create = false;
      append.idempotency_key = absl::StrCat("batch-", i);
      std::vector<uint64_t> ids(kRows);
      for (size_t r = 0; r < kRows; ++r) ids[r] = i * 1000 + r;
      auto done = UploadRetrying(replica, append, batches[i], ids);
      EXPECT_TRUE(done.ok()) << done.status();
    }
  };
  std::thread a(writer, 0, 0), b(writer, 1, kAppends);
  a.join();
  b.join();
  const uint64_t final_version = 1 + 2 * kAppends;
  for (int replica = 0; replica < 3; ++replica) {
    // Every row findable at every replica, at its own id.
    for (int i = 0; i < 2 * kAppends; ++i) {
      for (size_t r = 0; r < kRows; r += 7) {
        auto found = at(replica).SearchCollection(
            FindRow("docs", batches[i], r, final_version));
        ASSERT_TRUE(found.ok()) << found.status();
        ASSERT_EQ(found->results(0).ids(0), i * 1000 + r);
      }
    }
    auto info = at(replica).DescribeCollection("docs");
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->count(), 2 * kAppends * kRows);
    EXPECT_EQ(info->version(), final_version);
  }
}

TEST_F(SharedDataE2ETest, ADeleteAtOneReplicaIsGoneEverywhere) {
  client::UploadOptions upload;
  upload.name = "docs";
  auto created = at(0).UploadCollection(upload, Random(10, kDim, 1));
  ASSERT_TRUE(created.ok());
  pb::Graph graph;
  graph.set_num_nodes(2);
  graph.add_row_offsets(0);
  graph.add_row_offsets(1);
  graph.add_row_offsets(1);
  graph.add_targets(1);
  graph.add_weights(0.5f);
  ASSERT_TRUE(at(0).PutGraph("links", graph).ok());
  auto search =
      FindRow("docs", Random(1, kDim, 5), 0, created->collection().version());
  ASSERT_TRUE(at(2).SearchCollection(search).ok());
  ASSERT_TRUE(at(2).DeleteCollection("docs").ok());
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(10));
  for (int i = 0; i < 3; ++i) {
    while (at(i).DescribeCollection("docs").ok() ||
           !at(i).DescribeGraph("links").ok()) {
      ASSERT_LT(absl::Now(), give_up) << "replica " << i;
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(at(i).DescribeCollection("docs").status().code(),
              absl::StatusCode::kNotFound);
  }
  ASSERT_TRUE(at(1).DeleteGraph("links").ok());
  for (int i = 0; i < 3; ++i) {
    while (at(i).DescribeGraph("links").ok()) {
      ASSERT_LT(absl::Now(), give_up) << "replica " << i;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
}

// A CSR graph in the API's form.
pb::Graph ToProto(const testing::RandomCsrGraph& g) {
  pb::Graph graph;
  graph.set_num_nodes(g.num_nodes);
  graph.mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  graph.mutable_targets()->Add(g.targets.begin(), g.targets.end());
  graph.mutable_weights()->Add(g.weights.begin(), g.weights.end());
  return graph;
}

TEST_F(SharedDataE2ETest, AGraphPutAtOneReplicaSpreadsAtEveryOther) {
  const testing::RandomCsrGraph g = testing::RandomGraph(500, 4, 3);
  auto put = at(0).PutGraph("links", ToProto(g));
  ASSERT_TRUE(put.ok()) << put.status();
  const uint64_t version = put->version();
  ASSERT_GT(version, 0u);

  pb::SpreadRequest spread;
  spread.set_graph_name("links");
  spread.set_min_version(version);
  auto* seed = spread.add_seeds();
  seed->set_node(7);
  seed->set_activation(1.0f);
  spread.mutable_params()->set_max_hops(4);
  pb::SpreadRequest inline_spread = spread;
  inline_spread.clear_graph_name();
  inline_spread.clear_min_version();
  *inline_spread.mutable_graph() = ToProto(g);
  auto expected = at(0).Spread(inline_spread);
  ASSERT_TRUE(expected.ok()) << expected.status();
  for (int i = 0; i < 3; ++i) {
    // At once after the put: the replicas behind wait for the version.
    auto spread_at = at(i).Spread(spread);
    ASSERT_TRUE(spread_at.ok())
        << "replica " << i << ": " << spread_at.status();
    EXPECT_EQ(spread_at->graph_version(), version);
    ASSERT_EQ(spread_at->activation_size(), expected->activation_size());
    for (int n = 0; n < expected->activation_size(); ++n) {
      ASSERT_EQ(spread_at->activation(n), expected->activation(n)) << n;
    }
    auto info = at(i).DescribeGraph("links", version);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->version(), version);
  }

  // A version nobody has: UNAVAILABLE naming min_version, with the retry
  // hint, for Spread and DescribeGraph alike.
  {
    grpc::ClientContext context;
    pb::SpreadRequest ahead = spread;
    ahead.set_min_version(version + 1000);
    pb::SpreadResponse response;
    const grpc::Status behind = at(1).stub().Spread(&context, ahead, &response);
    EXPECT_EQ(behind.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(behind.error_message(), HasSubstr("min_version"));
    EXPECT_EQ(
        context.GetServerTrailingMetadata().count("grpc-retry-pushback-ms"),
        1u);
  }
  {
    grpc::ClientContext context;
    pb::DescribeGraphRequest ahead;
    ahead.set_name("links");
    ahead.set_min_version(version + 1000);
    pb::GraphInfo response;
    const grpc::Status behind =
        at(2).stub().DescribeGraph(&context, ahead, &response);
    EXPECT_EQ(behind.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(
        context.GetServerTrailingMetadata().count("grpc-retry-pushback-ms"),
        1u);
  }

  // Replaced elsewhere (delete, then a put of another graph): a larger
  // version, and a spread that asks for it never runs on the old graph.
  ASSERT_TRUE(at(1).DeleteGraph("links").ok());
  // The put's replica must have seen the delete, or the name is still taken
  // there.
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(10));
  while (at(2).DescribeGraph("links").ok()) {
    ASSERT_LT(absl::Now(), give_up);
    absl::SleepFor(absl::Milliseconds(20));
  }
  const testing::RandomCsrGraph replacement = testing::RandomGraph(80, 3, 4);
  auto again = at(2).PutGraph("links", ToProto(replacement));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_GT(again->version(), version);
  spread.set_min_version(again->version());
  for (int i = 0; i < 3; ++i) {
    auto spread_at = at(i).Spread(spread);
    ASSERT_TRUE(spread_at.ok())
        << "replica " << i << ": " << spread_at.status();
    EXPECT_EQ(spread_at->graph_version(), again->version());
    EXPECT_EQ(spread_at->activation_size(), 80);
  }
}

// Labels tagging row `id` with its parity ("half" = 0 or 1).
pb::RowLabels ParityLabel(uint64_t id) {
  pb::RowLabels labels;
  pb::Tag* tag = labels.add_tags();
  tag->set_key("half");
  tag->set_integer(static_cast<int64_t>(id % 2));
  return labels;
}

TEST_F(SharedDataE2ETest, RowChangesAtOneReplicaAreSearchedAtEveryOther) {
  // 200 rows with ids 0..199 at replica 0; replica 1 replaces ids 0..49
  // and adds 200..219; replica 2 deletes ids 100..149 and two it never
  // held. Each change waits for the one before it (expected_version), as
  // a client writing one memory at a time does.
  const client::FloatMatrix base = Random(200, kDim, 31);
  std::vector<uint64_t> ids(200);
  std::vector<pb::RowLabels> labels;
  for (uint64_t i = 0; i < 200; ++i) {
    ids[i] = i;
    labels.push_back(ParityLabel(i));
  }
  client::UploadOptions upload;
  upload.name = "memories";
  auto created = at(0).UploadCollection(upload, base, ids, labels);
  ASSERT_TRUE(created.ok()) << created.status();
  WaitEverywhere("memories", created->collection().version());

  const client::FloatMatrix changed = Random(70, kDim, 32);
  std::vector<uint64_t> changed_ids;
  std::vector<pb::RowLabels> changed_labels;
  for (uint64_t i = 0; i < 50; ++i) changed_ids.push_back(i);
  for (uint64_t i = 200; i < 220; ++i) changed_ids.push_back(i);
  for (const uint64_t id : changed_ids)
    changed_labels.push_back(ParityLabel(id));
  auto upsert = client::MakeUpsertRowsRequest("memories", changed, changed_ids,
                                              changed_labels);
  ASSERT_TRUE(upsert.ok()) << upsert.status();
  upsert->set_expected_version(created->collection().version());
  auto upserted = at(1).UpsertRows(*upsert);
  ASSERT_TRUE(upserted.ok()) << upserted.status();
  EXPECT_EQ(upserted->replaced(), 50u);
  EXPECT_EQ(upserted->inserted(), 20u);

  std::vector<uint64_t> doomed = {5000, 5001};
  for (uint64_t i = 100; i < 150; ++i) doomed.push_back(i);
  pb::DeleteRowsRequest remove =
      client::MakeDeleteRowsRequest("memories", doomed);
  remove.set_expected_version(upserted->collection().version());
  // Replica 2 may not have loaded the upsert yet: it answers ABORTED until
  // it has, and the client resends.
  absl::StatusOr<pb::DeleteRowsResponse> removed;
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(20));
  do {
    removed = at(2).DeleteRows(remove);
  } while ((absl::IsAborted(removed.status()) ||
            absl::IsUnavailable(removed.status())) &&
           absl::Now() < give_up);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->deleted(), 50u);
  EXPECT_EQ(removed->not_found(), 2u);
  const uint64_t version = removed->collection().version();

  // What each id should find: its own vector, the latest one written.
  std::map<uint64_t, std::vector<float>> live;
  for (uint64_t i = 0; i < 200; ++i) {
    live[i].assign(base.values.begin() + i * kDim,
                   base.values.begin() + (i + 1) * kDim);
  }
  for (size_t r = 0; r < changed_ids.size(); ++r) {
    live[changed_ids[r]].assign(changed.values.begin() + r * kDim,
                                changed.values.begin() + (r + 1) * kDim);
  }
  for (uint64_t i = 100; i < 150; ++i) live.erase(i);

  std::vector<std::string> answers;
  for (int replica = 0; replica < 3; ++replica) {
    auto info = at(replica).DescribeCollection("memories", version);
    ASSERT_TRUE(info.ok()) << "replica " << replica << ": " << info.status();
    EXPECT_EQ(info->version(), version);
    EXPECT_EQ(info->count(), live.size());
    // Every live row finds itself; every query is searched as of `version`.
    for (const auto& [id, values] : live) {
      if (id % 9 != 0) continue;
      client::FloatMatrix row{1, kDim, values};
      auto found =
          at(replica).SearchCollection(FindRow("memories", row, 0, version));
      ASSERT_TRUE(found.ok()) << found.status();
      EXPECT_EQ(found->collection_version(), version);
      ASSERT_EQ(found->results(0).ids(0), id) << "replica " << replica;
    }
    // A filter on the labels: only odd ids, never a deleted one, and the
    // same answer at every replica.
    pb::SearchCollectionRequest filtered;
    filtered.set_collection("memories");
    *filtered.mutable_queries() = *client::MakeMatrix(Random(3, kDim, 33));
    filtered.set_top_k(300);
    filtered.set_min_version(version);
    pb::TagMatch* match =
        filtered.mutable_filter()->mutable_where()->mutable_tag();
    match->set_key("half");
    match->add_values()->set_integer(1);
    auto found = at(replica).SearchCollection(filtered);
    ASSERT_TRUE(found.ok()) << found.status();
    size_t odd_live = 0;
    for (const auto& [id, values] : live) odd_live += id % 2;
    for (const pb::CollectionHits& hits : found->results()) {
      ASSERT_EQ(static_cast<size_t>(hits.ids_size()), odd_live);
      for (const uint64_t id : hits.ids()) {
        EXPECT_EQ(id % 2, 1u);
        EXPECT_TRUE(live.count(id)) << id;
      }
    }
    answers.push_back(Answer(*found));
  }
  EXPECT_EQ(answers[1], answers[0]);
  EXPECT_EQ(answers[2], answers[0]);
}

TEST_F(SharedDataE2ETest, GraphEditsAtOneReplicaSpreadAtEveryOther) {
  const testing::RandomCsrGraph g = testing::RandomGraph(600, 4, 41);
  auto put = at(0).PutGraph("links", ToProto(g));
  ASSERT_TRUE(put.ok()) << put.status();
  uint64_t version = put->version();
  // A replica that has not loaded the graph yet answers a change NOT_FOUND,
  // as for collections (WaitEverywhere).
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<pb::GraphInfo> info;
    const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(20));
    do {
      info = at(i).DescribeGraph("links", version);
    } while ((absl::IsUnavailable(info.status()) ||
              absl::IsNotFound(info.status())) &&
             absl::Now() < give_up);
    ASSERT_TRUE(info.ok()) << "replica " << i << ": " << info.status();
  }
  testing::EdgeListGraph reference(g.view());
  std::mt19937_64 rng(42);
  // Edits of every kind, each at the next replica, each waiting for the
  // one before (a replica that has not loaded it answers ABORTED).
  for (int i = 0; i < 10; ++i) {
    const collections::GraphEdit edit = testing::RandomGraphEdit(
        reference, static_cast<testing::GraphEditKind>(i % 5), 12, rng);
    reference.Apply(edit);
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
    const pb::UpdateGraphRequest request = client::MakeUpdateGraphRequest(
        "links", update, absl::StrCat("edit-", i), version);
    absl::StatusOr<pb::UpdateGraphResponse> updated;
    const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(20));
    do {
      updated = at(i % 3).UpdateGraph(request);
    } while ((absl::IsAborted(updated.status()) ||
              absl::IsUnavailable(updated.status())) &&
             absl::Now() < give_up);
    ASSERT_TRUE(updated.ok()) << "edit " << i << ": " << updated.status();
    EXPECT_GT(updated->graph().version(), version);
    version = updated->graph().version();
    EXPECT_EQ(updated->graph().num_edges(), reference.num_edges());
  }

  pb::SpreadRequest inline_spread;
  for (uint32_t v = 3; v < reference.num_nodes(); v += 97) {
    pb::Seed* seed = inline_spread.add_seeds();
    seed->set_node(v);
    seed->set_activation(1.0f);
  }
  inline_spread.mutable_params()->set_max_hops(5);
  *inline_spread.mutable_graph() = ToProto(reference.ToCsr());
  auto expected = at(0).Spread(inline_spread);
  ASSERT_TRUE(expected.ok()) << expected.status();
  pb::SpreadRequest named = inline_spread;
  named.clear_graph();
  named.set_graph_name("links");
  named.set_min_version(version);
  for (int i = 0; i < 3; ++i) {
    auto spread_at = at(i).Spread(named);
    ASSERT_TRUE(spread_at.ok())
        << "replica " << i << ": " << spread_at.status();
    EXPECT_EQ(spread_at->graph_version(), version);
    ASSERT_EQ(spread_at->activation_size(), expected->activation_size());
    for (int n = 0; n < expected->activation_size(); ++n) {
      ASSERT_EQ(spread_at->activation(n), expected->activation(n))
          << "replica " << i << " node " << n;
    }
  }
}

TEST_F(SharedDataE2ETest, WithoutEtcdReadsAnswerAndWritesAreUnavailable) {
  client::UploadOptions upload;
  upload.name = "docs";
  const client::FloatMatrix rows = Random(50, kDim, 1);
  auto created = at(0).UploadCollection(upload, rows);
  ASSERT_TRUE(created.ok());
  const uint64_t v1 = created->collection().version();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(at(i).SearchCollection(FindRow("docs", rows, 3, v1)).ok());
  }
  const int port = etcd_->client_port();
  etcd_->Kill();
  upload.create = false;
  upload.idempotency_key = "while-etcd-is-down";
  auto refused = at(1).UploadCollection(upload, rows);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  for (int i = 0; i < 3; ++i) {
    auto found = at(i).SearchCollection(FindRow("docs", rows, 3, v1));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->results(0).ids(0), 3u);
    EXPECT_EQ(at(i).Health("").value_or(
                  grpc::health::v1::HealthCheckResponse::UNKNOWN),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(20));
  while (true) {
    auto stats = at(2).GetStats();
    ASSERT_TRUE(stats.ok());
    if (stats->has_catalog() && !stats->catalog().connected()) break;
    ASSERT_LT(absl::Now(), give_up) << stats->catalog().DebugString();
    absl::SleepFor(absl::Milliseconds(50));
  }

  ASSERT_TRUE(etcd_->Restart(port));
  auto appended = UploadRetrying(1, upload, rows, {});
  ASSERT_TRUE(appended.ok()) << appended.status();
  const uint64_t v2 = appended->collection().version();
  EXPECT_GT(v2, v1);
  for (int i = 0; i < 3; ++i) {
    auto info = at(i).DescribeCollection("docs");
    pb::DescribeCollectionRequest describe;
    describe.set_name("docs");
    describe.set_min_version(v2);
    pb::CollectionInfo at_v2;
    grpc::Status status;
    do {
      grpc::ClientContext context;
      status = at(i).stub().DescribeCollection(&context, describe, &at_v2);
    } while (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
             absl::Now() < give_up + testing::Scaled(absl::Seconds(20)));
    ASSERT_TRUE(status.ok())
        << "replica " << i << ": " << status.error_message();
    EXPECT_EQ(at_v2.count(), 2 * rows.rows);
  }
  auto stats = at(2).GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats->catalog().connected());
}

TEST_F(SharedDataE2ETest, RestartingEveryReplicaBringsEverythingBack) {
  client::UploadOptions upload;
  upload.name = "docs";
  const client::FloatMatrix rows = Random(64, kDim, 1);
  ASSERT_TRUE(at(0).UploadCollection(upload, rows).ok());
  WaitEverywhere("docs", 1);
  upload.create = false;
  auto appended = UploadRetrying(1, upload, Random(16, kDim, 2), {});
  ASSERT_TRUE(appended.ok()) << appended.status();
  replicas_.clear();
  for (int i = 0; i < 3; ++i) {
    replicas_.push_back(StartReplica());
    ASSERT_NE(replicas_.back().client, nullptr);
  }
  for (int i = 0; i < 3; ++i) {
    auto info = at(i).DescribeCollection("docs");
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->count(), 80u);
    EXPECT_EQ(info->version(), 2u);
  }
}

// Writers and searchers spread over the replicas for a bounded time: a
// search that names the version a write answered with finds every row of
// it, wherever it lands.
TEST_F(SharedDataE2ETest, AMixedRunLosesNothingAndReadsItsWrites) {
  pb::CreateCollectionRequest create;
  create.set_name("docs");
  create.set_dimension(kDim);
  ASSERT_TRUE(at(0).CreateCollection(create).ok());
  WaitEverywhere("docs", 1);
  const absl::Duration run = absl::Seconds(30);
  const absl::Time stop = absl::Now() + run;
  std::atomic<int> not_found{0}, wrong{0}, failed{0}, writes{0}, reads{0};
  absl::Mutex mu;
  std::vector<std::pair<client::FloatMatrix, uint64_t>> written;  // first id
  auto writer = [&](int w) {
    for (int i = 0; absl::Now() < stop; ++i) {
      const uint64_t first_id = (uint64_t{1} + w) * 1000000 + i * 100;
      const client::FloatMatrix rows = Random(8, kDim, first_id);
      std::vector<uint64_t> ids(rows.rows);
      for (size_t r = 0; r < ids.size(); ++r) ids[r] = first_id + r;
      client::UploadOptions append;
      append.name = "docs";
      append.create = false;
      append.idempotency_key = absl::StrCat("w", w, "-", i);
      auto done = UploadRetrying((w + i) % 3, append, rows, ids);
      if (!done.ok()) {
        ++failed;
        continue;
      }
      ++writes;
      const uint64_t version = done->collection().version();
      // Read it back at another replica, at once.
      const int reader = (w + i + 1) % 3;
      for (size_t r = 0; r < rows.rows; r += 3) {
        auto found =
            at(reader).SearchCollection(FindRow("docs", rows, r, version));
        if (absl::IsNotFound(found.status())) {
          ++not_found;
        } else if (!found.ok()) {
          // UNAVAILABLE after --min_version_wait: the client retries.
          found = at((reader + 1) % 3)
                      .SearchCollection(FindRow("docs", rows, r, version));
          if (!found.ok()) ++failed;
        }
        if (found.ok()) {
          ++reads;
          if (found->results(0).ids(0) != first_id + r) ++wrong;
        }
      }
      absl::MutexLock lock(&mu);
      written.emplace_back(rows, first_id);
    }
  };
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) writers.emplace_back(writer, w);
  for (auto& t : writers) t.join();
  EXPECT_EQ(not_found.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(writes.load(), 3);
  // No row lost: every replica holds all of them, at the final version.
  const uint64_t final_version = 1 + writes.load();
  for (int i = 0; i < 3; ++i) {
    pb::DescribeCollectionRequest describe;
    describe.set_name("docs");
    describe.set_min_version(final_version);
    grpc::ClientContext context;
    pb::CollectionInfo info;
    ASSERT_TRUE(
        at(i).stub().DescribeCollection(&context, describe, &info).ok());
    EXPECT_EQ(info.count(), 8u * writes.load());
  }
  // Each batch's rows found at one of the replicas, in turn.
  for (size_t j = 0; j < written.size(); ++j) {
    const auto& [rows, first_id] = written[j];
    auto found = at(static_cast<int>(j % 3))
                     .SearchCollection(FindRow("docs", rows, 5, final_version));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->results(0).ids(0), first_id + 5);
  }
  RecordProperty("writes", writes.load());
  RecordProperty("reads", reads.load());
  std::printf("mixed run: %d writes, %d reads at another replica\n",
              writes.load(), reads.load());
}

// A replica that cannot reach etcd at start-up waits for it (health not
// SERVING), and a stop signal meanwhile ends it at once, as a rollout or a
// scale-in would send it.
TEST(SharedModeStartUpTest, AReplicaWaitingForEtcdStopsOnSigterm) {
  auto dead = testing::PickFreePort();
  ASSERT_TRUE(dead.ok());
  const std::string data_dir =
      absl::StrCat(::testing::TempDir(), "/shared_e2e_wait_", getpid());
  testing::ServerProcess::Options options;
  options.wait_until_ready = false;
  auto process = testing::ServerProcess::Start(
      ENGRAM_SERVER_BINARY,
      {"--data_dir=" + data_dir,
       absl::StrCat("--catalog=etcd://127.0.0.1:", *dead, "/engram-e2e"),
       "--log_level=warning"},
      options);
  ASSERT_TRUE(process.ok()) << process.status();
  // Still waiting for the catalog: no ready file.
  EXPECT_FALSE(
      (*process)->WaitUntilReady(testing::Scaled(absl::Seconds(2))).ok());
  (*process)->Signal(SIGTERM);
  auto code = (*process)->WaitForExit(testing::Scaled(absl::Seconds(10)));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  std::system(absl::StrCat("rm -rf '", data_dir, "'").c_str());
}

}  // namespace
}  // namespace engram
