// Cosine scores of target rows already on the device: the fused one-pass
// kernel for few queries, cuBLAS SGEMM between a norm pass and a scoring
// epilogue for many. GpuContext runs it on each tile it copies in; the
// benchmarks run it on data kept on the device.
//
// This header needs the CUDA headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_COSINE_DEVICE_H_
#define ENGRAM_KERNELS_CUDA_COSINE_DEVICE_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/cosine_kernels.h"
#include "kernels/cuda/cublas_loader.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

// Prepared queries on the device.
struct DeviceQueries {
  const float* values = nullptr;  // rows x cols
  const double* inv_norm = nullptr;
  uint32_t rows = 0;
  uint32_t cols = 0;
};

// How a tile is scored: cuBLAS (with a handle on the stream) when the
// queries are at least gemm_min_queries, else the fused kernel.
struct TileScoring {
  const Cublas* cublas = nullptr;  // null: always fused
  cublasHandle_t handle = nullptr;
  uint32_t gemm_min_queries = 17;
};

// Device workspace a tile of `rows` rows needs besides its scores: the row
// flags and, for the GEMM path, the rows' inverse norms.
struct TileWorkspace {
  RowFlags flags;              // bad_row initialised to ~0 by the caller
  double* inv_norm = nullptr;  // rows entries
};

// Scores target rows [0, rows) at `targets` (row stride queries.cols) into
// scores[j * ld + r], rows with a non-finite squared norm reported in
// workspace.flags.bad_row as row_base + r. Enqueued on `stream`.
absl::Status ScoreTile(const DeviceQueries& queries, const float* targets,
                       uint32_t rows, float* scores, size_t ld,
                       uint64_t row_base, const TileWorkspace& workspace,
                       const TileScoring& scoring, cudaStream_t stream);

// Whether ScoreTile uses cuBLAS for this many queries.
bool UsesGemm(const TileScoring& scoring, uint32_t num_queries);

// Target rows kept on the device (GpuContext::UploadResident) with what the
// norm pass (LaunchRowInverseNorms, the many-query path's first step) found
// once at upload: each row's inverse norm (0 for a tiny row) and the rows to
// rescore in float64. No row has a non-finite squared norm (the upload
// refuses them).
struct ResidentRows {
  const float* values = nullptr;  // rows x d
  const double* inv_norm = nullptr;
  // tiny_rows / tiny_count as the norm pass listed them; only read.
  RowFlags tiny;
  uint32_t rows = 0;
};

// ScoreTile over resident rows, all at once (row_base 0), without a norm
// pass: cuBLAS and the epilogue use the stored inverse norms; the fused
// kernel (which gets each row's squared norm in the same pass anyway) is
// given no flags, so it leaves the tiny rows unscored, and the stored list
// has them rescored. The fused kernel finds exactly the stored tiny rows:
// its squared norm is the norm pass's to the bit (same threads per row, same
// vector loads, same fused multiply-adds in the same order), so no row is
// left unscored.
absl::Status ScoreResident(const DeviceQueries& queries,
                           const ResidentRows& targets, float* scores,
                           size_t ld, const TileScoring& scoring,
                           cudaStream_t stream);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_COSINE_DEVICE_H_
