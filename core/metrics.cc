#include "core/metrics.h"

#include <algorithm>
#include <limits>
#include <string>

#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/dispatch_policy.h"
#include "core/logging.h"

namespace engram::core {
namespace {

constexpr Operation kOperations[] = {Operation::kCosine, Operation::kSpread};
constexpr BackendKind kBackendKinds[] = {BackendKind::kCpu, BackendKind::kGpu};

// The rule names the dispatch policy can return, in a fixed order; the last
// slot catches anything else so a new rule is still counted.
constexpr absl::string_view kRules[] = {
    kRulePlacement,    kRuleGpuUnavailable,  kRuleBreakerOpen,
    kRuleWorkBelowMin, kRulePredictedSlower, kRuleMemoryPressure,
    kRuleProbe,        kRuleDefault,         "other"};

// The executor's fallback reasons (hybrid_executor.h).
constexpr absl::string_view kFallbackReasons[] = {"gpu_oom", "gpu_error"};

constexpr BreakerState kBreakerStates[] = {
    BreakerState::kClosed, BreakerState::kHalfOpen, BreakerState::kOpen,
    BreakerState::kForcedOpen};

// engram_circuit_breaker_state encoding, documented in docs/metrics.md.
int BreakerStateValue(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return 0;
    case BreakerState::kHalfOpen:
      return 1;
    case BreakerState::kOpen:
      return 2;
    case BreakerState::kForcedOpen:
      return 3;
  }
  return 0;
}

int RuleIndex(absl::string_view rule) {
  for (int i = 0; i < 8; ++i) {
    if (kRules[i] == rule) return i;
  }
  return 8;
}

int ReasonIndex(absl::string_view reason) {
  return reason == kFallbackReasons[0] ? 0 : 1;
}

}  // namespace

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

EngineMetrics::EngineMetrics(prometheus::Registry& registry) {
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
  auto& fallbacks = prometheus::BuildCounter()
                        .Name("engram_gpu_fallbacks_total")
                        .Help(
                            "Requests that left the GPU part-way and "
                            "finished on the CPU, by reason.")
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
  for (int o = 0; o < kOps; ++o) {
    const std::string op = OperationName(kOperations[o]);
    for (int b = 0; b < kBackends; ++b) {
      const prometheus::Labels labels{
          {"operation", op}, {"backend", BackendName(kBackendKinds[b])}};
      compute_[o][b] = &compute.Add(labels, LatencyBuckets());
      work_items_[o][b] = &work.Add(labels);
      chunks_[o][b] = &chunks.Add(labels);
    }
    const char* decision_backends[] = {"cpu", "gpu", "none"};
    for (int b = 0; b < 3; ++b) {
      for (int r = 0; r < 9; ++r) {
        decisions_[o][b][r] =
            &decisions.Add({{"operation", op},
                            {"backend", decision_backends[b]},
                            {"rule", std::string(kRules[r])}});
      }
    }
    for (int r = 0; r < 2; ++r) {
      fallbacks_[o][r] = &fallbacks.Add(
          {{"operation", op}, {"reason", std::string(kFallbackReasons[r])}});
    }
    ooms_[o] = &ooms.Add({{"operation", op}});
    oom_retries_[o] = &oom_retries.Add({{"operation", op}});
  }
  decision_seconds_ =
      &prometheus::BuildHistogram()
           .Name("engram_dispatch_decision_duration_seconds")
           .Help("Time to take the dispatch snapshot and decide.")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{
                        1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5,
                        5e-5, 1e-4, 1e-3});
  breaker_state_ = &prometheus::BuildGauge()
                        .Name("engram_circuit_breaker_state")
                        .Help(
                            "GPU circuit breaker: 0 closed, 1 half-open, 2 "
                            "open, 3 forced open (sticky device error).")
                        .Register(registry)
                        .Add({});
  auto& transitions = prometheus::BuildCounter()
                          .Name("engram_circuit_breaker_transitions_total")
                          .Help("GPU circuit breaker state changes.")
                          .Register(registry);
  for (BreakerState from : kBreakerStates) {
    for (BreakerState to : kBreakerStates) {
      if (from == to) continue;
      breaker_transitions_[BreakerStateValue(from)][BreakerStateValue(to)] =
          &transitions.Add(
              {{"from", BreakerStateName(from)}, {"to", BreakerStateName(to)}});
    }
  }
}

void EngineMetrics::OnDecision(Operation op, BackendKind backend,
                               absl::string_view rule,
                               double decision_seconds) {
  const int b = backend == BackendKind::kCpu   ? 0
                : backend == BackendKind::kGpu ? 1
                                               : 2;
  decisions_[OpIndex(op)][b][RuleIndex(rule)]->Increment();
  decision_seconds_->Observe(decision_seconds);
  if (LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "dispatch_decision",
        {{"operation", OperationName(op)},
         {"backend", BackendName(backend)},
         {"rule", std::string(rule)}});
  }
}

void EngineMetrics::OnFallback(Operation op, absl::string_view reason) {
  fallbacks_[OpIndex(op)][ReasonIndex(reason)]->Increment();
  Log(LogLevel::kWarning, "gpu_fallback",
      {{"operation", OperationName(op)}, {"reason", std::string(reason)}});
}

void EngineMetrics::OnOom(Operation op) {
  ooms_[OpIndex(op)]->Increment();
  Log(LogLevel::kWarning, "gpu_oom", {{"operation", OperationName(op)}});
}

void EngineMetrics::OnOomRetry(Operation op) {
  oom_retries_[OpIndex(op)]->Increment();
}

void EngineMetrics::OnChunk(Operation op, BackendKind backend) {
  chunks_[OpIndex(op)][BackendIndex(backend)]->Increment();
}

void EngineMetrics::OnCompute(Operation op, BackendKind backend, double seconds,
                              uint64_t work_items) {
  const int o = OpIndex(op);
  const int b = BackendIndex(backend);
  compute_[o][b]->Observe(seconds);
  work_items_[o][b]->Increment(static_cast<double>(work_items));
}

void EngineMetrics::OnBreakerTransition(const BreakerTransition& t) {
  breaker_state_->Set(BreakerStateValue(t.to));
  if (prometheus::Counter* c = breaker_transitions_[BreakerStateValue(t.from)]
                                                   [BreakerStateValue(t.to)]) {
    c->Increment();
  }
  Log(LogLevel::kWarning, "circuit_breaker",
      {{"from", BreakerStateName(t.from)},
       {"to", BreakerStateName(t.to)},
       {"reason", t.reason}});
}

uint64_t EngineMetrics::FallbackCount(Operation op,
                                      absl::string_view reason) const {
  return static_cast<uint64_t>(
      fallbacks_[OpIndex(op)][ReasonIndex(reason)]->Value());
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

}  // namespace engram::core
