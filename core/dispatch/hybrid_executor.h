// HybridExecutor: the one execution path of the dispatch engine, and the
// OOM-safe one. core::Engine validates a request and calls Cosine() or
// Spread(); everything after validation happens here:
//
//  1. one DispatchSnapshot: the breaker's admission, the memory assessment,
//     the performance model's bucket and the thresholds of the config in
//     force, each read once (with the standard policy, an AUTO request below
//     min_gpu_work reads only the thresholds: it stays on the CPU whatever
//     the rest says);
//  2. the policy's decision and the rule that made it (a due exploration
//     probe is claimed, so only one request per interval probes);
//  3. the run. Cosine splits the QUERIES into chunks sized to the GPU's
//     memory budget (leaving the targets out when the GPU holds them
//     resident: CosineJob::resident_targets); each chunk carries the job's
//     row mask whole and writes its rows of out->scores (top_k == 0; Q x M,
//     M the admitted rows) or its queries' lists (top_k > 0), so finished
//     chunks stay as they are. Work, timings and the footprint count the
//     admitted rows only. On GPU OOM the chunk is retried on the GPU at
//     half size, down to min_chunk_queries and at most max_oom_retries times
//     per request, then the rest of the request runs on the CPU (gpu_oom). Any
//     other GPU error feeds the breaker and the rest runs on the CPU
//     (gpu_error). Finished chunks are never recomputed. Spreading runs as one
//     unit with the same placement, breaker and fallback rules;
//  3a. before its first GPU launch the request reserves the device bytes of
//     its chunk in the device memory ledger (memory_ledger.h), so concurrent
//     requests share the budget instead of each planning against all of it.
//     A cosine request takes a smaller chunk (down to min_chunk_queries)
//     when that is what is left; when not even that is left within the
//     ledger's wait it runs on the CPU (gpu_memory_busy), or fails with
//     RESOURCE_EXHAUSTED naming the bytes when it may not fall back. The
//     reservation shrinks with each OOM halving and is released when the
//     request's GPU part ends, on every path. With the ledger, the
//     snapshot's memory budget is the ledger's capacity (the reading's
//     free bytes plus the reserved bytes it counted as used, times the
//     margin), so a request is not planned smaller, or sent to the CPU, for
//     bytes that other requests hold and the ledger subtracts anyway;
//  4. every backend call's time goes into the performance model under the
//     backend that made it, the GPU outcome into the breaker, and the
//     ExecutionReport is filled: backend (MIXED when both ran), decided_by,
//     fallback_reason, chunks, compute_seconds.
//
// PLACEMENT_GPU_ONLY never falls back: it fails with RESOURCE_EXHAUSTED when
// the job cannot fit (at the smallest chunk, after the retries) and with
// UNAVAILABLE when there is no GPU, the breaker is open, or the GPU fails.
// With cpu_fallback = false, AUTO requests that reached the GPU fail the same
// way instead of falling back.
//
// Thread-safety: Cosine(), Spread() and every accessor may be called
// concurrently from any number of threads; per-request state lives on the
// caller's stack and the shared components are thread-safe
// (docs/concurrency.md).
#ifndef ENGRAM_CORE_DISPATCH_HYBRID_EXECUTOR_H_
#define ENGRAM_CORE_DISPATCH_HYBRID_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/dispatch/calibration.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/dispatch_policy.h"
#include "core/dispatch/executor_observer.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/memory_ledger.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"

namespace engram::dispatch {

class HybridExecutor {
 public:
  struct Options {
    ComputeBackend* cpu = nullptr;  // required; borrowed
    ComputeBackend* gpu = nullptr;  // optional; borrowed; nullptr: no GPU
    // Reported in GPU_ONLY refusals when gpu is null ("built without the
    // CUDA backend", ...).
    std::string gpu_unavailable_reason;
    // Required; borrowed. Read once per request; its (restart) fields size
    // the breaker, model and monitor at Create().
    ConfigStore* config = nullptr;
    // Optional; borrowed; nullptr: a RuleTablePolicy with the standard rules.
    const DispatchPolicy* policy = nullptr;
    ExecutorObserver* observer = nullptr;  // optional; borrowed
    Clock* clock = nullptr;  // optional; borrowed; nullptr: Clock::Real()
  };

  // Totals since creation, for tests and diagnostics (metrics go through
  // the observer).
  struct Counters {
    uint64_t requests = 0;
    uint64_t fallbacks_gpu_oom = 0;
    uint64_t fallbacks_gpu_error = 0;
    uint64_t fallbacks_gpu_memory_busy = 0;
    uint64_t ooms = 0;
    uint64_t oom_retries = 0;
    uint64_t probes = 0;
  };

  // INVALID_ARGUMENT without a CPU backend or config store, or when the CPU
  // backend is not of kind kCpu or the GPU backend not of kind kGpu.
  static absl::StatusOr<std::unique_ptr<HybridExecutor>> Create(
      const Options& options);

  HybridExecutor(const HybridExecutor&) = delete;
  HybridExecutor& operator=(const HybridExecutor&) = delete;

  // Computes a validated cosine job into *out and fills out->report. When
  // job.top_k == 0, out->scores must hold exactly Q*M floats, M the job's
  // scored_targets() (INTERNAL otherwise); when job.top_k > 0, out->top is
  // replaced by Q lists. INVALID_ARGUMENT for a mask that does not cover
  // the targets. On
  // error the output is partial and must not be used; the error names the
  // failed chunk (FailedChunkIndex) when the job was split.
  absl::Status Cosine(const CosineJob& job, CosineOutput* out);

  // Computes a validated spreading job into *out (activation of every node;
  // out->top when job.top_k > 0) and fills out->report.
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out);

  // Runs the calibration sweep (calibration.h) on this executor's backends
  // and seeds its performance model with the timings, then makes what it
  // measured the calibration in force (UseCalibration). Every GPU call of
  // the sweep goes through the circuit breaker, as a request's does. Blocks
  // for the sweep; may run while requests are served.
  absl::StatusOr<CrossoverTable> Calibrate(const CalibrationOptions& options);

  // Makes `calibration` the one in force: its cost models become the
  // performance model's priors (used until the window's own fits are
  // usable) and its smallest GPU wins become min_gpu_work_cosine / _spread
  // in the config store, now and at every later config (AdjustConfig).
  // FAILED_PRECONDITION when it was measured on another GPU (or with one,
  // and there is none now); nothing changes then.
  absl::Status UseCalibration(const StoredCalibration& calibration);
  // The calibration in force, if any.
  std::optional<StoredCalibration> calibration() const;
  // Applies the calibration in force to `config` (a reloaded file).
  void AdjustConfig(HybridConfig* config) const;

  bool has_gpu() const { return gpu_ != nullptr; }
  // The GPU backend's device name (BackendCapabilities); empty without one.
  std::string gpu_device() const {
    return gpu_ == nullptr ? std::string() : gpu_->Capabilities().device_name;
  }
  CircuitBreaker& breaker() { return *breaker_; }
  PerformanceModel& performance_model() { return *model_; }
  // nullptr when there is no GPU.
  MemoryPressureMonitor* memory_monitor() { return memory_.get(); }
  // nullptr when there is no GPU or the config disables the ledger.
  const DeviceMemoryLedger* memory_ledger() const { return ledger_.get(); }
  Counters counters() const;

 private:
  struct Run;  // one request's state, on the caller's stack

  HybridExecutor(const Options& options, const DispatchPolicy* policy,
                 std::unique_ptr<DispatchPolicy> owned_policy,
                 std::unique_ptr<CircuitBreaker> breaker,
                 std::unique_ptr<PerformanceModel> model,
                 std::unique_ptr<DeviceMemoryLedger> ledger,
                 std::unique_ptr<MemoryPressureMonitor> memory);

  DispatchSnapshot TakeSnapshot(Operation op, Placement placement,
                                uint64_t work, const JobFootprint& footprint,
                                uint64_t min_chunk_items,
                                const HybridConfig& config,
                                CircuitBreaker::Permit* permit);
  // Adds `share` of a probe to the credit; whether a whole one is there.
  bool EarnProbeCredit(double share);
  // Takes one probe's credit; false when there is not enough.
  bool SpendProbeCredit();
  // Decides, claiming the probe when the decision is one.
  DispatchDecision Decide(DispatchSnapshot& snapshot, Run& run);
  // Starts a request whose run.op, run.work and run.config are set:
  // snapshot, decision, report.decided_by. Returns the refusal, if any.
  absl::Status Begin(Run& run, Placement placement, const JobFootprint& fp,
                     uint64_t min_chunk_items, ExecutionReport* report);

  absl::Status CosineRange(const CosineJob& job, CosineOutput* out,
                           size_t begin, size_t end, Run& run);
  absl::Status CosineCall(ComputeBackend& backend, const CosineJob& job,
                          CosineOutput* out, size_t begin, size_t end,
                          Run& run);
  absl::Status SpreadCall(ComputeBackend& backend, const SpreadJob& job,
                          SpreadOutput* out, Run& run);
  // Handles a failed GPU call: the error to return, or OK to continue on the
  // CPU (or, for OOM with retries left, on the GPU at half size).
  absl::Status OnGpuFailure(const absl::Status& error, uint64_t rows, Run& run);
  absl::Status FallBack(absl::string_view reason, const absl::Status& error,
                        Run& run);
  // Reserves the GPU part's device bytes, between those of `min_items` and
  // of `want_items` items of `footprint`, lowering run.gpu_rows to what was
  // granted for a splittable job. OK to go on (on the CPU when the ledger
  // refused and fallback is allowed), or the refusal.
  absl::Status ReserveDevice(const JobFootprint& footprint, uint64_t min_items,
                             uint64_t want_items, Run& run);
  void Finish(Run& run, ExecutionReport* report);

  ComputeBackend* const cpu_;
  ComputeBackend* const gpu_;
  const std::string gpu_unavailable_reason_;
  ConfigStore* const config_;
  ExecutorObserver* const observer_;
  Clock* const clock_;
  const std::unique_ptr<DispatchPolicy> owned_policy_;
  const DispatchPolicy* const policy_;
  const std::unique_ptr<CircuitBreaker> breaker_;
  const std::unique_ptr<PerformanceModel> model_;
  // Before memory_: the monitor's probe goes through the ledger.
  const std::unique_ptr<DeviceMemoryLedger> ledger_;     // null: none
  const std::unique_ptr<MemoryPressureMonitor> memory_;  // null without GPU

  // Statistics only: relaxed, nothing is ordered by them.
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> fallbacks_gpu_oom_{0};
  std::atomic<uint64_t> fallbacks_gpu_error_{0};
  std::atomic<uint64_t> fallbacks_gpu_memory_busy_{0};
  std::atomic<uint64_t> ooms_{0};
  std::atomic<uint64_t> oom_retries_{0};
  std::atomic<uint64_t> probes_{0};
  // Exploration's share: each AUTO request the model decides earns
  // probe_max_share of a unit, a probe spends one, at most two are banked,
  // and one is there from the start so that a new process can explore at
  // once (relaxed: only the arithmetic must be atomic).
  static constexpr int64_t kProbeCreditUnit = 1'000'000;
  static constexpr int64_t kMaxProbeCredit = 2 * kProbeCreditUnit;
  std::atomic<int64_t> probe_credit_{kProbeCreditUnit};

  mutable absl::Mutex calibration_mu_;
  std::optional<StoredCalibration> calibration_
      ABSL_GUARDED_BY(calibration_mu_);
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_HYBRID_EXECUTOR_H_
