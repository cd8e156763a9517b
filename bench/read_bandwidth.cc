// Compiled once per SIMD target by hwy/foreach_target.h, like the kernels.
#include "bench/read_bandwidth.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/read_bandwidth.cc"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace engram::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float SumRange(const float* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
  auto a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  // Aligned loads from here on: an unaligned full-width load spans two
  // cache lines, which costs a second access per load.
  float sum = 0.0f;
  size_t i = 0;
  for (; i < n &&
         reinterpret_cast<uintptr_t>(p + i) % (lanes * sizeof(float)) != 0;
       ++i) {
    sum += p[i];
  }
  for (; i + 8 * lanes <= n; i += 8 * lanes) {
    // Prefetched as far ahead as the row kernel prefetches (4 KiB): a
    // roofline without it measured below what the kernel reads.
    for (size_t v = 0; v < 8; ++v) hwy::Prefetch(p + i + v * lanes + 1024);
    a0 = hn::Add(a0, hn::Load(df, p + i));
    a1 = hn::Add(a1, hn::Load(df, p + i + lanes));
    a2 = hn::Add(a2, hn::Load(df, p + i + 2 * lanes));
    a3 = hn::Add(a3, hn::Load(df, p + i + 3 * lanes));
    a4 = hn::Add(a4, hn::Load(df, p + i + 4 * lanes));
    a5 = hn::Add(a5, hn::Load(df, p + i + 5 * lanes));
    a6 = hn::Add(a6, hn::Load(df, p + i + 6 * lanes));
    a7 = hn::Add(a7, hn::Load(df, p + i + 7 * lanes));
  }
  a0 = hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)),
               hn::Add(hn::Add(a4, a5), hn::Add(a6, a7)));
  sum += hn::GetLane(hn::SumOfLanes(df, a0));
  for (; i < n; ++i) sum += p[i];
  return sum;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace engram::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace engram::bench {

HWY_EXPORT(SumRange);

float SumFloats(const float* data, size_t n, size_t tasks,
                kernels::ThreadPool* pool) {
  tasks = std::max<size_t>(1, tasks);
  std::vector<float> partial(tasks);
  const size_t per = (n + tasks - 1) / tasks;
  auto run = [&](size_t t) {
    const size_t begin = std::min(n, t * per);
    const size_t end = std::min(n, begin + per);
    partial[t] = HWY_DYNAMIC_DISPATCH(SumRange)(data + begin, end - begin);
  };
  if (pool == nullptr) {
    for (size_t t = 0; t < tasks; ++t) run(t);
  } else {
    pool->ParallelFor(tasks, run);
  }
  float sum = 0.0f;
  for (float p : partial) sum += p;
  return sum;
}

}  // namespace engram::bench
#endif  // HWY_ONCE
