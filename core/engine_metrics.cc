#include "core/engine_metrics.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/dispatch_policy.h"
#include "core/histograms.h"
#include "core/logging.h"
#include "prometheus/client_metric.h"
#include "prometheus/family.h"

namespace engram::core {

namespace {

constexpr dispatch::Operation kOperations[] = {dispatch::Operation::kCosine,
                                               dispatch::Operation::kSpread};
constexpr dispatch::BackendKind kBackendKinds[] = {dispatch::BackendKind::kCpu,
                                                   dispatch::BackendKind::kGpu};

// The rule names the dispatch policy can return, in a fixed order; the last
// slot catches anything else so a new rule is still counted.
constexpr absl::string_view kRuleNames[] = {dispatch::kRulePlacement,
                                            dispatch::kRuleGpuUnavailable,
                                            dispatch::kRuleBreakerOpen,
                                            dispatch::kRuleWorkBelowMin,
                                            dispatch::kRulePredictedSlower,
                                            dispatch::kRuleMemoryPressure,
                                            dispatch::kRuleProbe,
                                            dispatch::kRuleDefault,
                                            "other"};

constexpr dispatch::BreakerState kBreakerStates[] = {
    dispatch::BreakerState::kClosed, dispatch::BreakerState::kHalfOpen,
    dispatch::BreakerState::kOpen, dispatch::BreakerState::kForcedOpen};

constexpr int kReasonOom = 0;
constexpr int kReasonDeviceError = 1;
constexpr int kReasonBreakerOpen = 2;
constexpr int kReasonUnavailable = 3;
constexpr int kReasonMemoryPressure = 4;
constexpr int kReasonOther = 6;

// The last GPU error seen on this thread. The executor reports a failed call
// (OnBackendError) and then, on the same thread, its consequence (OnOom,
// OnFallback), so the warning about the consequence can name the error.
thread_local absl::Status t_last_gpu_error;

int RuleIndex(absl::string_view rule) {
  for (int i = 0; i < 8; ++i) {
    if (kRuleNames[i] == rule) return i;
  }
  return 8;
}

int ReasonIndex(absl::string_view metric_reason) {
  for (int i = 0; i < kNumFallbackReasons; ++i) {
    if (kFallbackReasons[i] == metric_reason) return i;
  }
  return -1;
}

std::string SecondsString(absl::Duration d) {
  return d == absl::InfiniteDuration() ? "inf"
                                       : absl::StrCat(absl::ToDoubleSeconds(d));
}

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& registry)
    : EngineMetrics(registry, Options()) {}

EngineMetrics::EngineMetrics(prometheus::Registry& registry,
                             const Options& options)
    : clock_(options.clock != nullptr ? options.clock
                                      : dispatch::Clock::Real()),
      created_(clock_->Now()) {
  auto& compute = prometheus::BuildHistogram()
                      .Name("engram_compute_duration_seconds")
                      .Help(
                          "Time one request computed on one backend, by "
                          "operation and backend.")
                      .Register(registry);
  auto& work = prometheus::BuildCounter()
                   .Name("engram_work_items_total")
                   .Help(
                       "Vectors compared (cosine: rows x N) or edges "
                       "traversed (spread), by operation and backend.")
                   .Register(registry);
  auto& chunks = prometheus::BuildCounter()
                     .Name("engram_chunks_total")
                     .Help("Chunks computed, by operation and backend.")
                     .Register(registry);
  auto& decisions =
      prometheus::BuildCounter()
          .Name("engram_dispatch_decisions_total")
          .Help(
              "Dispatch decisions by operation, chosen backend (none: "
              "refused) and the rule that decided.")
          .Register(registry);
  auto& fallbacks =
      prometheus::BuildCounter()
          .Name("engram_gpu_fallbacks_total")
          .Help(
              "Requests whose work meant for the GPU ran on the CPU, by "
              "reason: oom and device_error part-way; breaker_open, "
              "unavailable (breaker forced open), memory_pressure and "
              "memory_busy (no room in the device memory ledger) before the "
              "GPU was tried.")
          .Register(registry);
  auto& ooms = prometheus::BuildCounter()
                   .Name("engram_gpu_oom_total")
                   .Help("GPU out-of-memory errors, by operation.")
                   .Register(registry);
  auto& oom_retries = prometheus::BuildCounter()
                          .Name("engram_gpu_oom_retries_total")
                          .Help(
                              "Chunks retried on the GPU at half size "
                              "after an out-of-memory error.")
                          .Register(registry);
  auto& gpu_errors =
      prometheus::BuildCounter()
          .Name("engram_gpu_errors_total")
          .Help(
              "Failed GPU calls other than out-of-memory, by operation and "
              "kind (device: counted by the breaker; sticky: the device is "
              "unusable until restart).")
          .Register(registry);
  for (int o = 0; o < kOps; ++o) {
    const std::string op = dispatch::OperationName(kOperations[o]);
    for (int b = 0; b < kBackends; ++b) {
      const prometheus::Labels labels{
          {"operation", op},
          {"backend", dispatch::BackendName(kBackendKinds[b])}};
      compute_[o][b] = &compute.Add(labels, LatencyBuckets());
      work_items_[o][b] = &work.Add(labels);
      chunks_[o][b] = &chunks.Add(labels);
    }
    const char* decision_backends[] = {"cpu", "gpu", "none"};
    for (int b = 0; b < 3; ++b) {
      for (int r = 0; r < kRules; ++r) {
        decisions_[o][b][r] =
            &decisions.Add({{"operation", op},
                            {"backend", decision_backends[b]},
                            {"rule", std::string(kRuleNames[r])}});
      }
    }
    for (int r = 0; r < kNumFallbackReasons; ++r) {
      fallbacks_[o][r] = &fallbacks.Add(
          {{"operation", op}, {"reason", std::string(kFallbackReasons[r])}});
    }
    ooms_[o] = &ooms.Add({{"operation", op}});
    oom_retries_[o] = &oom_retries.Add({{"operation", op}});
    gpu_errors_[o][0] =
        &gpu_errors.Add({{"operation", op}, {"kind", "device"}});
    gpu_errors_[o][1] =
        &gpu_errors.Add({{"operation", op}, {"kind", "sticky"}});
  }
  // From 100 ns to 1 ms: a decision is a few locks and a pure function; the
  // top buckets are there to catch a slow memory probe.
  decision_seconds_ =
      &prometheus::BuildHistogram()
           .Name("engram_dispatch_decision_duration_seconds")
           .Help(
               "Time to take the dispatch snapshot (breaker, memory, "
               "performance model) and decide.")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{
                        1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5,
                        5e-5, 1e-4, 1e-3});
  auto& transitions =
      prometheus::BuildCounter()
          .Name("engram_circuit_breaker_transitions_total")
          .Help("GPU circuit breaker state changes, by from and to state.")
          .Register(registry);
  for (dispatch::BreakerState from : kBreakerStates) {
    for (dispatch::BreakerState to : kBreakerStates) {
      if (from == to) continue;
      breaker_transitions_[BreakerStateValue(from)][BreakerStateValue(to)] =
          &transitions.Add({{"from", dispatch::BreakerStateName(from)},
                            {"to", dispatch::BreakerStateName(to)}});
    }
  }
}

void EngineMetrics::RecordFallback(int op, int reason,
                                   absl::string_view executor_reason) {
  fallbacks_[op][reason]->Increment();
  fallbacks_window_[op][reason].Add(clock_->Now());
  // A fallback ends the request's GPU part: its error is consumed here.
  const absl::Status error = std::exchange(t_last_gpu_error, absl::OkStatus());
  const bool part_way = reason == kReasonOom || reason == kReasonDeviceError ||
                        reason == kReasonOther;
  LogLimited(LogLevel::kWarning, "gpu_fallback",
             {{"operation", dispatch::OperationName(kOperations[op])},
              {"reason", std::string(kFallbackReasons[reason])},
              {"executor_reason", std::string(executor_reason)},
              {"error", part_way && !error.ok() ? std::string(error.message())
                                                : std::string()},
              {"sticky", part_way && dispatch::ClassifyBackendError(error) ==
                                         dispatch::BackendErrorClass::kSticky
                             ? "true"
                             : "false"}});
}

void EngineMetrics::OnDecision(dispatch::Operation op,
                               dispatch::BackendKind backend,
                               absl::string_view rule,
                               double decision_seconds) {
  // A decision starts a request: no earlier request's GPU error applies.
  t_last_gpu_error = absl::OkStatus();
  const int o = OpIndex(op);
  const int b = backend == dispatch::BackendKind::kCpu   ? 0
                : backend == dispatch::BackendKind::kGpu ? 1
                                                         : 2;
  decisions_[o][b][RuleIndex(rule)]->Increment();
  decision_seconds_->Observe(decision_seconds);
  decisions_window_[o].Add(clock_->Now());
  if (LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "dispatch_decision",
        {{"operation", dispatch::OperationName(op)},
         {"backend", b == 2 ? "none" : dispatch::BackendName(backend)},
         {"rule", std::string(rule)},
         {"decision_seconds", absl::StrCat(decision_seconds)}});
  }
  // Work the GPU would have taken, sent to the CPU up front: a fallback
  // decided before trying. A refusal (GPU_ONLY) is not one: nothing ran.
  if (backend != dispatch::BackendKind::kCpu) return;
  if (rule == dispatch::kRuleBreakerOpen) {
    RecordFallback(o,
                   gpu_lost_.load(std::memory_order_relaxed)
                       ? kReasonUnavailable
                       : kReasonBreakerOpen,
                   rule);
  } else if (rule == dispatch::kRuleMemoryPressure) {
    RecordFallback(o, kReasonMemoryPressure, rule);
  }
}

void EngineMetrics::OnFallback(dispatch::Operation op,
                               absl::string_view reason) {
  const int r = ReasonIndex(FallbackMetricReason(reason));
  RecordFallback(OpIndex(op), r < 0 ? kReasonOther : r, reason);
}

void EngineMetrics::OnOom(dispatch::Operation op) {
  ooms_[OpIndex(op)]->Increment();
  ooms_window_[OpIndex(op)].Add(clock_->Now());
  const absl::Status& error = t_last_gpu_error;
  LogLimited(
      LogLevel::kWarning, "gpu_oom",
      {{"operation", dispatch::OperationName(op)},
       {"error", error.ok() ? std::string() : std::string(error.message())}});
}

void EngineMetrics::OnOomRetry(dispatch::Operation op) {
  oom_retries_[OpIndex(op)]->Increment();
}

void EngineMetrics::OnChunk(dispatch::Operation op,
                            dispatch::BackendKind backend) {
  chunks_[OpIndex(op)][BackendIndex(backend)]->Increment();
}

void EngineMetrics::OnCompute(dispatch::Operation op,
                              dispatch::BackendKind backend, double seconds,
                              uint64_t work_items) {
  const int o = OpIndex(op);
  const int b = BackendIndex(backend);
  compute_[o][b]->Observe(seconds);
  work_items_[o][b]->Increment(static_cast<double>(work_items));
  const absl::Time now = clock_->Now();
  computes_window_[o][b].Add(now);
  work_items_window_[o][b].Add(now, work_items);
}

void EngineMetrics::OnBackendError(dispatch::Operation op,
                                   dispatch::BackendKind backend,
                                   const absl::Status& error) {
  if (backend != dispatch::BackendKind::kGpu) return;
  const dispatch::BackendErrorClass kind =
      dispatch::ClassifyBackendError(error);
  if (kind == dispatch::BackendErrorClass::kNone ||
      kind == dispatch::BackendErrorClass::kClient) {
    return;
  }
  t_last_gpu_error = error;
  if (kind == dispatch::BackendErrorClass::kDevice) {
    gpu_errors_[OpIndex(op)][0]->Increment();
  } else if (kind == dispatch::BackendErrorClass::kSticky) {
    gpu_errors_[OpIndex(op)][1]->Increment();
  }
  absl::MutexLock lock(&last_error_mu_);
  last_gpu_error_ = std::string(error.message());
  last_gpu_error_at_ = clock_->Now();
}

void EngineMetrics::OnBreakerTransition(const dispatch::BreakerTransition& t) {
  if (t.to == dispatch::BreakerState::kForcedOpen) {
    gpu_lost_.store(true, std::memory_order_relaxed);
  }
  if (prometheus::Counter* c = breaker_transitions_[BreakerStateValue(t.from)]
                                                   [BreakerStateValue(t.to)]) {
    c->Increment();
  }
  LogLimited(LogLevel::kWarning, "circuit_breaker",
             {{"from", dispatch::BreakerStateName(t.from)},
              {"to", dispatch::BreakerStateName(t.to)},
              {"reason", t.reason},
              {"open_for_seconds", SecondsString(t.open_for)}});
}

uint64_t EngineMetrics::FallbackCount(dispatch::Operation op,
                                      absl::string_view reason) const {
  const int r = ReasonIndex(reason);
  if (r < 0) return 0;
  return static_cast<uint64_t>(fallbacks_[OpIndex(op)][r]->Value());
}

std::vector<EngineMetrics::BackendSnapshot> EngineMetrics::Snapshot() const {
  std::vector<BackendSnapshot> out;
  for (int o = 0; o < kOps; ++o) {
    for (int b = 0; b < kBackends; ++b) {
      const prometheus::ClientMetric::Histogram h =
          compute_[o][b]->Collect().histogram;
      if (h.sample_count == 0) continue;
      BackendSnapshot s;
      s.operation = kOperations[o];
      s.backend = kBackendKinds[b];
      s.requests = h.sample_count;
      s.work_items = static_cast<uint64_t>(work_items_[o][b]->Value());
      s.compute_seconds_total = h.sample_sum;
      s.p50_seconds = HistogramQuantile(h, 0.50);
      s.p99_seconds = HistogramQuantile(h, 0.99);
      out.push_back(s);
    }
  }
  return out;
}

EngineStats EngineMetrics::Stats(const EngineStateSnapshot& state) const {
  EngineStats stats;
  const absl::Time now = clock_->Now();
  stats.window_seconds =
      std::clamp(absl::ToDoubleSeconds(now - created_), 1.0,
                 absl::ToDoubleSeconds(RollingCounter::kWindow));
  const double window = stats.window_seconds;

  for (const BackendSnapshot& s : Snapshot()) {
    const int o = OpIndex(s.operation);
    const int b = BackendIndex(s.backend);
    EngineStats::Backend out;
    out.operation = s.operation;
    out.backend = s.backend;
    out.requests = s.requests;
    out.work_items = s.work_items;
    out.compute_seconds_total = s.compute_seconds_total;
    out.p50_seconds = s.p50_seconds;
    out.p99_seconds = s.p99_seconds;
    out.requests_per_second =
        static_cast<double>(computes_window_[o][b].Sum(now)) / window;
    out.work_items_per_second =
        static_cast<double>(work_items_window_[o][b].Sum(now)) / window;
    const dispatch::BackendEstimate& e =
        b == 1 ? state.outcomes[o].gpu : state.outcomes[o].cpu;
    out.success_rate = e.success_rate;
    out.success_outcomes = e.outcomes;
    stats.backends.push_back(out);
  }

  for (int o = 0; o < kOps; ++o) {
    EngineStats::OperationStats op;
    op.operation = kOperations[o];
    for (const auto& by_backend : decisions_[o]) {
      for (const prometheus::Counter* c : by_backend) {
        op.requests += static_cast<uint64_t>(c->Value());
      }
    }
    op.requests_in_window = decisions_window_[o].Sum(now);
    uint64_t fallbacks_in_window = 0;
    for (int r = 0; r < kNumFallbackReasons; ++r) {
      const uint64_t count = static_cast<uint64_t>(fallbacks_[o][r]->Value());
      const uint64_t in_window = fallbacks_window_[o][r].Sum(now);
      op.fallbacks += count;
      fallbacks_in_window += in_window;
      if (count == 0) continue;
      EngineStats::Fallback f;
      f.operation = kOperations[o];
      f.reason = std::string(kFallbackReasons[r]);
      f.count = count;
      f.count_in_window = in_window;
      f.rate = op.requests_in_window == 0
                   ? 0
                   : static_cast<double>(in_window) /
                         static_cast<double>(op.requests_in_window);
      stats.fallbacks.push_back(std::move(f));
    }
    op.fallback_rate = op.requests_in_window == 0
                           ? 0
                           : static_cast<double>(fallbacks_in_window) /
                                 static_cast<double>(op.requests_in_window);
    op.ooms = static_cast<uint64_t>(ooms_[o]->Value());
    op.oom_retries = static_cast<uint64_t>(oom_retries_[o]->Value());
    op.ooms_per_minute =
        static_cast<double>(ooms_window_[o].Sum(now)) * 60.0 / window;
    stats.operations.push_back(op);
  }

  for (const dispatch::PerfSnapshot& p : state.perf) {
    if (!p.cpu.usable || !p.gpu.usable || p.gpu.seconds_per_unit <= 0) continue;
    EngineStats::Speedup s;
    s.operation = p.op;
    s.size_bucket = SizeBucketLabel(p.bucket);
    s.min_work = p.bucket == 0 ? 0 : uint64_t{1} << p.bucket;
    s.cpu_seconds_per_unit = p.cpu.seconds_per_unit;
    s.gpu_seconds_per_unit = p.gpu.seconds_per_unit;
    s.speedup = p.cpu.seconds_per_unit / p.gpu.seconds_per_unit;
    s.cpu_samples = p.cpu.samples;
    s.gpu_samples = p.gpu.samples;
    stats.speedups.push_back(std::move(s));
  }

  for (const dispatch::PerfSnapshot& p : state.outcomes) {
    for (const auto& [kind, fit] :
         {std::make_pair(dispatch::BackendKind::kCpu, &p.cpu_fit),
          std::make_pair(dispatch::BackendKind::kGpu, &p.gpu_fit)}) {
      if (fit->samples == 0) continue;
      stats.cost_models.push_back(EngineStats::CostModel{p.op, kind, *fit});
    }
  }

  stats.breaker = state.breaker;
  stats.memory = state.memory;
  stats.memory_ledger = state.memory_ledger;
  {
    absl::MutexLock lock(&last_error_mu_);
    stats.last_gpu_error = last_gpu_error_;
    if (!last_gpu_error_.empty()) {
      stats.last_gpu_error_age_seconds =
          absl::ToDoubleSeconds(now - last_gpu_error_at_);
    }
  }
  return stats;
}

}  // namespace engram::core
