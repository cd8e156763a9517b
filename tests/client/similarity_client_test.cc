// SimilarityClient against an in-process fake server: options validation,
// responses, status propagation, deadlines, x-request-id, health checks,
// upload chunking with labels and the row writes.
#include "client/similarity_client.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/requests.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/client/fake_similarity_server.h"

namespace engram::client {
namespace {

namespace v1 = ::engram::similarity::v1;
namespace health = ::grpc::health::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SimilarityClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::FakeSimilarityServer::Start();
    ASSERT_NE(server_, nullptr);
  }

  std::unique_ptr<SimilarityClient> Connect(
      absl::Duration timeout = absl::Seconds(30)) {
    SimilarityClient::Options options;
    options.target = server_->target();
    options.timeout = timeout;
    auto client = SimilarityClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static v1::BatchCosineRequest SmallCosineRequest() {
    v1::BatchCosineRequest request;
    request.mutable_queries()->set_rows(1);
    request.mutable_queries()->set_cols(2);
    request.mutable_queries()->add_values(1.0f);
    request.mutable_queries()->add_values(0.0f);
    *request.mutable_targets() = request.queries();
    request.set_top_k(1);
    return request;
  }

  std::unique_ptr<testing::FakeSimilarityServer> server_;
};

TEST_F(SimilarityClientTest, CreateRejectsInvalidOptions) {
  SimilarityClient::Options empty_target;
  empty_target.target = "";
  SimilarityClient::Options zero_timeout;
  zero_timeout.timeout = absl::ZeroDuration();
  SimilarityClient::Options negative_timeout;
  negative_timeout.timeout = absl::Seconds(-1);
  SimilarityClient::Options zero_message;
  zero_message.max_message_bytes = 0;
  SimilarityClient::Options unknown_policy;
  unknown_policy.load_balancing_policy = "round_robbin";
  for (const auto& options : {empty_target, zero_timeout, negative_timeout,
                              zero_message, unknown_policy}) {
    auto client = SimilarityClient::Create(options);
    EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument)
        << client.status();
  }
  auto typo = SimilarityClient::Create(unknown_policy);
  EXPECT_THAT(typo.status().message(), HasSubstr("round_robbin"));
}

TEST_F(SimilarityClientTest, CreateAcceptsKnownLoadBalancingPolicies) {
  for (const char* policy : {"", "pick_first", "round_robin"}) {
    SimilarityClient::Options options;
    options.target = server_->target();
    options.load_balancing_policy = policy;
    auto client = SimilarityClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    EXPECT_TRUE((*client)->GetStats().ok()) << policy;
  }
}

TEST_F(SimilarityClientTest, CreateFromChannelRejectsNullChannelAndBadTimeout) {
  EXPECT_EQ(SimilarityClient::CreateFromChannel(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto channel = grpc::CreateChannel(server_->target(),
                                     grpc::InsecureChannelCredentials());
  EXPECT_EQ(SimilarityClient::CreateFromChannel(channel, absl::ZeroDuration())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SimilarityClientTest, CreateFromChannelUsesThatChannel) {
  auto channel = grpc::CreateChannel(server_->target(),
                                     grpc::InsecureChannelCredentials());
  auto client = SimilarityClient::CreateFromChannel(channel);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->channel(), channel);
  EXPECT_TRUE((*client)->GetStats().ok());
}

TEST_F(SimilarityClientTest, BatchCosineSendsRequestAndReturnsResponse) {
  v1::BatchCosineResponse canned;
  canned.add_top()->add_indices(0);
  canned.mutable_top(0)->add_scores(1.0f);
  canned.mutable_report()->set_backend(v1::BACKEND_CPU);
  server_->similarity().SetCosineResponse(canned);
  auto client = Connect();

  auto response = client->BatchCosine(SmallCosineRequest());

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->SerializeAsString(), canned.SerializeAsString());
  EXPECT_EQ(server_->similarity().last_cosine_request().SerializeAsString(),
            SmallCosineRequest().SerializeAsString());
  EXPECT_EQ(server_->similarity().last_call().method, "BatchCosine");
}

TEST_F(SimilarityClientTest, SpreadAndGetStatsReturnResponses) {
  v1::SpreadResponse spread;
  spread.add_activation(0.5f);
  spread.set_hops(2);
  server_->similarity().SetSpreadResponse(spread);
  v1::GetStatsResponse stats;
  stats.set_version("9.9.9");
  stats.set_inflight_requests(3);
  server_->similarity().SetStatsResponse(stats);
  auto client = Connect();

  v1::SpreadRequest request;
  request.add_seeds()->set_node(4);
  auto spread_response = client->Spread(request);
  ASSERT_TRUE(spread_response.ok()) << spread_response.status();
  EXPECT_EQ(spread_response->hops(), 2u);
  EXPECT_EQ(server_->similarity().last_spread_request().seeds(0).node(), 4u);

  auto stats_response = client->GetStats();
  ASSERT_TRUE(stats_response.ok()) << stats_response.status();
  EXPECT_EQ(stats_response->version(), "9.9.9");
  EXPECT_EQ(stats_response->inflight_requests(), 3u);
}

TEST_F(SimilarityClientTest, ServerErrorKeepsCodeAndMessage) {
  const std::vector<grpc::Status> errors = {
      {grpc::StatusCode::INVALID_ARGUMENT, "queries.cols 3 != targets.cols 4"},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"},
      {grpc::StatusCode::UNAVAILABLE, "gpu breaker open"},
  };
  auto client = Connect();
  for (const grpc::Status& error : errors) {
    server_->similarity().SetStatus(error);
    auto response = client->BatchCosine(SmallCosineRequest());
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(static_cast<int>(response.status().code()),
              static_cast<int>(error.error_code()));
    EXPECT_EQ(response.status().message(), error.error_message());
  }
}

TEST_F(SimilarityClientTest, RequestIdArrivesAsMetadata) {
  auto client = Connect();
  CallOptions call;
  call.request_id = "req-42 abc";
  ASSERT_TRUE(client->GetStats(call).ok());
  EXPECT_EQ(server_->similarity().last_call().request_id, "req-42 abc");

  ASSERT_TRUE(client->GetStats().ok());
  EXPECT_EQ(server_->similarity().last_call().request_id, std::nullopt);
}

TEST_F(SimilarityClientTest, NonPrintableRequestIdFailsWithoutCalling) {
  auto client = Connect();
  CallOptions call;
  call.request_id = "bad\nid";
  auto response = client->GetStats(call);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->similarity().calls(), 0);
}

TEST_F(SimilarityClientTest, DeadlineFollowsClientTimeout) {
  auto client = Connect(absl::Seconds(5));
  ASSERT_TRUE(client->GetStats().ok());
  const absl::Duration left = server_->similarity().last_call().deadline_left;
  EXPECT_GT(left, absl::Seconds(3));
  // gRPC sends the timeout rounded up to its wire unit, so the server may
  // see a hair more than was asked for.
  EXPECT_LE(left, absl::Seconds(5) + absl::Milliseconds(100));
}

TEST_F(SimilarityClientTest, CallTimeoutOverridesClientTimeout) {
  auto client = Connect(absl::Seconds(5));
  CallOptions call;
  call.timeout = absl::Seconds(60);
  ASSERT_TRUE(client->GetStats(call).ok());
  EXPECT_GT(server_->similarity().last_call().deadline_left, absl::Seconds(5));

  call.timeout = absl::ZeroDuration();
  EXPECT_EQ(client->GetStats(call).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SimilarityClientTest, InfiniteTimeoutSendsNoDeadline) {
  auto client = Connect(absl::InfiniteDuration());
  ASSERT_TRUE(client->GetStats().ok());
  EXPECT_EQ(server_->similarity().last_call().deadline_left,
            absl::InfiniteDuration());
}

TEST_F(SimilarityClientTest, SlowServerGivesDeadlineExceeded) {
  server_->similarity().SetHangUntilCancelled(true);
  auto client = Connect(absl::Milliseconds(100));
  const absl::Time start = absl::Now();
  auto response = client->BatchCosine(SmallCosineRequest());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded)
      << response.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(SimilarityClientTest, UnreachableServerGivesUnavailable) {
  // The port of a server that has shut down refuses connections.
  const std::string target = server_->target();
  server_.reset();
  SimilarityClient::Options options;
  options.target = target;
  options.timeout = absl::Seconds(10);
  auto client = SimilarityClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->GetStats().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(SimilarityClientTest, HealthReturnsServingStatus) {
  server_->health().SetStatus("", health::HealthCheckResponse::SERVING);
  server_->health().SetStatus("engram.similarity.v1.Similarity",
                              health::HealthCheckResponse::NOT_SERVING);
  auto client = Connect();

  auto all = client->Health("");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, health::HealthCheckResponse::SERVING);
  CallOptions call;
  call.request_id = "probe";
  auto service = client->Health("engram.similarity.v1.Similarity", call);
  ASSERT_TRUE(service.ok()) << service.status();
  EXPECT_EQ(*service, health::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(server_->health().last_call().request_id, "probe");
}

TEST_F(SimilarityClientTest, HealthOfUnknownServiceIsNotFound) {
  auto client = Connect();
  auto status = client->Health("no.such.Service");
  EXPECT_EQ(status.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.status().message(), HasSubstr("no.such.Service"));
}

// Rows whose labels name their ids, so that a test can see that each row's
// labels travel with it: row r has id 100 + r and the tag row=<id>.
struct LabelledRows {
  FloatMatrix vectors;
  std::vector<uint64_t> ids;
  std::vector<v1::RowLabels> labels;
};

LabelledRows MakeLabelledRows(int rows, int cols) {
  LabelledRows out;
  out.vectors.rows = rows;
  out.vectors.cols = cols;
  for (int i = 0; i < rows * cols; ++i) out.vectors.values.push_back(i);
  for (int r = 0; r < rows; ++r) {
    out.ids.push_back(100 + r);
    v1::Tag* tag = out.labels.emplace_back().add_tags();
    tag->set_key("row");
    tag->set_integer(100 + r);
  }
  return out;
}

// The rows of each chunk of an upload stream, after checking that every
// chunk's ids, values and labels are its rows' own.
std::vector<int> ChunkRows(
    const std::vector<v1::UploadCollectionRequest>& messages, int cols,
    bool with_labels) {
  std::vector<int> rows;
  uint64_t next_id = 100;
  for (std::size_t i = 1; i < messages.size(); ++i) {
    const v1::UploadChunk& chunk = messages[i].chunk();
    const int n = chunk.ids_size();
    rows.push_back(n);
    EXPECT_EQ(chunk.vectors_size(), n * cols) << "chunk " << i;
    EXPECT_EQ(chunk.labels_size(), with_labels ? n : 0) << "chunk " << i;
    for (int j = 0; j < n; ++j, ++next_id) {
      EXPECT_EQ(chunk.ids(j), next_id) << "chunk " << i;
      EXPECT_EQ(chunk.vectors(j * cols),
                static_cast<float>((next_id - 100) * cols));
      if (with_labels) {
        if (chunk.labels_size() <= j || chunk.labels(j).tags_size() == 0) {
          ADD_FAILURE() << "chunk " << i << " row " << j << " has no labels";
          continue;
        }
        EXPECT_EQ(chunk.labels(j).tags(0).integer(),
                  static_cast<int64_t>(next_id))
            << "chunk " << i << " row " << j;
      }
    }
  }
  return rows;
}

TEST_F(SimilarityClientTest, UploadSendsEachChunkTheLabelsOfItsRows) {
  v1::UploadCollectionResponse canned;
  canned.set_rows_uploaded(5);
  server_->similarity().SetUploadResponse(canned);
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(5, 2);
  UploadOptions options;
  options.name = "docs";
  options.chunk_rows = 2;

  auto response =
      client->UploadCollection(options, rows.vectors, rows.ids, rows.labels);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->rows_uploaded(), 5u);
  const auto messages = server_->similarity().last_upload_messages();
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages[0].header().total_rows(), 5u);
  EXPECT_TRUE(messages[0].header().with_ids());
  EXPECT_THAT(ChunkRows(messages, 2, /*with_labels=*/true),
              ElementsAre(2, 2, 1));
}

TEST_F(SimilarityClientTest, UploadCountsLabelBytesWhenCuttingChunks) {
  auto client = Connect();
  LabelledRows rows = MakeLabelledRows(5, 2);
  UploadOptions options;
  options.name = "docs";
  // A row is 8 bytes of values and 8 of id: 4 rows fit 64 bytes.
  options.chunk_bytes = 64;
  ASSERT_TRUE(client->UploadCollection(options, rows.vectors, rows.ids).ok());
  EXPECT_THAT(ChunkRows(server_->similarity().last_upload_messages(), 2,
                        /*with_labels=*/false),
              ElementsAre(4, 1));

  // Each row's labels add 11 bytes (a 9-byte RowLabels and its framing):
  // 27 bytes a row, 2 rows in 64.
  ASSERT_TRUE(
      client->UploadCollection(options, rows.vectors, rows.ids, rows.labels)
          .ok());
  EXPECT_THAT(ChunkRows(server_->similarity().last_upload_messages(), 2,
                        /*with_labels=*/true),
              ElementsAre(2, 2, 1));

  // A row whose labels alone exceed the target goes in a chunk of its own.
  rows.labels[1].add_tags()->set_text(std::string(200, 'x'));
  ASSERT_TRUE(
      client->UploadCollection(options, rows.vectors, rows.ids, rows.labels)
          .ok());
  EXPECT_THAT(ChunkRows(server_->similarity().last_upload_messages(), 2,
                        /*with_labels=*/true),
              ElementsAre(1, 1, 2, 1));
}

TEST_F(SimilarityClientTest, UploadRefusesALabelCountOtherThanOnePerRow) {
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(3, 2);
  UploadOptions options;
  options.name = "docs";
  const std::vector<v1::RowLabels> two(rows.labels.begin(),
                                       rows.labels.begin() + 2);
  auto response = client->UploadCollection(options, rows.vectors, {}, two);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(),
              HasSubstr("labels has 2 entries, expected none or one per row"));
  EXPECT_EQ(server_->similarity().calls(), 0);
}

// Every report of a progress callback, in order.
class ProgressRecorder {
 public:
  ProgressCallback callback() {
    return [this](const TransferProgress& p) { reports_.push_back(p); };
  }
  const std::vector<TransferProgress>& reports() const { return reports_; }

  // The counts only grow, and the totals stay what the first report said.
  void ExpectMonotonic() const {
    for (std::size_t i = 1; i < reports_.size(); ++i) {
      EXPECT_GT(reports_[i].bytes_sent, reports_[i - 1].bytes_sent) << i;
      EXPECT_GE(reports_[i].items_sent, reports_[i - 1].items_sent) << i;
      EXPECT_EQ(reports_[i].total_bytes, reports_[0].total_bytes) << i;
      EXPECT_EQ(reports_[i].total_items, reports_[0].total_items) << i;
    }
  }

 private:
  std::vector<TransferProgress> reports_;
};

TEST_F(SimilarityClientTest, UploadReportsProgressAfterEachChunk) {
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(5, 2);
  UploadOptions options;
  options.name = "docs";
  options.chunk_rows = 2;
  ProgressRecorder recorder;
  options.progress = recorder.callback();

  ASSERT_TRUE(client->UploadCollection(options, rows.vectors, rows.ids).ok());

  // 8 bytes of values and 8 of id a row, 2 + 2 + 1 rows.
  const auto& reports = recorder.reports();
  ASSERT_EQ(reports.size(), 3u);
  recorder.ExpectMonotonic();
  EXPECT_EQ(reports[0].items_sent, 2u);
  EXPECT_EQ(reports[0].bytes_sent, 32u);
  EXPECT_EQ(reports[1].items_sent, 4u);
  EXPECT_EQ(reports[2].items_sent, 5u);
  EXPECT_EQ(reports[2].bytes_sent, 80u);
  EXPECT_EQ(reports[2].total_items, 5u);
  EXPECT_EQ(reports[2].total_bytes, 80u);
}

TEST_F(SimilarityClientTest, UploadProgressCountsLabelBytesAndEndsAtTotals) {
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(7, 2);
  UploadOptions options;
  options.name = "docs";
  options.chunk_bytes = 64;  // 27 bytes a labelled row: 2 rows a chunk
  ProgressRecorder recorder;
  options.progress = recorder.callback();

  ASSERT_TRUE(
      client->UploadCollection(options, rows.vectors, rows.ids, rows.labels)
          .ok());

  const auto& reports = recorder.reports();
  ASSERT_EQ(reports.size(), 4u);
  recorder.ExpectMonotonic();
  EXPECT_EQ(reports.back().items_sent, 7u);
  EXPECT_EQ(reports.back().bytes_sent, 7u * 27u);
  EXPECT_EQ(reports.back().total_bytes, reports.back().bytes_sent);
  EXPECT_EQ(reports.back().total_items, 7u);
}

TEST_F(SimilarityClientTest, UploadRefusedBeforeAnyChunkReportsNoProgress) {
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(3, 2);
  UploadOptions options;
  options.name = "docs";
  ProgressRecorder recorder;
  options.progress = recorder.callback();
  const std::vector<v1::RowLabels> two(rows.labels.begin(),
                                       rows.labels.begin() + 2);
  EXPECT_FALSE(client->UploadCollection(options, rows.vectors, {}, two).ok());
  EXPECT_TRUE(recorder.reports().empty());
}

TEST_F(SimilarityClientTest, PutGraphReportsOffsetsThenEdgesEndingAtTotals) {
  v1::GraphInfo canned;
  canned.set_num_edges(5);
  server_->similarity().SetPutGraphResponse(canned);
  auto client = Connect();
  // 3 nodes, 5 edges: 4 row offsets, then 5 targets and weights.
  v1::Graph graph;
  graph.set_num_nodes(3);
  for (uint32_t offset : {0, 2, 4, 5}) graph.add_row_offsets(offset);
  for (uint32_t target : {1, 2, 0, 2, 0}) {
    graph.add_targets(target);
    graph.add_weights(0.5f);
  }
  PutGraphOptions options;
  options.name = "links";
  options.chunk_entries = 2;
  ProgressRecorder recorder;
  options.progress = recorder.callback();

  auto put = client->PutGraph(options, graph);

  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->num_edges(), 5u);
  const auto messages = server_->similarity().last_put_graph_messages();
  ASSERT_EQ(messages.size(), 1u + 2u + 3u);
  EXPECT_EQ(messages[0].header().name(), "links");
  // Offset chunks of 2 and 2, then edge chunks of 2, 2 and 1.
  const auto& reports = recorder.reports();
  ASSERT_EQ(reports.size(), 5u);
  recorder.ExpectMonotonic();
  EXPECT_EQ(reports[0].bytes_sent, 8u);
  EXPECT_EQ(reports[0].items_sent, 0u);
  EXPECT_EQ(reports[1].bytes_sent, 16u);
  EXPECT_EQ(reports[1].items_sent, 0u);
  EXPECT_EQ(reports[2].items_sent, 2u);
  EXPECT_EQ(reports[4].items_sent, 5u);
  EXPECT_EQ(reports[4].bytes_sent, 4u * 4u + 5u * 8u);
  EXPECT_EQ(reports[4].total_bytes, reports[4].bytes_sent);
  EXPECT_EQ(reports[4].total_items, 5u);
}

TEST_F(SimilarityClientTest, PutGraphByNameSendsTheSameStream) {
  auto client = Connect();
  v1::Graph graph;
  graph.set_num_nodes(2);
  for (uint32_t offset : {0, 1, 1}) graph.add_row_offsets(offset);
  graph.add_targets(1);
  graph.add_weights(1.0f);
  ASSERT_TRUE(client->PutGraph("g", graph, /*chunk_entries=*/1).ok());
  const auto messages = server_->similarity().last_put_graph_messages();
  ASSERT_EQ(messages.size(), 1u + 3u + 1u);
  EXPECT_EQ(messages[0].header().name(), "g");
  EXPECT_EQ(messages[0].header().num_edges(), 1u);
  EXPECT_EQ(client->PutGraph("g", graph, /*chunk_entries=*/0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SimilarityClientTest, SearchCollectionSendsTheFilter) {
  v1::SearchCollectionResponse canned;
  canned.set_rows_searched(12);
  canned.add_results()->add_ids(7);
  server_->similarity().SetSearchResponse(canned);
  auto client = Connect();
  v1::SearchCollectionRequest request;
  request.set_collection("docs");
  request.set_top_k(3);
  *request.mutable_queries() = SmallCosineRequest().queries();
  request.mutable_filter()->add_deny_ids(4);
  v1::TagMatch* tag = request.mutable_filter()->mutable_where()->mutable_tag();
  tag->set_key("kind");
  tag->add_values()->set_text("episode");

  auto response = client->SearchCollection(request);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->SerializeAsString(), canned.SerializeAsString());
  EXPECT_EQ(server_->similarity().last_search_request().SerializeAsString(),
            request.SerializeAsString());
}

TEST_F(SimilarityClientTest, UpsertRowsSendsTheRequestAndReturnsTheAnswer) {
  v1::UpsertRowsResponse canned;
  canned.mutable_collection()->set_name("docs");
  canned.mutable_collection()->set_version(8);
  canned.set_inserted(1);
  canned.set_replaced(1);
  server_->similarity().SetUpsertResponse(canned);
  auto client = Connect();
  const LabelledRows rows = MakeLabelledRows(2, 3);
  auto request =
      MakeUpsertRowsRequest("docs", rows.vectors, rows.ids, rows.labels);
  ASSERT_TRUE(request.ok()) << request.status();
  request->set_idempotency_key("batch-7");
  request->set_expected_version(7);
  CallOptions call;
  call.request_id = "upsert-1";

  auto response = client->UpsertRows(*request, call);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->SerializeAsString(), canned.SerializeAsString());
  EXPECT_EQ(server_->similarity().last_upsert_request().SerializeAsString(),
            request->SerializeAsString());
  EXPECT_EQ(server_->similarity().last_call().method, "UpsertRows");
  EXPECT_EQ(server_->similarity().last_call().request_id, "upsert-1");
}

TEST_F(SimilarityClientTest, DeleteRowsSendsTheRequestAndReturnsTheAnswer) {
  v1::DeleteRowsResponse canned;
  canned.mutable_collection()->set_version(9);
  canned.set_deleted(2);
  canned.set_not_found(1);
  canned.add_not_found_ids(5);
  server_->similarity().SetDeleteRowsResponse(canned);
  auto client = Connect();
  v1::DeleteRowsRequest request =
      MakeDeleteRowsRequest("docs", std::vector<uint64_t>{3, 4, 5});
  request.set_idempotency_key("del-1");
  request.set_expected_version(8);

  auto response = client->DeleteRows(request);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->SerializeAsString(), canned.SerializeAsString());
  EXPECT_EQ(
      server_->similarity().last_delete_rows_request().SerializeAsString(),
      request.SerializeAsString());
  EXPECT_EQ(server_->similarity().last_call().method, "DeleteRows");
}

TEST_F(SimilarityClientTest, RowWritesAreSentOnceAndKeepTheServersError) {
  auto client = Connect();
  server_->similarity().SetStatus(
      grpc::Status(grpc::StatusCode::ABORTED, "docs is at version 9, not 8"));
  v1::DeleteRowsRequest request =
      MakeDeleteRowsRequest("docs", std::vector<uint64_t>{3});
  request.set_expected_version(8);
  auto deleted = client->DeleteRows(request);
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(deleted.status().message(), "docs is at version 9, not 8");
  EXPECT_EQ(server_->similarity().calls(), 1);

  server_->similarity().SetStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
  auto upserted = client->UpsertRows(v1::UpsertRowsRequest());
  EXPECT_EQ(upserted.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->similarity().calls(), 2);

  CallOptions bad;
  bad.request_id = "bad\nid";
  EXPECT_EQ(client->UpsertRows(v1::UpsertRowsRequest(), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->DeleteRows(request, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->similarity().calls(), 2);
}

TEST_F(SimilarityClientTest, ConcurrentCallsShareOneClient) {
  auto client = Connect();
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 20;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        CallOptions call;
        call.request_id = absl::StrCat("t", t, "-", i);
        if (!client->BatchCosine(SmallCosineRequest(), call).ok()) {
          ++failures[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(failures, ::testing::Each(0));
  EXPECT_EQ(server_->similarity().calls(), kThreads * kCallsPerThread);
}

}  // namespace
}  // namespace engram::client
