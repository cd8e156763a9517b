// The dispatch policy: which backend runs a request, and which rule said so.
//
// Every input to the decision is gathered once into a DispatchSnapshot before
// deciding (the breaker's admission, the performance model's bucket, the
// memory assessment, the thresholds in force), so the decision is a pure
// function of one consistent view and can be tested and benchmarked alone.
//
// The standard table, evaluated in order, first rule that decides wins:
//   placement         CPU_ONLY -> CPU; GPU_ONLY -> GPU when usable
//   gpu_unavailable   no GPU backend (GPU_ONLY: UNAVAILABLE)
//   breaker_open      the breaker rejected the call (GPU_ONLY: UNAVAILABLE)
//   work_below_min    work < min_gpu_work for the operation
//   predicted_slower  the GPU's expected time for the request (failures
//                     costing a CPU rerun), times gpu_advantage, exceeds the
//                     CPU's, both predicted by the fitted cost models
//                     (cost_model.h) when both are usable, else by this
//                     bucket's estimates when both backends were measured
//                     in it; yields to a due probe
//   memory_pressure   no fresh reading, high pressure, or even the smallest
//                     chunk does not fit (GPU_ONLY: RESOURCE_EXHAUSTED when it
//                     cannot fit)
//   probe             a probe is due and the preferred backend's time is
//                     predicted: run the other one. Due means all of: the
//                     bucket's probe interval has passed; probes so far are
//                     under probe_max_share of AUTO decisions; the other
//                     backend's prediction is uncertain (no usable fit, a
//                     size outside what it observed, a poor fit) or stale
//                     (its newest observation older than probe_stale_after);
//                     and the probe is not predicted to cost more than
//                     probe_max_cost_ratio times the preferred backend
//   default           GPU
// work is Q*N*d for cosine (N the target rows a row mask admits) and
// edges x hops for spreading (jobs.h).
//
// Thread-safety: policies are immutable after creation; Decide() may be
// called concurrently.
#ifndef ENGRAM_CORE_DISPATCH_DISPATCH_POLICY_H_
#define ENGRAM_CORE_DISPATCH_DISPATCH_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/dispatch/chunking.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"

namespace engram::dispatch {

// Rule names, as they appear in ExecutionReport::decided_by and metrics.
inline constexpr absl::string_view kRulePlacement = "placement";
inline constexpr absl::string_view kRuleGpuUnavailable = "gpu_unavailable";
inline constexpr absl::string_view kRuleBreakerOpen = "breaker_open";
inline constexpr absl::string_view kRuleWorkBelowMin = "work_below_min";
inline constexpr absl::string_view kRulePredictedSlower = "predicted_slower";
inline constexpr absl::string_view kRuleMemoryPressure = "memory_pressure";
inline constexpr absl::string_view kRuleProbe = "probe";
inline constexpr absl::string_view kRuleDefault = "default";
// The answer of a table in which no rule decided (CPU).
inline constexpr absl::string_view kRuleTableExhausted = "table_exhausted";

// Everything a decision depends on, read once per request.
struct DispatchSnapshot {
  Operation op = Operation::kCosine;
  Placement placement = Placement::kAuto;
  uint64_t work = 0;

  bool gpu_present = false;  // a GPU backend is configured
  // Why there is none, for a GPU_ONLY refusal; must outlive the decision.
  absl::string_view gpu_unavailable_reason;

  // The breaker's answer to this request and its state at that instant.
  CircuitBreaker::Admission breaker_admission =
      CircuitBreaker::Admission::kRejected;
  BreakerState breaker_state = BreakerState::kClosed;
  absl::Duration breaker_retry_after = absl::ZeroDuration();

  PerfSnapshot perf;
  // The request's shape as the cost models predict it: the backend calls it
  // would make on each side (chunks) and the bytes the GPU's calls would
  // move in all.
  uint64_t cpu_calls = 1;
  uint64_t gpu_calls = 1;
  uint64_t gpu_bytes = 0;
  absl::Time now = absl::InfinitePast();  // when the snapshot was taken
  MemoryAssessment memory;
  JobFootprint footprint;
  uint64_t min_chunk_items = 1;  // the smallest chunk the GPU is given

  // Thresholds of the configuration in force.
  uint64_t min_gpu_work = 0;
  double gpu_advantage = 1.0;
  bool probe_enabled = true;
  // Exploration's bounds (see the probe rule above).
  bool probe_share_left = true;
  double probe_max_cost_ratio = 4.0;
  absl::Duration probe_stale_after = absl::Minutes(1);
};

struct DispatchDecision {
  BackendKind backend = BackendKind::kCpu;  // kCpu or kGpu
  absl::string_view rule = kRuleDefault;    // static storage
  bool probe = false;                       // an exploration run (rule "probe")
  // Not OK: the request must fail with this status (a GPU_ONLY request the
  // GPU cannot take); `backend` is then meaningless.
  absl::Status refusal;
};

class DispatchPolicy {
 public:
  virtual ~DispatchPolicy() = default;
  virtual DispatchDecision Decide(const DispatchSnapshot& snapshot) const = 0;
};

// One named rule: decides, or returns nullopt to pass to the next rule. The
// table sets the decision's `rule` to `name`.
struct DispatchRule {
  absl::string_view name;  // static storage
  std::optional<DispatchDecision> (*evaluate)(const DispatchSnapshot&) =
      nullptr;
};

// The standard table described at the top of this file.
std::vector<DispatchRule> StandardDispatchRules();

// The request's predicted seconds on each backend (without failures).
struct PredictedSeconds {
  double cpu = 0.0;
  double gpu = 0.0;
  bool fitted = false;  // from the cost models, else the bucket's estimates
};
// From the fitted cost models when both are usable, else from the bucket's
// estimates when both are; nullopt when neither pair predicts.
std::optional<PredictedSeconds> PredictRequest(const DispatchSnapshot& s);

// True when the GPU is expected to be slower than the CPU for the
// snapshot's request (PredictRequest), counting each expected GPU failure as
// a CPU rerun and scaling by gpu_advantage.
bool GpuPredictedSlower(const DispatchSnapshot& snapshot);

// Whether a probe of the backend the request would not use is due (see the
// probe rule above).
bool ProbeDue(const DispatchSnapshot& snapshot);

// Evaluates an ordered table of rules.
class RuleTablePolicy final : public DispatchPolicy {
 public:
  struct Options {
    std::vector<DispatchRule> rules = StandardDispatchRules();
  };

  // INVALID_ARGUMENT for an empty table, a rule without a name or function,
  // or a repeated name.
  static absl::StatusOr<std::unique_ptr<RuleTablePolicy>> Create(
      const Options& options);

  DispatchDecision Decide(const DispatchSnapshot& snapshot) const override;

  const std::vector<DispatchRule>& rules() const { return rules_; }

 private:
  explicit RuleTablePolicy(std::vector<DispatchRule> rules)
      : rules_(std::move(rules)) {}

  const std::vector<DispatchRule> rules_;
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_DISPATCH_POLICY_H_
