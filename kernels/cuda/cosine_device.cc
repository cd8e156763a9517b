#include "kernels/cuda/cosine_device.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cosine_shape.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/status_macros.h"

namespace engram::kernels::gpu {

absl::Status PrepareQueries(const MatrixView& queries, PreparedQueries* out) {
  const size_t d = queries.cols;
  out->rows = queries.rows;
  out->cols = d;
  out->values.assign(queries.rows * d, 0.0f);
  out->inv_norm.assign(queries.rows, 0.0);
  for (size_t r = 0; r < queries.rows; ++r) {
    const float* row = queries.row(r);
    double check = 0.0;
    float max_abs = 0.0f;
    for (size_t c = 0; c < d; ++c) {
      check += static_cast<double>(row[c]) * row[c];
      max_abs = std::max(max_abs, std::abs(row[c]));
    }
    if (!(check <= std::numeric_limits<float>::max())) {
      return NonFiniteRowError("queries", row, d, r);
    }
    if (max_abs == 0.0f) continue;  // a zero query scores 0
    int exponent;
    std::frexp(max_abs, &exponent);
    float* scaled = out->values.data() + r * d;
    double norm_sq = 0.0;
    for (size_t c = 0; c < d; ++c) {
      scaled[c] = std::ldexp(row[c], -exponent);
      norm_sq += static_cast<double>(scaled[c]) * scaled[c];
    }
    out->inv_norm[r] = 1.0 / std::sqrt(norm_sq);
  }
  return absl::OkStatus();
}

bool UsesGemm(const TileScoring& scoring, uint32_t num_queries) {
  return scoring.cublas != nullptr && scoring.handle != nullptr &&
         num_queries >= scoring.gemm_min_queries;
}

absl::Status ScoreTile(const DeviceQueries& queries, const float* targets,
                       uint32_t rows, float* scores, size_t ld,
                       uint64_t row_base, const TileWorkspace& workspace,
                       const TileScoring& scoring, cudaStream_t stream) {
  if (rows == 0 || queries.rows == 0) return absl::OkStatus();
  const uint32_t d = queries.cols;
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(workspace.flags.tiny_count, 0, sizeof(uint32_t), stream));
  if (UsesGemm(scoring, queries.rows)) {
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchRowInverseNorms(targets, rows, d, workspace.inv_norm, row_base,
                              workspace.flags, stream));
    ENGRAM_RETURN_IF_ERROR(scoring.cublas->RowDots(
        scoring.handle, static_cast<int>(rows), static_cast<int>(queries.rows),
        static_cast<int>(d), targets, static_cast<int>(d), queries.values,
        static_cast<int>(d), scores, static_cast<int>(ld)));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchCosineEpilogue(queries.rows, queries.inv_norm, rows,
                             workspace.inv_norm, scores, ld, stream));
  } else {
    // Groups of kFusedMaxQueries queries; only the first reports the rows'
    // flags, the others skip the same rows.
    RowFlags flags = workspace.flags;
    for (uint32_t first = 0; first < queries.rows; first += kFusedMaxQueries) {
      const uint32_t count = std::min(kFusedMaxQueries, queries.rows - first);
      ENGRAM_CUDA_RETURN_IF_ERROR(
          LaunchCosineFused(queries.values + static_cast<size_t>(first) * d,
                            count, queries.inv_norm + first, targets, rows, d,
                            scores + first * ld, ld, row_base, flags, stream));
      flags = RowFlags{};
    }
  }
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchRescoreTinyRows(
      queries.values, queries.rows, queries.inv_norm, targets, d,
      workspace.flags, rows, scores, ld, stream));
  return absl::OkStatus();
}

absl::Status ScoreResident(const DeviceQueries& queries,
                           const ResidentRows& targets, float* scores,
                           size_t ld, const TileScoring& scoring,
                           cudaStream_t stream) {
  const uint32_t rows = targets.rows;
  if (rows == 0 || queries.rows == 0) return absl::OkStatus();
  const uint32_t d = queries.cols;
  if (UsesGemm(scoring, queries.rows)) {
    ENGRAM_RETURN_IF_ERROR(scoring.cublas->RowDots(
        scoring.handle, static_cast<int>(rows), static_cast<int>(queries.rows),
        static_cast<int>(d), targets.values, static_cast<int>(d),
        queries.values, static_cast<int>(d), scores, static_cast<int>(ld)));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchCosineEpilogue(queries.rows, queries.inv_norm, rows,
                             targets.inv_norm, scores, ld, stream));
  } else {
    for (uint32_t first = 0; first < queries.rows; first += kFusedMaxQueries) {
      const uint32_t count = std::min(kFusedMaxQueries, queries.rows - first);
      ENGRAM_CUDA_RETURN_IF_ERROR(LaunchCosineFused(
          queries.values + static_cast<size_t>(first) * d, count,
          queries.inv_norm + first, targets.values, rows, d,
          scores + first * ld, ld, 0, RowFlags{}, stream));
    }
  }
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchRescoreTinyRows(
      queries.values, queries.rows, queries.inv_norm, targets.values, d,
      targets.tiny, rows, scores, ld, stream));
  return absl::OkStatus();
}

}  // namespace engram::kernels::gpu
