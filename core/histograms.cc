#include "core/histograms.h"

#include <cstdint>
#include <limits>

namespace engram::core {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
      25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,  2.5,    5.0,  10.0};
  return *buckets;
}

double HistogramQuantile(const prometheus::ClientMetric::Histogram& h,
                         double q) {
  if (h.sample_count == 0 || h.bucket.empty()) return 0.0;
  const double rank = q * static_cast<double>(h.sample_count);
  double lower_bound = 0.0;
  uint64_t lower_count = 0;
  for (const auto& b : h.bucket) {
    if (static_cast<double>(b.cumulative_count) >= rank) {
      if (b.upper_bound == std::numeric_limits<double>::infinity()) {
        return lower_bound;  // as PromQL: the highest finite bound
      }
      const uint64_t in_bucket = b.cumulative_count - lower_count;
      if (in_bucket == 0) return b.upper_bound;
      return lower_bound + (b.upper_bound - lower_bound) *
                               (rank - static_cast<double>(lower_count)) /
                               static_cast<double>(in_bucket);
    }
    lower_bound = b.upper_bound;
    lower_count = b.cumulative_count;
  }
  return lower_bound;
}

}  // namespace engram::core
