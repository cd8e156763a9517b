// End-to-end tests: the real engram-server binary on a free loopback port,
// called through the client library, with results checked against the
// independent references in tests/testing.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "gmock/gmock.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/spreading_cases.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

class ServerE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto process = testing::ServerProcess::Start(
        ENGRAM_SERVER_BINARY, {"--worker_threads=2", "--log_level=warning"});
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = process->release();
    client::SimilarityClient::Options options;
    options.target = server_->grpc_target();
    auto created = client::SimilarityClient::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    client_ = created->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    client_ = nullptr;
    delete server_;
    server_ = nullptr;
  }

  static pb::Matrix Matrix(size_t rows, size_t cols,
                           const std::vector<float>& values) {
    auto m = client::MakeMatrix(rows, cols, values);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }

  // Sends Q x d queries against N x d targets and checks every score against
  // the float64 reference within 1e-5 relative.
  static void ExpectDenseMatchesReference(size_t q, size_t n, size_t d,
                                          uint64_t seed) {
    const std::vector<float> queries = testing::RandomMatrix(q, d, seed);
    const std::vector<float> targets = testing::RandomMatrix(n, d, seed + 1);
    auto response = client_->BatchCosine(client::MakeCosineRequest(
        Matrix(q, d, queries), Matrix(n, d, targets), 0, std::nullopt));
    ASSERT_TRUE(response.ok()) << response.status();
    const std::vector<double> expected =
        testing::ReferenceCosine(queries.data(), q, targets.data(), n, d);
    ASSERT_EQ(response->scores_size(), static_cast<int>(q * n));
    for (size_t i = 0; i < q * n; ++i) {
      ASSERT_NEAR(response->scores(i), expected[i],
                  1e-5 * std::max(1.0, std::abs(expected[i])))
          << "Q=" << q << " N=" << n << " d=" << d << " at " << i;
    }
    EXPECT_EQ(response->report().backend(), pb::BACKEND_CPU);
  }

  static testing::ServerProcess* server_;
  static client::SimilarityClient* client_;
};

testing::ServerProcess* ServerE2ETest::server_ = nullptr;
client::SimilarityClient* ServerE2ETest::client_ = nullptr;

TEST_F(ServerE2ETest, DenseScoresMatchReferenceOnRandomData) {
  ExpectDenseMatchesReference(3, 50, 17, 1);
  ExpectDenseMatchesReference(16, 257, 384, 2);
}

TEST_F(ServerE2ETest, MixedBatchSizesMatchReference) {
  for (size_t q : {1, 2, 7, 64, 1024}) ExpectDenseMatchesReference(q, 9, 8, q);
}

TEST_F(ServerE2ETest, DimensionsFromOneToFourThousandMatchReference) {
  for (size_t d : {1, 3, 768, 4096}) ExpectDenseMatchesReference(4, 33, d, d);
}

TEST_F(ServerE2ETest, TopKMatchesSortedReference) {
  const size_t q = 5, n = 300, d = 64, k = 7;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 11);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 12);
  auto response = client_->BatchCosine(client::MakeCosineRequest(
      Matrix(q, d, queries), Matrix(n, d, targets), k, std::nullopt));
  ASSERT_TRUE(response.ok()) << response.status();
  const auto expected = testing::ReferenceTopK(
      testing::ReferenceCosine(queries.data(), q, targets.data(), n, d), q, n,
      k, -2.0f);
  ASSERT_EQ(response->top_size(), static_cast<int>(q));
  EXPECT_EQ(response->scores_size(), 0);
  for (size_t i = 0; i < q; ++i) {
    const pb::TopK& top = response->top(i);
    ASSERT_EQ(top.indices_size(), static_cast<int>(k));
    for (size_t j = 0; j < k; ++j) {
      EXPECT_EQ(top.indices(j), expected[i][j].first) << i << "," << j;
      EXPECT_NEAR(top.scores(j), expected[i][j].second, 1e-5);
    }
  }
}

TEST_F(ServerE2ETest, TopKWithMinScoreDropsLowerScores) {
  // Scores against the query (1, 0): 1, 0.6, 0, -1.
  const std::vector<float> targets = {2, 0, 0.6f, 0.8f, 0, 1, -1, 0};
  auto response = client_->BatchCosine(client::MakeCosineRequest(
      Matrix(1, 2, {1, 0}), Matrix(4, 2, targets), 10, 0.5f));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->top_size(), 1);
  EXPECT_THAT(response->top(0).indices(), ::testing::ElementsAre(0, 1));
}

TEST_F(ServerE2ETest, TopKLargerThanTargetsReturnsAllTargets) {
  auto response = client_->BatchCosine(client::MakeCosineRequest(
      Matrix(1, 2, {1, 0}), Matrix(3, 2, {1, 0, 0, 1, -1, 0}), 50,
      std::nullopt));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->top(0).indices(), ::testing::ElementsAre(0, 1, 2));
}

TEST_F(ServerE2ETest, EngramExecutorEdgeCases) {
  // Queries: zero, x-axis, x-axis, x-axis; targets: x, y, -x.
  auto response = client_->BatchCosine(client::MakeCosineRequest(
      Matrix(2, 3, {0, 0, 0, 2, 0, 0}),
      Matrix(3, 3, {5, 0, 0, 0, 7, 0, -1, 0, 0}), 0, std::nullopt));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->scores(),
              ::testing::ElementsAre(0, 0, 0,     // zero query scores 0
                                     1, 0, -1));  // identical, orthogonal,
                                                  // opposite
}

TEST_F(ServerE2ETest, ReportSaysCpuAndWhichRuleDecided) {
  auto response = client_->BatchCosine(
      client::MakeCosineRequest(Matrix(1, 1, {1}), Matrix(1, 1, {1}), 0,
                                std::nullopt, pb::PLACEMENT_CPU_ONLY));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->report().backend(), pb::BACKEND_CPU);
  EXPECT_EQ(response->report().decided_by(), "placement");
  EXPECT_EQ(response->report().chunks(), 1u);
  EXPECT_EQ(response->report().fallback_reason(), "");
}

TEST_F(ServerE2ETest, GpuOnlyWithoutGpuIsUnavailable) {
  auto response = client_->BatchCosine(
      client::MakeCosineRequest(Matrix(1, 1, {1}), Matrix(1, 1, {1}), 0,
                                std::nullopt, pb::PLACEMENT_GPU_ONLY));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("PLACEMENT_GPU_ONLY"));
}

TEST_F(ServerE2ETest, SpreadPassesEveryWorkedCase) {
  auto cases = testing::LoadSpreadCases(testing::kSpreadCasesPath);
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_GE(cases->size(), 10u);
  for (const auto& c : *cases) {
    SCOPED_TRACE(c.name());
    pb::SpreadRequest request;
    *request.mutable_graph() = c.graph();
    *request.mutable_seeds() = c.seeds();
    *request.mutable_params() = c.params();
    auto dense = client_->Spread(request);
    ASSERT_TRUE(dense.ok()) << dense.status();
    ASSERT_EQ(dense->activation_size(), c.expected().activation_size());
    for (int i = 0; i < dense->activation_size(); ++i) {
      EXPECT_NEAR(dense->activation(i), c.expected().activation(i), 1e-6)
          << "node " << i;
    }
    EXPECT_EQ(dense->hops(), c.expected().hops());
    EXPECT_EQ(dense->edges_traversed(), c.expected().edges_traversed());
    if (c.has_top_k()) {
      request.set_top_k(c.top_k());
      auto top = client_->Spread(request);
      ASSERT_TRUE(top.ok()) << top.status();
      EXPECT_THAT(top->top_nodes(),
                  ::testing::ElementsAreArray(c.expected().top_nodes()));
      EXPECT_EQ(top->activation_size(), 0);
    }
  }
}

TEST_F(ServerE2ETest, SpreadOnRandomGraphMatchesReference) {
  const testing::RandomCsrGraph g = testing::RandomGraph(2000, 6, 5);
  pb::SpreadRequest request;
  pb::Graph* graph = request.mutable_graph();
  graph->set_num_nodes(g.num_nodes);
  graph->mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  graph->mutable_targets()->Add(g.targets.begin(), g.targets.end());
  graph->mutable_weights()->Add(g.weights.begin(), g.weights.end());
  std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}, {17, 0.5f}, {999, 0.8f}};
  for (const auto& s : seeds) {
    pb::Seed* seed = request.add_seeds();
    seed->set_node(s.node);
    seed->set_activation(s.activation);
  }
  request.mutable_params()->set_max_hops(6);
  request.mutable_params()->set_threshold(0.001f);
  auto response = client_->Spread(request);
  ASSERT_TRUE(response.ok()) << response.status();

  kernels::SpreadParams params;
  params.max_hops = 6;
  params.threshold = 0.001f;
  const kernels::GraphView view{g.num_nodes, g.row_offsets, g.targets,
                                g.weights};
  const auto expected = testing::ReferenceSpread(view, seeds, params);
  ASSERT_EQ(response->activation_size(), static_cast<int>(g.num_nodes));
  for (uint32_t v = 0; v < g.num_nodes; ++v) {
    ASSERT_NEAR(response->activation(v), expected.activation[v],
                1e-5 * std::max(1.0, expected.activation[v]))
        << "node " << v;
  }
  EXPECT_EQ(response->hops(), expected.hops);
  EXPECT_EQ(response->edges_traversed(), expected.edges_traversed);
}

// One row per validation rule: a mutation of a valid request, the status
// code it must get, and a fragment of the message naming the field.
struct CosineErrorCase {
  const char* name;
  void (*mutate)(pb::BatchCosineRequest*);
  absl::StatusCode code;
  const char* message;
};

pb::BatchCosineRequest ValidCosineRequest() {
  pb::BatchCosineRequest r;
  r.mutable_queries()->set_rows(1);
  r.mutable_queries()->set_cols(2);
  r.mutable_queries()->add_values(1);
  r.mutable_queries()->add_values(0);
  r.mutable_targets()->set_rows(2);
  r.mutable_targets()->set_cols(2);
  for (float v : {1.0f, 0.0f, 0.0f, 1.0f}) r.mutable_targets()->add_values(v);
  return r;
}

TEST_F(ServerE2ETest, EveryCosineValidationRuleGetsItsStatus) {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const CosineErrorCase cases[] = {
      {"zero query rows",
       [](pb::BatchCosineRequest* r) { r->mutable_queries()->set_rows(0); },
       kInvalid, "queries.rows"},
      {"zero target cols",
       [](pb::BatchCosineRequest* r) { r->mutable_targets()->set_cols(0); },
       kInvalid, "targets.cols"},
      {"values size",
       [](pb::BatchCosineRequest* r) { r->mutable_queries()->add_values(3); },
       kInvalid, "queries.values has 3 values"},
      {"dimension mismatch",
       [](pb::BatchCosineRequest* r) {
         r->mutable_targets()->set_rows(1);
         r->mutable_targets()->set_cols(4);
       },
       kInvalid, "targets.cols (4) must equal queries.cols (2)"},
      {"NaN in queries",
       [](pb::BatchCosineRequest* r) {
         r->mutable_queries()->set_values(1, std::nanf(""));
       },
       kInvalid, "queries row 0"},
      {"Inf in targets",
       [](pb::BatchCosineRequest* r) {
         r->mutable_targets()->set_values(3, INFINITY);
       },
       kInvalid, "targets row 1"},
      {"min_score without top_k",
       [](pb::BatchCosineRequest* r) { r->set_min_score(0.5f); }, kInvalid,
       "min_score"},
      {"min_score NaN",
       [](pb::BatchCosineRequest* r) {
         r->set_top_k(1);
         r->set_min_score(std::nanf(""));
       },
       kInvalid, "min_score must be finite"},
      {"unknown placement",
       [](pb::BatchCosineRequest* r) {
         r->set_placement(static_cast<pb::Placement>(7));
       },
       kInvalid, "placement"},
  };
  for (const CosineErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    pb::BatchCosineRequest request = ValidCosineRequest();
    c.mutate(&request);
    auto response = client_->BatchCosine(request);
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(response.status().code(), c.code) << response.status();
    EXPECT_THAT(response.status().message(), HasSubstr(c.message));
  }
}

struct SpreadErrorCase {
  const char* name;
  void (*mutate)(pb::SpreadRequest*);
  const char* message;
};

// 0 -> 1 -> 2 with weight 0.5, seed node 0.
pb::SpreadRequest ValidSpreadRequest() {
  pb::SpreadRequest r;
  pb::Graph* g = r.mutable_graph();
  g->set_num_nodes(3);
  for (uint32_t o : {0, 1, 2, 2}) g->add_row_offsets(o);
  g->add_targets(1);
  g->add_targets(2);
  g->add_weights(0.5f);
  g->add_weights(0.5f);
  pb::Seed* s = r.add_seeds();
  s->set_node(0);
  s->set_activation(1.0f);
  return r;
}

// The unary methods read their request themselves (server/unary_call.h):
// bytes that are not the method's message get INVALID_ARGUMENT naming the
// request, and the server goes on serving.
TEST_F(ServerE2ETest, ARequestThatDoesNotParseIsInvalidArgument) {
  grpc::GenericStub stub(grpc::CreateChannel(
      server_->grpc_target(), grpc::InsecureChannelCredentials()));
  // Field 1 (queries, a message) declared 100 bytes long, with 3 present.
  const char garbage[] = {0x0a, 0x64, 0x01, 0x02, 0x03};
  grpc::Slice slice(garbage, sizeof(garbage));
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(10)));
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/engram.similarity.v1.Similarity/BatchCosine",
                 grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr("request: the call carried no "
                                   "engram.similarity.v1.BatchCosineRequest"));
  auto stats = client_->GetStats();
  EXPECT_TRUE(stats.ok()) << stats.status();
}

TEST_F(ServerE2ETest, EverySpreadValidationRuleGetsInvalidArgument) {
  const SpreadErrorCase cases[] = {
      {"zero nodes",
       [](pb::SpreadRequest* r) {
         r->mutable_graph()->set_num_nodes(0);
         r->mutable_graph()->clear_row_offsets();
       },
       "graph.num_nodes"},
      {"offsets count",
       [](pb::SpreadRequest* r) { r->mutable_graph()->add_row_offsets(2); },
       "graph.row_offsets has 5 entries"},
      {"offsets not starting at 0",
       [](pb::SpreadRequest* r) { r->mutable_graph()->set_row_offsets(0, 1); },
       "graph.row_offsets[0]"},
      {"offsets decreasing",
       [](pb::SpreadRequest* r) { r->mutable_graph()->set_row_offsets(2, 0); },
       "graph.row_offsets[2]"},
      {"offsets not ending at edge count",
       [](pb::SpreadRequest* r) { r->mutable_graph()->add_targets(0); },
       "expected the edge count"},
      {"target out of range",
       [](pb::SpreadRequest* r) { r->mutable_graph()->set_targets(1, 3); },
       "graph.targets[1]"},
      {"weights count",
       [](pb::SpreadRequest* r) { r->mutable_graph()->add_weights(1); },
       "graph.weights has 3 entries"},
      {"negative weight",
       [](pb::SpreadRequest* r) { r->mutable_graph()->set_weights(0, -1); },
       "graph.weights[0]"},
      {"NaN weight",
       [](pb::SpreadRequest* r) {
         r->mutable_graph()->set_weights(1, std::nanf(""));
       },
       "graph.weights[1]"},
      {"seed out of range",
       [](pb::SpreadRequest* r) { r->mutable_seeds(0)->set_node(3); },
       "seeds[0].node"},
      {"negative seed activation",
       [](pb::SpreadRequest* r) { r->mutable_seeds(0)->set_activation(-0.1f); },
       "seeds[0].activation"},
      {"infinite seed activation",
       [](pb::SpreadRequest* r) {
         r->mutable_seeds(0)->set_activation(INFINITY);
       },
       "seeds[0].activation"},
      {"too many hops",
       [](pb::SpreadRequest* r) { r->mutable_params()->set_max_hops(65); },
       "params.max_hops"},
      {"negative exponential rate",
       [](pb::SpreadRequest* r) {
         r->mutable_params()->set_exponential_rate(-1);
       },
       "params.exponential_rate"},
      {"NaN power law exponent",
       [](pb::SpreadRequest* r) {
         r->mutable_params()->set_power_law_exponent(std::nanf(""));
       },
       "params.power_law_exponent"},
      {"negative linear slope",
       [](pb::SpreadRequest* r) { r->mutable_params()->set_linear_slope(-2); },
       "params.linear_slope"},
      {"constant factor above 1",
       [](pb::SpreadRequest* r) {
         r->mutable_params()->set_constant_factor(1.5f);
       },
       "params.constant_factor"},
      {"negative threshold",
       [](pb::SpreadRequest* r) { r->mutable_params()->set_threshold(-0.1f); },
       "params.threshold"},
      {"hop thresholds longer than max_hops",
       [](pb::SpreadRequest* r) {
         r->mutable_params()->set_max_hops(1);
         r->mutable_params()->add_hop_thresholds(0.1f);
         r->mutable_params()->add_hop_thresholds(0.1f);
       },
       "params.hop_thresholds has 2 entries"},
      {"NaN hop threshold",
       [](pb::SpreadRequest* r) {
         r->mutable_params()->add_hop_thresholds(std::nanf(""));
       },
       "params.hop_thresholds[0]"},
      {"zero cap",
       [](pb::SpreadRequest* r) { r->mutable_params()->set_max_activation(0); },
       "params.max_activation"},
  };
  for (const SpreadErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    pb::SpreadRequest request = ValidSpreadRequest();
    ASSERT_TRUE(client_->Spread(request).ok());
    c.mutate(&request);
    auto response = client_->Spread(request);
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument)
        << response.status();
    EXPECT_THAT(response.status().message(), HasSubstr(c.message));
  }
}

TEST_F(ServerE2ETest, HealthIsServingForServerAndService) {
  auto all = client_->Health("");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, grpc::health::v1::HealthCheckResponse::SERVING);
  auto service = client_->Health("engram.similarity.v1.Similarity");
  ASSERT_TRUE(service.ok()) << service.status();
  EXPECT_EQ(*service, grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ServerE2ETest, ReflectionListsTheService) {
  auto channel = grpc::CreateChannel(server_->grpc_target(),
                                     grpc::InsecureChannelCredentials());
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(10)));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  stream->WritesDone();
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) {
    names.push_back(s.name());
  }
  EXPECT_THAT(names, ::testing::Contains("engram.similarity.v1.Similarity"));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServerE2ETest, MetricsEndpointCountsRequestsByMethodAndCode) {
  ASSERT_TRUE(client_
                  ->BatchCosine(client::MakeCosineRequest(
                      Matrix(1, 1, {1}), Matrix(1, 1, {1}), 0, std::nullopt))
                  .ok());
  ASSERT_FALSE(
      client_
          ->BatchCosine(client::MakeCosineRequest(
              Matrix(1, 1, {1}), Matrix(1, 2, {1, 2}), 0, std::nullopt))
          .ok());
  auto body = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("engram_requests_total{"));
  EXPECT_THAT(*body, HasSubstr("code=\"INVALID_ARGUMENT\""));
  EXPECT_THAT(*body, HasSubstr("engram_request_duration_seconds_bucket{"));
  EXPECT_THAT(*body, HasSubstr("engram_compute_duration_seconds_bucket{"));
}

TEST_F(ServerE2ETest, GetStatsAgreesWithTheWorkDone) {
  auto before = client_->GetStats();
  ASSERT_TRUE(before.ok()) << before.status();
  auto count_ok_cosine = [](const pb::GetStatsResponse& s) {
    for (const auto& m : s.methods()) {
      if (m.method() == "BatchCosine" && m.code() == "OK") return m.count();
    }
    return uint64_t{0};
  };
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_
                    ->BatchCosine(client::MakeCosineRequest(
                        Matrix(1, 1, {1}), Matrix(1, 1, {1}), 0, std::nullopt))
                    .ok());
  }
  auto after = client_->GetStats();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(count_ok_cosine(*after), count_ok_cosine(*before) + 3);
  EXPECT_EQ(after->version(), "0.1.0");
  EXPECT_GT(after->uptime_seconds(), 0);
  bool saw_cpu_cosine = false;
  for (const auto& b : after->backends()) {
    if (b.operation() == "cosine" && b.backend() == pb::BACKEND_CPU) {
      saw_cpu_cosine = b.requests() >= 3 && b.p50_seconds() > 0;
    }
  }
  EXPECT_TRUE(saw_cpu_cosine);
}

// A bad start-up flag stops the server before it listens, naming the flag.
TEST(ServerFlagsTest, MallocTrimThresholdOverItsLimitIsRefusedNamingIt) {
  // Bounded: a server that accepted the flag would run until killed.
  const std::string command = absl::StrCat(
      "timeout ", absl::ToInt64Seconds(testing::Scaled(absl::Seconds(20))), " ",
      ENGRAM_SERVER_BINARY, " --malloc_trim_threshold=3000000000",
      " --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0");
  auto result = testing::RunCommand(command);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 2) << result->output;
  EXPECT_THAT(result->output,
              HasSubstr("--malloc_trim_threshold: 3000000000 is over the "
                        "limit of 2147483647 bytes"));
}

}  // namespace
}  // namespace engram
