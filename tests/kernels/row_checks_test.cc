#include "kernels/row_checks.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "tests/testing/random_data.h"

namespace engram::kernels {
namespace {

using ::testing::HasSubstr;

// Each SIMD target the build has and the CPU runs, in turn.
class RowChecksTest : public ::testing::Test {
 protected:
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

double PlainSum(const float* row, size_t cols) {
  double sum = 0.0;
  for (size_t c = 0; c < cols; ++c) sum += static_cast<double>(row[c]) * row[c];
  return sum;
}

TEST_F(RowChecksTest, NormMatchesThePortableOrderBitForBitOnEveryTarget) {
  const std::vector<float> values = testing::RandomMatrix(1, 1000 * 1001, 7);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    size_t offset = 0;
    for (size_t cols = 1; cols <= 1000; ++cols) {
      // Rows at every alignment, as rows of odd widths lie in a segment.
      const float* row = values.data() + offset;
      offset += cols;
      double norm_sq = -1.0;
      ASSERT_TRUE(RowSquaredNormIsFinite(row, cols, &norm_sq)) << cols;
      EXPECT_EQ(norm_sq, internal::RowSquaredNormPortable(row, cols)) << cols;
    }
  }
}

TEST_F(RowChecksTest, NormIsAPlainDoubleSumUpToRounding) {
  const std::vector<float> values = testing::RandomMatrix(1, 1000 * 1001, 8);
  size_t offset = 0;
  for (size_t cols = 1; cols <= 1000; ++cols) {
    const float* row = values.data() + offset;
    offset += cols;
    double norm_sq = -1.0;
    ASSERT_TRUE(RowSquaredNormIsFinite(row, cols, &norm_sq));
    const double plain = PlainSum(row, cols);
    // Every term is positive, so either order is within cols ulps.
    EXPECT_NEAR(norm_sq, plain,
                plain * cols * std::numeric_limits<double>::epsilon())
        << cols;
    // What the stores keep: the float32 norm.
    EXPECT_NEAR(static_cast<float>(std::sqrt(norm_sq)),
                static_cast<float>(std::sqrt(plain)),
                std::sqrt(plain) * 2 * std::numeric_limits<float>::epsilon());
  }
}

TEST_F(RowChecksTest, NonFiniteValuesAnywhereAreRefusedOnEveryTarget) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    for (size_t cols : {1, 7, 16, 17, 33, 768, 1000}) {
      for (size_t at : {size_t{0}, cols / 2, cols - 1}) {
        for (float bad : {nan, inf, -inf}) {
          std::vector<float> row = testing::RandomMatrix(1, cols, cols);
          row[at] = bad;
          double norm_sq = 0.0;
          EXPECT_FALSE(RowSquaredNormIsFinite(row.data(), cols, &norm_sq))
              << cols << " " << at << " " << bad;
          const absl::Status status =
              CheckFiniteRow("vectors", row.data(), cols, 41);
          EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
          EXPECT_EQ(status.message(),
                    absl::StrCat("vectors row 41 contains a non-finite value "
                                 "at column ",
                                 at));
        }
      }
    }
  }
}

TEST_F(RowChecksTest, ANormThatOverflowsFloat32IsRefusedOnEveryTarget) {
  const float big = std::sqrt(std::numeric_limits<float>::max());
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    for (size_t cols : {2, 17, 768}) {
      // Each value's square fits a float32, their sum does not.
      std::vector<float> row(cols, 0.5f);
      row[0] = big;
      row[cols - 1] = big;
      double norm_sq = 0.0;
      EXPECT_FALSE(RowSquaredNormIsFinite(row.data(), cols, &norm_sq)) << cols;
      EXPECT_TRUE(std::isfinite(norm_sq));
      EXPECT_EQ(CheckFiniteRow("queries", row.data(), cols, 3).message(),
                "queries row 3: squared norm overflows float32");
      // One value alone is fine.
      row[0] = 0.5f;
      EXPECT_TRUE(RowSquaredNormIsFinite(row.data(), cols, &norm_sq)) << cols;
    }
  }
}

TEST_F(RowChecksTest, CheckFiniteRowsNamesTheFirstBadRow) {
  std::vector<float> rows = testing::RandomMatrix(5, 20, 3);
  rows[3 * 20 + 19] = std::numeric_limits<float>::infinity();
  rows[4 * 20] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(
      CheckFiniteRows("queries", MatrixView{rows.data(), 5, 20}).message(),
      HasSubstr("queries row 3 contains a non-finite value at "
                "column 19"));
}

}  // namespace
}  // namespace engram::kernels
