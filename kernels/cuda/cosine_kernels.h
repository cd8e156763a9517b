// Host launchers of the cosine kernels (kernels/cuda/cosine_kernels.cu).
//
// All pointers are device pointers; each launcher enqueues its work on
// `stream` and returns the launch's error, which the caller checks with
// ENGRAM_CUDA_RETURN_IF_ERROR (errors of the work itself surface at the next
// synchronisation). The kernels stay private to the .cu file; this header
// needs the CUDA headers but not nvcc.
//
// Scores follow kernels/cpu/cosine.h: queries are prepared on the host as the
// CPU prepares them (scaled by a power of two, 1/|q| in float64, 0 for a zero
// query); each target row's dot products and squared norm are summed in
// float32; the score is clamp(dot * (1/|q|) * (1/|t|), -1, 1) in float64.
// A row whose float32 squared norm is not finite is reported in
// RowFlags::bad_row; one whose squared norm may have underflowed (below
// TinyNormSquared(d), zero rows included) is listed in RowFlags::tiny_rows and
// must be rescored in float64 by LaunchRescoreTinyRows.
#ifndef ENGRAM_KERNELS_CUDA_COSINE_KERNELS_H_
#define ENGRAM_KERNELS_CUDA_COSINE_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace engram::kernels::cuda {

// Where a tile's bad and tiny rows go. A null field is not reported (a second
// pass over the same rows has reported them already).
struct RowFlags {
  // Atomic minimum of row_base + r over the rows r whose squared norm is not
  // finite; the caller initialises it to ~0.
  unsigned long long* bad_row = nullptr;
  // Tile-local indices of the rows to rescore in float64 (room for every row
  // of the tile), and how many there are; the caller zeroes the count.
  uint32_t* tiny_rows = nullptr;
  uint32_t* tiny_count = nullptr;
};

// The squared norm below which a float32 sum of d squares may have lost terms
// to underflow (the CPU kernel's threshold).
float TinyNormSquared(size_t d);

// The most queries one fused launch scores.
inline constexpr uint32_t kFusedMaxQueries = 16;

// One pass over each of `rows` target rows (d floats, row stride d): the dot
// products with num_queries <= kFusedMaxQueries queries (row stride d) and
// the row's squared norm, then scores[j * ld + r]. Bad and tiny rows are left
// unscored and reported in `flags`.
cudaError_t LaunchCosineFused(const float* queries, uint32_t num_queries,
                              const double* inv_query_norm,
                              const float* targets, uint32_t rows, uint32_t d,
                              float* scores, size_t ld, uint64_t row_base,
                              const RowFlags& flags, cudaStream_t stream);

// The many-query path's first step: inv_norm[r] = 1 / |row r| in float64
// from the float32 squared norm; bad and tiny rows are reported in `flags`
// (their inv_norm is 0).
cudaError_t LaunchRowInverseNorms(const float* targets, uint32_t rows,
                                  uint32_t d, double* inv_norm,
                                  uint64_t row_base, const RowFlags& flags,
                                  cudaStream_t stream);

// The many-query path's last step, in place: the dot products
// scores[j * ld + r] (from cuBLAS) become scores.
cudaError_t LaunchCosineEpilogue(uint32_t num_queries,
                                 const double* inv_query_norm, uint32_t rows,
                                 const double* inv_norm, float* scores,
                                 size_t ld, cudaStream_t stream);

// Rescores the rows listed in `flags` (at most max_rows) entirely in float64,
// against every query.
cudaError_t LaunchRescoreTinyRows(const float* queries, uint32_t num_queries,
                                  const double* inv_query_norm,
                                  const float* targets, uint32_t d,
                                  const RowFlags& flags, uint32_t max_rows,
                                  float* scores, size_t ld,
                                  cudaStream_t stream);

// cudaSuccess when this binary holds kernels the current device can run;
// cudaErrorNoKernelImageForDevice (or similar) when it does not.
cudaError_t CheckKernelImage();

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_COSINE_KERNELS_H_
