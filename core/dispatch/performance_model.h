// The performance model the dispatch policy predicts with.
//
// Timings are kept per operation, per work-size bucket (bucket b holds work in
// [2^b, 2^(b+1)); work 0 and 1 share bucket 0) and per backend, in ring
// buffers allocated once at creation: the last `window_samples` timings no
// older than `max_sample_age`. Keeping buckets apart is what stops a GPU's
// launch overhead at small sizes from being averaged into its throughput at
// large ones, and keeping backends apart is what stops GPU timings from
// polluting the CPU's estimate. A bucket predicts only from its own samples:
// there is no extrapolation across sizes.
//
// The same observations, across buckets, are also fitted per operation and
// backend to a cost model (cost_model.h) that predicts sizes no bucket
// holds. A fit is recomputed when the observations changed enough (an
// eighth more of them, or any after a second), one with min_samples at
// most every 10 ms, and when samples may have expired.
//
// Success rates are windowed too (the last `success_window` outcomes no older
// than `success_max_age`), never lifetime, so an old bad spell is forgotten.
//
// Exploration: per operation and bucket, a probe of the backend the policy
// would not choose is due at most once per probe interval; the interval
// starts at `probe_initial_interval` and grows by `probe_backoff` with each
// probe claimed, up to `probe_max_interval`, until ResetProbeInterval().
//
// Thread-safety: all methods may be called concurrently. One mutex guards all
// state; Snapshot() copies one bucket's samples under it and computes
// percentiles after releasing it.
#ifndef ENGRAM_CORE_DISPATCH_PERFORMANCE_MODEL_H_
#define ENGRAM_CORE_DISPATCH_PERFORMANCE_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/cost_model.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/option_check.h"

namespace engram::dispatch {

// One backend's record in one bucket.
struct BackendEstimate {
  uint32_t samples = 0;  // timings in the window
  // True when samples >= the model's min_samples: only then is the estimate
  // used to predict.
  bool usable = false;
  double seconds_per_unit = 0.0;  // sum(seconds) / sum(work) over the window
  double p50_seconds = 0.0;
  double p95_seconds = 0.0;
  double p99_seconds = 0.0;
  uint32_t outcomes = 0;      // successes and failures in the success window
  double success_rate = 1.0;  // 1 when there are no outcomes

  // Predicted seconds for `work` units; only meaningful when usable.
  double Predict(uint64_t work) const {
    return seconds_per_unit * static_cast<double>(work);
  }
};

// Both backends' records for one operation and bucket, taken at one instant.
struct PerfSnapshot {
  Operation op = Operation::kCosine;
  int bucket = 0;
  BackendEstimate cpu;
  BackendEstimate gpu;
  // The operation's fitted cost models, across all buckets.
  CostFit cpu_fit;
  CostFit gpu_fit;
  bool probe_due = false;
};

class PerformanceModel {
 public:
  static constexpr int kNumBuckets = 64;

  // Durations' upper bound, 1e7 s, is kMaxOptionSeconds (option_check.h).
  struct Options {
    uint32_t window_samples = 64;                       // [1, 4096]
    absl::Duration max_sample_age = absl::Minutes(10);  // (0, 1e7 s]
    uint32_t min_samples = 3;                           // [1, window_samples]
    uint32_t success_window = 100;                      // [1, 100000]
    absl::Duration success_max_age = absl::Minutes(5);  // (0, 1e7 s]
    absl::Duration probe_initial_interval = absl::Seconds(1);  // (0, 1e7 s]
    // [probe_initial_interval, 1e7 s]
    absl::Duration probe_max_interval = absl::Minutes(1);
    double probe_backoff = 2.0;  // [1, 16]
    Clock* clock = nullptr;      // borrowed; nullptr means Clock::Real()
  };

  // OK, or INVALID_ARGUMENT naming the first option outside its range: the
  // one place these ranges are checked (Create() calls it, and so does the
  // hybrid config for the Options it embeds). `name` spells an option in the
  // message; without it the message reads "performance model option MEMBER".
  static absl::Status Validate(const Options& options);
  static absl::Status Validate(const Options& options, OptionNamer name);

  // INVALID_ARGUMENT for an option outside its range (Validate).
  static absl::StatusOr<std::unique_ptr<PerformanceModel>> Create(
      const Options& options);

  PerformanceModel(const PerformanceModel&) = delete;
  PerformanceModel& operator=(const PerformanceModel&) = delete;

  // floor(log2(work)), with work 0 in bucket 0.
  static int BucketOf(uint64_t work);

  // Records that one call of `work` units of `op`, moving `bytes` to and
  // from the device (0 on the CPU), took `seconds` on `backend`.
  // INVALID_ARGUMENT unless backend is kCpu or kGpu (a MIXED run is recorded
  // chunk by chunk under the backend that ran each chunk) and seconds is
  // finite and >= 0.
  absl::Status RecordTiming(Operation op, BackendKind backend, uint64_t work,
                            double seconds, uint64_t bytes = 0)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Records one call's success or failure on `backend` (kCpu or kGpu, else
  // INVALID_ARGUMENT).
  absl::Status RecordOutcome(Operation op, BackendKind backend, bool success)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Both backends' estimates for the bucket of `work`, consistent with each
  // other: taken under one lock acquisition.
  PerfSnapshot Snapshot(Operation op, uint64_t work) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Every bucket of every operation that holds at least one timing.
  std::vector<PerfSnapshot> SnapshotAll() const ABSL_LOCKS_EXCLUDED(mu_);

  // A fit of `op` on `backend` (kCpu or kGpu, else ignored) to predict with
  // while the window's own calls make no usable one: a stored calibration,
  // so that a restart does not start from guesses. It never expires; the
  // window's fit replaces it whenever that one is usable. An unusable
  // `fit` clears it.
  void SetPrior(Operation op, BackendKind backend, const CostFit& fit)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The fitted cost model of `op` on `backend` (kCpu or kGpu; otherwise an
  // empty fit), refitted first when it is due; the prior (SetPrior) while
  // the window's own fit is not usable.
  CostFit Fit(Operation op, BackendKind backend) const ABSL_LOCKS_EXCLUDED(mu_);

  // Claims the due probe of `work`'s bucket: true for exactly one caller per
  // interval, which then grows. False when no probe is due.
  bool TryClaimProbe(Operation op, uint64_t work) ABSL_LOCKS_EXCLUDED(mu_);

  // Returns the bucket's probe interval to the initial one, e.g. when a probe
  // found the other backend faster.
  void ResetProbeInterval(Operation op, uint64_t work) ABSL_LOCKS_EXCLUDED(mu_);

  const Options& options() const { return options_; }

 private:
  struct Sample {
    absl::Time at;
    double seconds = 0.0;
    uint64_t work = 0;
    uint64_t bytes = 0;
  };
  // An operation's and backend's fit, with what it was fitted from.
  struct FitCache {
    CostFit fit;
    CostFit prior;          // SetPrior's; unusable when there is none
    uint64_t recorded = 0;  // timings recorded since creation, ever
    uint64_t recorded_at_fit = 0;
    absl::Time fitted_at = absl::InfinitePast();
  };
  struct Ring {
    size_t next = 0;
    size_t size = 0;
  };
  struct Outcome {
    absl::Time at;
    bool success = true;
  };
  struct Probe {
    absl::Time next_due = absl::InfinitePast();
    absl::Duration interval;
  };

  explicit PerformanceModel(const Options& options);

  static int BackendSlot(BackendKind backend);  // 0 cpu, 1 gpu, -1 other
  static size_t RingIndex(Operation op, int bucket, int backend);
  static size_t OutcomeIndex(Operation op, int backend);
  static size_t ProbeIndex(Operation op, int bucket);

  // Fills everything but the percentiles from raw copies taken under mu_.
  void EstimateLocked(Operation op, int bucket, int backend, absl::Time now,
                      BackendEstimate* estimate,
                      std::vector<double>* latencies) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  static void FillPercentiles(std::vector<double>* latencies,
                              BackendEstimate* estimate);
  // The fit of `op` on backend slot `backend`, refitted when due, or the
  // prior.
  const CostFit& FitLocked(Operation op, int backend, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refit(Operation op, int backend, absl::Time now, FitCache* cache) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  // [op][bucket][backend] rings of window_samples samples each, flattened.
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
  std::vector<Ring> rings_ ABSL_GUARDED_BY(mu_);
  // [op][backend] rings of success_window outcomes each, flattened.
  std::vector<Outcome> outcomes_ ABSL_GUARDED_BY(mu_);
  std::vector<Ring> outcome_rings_ ABSL_GUARDED_BY(mu_);
  std::vector<Probe> probes_ ABSL_GUARDED_BY(mu_);  // [op][bucket]
  // [op][backend]; refitted by readers, hence mutable.
  mutable std::vector<FitCache> fits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_PERFORMANCE_MODEL_H_
