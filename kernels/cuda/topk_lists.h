// Internal to kernels/cuda: the host's top-k lists from the keys the device
// top-k selection (topk_kernels.h) leaves, shared by the cosine and
// spreading pipelines.
#ifndef ENGRAM_KERNELS_CUDA_TOPK_LISTS_H_
#define ENGRAM_KERNELS_CUDA_TOPK_LISTS_H_

#include <cstdint>

#include "kernels/types.h"

namespace engram::kernels::cuda {

// Orders device top-k keys best first (a larger key is better) and decodes
// them, indices offset by `index_offset`.
TopKList DecodeTopKList(unsigned long long* keys, uint32_t count,
                        uint32_t index_offset);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_TOPK_LISTS_H_
