#include "kernels/row_checks.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace engram::kernels {

bool RowSquaredNormIsFinite(const float* row, size_t cols, double* norm_sq) {
  double sum = 0.0;
  for (size_t c = 0; c < cols; ++c) {
    sum += static_cast<double>(row[c]) * row[c];
  }
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
