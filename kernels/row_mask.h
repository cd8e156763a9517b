// Row masks (types.h RowMask) as the cosine kernels read them, CPU and GPU
// alike: the argument check, counting admitted rows and walking them in
// order. Every walk goes a 64-bit word of the mask at a time, so a run of
// excluded rows costs one test per 64 rows and its rows are never touched;
// only the words holding bits of the rows asked about are read.
//
// Thread-safety: the functions are pure.
#ifndef ENGRAM_KERNELS_ROW_MASK_H_
#define ENGRAM_KERNELS_ROW_MASK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/numeric/bits.h"
#include "absl/status/status.h"
#include "kernels/types.h"

namespace engram::kernels {
namespace row_mask_internal {

// The bits of word w of the mask that stand for rows whose bits lie in
// [first, last) (bit positions, the mask's offset included), in place.
inline uint64_t WordBits(const RowMask& mask, size_t w, size_t first,
                         size_t last) {
  uint64_t bits = mask.words[w];
  if (w == first >> 6) bits &= ~uint64_t{0} << (first & 63);
  if (w == (last - 1) >> 6 && (last & 63) != 0) {
    bits &= ~(~uint64_t{0} << (last & 63));
  }
  return bits;
}

}  // namespace row_mask_internal

// OK when `mask` admits every row (null words) or covers exactly `rows`
// rows; INVALID_ARGUMENT naming the mask otherwise.
absl::Status CheckRowMask(const RowMask& mask, size_t rows);

// How many of rows [begin, end) the mask admits; end - begin for a mask
// that admits every row.
size_t CountAdmitted(const RowMask& mask, size_t begin, size_t end);

// The row one past the `count`-th admitted row at or after `begin`, or
// `end` when [begin, end) admits fewer; `begin` for count 0. With a mask
// that admits every row, min(begin + count, end).
size_t SkipAdmitted(const RowMask& mask, size_t begin, size_t end,
                    size_t count);

// The admitted rows of [begin, end), in increasing order, appended to *rows.
void AppendAdmittedRows(const RowMask& mask, size_t begin, size_t end,
                        std::vector<uint32_t>* rows);

// A mask's bits for rows [0, rows) rebased to bit 0 (row r is bit r % 64
// of words[r / 64], bits past the rows clear), with first[w] the admitted
// rows in the words before word w: the form a device reads, where the
// admitted rows of each word can be placed independently.
struct PackedRowMask {
  std::vector<uint64_t> words;
  std::vector<uint32_t> first;
  size_t admitted = 0;

  // The row of the c-th admitted row (c < admitted), in O(log words).
  uint32_t Row(size_t c) const;
};

// PackedRowMask of `mask` over `rows` rows (rows < 2^32); every row's bit
// set for a mask that admits every row.
PackedRowMask PackRowMask(const RowMask& mask, size_t rows);

// Calls fn(row) for each admitted row of [begin, end) in increasing order,
// until fn returns false. Returns the row after the last one fn was called
// with when fn stopped the walk, else `end`: a caller gathering rows in
// batches resumes there. The mask must not admit every row (the caller
// takes its contiguous path then).
template <typename Fn>
size_t WalkAdmitted(const RowMask& mask, size_t begin, size_t end, Fn&& fn) {
  if (begin >= end) return end;
  const size_t first = mask.offset + begin;
  const size_t last = mask.offset + end;  // one past
  for (size_t w = first >> 6; w <= (last - 1) >> 6; ++w) {
    uint64_t bits = row_mask_internal::WordBits(mask, w, first, last);
    while (bits != 0) {
      const size_t row = w * 64 + absl::countr_zero(bits) - mask.offset;
      bits &= bits - 1;
      if (!fn(row)) return row + 1;
    }
  }
  return end;
}

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_ROW_MASK_H_
