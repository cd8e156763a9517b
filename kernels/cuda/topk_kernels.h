// Host launcher of the top-k selection kernels (kernels/cuda/topk_kernels.cu):
// the best k entries of each row of a score matrix, selected on the device so
// that only k results per row cross PCIe.
//
// Each entry gets a 64-bit key, its score's order-preserving bits above the
// complement of its index: a larger key is a better entry (higher score, then
// lower index: kernels/types.h BetterThan), and no two keys are equal. A radix
// select over the keys, eight bits a pass, finds the k-th largest key of each
// row; the entries at or above it are gathered. Ties therefore resolve exactly
// as on the CPU, whatever the order the device visits the entries in.
//
// Same conventions as cosine_kernels.h: device pointers, work enqueued on
// `stream`, the first launch error returned.
#ifndef ENGRAM_KERNELS_CUDA_TOPK_KERNELS_H_
#define ENGRAM_KERNELS_CUDA_TOPK_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/types.h"

namespace engram::kernels::cuda {

// Device workspace LaunchTopKSelect needs for `rows` rows.
size_t TopKWorkspaceBytes(uint32_t rows);

// For each row j < rows of scores (n entries, row stride ld): the keys of the
// best min(k, m) entries, m being the entries with score >= min_score, into
// keys[j * k ...] in no particular order, and that count into counts[j].
// `workspace` holds TopKWorkspaceBytes(rows) bytes. Scores must not be NaN.
cudaError_t LaunchTopKSelect(const float* scores, uint32_t rows, uint32_t n,
                             size_t ld, uint32_t k, float min_score,
                             void* workspace, unsigned long long* keys,
                             uint32_t* counts, cudaStream_t stream);

// The (index, score) a key stands for.
inline ScoredIndex DecodeTopKKey(unsigned long long key) {
  uint32_t bits = static_cast<uint32_t>(key >> 32);
  bits = (bits & 0x80000000u) != 0 ? bits & 0x7fffffffu : ~bits;
  float score;
  std::memcpy(&score, &bits, sizeof(score));
  return ScoredIndex{0xffffffffu - static_cast<uint32_t>(key), score};
}

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_TOPK_KERNELS_H_
