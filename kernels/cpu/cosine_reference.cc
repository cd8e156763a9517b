// The scalar double-precision reference of the CPU cosine kernels
// (CosineDenseReference, kernels/cpu/cosine.h). It shares no arithmetic with
// the SIMD code it checks, only the error a bad target row gives.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cpu/cosine.h"
#include "kernels/cpu/cosine_special_rows.h"
#include "kernels/row_checks.h"
#include "kernels/types.h"

namespace engram::kernels::cpu {

using cosine_internal::BadTargetError;

absl::Status CosineDenseReference(const MatrixView& queries,
                                  const MatrixView& targets, float* out,
                                  size_t out_stride, uint32_t index_offset) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  ENGRAM_RETURN_IF_ERROR(
      CheckCosineOutStride(out_stride, targets.rows, /*masked=*/false));
  const size_t d = queries.cols;
  std::vector<double> query_norm(queries.rows);
  for (size_t j = 0; j < queries.rows; ++j) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(queries.row(j), d, &norm_sq)) {
      return NonFiniteRowError("queries", queries.row(j), d, j);
    }
    query_norm[j] = std::sqrt(norm_sq);
  }
  std::vector<double> target_norm(targets.rows);
  for (size_t r = 0; r < targets.rows; ++r) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(targets.row(r), d, &norm_sq)) {
      return BadTargetError(targets, r, index_offset);
    }
    target_norm[r] = std::sqrt(norm_sq);
  }
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  for (size_t j = 0; j < queries.rows; ++j) {
    const float* q = queries.row(j);
    for (size_t r = 0; r < targets.rows; ++r) {
      const float* t = targets.row(r);
      double dot = 0.0;
      for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
      const double denom = query_norm[j] * target_norm[r];
      out[j * out_stride + r] =
          denom == 0.0 ? 0.0f
                       : static_cast<float>(std::clamp(dot / denom, -1.0, 1.0));
    }
  }
  return absl::OkStatus();
}

}  // namespace engram::kernels::cpu
