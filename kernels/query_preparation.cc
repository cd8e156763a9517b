#include "kernels/query_preparation.h"

#include <algorithm>
#include <cmath>

#include "kernels/row_checks.h"

namespace engram::kernels {

absl::Status PrepareQueries(const MatrixView& queries, size_t pad_floats,
                            PreparedQueries* out) {
  const size_t d = queries.cols;
  const size_t pad = std::max<size_t>(pad_floats, 1);
  out->rows = queries.rows;
  out->cols = d;
  out->stride = (d + pad - 1) / pad * pad;
  out->values.assign(out->rows * out->stride, 0.0f);
  out->inv_norm.assign(out->rows, 0.0);
  for (size_t r = 0; r < queries.rows; ++r) {
    const float* row = queries.row(r);
    absl::Status usable = CheckFiniteRow("queries", row, d, r);
    if (!usable.ok()) return usable;
    float max_abs = 0.0f;
    for (size_t c = 0; c < d; ++c)
      max_abs = std::max(max_abs, std::abs(row[c]));
    if (max_abs == 0.0f) continue;  // a zero query scores 0
    int exponent;
    std::frexp(max_abs, &exponent);
    float* scaled = out->values.data() + r * out->stride;
    double norm_sq = 0.0;
    for (size_t c = 0; c < d; ++c) {
      scaled[c] = std::ldexp(row[c], -exponent);
      norm_sq += static_cast<double>(scaled[c]) * scaled[c];
    }
    out->inv_norm[r] = 1.0 / std::sqrt(norm_sq);
  }
  return absl::OkStatus();
}

}  // namespace engram::kernels
