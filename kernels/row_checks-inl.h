// The per-target SIMD code of kernels/row_checks.cc: the float64 squared
// norm of a float32 row. Only row_checks.cc includes it, once per SIMD
// target through hwy/foreach_target.h.
//
// The sum is kept in kRowNormLanes logical lanes (element i goes to lane
// i % kRowNormLanes) that are joined in a fixed order, whatever the vector
// width: every target, and internal::RowSquaredNormPortable, give the same
// bits, so a norm does not depend on the CPU that loaded the row. Each
// product of two float32 values is exact in float64, so a fused multiply-add
// rounds as a multiply and an add would.

// The guard flips with HWY_TARGET_TOGGLE so that every target's pass compiles
// this file again.
#if defined(ENGRAM_KERNELS_ROW_CHECKS_INL_H_TARGET) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef ENGRAM_KERNELS_ROW_CHECKS_INL_H_TARGET
#undef ENGRAM_KERNELS_ROW_CHECKS_INL_H_TARGET
#else
#define ENGRAM_KERNELS_ROW_CHECKS_INL_H_TARGET
#endif

#include <cstddef>

#include "hwy/highway.h"
#include "kernels/row_checks.h"

HWY_BEFORE_NAMESPACE();
namespace engram::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_HAVE_SCALABLE || !HWY_HAVE_FLOAT64

// Sizeless vectors cannot live in an array, and without float64 lanes there
// is nothing to gain: the portable loop, which gives the same bits.
double RowSquaredNorm(const float* HWY_RESTRICT row, size_t cols) {
  return internal::RowSquaredNormPortable(row, cols);
}

#else

double RowSquaredNorm(const float* HWY_RESTRICT row, size_t cols) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  constexpr size_t kN = hn::MaxLanes(dd);
  static_assert(internal::kRowNormLanes % kN == 0,
                "the logical lanes must fill whole vectors");
  constexpr size_t kVectors = internal::kRowNormLanes / kN;
  using V = decltype(hn::Zero(dd));
  V acc[kVectors];
  for (size_t k = 0; k < kVectors; ++k) acc[k] = hn::Zero(dd);
  size_t i = 0;
  for (; i + internal::kRowNormLanes <= cols; i += internal::kRowNormLanes) {
    for (size_t k = 0; k < kVectors; ++k) {
      const V v = hn::PromoteTo(dd, hn::LoadU(df, row + i + k * kN));
      acc[k] = hn::MulAdd(v, v, acc[k]);
    }
  }
  HWY_ALIGN double lanes[internal::kRowNormLanes];
  for (size_t k = 0; k < kVectors; ++k) hn::Store(acc[k], dd, lanes + k * kN);
  return internal::FinishRowSquaredNorm(row, i, cols, lanes);
}

#endif

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace engram::kernels
HWY_AFTER_NAMESPACE();

#endif  // ENGRAM_KERNELS_ROW_CHECKS_INL_H_TARGET
