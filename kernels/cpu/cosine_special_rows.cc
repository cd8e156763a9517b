// The target rows the CPU cosine kernels leave to the host
// (kernels/cpu/cosine_special_rows.h).
#include "kernels/cpu/cosine_special_rows.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cosine_prep.h"
#include "kernels/row_checks.h"
#include "kernels/types.h"

namespace engram::kernels::cpu::cosine_internal {
namespace {

float ClampedScore(double dot, double inv_query_norm, double inv_target_norm) {
  if (inv_query_norm == 0.0 || inv_target_norm == 0.0) return 0.0f;
  return static_cast<float>(
      std::clamp(dot * inv_query_norm * inv_target_norm, -1.0, 1.0));
}

}  // namespace

void RescoreTinyRow(const CpuQueries& pq, const float* t, size_t d,
                    size_t first, size_t count, float* scores, size_t stride) {
  double norm_sq = 0.0;
  for (size_t c = 0; c < d; ++c) norm_sq += static_cast<double>(t[c]) * t[c];
  const double inv_t = norm_sq > 0.0 ? 1.0 / std::sqrt(norm_sq) : 0.0;
  for (size_t j = first; j < first + count; ++j) {
    const float* q = pq.values.data() + j * pq.stride;
    double dot = 0.0;
    for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
    scores[(j - first) * stride] = ClampedScore(dot, pq.inv_norm[j], inv_t);
  }
}

absl::Status BadTargetError(const MatrixView& targets, size_t row,
                            uint32_t index_offset) {
  return NonFiniteRowError("targets", targets.row(row), targets.cols,
                           static_cast<uint64_t>(index_offset) + row);
}

}  // namespace engram::kernels::cpu::cosine_internal
