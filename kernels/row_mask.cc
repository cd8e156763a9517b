// Row masks as the kernels read them (kernels/row_mask.h).
#include "kernels/row_mask.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/numeric/bits.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/types.h"

namespace engram::kernels {

using row_mask_internal::WordBits;

absl::Status CheckRowMask(const RowMask& mask, size_t rows) {
  if (mask.all() || mask.rows == rows) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the row mask covers ", mask.rows, " rows and the targets have ", rows));
}

size_t CountAdmitted(const RowMask& mask, size_t begin, size_t end) {
  if (begin >= end) return 0;
  if (mask.all()) return end - begin;
  const size_t first = mask.offset + begin;
  const size_t last = mask.offset + end;
  size_t count = 0;
  for (size_t w = first >> 6; w <= (last - 1) >> 6; ++w) {
    count += absl::popcount(WordBits(mask, w, first, last));
  }
  return count;
}

size_t SkipAdmitted(const RowMask& mask, size_t begin, size_t end,
                    size_t count) {
  if (count == 0 || begin >= end) return std::min(begin, end);
  if (mask.all()) return begin + std::min(count, end - begin);
  const size_t first = mask.offset + begin;
  const size_t last = mask.offset + end;
  for (size_t w = first >> 6; w <= (last - 1) >> 6; ++w) {
    uint64_t bits = WordBits(mask, w, first, last);
    const size_t here = absl::popcount(bits);
    if (here < count) {
      count -= here;
      continue;
    }
    // The count-th set bit of this word: drop the ones before it.
    for (; count > 1; --count) bits &= bits - 1;
    return w * 64 + absl::countr_zero(bits) + 1 - mask.offset;
  }
  return end;
}

void AppendAdmittedRows(const RowMask& mask, size_t begin, size_t end,
                        std::vector<uint32_t>* rows) {
  if (mask.all()) {
    for (size_t r = begin; r < end; ++r) {
      rows->push_back(static_cast<uint32_t>(r));
    }
    return;
  }
  WalkAdmitted(mask, begin, end, [&](size_t r) {
    rows->push_back(static_cast<uint32_t>(r));
    return true;
  });
}

uint32_t PackedRowMask::Row(size_t c) const {
  // The last word whose admitted rows begin at or before c.
  const size_t w =
      static_cast<size_t>(std::upper_bound(first.begin(), first.end(), c) -
                          first.begin()) -
      1;
  uint64_t bits = words[w];
  for (size_t skip = c - first[w]; skip > 0; --skip) bits &= bits - 1;
  return static_cast<uint32_t>(w * 64 + absl::countr_zero(bits));
}

PackedRowMask PackRowMask(const RowMask& mask, size_t rows) {
  PackedRowMask packed;
  const size_t num_words = (rows + 63) / 64;
  packed.words.resize(num_words);
  packed.first.resize(num_words);
  const size_t shift = mask.offset & 63;
  for (size_t w = 0; w < num_words; ++w) {
    const size_t base = w * 64;  // the word's first row
    const size_t here = std::min<size_t>(64, rows - base);
    uint64_t bits = ~uint64_t{0};
    if (!mask.all()) {
      const size_t a = (mask.offset + base) >> 6;
      bits = mask.words[a] >> shift;
      // The word's rows from 64 - shift on are in the mask's next word;
      // it is read only when the mask covers them.
      if (shift != 0 && 64 - shift < here)
        bits |= mask.words[a + 1] << (64 - shift);
    }
    if (here < 64) bits &= ~(~uint64_t{0} << here);
    packed.words[w] = bits;
    packed.first[w] = static_cast<uint32_t>(packed.admitted);
    packed.admitted += absl::popcount(bits);
  }
  return packed;
}

}  // namespace engram::kernels
