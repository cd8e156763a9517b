#include "kernels/row_checks.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/row_checks-inl.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// The static target's pass; foreach_target.h compiled the others.
#include "kernels/row_checks-inl.h"

#if HWY_ONCE
namespace engram::kernels {

HWY_EXPORT(RowSquaredNorm);

namespace internal {

double FinishRowSquaredNorm(const float* row, size_t begin, size_t cols,
                            double* lanes) {
  for (size_t i = begin; i < cols; ++i) {
    lanes[i % kRowNormLanes] += static_cast<double>(row[i]) * row[i];
  }
  for (size_t width = kRowNormLanes / 2; width > 0; width /= 2) {
    for (size_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  }
  return lanes[0];
}

double RowSquaredNormPortable(const float* row, size_t cols) {
  double lanes[kRowNormLanes] = {};
  size_t i = 0;
  for (; i + kRowNormLanes <= cols; i += kRowNormLanes) {
    for (size_t j = 0; j < kRowNormLanes; ++j) {
      lanes[j] += static_cast<double>(row[i + j]) * row[i + j];
    }
  }
  return FinishRowSquaredNorm(row, i, cols, lanes);
}

}  // namespace internal

bool RowSquaredNormIsFinite(const float* row, size_t cols, double* norm_sq) {
  const double sum = HWY_DYNAMIC_DISPATCH(RowSquaredNorm)(row, cols);
  *norm_sq = sum;
  return sum <= std::numeric_limits<float>::max();  // false for NaN, too
}

absl::Status NonFiniteRowError(absl::string_view matrix, const float* row,
                               size_t cols, uint64_t reported_row) {
  for (size_t c = 0; c < cols; ++c) {
    if (!std::isfinite(row[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat(matrix, " row ", reported_row,
                       " contains a non-finite value at column ", c));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      matrix, " row ", reported_row, ": squared norm overflows float32"));
}

absl::Status CheckFiniteRow(absl::string_view matrix, const float* row,
                            size_t cols, uint64_t reported_row,
                            double* norm_sq) {
  double sum;
  if (!RowSquaredNormIsFinite(row, cols, &sum)) {
    return NonFiniteRowError(matrix, row, cols, reported_row);
  }
  if (norm_sq != nullptr) *norm_sq = sum;
  return absl::OkStatus();
}

absl::Status CheckFiniteRows(absl::string_view matrix, const MatrixView& rows) {
  for (size_t r = 0; r < rows.rows; ++r) {
    absl::Status status = CheckFiniteRow(matrix, rows.row(r), rows.cols, r);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace engram::kernels
#endif  // HWY_ONCE
