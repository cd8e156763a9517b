// Seeded random cosine data: reproducible from the seed, in range, and the
// "Q,N,D" parser's errors.
#include "client/random_data.h"

#include <algorithm>
#include <cstdint>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

using ::testing::HasSubstr;

class RandomDataTest : public ::testing::Test {};

TEST_F(RandomDataTest, ShapesFollowQnd) {
  const RandomCosineData data = MakeRandomCosineData({3, 5, 7}, 1);
  EXPECT_EQ(data.queries.rows, 3u);
  EXPECT_EQ(data.queries.cols, 7u);
  EXPECT_EQ(data.queries.values.size(), 21u);
  EXPECT_EQ(data.targets.rows, 5u);
  EXPECT_EQ(data.targets.cols, 7u);
  EXPECT_EQ(data.targets.values.size(), 35u);
}

TEST_F(RandomDataTest, SameSeedGivesSameData) {
  const RandomCosineData a = MakeRandomCosineData({4, 6, 8}, 123);
  const RandomCosineData b = MakeRandomCosineData({4, 6, 8}, 123);
  EXPECT_EQ(a.queries.values, b.queries.values);
  EXPECT_EQ(a.targets.values, b.targets.values);
}

TEST_F(RandomDataTest, DifferentSeedGivesDifferentData) {
  const RandomCosineData a = MakeRandomCosineData({4, 6, 8}, 1);
  const RandomCosineData b = MakeRandomCosineData({4, 6, 8}, 2);
  EXPECT_NE(a.queries.values, b.queries.values);
  EXPECT_NE(a.targets.values, b.targets.values);
}

TEST_F(RandomDataTest, TargetsContinueTheStreamAfterQueries) {
  const RandomCosineData data = MakeRandomCosineData({2, 2, 4}, 9);
  EXPECT_NE(data.queries.values, data.targets.values);
  std::mt19937_64 engine(9);
  const FloatMatrix all = RandomMatrix(4, 4, engine);
  EXPECT_TRUE(std::equal(data.queries.values.begin(), data.queries.values.end(),
                         all.values.begin()));
  EXPECT_TRUE(std::equal(data.targets.values.begin(), data.targets.values.end(),
                         all.values.begin() + 8));
}

TEST_F(RandomDataTest, ValuesFollowTheDocumentedBitsToFloatMapping) {
  // Pins the mapping so the data for a seed never changes silently: the top
  // 24 bits k of each mt19937_64 draw give (k - 2^23) / 2^23.
  const RandomCosineData data = MakeRandomCosineData({1, 1, 3}, 77);
  std::mt19937_64 engine(77);
  for (float value : data.queries.values) {
    const double k = static_cast<double>(engine() >> 40);
    EXPECT_EQ(value, static_cast<float>((k - 8388608.0) / 8388608.0));
  }
}

TEST_F(RandomDataTest, ValuesCoverMinusOneToOne) {
  const RandomCosineData data = MakeRandomCosineData({100, 1, 100}, 5);
  const auto [lo, hi] = std::minmax_element(data.queries.values.begin(),
                                            data.queries.values.end());
  EXPECT_GE(*lo, -1.0f);
  EXPECT_LT(*hi, 1.0f);
  EXPECT_LT(*lo, -0.99f);
  EXPECT_GT(*hi, 0.99f);
  double sum = 0;
  for (float v : data.queries.values) sum += v;
  EXPECT_NEAR(sum / data.queries.values.size(), 0.0, 0.05);
}

TEST_F(RandomDataTest, ParseRandomShapeAcceptsThreePositiveIntegers) {
  auto shape = ParseRandomShape("2,3,4");
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->queries, 2u);
  EXPECT_EQ(shape->targets, 3u);
  EXPECT_EQ(shape->dim, 4u);
  shape = ParseRandomShape(" 10 , 20,30 ");
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->targets, 20u);
}

TEST_F(RandomDataTest, ParseRandomShapeRejectsMalformedText) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c :
       {Case{"2,3", "expected Q,N,D"}, Case{"2,3,4,5", "expected Q,N,D"},
        Case{"", "expected Q,N,D"},
        Case{"a,3,4", "Q 'a' is not a positive integer"},
        Case{"2,3.5,4", "N '3.5' is not a positive integer"},
        Case{"2,3,", "D '' is not a positive integer"},
        Case{"-1,3,4", "Q '-1' is not a positive integer"},
        Case{"2,0,4", "N must be at least 1"},
        Case{"65536,1,65536", "too large"}}) {
    auto shape = ParseRandomShape(c.text);
    EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_THAT(shape.status().message(), HasSubstr(c.message)) << c.text;
  }
}

}  // namespace
}  // namespace engram::client
