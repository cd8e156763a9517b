#include "core/dispatch/hybrid_executor.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"
#include "kernels/cpu/topk.h"
#include "kernels/row_mask.h"

namespace engram::dispatch {

// One request's state. Lives on the calling thread's stack; never shared.
struct HybridExecutor::Run {
  Operation op = Operation::kCosine;
  uint64_t work = 0;
  std::shared_ptr<const HybridConfig> config;
  Placement placement = Placement::kAuto;
  // The CPU calls the request would make (a stoppable job runs in pieces of
  // about cpu_chunk_work), for the cost model's prediction.
  uint64_t cpu_calls = 1;
  DispatchSnapshot snapshot;
  DispatchDecision decision;
  CircuitBreaker::Permit permit;

  // Cosine: the target rows the job's mask admits (CosineJob::
  // scored_targets), counted once: every chunk scores the same ones.
  uint64_t scored_targets = 0;

  bool gpu_active = false;  // chunks still go to the GPU
  bool fallback_allowed = true;
  uint64_t gpu_rows = 0;  // current GPU chunk size (cosine)
  uint32_t oom_retries = 0;
  bool gpu_failed = false;  // a device error was fed to the breaker
  std::string fallback_reason;

  uint32_t chunks = 0;
  double compute_seconds = 0.0;  // every backend call, failed ones included
  // Per backend (0 cpu, 1 gpu): ran successfully, seconds, work items.
  bool ran[2] = {false, false};
  double seconds[2] = {0.0, 0.0};
  uint64_t items[2] = {0, 0};

  // The GPU part's device bytes; released by FallBack or when the Run goes.
  DeviceMemoryLedger::Reservation reservation;
};

namespace {

// Backends allocate host memory as they compute, and nothing above the
// executor catches: an allocation failure (or any other exception) in a
// backend must fail the one call, not the server. A failed allocation is
// RESOURCE_EXHAUSTED, like running out of device memory: the GPU path
// retries smaller, the CPU fails the request.
template <typename Call>
absl::Status CallBackend(const ComputeBackend& backend, Call call) {
  try {
    return call();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(backend.name(), ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(backend.name(), " failed: ", e.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(backend.name(), " failed with an unknown exception"));
  }
}

int Slot(BackendKind kind) { return kind == BackendKind::kGpu ? 1 : 0; }

// Whether `error` is the caller's stop rather than a backend's failure.
bool IsStop(const absl::Status& error, const base::Interrupt* interrupt) {
  return !error.ok() && !base::CheckInterrupt(interrupt).ok();
}

// A component's Options from the config, on the executor's clock: the config
// holds no clock, since it is read from a file and swapped on reload.
template <typename ComponentOptions>
ComponentOptions WithClock(ComponentOptions options, Clock* clock) {
  options.clock = clock;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HybridExecutor>> HybridExecutor::Create(
    const Options& options) {
  if (options.cpu == nullptr) {
    return absl::InvalidArgumentError("HybridExecutor needs a CPU backend");
  }
  if (options.config == nullptr) {
    return absl::InvalidArgumentError("HybridExecutor needs a config store");
  }
  if (options.cpu->Capabilities().kind != BackendKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend ", options.cpu->name(), " is not a CPU backend"));
  }
  if (options.gpu != nullptr &&
      options.gpu->Capabilities().kind != BackendKind::kGpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend ", options.gpu->name(), " is not a GPU backend"));
  }
  Clock* clock = options.clock != nullptr ? options.clock : Clock::Real();
  const std::shared_ptr<const HybridConfig> config = options.config->Get();

  std::unique_ptr<DispatchPolicy> owned_policy;
  const DispatchPolicy* policy = options.policy;
  if (policy == nullptr) {
    ENGRAM_ASSIGN_OR_RETURN(owned_policy, RuleTablePolicy::Create({}));
    policy = owned_policy.get();
  }
  ENGRAM_ASSIGN_OR_RETURN(
      std::unique_ptr<CircuitBreaker> breaker,
      CircuitBreaker::Create(WithClock(config->breaker, clock)));
  ENGRAM_ASSIGN_OR_RETURN(
      std::unique_ptr<PerformanceModel> model,
      PerformanceModel::Create(WithClock(config->model, clock)));
  std::unique_ptr<DeviceMemoryLedger> ledger;
  std::unique_ptr<MemoryPressureMonitor> memory;
  if (options.gpu != nullptr) {
    ComputeBackend* gpu = options.gpu;
    MemoryPressureMonitor::Probe probe = [gpu] { return gpu->QueryMemory(); };
    if (config->ledger.enabled) {
      DeviceMemoryLedger::Options ledger_options = config->ledger;
      ledger_options.safety_margin = config->memory.safety_margin;
      ENGRAM_ASSIGN_OR_RETURN(ledger,
                              DeviceMemoryLedger::Create(ledger_options));
      // The ledger sees every reading the monitor takes, so both budget
      // from the same one.
      probe = [l = ledger.get(), query = std::move(probe)] {
        return l->Observe(query);
      };
    }
    ENGRAM_ASSIGN_OR_RETURN(
        memory, MemoryPressureMonitor::Create(WithClock(config->memory, clock),
                                              std::move(probe)));
  }
  if (options.observer != nullptr) {
    ExecutorObserver* observer = options.observer;
    breaker->AddListener([observer](const BreakerTransition& t) {
      observer->OnBreakerTransition(t);
    });
  }
  return std::unique_ptr<HybridExecutor>(new HybridExecutor(
      options, policy, std::move(owned_policy), std::move(breaker),
      std::move(model), std::move(ledger), std::move(memory)));
}

HybridExecutor::HybridExecutor(const Options& options,
                               const DispatchPolicy* policy,
                               std::unique_ptr<DispatchPolicy> owned_policy,
                               std::unique_ptr<CircuitBreaker> breaker,
                               std::unique_ptr<PerformanceModel> model,
                               std::unique_ptr<DeviceMemoryLedger> ledger,
                               std::unique_ptr<MemoryPressureMonitor> memory)
    : cpu_(options.cpu),
      gpu_(options.gpu),
      gpu_unavailable_reason_(options.gpu_unavailable_reason),
      config_(options.config),
      observer_(options.observer),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      owned_policy_(std::move(owned_policy)),
      policy_(policy),
      breaker_(std::move(breaker)),
      model_(std::move(model)),
      ledger_(std::move(ledger)),
      memory_(std::move(memory)) {}

HybridExecutor::Counters HybridExecutor::counters() const {
  Counters c;
  c.requests = requests_.load(std::memory_order_relaxed);
  c.fallbacks_gpu_oom = fallbacks_gpu_oom_.load(std::memory_order_relaxed);
  c.fallbacks_gpu_error = fallbacks_gpu_error_.load(std::memory_order_relaxed);
  c.fallbacks_gpu_memory_busy =
      fallbacks_gpu_memory_busy_.load(std::memory_order_relaxed);
  c.ooms = ooms_.load(std::memory_order_relaxed);
  c.oom_retries = oom_retries_.load(std::memory_order_relaxed);
  c.probes = probes_.load(std::memory_order_relaxed);
  return c;
}

DispatchSnapshot HybridExecutor::TakeSnapshot(Operation op, Placement placement,
                                              uint64_t work,
                                              const JobFootprint& footprint,
                                              uint64_t min_chunk_items,
                                              const HybridConfig& config,
                                              CircuitBreaker::Permit* permit) {
  DispatchSnapshot s;
  s.op = op;
  s.placement = placement;
  s.work = work;
  s.gpu_present = gpu_ != nullptr;
  s.gpu_unavailable_reason = gpu_unavailable_reason_;
  s.min_gpu_work = op == Operation::kCosine ? config.min_gpu_work_cosine
                                            : config.min_gpu_work_spread;
  s.footprint = footprint;
  s.min_chunk_items = min_chunk_items;
  s.gpu_advantage = config.gpu_advantage;
  s.probe_enabled = config.probe_enabled;
  s.probe_max_cost_ratio = config.probe_max_cost_ratio;
  s.probe_stale_after = model_->options().probe_max_interval;
  // The standard rules keep an AUTO request below min_gpu_work on the CPU
  // whatever the GPU's state, so such a request (the most frequent kind)
  // takes no breaker permit, no memory reading (which may ask the driver)
  // and no model read. A custom policy sees everything.
  if (owned_policy_ != nullptr && placement == Placement::kAuto &&
      work < s.min_gpu_work) {
    s.breaker_admission = CircuitBreaker::Admission::kAllowed;  // not asked
    return s;
  }
  if (gpu_ != nullptr && placement != Placement::kCpuOnly) {
    BreakerSnapshot at_admission;
    *permit = breaker_->Admit(&at_admission);
    s.breaker_admission = permit->admission();
    s.breaker_state = at_admission.state;
    s.breaker_retry_after = at_admission.retry_after;
    s.memory = memory_->Assess();
    if (ledger_ != nullptr) {
      // A reading taken while other requests ran counts their bytes as
      // used, and the ledger subtracts their reservations again when this
      // one reserves: plan against what one request could have with nothing
      // reserved, and let the ledger grant what is left now.
      const DeviceMemoryLedger::Stats ledger = ledger_->stats();
      if (ledger.has_reading) {
        s.memory.budget_bytes =
            std::max(s.memory.budget_bytes, ledger.capacity_bytes);
      }
    }
  }
  s.perf = model_->Snapshot(op, work);
  s.now = clock_->Now();
  // The GPU's calls as the chunk plan would make them: as many rows as fit
  // the memory budget each, every call moving the fixed part again.
  s.gpu_calls = 1;
  if (footprint.splittable && s.memory.has_reading && footprint.items > 0) {
    const uint64_t fit = std::min<uint64_t>(
        ItemsThatFit(footprint, s.memory.budget_bytes),
        op == Operation::kCosine ? config.max_chunk_queries : footprint.items);
    if (fit > 0) s.gpu_calls = (footprint.items + fit - 1) / fit;
  }
  s.gpu_bytes = footprint.fixed_bytes * s.gpu_calls +
                footprint.per_item_bytes * footprint.items;
  if (placement == Placement::kAuto && config.probe_enabled) {
    s.probe_share_left = EarnProbeCredit(config.probe_max_share);
  }
  return s;
}

bool HybridExecutor::EarnProbeCredit(double share) {
  const int64_t earned = static_cast<int64_t>(share * kProbeCreditUnit);
  int64_t credit = probe_credit_.load(std::memory_order_relaxed);
  int64_t next;
  do {
    next = std::min(credit + earned, kMaxProbeCredit);
  } while (!probe_credit_.compare_exchange_weak(credit, next,
                                                std::memory_order_relaxed));
  return next >= kProbeCreditUnit;
}

bool HybridExecutor::SpendProbeCredit() {
  int64_t credit = probe_credit_.load(std::memory_order_relaxed);
  do {
    if (credit < kProbeCreditUnit) return false;
  } while (!probe_credit_.compare_exchange_weak(
      credit, credit - kProbeCreditUnit, std::memory_order_relaxed));
  return true;
}

DispatchDecision HybridExecutor::Decide(DispatchSnapshot& snapshot, Run& run) {
  DispatchDecision decision = policy_->Decide(snapshot);
  if (decision.probe && !SpendProbeCredit()) {
    // Other requests spent the probes' share first.
    snapshot.probe_share_left = false;
    decision = policy_->Decide(snapshot);
  }
  if (decision.probe && !model_->TryClaimProbe(run.op, run.work)) {
    // Another request claimed this interval's probe first; the credit goes
    // back.
    probe_credit_.fetch_add(kProbeCreditUnit, std::memory_order_relaxed);
    snapshot.perf.probe_due = false;
    decision = policy_->Decide(snapshot);
  }
  if (decision.probe) probes_.fetch_add(1, std::memory_order_relaxed);
  return decision;
}

absl::Status HybridExecutor::Begin(Run& run, Placement placement,
                                   const JobFootprint& footprint,
                                   uint64_t min_chunk_items,
                                   ExecutionReport* report) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  *report = ExecutionReport{};
  run.placement = placement;
  const absl::Time start = clock_->Now();
  run.snapshot = TakeSnapshot(run.op, placement, run.work, footprint,
                              min_chunk_items, *run.config, &run.permit);
  run.snapshot.cpu_calls = run.cpu_calls;
  run.decision = Decide(run.snapshot, run);
  if (observer_ != nullptr) {
    observer_->OnDecision(run.op, run.decision.backend, run.decision.rule,
                          absl::ToDoubleSeconds(clock_->Now() - start));
  }
  if (run.decision.refusal.ok() && run.decision.backend == BackendKind::kGpu &&
      !run.permit.allowed()) {
    // Only a custom policy can get here: the GPU never runs without the
    // breaker's permit.
    run.decision = DispatchDecision{};
    run.decision.rule = kRuleBreakerOpen;
    run.decision.backend = BackendKind::kCpu;
    if (placement == Placement::kGpuOnly) {
      run.decision.refusal = absl::UnavailableError(
          "PLACEMENT_GPU_ONLY but the GPU circuit breaker rejected the call");
    }
  }
  report->decided_by = std::string(run.decision.rule);
  if (!run.decision.refusal.ok()) return run.decision.refusal;
  run.gpu_active = run.decision.backend == BackendKind::kGpu;
  // A probe slot the policy did not use goes back to the breaker at once,
  // so another request can probe the GPU.
  if (!run.gpu_active) breaker_->Release(run.permit);
  run.fallback_allowed =
      placement != Placement::kGpuOnly && run.config->cpu_fallback;
  return absl::OkStatus();
}

absl::Status HybridExecutor::FallBack(absl::string_view reason,
                                      const absl::Status& error, Run& run) {
  if (!run.fallback_allowed) {
    const char* why = run.placement == Placement::kGpuOnly
                          ? "PLACEMENT_GPU_ONLY never falls back"
                          : "CPU fallback is disabled";
    if (reason == kFallbackGpuOom) {
      return absl::ResourceExhaustedError(
          absl::StrCat("GPU out of memory at the smallest chunk (", why,
                       "): ", error.message()));
    }
    if (reason == kFallbackGpuMemoryBusy) {
      return absl::ResourceExhaustedError(
          absl::StrCat(error.message(), " (", why, ")"));
    }
    return absl::UnavailableError(
        absl::StrCat("GPU failed (", why, "): ", error.message()));
  }
  run.gpu_active = false;
  // The CPU does the rest: the device bytes are someone else's to use.
  run.reservation.Release();
  if (run.fallback_reason.empty()) {
    run.fallback_reason = std::string(reason);
    (reason == kFallbackGpuOom          ? fallbacks_gpu_oom_
     : reason == kFallbackGpuMemoryBusy ? fallbacks_gpu_memory_busy_
                                        : fallbacks_gpu_error_)
        .fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) observer_->OnFallback(run.op, reason);
  }
  return absl::OkStatus();
}

absl::Status HybridExecutor::ReserveDevice(const JobFootprint& footprint,
                                           uint64_t min_items,
                                           uint64_t want_items, Run& run) {
  if (ledger_ == nullptr || !run.gpu_active) return absl::OkStatus();
  min_items = std::min(min_items, want_items);
  const uint64_t want_bytes = footprint.BytesFor(want_items);
  absl::StatusOr<DeviceMemoryLedger::Reservation> reservation =
      ledger_->Reserve(footprint.BytesFor(min_items), want_bytes);
  if (!reservation.ok()) {
    return FallBack(kFallbackGpuMemoryBusy, reservation.status(), run);
  }
  run.reservation = *std::move(reservation);
  if (footprint.splittable && run.reservation.bytes() < want_bytes) {
    run.gpu_rows =
        std::clamp<uint64_t>(ItemsThatFit(footprint, run.reservation.bytes()),
                             min_items, want_items);
  }
  return absl::OkStatus();
}

absl::Status HybridExecutor::OnGpuFailure(const absl::Status& error,
                                          uint64_t rows, Run& run) {
  if (observer_ != nullptr) {
    observer_->OnBackendError(run.op, BackendKind::kGpu, error);
  }
  switch (ClassifyBackendError(error)) {
    case BackendErrorClass::kNone:
      return absl::OkStatus();
    case BackendErrorClass::kClient:
      // The CPU would reject the same input; the device is not at fault.
      return error;
    case BackendErrorClass::kOutOfMemory: {
      ooms_.fetch_add(1, std::memory_order_relaxed);
      if (observer_ != nullptr) observer_->OnOom(run.op);
      const uint64_t floor =
          std::max<uint64_t>(1, run.config->min_chunk_queries);
      if (run.snapshot.footprint.splittable &&
          run.oom_retries < run.config->max_oom_retries && rows / 2 >= floor) {
        ++run.oom_retries;
        run.gpu_rows = rows / 2;
        run.reservation.ShrinkTo(run.snapshot.footprint.BytesFor(run.gpu_rows));
        oom_retries_.fetch_add(1, std::memory_order_relaxed);
        if (observer_ != nullptr) observer_->OnOomRetry(run.op);
        return absl::OkStatus();
      }
      return FallBack(kFallbackGpuOom, error, run);
    }
    case BackendErrorClass::kSticky:
    case BackendErrorClass::kDevice:
      (void)model_->RecordOutcome(run.op, BackendKind::kGpu, false);
      run.gpu_failed = true;
      breaker_->Record(run.permit, error);
      return FallBack(kFallbackGpuError, error, run);
  }
  return error;
}

absl::Status HybridExecutor::CosineCall(ComputeBackend& backend,
                                        const CosineJob& job, CosineOutput* out,
                                        size_t begin, size_t end, Run& run) {
  const BackendKind kind = backend.Capabilities().kind;
  // Chunks split the queries: each scores the same M admitted rows, its
  // dense scores the rows of its queries in the Q x M output.
  const size_t m = run.scored_targets;
  CosineJob part = job;
  part.queries = job.queries.Rows(begin, end);
  CosineOutput part_out;
  if (job.top_k == 0)
    part_out.scores = out->scores.subspan(begin * m, (end - begin) * m);

  const absl::Time start = clock_->Now();
  absl::Status status =
      CallBackend(backend, [&] { return backend.Cosine(part, &part_out); });
  const double seconds = absl::ToDoubleSeconds(clock_->Now() - start);
  run.compute_seconds += seconds;
  if (status.ok() && job.top_k > 0 && part_out.top.size() != end - begin) {
    status = absl::InternalError(
        absl::StrCat(backend.name(), " returned ", part_out.top.size(),
                     " top-k lists for ", end - begin, " queries"));
  }
  if (!status.ok()) return status;
  if (job.top_k > 0) {
    std::move(part_out.top.begin(), part_out.top.end(),
              out->top.begin() + begin);
  }
  const int slot = Slot(kind);
  run.ran[slot] = true;
  run.seconds[slot] += seconds;
  run.items[slot] += static_cast<uint64_t>(end - begin) * m;
  ++run.chunks;
  // The device's calls move their share of the footprint; the CPU's move
  // nothing.
  const uint64_t bytes = kind == BackendKind::kGpu
                             ? run.snapshot.footprint.BytesFor(end - begin)
                             : 0;
  (void)model_->RecordTiming(
      Operation::kCosine, kind,
      static_cast<uint64_t>(end - begin) * m * job.queries.cols, seconds,
      bytes);
  if (observer_ != nullptr) observer_->OnChunk(Operation::kCosine, kind);
  return absl::OkStatus();
}

absl::Status HybridExecutor::CosineRange(const CosineJob& job,
                                         CosineOutput* out, size_t begin,
                                         size_t end, Run& run) {
  size_t pos = begin;
  while (pos < end) {
    ENGRAM_RETURN_IF_ERROR(base::CheckInterrupt(job.interrupt));
    if (run.gpu_active) {
      const size_t rows = std::min<size_t>(run.gpu_rows, end - pos);
      absl::Status status;
      {
        const DeviceMemoryLedger::Reservation::OnDevice on_device =
            run.reservation.Launch(run.snapshot.footprint.BytesFor(rows));
        status = CosineCall(*gpu_, job, out, pos, pos + rows, run);
      }
      if (status.ok()) {
        pos += rows;
      } else {
        // A stop the backend saw is the caller's doing, not the device's:
        // it must not count against the GPU.
        ENGRAM_RETURN_IF_ERROR(base::CheckInterrupt(job.interrupt));
        ENGRAM_RETURN_IF_ERROR(OnGpuFailure(status, rows, run));
      }
    } else {
      // The CPU has no memory budget to respect: it takes the rest in one
      // call, or, when the caller may stop the job, in calls of about
      // cpu_chunk_work each so that a stop is seen within one of them.
      size_t rows = end - pos;
      if (job.interrupt != nullptr) {
        const uint64_t row_work =
            std::max<uint64_t>(1, run.scored_targets * job.queries.cols);
        rows = std::min<size_t>(
            rows, std::max<uint64_t>(1, run.config->cpu_chunk_work / row_work));
      }
      ENGRAM_RETURN_IF_ERROR(CosineCall(*cpu_, job, out, pos, pos + rows, run));
      pos += rows;
    }
  }
  return absl::OkStatus();
}

void HybridExecutor::Finish(Run& run, ExecutionReport* report) {
  if (!run.gpu_failed && run.permit.allowed()) {
    // The GPU worked (or only ran out of memory, which says nothing about
    // its health: Release).
    if (run.ran[1]) {
      breaker_->Record(run.permit, absl::OkStatus());
    } else {
      breaker_->Release(run.permit);
    }
  }
  // One outcome per request and backend, as a failure is counted once per
  // request (OnGpuFailure): counting each chunk's success would weigh a
  // split request's successes against a single failure.
  for (BackendKind kind : {BackendKind::kCpu, BackendKind::kGpu}) {
    const bool failed = kind == BackendKind::kGpu && run.gpu_failed;
    if (run.ran[Slot(kind)] && !failed) {
      (void)model_->RecordOutcome(run.op, kind, true);
    }
  }
  report->backend = run.ran[0] && run.ran[1] ? BackendKind::kMixed
                    : run.ran[1]             ? BackendKind::kGpu
                    : run.ran[0]             ? BackendKind::kCpu
                                             : BackendKind::kUnspecified;
  report->fallback_reason = run.fallback_reason;
  report->chunks = run.chunks;
  report->compute_seconds = run.compute_seconds;
  if (observer_ != nullptr) {
    for (BackendKind kind : {BackendKind::kCpu, BackendKind::kGpu}) {
      const int slot = Slot(kind);
      if (run.ran[slot]) {
        observer_->OnCompute(run.op, kind, run.seconds[slot], run.items[slot]);
      }
    }
  }
  // A probe that beat the preferred backend's prediction means the choice
  // may be about to change: look again soon.
  if (run.decision.probe && run.fallback_reason.empty()) {
    const int probed = Slot(run.decision.backend);
    const std::optional<PredictedSeconds> predicted =
        PredictRequest(run.snapshot);
    if (run.ran[probed] && predicted.has_value() &&
        run.seconds[probed] < (probed == 1 ? predicted->cpu : predicted->gpu)) {
      model_->ResetProbeInterval(run.op, run.work);
    }
  }
}

absl::Status HybridExecutor::Cosine(const CosineJob& job, CosineOutput* out) {
  const size_t q = job.queries.rows;
  ENGRAM_RETURN_IF_ERROR(kernels::CheckRowMask(job.mask, job.targets.rows));
  const size_t m = job.scored_targets();
  if (job.top_k == 0 && out->scores.size() != q * m) {
    return absl::InternalError(absl::StrCat("score buffer holds ",
                                            out->scores.size(),
                                            " floats, expected Q*M = ", q * m));
  }
  Run run;
  run.op = Operation::kCosine;
  run.scored_targets = m;
  run.work = static_cast<uint64_t>(q) * m * job.queries.cols;
  run.config = config_->Get();  // once: the whole request uses this config
  // Targets the GPU already holds need no room on it. Checked once: if they
  // are evicted before the call, the backend copies them in as usual and an
  // OOM is handled like any other.
  const bool resident = gpu_ != nullptr && job.resident_targets != 0 &&
                        gpu_->HoldsResident(job.resident_targets);
  const JobFootprint footprint = CosineFootprint(job, resident);
  if (job.interrupt != nullptr && q > 0) {
    const uint64_t row_work =
        std::max<uint64_t>(1, static_cast<uint64_t>(m) * job.queries.cols);
    const uint64_t rows_per_call =
        std::max<uint64_t>(1, run.config->cpu_chunk_work / row_work);
    run.cpu_calls = (q + rows_per_call - 1) / rows_per_call;
  }
  ENGRAM_RETURN_IF_ERROR(Begin(run, job.placement, footprint,
                               run.config->min_chunk_queries, &out->report));
  if (job.top_k > 0) {
    out->top.assign(q, {});
  } else {
    out->top.clear();
  }

  size_t chunk_rows = std::max<size_t>(q, 1);
  if (run.gpu_active) {
    // Sized to the budget when there is a reading; with none (a GPU_ONLY
    // request on a stale probe) start from the cap and let OOM halving
    // find the size.
    uint64_t rows = run.config->max_chunk_queries;
    if (run.snapshot.memory.has_reading) {
      rows = std::min<uint64_t>(
          rows, ItemsThatFit(footprint, run.snapshot.memory.budget_bytes));
    }
    rows = std::max<uint64_t>(rows, run.config->min_chunk_queries);
    run.gpu_rows = std::max<uint64_t>(1, std::min<uint64_t>(rows, q));
    const absl::Status reserved = ReserveDevice(
        footprint, run.config->min_chunk_queries, run.gpu_rows, run);
    if (!reserved.ok()) {
      Finish(run, &out->report);
      return reserved;
    }
    if (run.gpu_active) chunk_rows = run.gpu_rows;
  }
  ChunkFailure failure;
  const absl::Status status = RunChunks(
      q, chunk_rows,
      [&](size_t, size_t begin, size_t end) {
        return CosineRange(job, out, begin, end, run);
      },
      &failure);
  Finish(run, &out->report);
  // An unsplit job reports its error as the backend gave it, and so does a
  // stopped one: the stop is the caller's, not a chunk's.
  if (!status.ok() &&
      (chunk_rows >= q || IsStop(failure.error, job.interrupt))) {
    return failure.error;
  }
  return status;
}

absl::Status HybridExecutor::SpreadCall(ComputeBackend& backend,
                                        const SpreadJob& job, SpreadOutput* out,
                                        Run& run) {
  const BackendKind kind = backend.Capabilities().kind;
  const absl::Time start = clock_->Now();
  absl::Status status =
      CallBackend(backend, [&] { return backend.Spread(job, out); });
  const double seconds = absl::ToDoubleSeconds(clock_->Now() - start);
  run.compute_seconds += seconds;
  if (status.ok() && out->result.activation.size() != job.num_nodes()) {
    status = absl::InternalError(absl::StrCat(
        backend.name(), " returned ", out->result.activation.size(),
        " activations for ", job.num_nodes(), " nodes"));
  }
  if (!status.ok()) return status;
  const int slot = Slot(kind);
  run.ran[slot] = true;
  run.seconds[slot] += seconds;
  run.items[slot] += out->result.edges_traversed;
  ++run.chunks;
  const uint64_t bytes =
      kind == BackendKind::kGpu ? run.snapshot.footprint.TotalBytes() : 0;
  (void)model_->RecordTiming(Operation::kSpread, kind, job.work(), seconds,
                             bytes);
  if (observer_ != nullptr) observer_->OnChunk(Operation::kSpread, kind);
  return absl::OkStatus();
}

absl::Status HybridExecutor::Spread(const SpreadJob& job, SpreadOutput* out) {
  Run run;
  run.op = Operation::kSpread;
  run.work = job.work();
  run.config = config_->Get();  // once: the whole request uses this config
  out->top.clear();
  const JobFootprint footprint = SpreadFootprint(job);
  ENGRAM_RETURN_IF_ERROR(Begin(run, job.placement, footprint, 1, &out->report));
  absl::Status status = ReserveDevice(footprint, 1, 1, run);
  if (!status.ok()) {
    Finish(run, &out->report);
    return status;
  }
  status = base::CheckInterrupt(job.interrupt);
  bool done = false;
  if (status.ok() && run.gpu_active) {
    {
      const DeviceMemoryLedger::Reservation::OnDevice on_device =
          run.reservation.Launch(footprint.TotalBytes());
      status = SpreadCall(*gpu_, job, out, run);
    }
    if (status.ok()) {
      done = true;
    } else if (IsStop(status, job.interrupt)) {
      // The caller's stop, not the device's failure.
    } else {
      // Spreading does not split: OnGpuFailure never retries it smaller.
      status = OnGpuFailure(status, 1, run);
    }
  }
  if (status.ok() && !done) status = SpreadCall(*cpu_, job, out, run);
  Finish(run, &out->report);
  ENGRAM_RETURN_IF_ERROR(status);
  if (job.top_k > 0) {
    // Nodes the activation never reached are not results.
    out->top =
        kernels::cpu::TopKOfDense(out->result.activation, job.top_k,
                                  std::numeric_limits<float>::denorm_min());
  }
  return absl::OkStatus();
}

namespace {

// The GPU as the calibration sweep sees it: every call asks the breaker
// first and reports its outcome, as a request's would, so that a device
// failing during the sweep opens the breaker (and a sticky error forces it
// open) instead of going unnoticed, and an open breaker keeps the sweep off
// the device. Exceptions become a status as on the request path.
class BreakerGuardedBackend final : public ComputeBackend {
 public:
  BreakerGuardedBackend(ComputeBackend* inner, CircuitBreaker* breaker)
      : inner_(inner), breaker_(breaker) {}

  absl::string_view name() const override { return inner_->name(); }
  BackendCapabilities Capabilities() const override {
    return inner_->Capabilities();
  }
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override {
    return Guarded([&] { return inner_->Cosine(job, out); });
  }
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override {
    return Guarded([&] { return inner_->Spread(job, out); });
  }
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    return inner_->QueryMemory();
  }

 private:
  template <typename Call>
  absl::Status Guarded(Call call) {
    CircuitBreaker::Permit permit = breaker_->Admit();
    if (!permit.allowed()) {
      return absl::UnavailableError(
          "the GPU circuit breaker is open: calibration skips the GPU");
    }
    const absl::Status status = CallBackend(*inner_, call);
    switch (ClassifyBackendError(status)) {
      case BackendErrorClass::kNone:
        breaker_->Record(permit, absl::OkStatus());
        break;
      case BackendErrorClass::kSticky:
      case BackendErrorClass::kDevice:
        breaker_->Record(permit, status);
        break;
      case BackendErrorClass::kClient:
      case BackendErrorClass::kOutOfMemory:
        // Says nothing about the device's health.
        breaker_->Release(permit);
        break;
    }
    return status;
  }

  ComputeBackend* const inner_;
  CircuitBreaker* const breaker_;
};

}  // namespace

absl::StatusOr<CrossoverTable> HybridExecutor::Calibrate(
    const CalibrationOptions& options) {
  absl::StatusOr<CrossoverTable> table;
  if (gpu_ == nullptr) {
    table = RunCalibration(*cpu_, nullptr, options, clock_, model_.get());
  } else {
    BreakerGuardedBackend gpu(gpu_, breaker_.get());
    table = RunCalibration(*cpu_, &gpu, options, clock_, model_.get());
  }
  if (!table.ok()) return table;
  StoredCalibration measured;
  measured.gpu_device = table->gpu_device;
  for (Operation op : {Operation::kCosine, Operation::kSpread}) {
    for (BackendKind kind : {BackendKind::kCpu, BackendKind::kGpu}) {
      CostFit fit = model_->Fit(op, kind);
      // What the sweep measured, not a prior standing in for it.
      if (fit.prior) fit = CostFit();
      measured.fits[op == Operation::kCosine ? 0 : 1][Slot(kind)] = fit;
    }
  }
  measured.cosine_min_gpu_work = SmallestGpuWin(*table, Operation::kCosine);
  measured.spread_min_gpu_work = SmallestGpuWin(*table, Operation::kSpread);
  ENGRAM_RETURN_IF_ERROR(UseCalibration(measured));
  return table;
}

absl::Status HybridExecutor::UseCalibration(
    const StoredCalibration& calibration) {
  const std::string device = gpu_device();
  if (calibration.gpu_device != device) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the calibration was measured on GPU \"", calibration.gpu_device,
        "\", this executor has \"", device, "\""));
  }
  for (Operation op : {Operation::kCosine, Operation::kSpread}) {
    for (BackendKind kind : {BackendKind::kCpu, BackendKind::kGpu}) {
      model_->SetPrior(
          op, kind,
          calibration.fits[op == Operation::kCosine ? 0 : 1][Slot(kind)]);
    }
  }
  {
    absl::MutexLock lock(&calibration_mu_);
    calibration_ = calibration;
  }
  HybridConfig next = *config_->Get();
  AdjustConfig(&next);
  return config_->Update(next);
}

std::optional<StoredCalibration> HybridExecutor::calibration() const {
  absl::MutexLock lock(&calibration_mu_);
  return calibration_;
}

void HybridExecutor::AdjustConfig(HybridConfig* config) const {
  absl::MutexLock lock(&calibration_mu_);
  if (!calibration_.has_value()) return;
  if (calibration_->cosine_min_gpu_work.has_value()) {
    config->min_gpu_work_cosine = *calibration_->cosine_min_gpu_work;
  }
  if (calibration_->spread_min_gpu_work.has_value()) {
    config->min_gpu_work_spread = *calibration_->spread_min_gpu_work;
  }
}

}  // namespace engram::dispatch
