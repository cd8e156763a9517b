#include "server/proto_conversion.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/status_conversion.h"

namespace engram::server {
namespace {

TEST(ProtoConversionTest, CosineJobViewsTheRequestWithoutCopying) {
  pb::BatchCosineRequest request;
  request.mutable_queries()->set_rows(1);
  request.mutable_queries()->set_cols(2);
  request.mutable_queries()->add_values(1);
  request.mutable_queries()->add_values(2);
  *request.mutable_targets() = request.queries();
  request.set_top_k(3);
  request.set_min_score(0.25f);
  request.set_placement(pb::PLACEMENT_CPU_ONLY);
  auto job = CosineJobFromProto(request);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->queries.data, request.queries().values().data());
  EXPECT_EQ(job->targets.data, request.targets().values().data());
  EXPECT_EQ(job->top_k, 3u);
  EXPECT_EQ(job->min_score, 0.25f);
  EXPECT_EQ(job->placement, dispatch::Placement::kCpuOnly);
}

TEST(ProtoConversionTest, AbsentMinScoreStaysAbsent) {
  pb::BatchCosineRequest request;
  request.mutable_queries()->set_rows(1);
  request.mutable_queries()->set_cols(1);
  request.mutable_queries()->add_values(1);
  *request.mutable_targets() = request.queries();
  auto job = CosineJobFromProto(request);
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->min_score.has_value());
}

TEST(ProtoConversionTest, SpreadParamsTakeApiDefaultsWhenAbsent) {
  pb::SpreadRequest request;
  std::vector<kernels::SpreadSeed> seeds;
  auto job = SpreadJobFromProto(request, &seeds);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->params.max_hops, 4u);
  EXPECT_EQ(job->params.decay, kernels::DecayKind::kExponential);
  EXPECT_FLOAT_EQ(job->params.decay_param, 0.7f);
  EXPECT_FLOAT_EQ(job->params.threshold, 0.01f);
  EXPECT_FLOAT_EQ(job->params.max_activation, 1.0f);
  EXPECT_TRUE(job->params.hop_thresholds.empty());
}

TEST(ProtoConversionTest, SpreadParamsKeepEveryGivenField) {
  pb::SpreadRequest request;
  request.add_seeds()->set_node(2);
  request.mutable_seeds(0)->set_activation(0.5f);
  pb::SpreadParams* p = request.mutable_params();
  p->set_max_hops(0);  // present and zero is not the default
  p->set_linear_slope(0.3f);
  p->set_threshold(0.0f);
  p->add_hop_thresholds(0.2f);
  p->set_max_activation(2.0f);
  std::vector<kernels::SpreadSeed> seeds;
  auto job = SpreadJobFromProto(request, &seeds);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->params.max_hops, 0u);
  EXPECT_EQ(job->params.decay, kernels::DecayKind::kLinear);
  EXPECT_FLOAT_EQ(job->params.decay_param, 0.3f);
  EXPECT_FLOAT_EQ(job->params.threshold, 0.0f);
  EXPECT_THAT(job->params.hop_thresholds, ::testing::ElementsAre(0.2f));
  EXPECT_FLOAT_EQ(job->params.max_activation, 2.0f);
  ASSERT_EQ(job->seeds.size(), 1u);
  EXPECT_EQ(job->seeds[0].node, 2u);
}

TEST(StatusConversionTest, KeepsCodeAndMessage) {
  const grpc::Status s = ToGrpcStatus(absl::ResourceExhaustedError("too big"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "too big");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::INVALID_ARGUMENT),
               "INVALID_ARGUMENT");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED),
               "UNAUTHENTICATED");
}

}  // namespace
}  // namespace engram::server
