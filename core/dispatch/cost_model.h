// The fitted cost model the dispatch policy predicts with.
//
// Per backend and operation, one call of the backend (a chunk of a request)
// is taken to cost
//
//   fixed_seconds + bytes x seconds_per_byte + work x seconds_per_unit
//
// where `bytes` is what the call moves to and from the device (0 on the
// CPU, and the targets are left out when the device holds them resident)
// and `work` is the call's own work (jobs.h). The three parameters are
// fitted to the calls observed, each with its own size, by least squares on
// the relative error (so a 10 us call weighs as much as a 10 s one) with no
// parameter below zero. A request never seen, of any size, is then
// predicted as the sum of its planned calls: calls x fixed_seconds + its
// bytes and work at their rates. A launch overhead is what makes small
// device calls slow, a transfer rate what makes inline targets slow, and a
// compute rate what makes large requests fast; one line through a bucket's
// mean time per unit, as before, could express none of these.
//
// Thread-safety: the functions are pure; a CostFit is a plain value.
#ifndef ENGRAM_CORE_DISPATCH_COST_MODEL_H_
#define ENGRAM_CORE_DISPATCH_COST_MODEL_H_

#include <cstdint>

#include "absl/time/time.h"
#include "absl/types/span.h"

namespace engram::dispatch {

// One observed call.
struct CostObservation {
  uint64_t work = 0;
  uint64_t bytes = 0;
  double seconds = 0.0;
  absl::Time at = absl::InfinitePast();
};

// The fitted parameters of one backend for one operation.
struct CostFit {
  uint32_t samples = 0;  // observations the fit used
  // At least the model's min_samples observations, over at least two work
  // sizes a factor of two apart or more: only then does the fit extrapolate.
  bool usable = false;
  double fixed_seconds = 0.0;
  double seconds_per_byte = 0.0;
  double seconds_per_unit = 0.0;
  // Root mean square of (fitted - observed) / observed over the samples.
  double relative_error = 0.0;
  uint64_t min_work = 0;  // the smallest and largest call observed
  uint64_t max_work = 0;
  absl::Time newest = absl::InfinitePast();  // the latest observation
  // A stored calibration's fit, standing in while the window's own calls
  // make no usable one (PerformanceModel::SetPrior).
  bool prior = false;

  // Seconds for `calls` calls doing `work` and moving `bytes` in all.
  double Predict(uint64_t calls, uint64_t work, uint64_t bytes) const {
    return static_cast<double>(calls) * fixed_seconds +
           static_cast<double>(bytes) * seconds_per_byte +
           static_cast<double>(work) * seconds_per_unit;
  }
  // Whether a call of `work` lies within the observed sizes, widened by
  // `factor` on both sides: inside, the fit interpolates.
  bool Covers(uint64_t work, double factor) const {
    const double w = static_cast<double>(work);
    return samples > 0 && w >= static_cast<double>(min_work) / factor &&
           w <= static_cast<double>(max_work) * factor;
  }
};

// Fits the observations (see the file comment); `usable` needs
// `min_samples` of them. Observations of 0 seconds count as 1 ns.
CostFit FitCost(absl::Span<const CostObservation> observations,
                uint32_t min_samples);

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_COST_MODEL_H_
