// The CPU cosine kernels with row masks (kernels/cpu/cosine.h): a masked
// call must be the unmasked call with the excluded rows dropped, bit for bit
// with the same kernel, whatever the pool, the mask's offset and density.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/thread_pool.h"
#include "kernels/types.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::kernels::cpu {
namespace {

using ::testing::HasSubstr;

constexpr float kSentinel = -7.0f;
constexpr CosineKernel kKernels[] = {CosineKernel::kRowDot,
                                     CosineKernel::kPanel};

std::vector<std::unique_ptr<ThreadPool>> Pools() {
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  for (int n : {1, 3}) pools.push_back(std::make_unique<ThreadPool>(n));
  return pools;
}

// Masks of every kind the kernels must handle over `rows` rows: none and
// all admitted, every other row, a few long runs (whole zero words between
// them), and random densities, at offsets that are and are not multiples of
// 64.
std::vector<testing::OwnedRowMask> Masks(size_t rows, uint64_t seed) {
  std::vector<testing::OwnedRowMask> masks;
  masks.push_back(testing::RowMaskOf(std::vector<bool>(rows, false), 5));
  masks.push_back(testing::RowMaskOf(std::vector<bool>(rows, true), 64));
  std::vector<bool> alternate(rows);
  for (size_t r = 0; r < rows; r += 2) alternate[r] = true;
  masks.push_back(testing::RowMaskOf(alternate, 0));
  std::vector<bool> runs(rows);
  for (size_t r = 0; r < rows; ++r) runs[r] = (r / 300) % 4 == 1 || r == 7;
  masks.push_back(testing::RowMaskOf(runs, 130));
  for (double density : {0.01, 0.1, 0.5, 0.97}) {
    masks.push_back(testing::RandomRowMask(rows, density, 37, ++seed));
  }
  return masks;
}

std::string Describe(const testing::OwnedRowMask& owned) {
  return ::testing::PrintToString(owned.count()) + " of " +
         ::testing::PrintToString(owned.admitted.size()) +
         " rows admitted, offset " + ::testing::PrintToString(owned.offset);
}

// The unmasked call's scores, with the excluded rows dropped: row r of
// `full` (stride n) to column j of the result for the j-th admitted row.
std::vector<float> DropExcluded(const std::vector<float>& full, size_t nq,
                                size_t n, const std::vector<bool>& admitted) {
  std::vector<float> kept;
  for (size_t j = 0; j < nq; ++j) {
    for (size_t r = 0; r < n; ++r) {
      if (admitted[r]) kept.push_back(full[j * n + r]);
    }
  }
  return kept;
}

// The top-k of each query among the admitted rows of the unmasked dense
// scores: min_score filter, BetterThan order, at most k.
std::vector<TopKList> SelectAdmitted(const std::vector<float>& full, size_t nq,
                                     size_t n,
                                     const std::vector<bool>& admitted,
                                     uint32_t k, float min_score,
                                     uint32_t index_offset) {
  std::vector<TopKList> lists(nq);
  for (size_t j = 0; j < nq; ++j) {
    for (size_t r = 0; r < n; ++r) {
      const float s = full[j * n + r];
      if (admitted[r] && s >= min_score) {
        lists[j].push_back({static_cast<uint32_t>(index_offset + r), s});
      }
    }
    std::sort(lists[j].begin(), lists[j].end(), BetterThan);
    if (lists[j].size() > k) lists[j].resize(k);
  }
  return lists;
}

class CosineMaskedTest : public ::testing::Test {};

TEST_F(CosineMaskedTest, DenseIsTheUnmaskedResultWithExcludedRowsDropped) {
  struct Shape {
    size_t nq, n, d;
  };
  // d = 64 reads rows aligned, d = 33 unaligned; N spans several tasks,
  // blocks and panel tiles.
  const Shape shapes[] = {{1, 3001, 64}, {3, 2500, 33}, {20, 2100, 96}};
  const auto pools = Pools();
  uint64_t seed = 10;
  for (const Shape& s : shapes) {
    const auto q = testing::RandomMatrix(s.nq, s.d, ++seed);
    const auto t = testing::RandomMatrix(s.n, s.d, ++seed);
    const MatrixView queries{q.data(), s.nq, s.d};
    const MatrixView targets{t.data(), s.n, s.d};
    for (CosineKernel kernel : kKernels) {
      std::vector<float> full(s.nq * s.n);
      ASSERT_TRUE(
          CosineDense(queries, targets, full.data(), s.n, 0, nullptr, kernel)
              .ok());
      for (const testing::OwnedRowMask& owned : Masks(s.n, ++seed)) {
        const size_t m = owned.count();
        const std::vector<float> want =
            DropExcluded(full, s.nq, s.n, owned.admitted);
        for (const auto& pool : pools) {
          SCOPED_TRACE(::testing::Message()
                       << CosineKernelName(kernel) << " Q=" << s.nq
                       << " N=" << s.n << " d=" << s.d
                       << " pool=" << (pool ? pool->num_threads() : 0) << " "
                       << Describe(owned));
          // A stride wider than the admitted rows: the gap must be left
          // alone.
          const size_t stride = m + 3;
          std::vector<float> out(s.nq * stride, kSentinel);
          ASSERT_TRUE(CosineDense(queries, targets, owned.mask(), out.data(),
                                  stride, 0, pool.get(), kernel)
                          .ok());
          int mismatches = 0;
          for (size_t j = 0; j < s.nq; ++j) {
            for (size_t i = 0; i < stride; ++i) {
              const float have = out[j * stride + i];
              const float expected = i < m ? want[j * m + i] : kSentinel;
              if (have != expected && ++mismatches <= 5) {
                ADD_FAILURE() << "query " << j << " column " << i << ": got "
                              << have << ", want " << expected;
              }
            }
          }
          EXPECT_EQ(mismatches, 0);
        }
      }
    }
  }
}

TEST_F(CosineMaskedTest, DenseMatchesTheReferenceOnTheAdmittedRows) {
  const size_t nq = 5, n = 1500, d = 127;
  const auto q = testing::RandomMatrix(nq, d, 40);
  const auto t = testing::RandomMatrix(n, d, 41);
  const testing::OwnedRowMask owned = testing::RandomRowMask(n, 0.3, 11, 42);
  const size_t m = owned.count();
  const std::vector<float> kept =
      testing::KeptRows(t.data(), n, d, owned.admitted);
  const auto ref = testing::ReferenceCosine(q.data(), nq, kept.data(), m, d);
  ThreadPool pool(2);
  for (CosineKernel kernel : kKernels) {
    SCOPED_TRACE(CosineKernelName(kernel));
    std::vector<float> out(nq * m);
    ASSERT_TRUE(CosineDense({q.data(), nq, d}, {t.data(), n, d}, owned.mask(),
                            out.data(), m, 0, &pool, kernel)
                    .ok());
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_NEAR(out[i], ref[i], std::max(1e-5 * std::abs(ref[i]), 1e-6))
          << "entry " << i;
    }
  }
}

TEST_F(CosineMaskedTest, TopKIsTheUnmaskedSelectionAmongAdmittedRows) {
  struct Shape {
    size_t nq, n, d;
  };
  const Shape shapes[] = {{1, 4000, 64}, {2, 1800, 17}, {24, 2300, 48}};
  const auto pools = Pools();
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    const auto q = testing::RandomMatrix(s.nq, s.d, ++seed);
    const auto t = testing::RandomMatrix(s.n, s.d, ++seed);
    const MatrixView queries{q.data(), s.nq, s.d};
    const MatrixView targets{t.data(), s.n, s.d};
    for (CosineKernel kernel : kKernels) {
      std::vector<float> full(s.nq * s.n);
      ASSERT_TRUE(
          CosineDense(queries, targets, full.data(), s.n, 0, nullptr, kernel)
              .ok());
      for (const testing::OwnedRowMask& owned : Masks(s.n, ++seed)) {
        // k = 1, a usual k, and k beyond the admitted rows (so every
        // admitted row is listed); a min_score that cuts the lists short.
        for (uint32_t k : {1u, 10u, static_cast<uint32_t>(s.n + 5)}) {
          for (float min_score : {-2.0f, 0.1f}) {
            const uint32_t index_offset = 1000;
            const std::vector<TopKList> want = SelectAdmitted(
                full, s.nq, s.n, owned.admitted, k, min_score, index_offset);
            for (const auto& pool : pools) {
              SCOPED_TRACE(::testing::Message()
                           << CosineKernelName(kernel) << " Q=" << s.nq
                           << " N=" << s.n << " d=" << s.d << " k=" << k
                           << " min_score=" << min_score
                           << " pool=" << (pool ? pool->num_threads() : 0)
                           << " " << Describe(owned));
              std::vector<TopKList> top;
              ASSERT_TRUE(CosineTopK(queries, targets, owned.mask(), k,
                                     min_score, index_offset, pool.get(), &top,
                                     kernel)
                              .ok());
              ASSERT_EQ(top.size(), s.nq);
              for (size_t j = 0; j < s.nq; ++j) {
                ASSERT_EQ(top[j], want[j]) << "query " << j;
              }
            }
          }
        }
      }
    }
  }
}

TEST_F(CosineMaskedTest, AMaskThatAdmitsNoRowGivesEmptyResults) {
  const size_t n = 200, d = 16;
  const auto q = testing::RandomMatrix(3, d, 50);
  // Nothing admitted is read: not even a NaN in every row is an error.
  std::vector<float> t(n * d, std::numeric_limits<float>::quiet_NaN());
  const testing::OwnedRowMask none =
      testing::RowMaskOf(std::vector<bool>(n, false), 9);
  for (CosineKernel kernel : kKernels) {
    std::vector<float> out(3, kSentinel);
    ASSERT_TRUE(CosineDense({q.data(), 3, d}, {t.data(), n, d}, none.mask(),
                            out.data(), 0, 0, nullptr, kernel)
                    .ok());
    EXPECT_EQ(out, std::vector<float>(3, kSentinel));
    std::vector<TopKList> top(1, TopKList(2));
    ASSERT_TRUE(CosineTopK({q.data(), 3, d}, {t.data(), n, d}, none.mask(), 5,
                           -2.0f, 0, nullptr, &top, kernel)
                    .ok());
    EXPECT_EQ(top, std::vector<TopKList>(3));
  }
}

// Sparse masks gather the admitted rows; dense ones (the panel kernel
// scores most of their windows in place, excluded rows included) must not
// let an excluded row's values show either.
class CosineMaskedDensityTest : public ::testing::TestWithParam<double> {};

INSTANTIATE_TEST_SUITE_P(SparseAndDense, CosineMaskedDensityTest,
                         ::testing::Values(0.5, 0.95));

TEST_P(CosineMaskedDensityTest, NonFiniteValuesInExcludedRowsAreNotRead) {
  const size_t nq = 17, n = 3000, d = 24;
  const auto q = testing::RandomMatrix(nq, d, 60);
  const auto clean = testing::RandomMatrix(n, d, 61);
  const testing::OwnedRowMask owned =
      testing::RandomRowMask(n, GetParam(), 3, 62);
  std::vector<float> dirty(clean);
  for (size_t r = 0; r < n; ++r) {
    if (owned.admitted[r]) continue;
    dirty[r * d + r % d] = r % 3 == 0 ? std::numeric_limits<float>::infinity()
                           : r % 3 == 1
                               ? std::numeric_limits<float>::quiet_NaN()
                               : 1e30f;  // overflowing norm
  }
  const size_t m = owned.count();
  ThreadPool pool(2);
  for (CosineKernel kernel : kKernels) {
    SCOPED_TRACE(CosineKernelName(kernel));
    std::vector<float> want(nq * m), got(nq * m);
    ASSERT_TRUE(CosineDense({q.data(), nq, d}, {clean.data(), n, d},
                            owned.mask(), want.data(), m, 0, &pool, kernel)
                    .ok());
    ASSERT_TRUE(CosineDense({q.data(), nq, d}, {dirty.data(), n, d},
                            owned.mask(), got.data(), m, 0, &pool, kernel)
                    .ok());
    EXPECT_TRUE(got == want);
    std::vector<TopKList> want_top, got_top;
    ASSERT_TRUE(CosineTopK({q.data(), nq, d}, {clean.data(), n, d},
                           owned.mask(), 7, -2.0f, 0, &pool, &want_top, kernel)
                    .ok());
    ASSERT_TRUE(CosineTopK({q.data(), nq, d}, {dirty.data(), n, d},
                           owned.mask(), 7, -2.0f, 0, &pool, &got_top, kernel)
                    .ok());
    EXPECT_EQ(got_top, want_top);
  }
}

TEST_F(CosineMaskedTest, TheLowestBadAdmittedRowIsReported) {
  const size_t n = 6000, d = 20;
  const auto q = testing::RandomMatrix(20, d, 70);
  auto t = testing::RandomMatrix(n, d, 71);
  std::vector<bool> admitted(n, true);
  // Row 100 is bad but excluded; the lowest bad admitted row is 2345, and
  // later tasks meet bad admitted rows of their own sooner.
  admitted[100] = false;
  t[100 * d] = std::numeric_limits<float>::quiet_NaN();
  for (size_t r = 1; r < n; r += 7) admitted[r] = false;
  admitted[2345] = true;
  t[2345 * d + 4] = std::numeric_limits<float>::infinity();
  for (size_t r = 3000; r < n; r += 50) {
    admitted[r] = true;
    t[r * d + 1] = std::numeric_limits<float>::quiet_NaN();
  }
  const testing::OwnedRowMask owned = testing::RowMaskOf(admitted, 61);
  const std::string message =
      "targets row 2845 contains a non-finite value at column 4";
  for (const auto& pool : Pools()) {
    for (CosineKernel kernel : kKernels) {
      SCOPED_TRACE(::testing::Message() << CosineKernelName(kernel) << " pool="
                                        << (pool ? pool->num_threads() : 0));
      std::vector<float> out(20 * n);
      absl::Status status =
          CosineDense({q.data(), 20, d}, {t.data(), n, d}, owned.mask(),
                      out.data(), n, 500, pool.get(), kernel);
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(status.message(), message);
      std::vector<TopKList> top;
      status = CosineTopK({q.data(), 20, d}, {t.data(), n, d}, owned.mask(), 3,
                          -2.0f, 500, pool.get(), &top, kernel);
      EXPECT_EQ(status.message(), message);
    }
  }
}

TEST_F(CosineMaskedTest, TinyAdmittedRowsAreRescoredAsWithoutAMask) {
  const size_t nq = 20, n = 300, d = 40;
  const auto q = testing::RandomMatrix(nq, d, 80);
  auto t = testing::RandomMatrix(n, d, 81);
  for (size_t c = 0; c < d; ++c) {
    t[3 * d + c] *= 1e-25f;  // squares underflow float32
    t[17 * d + c] = 0.0f;
  }
  std::vector<bool> admitted(n, false);
  for (size_t r : {size_t{0}, size_t{3}, size_t{17}, size_t{18}, size_t{250}}) {
    admitted[r] = true;
  }
  const testing::OwnedRowMask owned = testing::RowMaskOf(admitted, 0);
  for (CosineKernel kernel : kKernels) {
    SCOPED_TRACE(CosineKernelName(kernel));
    std::vector<float> full(nq * n), out(nq * 5);
    ASSERT_TRUE(CosineDense({q.data(), nq, d}, {t.data(), n, d}, full.data(), n,
                            0, nullptr, kernel)
                    .ok());
    ASSERT_TRUE(CosineDense({q.data(), nq, d}, {t.data(), n, d}, owned.mask(),
                            out.data(), 5, 0, nullptr, kernel)
                    .ok());
    EXPECT_EQ(out, DropExcluded(full, nq, n, admitted));
    for (size_t j = 0; j < nq; ++j) EXPECT_EQ(out[j * 5 + 2], 0.0f);
  }
}

// How the dispatch layer splits targets: the halves of the targets with the
// halves of the mask (RowMask::Rows, offsets no longer multiples of 64) and
// index offsets give the whole call's lists once merged.
TEST_F(CosineMaskedTest, SlicedTargetsWithSlicedMasksGiveTheWholeResult) {
  const size_t nq = 4, n = 2000, d = 32, split = 777;
  const auto q = testing::RandomMatrix(nq, d, 90);
  const auto t = testing::RandomMatrix(n, d, 91);
  const testing::OwnedRowMask owned = testing::RandomRowMask(n, 0.2, 0, 92);
  const MatrixView queries{q.data(), nq, d};
  const MatrixView targets{t.data(), n, d};
  for (CosineKernel kernel : kKernels) {
    SCOPED_TRACE(CosineKernelName(kernel));
    std::vector<TopKList> whole, first, second;
    ASSERT_TRUE(CosineTopK(queries, targets, owned.mask(), 8, -2.0f, 0, nullptr,
                           &whole, kernel)
                    .ok());
    ASSERT_TRUE(CosineTopK(queries, targets.Rows(0, split),
                           owned.mask().Rows(0, split), 8, -2.0f, 0, nullptr,
                           &first, kernel)
                    .ok());
    ASSERT_TRUE(CosineTopK(queries, targets.Rows(split, n),
                           owned.mask().Rows(split, n), 8, -2.0f, split,
                           nullptr, &second, kernel)
                    .ok());
    for (size_t j = 0; j < nq; ++j) {
      TopKList merged = first[j];
      merged.insert(merged.end(), second[j].begin(), second[j].end());
      std::sort(merged.begin(), merged.end(), BetterThan);
      merged.resize(8);
      EXPECT_EQ(merged, whole[j]) << "query " << j;
    }
    // Dense: the second half's scores land after the first half's admitted
    // rows.
    const size_t m = owned.count();
    const size_t m_first =
        testing::RowMaskOf(std::vector<bool>(owned.admitted.begin(),
                                             owned.admitted.begin() + split),
                           0)
            .count();
    std::vector<float> all(nq * m), parts(nq * m);
    ASSERT_TRUE(CosineDense(queries, targets, owned.mask(), all.data(), m, 0,
                            nullptr, kernel)
                    .ok());
    ASSERT_TRUE(CosineDense(queries, targets.Rows(0, split),
                            owned.mask().Rows(0, split), parts.data(), m, 0,
                            nullptr, kernel)
                    .ok());
    ASSERT_TRUE(CosineDense(queries, targets.Rows(split, n),
                            owned.mask().Rows(split, n), parts.data() + m_first,
                            m, split, nullptr, kernel)
                    .ok());
    EXPECT_EQ(parts, all);
  }
}

TEST_F(CosineMaskedTest, BadMasksAndNarrowStridesAreInvalidArgument) {
  const auto q = testing::RandomMatrix(2, 8, 95);
  const auto t = testing::RandomMatrix(30, 8, 96);
  const testing::OwnedRowMask short_mask =
      testing::RowMaskOf(std::vector<bool>(29, true), 0);
  std::vector<float> out(60);
  absl::Status status =
      CosineDense({q.data(), 2, 8}, {t.data(), 30, 8}, short_mask.mask(),
                  out.data(), 30, 0, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("row mask"));
  std::vector<TopKList> top;
  status = CosineTopK({q.data(), 2, 8}, {t.data(), 30, 8}, short_mask.mask(), 3,
                      -2.0f, 0, nullptr, &top);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);

  std::vector<bool> half(30);
  for (size_t r = 0; r < 30; r += 2) half[r] = true;
  const testing::OwnedRowMask owned = testing::RowMaskOf(half, 0);
  status = CosineDense({q.data(), 2, 8}, {t.data(), 30, 8}, owned.mask(),
                       out.data(), 14, 0, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "out_stride 14 is less than the 15 admitted target rows");
  EXPECT_TRUE(CosineDense({q.data(), 2, 8}, {t.data(), 30, 8}, owned.mask(),
                          out.data(), 15, 0, nullptr)
                  .ok());
}

}  // namespace
}  // namespace engram::kernels::cpu
