// The cosine kernels and their launchers (cosine_kernels.h).
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <limits>

#include "kernels/cuda/cosine_kernels.h"

namespace engram::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Grid-stride kernels stop growing the grid here; more blocks only queue.
constexpr unsigned kMaxBlocks = 8192;

struct RowPass {
  const float* queries;
  uint32_t num_queries;
  const double* inv_query_norm;
  const float* targets;
  uint32_t rows;
  uint32_t d;
  float* scores;  // fused: the scores
  size_t ld;
  double* inv_norm;  // norms only: 1/|row|
  uint64_t row_base;
  float tiny;
  RowFlags flags;
};

// As the CPU computes it: (dot * inv_q) * inv_t in float64, clamped, 0 when
// either vector is zero.
__device__ __forceinline__ float ClampedScore(double dot, double inv_q,
                                              double inv_t) {
  if (inv_q == 0.0 || inv_t == 0.0) return 0.0f;
  const double s = __dmul_rn(__dmul_rn(dot, inv_q), inv_t);
  return __double2float_rn(fmin(fmax(s, -1.0), 1.0));
}

// Sums v over the `tpr` threads of a row group (a power of two). For
// tpr <= 32 the group is part of a warp and every thread ends with the sum;
// for more, the group's warps meet in `shared` (kWarps x kValues) and only
// the group's first thread has it. Every thread of the block must call this
// (it may __syncthreads()).
template <int kValues>
__device__ __forceinline__ void ReduceGroup(float (&v)[kValues], int tpr,
                                            float (*shared)[kValues]) {
  const int width = tpr < kWarp ? tpr : kWarp;
  for (int offset = width / 2; offset > 0; offset /= 2) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      v[i] += __shfl_xor_sync(kFullMask, v[i], offset);
    }
  }
  if (tpr <= kWarp) return;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) shared[warp][i] = v[i];
  }
  __syncthreads();
  const int warps_per_group = tpr / kWarp;
  if (threadIdx.x % tpr == 0) {
#pragma unroll
    for (int i = 0; i < kValues; ++i) {
      float sum = 0.0f;
      for (int w = 0; w < warps_per_group; ++w) sum += shared[warp + w][i];
      v[i] = sum;
    }
  }
  __syncthreads();
}

// One row group (tpr threads, a power of two from 4 to kBlock) per target
// row: the threads stride through the row, each loaded element feeding the
// squared norm and every query's dot product, so the row is read from memory
// once. kMaxQ == 0 computes the norm only (the many-query path). kVec reads
// float4s (d % 4 == 0, 16-byte aligned rows).
template <int kMaxQ, bool kVec>
__global__ void __launch_bounds__(kBlock)
    RowPassKernel(const RowPass p, const int tpr_log2) {
  constexpr int kValues = kMaxQ + 1;  // the dots, then the squared norm
  __shared__ float shared[kBlock / kWarp][kValues];
  const int tpr = 1 << tpr_log2;
  const int group = threadIdx.x >> tpr_log2;
  const int lane = threadIdx.x & (tpr - 1);
  const uint32_t groups = kBlock >> tpr_log2;
  const uint32_t nq = p.num_queries;
  // Block-uniform loop: every thread reaches ReduceGroup the same number of
  // times.
  for (uint64_t base = static_cast<uint64_t>(blockIdx.x) * groups;
       base < p.rows; base += static_cast<uint64_t>(gridDim.x) * groups) {
    const uint64_t r = base + group;
    const bool active = r < p.rows;
    float v[kValues];
#pragma unroll
    for (int i = 0; i < kValues; ++i) v[i] = 0.0f;
    if (active) {
      const float* row = p.targets + r * p.d;
      if constexpr (kVec) {
        const uint32_t dv = p.d / 4;
        const float4* row4 = reinterpret_cast<const float4*>(row);
        for (uint32_t i = lane; i < dv; i += tpr) {
          const float4 t = __ldg(row4 + i);
          float& norm = v[kMaxQ];
          norm = fmaf(t.x, t.x, norm);
          norm = fmaf(t.y, t.y, norm);
          norm = fmaf(t.z, t.z, norm);
          norm = fmaf(t.w, t.w, norm);
#pragma unroll
          for (int j = 0; j < kMaxQ; ++j) {
            if (j < nq) {
              const float4 q = __ldg(
                  reinterpret_cast<const float4*>(p.queries) + j * dv + i);
              v[j] = fmaf(t.x, q.x, v[j]);
              v[j] = fmaf(t.y, q.y, v[j]);
              v[j] = fmaf(t.z, q.z, v[j]);
              v[j] = fmaf(t.w, q.w, v[j]);
            }
          }
        }
      } else {
        for (uint32_t i = lane; i < p.d; i += tpr) {
          const float t = __ldg(row + i);
          v[kMaxQ] = fmaf(t, t, v[kMaxQ]);
#pragma unroll
          for (int j = 0; j < kMaxQ; ++j) {
            if (j < nq) v[j] = fmaf(t, __ldg(p.queries + j * p.d + i), v[j]);
          }
        }
      }
    }
    ReduceGroup<kValues>(v, tpr, shared);
    if (!active || lane != 0) continue;
    const float norm_sq = v[kMaxQ];
    if (!(norm_sq <= FLT_MAX)) {
      if constexpr (kMaxQ == 0) p.inv_norm[r] = 0.0;
      if (p.flags.bad_row != nullptr) {
        atomicMin(p.flags.bad_row,
                  static_cast<unsigned long long>(p.row_base + r));
      }
      continue;
    }
    if (norm_sq < p.tiny) {
      if (p.flags.tiny_rows != nullptr) {
        p.flags.tiny_rows[atomicAdd(p.flags.tiny_count, 1u)] =
            static_cast<uint32_t>(r);
      }
      if constexpr (kMaxQ == 0) p.inv_norm[r] = 0.0;
      continue;
    }
    const double inv_t = 1.0 / sqrt(static_cast<double>(norm_sq));
    if constexpr (kMaxQ == 0) {
      p.inv_norm[r] = inv_t;
    } else {
#pragma unroll
      for (int j = 0; j < kMaxQ; ++j) {
        if (j < nq) {
          p.scores[j * p.ld + r] = ClampedScore(static_cast<double>(v[j]),
                                                p.inv_query_norm[j], inv_t);
        }
      }
    }
  }
}

__global__ void __launch_bounds__(kBlock)
    EpilogueKernel(uint32_t num_queries, const double* inv_query_norm,
                   uint32_t rows, const double* inv_norm, float* scores,
                   size_t ld) {
  const uint64_t total = static_cast<uint64_t>(num_queries) * rows;
  for (uint64_t i =
           blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
       i < total; i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t j = i / rows;
    const uint64_t r = i % rows;
    float& s = scores[j * ld + r];
    s = ClampedScore(static_cast<double>(s), inv_query_norm[j], inv_norm[r]);
  }
}

// The block's sum of v, in every thread.
__device__ double BlockSum(double v, double* shared) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  const int warp = threadIdx.x / kWarp;
  if (threadIdx.x % kWarp == 0) shared[warp] = v;
  __syncthreads();
  double sum = 0.0;
  for (int w = 0; w < kBlock / kWarp; ++w) sum += shared[w];
  __syncthreads();
  return sum;
}

// One block per listed row: its norm and its dot products in float64.
__global__ void __launch_bounds__(kBlock)
    RescoreKernel(const float* queries, uint32_t num_queries,
                  const double* inv_query_norm, const float* targets,
                  uint32_t d, RowFlags flags, float* scores, size_t ld) {
  __shared__ double shared[kBlock / kWarp];
  const uint32_t count = *flags.tiny_count;
  for (uint32_t t = blockIdx.x; t < count; t += gridDim.x) {
    const uint32_t r = flags.tiny_rows[t];
    const float* row = targets + static_cast<uint64_t>(r) * d;
    double part = 0.0;
    for (uint32_t c = threadIdx.x; c < d; c += kBlock) {
      part += static_cast<double>(row[c]) * row[c];
    }
    const double norm_sq = BlockSum(part, shared);
    const double inv_t = norm_sq > 0.0 ? 1.0 / sqrt(norm_sq) : 0.0;
    for (uint32_t j = 0; j < num_queries; ++j) {
      const float* q = queries + static_cast<uint64_t>(j) * d;
      part = 0.0;
      for (uint32_t c = threadIdx.x; c < d; c += kBlock) {
        part += static_cast<double>(q[c]) * row[c];
      }
      const double dot = BlockSum(part, shared);
      if (threadIdx.x == 0) {
        scores[j * ld + r] = ClampedScore(dot, inv_query_norm[j], inv_t);
      }
    }
  }
}

unsigned BlocksFor(uint64_t items, uint64_t per_block) {
  const uint64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1            ? 1
                               : blocks > kMaxBlocks ? kMaxBlocks
                                                     : blocks);
}

// Threads per row: enough that each thread loads about eight elements (or
// float4s), at least 4 and at most the whole block.
int ThreadsPerRowLog2(uint32_t elements) {
  int log2 = 2;
  while (log2 < 8 && (uint64_t{1} << log2) * 8 < elements) ++log2;
  return log2;
}

bool Aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <int kMaxQ>
cudaError_t LaunchRowPass(const RowPass& p, cudaStream_t stream) {
  const bool vec = p.d % 4 == 0 && Aligned16(p.targets) &&
                   (kMaxQ == 0 || Aligned16(p.queries));
  const int tpr_log2 = ThreadsPerRowLog2(vec ? p.d / 4 : p.d);
  const unsigned blocks = BlocksFor(p.rows, kBlock >> tpr_log2);
  if (vec) {
    RowPassKernel<kMaxQ, true><<<blocks, kBlock, 0, stream>>>(p, tpr_log2);
  } else {
    RowPassKernel<kMaxQ, false><<<blocks, kBlock, 0, stream>>>(p, tpr_log2);
  }
  return cudaGetLastError();
}

}  // namespace

float TinyNormSquared(size_t d) {
  return static_cast<float>(static_cast<double>(d) *
                            std::numeric_limits<float>::min() /
                            std::numeric_limits<float>::epsilon());
}

cudaError_t LaunchCosineFused(const float* queries, uint32_t num_queries,
                              const double* inv_query_norm,
                              const float* targets, uint32_t rows, uint32_t d,
                              float* scores, size_t ld, uint64_t row_base,
                              const RowFlags& flags, cudaStream_t stream) {
  if (num_queries == 0 || num_queries > kFusedMaxQueries) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  const RowPass p{
      queries, num_queries, inv_query_norm,     targets, rows, d, scores, ld,
      nullptr, row_base,    TinyNormSquared(d), flags};
  return num_queries <= 4 ? LaunchRowPass<4>(p, stream)
                          : LaunchRowPass<kFusedMaxQueries>(p, stream);
}

cudaError_t LaunchRowInverseNorms(const float* targets, uint32_t rows,
                                  uint32_t d, double* inv_norm,
                                  uint64_t row_base, const RowFlags& flags,
                                  cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const RowPass p{nullptr,
                  0,
                  nullptr,
                  targets,
                  rows,
                  d,
                  nullptr,
                  0,
                  inv_norm,
                  row_base,
                  TinyNormSquared(d),
                  flags};
  return LaunchRowPass<0>(p, stream);
}

cudaError_t LaunchCosineEpilogue(uint32_t num_queries,
                                 const double* inv_query_norm, uint32_t rows,
                                 const double* inv_norm, float* scores,
                                 size_t ld, cudaStream_t stream) {
  const uint64_t total = static_cast<uint64_t>(num_queries) * rows;
  if (total == 0) return cudaSuccess;
  EpilogueKernel<<<BlocksFor(total, kBlock), kBlock, 0, stream>>>(
      num_queries, inv_query_norm, rows, inv_norm, scores, ld);
  return cudaGetLastError();
}

cudaError_t LaunchRescoreTinyRows(const float* queries, uint32_t num_queries,
                                  const double* inv_query_norm,
                                  const float* targets, uint32_t d,
                                  const RowFlags& flags, uint32_t max_rows,
                                  float* scores, size_t ld,
                                  cudaStream_t stream) {
  if (max_rows == 0 || num_queries == 0) return cudaSuccess;
  // Rows to rescore are rare: a few blocks take turns through the list.
  constexpr uint32_t kRescoreBlocks = 256;
  const unsigned blocks = std::min(max_rows, kRescoreBlocks);
  RescoreKernel<<<blocks, kBlock, 0, stream>>>(
      queries, num_queries, inv_query_norm, targets, d, flags, scores, ld);
  return cudaGetLastError();
}

cudaError_t CheckKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, RowPassKernel<4, true>);
}

}  // namespace engram::kernels::cuda
