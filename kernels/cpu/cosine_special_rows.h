// Internal to kernels/cpu: the target rows that the float SIMD kernels of
// kernels/cpu/cosine.h leave to the host. A row whose float squared norm may
// have underflowed is rescored in float64; one whose squared norm is not
// finite fails the call with BadTargetError, the error the SIMD kernels and
// the scalar reference both give. Nothing outside kernels/cpu includes it.
#ifndef ENGRAM_KERNELS_CPU_COSINE_SPECIAL_ROWS_H_
#define ENGRAM_KERNELS_CPU_COSINE_SPECIAL_ROWS_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "kernels/cpu/cosine_prep.h"
#include "kernels/types.h"

namespace engram::kernels::cpu::cosine_internal {

// A squared norm below this may have lost terms to underflow (each lost term
// is below FLT_MIN, so at most d * FLT_MIN in all, i.e. at most one float
// epsilon of the threshold): such target rows are rescored in double.
inline float TinyNormSq(size_t d) {
  return static_cast<float>(static_cast<double>(d) *
                            std::numeric_limits<float>::min() /
                            std::numeric_limits<float>::epsilon());
}

// Scores a target row whose float squared norm may have underflowed, entirely
// in double: scores[(j - first) * stride] for queries j in [first, first +
// count).
void RescoreTinyRow(const CpuQueries& pq, const float* t, size_t d,
                    size_t first, size_t count, float* scores, size_t stride);

// INVALID_ARGUMENT for target row `row`, whose squared norm is not finite,
// naming it by its index in the whole request (offset by `index_offset`).
absl::Status BadTargetError(const MatrixView& targets, size_t row,
                            uint32_t index_offset);

}  // namespace engram::kernels::cpu::cosine_internal

#endif  // ENGRAM_KERNELS_CPU_COSINE_SPECIAL_ROWS_H_
