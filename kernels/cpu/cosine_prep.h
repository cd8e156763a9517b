// Internal to kernels/cpu: the host side of the CPU cosine kernels
// (kernels/cpu/cosine.h). The layouts that the per-target SIMD code
// (kernels/cpu/cosine-inl.h) reads, and the preparation that fills them from
// a call's queries: padded rows, the panel kernel's packed blocks and the row
// kernel's shifted copies. Nothing outside kernels/cpu includes it.
#ifndef ENGRAM_KERNELS_CPU_COSINE_PREP_H_
#define ENGRAM_KERNELS_CPU_COSINE_PREP_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "hwy/aligned_allocator.h"
#include "kernels/query_preparation.h"
#include "kernels/types.h"

namespace engram::kernels::cpu::cosine_internal {

// Query rows are copied with their stride rounded up to a multiple of this, so
// the SIMD loop can read a whole vector at the row's tail without bounds
// checks. It is a multiple of every x86, Arm and WASM float vector length.
constexpr size_t kQueryPadFloats = 64;

// How far ahead of its loads the row kernel prefetches over a contiguous run
// of rows: 4 KiB. One core's share of memory bandwidth is bounded by the
// misses it has in flight; asking ahead keeps more of them going.
constexpr size_t kRowPrefetchFloats = 1024;

// Over gathered rows (a mask's admitted rows, excluded rows between them)
// the row kernel asks only for the first lines of each row, and of its part
// past a 4 KiB page boundary, this many rows ahead: the hardware prefetcher
// streams the rest of a row once its first lines are read, and asking for
// whole rows would hold the core's few line fill buffers that the stream
// needs. At least four rows and 16 KiB ahead.
constexpr size_t kGatherAheadBytes = size_t{16} << 10;
inline size_t GatheredRowsAhead(size_t d) {
  const size_t row_bytes = d * sizeof(float);
  return std::max<size_t>(4, (kGatherAheadBytes + row_bytes - 1) / row_bytes);
}

// The panel kernel's register blocking on the selected SIMD target: a query
// block is `lanes` queries (narrow) or 2 * `lanes` (wide), scored against
// nr_narrow or nr_wide target rows at a time. lanes == 0: no panel kernel on
// this target.
struct PanelShape {
  // The most target rows a panel call takes: callers hold a group's row
  // addresses in arrays of this size.
  static constexpr size_t kMaxRows = 16;
  size_t lanes = 0;
  size_t nr_narrow = 0;
  size_t nr_wide = 0;
};

// The row kernel's aligned mode. A full-width load that straddles two cache
// lines costs a second access, which shows at the memory's pace (about a
// fifth of the bandwidth on the machines measured); target rows from a
// request start anywhere. When d is a multiple of the vector length every
// row starts the same `shift` floats past a vector boundary, so the kernel
// reads each row with aligned loads from `shift` floats before its start,
// masks the neighbours' lanes off, and multiplies with the queries shifted
// right by `shift` (zero outside the row). Reads stay inside [view_begin,
// view_end), the whole target matrix; rows that would cross it are read
// unaligned.
struct ShiftedQueries {
  const float* values = nullptr;  // nullptr: every row is read unaligned
  size_t stride = 0;              // floats between queries, vectors * lanes
  size_t shift = 0;
  size_t vectors = 0;  // aligned vectors covering one row
  const float* view_begin = nullptr;
  const float* view_end = nullptr;
};

// The shared preparation (kernels/query_preparation.h), each row's stride a
// multiple of kQueryPadFloats, with the inverse norms also rounded to float
// for the SIMD epilogue.
struct CpuQueries : PreparedQueries {
  std::vector<float> inv_norm_f;
};

// The scaled queries transposed into blocks for the panel kernel: block b
// covers queries [first, first + count) and holds d x width floats,
// pack[k * width + i] = query (first + i) element k, zero past `count`.
struct PanelQueries {
  struct Block {
    size_t first = 0;
    size_t count = 0;
    bool wide = false;
    size_t width = 0;  // lanes or 2 * lanes
    size_t nr = 0;     // target rows per kernel call
    const float* pack = nullptr;
    const float* inv_q = nullptr;  // width floats, 0 past `count`
  };
  PanelShape shape;
  std::vector<Block> blocks;
  size_t max_width = 0;
  size_t max_nr = 0;
  hwy::AlignedFreeUniquePtr<float[]> pack;
  hwy::AlignedFreeUniquePtr<float[]> inv_q;
};

// Errors as PrepareQueries.
absl::Status PrepareCpuQueries(const MatrixView& queries, CpuQueries* out);

// Packs the prepared queries for the panel kernel: wide blocks (two vectors
// of queries per k) while more than one vector's worth remains, then at most
// one narrow block, so that padding wastes less than a vector of lanes.
void PackPanelQueries(const CpuQueries& pq, size_t d, PanelShape shape,
                      PanelQueries* out);

// The shifted queries for reading `targets` aligned (ShiftedQueries), in
// `storage`; values == nullptr when d is not a multiple of the vector
// length (rows then start at varying offsets) or vectors are one float.
ShiftedQueries ShiftQueries(const CpuQueries& pq, const MatrixView& targets,
                            size_t lanes,
                            hwy::AlignedFreeUniquePtr<float[]>* storage);

}  // namespace engram::kernels::cpu::cosine_internal

#endif  // ENGRAM_KERNELS_CPU_COSINE_PREP_H_
