#include "kernels/cuda/cosine_device.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cuda/cuda_check.h"

namespace engram::kernels::cuda {

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

}  // namespace engram::kernels::cuda
