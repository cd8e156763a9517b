// The one test of a usable vector, wherever vectors enter: request
// validation, collection uploads, batched resident queries, and the kernels
// as they read targets. A row is usable when its squared norm, summed in
// float64, is finite as a float32 (so every value is finite and the norm
// cannot overflow the float32 arithmetic of the kernels). One wording of the
// error for every caller, as docs/api.md gives it.
//
// Thread-safety: the functions are pure.
#ifndef ENGRAM_KERNELS_ROW_CHECKS_H_
#define ENGRAM_KERNELS_ROW_CHECKS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kernels/types.h"

namespace engram::kernels {

// True when the row's squared norm (summed in float64 into *norm_sq) is
// finite as a float32; false for NaN and infinite values too. The sum runs
// on the widest SIMD unit the CPU has, in an order that every CPU follows
// (internal::RowSquaredNormPortable), so it gives the same bits everywhere;
// they may differ from a plain left-to-right sum in the last places.
bool RowSquaredNormIsFinite(const float* row, size_t cols, double* norm_sq);

// The error for a row that fails RowSquaredNormIsFinite: INVALID_ARGUMENT
// "<matrix> row <reported_row> contains a non-finite value at column <c>"
// for the first non-finite value, else "<matrix> row <reported_row>:
// squared norm overflows float32".
absl::Status NonFiniteRowError(absl::string_view matrix, const float* row,
                               size_t cols, uint64_t reported_row);

// OK when the row is usable, else NonFiniteRowError. *norm_sq, when given,
// receives the squared norm.
absl::Status CheckFiniteRow(absl::string_view matrix, const float* row,
                            size_t cols, uint64_t reported_row,
                            double* norm_sq = nullptr);

// CheckFiniteRow for every row of `rows`; the first bad row's error.
absl::Status CheckFiniteRows(absl::string_view matrix, const MatrixView& rows);

namespace internal {

// The squared norm is summed in this many float64 partial sums (element i
// goes to partial i % kRowNormLanes), joined by FinishRowSquaredNorm: enough
// independent additions to keep a SIMD unit busy, the same order on every
// vector width.
inline constexpr size_t kRowNormLanes = 16;

// Adds the squares of row[begin, cols) to lanes[i % kRowNormLanes] and joins
// the lanes pairwise (lane j with j + 8, then j + 4, ...), returning the sum.
// `begin` must be a multiple of kRowNormLanes.
double FinishRowSquaredNorm(const float* row, size_t begin, size_t cols,
                            double* lanes);

// The squared norm in RowSquaredNormIsFinite's order, without SIMD: the
// reference the vector code must match bit for bit.
double RowSquaredNormPortable(const float* row, size_t cols);

}  // namespace internal
}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_ROW_CHECKS_H_
