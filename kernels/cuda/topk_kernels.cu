// The top-k selection kernels and their launcher (topk_kernels.h).
#include <cstdint>

#include "kernels/cuda/topk_kernels.h"

namespace engram::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kBins = 256;
constexpr int kPasses = 8;  // 64-bit keys, 8 bits a pass
// Entries one block of the histogram and gather kernels covers.
constexpr uint32_t kPerBlock = kBlock * 16;
constexpr unsigned kMaxGridY = 65535;

// One row's progress through the passes.
struct RowState {
  unsigned long long prefix;  // the key bits decided so far
  uint32_t need;              // how many to take from the prefix's bucket
  uint32_t done;              // 1: keys >= prefix are exactly the best
};

// One past the last entry this block covers (64-bit: n may be near 2^32).
__device__ __forceinline__ uint32_t BlockEnd(uint32_t n) {
  const unsigned long long end =
      (static_cast<unsigned long long>(blockIdx.x) + 1) * kPerBlock;
  return end < n ? static_cast<uint32_t>(end) : n;
}

__device__ __forceinline__ unsigned long long Key(float score, uint32_t index) {
  // -0 and +0 are equal scores: give them one key order, by index.
  if (score == 0.0f) score = 0.0f;
  uint32_t bits = __float_as_uint(score);
  bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return (static_cast<unsigned long long>(bits) << 32) | (0xffffffffu - index);
}

__global__ void __launch_bounds__(kBlock)
    HistogramKernel(const float* scores, uint32_t rows, uint32_t n, size_t ld,
                    float min_score, const RowState* state, uint32_t* hist,
                    int pass) {
  __shared__ uint32_t bins[kBins];
  const int shift = 56 - 8 * pass;
  const unsigned long long high =
      pass == 0 ? 0ull : ~0ull << (shift + 8);  // bits decided before
  for (uint32_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const RowState s = state[row];
    if (s.done) continue;  // uniform across the block
    for (int b = threadIdx.x; b < kBins; b += kBlock) bins[b] = 0;
    __syncthreads();
    const float* r = scores + row * ld;
    const uint32_t end = BlockEnd(n);
    for (uint32_t i = blockIdx.x * kPerBlock + threadIdx.x; i < end;
         i += kBlock) {
      const float score = r[i];
      if (!(score >= min_score)) continue;
      const unsigned long long key = Key(score, i);
      if ((key & high) != (s.prefix & high)) continue;
      atomicAdd(&bins[(key >> shift) & (kBins - 1)], 1u);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < kBins; b += kBlock) {
      if (bins[b] != 0) atomicAdd(&hist[row * kBins + b], bins[b]);
    }
    __syncthreads();
  }
}

// One thread per row: picks the bucket holding the k-th best key and clears
// the row's histogram for the next pass.
__global__ void ChooseKernel(uint32_t rows, uint32_t k, RowState* state,
                             uint32_t* hist, uint32_t* counts, int pass) {
  const uint32_t row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  RowState s = state[row];
  uint32_t* h = hist + row * kBins;
  if (!s.done) {
    if (pass == 0) {
      uint32_t total = 0;
      for (int b = 0; b < kBins; ++b) total += h[b];
      counts[row] = total < k ? total : k;
      s.need = k;
      if (total <= k) s.done = 1;  // prefix 0: every eligible key
    }
    if (!s.done) {
      const int shift = 56 - 8 * pass;
      uint32_t above = 0;
      for (int b = kBins - 1; b >= 0; --b) {
        if (above + h[b] >= s.need) {
          s.prefix |= static_cast<unsigned long long>(b) << shift;
          s.need -= above;
          if (h[b] == s.need || pass == kPasses - 1) s.done = 1;
          break;
        }
        above += h[b];
      }
    }
    state[row] = s;
  }
  for (int b = 0; b < kBins; ++b) h[b] = 0;
}

__global__ void __launch_bounds__(kBlock)
    GatherKernel(const float* scores, uint32_t rows, uint32_t n, size_t ld,
                 uint32_t k, float min_score, const RowState* state,
                 uint32_t* taken, unsigned long long* keys) {
  for (uint32_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const unsigned long long threshold = state[row].prefix;
    const float* r = scores + row * ld;
    const uint32_t end = BlockEnd(n);
    for (uint32_t i = blockIdx.x * kPerBlock + threadIdx.x; i < end;
         i += kBlock) {
      const float score = r[i];
      if (!(score >= min_score)) continue;
      const unsigned long long key = Key(score, i);
      if (key < threshold) continue;
      const uint32_t slot = atomicAdd(&taken[row], 1u);
      if (slot < k) keys[static_cast<size_t>(row) * k + slot] = key;
    }
  }
}

}  // namespace

size_t TopKWorkspaceBytes(uint32_t rows) {
  return static_cast<size_t>(rows) *
         (sizeof(RowState) + sizeof(uint32_t) * (kBins + 1));
}

cudaError_t LaunchTopKSelect(const float* scores, uint32_t rows, uint32_t n,
                             size_t ld, uint32_t k, float min_score,
                             void* workspace, unsigned long long* keys,
                             uint32_t* counts, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  auto* state = static_cast<RowState*>(workspace);
  auto* hist = reinterpret_cast<uint32_t*>(state + rows);
  uint32_t* taken = hist + static_cast<size_t>(rows) * kBins;
  cudaError_t error =
      cudaMemsetAsync(workspace, 0, TopKWorkspaceBytes(rows), stream);
  if (error != cudaSuccess) return error;
  if (n == 0 || k == 0)
    return cudaMemsetAsync(counts, 0, sizeof(uint32_t) * rows, stream);
  const dim3 grid((n + kPerBlock - 1) / kPerBlock,
                  rows < kMaxGridY ? rows : kMaxGridY);
  const unsigned choose_blocks = (rows + kBlock - 1) / kBlock;
  for (int pass = 0; pass < kPasses; ++pass) {
    HistogramKernel<<<grid, kBlock, 0, stream>>>(scores, rows, n, ld, min_score,
                                                 state, hist, pass);
    ChooseKernel<<<choose_blocks, kBlock, 0, stream>>>(rows, k, state, hist,
                                                       counts, pass);
  }
  GatherKernel<<<grid, kBlock, 0, stream>>>(scores, rows, n, ld, k, min_score,
                                            state, taken, keys);
  return cudaGetLastError();
}

}  // namespace engram::kernels::cuda
