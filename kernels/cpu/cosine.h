// Cosine similarity on the CPU.
//
// score(q, t) = dot(q, t) / (|q| |t|), clamped to [-1, 1]; a zero query or
// target scores 0. Each function reads every target row once, computing the
// dot products with all queries and the target's norm in the same pass, and
// splits the targets over `pool` (nullptr: the calling thread alone).
//
// Non-finite input is reported, not computed with: a row whose squared norm is
// not finite yields INVALID_ARGUMENT naming the matrix ("queries" or
// "targets") and its row, offset by `index_offset` for targets so that a chunk
// reports the row's index in the whole request. The lowest bad row is the one
// reported, whatever the pool, and queries are checked before targets. On
// error the contents of the outputs are unspecified.
//
// Vectors whose squares underflow float32 (elements below about 1e-19) are
// rescaled (queries) or scored in float64 (targets), so a tiny but non-zero
// vector scores like any other; only an all-zero row scores 0.
//
// Thread-safety: the functions are reentrant; concurrent calls may share a
// pool.
#ifndef ENGRAM_KERNELS_CPU_COSINE_H_
#define ENGRAM_KERNELS_CPU_COSINE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/types.h"

namespace engram::kernels {

// Writes the scores of every query against every target row:
// out[q * out_stride + t] for q < queries.rows, t < targets.rows.
// Requires queries.cols == targets.cols >= 1 and out_stride >= targets.rows.
absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool);

// For each query, the best min(k, targets.rows) targets with score >=
// min_score, best first (BetterThan), indices offset by `index_offset`.
// Replaces the contents of *out with queries.rows lists. Requires k >= 1.
absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        uint32_t k, float min_score, uint32_t index_offset,
                        ThreadPool* pool, std::vector<TopKList>* out);

// Scalar double-precision reference of CosineDense, for tests and for
// checking the SIMD paths. Same contract and error reporting.
absl::Status CosineDenseReference(const MatrixView& queries,
                                  const MatrixView& targets, float* out,
                                  size_t out_stride, uint32_t index_offset);

// The name of the SIMD target the dispatcher selected for this CPU, e.g.
// "AVX3" or "AVX2"; reported in build_info and logs.
const char* CosineSimdTarget();

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_CPU_COSINE_H_
