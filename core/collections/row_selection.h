// RowSelection: the rows of one collection version a search may return, as
// a bitmap the kernels apply as a kernels::RowMask (row_filter.h makes
// them; a version's live rows are cached by the version itself).
//
// Thread-safety: immutable once made; safe to share.
#ifndef ENGRAM_CORE_COLLECTIONS_ROW_SELECTION_H_
#define ENGRAM_CORE_COLLECTIONS_ROW_SELECTION_H_

#include <cstdint>
#include <vector>

#include "kernels/types.h"

namespace engram::collections {

struct RowSelection {
  // Bit r set when row r passes; covers the version's rows.
  std::vector<uint64_t> words;
  uint64_t rows = 0;    // the version's rows
  uint64_t passed = 0;  // rows whose bit is set

  kernels::RowMask mask() const {
    return kernels::RowMask{words.data(), 0, static_cast<size_t>(rows)};
  }
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_ROW_SELECTION_H_
