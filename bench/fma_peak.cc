// Compiled once per SIMD target by hwy/foreach_target.h, like the kernels.
#include "bench/fma_peak.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/fma_peak.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace engram::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float FmaRounds(size_t iterations, double* flops) {
  const hn::ScalableTag<float> df;
  // Twelve chains: enough to cover a multiply-add's latency (4 cycles) on
  // two pipes, and few enough for 16 vector registers. Named, not an array,
  // so they stay in registers without relying on the unroller.
  auto a0 = hn::Set(df, 0.001f), a1 = hn::Set(df, 0.002f);
  auto a2 = hn::Set(df, 0.003f), a3 = hn::Set(df, 0.004f);
  auto a4 = hn::Set(df, 0.005f), a5 = hn::Set(df, 0.006f);
  auto a6 = hn::Set(df, 0.007f), a7 = hn::Set(df, 0.008f);
  auto a8 = hn::Set(df, 0.009f), a9 = hn::Set(df, 0.010f);
  auto a10 = hn::Set(df, 0.011f), a11 = hn::Set(df, 0.012f);
  // x -> 0.9999 x + 0.0001 stays near 1 whatever the count: no overflow,
  // no denormals.
  const auto m = hn::Set(df, 0.9999f);
  const auto c = hn::Set(df, 0.0001f);
  for (size_t i = 0; i < iterations; ++i) {
    a0 = hn::MulAdd(a0, m, c);
    a1 = hn::MulAdd(a1, m, c);
    a2 = hn::MulAdd(a2, m, c);
    a3 = hn::MulAdd(a3, m, c);
    a4 = hn::MulAdd(a4, m, c);
    a5 = hn::MulAdd(a5, m, c);
    a6 = hn::MulAdd(a6, m, c);
    a7 = hn::MulAdd(a7, m, c);
    a8 = hn::MulAdd(a8, m, c);
    a9 = hn::MulAdd(a9, m, c);
    a10 = hn::MulAdd(a10, m, c);
    a11 = hn::MulAdd(a11, m, c);
  }
  *flops = 2.0 * 12 * static_cast<double>(hn::Lanes(df)) *
           static_cast<double>(iterations);
  const auto sum = hn::Add(hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
                                   hn::Add(hn::Add(a4, a5), hn::Add(a6, a7))),
                           hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  return hn::GetLane(hn::SumOfLanes(df, sum));
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace engram::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace engram::bench {

HWY_EXPORT(FmaRounds);

float FmaChains(size_t iterations, double* flops) {
  return HWY_DYNAMIC_DISPATCH(FmaRounds)(iterations, flops);
}

}  // namespace engram::bench
#endif  // HWY_ONCE
