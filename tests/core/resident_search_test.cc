#include "core/resident_search.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::core {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kDim = 16;

class StopAlways final : public base::Interrupt {
 public:
  absl::Status Check() const override {
    return absl::CancelledError("stopped by the test");
  }
};

class ResidentSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Engine::Options options;
    options.worker_threads = 2;
    auto engine =
        Engine::Create(options, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  collections::CollectionStore& store() {
    return engine_->resident().collections();
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(ResidentSearchTest, ResolveCollectionNamesWhatIsMissing) {
  auto empty = ResolveCollection(engine_->resident(), "");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("collection is required"));

  auto missing = ResolveCollection(engine_->resident(), "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("collection: no collection named 'nope'"));

  ASSERT_TRUE(collections::testing::Upload(store(), "docs", kDim,
                                           testing::RandomMatrix(4, kDim, 1))
                  .ok());
  auto found = ResolveCollection(engine_->resident(), "docs");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)->rows(), 4u);
}

TEST_F(ResidentSearchTest, SearchOutputsCountsEveryScoreOrTheLists) {
  EXPECT_EQ(SearchOutputs(3, 0, 100), 300u);
  EXPECT_EQ(SearchOutputs(3, 10, 100), 30u);
  EXPECT_EQ(SearchOutputs(3, 10, 4), 12u);
}

TEST_F(ResidentSearchTest, ValidateSearchChecksShapeMinScoreAndSize) {
  auto collection = collections::testing::Upload(
      store(), "docs", kDim, testing::RandomMatrix(50, kDim, 2));
  ASSERT_TRUE(collection.ok()) << collection.status();
  RequestLimits limits;
  SearchShape shape;
  shape.query_rows = 2;
  shape.query_cols = kDim;
  shape.query_values = 2 * kDim;
  shape.top_k = 5;
  EXPECT_TRUE(
      ValidateSearch(**collection, (*collection)->rows(), shape, limits).ok());

  SearchShape short_values = shape;
  short_values.query_values = kDim;
  EXPECT_THAT(
      ValidateSearch(**collection, (*collection)->rows(), short_values, limits)
          .message(),
      HasSubstr("queries.values"));

  SearchShape wrong_dim = shape;
  wrong_dim.query_cols = kDim / 2;
  wrong_dim.query_values = kDim;
  const absl::Status dim =
      ValidateSearch(**collection, (*collection)->rows(), wrong_dim, limits);
  EXPECT_EQ(dim.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dim.message(), HasSubstr("has dimension 16"));

  SearchShape all_with_min = shape;
  all_with_min.top_k = 0;
  all_with_min.has_min_score = true;
  EXPECT_THAT(
      ValidateSearch(**collection, (*collection)->rows(), all_with_min, limits)
          .message(),
      HasSubstr("min_score is only accepted with top_k > 0"));

  RequestLimits small;
  small.max_output_elements = 99;
  SearchShape all = shape;
  all.top_k = 0;
  const absl::Status big =
      ValidateSearch(**collection, (*collection)->rows(), all, small);
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(big.message(), HasSubstr("ask for top_k > 0"));
  EXPECT_TRUE(
      ValidateSearch(**collection, (*collection)->rows(), shape, small).ok());
}

TEST_F(ResidentSearchTest, ScoreEveryRowMatchesReferenceAcrossSegments) {
  const std::vector<float> rows = testing::RandomMatrix(70, kDim, 3);
  ASSERT_TRUE(collections::testing::Upload(
                  store(), "docs", kDim,
                  std::vector<float>(rows.begin(), rows.begin() + 30 * kDim))
                  .ok());
  auto collection = collections::testing::Upload(
      store(), "docs", kDim,
      std::vector<float>(rows.begin() + 30 * kDim, rows.end()), {},
      /*create=*/false);
  ASSERT_TRUE(collection.ok()) << collection.status();
  ASSERT_EQ((*collection)->segments().size(), 2u);

  const std::vector<float> queries = testing::RandomMatrix(3, kDim, 4);
  std::vector<float> scores(3 * 70);
  dispatch::ExecutionReport report;
  ASSERT_TRUE(ScoreEveryRow(*engine_, **collection, nullptr,
                            kernels::MatrixView{queries.data(), 3, kDim},
                            dispatch::Placement::kCpuOnly, nullptr,
                            absl::MakeSpan(scores), &report)
                  .ok());
  const std::vector<double> expected =
      testing::ReferenceCosine(queries.data(), 3, rows.data(), 70, kDim);
  for (size_t i = 0; i < scores.size(); ++i) {
    EXPECT_NEAR(scores[i], expected[i], 1e-5) << i;
  }
  EXPECT_EQ(report.backend, dispatch::BackendKind::kCpu);
}

TEST_F(ResidentSearchTest, ScoreEveryRowStopsWhenInterrupted) {
  auto collection = collections::testing::Upload(
      store(), "docs", kDim, testing::RandomMatrix(10, kDim, 5));
  ASSERT_TRUE(collection.ok()) << collection.status();
  const std::vector<float> queries = testing::RandomMatrix(1, kDim, 6);
  std::vector<float> scores(10);
  dispatch::ExecutionReport report;
  const StopAlways stop;
  EXPECT_EQ(ScoreEveryRow(*engine_, **collection, nullptr,
                          kernels::MatrixView{queries.data(), 1, kDim},
                          dispatch::Placement::kAuto, &stop,
                          absl::MakeSpan(scores), &report)
                .code(),
            absl::StatusCode::kCancelled);
}

TEST_F(ResidentSearchTest, ScoreEveryRowRefusesABufferOfTheWrongSize) {
  auto collection = collections::testing::Upload(
      store(), "docs", kDim, testing::RandomMatrix(10, kDim, 7));
  ASSERT_TRUE(collection.ok()) << collection.status();
  const std::vector<float> queries = testing::RandomMatrix(1, kDim, 8);
  std::vector<float> scores(9);
  dispatch::ExecutionReport report;
  EXPECT_FALSE(ScoreEveryRow(*engine_, **collection, nullptr,
                             kernels::MatrixView{queries.data(), 1, kDim},
                             dispatch::Placement::kAuto, nullptr,
                             absl::MakeSpan(scores), &report)
                   .ok());
}

}  // namespace
}  // namespace engram::core
