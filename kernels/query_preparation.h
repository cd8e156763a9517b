// Cosine queries as every cosine kernel (CPU and CUDA) consumes them: each
// row scaled by a power of two so that its largest element is in [0.5, 1)
// (exact, and cosine is scale invariant, so neither the dot products nor the
// query norm can underflow or overflow on the query's account), and 1/|row|
// in float64. One implementation, so the CPU and the GPU agree bit for bit on
// what they score and on the error a bad row gets.
//
// Thread-safety: the functions are pure; PreparedQueries is a value.
#ifndef ENGRAM_KERNELS_QUERY_PREPARATION_H_
#define ENGRAM_KERNELS_QUERY_PREPARATION_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "kernels/types.h"

namespace engram::kernels {

struct PreparedQueries {
  size_t rows = 0;
  size_t cols = 0;
  size_t stride = 0;             // cols rounded up to the requested padding
  std::vector<float> values;     // rows x stride, zero-padded
  std::vector<double> inv_norm;  // 1 / |scaled row|; 0 for a zero row
};

// Fills *out from `queries`, each row's stride rounded up to a multiple of
// `pad_floats` (>= 1; 1 packs the rows densely). INVALID_ARGUMENT naming
// "queries" and the row (kernels/row_checks.h) for a row that is not
// usable.
absl::Status PrepareQueries(const MatrixView& queries, size_t pad_floats,
                            PreparedQueries* out);

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_QUERY_PREPARATION_H_
