// End-to-end tests of resident collections and graphs: the real
// engram-server binary called through the client library and the generated
// stub, results checked against the float64 references of tests/testing and
// the inline RPCs.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/npy.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"
#include "core/collections/memory_budget.h"
#include "core/collections/snapshot.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

struct Server {
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::SimilarityClient> client;
};

Server StartServer(std::vector<std::string> flags,
                   const std::string& stderr_path = "") {
  flags.push_back("--worker_threads=2");
  if (stderr_path.empty()) flags.push_back("--log_level=warning");
  testing::ServerProcess::Options options;
  options.stderr_path = stderr_path;
  Server s;
  auto process =
      testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags, options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return s;
  s.process = *std::move(process);
  client::SimilarityClient::Options client_options;
  client_options.target = s.process->grpc_target();
  client_options.timeout = testing::Scaled(absl::Seconds(30));
  auto created = client::SimilarityClient::Create(client_options);
  EXPECT_TRUE(created.ok()) << created.status();
  if (created.ok()) s.client = *std::move(created);
  return s;
}

client::FloatMatrix Random(size_t rows, size_t cols, uint64_t seed) {
  client::FloatMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.values = testing::RandomMatrix(rows, cols, seed);
  return m;
}

pb::Matrix ToMatrix(const client::FloatMatrix& m) {
  auto matrix = client::MakeMatrix(m);
  EXPECT_TRUE(matrix.ok()) << matrix.status();
  return *matrix;
}

pb::SearchCollectionRequest Search(const std::string& name,
                                   const client::FloatMatrix& queries,
                                   uint32_t top_k) {
  pb::SearchCollectionRequest request;
  request.set_collection(name);
  *request.mutable_queries() = ToMatrix(queries);
  request.set_top_k(top_k);
  return request;
}

std::string Scrape(const Server& s) {
  auto body = testing::HttpGet(s.process->metrics_port(), "/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? *body : "";
}

double Metric(const Server& s, const std::string& name,
              const testing::MetricLabels& labels = {}) {
  return testing::SampleValue(Scrape(s), name, labels).value_or(-1);
}

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/resident_e2e_", getpid(), "_",
                      name);
}

// Checks every top-k list of `response` against the float64 reference over
// `targets`, mapping rows to the stored ids `ids` (empty: row numbers).
void ExpectTopKMatchesReference(const pb::SearchCollectionResponse& response,
                                const client::FloatMatrix& queries,
                                const client::FloatMatrix& targets,
                                const std::vector<uint64_t>& ids, size_t k) {
  const auto expected = testing::ReferenceTopK(
      testing::ReferenceCosine(queries.values.data(), queries.rows,
                               targets.values.data(), targets.rows,
                               targets.cols),
      queries.rows, targets.rows, k, -2.0f);
  ASSERT_EQ(response.results_size(), static_cast<int>(queries.rows));
  for (size_t q = 0; q < queries.rows; ++q) {
    const pb::CollectionHits& hits = response.results(q);
    ASSERT_EQ(hits.ids_size(), static_cast<int>(expected[q].size()));
    for (size_t j = 0; j < expected[q].size(); ++j) {
      const uint32_t row = expected[q][j].first;
      EXPECT_EQ(hits.rows(j), row) << q << "," << j;
      EXPECT_EQ(hits.ids(j), ids.empty() ? row : ids[row]) << q << "," << j;
      EXPECT_NEAR(hits.scores(j), expected[q][j].second, 1e-5);
    }
  }
}

class ResidentE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new Server(StartServer({"--resident_memory_bytes=67108864"}));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static client::SimilarityClient& client() { return *server_->client; }
  static Server* server_;
};

Server* ResidentE2ETest::server_ = nullptr;

TEST_F(ResidentE2ETest, CollectionLifecycleAndErrorCodes) {
  pb::CreateCollectionRequest create;
  create.set_name("life");
  create.set_dimension(8);
  (*create.mutable_metadata())["owner"] = "tests";
  auto created = client().CreateCollection(create);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->count(), 0u);
  EXPECT_EQ(created->dimension(), 8u);
  EXPECT_EQ(created->metadata().at("owner"), "tests");
  EXPECT_EQ(created->residency(), "host");
  EXPECT_EQ(created->load_state(), "ready");

  EXPECT_EQ(client().CreateCollection(create).status().code(),
            absl::StatusCode::kAlreadyExists);
  create.set_name("bad name");
  EXPECT_EQ(client().CreateCollection(create).status().code(),
            absl::StatusCode::kInvalidArgument);
  create.set_name("zero");
  create.set_dimension(0);
  EXPECT_EQ(client().CreateCollection(create).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto list = client().ListCollections();
  ASSERT_TRUE(list.ok()) << list.status();
  bool listed = false;
  for (const auto& c : list->collections()) listed |= c.name() == "life";
  EXPECT_TRUE(listed);

  // Appending: rows of the wrong dimension are refused, the right ones land.
  client::UploadOptions append;
  append.name = "life";
  append.create = false;
  auto wrong = client().UploadCollection(append, Random(4, 9, 1));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("dimension"));
  auto appended = client().UploadCollection(append, Random(4, 8, 1));
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->collection().count(), 4u);
  EXPECT_EQ(appended->collection().version(), 2u);

  auto described = client().DescribeCollection("life");
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->count(), 4u);
  EXPECT_GT(described->bytes(), 4u * 8 * sizeof(float));

  // Searches: unknown name, dimension mismatch, missing name.
  EXPECT_EQ(client()
                .SearchCollection(Search("nope", Random(1, 8, 2), 3))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  auto mismatch = client().SearchCollection(Search("life", Random(1, 5, 2), 3));
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("queries.cols"));
  EXPECT_EQ(
      client().SearchCollection(Search("", Random(1, 8, 2), 3)).status().code(),
      absl::StatusCode::kInvalidArgument);

  append.name = "absent";
  EXPECT_EQ(client().UploadCollection(append, Random(4, 8, 1)).status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(client().DeleteCollection("life").ok());
  EXPECT_EQ(client().DeleteCollection("life").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().DescribeCollection("life").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ResidentE2ETest, SearchWithStoredIdsMatchesReferenceAndInlineCosine) {
  const client::FloatMatrix targets = Random(700, 48, 10);
  std::vector<uint64_t> ids(targets.rows);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 1000000007ull * (i + 3);
  client::UploadOptions upload;
  upload.name = "with_ids";
  upload.chunk_rows = 64;  // 11 chunks
  auto uploaded = client().UploadCollection(upload, targets, ids);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  EXPECT_EQ(uploaded->rows_uploaded(), 700u);
  EXPECT_TRUE(uploaded->collection().has_ids());

  const client::FloatMatrix queries = Random(5, 48, 11);
  auto top = client().SearchCollection(Search("with_ids", queries, 9));
  ASSERT_TRUE(top.ok()) << top.status();
  ExpectTopKMatchesReference(*top, queries, targets, ids, 9);

  // The same lists as inline BatchCosine over the same targets.
  auto inline_top = client().BatchCosine(client::MakeCosineRequest(
      ToMatrix(queries), ToMatrix(targets), 9, std::nullopt));
  ASSERT_TRUE(inline_top.ok()) << inline_top.status();
  for (int q = 0; q < top->results_size(); ++q) {
    EXPECT_THAT(top->results(q).rows(),
                ::testing::ElementsAreArray(inline_top->top(q).indices()));
  }

  // min_score drops lower scores.
  pb::SearchCollectionRequest min = Search("with_ids", queries, 50);
  min.set_min_score(0.2f);
  auto filtered = client().SearchCollection(min);
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  for (const auto& hits : filtered->results()) {
    for (float score : hits.scores()) EXPECT_GE(score, 0.2f);
  }

  // top_k = 0: every score, in row order, equal to inline BatchCosine's.
  auto all = client().SearchCollection(Search("with_ids", queries, 0));
  ASSERT_TRUE(all.ok()) << all.status();
  auto inline_all = client().BatchCosine(client::MakeCosineRequest(
      ToMatrix(queries), ToMatrix(targets), 0, std::nullopt));
  ASSERT_TRUE(inline_all.ok()) << inline_all.status();
  ASSERT_EQ(all->scores_size(), inline_all->scores_size());
  for (int i = 0; i < all->scores_size(); ++i) {
    ASSERT_NEAR(all->scores(i), inline_all->scores(i), 1e-6) << i;
  }
  ASSERT_EQ(all->ids_size(), static_cast<int>(ids.size()));
  EXPECT_EQ(all->ids(17), ids[17]);
  ASSERT_TRUE(client().DeleteCollection("with_ids").ok());
}

TEST_F(ResidentE2ETest, AppendedSegmentsSearchAsOneCollection) {
  const client::FloatMatrix first = Random(300, 16, 20);
  const client::FloatMatrix second = Random(200, 16, 21);
  client::UploadOptions upload;
  upload.name = "segments";
  ASSERT_TRUE(client().UploadCollection(upload, first).ok());
  upload.create = false;
  ASSERT_TRUE(client().UploadCollection(upload, second).ok());
  client::FloatMatrix both = first;
  both.rows += second.rows;
  both.values.insert(both.values.end(), second.values.begin(),
                     second.values.end());
  const client::FloatMatrix queries = Random(3, 16, 22);
  auto top = client().SearchCollection(Search("segments", queries, 12));
  ASSERT_TRUE(top.ok()) << top.status();
  ExpectTopKMatchesReference(*top, queries, both, {}, 12);
  auto all = client().SearchCollection(Search("segments", queries, 0));
  ASSERT_TRUE(all.ok()) << all.status();
  const std::vector<double> expected = testing::ReferenceCosine(
      queries.values.data(), 3, both.values.data(), both.rows, 16);
  ASSERT_EQ(all->scores_size(), static_cast<int>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_NEAR(all->scores(i), expected[i], 1e-5) << i;
  }
  ASSERT_TRUE(client().DeleteCollection("segments").ok());
}

TEST_F(ResidentE2ETest, UploadOverBudgetIsRefusedBeforeAllocation) {
  // 64 MiB budget: 100k x 256 floats is about 100 MiB.
  pb::UploadCollectionRequest header;
  header.mutable_header()->set_name("too_big");
  header.mutable_header()->set_create(true);
  header.mutable_header()->set_dimension(256);
  header.mutable_header()->set_total_rows(100000);
  grpc::ClientContext context;
  pb::UploadCollectionResponse response;
  auto writer = client().stub().UploadCollection(&context, &response);
  writer->Write(header);
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("too_big"));
  EXPECT_EQ(Metric(*server_, "engram_resident_memory_budget_bytes",
                   {{"state", "reserved"}}),
            0);
  EXPECT_GE(Metric(*server_, "engram_resident_budget_refusals_total"), 1);
  EXPECT_EQ(client().DescribeCollection("too_big").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ResidentE2ETest, ShortOrMalformedStreamLeavesNothing) {
  // Declares 100 rows, sends 50, closes: refused, nothing visible.
  {
    grpc::ClientContext context;
    pb::UploadCollectionResponse response;
    auto writer = client().stub().UploadCollection(&context, &response);
    pb::UploadCollectionRequest message;
    message.mutable_header()->set_name("short");
    message.mutable_header()->set_create(true);
    message.mutable_header()->set_dimension(4);
    message.mutable_header()->set_total_rows(100);
    ASSERT_TRUE(writer->Write(message));
    message.Clear();
    const client::FloatMatrix rows = Random(50, 4, 3);
    message.mutable_chunk()->mutable_vectors()->Add(rows.values.begin(),
                                                    rows.values.end());
    ASSERT_TRUE(writer->Write(message));
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("50 of 100 rows"));
  }
  // A chunk first: the header is required.
  {
    grpc::ClientContext context;
    pb::UploadCollectionResponse response;
    auto writer = client().stub().UploadCollection(&context, &response);
    pb::UploadCollectionRequest message;
    message.mutable_chunk()->add_vectors(1.0f);
    writer->Write(message);
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("header"));
  }
  EXPECT_EQ(client().DescribeCollection("short").status().code(),
            absl::StatusCode::kNotFound);
  // The name was given back: a complete upload of it succeeds.
  client::UploadOptions upload;
  upload.name = "short";
  ASSERT_TRUE(client().UploadCollection(upload, Random(100, 4, 3)).ok());
  ASSERT_TRUE(client().DeleteCollection("short").ok());
}

// Waits until the budget has nothing reserved (a cancelled stream is torn
// down asynchronously on the server).
bool WaitForNothingReserved(const Server& s) {
  const absl::Time deadline = absl::Now() + testing::Scaled(absl::Seconds(10));
  while (absl::Now() < deadline) {
    if (Metric(s, "engram_resident_memory_budget_bytes",
               {{"state", "reserved"}}) == 0) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST_F(ResidentE2ETest, CancelledUploadLeavesNothingVisible) {
  grpc::ClientContext context;
  pb::UploadCollectionResponse response;
  auto writer = client().stub().UploadCollection(&context, &response);
  pb::UploadCollectionRequest message;
  message.mutable_header()->set_name("cancelled");
  message.mutable_header()->set_create(true);
  message.mutable_header()->set_dimension(32);
  message.mutable_header()->set_total_rows(1000);
  ASSERT_TRUE(writer->Write(message));
  message.Clear();
  const client::FloatMatrix rows = Random(500, 32, 4);
  message.mutable_chunk()->mutable_vectors()->Add(rows.values.begin(),
                                                  rows.values.end());
  ASSERT_TRUE(writer->Write(message));
  // The server has reserved the budget for the declared rows.
  absl::SleepFor(testing::Scaled(absl::Milliseconds(200)));
  EXPECT_GT(Metric(*server_, "engram_resident_memory_budget_bytes",
                   {{"state", "reserved"}}),
            0);
  context.TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForNothingReserved(*server_));
  EXPECT_EQ(client().DescribeCollection("cancelled").status().code(),
            absl::StatusCode::kNotFound);
  client::UploadOptions upload;
  upload.name = "cancelled";
  ASSERT_TRUE(client().UploadCollection(upload, Random(10, 32, 4)).ok());
  ASSERT_TRUE(client().DeleteCollection("cancelled").ok());
}

TEST_F(ResidentE2ETest, InterruptedStreamLeavesNothingVisible) {
  // The stream's deadline passes half-way, as when a client dies.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  pb::UploadCollectionResponse response;
  auto writer = client().stub().UploadCollection(&context, &response);
  pb::UploadCollectionRequest message;
  message.mutable_header()->set_name("interrupted");
  message.mutable_header()->set_create(true);
  message.mutable_header()->set_dimension(8);
  message.mutable_header()->set_total_rows(20);
  ASSERT_TRUE(writer->Write(message));
  message.Clear();
  const client::FloatMatrix rows = Random(10, 8, 5);
  message.mutable_chunk()->mutable_vectors()->Add(rows.values.begin(),
                                                  rows.values.end());
  ASSERT_TRUE(writer->Write(message));
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitForNothingReserved(*server_));
  EXPECT_EQ(client().DescribeCollection("interrupted").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ResidentE2ETest, SpreadByGraphNameEqualsInlineSpread) {
  const testing::RandomCsrGraph g = testing::RandomGraph(3000, 5, 9);
  pb::Graph graph;
  graph.set_num_nodes(g.num_nodes);
  graph.mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  graph.mutable_targets()->Add(g.targets.begin(), g.targets.end());
  graph.mutable_weights()->Add(g.weights.begin(), g.weights.end());
  auto put = client().PutGraph("random", graph, /*chunk_entries=*/1000);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->num_nodes(), 3000u);
  EXPECT_EQ(put->num_edges(), g.targets.size());
  EXPECT_EQ(client().PutGraph("random", graph).status().code(),
            absl::StatusCode::kAlreadyExists);

  pb::SpreadRequest inline_request;
  *inline_request.mutable_graph() = graph;
  auto* seed = inline_request.add_seeds();
  seed->set_node(3);
  seed->set_activation(1.0f);
  inline_request.mutable_params()->set_max_hops(5);
  inline_request.mutable_params()->set_threshold(0.001f);
  pb::SpreadRequest named = inline_request;
  named.clear_graph();
  named.set_graph_name("random");
  auto a = client().Spread(inline_request);
  auto b = client().Spread(named);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->activation_size(), b->activation_size());
  for (int i = 0; i < a->activation_size(); ++i) {
    ASSERT_EQ(a->activation(i), b->activation(i)) << i;
  }
  EXPECT_EQ(a->hops(), b->hops());
  EXPECT_EQ(a->edges_traversed(), b->edges_traversed());
  // The named spread says which version of the graph it ran on.
  EXPECT_GT(put->version(), 0u);
  EXPECT_EQ(b->graph_version(), put->version());
  EXPECT_EQ(a->graph_version(), 0u);
  pb::SpreadRequest at_version = named;
  at_version.set_min_version(put->version());
  auto c = client().Spread(at_version);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->graph_version(), put->version());
  // min_version belongs to graph_name: an inline graph has no version.
  pb::SpreadRequest inline_versioned = inline_request;
  inline_versioned.set_min_version(1);
  auto no_version = client().Spread(inline_versioned);
  EXPECT_EQ(no_version.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_version.status().message(), HasSubstr("min_version"));

  // Exactly one of graph and graph_name.
  pb::SpreadRequest both = inline_request;
  both.set_graph_name("random");
  auto refused = client().Spread(both);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("graph_name"));
  pb::SpreadRequest neither = named;
  neither.clear_graph_name();
  EXPECT_EQ(client().Spread(neither).status().code(),
            absl::StatusCode::kInvalidArgument);
  named.set_graph_name("nope");
  auto unknown = client().Spread(named);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("graph_name"));

  auto described = client().DescribeGraph("random");
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->num_edges(), g.targets.size());
  EXPECT_EQ(described->version(), put->version());
  EXPECT_TRUE(client().DescribeGraph("random", put->version()).ok());
  auto graphs = client().ListGraphs();
  ASSERT_TRUE(graphs.ok());
  ASSERT_EQ(graphs->graphs_size(), 1);
  ASSERT_TRUE(client().DeleteGraph("random").ok());
  EXPECT_EQ(client().DeleteGraph("random").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client().DescribeGraph("random").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ResidentE2ETest, InvalidGraphIsRefusedAndNotStored) {
  pb::Graph graph;
  graph.set_num_nodes(2);
  graph.add_row_offsets(0);
  graph.add_row_offsets(1);
  graph.add_row_offsets(1);
  graph.add_targets(7);  // no such node
  graph.add_weights(0.5f);
  auto put = client().PutGraph("invalid", graph);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client().DescribeGraph("invalid").status().code(),
            absl::StatusCode::kNotFound);
}

// Batching: 32 concurrent callers each get exactly their own results.
TEST(ResidentBatchingE2ETest, ConcurrentCallersGetTheirOwnResults) {
  Server s = StartServer({"--batch_max_delay=2ms", "--batch_max_queries=64"});
  ASSERT_NE(s.client, nullptr);
  const client::FloatMatrix targets = Random(2000, 64, 30);
  client::UploadOptions upload;
  upload.name = "batched";
  ASSERT_TRUE(s.client->UploadCollection(upload, targets).ok());

  constexpr int kCallers = 32;
  constexpr int kRounds = 4;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::atomic<int> shared_passes{0};
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        const client::FloatMatrix queries =
            Random(1 + c % 3, 64, 1000 + c * 10 + r);
        auto response =
            s.client->SearchCollection(Search("batched", queries, 5 + c % 4));
        if (!response.ok()) {
          ++failures;
          ADD_FAILURE() << response.status();
          continue;
        }
        if (response->batch_requests() > 1) ++shared_passes;
        ExpectTopKMatchesReference(*response, queries, targets, {}, 5 + c % 4);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(shared_passes.load(), 0) << "no call shared a pass";
  const std::string body = Scrape(s);
  EXPECT_GT(testing::SampleValue(body, "engram_search_batch_requests_count")
                .value_or(0),
            0);
}

TEST(ResidentBatchingE2ETest, CancelledCallersLeaveOthersCorrect) {
  // A long delay keeps partial batches waiting, so cancellations land while
  // calls are queued.
  Server s =
      StartServer({"--batch_max_delay=300ms", "--batch_max_queries=1000"});
  ASSERT_NE(s.client, nullptr);
  const client::FloatMatrix targets = Random(1000, 32, 40);
  client::UploadOptions upload;
  upload.name = "cancel";
  ASSERT_TRUE(s.client->UploadCollection(upload, targets).ok());

  constexpr int kCallers = 16;
  std::vector<std::thread> threads;
  std::atomic<int> cancelled{0};
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      const client::FloatMatrix queries = Random(1, 32, 2000 + c);
      const pb::SearchCollectionRequest request = Search("cancel", queries, 4);
      grpc::ClientContext context;
      pb::SearchCollectionResponse response;
      std::thread canceller;
      if (c % 2 == 1) {
        canceller = std::thread([&context] {
          absl::SleepFor(absl::Milliseconds(50));
          context.TryCancel();
        });
      }
      const grpc::Status status =
          s.client->stub().SearchCollection(&context, request, &response);
      if (canceller.joinable()) canceller.join();
      if (c % 2 == 1) {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
        ++cancelled;
      } else {
        ASSERT_TRUE(status.ok()) << status.error_message();
        ExpectTopKMatchesReference(response, queries, targets, {}, 4);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(cancelled.load(), kCallers / 2);
  // The server removed the cancelled callers from the queue.
  const absl::Time deadline = absl::Now() + testing::Scaled(absl::Seconds(5));
  double removed = 0;
  while (absl::Now() < deadline) {
    removed = Metric(s, "engram_search_cancelled_total");
    if (removed >= kCallers / 2) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(removed, kCallers / 2);
}

TEST(ResidentBatchingE2ETest, FullQueueIsRefusedAtOnce) {
  Server s = StartServer({"--batch_max_delay=500ms", "--batch_max_pending=2",
                          "--batch_max_queries=1000"});
  ASSERT_NE(s.client, nullptr);
  client::UploadOptions upload;
  upload.name = "full";
  ASSERT_TRUE(s.client->UploadCollection(upload, Random(100, 8, 50)).ok());
  // A raw stub, to read the refusals' trailers.
  auto stub = pb::Similarity::NewStub(grpc::CreateChannel(
      s.process->grpc_target(), grpc::InsecureChannelCredentials()));
  std::vector<std::thread> threads;
  absl::Mutex mu;
  std::vector<std::string> pushbacks;  // of the refusals
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&, c] {
      grpc::ClientContext context;
      context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
      pb::SearchCollectionResponse response;
      const grpc::Status status = stub->SearchCollection(
          &context, Search("full", Random(1, 8, c), 2), &response);
      if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return;
      EXPECT_THAT(status.error_message(), HasSubstr("search queue full"));
      const auto& trailers = context.GetServerTrailingMetadata();
      auto it = trailers.find("grpc-retry-pushback-ms");
      absl::MutexLock lock(&mu);
      pushbacks.push_back(
          it == trailers.end()
              ? "missing"
              : std::string(it->second.data(), it->second.size()));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(pushbacks.size(), 2u);
  for (const std::string& ms : pushbacks) {
    int64_t value = -1;
    EXPECT_TRUE(absl::SimpleAtoi(ms, &value)) << ms;
    EXPECT_GE(value, 5);  // Admission's default bounds: [5 ms, 2 s]
    EXPECT_LE(value, 2000);
  }
}

TEST(ResidentBatchingE2ETest, SearchFinishedPastItsDeadlineIsCountedAsSuch) {
  // Every simulated GPU call takes a second, so a GPU-only search is in its
  // pass (where the batcher can no longer cancel it) when its deadline
  // passes, and the pass completes after the client stopped waiting.
  Server s =
      StartServer({"--simulated_gpu", "--simulated_gpu_launch_overhead=1s"});
  ASSERT_NE(s.client, nullptr);
  client::UploadOptions upload;
  upload.name = "late";
  ASSERT_TRUE(s.client->UploadCollection(upload, Random(100, 8, 60)).ok());
  pb::SearchCollectionRequest request = Search("late", Random(1, 8, 61), 3);
  request.set_placement(pb::PLACEMENT_GPU_ONLY);
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(300)));
  pb::SearchCollectionResponse response;
  EXPECT_EQ(s.client->stub()
                .SearchCollection(&context, request, &response)
                .error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server answers when the pass is done: the code it records is the
  // one the client saw, as for BatchCosine and Spread.
  const testing::MetricLabels late = {{"method", "SearchCollection"},
                                      {"code", "DEADLINE_EXCEEDED"}};
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up &&
         Metric(s, "engram_requests_total", late) < 1) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Metric(s, "engram_requests_total", late), 1);
  EXPECT_EQ(Metric(s, "engram_requests_total",
                   {{"method", "SearchCollection"}, {"code", "OK"}}),
            0);
}

// Writes a collection snapshot of `rows` through the core library.
void WriteSnapshot(const std::string& path, const std::string& name,
                   const client::FloatMatrix& rows) {
  auto budget = collections::MemoryBudget::Create({});
  ASSERT_TRUE(budget.ok());
  collections::CollectionStore::Options options;
  options.budget = *budget;
  auto store = collections::CollectionStore::Create(options);
  ASSERT_TRUE(store.ok());
  collections::UploadOptions upload;
  upload.name = name;
  upload.create = true;
  upload.dimension = static_cast<uint32_t>(rows.cols);
  upload.rows = rows.rows;
  auto staged = (*store)->BeginUpload(upload);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_TRUE((*staged)
                  ->Append(kernels::MatrixView{rows.values.data(), rows.rows,
                                               rows.cols})
                  .ok());
  auto collection = (*staged)->Commit();
  ASSERT_TRUE(collection.ok());
  ASSERT_TRUE(collections::WriteCollectionSnapshot(**collection, path).ok());
}

// Start-up loading from a declarations file.
class ResidentStartupTest : public ::testing::Test {
 protected:
  static void WriteGraphSnapshot(const std::string& path,
                                 const testing::RandomCsrGraph& g) {
    auto budget = collections::MemoryBudget::Create({});
    ASSERT_TRUE(budget.ok());
    collections::GraphStore::Options options;
    options.budget = *budget;
    options.validate = [](const kernels::GraphView&) {
      return absl::OkStatus();
    };
    auto store = collections::GraphStore::Create(options);
    ASSERT_TRUE(store.ok());
    auto graph = (*store)->Put("g", g.view());
    ASSERT_TRUE(graph.ok()) << graph.status();
    ASSERT_TRUE(collections::WriteGraphSnapshot(**graph, path).ok());
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST_F(ResidentStartupTest, LoadsDeclaredFilesAndSkipsCorruptOnes) {
  const client::FloatMatrix npy_rows = Random(300, 24, 60);
  const client::FloatMatrix snap_rows = Random(200, 24, 61);
  const std::string npy = TempPath("vectors.npy");
  const std::string good_snapshot = TempPath("good.engc");
  const std::string corrupt_snapshot = TempPath("corrupt.engc");
  const std::string graph_snapshot = TempPath("graph.engg");
  ASSERT_TRUE(client::WriteNpyFile(npy, npy_rows).ok());
  WriteSnapshot(good_snapshot, "snap", snap_rows);
  WriteSnapshot(corrupt_snapshot, "snap", snap_rows);
  const testing::RandomCsrGraph g = testing::RandomGraph(500, 4, 62);
  WriteGraphSnapshot(graph_snapshot, g);
  {
    // Flip one byte of the payload: the CRC32C check must catch it.
    std::fstream f(corrupt_snapshot,
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    char c = 0;
    f.seekg(200);
    f.get(c);
    f.seekp(200);
    f.put(static_cast<char>(c ^ 0x5a));
  }
  const std::string config = TempPath("resident.conf");
  {
    std::ofstream out(config);
    out << "[collection vectors]\npath = " << npy << "\n"
        << "[collection snap]\npath = " << good_snapshot << "\n"
        << "[collection broken]\npath = " << corrupt_snapshot << "\n"
        << "[collection missing]\npath = " << TempPath("absent.npy") << "\n"
        << "[graph g]\npath = " << graph_snapshot << "\n";
  }
  const std::string log = TempPath("startup.log");
  Server s = StartServer({"--resident_config=" + config}, log);
  ASSERT_NE(s.client, nullptr);

  auto vectors = s.client->DescribeCollection("vectors");
  ASSERT_TRUE(vectors.ok()) << vectors.status();
  EXPECT_EQ(vectors->count(), 300u);
  EXPECT_EQ(vectors->source(), npy);
  auto snap = s.client->DescribeCollection("snap");
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->count(), 200u);
  EXPECT_EQ(s.client->DescribeCollection("broken").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(s.client->DescribeCollection("missing").status().code(),
            absl::StatusCode::kNotFound);

  // The loaded data is searched like uploaded data.
  const client::FloatMatrix queries = Random(2, 24, 63);
  auto top = s.client->SearchCollection(Search("vectors", queries, 6));
  ASSERT_TRUE(top.ok()) << top.status();
  ExpectTopKMatchesReference(*top, queries, npy_rows, {}, 6);
  auto graph = s.client->DescribeGraph("g");
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(graph->num_nodes(), 500u);

  EXPECT_EQ(Metric(s, "engram_resident_load_failures_total",
                   {{"kind", "collection"}}),
            2);
  EXPECT_EQ(Metric(s, "engram_resident_loads_total", {{"kind", "collection"}}),
            2);
  EXPECT_EQ(Metric(s, "engram_resident_loads_total", {{"kind", "graph"}}), 1);
  const std::string text = ReadFile(log);
  EXPECT_THAT(text, HasSubstr("\"event\":\"resident_load_failed\""));
  EXPECT_THAT(text, HasSubstr(corrupt_snapshot));
  EXPECT_THAT(text, HasSubstr("DATA_LOSS"));
  EXPECT_THAT(text, HasSubstr("NOT_FOUND"));
  auto health = s.client->Health("");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  for (const std::string& path :
       {npy, good_snapshot, corrupt_snapshot, graph_snapshot, config, log}) {
    std::remove(path.c_str());
  }
}

TEST_F(ResidentStartupTest, MissingDeclarationsFileIsCountedAndIgnored) {
  const std::string log = TempPath("missing.log");
  Server s =
      StartServer({"--resident_config=" + TempPath("no-such.conf")}, log);
  ASSERT_NE(s.client, nullptr);
  EXPECT_EQ(
      Metric(s, "engram_resident_load_failures_total", {{"kind", "config"}}),
      1);
  EXPECT_THAT(ReadFile(log), HasSubstr("resident_config_failed"));
  auto health = s.client->Health("");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  std::remove(log.c_str());
}

// --data_dir: what clients wrote survives SIGKILL and a restart.
class DurableDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = TempPath(absl::StrCat(
        "data_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    ASSERT_EQ(std::system(absl::StrCat("rm -rf '", data_dir_, "'").c_str()), 0);
  }
  void TearDown() override {
    std::system(absl::StrCat("rm -rf '", data_dir_, "'").c_str());
  }
  Server Start() {
    return StartServer(
        {"--data_dir=" + data_dir_, "--resident_memory_bytes=268435456"});
  }
  static void Kill(Server& s) {
    s.process->Signal(SIGKILL);
    ASSERT_TRUE(
        s.process->WaitForExit(testing::Scaled(absl::Seconds(10))).ok());
  }
  // Segment files in the data directory.
  std::vector<std::string> Segments() const {
    std::vector<std::string> out;
    std::error_code error;
    for (std::filesystem::directory_iterator it(data_dir_ + "/segments", error),
         end;
         !error && it != end; it.increment(error)) {
      out.push_back(it->path().filename().string());
    }
    return out;
  }

  std::string data_dir_;
};

TEST_F(DurableDataTest, EveryAcknowledgedWriteSurvivesSigkill) {
  const client::FloatMatrix first = Random(400, 32, 80);
  const client::FloatMatrix second = Random(150, 32, 81);
  std::vector<uint64_t> ids(first.rows);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 7 * i + 1;
  const client::FloatMatrix queries = Random(4, 32, 82);
  const testing::RandomCsrGraph g = testing::RandomGraph(800, 4, 83);
  pb::Graph graph;
  graph.set_num_nodes(g.num_nodes);
  graph.mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  graph.mutable_targets()->Add(g.targets.begin(), g.targets.end());
  graph.mutable_weights()->Add(g.weights.begin(), g.weights.end());
  pb::SpreadRequest spread;
  spread.set_graph_name("links");
  auto* seed = spread.add_seeds();
  seed->set_node(5);
  seed->set_activation(1.0f);
  spread.mutable_params()->set_max_hops(4);

  pb::SearchCollectionResponse before;
  pb::SpreadResponse spread_before;
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    client::UploadOptions upload;
    upload.name = "docs";
    upload.chunk_rows = 100;
    ASSERT_TRUE(s.client->UploadCollection(upload, first, ids).ok());
    upload.create = false;
    // An append without ids to a collection with them: its rows get ids
    // equal to their row numbers, before and after the restart.
    std::vector<uint64_t> more(second.rows);
    for (size_t i = 0; i < more.size(); ++i) more[i] = first.rows + i;
    ASSERT_TRUE(s.client->UploadCollection(upload, second, more).ok());
    pb::CreateCollectionRequest create;
    create.set_name("empty");
    create.set_dimension(8);
    ASSERT_TRUE(s.client->CreateCollection(create).ok());
    upload.name = "doomed";
    upload.create = true;
    ASSERT_TRUE(s.client->UploadCollection(upload, second).ok());
    ASSERT_TRUE(s.client->DeleteCollection("doomed").ok());
    ASSERT_TRUE(s.client->PutGraph("links", graph).ok());
    auto searched = s.client->SearchCollection(Search("docs", queries, 10));
    ASSERT_TRUE(searched.ok()) << searched.status();
    before = *searched;
    auto spread_result = s.client->Spread(spread);
    ASSERT_TRUE(spread_result.ok()) << spread_result.status();
    spread_before = *spread_result;
    Kill(s);
  }

  Server s = Start();
  ASSERT_NE(s.client, nullptr);
  auto docs = s.client->DescribeCollection("docs");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ(docs->count(), first.rows + second.rows);
  EXPECT_EQ(docs->version(), 2u);
  EXPECT_TRUE(docs->has_ids());
  auto empty = s.client->DescribeCollection("empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->count(), 0u);
  EXPECT_EQ(s.client->DescribeCollection("doomed").status().code(),
            absl::StatusCode::kNotFound);

  auto after = s.client->SearchCollection(Search("docs", queries, 10));
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->results_size(), before.results_size());
  for (int q = 0; q < before.results_size(); ++q) {
    const pb::CollectionHits& a = before.results(q);
    const pb::CollectionHits& b = after->results(q);
    ASSERT_EQ(a.ids_size(), b.ids_size());
    for (int j = 0; j < a.ids_size(); ++j) {
      EXPECT_EQ(a.ids(j), b.ids(j)) << q << "," << j;
      EXPECT_EQ(a.rows(j), b.rows(j)) << q << "," << j;
      EXPECT_EQ(a.scores(j), b.scores(j)) << q << "," << j;
    }
  }
  auto spread_after = s.client->Spread(spread);
  ASSERT_TRUE(spread_after.ok()) << spread_after.status();
  ASSERT_EQ(spread_after->activation_size(), spread_before.activation_size());
  for (int i = 0; i < spread_before.activation_size(); ++i) {
    ASSERT_EQ(spread_after->activation(i), spread_before.activation(i)) << i;
  }
  EXPECT_EQ(Metric(s, "engram_resident_loads_total", {{"kind", "collection"}}),
            2);
  EXPECT_EQ(Metric(s, "engram_resident_loads_total", {{"kind", "graph"}}), 1);
}

// SIGKILL at a random moment of a large append, again and again: after each
// restart the collection is the old version or the new one, whole, and no
// file is left that no manifest names.
TEST_F(DurableDataTest, SigkillDuringAnAppendLeavesTheOldOrTheNewVersion) {
  const client::FloatMatrix base = Random(1000, 64, 90);
  const client::FloatMatrix big = Random(60000, 64, 91);  // about 15 MiB
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    client::UploadOptions upload;
    upload.name = "docs";
    ASSERT_TRUE(s.client->UploadCollection(upload, base).ok());
  }
  std::mt19937 random(92);
  uint64_t rows = base.rows;
  uint64_t version = 1;
  int committed = 0;
  int interrupted = 0;
  for (int round = 0; round < 6; ++round) {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    auto info = s.client->DescribeCollection("docs");
    ASSERT_TRUE(info.ok()) << info.status();
    // Old or new, never a mix.
    if (info->version() == version + 1) {
      ++committed;
      ++version;
      rows += big.rows;
    } else {
      ++interrupted;
    }
    ASSERT_EQ(info->version(), version);
    ASSERT_EQ(info->count(), rows);
    // Only the segments the manifest names: one per committed upload.
    EXPECT_EQ(Segments().size(), version) << round;

    std::thread append([&] {
      client::UploadOptions upload;
      upload.name = "docs";
      upload.create = false;
      s.client->UploadCollection(upload, big).IgnoreError();
    });
    absl::SleepFor(
        absl::Milliseconds(std::uniform_int_distribution<int>(0, 400)(random)));
    Kill(s);
    append.join();
  }
  // Each round's append either committed before the kill or did not.
  Server s = Start();
  ASSERT_NE(s.client, nullptr);
  auto info = s.client->DescribeCollection("docs");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->count(), base.rows + (info->version() - 1) * big.rows);
  EXPECT_EQ(Segments().size(), info->version());
  std::printf("rounds committed %d, interrupted %d\n", committed, interrupted);
}

TEST_F(DurableDataTest, AResentKeyedUploadIsAppliedOnce) {
  const client::FloatMatrix rows = Random(200, 16, 98);
  client::UploadOptions upload;
  upload.name = "keyed";
  upload.idempotency_key = "create-1";
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    auto created = s.client->UploadCollection(upload, rows);
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_FALSE(created->replayed());
    upload.create = false;
    upload.idempotency_key = "append-1";
    auto appended = s.client->UploadCollection(upload, rows);
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_FALSE(appended->replayed());
    EXPECT_EQ(appended->collection().count(), 400u);
    auto resent = s.client->UploadCollection(upload, rows);
    ASSERT_TRUE(resent.ok()) << resent.status();
    EXPECT_TRUE(resent->replayed());
    EXPECT_EQ(resent->collection().count(), 400u);
    EXPECT_EQ(resent->collection().version(), 2u);
    upload.idempotency_key = std::string(129, 'k');
    auto too_long = s.client->UploadCollection(upload, rows);
    EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(too_long.status().message()),
                HasSubstr("header.idempotency_key"));
    Kill(s);
  }
  Server s = Start();
  ASSERT_NE(s.client, nullptr);
  {
    // A resend is still a well-formed stream: a second header is refused.
    pb::UploadCollectionResponse response;
    grpc::ClientContext context;
    auto stub = pb::Similarity::NewStub(grpc::CreateChannel(
        s.process->grpc_target(), grpc::InsecureChannelCredentials()));
    auto writer = stub->UploadCollection(&context, &response);
    pb::UploadCollectionRequest header;
    header.mutable_header()->set_name("keyed");
    header.mutable_header()->set_total_rows(rows.rows);
    header.mutable_header()->set_idempotency_key("append-1");
    ASSERT_TRUE(writer->Write(header));
    writer->Write(header);
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
  }
  // A resend after the restart, of the create as well: still applied once.
  upload.idempotency_key = "append-1";
  auto resent = s.client->UploadCollection(upload, rows);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_TRUE(resent->replayed());
  upload.create = true;
  upload.idempotency_key = "create-1";
  auto recreated = s.client->UploadCollection(upload, rows);
  ASSERT_TRUE(recreated.ok()) << recreated.status();
  EXPECT_TRUE(recreated->replayed());
  auto info = s.client->DescribeCollection("keyed");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->count(), 400u);
}

// A name held in the data directory is what clients last wrote: a
// declaration of the same name yields to it, the others still load.
TEST_F(DurableDataTest, ADeclarationYieldsToTheStoredCollectionOfItsName) {
  const std::string snapshot = TempPath("declared_docs.engc");
  const std::string config = TempPath("declared.conf");
  WriteSnapshot(snapshot, "docs", Random(50, 16, 99));
  std::ofstream(config) << "[collection docs]\npath = " << snapshot
                        << "\n[collection other]\npath = " << snapshot << "\n";
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    client::UploadOptions upload;
    upload.name = "docs";
    ASSERT_TRUE(s.client->UploadCollection(upload, Random(120, 16, 100)).ok());
  }
  const std::string log = TempPath("declared.log");
  Server s = StartServer(
      {"--data_dir=" + data_dir_, "--resident_config=" + config}, log);
  ASSERT_NE(s.client, nullptr);
  auto docs = s.client->DescribeCollection("docs");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ(docs->count(), 120u);
  auto other = s.client->DescribeCollection("other");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->count(), 50u);
  std::ifstream in(log);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_THAT(text, HasSubstr("\"event\":\"resident_declaration_superseded\""));
  for (const std::string& path : {snapshot, config, log}) {
    std::remove(path.c_str());
  }
}

TEST_F(DurableDataTest, ACorruptSegmentIsDataLossAndTheRestIsServed) {
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    client::UploadOptions upload;
    upload.name = "broken";
    ASSERT_TRUE(s.client->UploadCollection(upload, Random(100, 16, 95)).ok());
    upload.name = "fine";
    ASSERT_TRUE(s.client->UploadCollection(upload, Random(100, 16, 96)).ok());
  }
  std::string segment;
  for (const std::string& f : Segments()) {
    if (absl::StartsWith(f, "broken.")) segment = data_dir_ + "/segments/" + f;
  }
  ASSERT_FALSE(segment.empty());
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500);
    f.put('\x7f');
  }
  Server s = Start();
  ASSERT_NE(s.client, nullptr);
  EXPECT_TRUE(s.client->DescribeCollection("fine").ok());
  const absl::Status lost = s.client->DescribeCollection("broken").status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_THAT(std::string(lost.message()), HasSubstr(segment));
  EXPECT_EQ(s.client->SearchCollection(Search("broken", Random(1, 16, 97), 3))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Metric(s, "engram_resident_load_failures_total",
                   {{"kind", "collection"}}),
            1);
  auto health = s.client->Health("");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  // Deleting the lost collection frees its name and its files.
  ASSERT_TRUE(s.client->DeleteCollection("broken").ok());
  EXPECT_EQ(Segments().size(), 1u);
}

// The data directory on a 2 MiB tmpfs: a write that does not fit answers
// RESOURCE_EXHAUSTED naming the file, nothing of it is visible or left on
// disk, and the previous version is served, also after a restart.
TEST_F(DurableDataTest, AFullDiskRefusesTheWriteAndKeepsThePreviousVersion) {
  ASSERT_EQ(std::system(absl::StrCat("mkdir -p '", data_dir_, "'").c_str()), 0);
  if (std::system(absl::StrCat("mount -t tmpfs -o size=2m tmpfs '", data_dir_,
                               "' 2>/dev/null")
                      .c_str()) != 0) {
    GTEST_SKIP() << "mounting a small tmpfs needs root (CI runs as root)";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { std::system(absl::StrCat("umount '", dir, "'").c_str()); }
  } unmount{data_dir_};
  const client::FloatMatrix small = Random(100, 32, 110);
  {
    Server s = Start();
    ASSERT_NE(s.client, nullptr);
    client::UploadOptions upload;
    upload.name = "docs";
    ASSERT_TRUE(s.client->UploadCollection(upload, small).ok());
    // 20000 x 32 float32: 2.5 MiB, more than the disk holds.
    upload.create = false;
    const absl::Status full =
        s.client->UploadCollection(upload, Random(20000, 32, 111)).status();
    EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
    EXPECT_THAT(std::string(full.message()), HasSubstr(data_dir_));
    upload.name = "big";
    upload.create = true;
    EXPECT_EQ(s.client->UploadCollection(upload, Random(20000, 32, 112))
                  .status()
                  .code(),
              absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(s.client->DescribeCollection("big").status().code(),
              absl::StatusCode::kNotFound);
    auto info = s.client->DescribeCollection("docs");
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->version(), 1u);
    EXPECT_EQ(info->count(), small.rows);
    // Only the committed segment: the refused writes left nothing.
    EXPECT_EQ(Segments().size(), 1u);
    // Once there is room again, writes go on.
    upload.name = "docs";
    upload.create = false;
    auto appended = s.client->UploadCollection(upload, Random(10, 32, 113));
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_EQ(appended->collection().version(), 2u);
  }
  Server s = Start();
  ASSERT_NE(s.client, nullptr);
  auto info = s.client->DescribeCollection("docs");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), 2u);
  EXPECT_EQ(info->count(), small.rows + 10);
}

}  // namespace
}  // namespace engram
