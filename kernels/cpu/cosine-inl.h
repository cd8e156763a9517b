// The per-target SIMD code of the CPU cosine kernels (kernels/cpu/cosine.h):
// the row kernel's dot products, the panel kernel's register-blocked tiles,
// the norm pass and the score epilogue. Only kernels/cpu/cosine.cc includes
// it, once per SIMD target through hwy/foreach_target.h, and exports these
// functions to its dynamic dispatch tables.

// The guard flips with HWY_TARGET_TOGGLE so that every target's pass compiles
// this file again.
#if defined(ENGRAM_KERNELS_CPU_COSINE_INL_H_TARGET) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef ENGRAM_KERNELS_CPU_COSINE_INL_H_TARGET
#undef ENGRAM_KERNELS_CPU_COSINE_INL_H_TARGET
#else
#define ENGRAM_KERNELS_CPU_COSINE_INL_H_TARGET
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/cosine_prep.h"

HWY_BEFORE_NAMESPACE();
namespace engram::kernels::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

static_assert(HWY_LANES(float) <= cosine_internal::kQueryPadFloats,
              "query padding must cover one full vector");

// One vector step: adds t * q_j[i..i+N) to acc_j for the first kQ queries and,
// if kNorm, t * t to norm. Query rows are q_stride floats apart.
template <size_t kQ, bool kNorm, class D, class V>
HWY_INLINE void Step(D df, V t, const float* HWY_RESTRICT q, size_t q_stride,
                     size_t i, V& acc0, V& acc1, V& acc2, V& acc3, V& norm) {
  if constexpr (kNorm) norm = hn::MulAdd(t, t, norm);
  acc0 = hn::MulAdd(hn::LoadU(df, q + i), t, acc0);
  if constexpr (kQ > 1) {
    acc1 = hn::MulAdd(hn::LoadU(df, q + q_stride + i), t, acc1);
  }
  if constexpr (kQ > 2) {
    acc2 = hn::MulAdd(hn::LoadU(df, q + 2 * q_stride + i), t, acc2);
  }
  if constexpr (kQ > 3) {
    acc3 = hn::MulAdd(hn::LoadU(df, q + 3 * q_stride + i), t, acc3);
  }
}

// Dot products of one target row with kQ (1..4) queries, and the row's
// squared norm if kNorm. Every loaded target vector feeds all kQ products;
// two independent accumulator sets hide the multiply-add latency. `full`
// elements are read from `t` directly; if `tail` is non-null it holds the
// remaining elements zero-padded to one vector (the query rows are
// zero-padded to match).
template <size_t kQ, bool kNorm>
HWY_INLINE void DotRow(const float* HWY_RESTRICT q, size_t q_stride,
                       const float* HWY_RESTRICT t, size_t full,
                       const float* HWY_RESTRICT tail, float* HWY_RESTRICT dots,
                       size_t dots_stride, float* HWY_RESTRICT norm_sq) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, na = a0;
  auto b0 = a0, b1 = a0, b2 = a0, b3 = a0, nb = a0;
  size_t i = 0;
  for (; i + 2 * n <= full; i += 2 * n) {
    const auto t0 = hn::LoadU(df, t + i);
    const auto t1 = hn::LoadU(df, t + i + n);
    Step<kQ, kNorm>(df, t0, q, q_stride, i, a0, a1, a2, a3, na);
    Step<kQ, kNorm>(df, t1, q, q_stride, i + n, b0, b1, b2, b3, nb);
  }
  if (i < full) {
    Step<kQ, kNorm>(df, hn::LoadU(df, t + i), q, q_stride, i, a0, a1, a2, a3,
                    na);
    i += n;
  }
  if (tail != nullptr) {
    Step<kQ, kNorm>(df, hn::Load(df, tail), q, q_stride, i, b0, b1, b2, b3, nb);
  }
  dots[0] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0)));
  if constexpr (kQ > 1) {
    dots[dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a1, b1)));
  }
  if constexpr (kQ > 2) {
    dots[2 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a2, b2)));
  }
  if constexpr (kQ > 3) {
    dots[3 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a3, b3)));
  }
  if constexpr (kNorm) {
    *norm_sq = hn::GetLane(hn::SumOfLanes(df, hn::Add(na, nb)));
  }
}

// DotRow for a row read with aligned loads (see ShiftedQueries): `t` is the
// aligned address `shift` floats before the row, `vectors` vectors cover it,
// the last holding `last_lanes` of its lanes; `q` rows are the shifted
// queries. Alongside vector v it prefetches ahead + v * Lanes: a contiguous
// run of rows passes t + kRowPrefetchFloats; gathered rows pass t itself,
// since what follows them in memory is not read next (DotsAndNormsOfRows
// asks for the rows it reads next on its own).
template <size_t kQ, bool kNorm>
HWY_INLINE void DotRowAligned(const float* HWY_RESTRICT q, size_t q_stride,
                              const float* HWY_RESTRICT t, size_t vectors,
                              size_t shift, size_t last_lanes,
                              const float* ahead, float* HWY_RESTRICT dots,
                              size_t dots_stride, float* HWY_RESTRICT norm_sq) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, na = a0;
  auto b0 = a0, b1 = a0, b2 = a0, b3 = a0, nb = a0;
  // The neighbours' lanes are zeroed, not just multiplied by the zero
  // query lanes: they may hold anything, infinities included.
  auto first = hn::IfThenZeroElse(hn::FirstN(df, shift), hn::Load(df, t));
  if (vectors == 1)
    first = hn::IfThenElseZero(hn::FirstN(df, last_lanes), first);
  Step<kQ, kNorm>(df, first, q, q_stride, 0, a0, a1, a2, a3, na);
  size_t v = 1;
  for (; v + 2 < vectors; v += 2) {
    // One core's share of memory bandwidth is bounded by the misses it has
    // in flight; asking ahead, past the row, keeps more of them going.
    hwy::Prefetch(ahead + v * n);
    const auto t0 = hn::Load(df, t + v * n);
    const auto t1 = hn::Load(df, t + (v + 1) * n);
    Step<kQ, kNorm>(df, t0, q, q_stride, v * n, b0, b1, b2, b3, nb);
    Step<kQ, kNorm>(df, t1, q, q_stride, (v + 1) * n, a0, a1, a2, a3, na);
  }
  for (; v + 1 < vectors; ++v) {
    Step<kQ, kNorm>(df, hn::Load(df, t + v * n), q, q_stride, v * n, b0, b1, b2,
                    b3, nb);
  }
  if (vectors > 1) {
    const auto last =
        hn::IfThenElseZero(hn::FirstN(df, last_lanes), hn::Load(df, t + v * n));
    Step<kQ, kNorm>(df, last, q, q_stride, v * n, a0, a1, a2, a3, na);
  }
  dots[0] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0)));
  if constexpr (kQ > 1) {
    dots[dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a1, b1)));
  }
  if constexpr (kQ > 2) {
    dots[2 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a2, b2)));
  }
  if constexpr (kQ > 3) {
    dots[3 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a3, b3)));
  }
  if constexpr (kNorm) {
    *norm_sq = hn::GetLane(hn::SumOfLanes(df, hn::Add(na, nb)));
  }
}

template <bool kNorm>
HWY_INLINE void DotRowAlignedGroup(size_t group, const float* HWY_RESTRICT q,
                                   size_t q_stride, const float* HWY_RESTRICT t,
                                   size_t vectors, size_t shift,
                                   size_t last_lanes, const float* ahead,
                                   float* HWY_RESTRICT dots, size_t dots_stride,
                                   float* HWY_RESTRICT norm_sq) {
  switch (group) {
    case 1:
      return DotRowAligned<1, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     ahead, dots, dots_stride, norm_sq);
    case 2:
      return DotRowAligned<2, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     ahead, dots, dots_stride, norm_sq);
    case 3:
      return DotRowAligned<3, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     ahead, dots, dots_stride, norm_sq);
    default:
      return DotRowAligned<4, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     ahead, dots, dots_stride, norm_sq);
  }
}

template <bool kNorm>
HWY_INLINE void DotRowGroup(size_t group, const float* HWY_RESTRICT q,
                            size_t q_stride, const float* HWY_RESTRICT t,
                            size_t full, const float* HWY_RESTRICT tail,
                            float* HWY_RESTRICT dots, size_t dots_stride,
                            float* HWY_RESTRICT norm_sq) {
  switch (group) {
    case 1:
      return DotRow<1, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    case 2:
      return DotRow<2, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    case 3:
      return DotRow<3, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    default:
      return DotRow<4, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
  }
}

// The row loop of DotsAndNorms and DotsAndNormsOfRows: row r (of
// num_rows) starts at row_at(r); ahead_at(r) is what the aligned kernel
// prefetches alongside it, and before(r) runs before it is read. Each row is
// scored by the same code whichever loop reads it, aligned exactly when its
// address allows, so a row's dots and norm do not depend on which rows
// share its call.
template <class RowAt, class AheadAt, class Before>
HWY_INLINE void DotsAndNormsLoop(const float* HWY_RESTRICT queries,
                                 size_t num_queries, size_t q_stride,
                                 const cosine_internal::ShiftedQueries& shifted,
                                 const RowAt& row_at, const AheadAt& ahead_at,
                                 const Before& before, size_t num_rows,
                                 size_t d, float* HWY_RESTRICT dots,
                                 size_t dots_stride,
                                 float* HWY_RESTRICT norms_sq) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  const size_t tail_len = d % n;
  const size_t full = d - tail_len;
  // Only the first tail_len entries are ever written, so the rest stays zero
  // and contributes nothing to the tail step.
  HWY_ALIGN float tail_buf[cosine_internal::kQueryPadFloats] = {};
  const float* tail = tail_len == 0 ? nullptr : tail_buf;
  const size_t first = std::min<size_t>(4, num_queries);
  const size_t last_lanes = shifted.shift + d - (shifted.vectors - 1) * n;
  for (size_t r = 0; r < num_rows; ++r) {
    before(r);
    const float* t = row_at(r);
    if (shifted.values != nullptr) {
      const float* aligned = t - shifted.shift;
      if (aligned >= shifted.view_begin &&
          aligned + shifted.vectors * n <= shifted.view_end) {
        const float* ahead = ahead_at(r, aligned);
        DotRowAlignedGroup<true>(first, shifted.values, shifted.stride, aligned,
                                 shifted.vectors, shifted.shift, last_lanes,
                                 ahead, dots + r, dots_stride, norms_sq + r);
        for (size_t j = first; j < num_queries; j += 4) {
          DotRowAlignedGroup<false>(
              std::min<size_t>(4, num_queries - j),
              shifted.values + j * shifted.stride, shifted.stride, aligned,
              shifted.vectors, shifted.shift, last_lanes, ahead,
              dots + j * dots_stride + r, dots_stride, nullptr);
        }
        continue;
      }
    }
    if (tail_len != 0)
      std::memcpy(tail_buf, t + full, tail_len * sizeof(float));
    DotRowGroup<true>(first, queries, q_stride, t, full, tail, dots + r,
                      dots_stride, norms_sq + r);
    for (size_t j = first; j < num_queries; j += 4) {
      DotRowGroup<false>(std::min<size_t>(4, num_queries - j),
                         queries + j * q_stride, q_stride, t, full, tail,
                         dots + j * dots_stride + r, dots_stride, nullptr);
    }
  }
}

// For target rows [0, num_rows) of `targets` (d floats each, any alignment):
// dots[j * dots_stride + r] = <query j, row r> and norms_sq[r] = |row r|^2.
// Queries are num_queries >= 1 rows q_stride apart, zero-padded to q_stride,
// a multiple of kQueryPadFloats. Each target row is read from memory once: the
// first group of up to four queries computes the norm alongside, and later
// groups find the row in L1. With `shifted.values`, rows are read aligned
// where they can be (ShiftedQueries).
void DotsAndNorms(const float* HWY_RESTRICT queries, size_t num_queries,
                  size_t q_stride,
                  const cosine_internal::ShiftedQueries& shifted,
                  const float* HWY_RESTRICT targets, size_t num_rows, size_t d,
                  float* HWY_RESTRICT dots, size_t dots_stride,
                  float* HWY_RESTRICT norms_sq) {
  DotsAndNormsLoop(
      queries, num_queries, q_stride, shifted,
      [&](size_t r) { return targets + r * d; },
      [](size_t, const float* aligned) {
        return aligned + cosine_internal::kRowPrefetchFloats;
      },
      [](size_t) {}, num_rows, d, dots, dots_stride, norms_sq);
}

// Asks for the first two cache lines of a row and the first two past a
// 4 KiB boundary within it: the hardware prefetcher streams the rest of each
// page once they are read (GatheredRowsAhead says why not more).
HWY_INLINE void PrefetchRowHeads(const float* row, size_t d) {
  constexpr uintptr_t kLine = 64;
  constexpr uintptr_t kPage = 4096;
  const auto begin = reinterpret_cast<uintptr_t>(row);
  const uintptr_t end = begin + d * sizeof(float);
  hwy::Prefetch(row);
  if (begin / kLine * kLine + kLine < end) {
    hwy::Prefetch(reinterpret_cast<const float*>(begin + kLine));
  }
  for (uintptr_t page = begin / kPage * kPage + kPage; page < end;
       page += kPage) {
    hwy::Prefetch(reinterpret_cast<const float*>(page));
    if (page + kLine < end) {
      hwy::Prefetch(reinterpret_cast<const float*>(page + kLine));
    }
  }
}

// DotsAndNorms over gathered rows: row r is targets + rows[r] * d (the
// targets' rows, increasing), for r < num_rows; rows[num_rows, num_rows +
// num_ahead) come next and are only prefetched. Nothing between the rows
// (excluded by a mask) is asked for, as the contiguous loop's prefetch
// would: while row r is read, the heads of row r + GatheredRowsAhead(d) are.
void DotsAndNormsOfRows(const float* HWY_RESTRICT queries, size_t num_queries,
                        size_t q_stride,
                        const cosine_internal::ShiftedQueries& shifted,
                        const float* HWY_RESTRICT targets,
                        const uint32_t* HWY_RESTRICT rows, size_t num_rows,
                        size_t num_ahead, size_t d, float* HWY_RESTRICT dots,
                        size_t dots_stride, float* HWY_RESTRICT norms_sq) {
  const size_t ahead_rows = cosine_internal::GatheredRowsAhead(d);
  const size_t known = num_rows + num_ahead;
  const auto row_at = [&](size_t r) {
    return targets + static_cast<size_t>(rows[r]) * d;
  };
  for (size_t r = 0; r < std::min(ahead_rows, known); ++r) {
    PrefetchRowHeads(row_at(r), d);
  }
  DotsAndNormsLoop(
      queries, num_queries, q_stride, shifted, row_at,
      // The row itself, in cache by then: nothing past it is asked for.
      [](size_t, const float* aligned) { return aligned; },
      [&](size_t r) {
        if (r + ahead_rows < known) PrefetchRowHeads(row_at(r + ahead_rows), d);
      },
      num_rows, d, dots, dots_stride, norms_sq);
}

// Squared norms of `num_rows` rows of d floats each (any alignment). This is
// the panel path's first touch of a target tile, so it is written to stream:
// four independent accumulators keep enough loads in flight.
void RowNormsSq(const float* HWY_RESTRICT rows, size_t num_rows, size_t d,
                float* HWY_RESTRICT norms_sq) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  for (size_t r = 0; r < num_rows; ++r) {
    const float* t = rows + r * d;
    auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 4 * n <= d; i += 4 * n) {
      const auto v0 = hn::LoadU(df, t + i);
      const auto v1 = hn::LoadU(df, t + i + n);
      const auto v2 = hn::LoadU(df, t + i + 2 * n);
      const auto v3 = hn::LoadU(df, t + i + 3 * n);
      a0 = hn::MulAdd(v0, v0, a0);
      a1 = hn::MulAdd(v1, v1, a1);
      a2 = hn::MulAdd(v2, v2, a2);
      a3 = hn::MulAdd(v3, v3, a3);
    }
    for (; i + n <= d; i += n) {
      const auto v = hn::LoadU(df, t + i);
      a0 = hn::MulAdd(v, v, a0);
    }
    float sum = hn::GetLane(
        hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
    for (; i < d; ++i) sum += t[i] * t[i];
    norms_sq[r] = sum;
  }
}

// The panel kernel keeps kQV x kNR accumulator vectors in registers; how
// many fit depends on the register file (16 vector registers on SSE4/AVX2,
// 32 on AVX-512 and Arm). Sizeless vector types (SVE, RVV) cannot live in
// arrays, so there the panel path is not compiled and the row kernel serves.
#if HWY_HAVE_SCALABLE
constexpr size_t kPanelNrNarrow = 0;
constexpr size_t kPanelNrWide = 0;
#elif HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || \
    HWY_TARGET == HWY_AVX2
constexpr size_t kPanelNrNarrow = 12;  // 12 accumulators + 1 query vector
constexpr size_t kPanelNrWide = 6;     // 12 accumulators + 2 query vectors
#else
constexpr size_t kPanelNrNarrow = 12;
constexpr size_t kPanelNrWide = 12;  // 24 accumulators + 2 query vectors
#endif

static_assert(kPanelNrNarrow <= cosine_internal::PanelShape::kMaxRows &&
              kPanelNrWide <= cosine_internal::PanelShape::kMaxRows);

void PanelGeometry(cosine_internal::PanelShape* shape) {
  const hn::ScalableTag<float> df;
  shape->lanes = kPanelNrWide == 0 ? 0 : hn::Lanes(df);
  shape->nr_narrow = kPanelNrNarrow;
  shape->nr_wide = kPanelNrWide;
}

#if !HWY_HAVE_SCALABLE
// Scores of kQV * Lanes packed queries against kNR target rows (row j at
// t_rows[j]), as in a matrix product: for each k, the queries' k-th elements
// (one contiguous vector in `qpack`, laid out [k][query]) are multiplied by
// target element t[j][k] broadcast, so no horizontal sums are needed and each
// broadcast feeds kQV multiply-adds. Every (query, target) pair has its own
// accumulator lane, summed in k order, so the score of a pair does not
// depend on which other rows share the tile.
//
// Writes out[j * width + i] = clamp(dot * inv_q[i] * inv_t[j], -1, 1), width
// = kQV * Lanes; a zero inv_q or inv_t gives 0.
//
// Also asks for the cache line lines.At(k), into the cache level of
// Lines::kLocality, at each k for which lines.Wanted(k): the caller's next
// tile arrives in cache while this one is multiplied, instead of the norm
// pass waiting for it afterwards. (The prefetch is issued here, not in a
// member of Lines: GCC finds such a member free of side effects and drops
// the call.)
template <size_t kQV, size_t kNR, class Lines>
HWY_INLINE void PanelTile(const float* HWY_RESTRICT qpack, size_t d,
                          const float* const* HWY_RESTRICT t_rows,
                          const float* HWY_RESTRICT inv_q,
                          const float* HWY_RESTRICT inv_t, const Lines& lines,
                          float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const size_t n = hn::Lanes(df);
  const size_t width = kQV * n;
  // The accumulators only stay in registers if the compiler unrolls every
  // loop over them: GCC at -O2 otherwise keeps acc[][] on the stack and
  // loads and stores it around each multiply-add, which halves the speed.
  // (GCC 12 takes no template parameter in the pragma; 16 covers kQV, kNR.)
  static_assert(kQV <= 16 && kNR <= cosine_internal::PanelShape::kMaxRows);
  // One register per row, whether the rows are contiguous or gathered:
  // the compiler addresses a strided tile this way too.
  const float* t[kNR];
  HWY_UNROLL(16)
  for (size_t j = 0; j < kNR; ++j) t[j] = t_rows[j];
  V acc[kQV][kNR];
  HWY_UNROLL(16)
  for (size_t v = 0; v < kQV; ++v) {
    HWY_UNROLL(16)
    for (size_t j = 0; j < kNR; ++j) acc[v][j] = hn::Zero(df);
  }
  for (size_t k = 0; k < d; ++k) {
    if (lines.Wanted(k)) __builtin_prefetch(lines.At(k), 0, Lines::kLocality);
    const float* qk = qpack + k * width;
    V q[kQV];
    HWY_UNROLL(16)
    for (size_t v = 0; v < kQV; ++v) q[v] = hn::Load(df, qk + v * n);
    HWY_UNROLL(16)
    for (size_t j = 0; j < kNR; ++j) {
      const V tj = hn::Set(df, t[j][k]);
      HWY_UNROLL(16)
      for (size_t v = 0; v < kQV; ++v)
        acc[v][j] = hn::MulAdd(q[v], tj, acc[v][j]);
    }
  }
  const V one = hn::Set(df, 1.0f);
  const V minus_one = hn::Set(df, -1.0f);
  HWY_UNROLL(16)
  for (size_t v = 0; v < kQV; ++v) {
    const V iq = hn::Load(df, inv_q + v * n);
    HWY_UNROLL(16)
    for (size_t j = 0; j < kNR; ++j) {
      const V s = hn::Mul(hn::Mul(acc[v][j], iq), hn::Set(df, inv_t[j]));
      hn::Store(hn::Min(hn::Max(s, minus_one), one), df,
                out + j * width + v * n);
    }
  }
}
#endif  // !HWY_HAVE_SCALABLE

// PanelTile for kNR rows (the target's nr for this width) with one or two
// query vectors per k; `wide` picks two.
// PanelTile's prefetches: the first `count` lines from `first` on, one per
// k (a contiguous next tile).
// Into L2: the tile is read from there by the norm pass.
struct RunOfLines {
  static constexpr int kLocality = 2;
  const float* first;
  size_t count;
  bool Wanted(size_t k) const { return k < count; }
  const float* At(size_t k) const { return first + k * (64 / sizeof(float)); }
};

// PanelTile's prefetches: the lines at listed[0, count), one every
// 2^spacing_log2 values of k, so that scattered rows (each a stream of its
// own, which the hardware prefetcher does not help with) are asked for
// evenly over the call rather than all at its start. Into L2, as
// RunOfLines: the norm pass reads them from there.
struct ListOfLines {
  static constexpr int kLocality = 2;
  const float* const* listed;
  size_t count;
  size_t spacing_log2;
  bool Wanted(size_t k) const {
    return (k & ((size_t{1} << spacing_log2) - 1)) == 0 &&
           (k >> spacing_log2) < count;
  }
  const float* At(size_t k) const { return listed[k >> spacing_log2]; }
};

// PanelTile for the target's nr rows at t, t_stride apart.
void PanelScores(bool wide, const float* HWY_RESTRICT qpack, size_t d,
                 const float* HWY_RESTRICT t, size_t t_stride,
                 const float* HWY_RESTRICT inv_q,
                 const float* HWY_RESTRICT inv_t, const float* prefetch,
                 size_t prefetch_lines, float* HWY_RESTRICT out) {
#if HWY_HAVE_SCALABLE
  (void)wide, (void)qpack, (void)d, (void)t, (void)t_stride, (void)inv_q;
  (void)inv_t, (void)prefetch, (void)prefetch_lines, (void)out;
#else
  const RunOfLines lines{prefetch, prefetch_lines};
  const float* rows[cosine_internal::PanelShape::kMaxRows];
  for (size_t j = 0; j < cosine_internal::PanelShape::kMaxRows; ++j) {
    rows[j] = t + j * t_stride;
  }
  if (wide) {
    PanelTile<2, kPanelNrWide>(qpack, d, rows, inv_q, inv_t, lines, out);
  } else {
    PanelTile<1, kPanelNrNarrow>(qpack, d, rows, inv_q, inv_t, lines, out);
  }
#endif
}

// PanelTile for the target's nr rows at rows[0, nr), wherever they lie,
// asking for the cache lines at listed[0, listed_lines), spread over the
// call (ListOfLines): the scattered rows of a masked call's next tile. With
// `listed` null it asks for the run of `run_lines` lines from `run` on, as
// PanelScores does.
void PanelScoresOfRows(bool wide, const float* HWY_RESTRICT qpack, size_t d,
                       const float* const* HWY_RESTRICT rows,
                       const float* HWY_RESTRICT inv_q,
                       const float* HWY_RESTRICT inv_t,
                       const float* const* listed, size_t listed_lines,
                       const float* run, size_t run_lines,
                       float* HWY_RESTRICT out) {
#if HWY_HAVE_SCALABLE
  (void)wide, (void)qpack, (void)d, (void)rows, (void)inv_q, (void)inv_t;
  (void)listed, (void)listed_lines, (void)run, (void)run_lines, (void)out;
#else
  if (listed == nullptr) {
    const RunOfLines lines{run, run_lines};
    if (wide) {
      PanelTile<2, kPanelNrWide>(qpack, d, rows, inv_q, inv_t, lines, out);
    } else {
      PanelTile<1, kPanelNrNarrow>(qpack, d, rows, inv_q, inv_t, lines, out);
    }
    return;
  }
  size_t spacing_log2 = 0;
  while (listed_lines != 0 && (listed_lines << (spacing_log2 + 1)) <= d) {
    ++spacing_log2;
  }
  const ListOfLines lines{listed, listed_lines, spacing_log2};
  if (wide) {
    PanelTile<2, kPanelNrWide>(qpack, d, rows, inv_q, inv_t, lines, out);
  } else {
    PanelTile<1, kPanelNrNarrow>(qpack, d, rows, inv_q, inv_t, lines, out);
  }
#endif
}

// Turns the row kernel's dots into scores, a vector of rows at a time, so
// that no scalar square root or division per row stalls the stream of target
// loads: scores[j * stride + r] = clamp(dot * inv_q[j] / sqrt(norms_sq[r]),
// -1, 1). Rows whose squared norm is below `tiny` (zero included) or not
// finite are left alone and flagged in special[r]; returns how many were.
// The tail rows take the same IEEE operations one at a time, so a score does
// not depend on where its row falls.
size_t FinishRowScores(float* HWY_RESTRICT scores, size_t stride,
                       size_t num_queries, const float* HWY_RESTRICT inv_q,
                       const float* HWY_RESTRICT norms_sq, size_t num_rows,
                       float tiny, uint8_t* HWY_RESTRICT special) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  const auto minus_one = hn::Set(df, -1.0f);
  const auto v_tiny = hn::Set(df, tiny);
  const auto v_max = hn::Set(df, std::numeric_limits<float>::max());
  size_t flagged = 0;
  size_t r = 0;
  for (; r + n <= num_rows; r += n) {
    const auto norm_sq = hn::LoadU(df, norms_sq + r);
    // tiny <= norm_sq <= max; NaN fails both comparisons.
    const auto normal =
        hn::And(hn::Ge(norm_sq, v_tiny), hn::Le(norm_sq, v_max));
    const auto inv_t = hn::Div(one, hn::Sqrt(norm_sq));
    for (size_t j = 0; j < num_queries; ++j) {
      float* row = scores + j * stride + r;
      const auto dots = hn::LoadU(df, row);
      const auto s = hn::Mul(hn::Mul(dots, hn::Set(df, inv_q[j])), inv_t);
      hn::StoreU(
          hn::IfThenElse(normal, hn::Min(hn::Max(s, minus_one), one), dots), df,
          row);
    }
    const bool all_normal = hn::AllTrue(df, normal);
    for (size_t i = 0; i < n; ++i) {
      const float x = norms_sq[r + i];
      special[r + i] =
          !all_normal && !(x >= tiny && x <= std::numeric_limits<float>::max());
      flagged += special[r + i];
    }
  }
  for (; r < num_rows; ++r) {
    const float x = norms_sq[r];
    special[r] = !(x >= tiny && x <= std::numeric_limits<float>::max());
    if (special[r]) {
      ++flagged;
      continue;
    }
    const float inv_t = 1.0f / std::sqrt(x);
    for (size_t j = 0; j < num_queries; ++j) {
      float& score = scores[j * stride + r];
      score = std::min(std::max(score * inv_q[j] * inv_t, -1.0f), 1.0f);
    }
  }
  return flagged;
}

size_t RowLanes() { return hn::Lanes(hn::ScalableTag<float>()); }

const char* SelectedTargetName() { return hwy::TargetName(HWY_TARGET); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace engram::kernels::cpu
HWY_AFTER_NAMESPACE();

#endif  // ENGRAM_KERNELS_CPU_COSINE_INL_H_TARGET
