// The cosine calls on a lane (kernels/cuda/cosine_pipeline.h).
#include "kernels/cuda/cosine_pipeline.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "kernels/cuda/cosine_device.h"
#include "kernels/cuda/cosine_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane.h"
#include "kernels/cuda/resident_matrices.h"
#include "kernels/cuda/row_mask_kernels.h"
#include "kernels/cuda/topk_kernels.h"
#include "kernels/cuda/topk_lists.h"
#include "kernels/query_preparation.h"
#include "kernels/row_checks.h"
#include "kernels/row_mask.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {
namespace {

constexpr unsigned long long kNoBadRow = ~0ull;

absl::Status EnsureCublas(const LaneContext& ctx, Lane& lane) {
  if (ctx.cublas == nullptr || lane.cublas != nullptr) return absl::OkStatus();
  ENGRAM_ASSIGN_OR_RETURN(
      lane.cublas,
      ctx.cublas->CreateHandle(lane.compute.get(), ctx.options->allow_tf32));
  return absl::OkStatus();
}

// How `q` queries are scored on `lane`: cuBLAS from gemm_min_queries on
// when it loaded (its handle made on first use), else the fused kernel.
absl::StatusOr<TileScoring> ScoringFor(const LaneContext& ctx, Lane& lane,
                                       size_t q) {
  TileScoring scoring;
  if (q >= ctx.options->gemm_min_queries && ctx.cublas != nullptr) {
    ENGRAM_RETURN_IF_ERROR(EnsureCublas(ctx, lane));
    scoring.cublas = ctx.cublas;
    scoring.handle = lane.cublas;
  }
  scoring.gemm_min_queries = ctx.options->gemm_min_queries;
  return scoring;
}

// The device top-k of a q x n score matrix (row stride n) into *top; only
// q * min(k, n) keys cross PCIe. Column c of the matrix is target row
// row_of(c).
template <typename RowOf>
absl::Status SelectTopK(const LaneContext& ctx, Lane& lane, const float* scores,
                        size_t q, size_t n, uint32_t k, float min_score,
                        uint32_t index_offset, const RowOf& row_of,
                        std::vector<TopKList>* top) {
  cudaStream_t compute = lane.compute.get();
  const uint32_t keep = static_cast<uint32_t>(std::min<size_t>(k, n));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned char> select_workspace,
      DeviceArray<unsigned char>::Allocate(
          TopKWorkspaceBytes(static_cast<uint32_t>(q)), ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> keys,
      DeviceArray<unsigned long long>::Allocate(q * keep, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> counts,
      DeviceArray<uint32_t>::Allocate(q, ctx.pool, compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchTopKSelect(
      scores, static_cast<uint32_t>(q), static_cast<uint32_t>(n), n, keep,
      min_score, select_workspace.get(), keys.get(), counts.get(), compute));
  std::vector<unsigned long long> host_keys(q * keep);
  std::vector<uint32_t> host_counts(q);
  ENGRAM_RETURN_IF_ERROR(
      Download(ctx, lane, host_keys.data(), keys.get(), keys.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Download(ctx, lane, host_counts.data(), counts.get(), counts.bytes()));
  top->clear();
  top->reserve(q);
  for (size_t j = 0; j < q; ++j) {
    TopKList list = DecodeTopKList(host_keys.data() + j * keep,
                                   std::min(host_counts[j], keep), 0);
    // Columns and rows are in the same order, so the list stays best first
    // with ties by the lower row.
    for (ScoredIndex& entry : list) {
      entry.index = index_offset + row_of(entry.index);
    }
    top->push_back(std::move(list));
  }
  return absl::OkStatus();
}

// Copies a q x n score matrix (row stride n) on the device to `out`, rows
// out_stride apart.
absl::Status DownloadScores(const LaneContext& ctx, Lane& lane,
                            const float* scores, size_t q, size_t n, float* out,
                            size_t out_stride) {
  if (out_stride == n) {
    return Download(ctx, lane, out, scores, q * n * sizeof(float));
  }
  for (size_t j = 0; j < q; ++j) {
    ENGRAM_RETURN_IF_ERROR(Download(ctx, lane, out + j * out_stride,
                                    scores + j * n, n * sizeof(float)));
  }
  return absl::OkStatus();
}

// CosineResidentOnLane for a mask that excludes some rows and admits m >= 1.
absl::Status CosineResidentMaskedOnLane(const LaneContext& ctx, Lane& lane,
                                        const PreparedQueries& pq,
                                        const ResidentMatrix& targets,
                                        const RowMask& mask, float* out,
                                        size_t out_stride, uint32_t k,
                                        float min_score, uint32_t index_offset,
                                        std::vector<TopKList>* top) {
  const bool dense = top == nullptr;
  const size_t q = pq.rows;
  const size_t d = targets.cols;
  const PackedRowMask packed = PackRowMask(mask, targets.rows);
  const size_t m = packed.admitted;
  const size_t tile_rows = std::max<size_t>(
      1, std::min(m, ctx.options->staging_bytes / (d * sizeof(float))));
  cudaStream_t compute = lane.compute.get();

  ENGRAM_ASSIGN_OR_RETURN(const TileScoring scoring, ScoringFor(ctx, lane, q));
  const bool gemm = UsesGemm(scoring, static_cast<uint32_t>(q));

  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> query_values,
      DeviceArray<float>::Allocate(q * d, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> query_inv_norm,
                          DeviceArray<double>::Allocate(q, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint64_t> words,
      DeviceArray<uint64_t>::Allocate(packed.words.size(), ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> first,
      DeviceArray<uint32_t>::Allocate(packed.first.size(), ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> rows,
      DeviceArray<uint32_t>::Allocate(m, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> tile,
      DeviceArray<float>::Allocate(tile_rows * d, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> scores,
      DeviceArray<float>::Allocate(q * m, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<double> inv_norm,
      DeviceArray<double>::Allocate(gemm ? tile_rows : 0, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> tiny_rows,
      DeviceArray<uint32_t>::Allocate(tile_rows + 1, ctx.pool, compute));
  CopiesFinishFirst finish(lane);

  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_values.get(), pq.values.data(),
                                query_values.bytes()));
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_inv_norm.get(),
                                pq.inv_norm.data(), query_inv_norm.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Upload(ctx, lane, words.get(), packed.words.data(), words.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Upload(ctx, lane, first.get(), packed.first.data(), first.bytes()));
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchExpandRowMask(
      words.get(), first.get(), static_cast<uint32_t>(packed.words.size()),
      rows.get(), compute));
  const DeviceQueries device_queries{query_values.get(), query_inv_norm.get(),
                                     static_cast<uint32_t>(q),
                                     static_cast<uint32_t>(d)};
  // A resident matrix holds no row with a non-finite norm (its upload
  // refuses them), so there is no bad row to report.
  TileWorkspace workspace;
  workspace.flags.tiny_count = tiny_rows.get();
  workspace.flags.tiny_rows = tiny_rows.get() + 1;
  workspace.inv_norm = inv_norm.get();
  const float* values = targets.view().values;
  // One tile buffer: each gather waits, in stream order, for the scoring of
  // the tile before.
  for (size_t begin = 0; begin < m; begin += tile_rows) {
    const size_t count = std::min(tile_rows, m - begin);
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchGatherRows(values, static_cast<uint32_t>(d), rows.get() + begin,
                         static_cast<uint32_t>(count), tile.get(), compute));
    ENGRAM_RETURN_IF_ERROR(
        ScoreTile(device_queries, tile.get(), static_cast<uint32_t>(count),
                  scores.get() + begin, m, begin, workspace, scoring, compute));
  }
  if (!dense) {
    return SelectTopK(
        ctx, lane, scores.get(), q, m, k, min_score, index_offset,
        [&](uint32_t c) { return packed.Row(c); }, top);
  }
  return DownloadScores(ctx, lane, scores.get(), q, m, out, out_stride);
}

}  // namespace

absl::Status CosineOnLane(const LaneContext& ctx, Lane& lane,
                          const PreparedQueries& pq, const MatrixView& targets,
                          const std::vector<uint32_t>* admitted, float* out,
                          size_t out_stride, uint32_t k, float min_score,
                          uint32_t index_offset, std::vector<TopKList>* top) {
  const bool dense = top == nullptr;
  const size_t q = pq.rows;
  // The rows scored, tile by tile: all targets, or the admitted ones.
  const size_t n = admitted != nullptr ? admitted->size() : targets.rows;
  const auto row_of = [admitted](size_t c) {
    return admitted != nullptr ? (*admitted)[c] : static_cast<uint32_t>(c);
  };
  const size_t d = targets.cols;
  const size_t row_bytes = d * sizeof(float);
  ENGRAM_RETURN_IF_ERROR(
      EnsureStaging(lane, std::max({ctx.options->staging_bytes, row_bytes,
                                    dense ? q * sizeof(float) : size_t{0}})));
  const size_t slot = lane.slot_bytes();
  size_t tile_rows = std::min(n, slot / row_bytes);
  if (dense) tile_rows = std::min(tile_rows, slot / (q * sizeof(float)));
  const size_t tiles = (n + tile_rows - 1) / tile_rows;
  cudaStream_t compute = lane.compute.get();

  ENGRAM_ASSIGN_OR_RETURN(const TileScoring scoring, ScoringFor(ctx, lane, q));
  const bool gemm = UsesGemm(scoring, static_cast<uint32_t>(q));

  // Device memory, all from the pool in stream order on `compute`.
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> query_values,
      DeviceArray<float>::Allocate(q * d, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> query_inv_norm,
                          DeviceArray<double>::Allocate(q, ctx.pool, compute));
  DeviceArray<float> tile[2];
  DeviceArray<float> scores[2];
  for (int s = 0; s < (tiles > 1 ? 2 : 1); ++s) {
    ENGRAM_ASSIGN_OR_RETURN(tile[s], DeviceArray<float>::Allocate(
                                         tile_rows * d, ctx.pool, compute));
    if (dense) {
      ENGRAM_ASSIGN_OR_RETURN(scores[s], DeviceArray<float>::Allocate(
                                             q * tile_rows, ctx.pool, compute));
    }
  }
  if (!dense) {
    ENGRAM_ASSIGN_OR_RETURN(
        scores[0], DeviceArray<float>::Allocate(q * n, ctx.pool, compute));
  }
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<double> inv_norm,
      DeviceArray<double>::Allocate(gemm ? tile_rows : 0, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> bad_row,
      DeviceArray<unsigned long long>::Allocate(1, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> tiny_rows,
      DeviceArray<uint32_t>::Allocate(tile_rows + 1, ctx.pool, compute));
  CopiesFinishFirst finish(lane);

  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_values.get(), pq.values.data(),
                                query_values.bytes()));
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_inv_norm.get(),
                                pq.inv_norm.data(), query_inv_norm.bytes()));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(bad_row.get(), 0xff, bad_row.bytes(), compute));
  // The tiles were allocated on `compute`; the copy stream writes them after
  // waiting on tile_free.
  for (int s = 0; s < 2; ++s) {
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.tile_free[s].get(), compute));
  }
  const DeviceQueries device_queries{query_values.get(), query_inv_norm.get(),
                                     static_cast<uint32_t>(q),
                                     static_cast<uint32_t>(d)};
  TileWorkspace workspace;
  workspace.flags.bad_row = bad_row.get();
  workspace.flags.tiny_count = tiny_rows.get();
  workspace.flags.tiny_rows = tiny_rows.get() + 1;
  workspace.inv_norm = inv_norm.get();

  // Scatters tile t's dense scores from staging into `out`.
  auto consume = [&](size_t t) -> absl::Status {
    const int s = static_cast<int>(t % 2);
    const size_t first = t * tile_rows;
    const size_t rows = std::min(tile_rows, n - first);
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.out_done[s].get()));
    const float* staged = static_cast<const float*>(lane.out[s].get());
    for (size_t j = 0; j < q; ++j) {
      std::memcpy(out + j * out_stride + first, staged + j * rows,
                  rows * sizeof(float));
    }
    return absl::OkStatus();
  };
  for (size_t t = 0; t < tiles; ++t) {
    const int s = static_cast<int>(t % 2);
    const size_t first = t * tile_rows;
    const size_t rows = std::min(tile_rows, n - first);
    const size_t bytes = rows * row_bytes;
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.in_done[s].get()));
    if (admitted != nullptr) {
      GatherRowsHost(ctx, static_cast<float*>(lane.in[s].get()), targets,
                     admitted->data() + first, rows);
    } else {
      CopyHost(ctx, lane.in[s].get(), targets.row(first), bytes);
    }
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(lane.copy.get(), lane.tile_free[s].get(), 0));
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tile[s].get(), lane.in[s].get(),
                                                bytes, cudaMemcpyHostToDevice,
                                                lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.in_done[s].get(), lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(compute, lane.in_done[s].get(), 0));
    float* tile_scores = dense ? scores[s].get() : scores[0].get() + first;
    ENGRAM_RETURN_IF_ERROR(ScoreTile(
        device_queries, tile[s].get(), static_cast<uint32_t>(rows), tile_scores,
        dense ? rows : n, first, workspace, scoring, compute));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.tile_free[s].get(), compute));
    if (dense) {
      ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          lane.out[s].get(), scores[s].get(), q * rows * sizeof(float),
          cudaMemcpyDeviceToHost, compute));
      ENGRAM_CUDA_RETURN_IF_ERROR(
          cudaEventRecord(lane.out_done[s].get(), compute));
      if (t > 0) ENGRAM_RETURN_IF_ERROR(consume(t - 1));
    }
  }
  if (dense) ENGRAM_RETURN_IF_ERROR(consume(tiles - 1));

  unsigned long long bad = kNoBadRow;
  ENGRAM_RETURN_IF_ERROR(Download(ctx, lane, &bad, bad_row.get(), sizeof(bad)));
  if (bad != kNoBadRow) {
    // Columns and rows are in the same order: the lowest bad column is the
    // lowest bad admitted row.
    const uint32_t row = row_of(bad);
    return NonFiniteRowError("targets", targets.row(row), d,
                             static_cast<uint64_t>(index_offset) + row);
  }
  if (dense) return absl::OkStatus();
  return SelectTopK(ctx, lane, scores[0].get(), q, n, k, min_score,
                    index_offset, row_of, top);
}

absl::Status CosineResidentOnLane(const LaneContext& ctx, Lane& lane,
                                  const PreparedQueries& pq,
                                  const ResidentMatrix& targets,
                                  const RowMask& mask, float* out,
                                  size_t out_stride, uint32_t k,
                                  float min_score, uint32_t index_offset,
                                  std::vector<TopKList>* top) {
  if (!mask.all()) {
    return CosineResidentMaskedOnLane(ctx, lane, pq, targets, mask, out,
                                      out_stride, k, min_score, index_offset,
                                      top);
  }
  const bool dense = top == nullptr;
  const size_t q = pq.rows;
  const size_t n = targets.rows;
  const size_t d = targets.cols;
  cudaStream_t compute = lane.compute.get();

  ENGRAM_ASSIGN_OR_RETURN(const TileScoring scoring, ScoringFor(ctx, lane, q));

  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> query_values,
      DeviceArray<float>::Allocate(q * d, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> query_inv_norm,
                          DeviceArray<double>::Allocate(q, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<float> scores,
      DeviceArray<float>::Allocate(q * n, ctx.pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_values.get(), pq.values.data(),
                                query_values.bytes()));
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, query_inv_norm.get(),
                                pq.inv_norm.data(), query_inv_norm.bytes()));
  const DeviceQueries device_queries{query_values.get(), query_inv_norm.get(),
                                     static_cast<uint32_t>(q),
                                     static_cast<uint32_t>(d)};
  ENGRAM_RETURN_IF_ERROR(ScoreResident(device_queries, targets.view(),
                                       scores.get(), n, scoring, compute));
  if (!dense) {
    return SelectTopK(
        ctx, lane, scores.get(), q, n, k, min_score, index_offset,
        [](uint32_t c) { return c; }, top);
  }
  return DownloadScores(ctx, lane, scores.get(), q, n, out, out_stride);
}

}  // namespace engram::kernels::cuda
