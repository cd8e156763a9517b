#include "core/dispatch/performance_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::dispatch {
namespace {

constexpr int kNumOps = 2;
constexpr int kNumBackends = 2;

int OpSlot(Operation op) { return op == Operation::kCosine ? 0 : 1; }

}  // namespace

absl::Status PerformanceModel::Validate(const Options& options) {
  absl::Status status =
      Validate(options, [](absl::string_view member) -> std::string {
        return std::string(member);
      });
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat("performance model option ", status.message()));
}

absl::Status PerformanceModel::Validate(const Options& o, OptionNamer name) {
  const absl::Duration zero = absl::ZeroDuration();
  const absl::Duration max_age = absl::Seconds(kMaxOptionSeconds);
  ENGRAM_RETURN_IF_ERROR(
      CheckIntRange(name("window_samples"), o.window_samples, 1, 4096));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(
      name("max_sample_age"), o.max_sample_age, zero, true, max_age));
  ENGRAM_RETURN_IF_ERROR(
      CheckIntRange(name("min_samples"), o.min_samples, 1, 4096));
  ENGRAM_RETURN_IF_ERROR(CheckOrder(o.min_samples <= o.window_samples,
                                    name("min_samples"),
                                    name("window_samples")));
  ENGRAM_RETURN_IF_ERROR(
      CheckIntRange(name("success_window"), o.success_window, 1, 100000));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(
      name("success_max_age"), o.success_max_age, zero, true, max_age));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(name("probe_initial_interval"),
                                            o.probe_initial_interval, zero,
                                            true, max_age));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(
      name("probe_max_interval"), o.probe_max_interval, zero, true, max_age));
  ENGRAM_RETURN_IF_ERROR(
      CheckOrder(o.probe_initial_interval <= o.probe_max_interval,
                 name("probe_initial_interval"), name("probe_max_interval")));
  return CheckRealRange(name("probe_backoff"), o.probe_backoff, 1, false, 16);
}

absl::StatusOr<std::unique_ptr<PerformanceModel>> PerformanceModel::Create(
    const Options& options) {
  ENGRAM_RETURN_IF_ERROR(Validate(options));
  return std::unique_ptr<PerformanceModel>(new PerformanceModel(options));
}

PerformanceModel::PerformanceModel(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {
  absl::MutexLock lock(&mu_);
  const size_t rings = size_t{kNumOps} * kNumBuckets * kNumBackends;
  samples_.resize(rings * options_.window_samples);
  rings_.resize(rings);
  outcomes_.resize(size_t{kNumOps} * kNumBackends * options_.success_window);
  outcome_rings_.resize(size_t{kNumOps} * kNumBackends);
  probes_.resize(size_t{kNumOps} * kNumBuckets);
  fits_.resize(size_t{kNumOps} * kNumBackends);
  for (Probe& p : probes_) p.interval = options_.probe_initial_interval;
}

int PerformanceModel::BucketOf(uint64_t work) {
  return work <= 1 ? 0 : 63 - absl::countl_zero(work);
}

int PerformanceModel::BackendSlot(BackendKind backend) {
  switch (backend) {
    case BackendKind::kCpu:
      return 0;
    case BackendKind::kGpu:
      return 1;
    default:
      return -1;
  }
}

size_t PerformanceModel::RingIndex(Operation op, int bucket, int backend) {
  return (static_cast<size_t>(OpSlot(op)) * kNumBuckets + bucket) *
             kNumBackends +
         backend;
}

size_t PerformanceModel::OutcomeIndex(Operation op, int backend) {
  return static_cast<size_t>(OpSlot(op)) * kNumBackends + backend;
}

size_t PerformanceModel::ProbeIndex(Operation op, int bucket) {
  return static_cast<size_t>(OpSlot(op)) * kNumBuckets + bucket;
}

absl::Status PerformanceModel::RecordTiming(Operation op, BackendKind backend,
                                            uint64_t work, double seconds,
                                            uint64_t bytes) {
  const int slot = BackendSlot(backend);
  if (slot < 0) {
    return absl::InvalidArgumentError(
        "timings are recorded per backend: kCpu or kGpu");
  }
  if (!std::isfinite(seconds) || seconds < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("timing must be finite and >= 0, got ", seconds));
  }
  absl::MutexLock lock(&mu_);
  const size_t r = RingIndex(op, BucketOf(work), slot);
  Ring& ring = rings_[r];
  samples_[r * options_.window_samples + ring.next] =
      Sample{clock_->Now(), seconds, work, bytes};
  ring.next = (ring.next + 1) % options_.window_samples;
  ring.size = std::min<size_t>(ring.size + 1, options_.window_samples);
  ++fits_[OutcomeIndex(op, slot)].recorded;
  return absl::OkStatus();
}

const CostFit& PerformanceModel::FitLocked(Operation op, int backend,
                                           absl::Time now) const {
  FitCache& cache = fits_[OutcomeIndex(op, backend)];
  // Refitting costs O(samples) under the lock: a fit is refitted once an
  // eighth more calls arrived (a second after the last fit, any new call),
  // and, once it has min_samples, at most every 10 ms, so that a stream of
  // small requests does not pay for a refit every few calls.
  const uint64_t fresh = cache.recorded - cache.recorded_at_fit;
  const absl::Duration age = now - cache.fitted_at;
  const bool enough =
      fresh > 0 && (fresh * 8 >= cache.fit.samples || age >= absl::Seconds(1));
  const bool due =
      (enough && (cache.fit.samples < options_.min_samples ||
                  age >= absl::Milliseconds(10))) ||
      (cache.fit.samples > 0 && age >= options_.max_sample_age / 4);
  if (due) Refit(op, backend, now, &cache);
  return !cache.fit.usable && cache.prior.usable ? cache.prior : cache.fit;
}

void PerformanceModel::Refit(Operation op, int backend, absl::Time now,
                             FitCache* cache) const {
  std::vector<CostObservation> observations;
  const absl::Time oldest = now - options_.max_sample_age;
  for (int bucket = 0; bucket < kNumBuckets; ++bucket) {
    const size_t r = RingIndex(op, bucket, backend);
    const Sample* samples = &samples_[r * options_.window_samples];
    for (size_t i = 0; i < rings_[r].size; ++i) {
      const Sample& s = samples[i];
      if (s.at < oldest) continue;
      observations.push_back(CostObservation{s.work, s.bytes, s.seconds, s.at});
    }
  }
  cache->fit = FitCost(observations, options_.min_samples);
  cache->recorded_at_fit = cache->recorded;
  cache->fitted_at = now;
}

void PerformanceModel::SetPrior(Operation op, BackendKind backend,
                                const CostFit& fit) {
  const int slot = BackendSlot(backend);
  if (slot < 0) return;
  absl::MutexLock lock(&mu_);
  CostFit& prior = fits_[OutcomeIndex(op, slot)].prior;
  prior = fit.usable ? fit : CostFit();
  prior.prior = prior.usable;
}

CostFit PerformanceModel::Fit(Operation op, BackendKind backend) const {
  const int slot = BackendSlot(backend);
  if (slot < 0) return CostFit();
  absl::MutexLock lock(&mu_);
  return FitLocked(op, slot, clock_->Now());
}

absl::Status PerformanceModel::RecordOutcome(Operation op, BackendKind backend,
                                             bool success) {
  const int slot = BackendSlot(backend);
  if (slot < 0) {
    return absl::InvalidArgumentError(
        "outcomes are recorded per backend: kCpu or kGpu");
  }
  absl::MutexLock lock(&mu_);
  const size_t r = OutcomeIndex(op, slot);
  Ring& ring = outcome_rings_[r];
  outcomes_[r * options_.success_window + ring.next] =
      Outcome{clock_->Now(), success};
  ring.next = (ring.next + 1) % options_.success_window;
  ring.size = std::min<size_t>(ring.size + 1, options_.success_window);
  return absl::OkStatus();
}

void PerformanceModel::EstimateLocked(Operation op, int bucket, int backend,
                                      absl::Time now, BackendEstimate* estimate,
                                      std::vector<double>* latencies) const {
  const size_t r = RingIndex(op, bucket, backend);
  const Ring& ring = rings_[r];
  const Sample* samples = &samples_[r * options_.window_samples];
  const absl::Time oldest = now - options_.max_sample_age;
  double total_seconds = 0.0;
  double total_work = 0.0;
  latencies->clear();
  for (size_t i = 0; i < ring.size; ++i) {
    const Sample& s = samples[i];
    if (s.at < oldest) continue;
    latencies->push_back(s.seconds);
    total_seconds += s.seconds;
    total_work += static_cast<double>(s.work);
  }
  estimate->samples = static_cast<uint32_t>(latencies->size());
  estimate->usable = estimate->samples >= options_.min_samples;
  estimate->seconds_per_unit =
      total_work > 0.0 ? total_seconds / total_work : 0.0;

  const size_t o = OutcomeIndex(op, backend);
  const Ring& outcome_ring = outcome_rings_[o];
  const Outcome* outcomes = &outcomes_[o * options_.success_window];
  const absl::Time oldest_outcome = now - options_.success_max_age;
  uint32_t total = 0;
  uint32_t successes = 0;
  for (size_t i = 0; i < outcome_ring.size; ++i) {
    if (outcomes[i].at < oldest_outcome) continue;
    ++total;
    if (outcomes[i].success) ++successes;
  }
  estimate->outcomes = total;
  estimate->success_rate =
      total == 0 ? 1.0 : static_cast<double>(successes) / total;
}

void PerformanceModel::FillPercentiles(std::vector<double>* latencies,
                                       BackendEstimate* estimate) {
  if (latencies->empty()) return;
  std::sort(latencies->begin(), latencies->end());
  const size_t n = latencies->size();
  // Nearest rank: the smallest sample with at least p of the samples at or
  // below it.
  auto rank = [&](double p) {
    const size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    return (*latencies)[std::min(n, std::max<size_t>(k, 1)) - 1];
  };
  estimate->p50_seconds = rank(0.50);
  estimate->p95_seconds = rank(0.95);
  estimate->p99_seconds = rank(0.99);
}

PerfSnapshot PerformanceModel::Snapshot(Operation op, uint64_t work) const {
  PerfSnapshot snapshot;
  snapshot.op = op;
  snapshot.bucket = BucketOf(work);
  std::vector<double> cpu_latencies;
  std::vector<double> gpu_latencies;
  cpu_latencies.reserve(options_.window_samples);
  gpu_latencies.reserve(options_.window_samples);
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    EstimateLocked(op, snapshot.bucket, 0, now, &snapshot.cpu, &cpu_latencies);
    EstimateLocked(op, snapshot.bucket, 1, now, &snapshot.gpu, &gpu_latencies);
    snapshot.probe_due =
        now >= probes_[ProbeIndex(op, snapshot.bucket)].next_due;
    snapshot.cpu_fit = FitLocked(op, 0, now);
    snapshot.gpu_fit = FitLocked(op, 1, now);
  }
  FillPercentiles(&cpu_latencies, &snapshot.cpu);
  FillPercentiles(&gpu_latencies, &snapshot.gpu);
  return snapshot;
}

std::vector<PerfSnapshot> PerformanceModel::SnapshotAll() const {
  std::vector<PerfSnapshot> all;
  for (Operation op : {Operation::kCosine, Operation::kSpread}) {
    for (int bucket = 0; bucket < kNumBuckets; ++bucket) {
      bool populated = false;
      {
        absl::MutexLock lock(&mu_);
        populated = rings_[RingIndex(op, bucket, 0)].size > 0 ||
                    rings_[RingIndex(op, bucket, 1)].size > 0;
      }
      if (!populated) continue;
      // Each bucket is consistent in itself; buckets are taken one by one so
      // that a full dump never holds the lock for long.
      PerfSnapshot s = Snapshot(op, bucket == 0 ? 0 : uint64_t{1} << bucket);
      if (s.cpu.samples > 0 || s.gpu.samples > 0) all.push_back(std::move(s));
    }
  }
  return all;
}

bool PerformanceModel::TryClaimProbe(Operation op, uint64_t work) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  Probe& probe = probes_[ProbeIndex(op, BucketOf(work))];
  if (now < probe.next_due) return false;
  probe.next_due = now + probe.interval;
  probe.interval = std::min(probe.interval * options_.probe_backoff,
                            options_.probe_max_interval);
  return true;
}

void PerformanceModel::ResetProbeInterval(Operation op, uint64_t work) {
  absl::MutexLock lock(&mu_);
  Probe& probe = probes_[ProbeIndex(op, BucketOf(work))];
  probe.interval = options_.probe_initial_interval;
  probe.next_due =
      std::min(probe.next_due, clock_->Now() + options_.probe_initial_interval);
}

}  // namespace engram::dispatch
