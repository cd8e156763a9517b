// The row mask kernels and their launchers (row_mask_kernels.h).
#include <cstdint>

#include "kernels/cuda/row_mask_kernels.h"

namespace engram::kernels::cuda {
namespace {

constexpr int kBlock = 256;
// Grid-stride kernels stop growing the grid here; more blocks only queue.
constexpr unsigned kMaxBlocks = 8192;

// One thread per word: a word holds at most 64 admitted rows, and their
// place in `rows` is known from `first`, so no thread waits on another.
__global__ void __launch_bounds__(kBlock)
    ExpandKernel(const uint64_t* words, const uint32_t* first,
                 uint32_t num_words, uint32_t* rows) {
  for (uint32_t w = blockIdx.x * kBlock + threadIdx.x; w < num_words;
       w += gridDim.x * kBlock) {
    unsigned long long bits = words[w];
    uint32_t out = first[w];
    while (bits != 0) {
      rows[out++] = w * 64 + static_cast<uint32_t>(__ffsll(bits) - 1);
      bits &= bits - 1;
    }
  }
}

// One block per gathered row (grid-stride), its threads copying the row's
// elements, four at a time when rows are 16-byte aligned.
template <bool kVec>
__global__ void __launch_bounds__(kBlock)
    GatherKernel(const float* values, uint32_t d, const uint32_t* rows,
                 uint32_t count, float* tile) {
  for (uint32_t i = blockIdx.x; i < count; i += gridDim.x) {
    const float* src = values + static_cast<uint64_t>(rows[i]) * d;
    float* dst = tile + static_cast<uint64_t>(i) * d;
    if constexpr (kVec) {
      const uint32_t dv = d / 4;
      const float4* src4 = reinterpret_cast<const float4*>(src);
      float4* dst4 = reinterpret_cast<float4*>(dst);
      for (uint32_t c = threadIdx.x; c < dv; c += kBlock) dst4[c] = src4[c];
    } else {
      for (uint32_t c = threadIdx.x; c < d; c += kBlock) dst[c] = src[c];
    }
  }
}

unsigned BlocksFor(uint64_t items, uint64_t per_block) {
  const uint64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1            ? 1
                               : blocks > kMaxBlocks ? kMaxBlocks
                                                     : blocks);
}

}  // namespace

cudaError_t LaunchExpandRowMask(const uint64_t* words, const uint32_t* first,
                                uint32_t num_words, uint32_t* rows,
                                cudaStream_t stream) {
  if (num_words == 0) return cudaSuccess;
  ExpandKernel<<<BlocksFor(num_words, kBlock), kBlock, 0, stream>>>(
      words, first, num_words, rows);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const float* values, uint32_t d,
                             const uint32_t* rows, uint32_t count, float* tile,
                             cudaStream_t stream) {
  if (count == 0 || d == 0) return cudaSuccess;
  const bool vec = d % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(values) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(tile) % 16 == 0;
  const unsigned blocks = BlocksFor(count, 1);
  if (vec) {
    GatherKernel<true>
        <<<blocks, kBlock, 0, stream>>>(values, d, rows, count, tile);
  } else {
    GatherKernel<false>
        <<<blocks, kBlock, 0, stream>>>(values, d, rows, count, tile);
  }
  return cudaGetLastError();
}

}  // namespace engram::kernels::cuda
