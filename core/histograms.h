// Histogram conventions the engine's and the server's families share: the
// latency buckets, so RPC and compute durations line up, and the quantile
// estimate GetStats reads back from a collected histogram.
//
// Thread-safety: safe from any thread (the buckets are built once, on first
// use, and never change).
#ifndef ENGRAM_CORE_HISTOGRAMS_H_
#define ENGRAM_CORE_HISTOGRAMS_H_

#include "prometheus/client_metric.h"
#include "prometheus/histogram.h"

namespace engram::core {

// Latency buckets in seconds, from 25 microseconds (a tiny request on a warm
// CPU) to 10 seconds (a large batch or a slow fallback), roughly 1-2.5-5 per
// decade. RPC and compute histograms share them so they line up.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// Estimates quantile q (0..1) of a collected histogram by linear
// interpolation inside the bucket, as PromQL's histogram_quantile() does.
// Returns 0 for an empty histogram.
double HistogramQuantile(const prometheus::ClientMetric::Histogram& h,
                         double q);

}  // namespace engram::core

#endif  // ENGRAM_CORE_HISTOGRAMS_H_
