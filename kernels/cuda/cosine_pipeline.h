// Internal to kernels/cuda: GpuContext's cosine calls (kernels/gpu_device.h)
// on a lane, against targets in host memory or resident on the device
// (resident_matrices.h). Dense when `top` is null: scores into `out`, rows
// `out_stride` apart. Else top-k: the best min(k, n) targets with score >=
// min_score per query into *top, selected on the device. Indices and the
// row named by a bad-row error are offset by `index_offset`. The caller
// checks the arguments (kernels/cosine_shape.h, kernels/row_mask.h), passes
// a mask only when it excludes some row and at least one row is admitted,
// and gives back the lane.
#ifndef ENGRAM_KERNELS_CUDA_COSINE_PIPELINE_H_
#define ENGRAM_KERNELS_CUDA_COSINE_PIPELINE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/lane.h"
#include "kernels/cuda/resident_matrices.h"
#include "kernels/query_preparation.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

// Scores the targets a tile at a time. Tile t's rows go host -> staging
// in[t % 2] (host memcpy) -> device tile t % 2 (copy stream) -> scores
// (compute stream); dense scores come back through staging out[t % 2]. While
// the device scores tile t, the host empties tile t - 1's scores and fills
// the staging for tile t + 1, whose copy runs beside the compute. With
// `admitted` (a row mask's admitted rows, increasing), only those rows are
// scored: the host gathers them into the staging tiles, the scores are
// compacted (column j for admitted[j]) and top-k indices map back to rows.
absl::Status CosineOnLane(const LaneContext& ctx, Lane& lane,
                          const PreparedQueries& pq, const MatrixView& targets,
                          const std::vector<uint32_t>* admitted, float* out,
                          size_t out_stride, uint32_t k, float min_score,
                          uint32_t index_offset, std::vector<TopKList>* top);

// Cosine against a resident matrix in one pass, with no staging of targets
// and no norm pass: only the queries go in, and the scores (dense) or q * k
// keys (top-k) come out. The score matrix is the whole q x n block, as the
// top-k path already allocates it; the executor's footprint
// (CosineFootprint) counts it per query. With a mask that does not admit
// every row, the packed mask (kernels/row_mask.h) goes in too, the device
// expands it to the admitted rows' indices and gathers those rows a tile at
// a time, and each tile is scored as copied targets are (norm pass
// included), into a q x m block for the m admitted rows.
absl::Status CosineResidentOnLane(const LaneContext& ctx, Lane& lane,
                                  const PreparedQueries& pq,
                                  const ResidentMatrix& targets,
                                  const RowMask& mask, float* out,
                                  size_t out_stride, uint32_t k,
                                  float min_score, uint32_t index_offset,
                                  std::vector<TopKList>* top);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_COSINE_PIPELINE_H_
