// Host launchers of the kernels that take a row mask (kernels/types.h
// RowMask) onto the device (kernels/cuda/row_mask_kernels.cu): expanding the
// mask's words to the indices of the admitted rows, and gathering those rows
// of a resident matrix into a tile the scoring kernels read.
//
// Same conventions as cosine_kernels.h: device pointers, work enqueued on
// `stream`, the launch's error returned. This header needs the CUDA headers
// but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_ROW_MASK_KERNELS_H_
#define ENGRAM_KERNELS_CUDA_ROW_MASK_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace engram::kernels::cuda {

// For each word w < num_words of a mask whose row r is bit r % 64 of
// words[r / 64]: the rows its set bits stand for, in increasing order, into
// rows[first[w] ...], first[w] being the admitted rows of the words before
// it. So rows[0, admitted) ends up holding every admitted row, increasing.
cudaError_t LaunchExpandRowMask(const uint64_t* words, const uint32_t* first,
                                uint32_t num_words, uint32_t* rows,
                                cudaStream_t stream);

// tile[i * d ...] = values[rows[i] * d ...] (d floats) for i < count.
cudaError_t LaunchGatherRows(const float* values, uint32_t d,
                             const uint32_t* rows, uint32_t count, float* tile,
                             cudaStream_t stream);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_ROW_MASK_KERNELS_H_
