// The argument checks every cosine kernel (CPU and GPU) runs before it reads
// a matrix, with one set of messages.
#ifndef ENGRAM_KERNELS_COSINE_SHAPE_H_
#define ENGRAM_KERNELS_COSINE_SHAPE_H_

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/types.h"

namespace engram::kernels {

// Equal dimensions of at least 1, and data for every non-empty matrix.
inline absl::Status CheckCosineShapes(const MatrixView& queries,
                                      const MatrixView& targets) {
  if (queries.cols == 0 || queries.cols != targets.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("queries have ", queries.cols, " columns and targets ",
                     targets.cols, "; both must be equal and at least 1"));
  }
  if ((queries.rows > 0 && queries.data == nullptr) ||
      (targets.rows > 0 && targets.data == nullptr)) {
    return absl::InvalidArgumentError("matrix data is null");
  }
  return absl::OkStatus();
}

// Target indices [index_offset, index_offset + num_targets) must fit the
// uint32 indices of the results.
inline absl::Status CheckCosineIndexRange(size_t num_targets,
                                          uint32_t index_offset) {
  if (static_cast<uint64_t>(index_offset) + num_targets >
      uint64_t{std::numeric_limits<uint32_t>::max()} + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("target indices from ", index_offset, " for ", num_targets,
                     " rows do not fit in 32 bits"));
  }
  return absl::OkStatus();
}

// A dense call writes `rows` scores per query, all the target rows or, with
// a row mask (`masked`), the rows it admits; out_stride must leave room for
// them.
inline absl::Status CheckCosineOutStride(size_t out_stride, size_t rows,
                                         bool masked) {
  if (out_stride >= rows) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("out_stride ", out_stride, " is less than the ", rows,
                   masked ? " admitted target rows" : " target rows"));
}

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_COSINE_SHAPE_H_
