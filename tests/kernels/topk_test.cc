#include "kernels/cpu/topk.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/thread_pool.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::kernels::cpu {

// Readable failure messages for lists of ScoredIndex.
void PrintTo(const ScoredIndex& s, std::ostream* os) {
  *os << "{" << s.index << ", " << s.score << "}";
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr float kLowest = std::numeric_limits<float>::lowest();

ScoredIndex S(uint32_t index, float score) { return {index, score}; }

// The reference's (index, score) pairs as a TopKList.
TopKList ToList(const std::vector<std::pair<uint32_t, float>>& pairs,
                uint32_t index_offset = 0) {
  TopKList list;
  for (const auto& [index, score] : pairs) {
    list.push_back({index + index_offset, score});
  }
  return list;
}

// Best-first order of `values` by a full sort, the reference for TopKOfDense.
TopKList SortedDense(const std::vector<float>& values, size_t k,
                     float min_value) {
  TopKList all;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] >= min_value) {
      all.push_back({static_cast<uint32_t>(i), values[i]});
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.score != b.score ? a.score > b.score : a.index < b.index;
  });
  if (all.size() > k) all.resize(k);
  return all;
}

std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

class TopKSelectorTest : public ::testing::Test {};

TEST_F(TopKSelectorTest, KeepsTheBestKBestFirst) {
  TopKSelector selector(3);
  const float scores[] = {0.1f, 0.9f, -0.5f, 0.4f, 0.7f, 0.2f};
  for (uint32_t i = 0; i < 6; ++i) selector.Push(i, scores[i]);
  EXPECT_THAT(selector.Take(), ElementsAre(S(1, 0.9f), S(4, 0.7f), S(3, 0.4f)));
}

TEST_F(TopKSelectorTest, BreaksTiesByLowerIndexWhateverThePushOrder) {
  for (bool reverse : {false, true}) {
    TopKSelector selector(3);
    std::vector<uint32_t> order = {5, 2, 9, 7, 1};
    if (reverse) std::reverse(order.begin(), order.end());
    for (uint32_t i : order) selector.Push(i, 0.5f);
    EXPECT_THAT(selector.Take(),
                ElementsAre(S(1, 0.5f), S(2, 0.5f), S(5, 0.5f)))
        << "reverse=" << reverse;
  }
}

TEST_F(TopKSelectorTest, WorstKeptScoreIsMinusInfinityUntilFull) {
  TopKSelector selector(2);
  EXPECT_EQ(selector.worst_kept_score(),
            -std::numeric_limits<float>::infinity());
  selector.Push(0, 0.3f);
  EXPECT_EQ(selector.worst_kept_score(),
            -std::numeric_limits<float>::infinity());
  selector.Push(1, 0.8f);
  EXPECT_EQ(selector.worst_kept_score(), 0.3f);
  selector.Push(2, 0.1f);  // rejected
  EXPECT_EQ(selector.worst_kept_score(), 0.3f);
  selector.Push(3, 0.5f);  // replaces 0.3
  EXPECT_EQ(selector.worst_kept_score(), 0.5f);
}

TEST_F(TopKSelectorTest, RejectsAnEqualScoreWithAHigherIndexOnceFull) {
  TopKSelector selector(1);
  selector.Push(4, 0.5f);
  selector.Push(7, 0.5f);
  selector.Push(2, 0.5f);
  EXPECT_THAT(selector.Take(), ElementsAre(S(2, 0.5f)));
}

TEST_F(TopKSelectorTest, TakeEmptiesTheSelectorForReuse) {
  TopKSelector selector(2);
  selector.Push(0, 1.0f);
  EXPECT_THAT(selector.Take(), ElementsAre(S(0, 1.0f)));
  EXPECT_THAT(selector.Take(), IsEmpty());
  selector.Push(3, 0.25f);
  EXPECT_THAT(selector.Take(), ElementsAre(S(3, 0.25f)));
}

TEST_F(TopKSelectorTest, ZeroKKeepsNothing) {
  TopKSelector selector(0);
  selector.Push(0, 1.0f);
  EXPECT_THAT(selector.Take(), IsEmpty());
}

TEST_F(TopKSelectorTest, MatchesAFullSortOnRandomScoresWithTies) {
  std::mt19937_64 rng(7);
  // Few distinct values, so ties are everywhere.
  std::uniform_int_distribution<int> level(0, 20);
  for (size_t k : {size_t{1}, size_t{5}, size_t{64}, size_t{5000}}) {
    std::vector<float> values(3000);
    for (float& v : values) v = level(rng) / 20.0f;
    TopKSelector selector(k);
    for (size_t i = 0; i < values.size(); ++i) {
      selector.Push(static_cast<uint32_t>(i), values[i]);
    }
    EXPECT_EQ(selector.Take(), SortedDense(values, k, kLowest)) << "k=" << k;
  }
}

class MergeTopKTest : public ::testing::Test {};

TEST_F(MergeTopKTest, MergesListsIntoTheBestKOverall) {
  const std::vector<TopKList> lists = {
      {S(3, 0.9f), S(8, 0.5f), S(1, 0.2f)},
      {S(4, 0.7f), S(2, 0.5f)},
      {},
      {S(6, 0.95f)},
  };
  EXPECT_THAT(MergeTopK(lists, 4),
              ElementsAre(S(6, 0.95f), S(3, 0.9f), S(4, 0.7f), S(2, 0.5f)));
  EXPECT_THAT(MergeTopK(lists, 100),
              ElementsAre(S(6, 0.95f), S(3, 0.9f), S(4, 0.7f), S(2, 0.5f),
                          S(8, 0.5f), S(1, 0.2f)));
}

TEST_F(MergeTopKTest, EqualsSortingTheUnionOfRandomLists) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> level(0, 50);
  std::vector<float> values(2000);
  for (float& v : values) v = level(rng) / 50.0f;
  // Split the indices over 7 lists, as the cosine kernel splits targets over
  // tasks, and keep each list's own top 30.
  std::vector<TopKList> lists(7);
  for (size_t l = 0; l < lists.size(); ++l) {
    TopKSelector selector(30);
    for (size_t i = l; i < values.size(); i += lists.size()) {
      selector.Push(static_cast<uint32_t>(i), values[i]);
    }
    lists[l] = selector.Take();
  }
  EXPECT_EQ(MergeTopK(lists, 30), SortedDense(values, 30, kLowest));
}

class TopKOfDenseTest : public ::testing::Test {};

TEST_F(TopKOfDenseTest, ReturnsTheBestEntriesWithIndices) {
  const std::vector<float> values = {0.3f, 0.0f, 0.9f, 0.3f, 0.6f};
  EXPECT_THAT(TopKOfDense(values, 3, kLowest),
              ElementsAre(S(2, 0.9f), S(4, 0.6f), S(0, 0.3f)));
}

TEST_F(TopKOfDenseTest, KLargerThanTheInputReturnsEveryEntry) {
  const std::vector<float> values = {0.1f, 0.2f};
  EXPECT_THAT(TopKOfDense(values, 10, kLowest),
              ElementsAre(S(1, 0.2f), S(0, 0.1f)));
}

TEST_F(TopKOfDenseTest, DropsValuesBelowMinValue) {
  const std::vector<float> values = {0.1f, 0.5f, 0.25f, 0.24f, 0.9f};
  EXPECT_THAT(TopKOfDense(values, 10, 0.25f),
              ElementsAre(S(4, 0.9f), S(1, 0.5f), S(2, 0.25f)));
}

TEST_F(TopKOfDenseTest, MatchesAFullSortOnRandomValues) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> level(-10, 10);
  std::vector<float> values(1500);
  for (float& v : values) v = level(rng) / 10.0f;
  for (float min_value : {kLowest, 0.0f, 0.55f}) {
    EXPECT_EQ(TopKOfDense(values, 40, min_value),
              SortedDense(values, 40, min_value))
        << "min_value=" << min_value;
  }
}

// CosineTopK must give exactly what sorting CosineDense's scores gives: same
// indices, same scores, same tie order.
class CosineTopKTest : public ::testing::Test {
 protected:
  static std::vector<std::unique_ptr<ThreadPool>> Pools() {
    std::vector<std::unique_ptr<ThreadPool>> pools;
    pools.push_back(nullptr);
    for (int n : {1, 2, 4}) pools.push_back(std::make_unique<ThreadPool>(n));
    return pools;
  }

  // Checks CosineTopK against a full sort of CosineDense's scores.
  static void ExpectEqualsSortedDense(const std::vector<float>& q,
                                      const std::vector<float>& t, size_t nq,
                                      size_t n, size_t d, uint32_t k,
                                      float min_score, uint32_t index_offset) {
    const MatrixView queries{q.data(), nq, d};
    const MatrixView targets{t.data(), n, d};
    std::vector<float> dense(nq * n);
    ASSERT_TRUE(
        CosineDense(queries, targets, dense.data(), n, index_offset, nullptr)
            .ok());
    const auto expected =
        testing::ReferenceTopK(ToDouble(dense), nq, n, k, min_score);
    for (const auto& pool : Pools()) {
      SCOPED_TRACE(::testing::Message()
                   << "pool=" << (pool ? pool->num_threads() : 0) << " k=" << k
                   << " min_score=" << min_score << " n=" << n);
      std::vector<TopKList> got;
      ASSERT_TRUE(CosineTopK(queries, targets, k, min_score, index_offset,
                             pool.get(), &got)
                      .ok());
      ASSERT_EQ(got.size(), nq);
      for (size_t j = 0; j < nq; ++j) {
        EXPECT_EQ(got[j], ToList(expected[j], index_offset)) << "query " << j;
      }
    }
  }
};

TEST_F(CosineTopKTest, EqualsSortingTheFullScores) {
  constexpr size_t kD = 37;
  constexpr size_t kN = 5001;
  constexpr size_t kQ = 5;
  const auto q = testing::RandomMatrix(kQ, kD, 1);
  const auto t = testing::RandomMatrix(kN, kD, 2);
  for (uint32_t k : {1u, 10u, 100u}) {
    ExpectEqualsSortedDense(q, t, kQ, kN, kD, k, kLowest, 0);
  }
}

TEST_F(CosineTopKTest, BreaksTiesByLowerIndexAcrossTasks) {
  // 4000 targets made of 10 distinct rows repeated: every score is shared by
  // 400 targets spread over every task, so the tie order decides the result.
  constexpr size_t kD = 24;
  constexpr size_t kDistinct = 10;
  constexpr size_t kN = 4000;
  const auto distinct = testing::RandomMatrix(kDistinct, kD, 3);
  std::vector<float> t(kN * kD);
  for (size_t r = 0; r < kN; ++r) {
    std::copy_n(distinct.begin() + (r * 7 % kDistinct) * kD, kD,
                t.begin() + r * kD);
  }
  const auto q = testing::RandomMatrix(3, kD, 4);
  ExpectEqualsSortedDense(q, t, 3, kN, kD, 25, kLowest, 0);
  ExpectEqualsSortedDense(q, t, 3, kN, kD, 1000, kLowest, 0);

  // And directly: the best score's targets, lowest indices first.
  std::vector<TopKList> got;
  ASSERT_TRUE(CosineTopK({q.data(), 1, kD}, {t.data(), kN, kD}, 5, kLowest, 0,
                         nullptr, &got)
                  .ok());
  ASSERT_EQ(got[0].size(), 5u);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(got[0][i].score, got[0][0].score);
    EXPECT_LT(got[0][i - 1].index, got[0][i].index);
  }
}

TEST_F(CosineTopKTest, KLargerThanTargetsReturnsEveryTarget) {
  const auto q = testing::RandomMatrix(2, 9, 5);
  const auto t = testing::RandomMatrix(13, 9, 6);
  std::vector<TopKList> got;
  ASSERT_TRUE(CosineTopK({q.data(), 2, 9}, {t.data(), 13, 9}, 100, kLowest, 0,
                         nullptr, &got)
                  .ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].size(), 13u);
  EXPECT_EQ(got[1].size(), 13u);
  ExpectEqualsSortedDense(q, t, 2, 13, 9, 100, kLowest, 0);
}

TEST_F(CosineTopKTest, MinScoreDropsLowerScores) {
  constexpr size_t kD = 16;
  constexpr size_t kN = 3001;
  const auto q = testing::RandomMatrix(4, kD, 7);
  const auto t = testing::RandomMatrix(kN, kD, 8);
  for (float min_score : {0.3f, 0.6f, 0.99f}) {
    ExpectEqualsSortedDense(q, t, 4, kN, kD, 5000, min_score, 0);
  }
  // A min_score equal to an actual score keeps that target.
  std::vector<float> dense(kN);
  ASSERT_TRUE(CosineDense({q.data(), 1, kD}, {t.data(), kN, kD}, dense.data(),
                          kN, 0, nullptr)
                  .ok());
  const float exact = dense[1234];
  ExpectEqualsSortedDense(q, t, 1, kN, kD, 5000, exact, 0);
  std::vector<TopKList> at_exact;
  ASSERT_TRUE(CosineTopK({q.data(), 1, kD}, {t.data(), kN, kD}, 5000, exact, 0,
                         nullptr, &at_exact)
                  .ok());
  EXPECT_EQ(at_exact[0].back(), S(1234, exact));

  std::vector<TopKList> got;
  ASSERT_TRUE(CosineTopK({q.data(), 4, kD}, {t.data(), kN, kD}, 5000, 0.6f, 0,
                         nullptr, &got)
                  .ok());
  for (const TopKList& list : got) {
    EXPECT_FALSE(list.empty());
    EXPECT_LT(list.size(), kN);
    for (const ScoredIndex& s : list) EXPECT_GE(s.score, 0.6f);
  }
}

TEST_F(CosineTopKTest, IndicesAreOffsetByIndexOffset) {
  const auto q = testing::RandomMatrix(2, 33, 9);
  const auto t = testing::RandomMatrix(777, 33, 10);
  ExpectEqualsSortedDense(q, t, 2, 777, 33, 20, kLowest, 100000);
}

TEST_F(CosineTopKTest, AgreesWithTheIndependentReference) {
  constexpr size_t kD = 100;
  constexpr size_t kN = 2001;
  constexpr size_t kQ = 3;
  constexpr uint32_t kK = 15;
  const auto q = testing::RandomMatrix(kQ, kD, 12);
  const auto t = testing::RandomMatrix(kN, kD, 13);
  const auto ref = testing::ReferenceCosine(q.data(), kQ, t.data(), kN, kD);
  ThreadPool pool(2);
  std::vector<TopKList> got;
  ASSERT_TRUE(CosineTopK({q.data(), kQ, kD}, {t.data(), kN, kD}, kK, kLowest, 0,
                         &pool, &got)
                  .ok());
  for (size_t j = 0; j < kQ; ++j) {
    ASSERT_EQ(got[j].size(), kK);
    const float last = got[j].back().score;
    std::vector<bool> listed(kN, false);
    for (const ScoredIndex& s : got[j]) {
      listed[s.index] = true;
      EXPECT_NEAR(s.score, ref[j * kN + s.index], 1e-5) << "target " << s.index;
    }
    // Whatever was left out cannot score clearly better than the last kept.
    for (size_t i = 0; i < kN; ++i) {
      if (!listed[i]) {
        EXPECT_LE(ref[j * kN + i], last + 1e-5) << "target " << i;
      }
    }
  }
}

TEST_F(CosineTopKTest, ZeroKIsRejected) {
  const auto q = testing::RandomMatrix(1, 4, 14);
  std::vector<TopKList> got;
  EXPECT_EQ(CosineTopK({q.data(), 1, 4}, {q.data(), 1, 4}, 0, kLowest, 0,
                       nullptr, &got)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Top-k through either kernel equals sorting that kernel's full scores, on
// every pool: the selection never changes which scores win.
TEST_F(CosineTopKTest, EachKernelsTopKEqualsSortingItsFullScores) {
  const size_t d = 48, n = 2500;
  const auto q = testing::RandomMatrix(21, d, 900);
  auto t = testing::RandomMatrix(n, d, 901);
  // Ties across task boundaries: duplicated rows score equally.
  for (size_t r = 1200; r < 1300; ++r) {
    std::copy(t.begin() + 5 * d, t.begin() + 6 * d, t.begin() + r * d);
  }
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  pools.push_back(std::make_unique<ThreadPool>(3));
  for (CosineKernel kernel : {CosineKernel::kRowDot, CosineKernel::kPanel}) {
    std::vector<float> dense(21 * n);
    ASSERT_TRUE(CosineDense({q.data(), 21, d}, {t.data(), n, d}, dense.data(),
                            n, 0, nullptr, kernel)
                    .ok());
    for (const auto& pool : pools) {
      for (float min_score : {kLowest, 0.1f}) {
        SCOPED_TRACE(::testing::Message()
                     << CosineKernelName(kernel) << " min_score=" << min_score
                     << " pool=" << (pool ? pool->num_threads() : 0));
        std::vector<TopKList> top;
        ASSERT_TRUE(CosineTopK({q.data(), 21, d}, {t.data(), n, d}, 7,
                               min_score, 100, pool.get(), &top, kernel)
                        .ok());
        ASSERT_EQ(top.size(), 21u);
        for (size_t j = 0; j < 21; ++j) {
          const std::vector<float> row(dense.begin() + j * n,
                                       dense.begin() + (j + 1) * n);
          TopKList want = SortedDense(row, 7, min_score);
          for (ScoredIndex& s : want) s.index += 100;
          EXPECT_EQ(top[j], want) << "query " << j;
        }
      }
    }
  }
}

// On the flushing workers a positive denormal min_score reads as 0 and would
// let scores of 0 through; only those are raised, to the smallest normal.
TEST(FlushSafeMinScoreTest, RaisesOnlyPositiveDenormals) {
  const float denormal = std::numeric_limits<float>::denorm_min();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FlushSafeMinScore(denormal), std::numeric_limits<float>::min());
  EXPECT_EQ(FlushSafeMinScore(std::numeric_limits<float>::min() / 2),
            std::numeric_limits<float>::min());
  EXPECT_EQ(FlushSafeMinScore(-denormal), -denormal);
  EXPECT_EQ(FlushSafeMinScore(0.0f), 0.0f);
  EXPECT_EQ(FlushSafeMinScore(0.5f), 0.5f);
  EXPECT_EQ(FlushSafeMinScore(-inf), -inf);
}

}  // namespace
}  // namespace engram::kernels::cpu
