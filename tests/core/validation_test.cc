#include "core/validation.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::core {
namespace {

using ::testing::HasSubstr;

TEST(ValidationTest, MatrixShapeRejectsZeroRowsColsAndWrongValueCount) {
  EXPECT_THAT(ValidateMatrixShape("queries", 0, 3, 0).message(),
              HasSubstr("queries.rows must be >= 1"));
  EXPECT_THAT(ValidateMatrixShape("targets", 2, 0, 0).message(),
              HasSubstr("targets.cols must be >= 1"));
  const absl::Status wrong = ValidateMatrixShape("queries", 2, 3, 5);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.message(),
              HasSubstr("queries.values has 5 values, expected rows * cols = "
                        "2 * 3 = 6"));
  EXPECT_TRUE(ValidateMatrixShape("queries", 2, 3, 6).ok());
}

class CosineValidationTest : public ::testing::Test {
 protected:
  dispatch::CosineJob Job(size_t q, size_t n, size_t d) {
    queries_.assign(q * d, 1.0f);
    targets_.assign(n * d, 1.0f);
    dispatch::CosineJob job;
    job.queries = {queries_.data(), q, d};
    job.targets = {targets_.data(), n, d};
    return job;
  }
  std::vector<float> queries_, targets_;
  RequestLimits limits_;
};

TEST_F(CosineValidationTest, AcceptsAValidJob) {
  EXPECT_TRUE(ValidateCosineJob(Job(2, 3, 4), limits_).ok());
}

TEST_F(CosineValidationTest, RejectsDimensionMismatchNamingBothSides) {
  dispatch::CosineJob job = Job(2, 3, 4);
  job.targets.cols = 5;
  const absl::Status s = ValidateCosineJob(job, limits_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("targets.cols (5) must equal "
                                     "queries.cols (4)"));
}

TEST_F(CosineValidationTest, InputOverLimitIsResourceExhausted) {
  limits_.max_input_elements = 10;
  const absl::Status s = ValidateCosineJob(Job(2, 2, 3), limits_);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("12 values, over the limit of 10"));
}

TEST_F(CosineValidationTest, DenseOutputOverLimitSuggestsTopK) {
  limits_.max_output_elements = 5;
  dispatch::CosineJob job = Job(2, 3, 1);
  EXPECT_EQ(ValidateCosineJob(job, limits_).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(ValidateCosineJob(job, limits_).message(), HasSubstr("top_k"));
  job.top_k = 2;  // 2 * 2 = 4 scores fit
  EXPECT_TRUE(ValidateCosineJob(job, limits_).ok());
}

TEST_F(CosineValidationTest, AMaskMustCoverTheTargetsAndOnlyItsRowsCount) {
  limits_.max_output_elements = 5;
  dispatch::CosineJob job = Job(2, 4, 1);
  EXPECT_EQ(ValidateCosineJob(job, limits_).code(),
            absl::StatusCode::kResourceExhausted);  // 2 * 4 scores
  const std::vector<uint64_t> words = {0b0101};
  job.mask = kernels::RowMask{words.data(), 0, 4};
  EXPECT_TRUE(ValidateCosineJob(job, limits_).ok());  // 2 * 2 scores
  job.mask.rows = 3;
  const absl::Status s = ValidateCosineJob(job, limits_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("mask covers 3 rows; the targets have 4"));
}

TEST_F(CosineValidationTest, MinScoreNeedsTopKAndMustBeFinite) {
  dispatch::CosineJob job = Job(1, 1, 1);
  job.min_score = 0.5f;
  EXPECT_THAT(ValidateCosineJob(job, limits_).message(),
              HasSubstr("min_score is only allowed with top_k > 0"));
  job.top_k = 1;
  EXPECT_TRUE(ValidateCosineJob(job, limits_).ok());
  job.min_score = std::nanf("");
  EXPECT_THAT(ValidateCosineJob(job, limits_).message(),
              HasSubstr("min_score must be finite"));
}

class SpreadValidationTest : public ::testing::Test {
 protected:
  // 0 -> 1, 0 -> 2, 1 -> 2.
  dispatch::SpreadJob Job() {
    dispatch::SpreadJob job;
    job.graph = {3, offsets_, targets_, weights_};
    job.seeds = seeds_;
    return job;
  }
  absl::Status Check(const dispatch::SpreadJob& job) {
    return ValidateSpreadJob(job, limits_);
  }
  std::vector<uint32_t> offsets_ = {0, 2, 3, 3};
  std::vector<uint32_t> targets_ = {1, 2, 2};
  std::vector<float> weights_ = {0.5f, 0.25f, 1.0f};
  std::vector<kernels::SpreadSeed> seeds_ = {{0, 1.0f}};
  RequestLimits limits_;
};

TEST_F(SpreadValidationTest, AcceptsAValidJob) {
  EXPECT_TRUE(Check(Job()).ok());
}

TEST_F(SpreadValidationTest, RejectsOffsetsNotStartingAtZero) {
  offsets_[0] = 1;
  EXPECT_THAT(Check(Job()).message(), HasSubstr("graph.row_offsets[0] is 1"));
}

TEST_F(SpreadValidationTest, RejectsDecreasingOffsets) {
  offsets_ = {0, 2, 1, 3};
  EXPECT_THAT(Check(Job()).message(), HasSubstr("graph.row_offsets[2] is 1"));
}

TEST_F(SpreadValidationTest, RejectsOffsetsNotEndingAtEdgeCount) {
  offsets_ = {0, 2, 3, 2};
  EXPECT_THAT(Check(Job()).message(), HasSubstr("offsets must be"));
  offsets_ = {0, 1, 2, 2};
  EXPECT_THAT(Check(Job()).message(),
              HasSubstr("ends at 2, expected the edge count 3"));
}

TEST_F(SpreadValidationTest, RejectsTargetsAndSeedsOutOfRange) {
  targets_[2] = 3;
  EXPECT_THAT(Check(Job()).message(), HasSubstr("graph.targets[2] is 3"));
  targets_[2] = 2;
  seeds_[0].node = 7;
  EXPECT_THAT(Check(Job()).message(), HasSubstr("seeds[0].node is 7"));
}

TEST_F(SpreadValidationTest, RejectsNegativeOrNonFiniteWeightsAndSeeds) {
  weights_[1] = -0.5f;
  EXPECT_THAT(Check(Job()).message(), HasSubstr("graph.weights[1]"));
  weights_[1] = INFINITY;
  EXPECT_THAT(Check(Job()).message(), HasSubstr("graph.weights[1]"));
  weights_[1] = 0.0f;  // zero is a valid weight
  EXPECT_TRUE(Check(Job()).ok());
  seeds_[0].activation = std::nanf("");
  EXPECT_THAT(Check(Job()).message(), HasSubstr("seeds[0].activation"));
}

TEST_F(SpreadValidationTest, SizeLimitsAreResourceExhausted) {
  limits_.max_nodes = 2;
  EXPECT_EQ(Check(Job()).code(), absl::StatusCode::kResourceExhausted);
  limits_ = RequestLimits{};
  limits_.max_edges = 2;
  EXPECT_EQ(Check(Job()).code(), absl::StatusCode::kResourceExhausted);
  limits_ = RequestLimits{};
  limits_.max_seeds = 0;
  EXPECT_FALSE(ValidateLimits(limits_).ok());
}

TEST(LimitsValidationTest, EachLimitHasAFloorAndACeilingNamedInTheError) {
  EXPECT_TRUE(ValidateLimits(RequestLimits{}).ok());
  struct Case {
    uint64_t RequestLimits::*field;
    const char* name;
    uint64_t ceiling;
  };
  const Case cases[] = {
      {&RequestLimits::max_input_elements, "max_input_elements",
       kMaxInputElementsLimit},
      {&RequestLimits::max_output_elements, "max_output_elements",
       kMaxOutputElementsLimit},
      {&RequestLimits::max_nodes, "max_nodes", kMaxNodesLimit},
      {&RequestLimits::max_edges, "max_edges", kMaxEdgesLimit},
      {&RequestLimits::max_seeds, "max_seeds", kMaxSeedsLimit},
  };
  for (const Case& c : cases) {
    RequestLimits limits;
    limits.*c.field = c.ceiling;
    EXPECT_TRUE(ValidateLimits(limits).ok()) << c.name;
    for (uint64_t bad : {uint64_t{0}, c.ceiling + 1}) {
      limits.*c.field = bad;
      const absl::Status status = ValidateLimits(limits);
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
      EXPECT_THAT(status.message(), HasSubstr(c.name));
    }
  }
  // At the ceilings, every count the server stores in an int fits.
  EXPECT_LE(kMaxOutputElementsLimit, uint64_t{std::numeric_limits<int>::max()});
  EXPECT_LE(kMaxNodesLimit + 1, uint64_t{std::numeric_limits<int>::max()});
}

TEST(SpreadParamsValidationTest, RejectsEachOutOfRangeParameter) {
  struct Case {
    void (*mutate)(kernels::SpreadParams*);
    const char* field;
  };
  const Case cases[] = {
      {[](kernels::SpreadParams* p) { p->max_hops = 65; }, "params.max_hops"},
      {[](kernels::SpreadParams* p) { p->decay_param = -1; },
       "params.exponential_rate"},
      {[](kernels::SpreadParams* p) {
         p->decay = kernels::DecayKind::kPowerLaw;
         p->decay_param = INFINITY;
       },
       "params.power_law_exponent"},
      {[](kernels::SpreadParams* p) {
         p->decay = kernels::DecayKind::kLinear;
         p->decay_param = std::nanf("");
       },
       "params.linear_slope"},
      {[](kernels::SpreadParams* p) {
         p->decay = kernels::DecayKind::kConstant;
         p->decay_param = 1.01f;
       },
       "params.constant_factor"},
      {[](kernels::SpreadParams* p) { p->threshold = -0.01f; },
       "params.threshold"},
      {[](kernels::SpreadParams* p) { p->hop_thresholds.assign(5, 0.1f); },
       "params.hop_thresholds has 5 entries"},
      {[](kernels::SpreadParams* p) {
         p->hop_thresholds = {0.1f, -1};
       },
       "params.hop_thresholds[1]"},
      {[](kernels::SpreadParams* p) { p->max_activation = 0; },
       "params.max_activation"},
      {[](kernels::SpreadParams* p) { p->max_activation = INFINITY; },
       "params.max_activation"},
  };
  for (const Case& c : cases) {
    kernels::SpreadParams params;
    ASSERT_TRUE(ValidateSpreadParams(params).ok());
    c.mutate(&params);
    const absl::Status s = ValidateSpreadParams(params);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(s.message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace engram::core
