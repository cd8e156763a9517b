// Cosine similarity with Highway runtime dispatch: this file is compiled once
// per SIMD target by hwy/foreach_target.h, and the HWY_ONCE section at the end
// holds the target-independent driver (validation, work split, scoring).
#include "kernels/cpu/cosine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cpu/topk.h"
#include "kernels/query_preparation.h"
#include "kernels/row_checks.h"

#ifndef ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_
#define ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_
namespace engram::kernels::cpu::cosine_internal {

// Query rows are copied with their stride rounded up to a multiple of this, so
// the SIMD loop can read a whole vector at the row's tail without bounds
// checks. It is a multiple of every x86, Arm and WASM float vector length.
constexpr size_t kQueryPadFloats = 64;

// The panel kernel's register blocking on the selected SIMD target: a query
// block is `lanes` queries (narrow) or 2 * `lanes` (wide), scored against
// nr_narrow or nr_wide target rows at a time. lanes == 0: no panel kernel on
// this target.
struct PanelShape {
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

}  // namespace engram::kernels::cpu::cosine_internal
#endif  // ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/cosine.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

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

// How far ahead of its loads the aligned row kernel prefetches: 4 KiB.
constexpr size_t kPrefetchFloats = 1024;

// DotRow for a row read with aligned loads (see ShiftedQueries): `t` is the
// aligned address `shift` floats before the row, `vectors` vectors cover it,
// the last holding `last_lanes` of its lanes; `q` rows are the shifted
// queries.
template <size_t kQ, bool kNorm>
HWY_INLINE void DotRowAligned(const float* HWY_RESTRICT q, size_t q_stride,
                              const float* HWY_RESTRICT t, size_t vectors,
                              size_t shift, size_t last_lanes,
                              float* HWY_RESTRICT dots, size_t dots_stride,
                              float* HWY_RESTRICT norm_sq) {
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
    hwy::Prefetch(t + v * n + kPrefetchFloats);
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
                                   size_t last_lanes, float* HWY_RESTRICT dots,
                                   size_t dots_stride,
                                   float* HWY_RESTRICT norm_sq) {
  switch (group) {
    case 1:
      return DotRowAligned<1, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     dots, dots_stride, norm_sq);
    case 2:
      return DotRowAligned<2, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     dots, dots_stride, norm_sq);
    case 3:
      return DotRowAligned<3, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     dots, dots_stride, norm_sq);
    default:
      return DotRowAligned<4, kNorm>(q, q_stride, t, vectors, shift, last_lanes,
                                     dots, dots_stride, norm_sq);
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
    const float* t = targets + r * d;
    if (shifted.values != nullptr) {
      const float* aligned = t - shifted.shift;
      if (aligned >= shifted.view_begin &&
          aligned + shifted.vectors * n <= shifted.view_end) {
        DotRowAlignedGroup<true>(first, shifted.values, shifted.stride, aligned,
                                 shifted.vectors, shifted.shift, last_lanes,
                                 dots + r, dots_stride, norms_sq + r);
        for (size_t j = first; j < num_queries; j += 4) {
          DotRowAlignedGroup<false>(
              std::min<size_t>(4, num_queries - j),
              shifted.values + j * shifted.stride, shifted.stride, aligned,
              shifted.vectors, shifted.shift, last_lanes,
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

void PanelGeometry(cosine_internal::PanelShape* shape) {
  const hn::ScalableTag<float> df;
  shape->lanes = kPanelNrWide == 0 ? 0 : hn::Lanes(df);
  shape->nr_narrow = kPanelNrNarrow;
  shape->nr_wide = kPanelNrWide;
}

#if !HWY_HAVE_SCALABLE
// Scores of kQV * Lanes packed queries against kNR target rows, as in a
// matrix product: for each k, the queries' k-th elements (one contiguous
// vector in `qpack`, laid out [k][query]) are multiplied by target element
// t[j][k] broadcast, so no horizontal sums are needed and each broadcast
// feeds kQV multiply-adds. Every (query, target) pair has its own
// accumulator lane, summed in k order, so the score of a pair does not
// depend on which other rows share the tile.
//
// Writes out[j * width + i] = clamp(dot * inv_q[i] * inv_t[j], -1, 1), width
// = kQV * Lanes; a zero inv_q or inv_t gives 0.
//
// Also asks for the first min(prefetch_lines, d) cache lines from `prefetch`
// on, one per k: the caller's next tile arrives in cache while this one is
// multiplied, instead of the norm pass waiting for it afterwards.
template <size_t kQV, size_t kNR>
HWY_INLINE void PanelTile(const float* HWY_RESTRICT qpack, size_t d,
                          const float* HWY_RESTRICT t, size_t t_stride,
                          const float* HWY_RESTRICT inv_q,
                          const float* HWY_RESTRICT inv_t,
                          const float* prefetch, size_t prefetch_lines,
                          float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const size_t n = hn::Lanes(df);
  const size_t width = kQV * n;
  // The accumulators only stay in registers if the compiler unrolls every
  // loop over them: GCC at -O2 otherwise keeps acc[][] on the stack and
  // loads and stores it around each multiply-add, which halves the speed.
  // (GCC 12 takes no template parameter in the pragma; 16 covers kQV, kNR.)
  static_assert(kQV <= 16 && kNR <= 16);
  V acc[kQV][kNR];
  HWY_UNROLL(16)
  for (size_t v = 0; v < kQV; ++v) {
    HWY_UNROLL(16)
    for (size_t j = 0; j < kNR; ++j) acc[v][j] = hn::Zero(df);
  }
  constexpr size_t kLineFloats = 64 / sizeof(float);
  for (size_t k = 0; k < d; ++k) {
    if (k < prefetch_lines)
      __builtin_prefetch(prefetch + k * kLineFloats, 0, 2);
    const float* qk = qpack + k * width;
    V q[kQV];
    HWY_UNROLL(16)
    for (size_t v = 0; v < kQV; ++v) q[v] = hn::Load(df, qk + v * n);
    HWY_UNROLL(16)
    for (size_t j = 0; j < kNR; ++j) {
      const V tj = hn::Set(df, t[j * t_stride + k]);
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
void PanelScores(bool wide, const float* HWY_RESTRICT qpack, size_t d,
                 const float* HWY_RESTRICT t, size_t t_stride,
                 const float* HWY_RESTRICT inv_q,
                 const float* HWY_RESTRICT inv_t, const float* prefetch,
                 size_t prefetch_lines, float* HWY_RESTRICT out) {
#if HWY_HAVE_SCALABLE
  (void)wide, (void)qpack, (void)d, (void)t, (void)t_stride, (void)inv_q;
  (void)inv_t, (void)prefetch, (void)prefetch_lines, (void)out;
#else
  if (wide) {
    PanelTile<2, kPanelNrWide>(qpack, d, t, t_stride, inv_q, inv_t, prefetch,
                               prefetch_lines, out);
  } else {
    PanelTile<1, kPanelNrNarrow>(qpack, d, t, t_stride, inv_q, inv_t, prefetch,
                                 prefetch_lines, out);
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

#if HWY_ONCE
namespace engram::kernels::cpu {
namespace {

using cosine_internal::kQueryPadFloats;
using cosine_internal::PanelShape;
using cosine_internal::ShiftedQueries;

HWY_EXPORT(DotsAndNorms);
HWY_EXPORT(RowNormsSq);
HWY_EXPORT(PanelGeometry);
HWY_EXPORT(PanelScores);
HWY_EXPORT(RowLanes);
HWY_EXPORT(FinishRowScores);
HWY_EXPORT(SelectedTargetName);

// Target rows per call into the row kernel: small enough that a block's
// scores (queries x kBlockRows) stay in cache for the top-k pass.
constexpr size_t kBlockRows = 128;
// Target bytes per panel tile: the tile is read from memory once (by the
// norm pass) and then from L2 by every query block, alongside a wide query
// block (Lanes * 2 * d floats), so both fit a 1 MiB L2 for d up to ~1500.
constexpr size_t kPanelTileBytes = size_t{128} << 10;
// From this many queries on, kAuto scores with the panel kernel: below it
// the row kernel's dot products are as fast and read the targets at the
// memory's pace. Measured by bench/cosine_benchmark.cc (BM_KernelCrossover,
// docs/performance.md): the crossover is near Q = 5 on a 2-core Zen 4. A
// 16-core Sapphire Rapids class Xeon put it near Q = 16, but that was
// before the panel kernel kept its accumulators in registers, which made
// it about twice as fast; 8 allows for the Xeon until it is measured again.
constexpr size_t kPanelMinQueries = 8;
// The least work (target floats times query groups of four) worth handing
// to a task of its own.
constexpr size_t kMinTaskFloats = size_t{1} << 16;
// Tasks per pool thread, so that uneven progress still balances.
constexpr size_t kTasksPerThread = 4;
constexpr size_t kNoBadRow = std::numeric_limits<size_t>::max();

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

PanelShape SelectedPanelShape() {
  PanelShape shape;
  HWY_DYNAMIC_DISPATCH(PanelGeometry)(&shape);
  return shape;
}

// A squared norm below this may have lost terms to underflow (each lost term
// is below FLT_MIN, so at most d * FLT_MIN in all, i.e. at most one float
// epsilon of the threshold): such target rows are rescored in double.
float TinyNormSq(size_t d) {
  return static_cast<float>(static_cast<double>(d) *
                            std::numeric_limits<float>::min() /
                            std::numeric_limits<float>::epsilon());
}

absl::Status PrepareCpuQueries(const MatrixView& queries, CpuQueries* out) {
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, kQueryPadFloats, out));
  out->inv_norm_f.assign(out->inv_norm.begin(), out->inv_norm.end());
  return absl::OkStatus();
}

// Packs the prepared queries for the panel kernel: wide blocks (two vectors
// of queries per k) while more than one vector's worth remains, then at most
// one narrow block, so that padding wastes less than a vector of lanes.
void PackPanelQueries(const CpuQueries& pq, size_t d, PanelShape shape,
                      PanelQueries* out) {
  out->shape = shape;
  const size_t lanes = shape.lanes;
  size_t total_width = 0;
  for (size_t first = 0; first < pq.rows;) {
    PanelQueries::Block block;
    block.first = first;
    block.wide = pq.rows - first > lanes;
    block.width = block.wide ? 2 * lanes : lanes;
    block.nr = block.wide ? shape.nr_wide : shape.nr_narrow;
    block.count = std::min(block.width, pq.rows - first);
    out->blocks.push_back(block);
    out->max_width = std::max(out->max_width, block.width);
    out->max_nr = std::max(out->max_nr, block.nr);
    total_width += block.width;
    first += block.count;
  }
  out->pack = hwy::AllocateAligned<float>(total_width * d);
  out->inv_q = hwy::AllocateAligned<float>(total_width);
  float* pack = out->pack.get();
  float* inv_q = out->inv_q.get();
  for (PanelQueries::Block& block : out->blocks) {
    block.pack = pack;
    block.inv_q = inv_q;
    for (size_t i = 0; i < block.width; ++i) {
      const bool real = i < block.count;
      const float* q = pq.values.data() + (block.first + i) * pq.stride;
      inv_q[i] = real ? static_cast<float>(pq.inv_norm[block.first + i]) : 0.0f;
      for (size_t k = 0; k < d; ++k) {
        pack[k * block.width + i] = real ? q[k] : 0.0f;
      }
    }
    pack += block.width * d;
    inv_q += block.width;
  }
}

float ClampedScore(double dot, double inv_query_norm, double inv_target_norm) {
  if (inv_query_norm == 0.0 || inv_target_norm == 0.0) return 0.0f;
  return static_cast<float>(
      std::clamp(dot * inv_query_norm * inv_target_norm, -1.0, 1.0));
}

// Scores a target row whose float squared norm may have underflowed, entirely
// in double: scores[(j - first) * stride] for queries j in [first, first +
// count).
void RescoreTinyRow(const CpuQueries& pq, const float* t, size_t d,
                    size_t first, size_t count, float* scores, size_t stride) {
  double norm_sq = 0.0;
  for (size_t c = 0; c < d; ++c) norm_sq += static_cast<double>(t[c]) * t[c];
  const double inv_t = norm_sq > 0.0 ? 1.0 / std::sqrt(norm_sq) : 0.0;
  for (size_t j = first; j < first + count; ++j) {
    const float* q = pq.values.data() + j * pq.stride;
    double dot = 0.0;
    for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
    scores[(j - first) * stride] = ClampedScore(dot, pq.inv_norm[j], inv_t);
  }
}

// The shifted queries for reading `targets` aligned (ShiftedQueries), in
// `storage`; values == nullptr when d is not a multiple of the vector
// length (rows then start at varying offsets) or vectors are one float.
ShiftedQueries ShiftQueries(const CpuQueries& pq, const MatrixView& targets,
                            hwy::AlignedFreeUniquePtr<float[]>* storage) {
  const size_t d = targets.cols;
  const size_t lanes = HWY_DYNAMIC_DISPATCH(RowLanes)();
  const auto address = reinterpret_cast<uintptr_t>(targets.data);
  if (lanes <= 1 || d % lanes != 0 || address % sizeof(float) != 0) return {};
  ShiftedQueries shifted;
  shifted.shift = (address / sizeof(float)) % lanes;
  shifted.vectors = (shifted.shift + d + lanes - 1) / lanes;
  shifted.stride = shifted.vectors * lanes;
  shifted.view_begin = targets.data;
  shifted.view_end = targets.data + targets.rows * d;
  *storage = hwy::AllocateAligned<float>(pq.rows * shifted.stride);
  float* values = storage->get();
  std::fill(values, values + pq.rows * shifted.stride, 0.0f);
  for (size_t j = 0; j < pq.rows; ++j) {
    std::copy(pq.values.data() + j * pq.stride,
              pq.values.data() + j * pq.stride + d,
              values + j * shifted.stride + shifted.shift);
  }
  shifted.values = values;
  return shifted;
}

// Row kernel: scores target rows [begin, end) into scores[j * stride + (r -
// begin)]. `norms` has room for end - begin floats. Returns the first row
// (absolute within `targets`) whose squared norm is not finite, or
// kNoBadRow; rows from that one on are left unscored.
size_t ScoreBlock(const CpuQueries& pq, const ShiftedQueries& shifted,
                  const MatrixView& targets, size_t begin, size_t end,
                  float* scores, size_t stride, float* norms) {
  const size_t d = targets.cols;
  auto& dots_and_norms = HWY_DYNAMIC_DISPATCH(DotsAndNorms);
  dots_and_norms(pq.values.data(), pq.rows, pq.stride, shifted,
                 targets.row(begin), end - begin, d, scores, stride, norms);
  uint8_t special[kBlockRows];
  if (HWY_DYNAMIC_DISPATCH(FinishRowScores)(
          scores, stride, pq.rows, pq.inv_norm_f.data(), norms, end - begin,
          TinyNormSq(d), special) == 0) {
    return kNoBadRow;
  }
  for (size_t r = begin; r < end; ++r) {
    const size_t local = r - begin;
    if (!special[local]) continue;
    if (!(norms[local] <= std::numeric_limits<float>::max())) return r;
    RescoreTinyRow(pq, targets.row(r), d, 0, pq.rows, scores + local, stride);
  }
  return kNoBadRow;
}

// Panel kernel over target rows [begin, end): tile by tile, a norm pass
// (the tile's only read from memory, already in cache but for the first
// tile: the kernel calls of the tile before prefetched it) and then every
// query block against the tile, nr rows at a time. Each group of scores goes to
// consume(first_query, num_queries, first_row, num_rows, scores, width)
// with scores[j * width + i] for query first_query + i and row first_row +
// j. Returns the first bad row (see ScoreBlock), or kNoBadRow; `skip(row)`
// true abandons the run before a tile starting at `row`.
template <class Skip, class Consume>
size_t PanelRun(const CpuQueries& pq, const PanelQueries& panel,
                const MatrixView& targets, size_t begin, size_t end,
                const Skip& skip, const Consume& consume) {
  const size_t d = targets.cols;
  size_t tile_rows = std::max<size_t>(1, kPanelTileBytes / (d * sizeof(float)));
  // A whole number of kernel calls per tile for both block widths.
  const size_t step = std::lcm(panel.shape.nr_narrow, panel.shape.nr_wide);
  tile_rows = std::max(step, tile_rows / step * step);
  const size_t max_nr = panel.max_nr;
  std::vector<float> norms(tile_rows);
  // inv_t is read max_nr at a time, so it is padded with zeros past the tile.
  auto inv_t = hwy::AllocateAligned<float>(tile_rows + max_nr);
  std::vector<uint8_t> tiny_row(tile_rows);
  auto scores = hwy::AllocateAligned<float>(max_nr * panel.max_width);
  std::vector<float> padded;  // the last rows of a run, zero-filled to nr
  const float tiny = TinyNormSq(d);
  auto& row_norms_sq = HWY_DYNAMIC_DISPATCH(RowNormsSq);
  auto& panel_scores = HWY_DYNAMIC_DISPATCH(PanelScores);
  constexpr size_t kLineBytes = 64;

  for (size_t tile = begin; tile < end; tile += tile_rows) {
    if (skip(tile)) return kNoBadRow;
    const size_t tile_end = std::min(end, tile + tile_rows);
    const size_t rows = tile_end - tile;
    // The next tile's cache lines, shared out over this tile's kernel calls.
    // Each call asks for at most d lines, one per k; a tile that has a next
    // one is full and takes at least tile_rows / nr calls, so with nr <= 16
    // (the floats in a line) they cover the next tile.
    const size_t next_rows = std::min(end, tile_end + tile_rows) - tile_end;
    const auto next_begin = reinterpret_cast<uintptr_t>(targets.row(tile_end));
    const uintptr_t next = next_begin / kLineBytes * kLineBytes;
    const size_t next_lines =
        next_rows == 0
            ? 0
            : (next_begin + next_rows * d * sizeof(float) - 1) / kLineBytes -
                  next / kLineBytes + 1;
    size_t calls = 0;
    for (const PanelQueries::Block& block : panel.blocks) {
      calls += (rows + block.nr - 1) / block.nr;
    }
    const size_t lines_per_call = (next_lines + calls - 1) / calls;
    size_t prefetched = 0;
    row_norms_sq(targets.row(tile), rows, d, norms.data());
    bool any_tiny = false;
    for (size_t r = 0; r < rows; ++r) {
      const float norm_sq = norms[r];
      if (!(norm_sq <= std::numeric_limits<float>::max())) return tile + r;
      tiny_row[r] = norm_sq < tiny;
      any_tiny |= norm_sq < tiny;
      // A tiny row's scores are replaced by a float64 rescore below.
      inv_t[r] = tiny_row[r]
                     ? 0.0f
                     : static_cast<float>(
                           1.0 / std::sqrt(static_cast<double>(norm_sq)));
    }
    std::fill(inv_t.get() + rows, inv_t.get() + rows + max_nr, 0.0f);

    for (const PanelQueries::Block& block : panel.blocks) {
      for (size_t r = 0; r < rows; r += block.nr) {
        const size_t n = std::min(block.nr, rows - r);
        const float* t = targets.row(tile + r);
        if (n < block.nr) {
          padded.assign(block.nr * d, 0.0f);
          std::copy(t, t + n * d, padded.begin());
          t = padded.data();
        }
        const size_t lines = std::min(lines_per_call, next_lines - prefetched);
        panel_scores(
            block.wide, block.pack, d, t, d, block.inv_q, inv_t.get() + r,
            reinterpret_cast<const float*>(next + prefetched * kLineBytes),
            lines, scores.get());
        prefetched += lines;
        if (any_tiny) {
          for (size_t j = 0; j < n; ++j) {
            if (!tiny_row[r + j]) continue;
            RescoreTinyRow(pq, targets.row(tile + r + j), d, block.first,
                           block.count, scores.get() + j * block.width, 1);
          }
        }
        consume(block.first, block.count, tile + r, n,
                static_cast<const float*>(scores.get()), block.width);
      }
    }
  }
  return kNoBadRow;
}

CosineKernel Resolve(CosineKernel kernel, size_t num_queries) {
  if (kernel == CosineKernel::kAuto) {
    kernel = num_queries >= kPanelMinQueries ? CosineKernel::kPanel
                                             : CosineKernel::kRowDot;
  }
  if (kernel == CosineKernel::kPanel && SelectedPanelShape().lanes == 0) {
    kernel = CosineKernel::kRowDot;
  }
  return kernel;
}

// How the target rows are split into tasks: task i covers rows
// [i * rows_per_task, min(n, (i + 1) * rows_per_task)).
struct TaskSplit {
  size_t num_tasks = 0;
  size_t rows_per_task = 0;
};

TaskSplit SplitTargets(size_t n, size_t d, size_t num_queries,
                       ThreadPool* pool) {
  if (n == 0) return {};
  size_t tasks = 1;
  if (pool != nullptr) {
    // Work per row grows with the queries, one unit per group of four.
    const size_t row_work = d * ((num_queries + 3) / 4);
    const size_t min_rows = std::max<size_t>(1, kMinTaskFloats / row_work);
    const size_t max_tasks =
        kTasksPerThread * (static_cast<size_t>(pool->num_threads()) + 1);
    tasks = std::clamp<size_t>((n + min_rows - 1) / min_rows, 1, max_tasks);
  }
  const size_t rows = (n + tasks - 1) / tasks;
  return {(n + rows - 1) / rows, rows};
}

// The lowest bad target row found by any task. A task skips blocks that lie
// past a bad row already found, since the call fails anyway.
class FirstBadRow {
 public:
  void Report(size_t row) {
    size_t seen = row_.load(std::memory_order_relaxed);
    while (row < seen &&
           !row_.compare_exchange_weak(seen, row, std::memory_order_relaxed)) {
    }
  }
  bool Before(size_t row) const {
    return row_.load(std::memory_order_relaxed) < row;
  }
  size_t get() const { return row_.load(std::memory_order_relaxed); }

 private:
  std::atomic<size_t> row_{kNoBadRow};
};

absl::Status BadTargetError(const MatrixView& targets, size_t row,
                            uint32_t index_offset) {
  return NonFiniteRowError("targets", targets.row(row), targets.cols,
                           static_cast<uint64_t>(index_offset) + row);
}

// Offers scores of consecutive rows (row first_row + r at scores[r *
// stride]) to a selector, skipping those that cannot enter it. Rows arrive
// in increasing index order, so a score merely equal to the worst kept one
// loses the tie and can be skipped without a call.
void OfferRows(const float* scores, size_t stride, size_t num_rows,
               size_t first_row, uint32_t index_offset, float min_score,
               TopKSelector* selector) {
  float floor = selector->worst_kept_score();
  for (size_t r = 0; r < num_rows; ++r) {
    const float s = scores[r * stride];
    if (s < min_score || s <= floor) continue;
    selector->Push(static_cast<uint32_t>(index_offset + first_row + r), s);
    floor = selector->worst_kept_score();
  }
}

}  // namespace

absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool, CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");

  const size_t d = targets.cols;
  const TaskSplit split = SplitTargets(targets.rows, d, queries.rows, pool);
  FirstBadRow bad;
  if (Resolve(kernel, queries.rows) == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      const size_t begin = task * split.rows_per_task;
      const size_t end = std::min(targets.rows, begin + split.rows_per_task);
      const size_t bad_row = PanelRun(
          pq, panel, targets, begin, end,
          [&](size_t row) { return bad.Before(row); },
          [&](size_t first_query, size_t num_queries, size_t first_row,
              size_t num_rows, const float* scores, size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              float* dst = out + (first_query + i) * out_stride + first_row;
              for (size_t j = 0; j < num_rows; ++j) {
                dst[j] = scores[j * width + i];
              }
            }
          });
      if (bad_row != kNoBadRow) bad.Report(bad_row);
    });
  } else {
    hwy::AlignedFreeUniquePtr<float[]> storage;
    const ShiftedQueries shifted = ShiftQueries(pq, targets, &storage);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<float> norms(kBlockRows);
      const size_t end =
          std::min(targets.rows, (task + 1) * split.rows_per_task);
      for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
        if (bad.Before(b)) return;
        const size_t block_end = std::min(end, b + kBlockRows);
        const size_t bad_row = ScoreBlock(pq, shifted, targets, b, block_end,
                                          out + b, out_stride, norms.data());
        if (bad_row != kNoBadRow) {
          bad.Report(bad_row);
          return;
        }
      }
    });
  }
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }
  return absl::OkStatus();
}

absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        uint32_t k, float min_score, uint32_t index_offset,
                        ThreadPool* pool, std::vector<TopKList>* out,
                        CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  const size_t num_q = queries.rows;
  if (num_q == 0 || targets.rows == 0) {
    out->assign(num_q, TopKList());
    return absl::OkStatus();
  }

  const size_t d = targets.cols;
  const size_t keep = std::min<size_t>(k, targets.rows);
  const TaskSplit split = SplitTargets(targets.rows, d, num_q, pool);
  // per_task[task][query]: that task's best `keep` for the query.
  std::vector<std::vector<TopKList>> per_task(split.num_tasks);
  FirstBadRow bad;
  auto take_lists = [&](size_t task, std::vector<TopKSelector>& selectors) {
    std::vector<TopKList>& lists = per_task[task];
    lists.reserve(num_q);
    for (TopKSelector& selector : selectors) lists.push_back(selector.Take());
  };
  if (Resolve(kernel, num_q) == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
      const size_t begin = task * split.rows_per_task;
      const size_t end = std::min(targets.rows, begin + split.rows_per_task);
      const size_t bad_row = PanelRun(
          pq, panel, targets, begin, end,
          [&](size_t row) { return bad.Before(row); },
          [&](size_t first_query, size_t num_queries, size_t first_row,
              size_t num_rows, const float* scores, size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              OfferRows(scores + i, width, num_rows, first_row, index_offset,
                        min_score, &selectors[first_query + i]);
            }
          });
      if (bad_row != kNoBadRow) {
        bad.Report(bad_row);
        return;
      }
      take_lists(task, selectors);
    });
  } else {
    hwy::AlignedFreeUniquePtr<float[]> storage;
    const ShiftedQueries shifted = ShiftQueries(pq, targets, &storage);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<float> scores(num_q * kBlockRows);
      std::vector<float> norms(kBlockRows);
      std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
      const size_t end =
          std::min(targets.rows, (task + 1) * split.rows_per_task);
      for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
        if (bad.Before(b)) return;
        const size_t block_end = std::min(end, b + kBlockRows);
        const size_t bad_row =
            ScoreBlock(pq, shifted, targets, b, block_end, scores.data(),
                       kBlockRows, norms.data());
        if (bad_row != kNoBadRow) {
          bad.Report(bad_row);
          return;
        }
        for (size_t j = 0; j < num_q; ++j) {
          OfferRows(scores.data() + j * kBlockRows, 1, block_end - b, b,
                    index_offset, min_score, &selectors[j]);
        }
      }
      take_lists(task, selectors);
    });
  }
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }

  // Merging is tasks x keep entries per query: with many queries and tasks
  // it is worth spreading over the pool too, a group of queries per task.
  out->assign(num_q, TopKList());
  const size_t per_merge = std::max<size_t>(
      1, kMinTaskFloats / std::max<size_t>(1, split.num_tasks * keep));
  RunKernelTasks(pool, (num_q + per_merge - 1) / per_merge, [&](size_t group) {
    std::vector<TopKList> candidates(split.num_tasks);
    const size_t end = std::min(num_q, (group + 1) * per_merge);
    for (size_t j = group * per_merge; j < end; ++j) {
      for (size_t task = 0; task < split.num_tasks; ++task) {
        candidates[task] = std::move(per_task[task][j]);
      }
      (*out)[j] = MergeTopK(candidates, keep);
    }
  });
  return absl::OkStatus();
}

absl::Status CosineDenseReference(const MatrixView& queries,
                                  const MatrixView& targets, float* out,
                                  size_t out_stride, uint32_t index_offset) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  const size_t d = queries.cols;
  std::vector<double> query_norm(queries.rows);
  for (size_t j = 0; j < queries.rows; ++j) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(queries.row(j), d, &norm_sq)) {
      return NonFiniteRowError("queries", queries.row(j), d, j);
    }
    query_norm[j] = std::sqrt(norm_sq);
  }
  std::vector<double> target_norm(targets.rows);
  for (size_t r = 0; r < targets.rows; ++r) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(targets.row(r), d, &norm_sq)) {
      return BadTargetError(targets, r, index_offset);
    }
    target_norm[r] = std::sqrt(norm_sq);
  }
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  for (size_t j = 0; j < queries.rows; ++j) {
    const float* q = queries.row(j);
    for (size_t r = 0; r < targets.rows; ++r) {
      const float* t = targets.row(r);
      double dot = 0.0;
      for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
      const double denom = query_norm[j] * target_norm[r];
      out[j * out_stride + r] =
          denom == 0.0 ? 0.0f
                       : static_cast<float>(std::clamp(dot / denom, -1.0, 1.0));
    }
  }
  return absl::OkStatus();
}

CosineKernel CosineKernelFor(size_t num_queries) {
  return Resolve(CosineKernel::kAuto, num_queries);
}

const char* CosineKernelName(CosineKernel kernel) {
  switch (kernel) {
    case CosineKernel::kAuto:
      return "auto";
    case CosineKernel::kRowDot:
      return "row";
    case CosineKernel::kPanel:
      return "panel";
  }
  return "unknown";
}

const char* CosineSimdTarget() {
  return HWY_DYNAMIC_DISPATCH(SelectedTargetName)();
}

}  // namespace engram::kernels::cpu
#endif  // HWY_ONCE
