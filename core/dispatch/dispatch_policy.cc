#include "core/dispatch/dispatch_policy.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace engram::dispatch {
namespace {

bool IsAuto(const DispatchSnapshot& s) {
  return s.placement == Placement::kAuto;
}

DispatchDecision Run(BackendKind backend) {
  DispatchDecision d;
  d.backend = backend;
  return d;
}

DispatchDecision Refuse(absl::Status status) {
  DispatchDecision d;
  d.backend = BackendKind::kUnspecified;
  d.refusal = std::move(status);
  return d;
}

uint64_t SmallestChunk(const DispatchSnapshot& s) {
  return std::min<uint64_t>(std::max<uint64_t>(s.min_chunk_items, 1),
                            std::max<uint64_t>(s.footprint.items, 1));
}

// The smallest chunk the GPU would be given fits the current budget.
bool SmallestChunkFits(const DispatchSnapshot& s) {
  return s.memory.has_reading &&
         ItemsThatFit(s.footprint, s.memory.budget_bytes) >= SmallestChunk(s);
}

// Known not to fit: larger than the device, or larger than a fresh budget.
// Without a fresh reading a GPU_ONLY request is tried, and OOM handling has
// the last word.
bool KnownNotToFit(const DispatchSnapshot& s) {
  if (!s.memory.has_reading) return false;
  const uint64_t needed = s.footprint.splittable
                              ? s.footprint.BytesFor(SmallestChunk(s))
                              : s.footprint.TotalBytes();
  if (needed > s.memory.reading.total_bytes) return true;
  return !s.memory.stale && !SmallestChunkFits(s);
}

std::optional<DispatchDecision> PlacementRule(const DispatchSnapshot& s) {
  switch (s.placement) {
    case Placement::kCpuOnly:
      return Run(BackendKind::kCpu);
    case Placement::kGpuOnly:
      if (s.gpu_present &&
          s.breaker_admission != CircuitBreaker::Admission::kRejected &&
          !KnownNotToFit(s)) {
        return Run(BackendKind::kGpu);
      }
      return std::nullopt;  // a later rule refuses, naming the reason
    case Placement::kAuto:
      break;
  }
  return std::nullopt;
}

std::optional<DispatchDecision> GpuUnavailableRule(const DispatchSnapshot& s) {
  if (s.gpu_present) return std::nullopt;
  if (s.placement == Placement::kGpuOnly) {
    return Refuse(absl::UnavailableError(
        absl::StrCat("PLACEMENT_GPU_ONLY but no GPU is available",
                     s.gpu_unavailable_reason.empty() ? "" : ": ",
                     s.gpu_unavailable_reason)));
  }
  return Run(BackendKind::kCpu);
}

std::optional<DispatchDecision> BreakerOpenRule(const DispatchSnapshot& s) {
  if (s.breaker_admission != CircuitBreaker::Admission::kRejected) {
    return std::nullopt;
  }
  if (s.placement == Placement::kGpuOnly) {
    if (s.breaker_state == BreakerState::kForcedOpen) {
      return Refuse(absl::UnavailableError(
          "PLACEMENT_GPU_ONLY but the GPU is disabled after a sticky device "
          "error (circuit breaker forced open)"));
    }
    return Refuse(absl::UnavailableError(absl::StrFormat(
        "PLACEMENT_GPU_ONLY but the GPU circuit breaker is %s; retry after "
        "%.3f s",
        BreakerStateName(s.breaker_state),
        absl::ToDoubleSeconds(s.breaker_retry_after))));
  }
  return Run(BackendKind::kCpu);
}

std::optional<DispatchDecision> WorkBelowMinRule(const DispatchSnapshot& s) {
  if (IsAuto(s) && s.work < s.min_gpu_work) return Run(BackendKind::kCpu);
  return std::nullopt;
}

std::optional<DispatchDecision> PredictedSlowerRule(const DispatchSnapshot& s) {
  if (IsAuto(s) && GpuPredictedSlower(s) && !ProbeDue(s)) {
    return Run(BackendKind::kCpu);
  }
  return std::nullopt;
}

std::optional<DispatchDecision> MemoryPressureRule(const DispatchSnapshot& s) {
  if (s.placement == Placement::kGpuOnly) {
    if (!KnownNotToFit(s)) return std::nullopt;
    const uint64_t needed = s.footprint.splittable
                                ? s.footprint.BytesFor(SmallestChunk(s))
                                : s.footprint.TotalBytes();
    return Refuse(absl::ResourceExhaustedError(absl::StrCat(
        "PLACEMENT_GPU_ONLY but the job does not fit GPU memory: its smallest "
        "unit needs ",
        needed, " bytes, the budget is ", s.memory.budget_bytes, " of ",
        s.memory.reading.total_bytes, " bytes")));
  }
  if (!IsAuto(s)) return std::nullopt;
  if (!s.memory.has_reading || s.memory.high_pressure ||
      !SmallestChunkFits(s)) {
    return Run(BackendKind::kCpu);
  }
  return std::nullopt;
}

std::optional<DispatchDecision> ProbeRule(const DispatchSnapshot& s) {
  // Exploration only makes sense once the preferred backend's time is known
  // (ProbeDue asks for a prediction).
  if (!IsAuto(s) || !ProbeDue(s)) return std::nullopt;
  DispatchDecision d =
      Run(GpuPredictedSlower(s) ? BackendKind::kGpu : BackendKind::kCpu);
  d.probe = true;
  return d;
}

// The per-call work of `calls` calls sharing `work`.
uint64_t CallWork(uint64_t work, uint64_t calls) {
  return work / std::max<uint64_t>(calls, 1);
}

// A fit that predicts this size well, from observations not yet stale.
bool Certain(const CostFit& fit, uint64_t call_work,
             const DispatchSnapshot& s) {
  // Within a factor of 4 of the sizes observed, the three-parameter line
  // interpolates; a fit within 25% of its own observations is a good one.
  return fit.usable && fit.Covers(call_work, 4.0) &&
         fit.relative_error <= 0.25 &&
         s.now - fit.newest <= s.probe_stale_after;
}

std::optional<DispatchDecision> DefaultRule(const DispatchSnapshot& s) {
  return Run(BackendKind::kGpu);
}

}  // namespace

std::optional<PredictedSeconds> PredictRequest(const DispatchSnapshot& s) {
  PredictedSeconds p;
  if (s.perf.cpu_fit.usable && s.perf.gpu_fit.usable) {
    // The CPU moves no bytes: its data is in host memory.
    p.cpu = s.perf.cpu_fit.Predict(s.cpu_calls, s.work, 0);
    p.gpu = s.perf.gpu_fit.Predict(s.gpu_calls, s.work, s.gpu_bytes);
    p.fitted = true;
    return p;
  }
  if (s.perf.cpu.usable && s.perf.gpu.usable) {
    p.cpu = s.perf.cpu.Predict(s.work);
    p.gpu = s.perf.gpu.Predict(s.work);
    return p;
  }
  return std::nullopt;
}

bool GpuPredictedSlower(const DispatchSnapshot& s) {
  const std::optional<PredictedSeconds> p = PredictRequest(s);
  if (!p.has_value()) return false;
  const double gpu = p->gpu + (1.0 - s.perf.gpu.success_rate) * p->cpu;
  return gpu * s.gpu_advantage > p->cpu;
}

bool ProbeDue(const DispatchSnapshot& s) {
  if (!s.probe_enabled || !s.perf.probe_due || !s.probe_share_left) {
    return false;
  }
  const bool probe_gpu = GpuPredictedSlower(s);
  const std::optional<PredictedSeconds> p = PredictRequest(s);
  if (!p.has_value()) {
    // Nothing to compare: explore the other backend once the preferred one
    // (the GPU, as nothing says it is slower) has been measured.
    return s.perf.gpu_fit.usable || s.perf.gpu.usable;
  }
  const CostFit& other = probe_gpu ? s.perf.gpu_fit : s.perf.cpu_fit;
  const uint64_t calls = probe_gpu ? s.gpu_calls : s.cpu_calls;
  if (Certain(other, CallWork(s.work, calls), s)) return false;
  // What the probe would cost, when it can be told: never many times the
  // better choice.
  const double probe = probe_gpu ? p->gpu : p->cpu;
  const double best = probe_gpu ? p->cpu : p->gpu;
  return probe <= s.probe_max_cost_ratio * best;
}

std::vector<DispatchRule> StandardDispatchRules() {
  return {
      {kRulePlacement, &PlacementRule},
      {kRuleGpuUnavailable, &GpuUnavailableRule},
      {kRuleBreakerOpen, &BreakerOpenRule},
      {kRuleWorkBelowMin, &WorkBelowMinRule},
      {kRulePredictedSlower, &PredictedSlowerRule},
      {kRuleMemoryPressure, &MemoryPressureRule},
      {kRuleProbe, &ProbeRule},
      {kRuleDefault, &DefaultRule},
  };
}

absl::StatusOr<std::unique_ptr<RuleTablePolicy>> RuleTablePolicy::Create(
    const Options& options) {
  if (options.rules.empty()) {
    return absl::InvalidArgumentError("dispatch rule table is empty");
  }
  absl::flat_hash_set<absl::string_view> names;
  for (const DispatchRule& rule : options.rules) {
    if (rule.name.empty() || rule.evaluate == nullptr) {
      return absl::InvalidArgumentError(
          "every dispatch rule needs a name and a function");
    }
    if (!names.insert(rule.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("dispatch rule \"", rule.name, "\" appears twice"));
    }
  }
  return std::unique_ptr<RuleTablePolicy>(new RuleTablePolicy(options.rules));
}

DispatchDecision RuleTablePolicy::Decide(
    const DispatchSnapshot& snapshot) const {
  for (const DispatchRule& rule : rules_) {
    std::optional<DispatchDecision> decision = rule.evaluate(snapshot);
    if (decision.has_value()) {
      decision->rule = rule.name;
      return *std::move(decision);
    }
  }
  DispatchDecision fallback;
  fallback.backend = BackendKind::kCpu;
  fallback.rule = kRuleTableExhausted;
  return fallback;
}

}  // namespace engram::dispatch
