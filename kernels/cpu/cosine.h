// Cosine similarity on the CPU.
//
// score(q, t) = dot(q, t) / (|q| |t|), clamped to [-1, 1]; a zero query or
// target scores 0. Each function reads every target row from memory once and
// splits the targets over `pool` (nullptr: the calling thread alone). Two
// inner kernels do the arithmetic (CosineKernel below): the row kernel, for
// few queries, computes the dot products with every query and the row's norm
// in one pass over the row, at the memory's pace; the panel kernel, for many
// queries, works through targets a cache-sized tile at a time (a norm pass
// reads the tile in, then every block of queries is scored against it as in
// a register-blocked matrix product), so each target row is reused from
// cache by all queries. Only the scores asked for are produced: top-k never
// materialises Q x N.
//
// Results do not depend on the pool or on the thread a task runs on (tasks
// run with denormals flushed to zero, as the pool's workers do), so a given
// kernel gives bit-identical output whatever the pool's size.
//
// Non-finite input is reported, not computed with: a row whose squared norm is
// not finite yields INVALID_ARGUMENT naming the matrix ("queries" or
// "targets") and its row, offset by `index_offset` for targets so that a chunk
// reports the row's index in the whole request. The lowest bad row is the one
// reported, whatever the pool, and queries are checked before targets. On
// error the contents of the outputs are unspecified.
//
// Row masks (kernels/types.h RowMask, kernels/row_mask.h) restrict a call to
// the target rows they admit, as filtered searches and deleted rows need:
// only admitted rows are read and scored, a mask's runs of excluded rows are
// skipped a 64-row word at a time without reading them, and the work splits
// over the pool by admitted rows, so a call costs about what the unmasked
// call over the admitted rows alone would. An admitted row scores exactly
// what the unmasked call with the same kernel gives it, bit for bit, so a
// masked result is the unmasked one with the excluded rows dropped. An
// excluded row is never checked: a non-finite value there is no error. A
// mask must admit every row (null words) or cover exactly targets.rows rows;
// INVALID_ARGUMENT otherwise.
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
#include "kernels/thread_pool.h"
#include "kernels/types.h"

namespace engram::kernels::cpu {

// Which inner kernel scores a call. kAuto picks by the number of queries, at
// the crossover measured by bench/cosine_benchmark.cc (docs/performance.md);
// the others force one, for tests and benchmarks. The kernels sum in
// different orders, so their scores agree within rounding (1e-5 relative),
// not bit for bit. A target without the panel kernel (scalable vectors: SVE,
// RVV) uses the row kernel for kPanel too.
enum class CosineKernel { kAuto, kRowDot, kPanel };

// Writes the scores of every query against every target row:
// out[q * out_stride + t] for q < queries.rows, t < targets.rows.
// Requires queries.cols == targets.cols >= 1 and out_stride >= targets.rows.
absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool,
                         CosineKernel kernel = CosineKernel::kAuto);

// CosineDense over the rows `mask` admits, compacted: the j-th admitted row
// (in row order) scores into out[q * out_stride + j]. Requires out_stride >=
// the number of admitted rows; nothing past them is written, and nothing at
// all when the mask admits no row.
absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         const RowMask& mask, float* out, size_t out_stride,
                         uint32_t index_offset, ThreadPool* pool,
                         CosineKernel kernel = CosineKernel::kAuto);

// For each query, the best min(k, targets.rows) targets with score >=
// min_score, best first (BetterThan), indices offset by `index_offset`.
// Replaces the contents of *out with queries.rows lists. Requires k >= 1.
absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        uint32_t k, float min_score, uint32_t index_offset,
                        ThreadPool* pool, std::vector<TopKList>* out,
                        CosineKernel kernel = CosineKernel::kAuto);

// CosineTopK among the rows `mask` admits: each list holds the best min(k,
// admitted rows) of them with score >= min_score, indices still those of
// the rows among all targets (plus index_offset). A mask that admits no row
// gives queries.rows empty lists.
absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        const RowMask& mask, uint32_t k, float min_score,
                        uint32_t index_offset, ThreadPool* pool,
                        std::vector<TopKList>* out,
                        CosineKernel kernel = CosineKernel::kAuto);

// Scalar double-precision reference of CosineDense, for tests and for
// checking the SIMD paths. Same contract and error reporting.
absl::Status CosineDenseReference(const MatrixView& queries,
                                  const MatrixView& targets, float* out,
                                  size_t out_stride, uint32_t index_offset);

// The kernel kAuto runs for `num_queries` queries on this CPU (never kAuto).
CosineKernel CosineKernelFor(size_t num_queries);

// "auto", "row" or "panel", for logs and benchmark labels.
const char* CosineKernelName(CosineKernel kernel);

// The name of the SIMD target the dispatcher selected for this CPU, e.g.
// "AVX3" or "AVX2"; reported in build_info and logs.
const char* CosineSimdTarget();

}  // namespace engram::kernels::cpu

#endif  // ENGRAM_KERNELS_CPU_COSINE_H_
