#include "core/dispatch/dispatch_policy.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kGiB = uint64_t{1} << 30;

class DispatchPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto policy = RuleTablePolicy::Create({});
    ASSERT_TRUE(policy.ok());
    policy_ = *std::move(policy);
  }

  // AUTO, a healthy GPU with room to spare, work above the minimum, nothing
  // measured, no probe due: the default rule sends it to the GPU.
  static DispatchSnapshot Baseline() {
    DispatchSnapshot s;
    s.op = Operation::kCosine;
    s.placement = Placement::kAuto;
    s.work = uint64_t{1} << 26;
    s.gpu_present = true;
    s.breaker_admission = CircuitBreaker::Admission::kAllowed;
    s.breaker_state = BreakerState::kClosed;
    s.perf.bucket = 26;
    s.memory.has_reading = true;
    s.memory.stale = false;
    s.memory.high_pressure = false;
    s.memory.used_fraction = 0.5;
    s.memory.reading = DeviceMemoryInfo{8 * kGiB, 16 * kGiB};
    s.memory.budget_bytes = 6 * kGiB;
    s.footprint = CosineFootprint(512, 4096, 32, 0);
    s.min_chunk_items = 8;
    s.min_gpu_work = uint64_t{1} << 20;
    s.gpu_advantage = 1.0;
    s.probe_enabled = true;
    return s;
  }

  // Both backends measured: the GPU at `gpu_relative` of the CPU's time.
  static void Measure(DispatchSnapshot& s, double gpu_relative) {
    s.perf.cpu.samples = s.perf.gpu.samples = 5;
    s.perf.cpu.usable = s.perf.gpu.usable = true;
    s.perf.cpu.seconds_per_unit = 1e-9;
    s.perf.gpu.seconds_per_unit = 1e-9 * gpu_relative;
  }

  std::unique_ptr<RuleTablePolicy> policy_;
};

struct Case {
  std::string name;
  std::function<void(DispatchSnapshot&)> mutate;
  BackendKind backend;
  absl::string_view rule;
  absl::StatusCode refusal = absl::StatusCode::kOk;
  bool probe = false;
};

TEST_F(DispatchPolicyTest, RulesDecideAsTheTableSays) {
  using A = CircuitBreaker::Admission;
  const BackendKind kCpu = BackendKind::kCpu;
  const BackendKind kGpu = BackendKind::kGpu;
  const BackendKind kNone = BackendKind::kUnspecified;
  const std::vector<Case> cases = {
      {"DefaultGoesToTheGpu", [](auto&) {}, kGpu, kRuleDefault},
      {"ForcedCpu", [](auto& s) { s.placement = Placement::kCpuOnly; }, kCpu,
       kRulePlacement},
      {"ForcedCpuEvenWithoutAnyGpu",
       [](auto& s) {
         s.placement = Placement::kCpuOnly;
         s.gpu_present = false;
       },
       kCpu, kRulePlacement},
      {"ForcedGpu", [](auto& s) { s.placement = Placement::kGpuOnly; }, kGpu,
       kRulePlacement},
      {"ForcedGpuIgnoresTheMinimumWork",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.work = 10;
       },
       kGpu, kRulePlacement},
      {"ForcedGpuUnderPressureStillTries",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.memory.high_pressure = true;
       },
       kGpu, kRulePlacement},
      {"ForcedGpuWithoutAGpuIsUnavailable",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.gpu_present = false;
       },
       kNone, kRuleGpuUnavailable, absl::StatusCode::kUnavailable},
      {"ForcedGpuWithTheBreakerOpenIsUnavailable",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.breaker_admission = A::kRejected;
         s.breaker_state = BreakerState::kOpen;
       },
       kNone, kRuleBreakerOpen, absl::StatusCode::kUnavailable},
      {"ForcedGpuThatCannotFitIsResourceExhausted",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.footprint = CosineFootprint(512, uint64_t{1} << 30, 32, 0);
       },
       kNone, kRuleMemoryPressure, absl::StatusCode::kResourceExhausted},
      {"ForcedGpuWithAStaleReadingTriesUnlessLargerThanTheDevice",
       [](auto& s) {
         s.placement = Placement::kGpuOnly;
         s.memory.stale = s.memory.high_pressure = true;
         s.memory.budget_bytes = 0;
       },
       kGpu, kRulePlacement},
      {"NoGpu", [](auto& s) { s.gpu_present = false; }, kCpu,
       kRuleGpuUnavailable},
      {"BreakerOpen",
       [](auto& s) {
         s.breaker_admission = A::kRejected;
         s.breaker_state = BreakerState::kOpen;
       },
       kCpu, kRuleBreakerOpen},
      {"BreakerHalfOpenProbeRunsOnTheGpu",
       [](auto& s) {
         s.breaker_admission = A::kProbe;
         s.breaker_state = BreakerState::kHalfOpen;
       },
       kGpu, kRuleDefault},
      {"SmallWorkGoesToTheCpu", [](auto& s) { s.work = 1000; }, kCpu,
       kRuleWorkBelowMin},
      {"WorkAtTheMinimumGoesToTheGpu", [](auto& s) { s.work = s.min_gpu_work; },
       kGpu, kRuleDefault},
      {"GpuPredictedSlower", [](auto& s) { Measure(s, 1.5); }, kCpu,
       kRulePredictedSlower},
      {"GpuPredictedFaster", [](auto& s) { Measure(s, 0.2); }, kGpu,
       kRuleDefault},
      {"UnreliableGpuCountsItsCpuReruns",
       [](auto& s) {
         Measure(s, 0.8);
         s.perf.gpu.success_rate = 0.5;  // 0.8 + 0.5 * 1.0 > 1.0
       },
       kCpu, kRulePredictedSlower},
      {"AdvantageRequiredOfTheGpu",
       [](auto& s) {
         Measure(s, 0.6);
         s.gpu_advantage = 2.0;  // 1.2 > 1.0
       },
       kCpu, kRulePredictedSlower},
      {"OneBackendMeasuredIsNoPrediction",
       [](auto& s) {
         Measure(s, 10);
         s.perf.cpu.usable = false;
       },
       kGpu, kRuleDefault},
      {"ProbeTheGpuWhenTheCpuIsPreferred",
       [](auto& s) {
         Measure(s, 1.5);
         s.perf.probe_due = true;
       },
       kGpu, kRuleProbe, absl::StatusCode::kOk, true},
      {"ProbeTheCpuWhenTheGpuIsPreferred",
       [](auto& s) {
         Measure(s, 0.5);
         s.perf.probe_due = true;
       },
       kCpu, kRuleProbe, absl::StatusCode::kOk, true},
      {"NoProbeBeforeThePreferredBackendIsMeasured",
       [](auto& s) { s.perf.probe_due = true; }, kGpu, kRuleDefault},
      {"NoProbeWhenDisabled",
       [](auto& s) {
         Measure(s, 1.5);
         s.perf.probe_due = true;
         s.probe_enabled = false;
       },
       kCpu, kRulePredictedSlower},
      {"ProbeOfTheGpuYieldsToMemoryPressure",
       [](auto& s) {
         Measure(s, 1.5);
         s.perf.probe_due = true;
         s.memory.high_pressure = true;
       },
       kCpu, kRuleMemoryPressure},
      {"HighPressure", [](auto& s) { s.memory.high_pressure = true; }, kCpu,
       kRuleMemoryPressure},
      {"NoMemoryReading", [](auto& s) { s.memory = MemoryAssessment{}; }, kCpu,
       kRuleMemoryPressure},
      {"SmallestChunkDoesNotFit",
       [](auto& s) { s.memory.budget_bytes = s.footprint.fixed_bytes; }, kCpu,
       kRuleMemoryPressure},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    DispatchSnapshot s = Baseline();
    c.mutate(s);
    DispatchDecision d = policy_->Decide(s);
    EXPECT_EQ(d.rule, c.rule);
    EXPECT_EQ(d.refusal.code(), c.refusal) << d.refusal;
    if (c.refusal == absl::StatusCode::kOk) {
      EXPECT_EQ(d.backend, c.backend);
    }
    EXPECT_EQ(d.probe, c.probe);
  }
}

TEST_F(DispatchPolicyTest, RefusalsSayWhy) {
  DispatchSnapshot s = Baseline();
  s.placement = Placement::kGpuOnly;
  s.gpu_present = false;
  s.gpu_unavailable_reason = "built without the CUDA backend";
  EXPECT_THAT(policy_->Decide(s).refusal.message(),
              HasSubstr("built without the CUDA backend"));

  s = Baseline();
  s.placement = Placement::kGpuOnly;
  s.breaker_admission = CircuitBreaker::Admission::kRejected;
  s.breaker_state = BreakerState::kOpen;
  s.breaker_retry_after = absl::Milliseconds(1500);
  EXPECT_THAT(policy_->Decide(s).refusal.message(),
              HasSubstr("retry after 1.500 s"));

  s.breaker_state = BreakerState::kForcedOpen;
  EXPECT_THAT(policy_->Decide(s).refusal.message(), HasSubstr("sticky"));
}

TEST_F(DispatchPolicyTest, SpreadingJobsMustFitWhole) {
  std::vector<uint32_t> offsets(1001, 0);
  SpreadJob job;
  job.graph.num_nodes = 1000;
  job.graph.row_offsets = offsets;
  DispatchSnapshot s = Baseline();
  s.op = Operation::kSpread;
  s.footprint = SpreadFootprint(job);
  s.min_chunk_items = 1;
  EXPECT_EQ(policy_->Decide(s).backend, BackendKind::kGpu);
  s.memory.budget_bytes = s.footprint.TotalBytes() - 1;
  EXPECT_EQ(policy_->Decide(s).rule, kRuleMemoryPressure);
}

TEST_F(DispatchPolicyTest, ThresholdsComeFromTheSnapshot) {
  DispatchSnapshot s = Baseline();
  s.work = 5000;
  s.min_gpu_work = 4096;
  EXPECT_EQ(policy_->Decide(s).backend, BackendKind::kGpu);
  s.min_gpu_work = 8192;
  EXPECT_EQ(policy_->Decide(s).rule, kRuleWorkBelowMin);
  s.min_gpu_work = 0;
  s.work = 0;
  EXPECT_EQ(policy_->Decide(s).backend, BackendKind::kGpu);
}

TEST_F(DispatchPolicyTest, StandardTableIsInTheDocumentedOrder) {
  std::vector<absl::string_view> names;
  for (const DispatchRule& rule : policy_->rules()) names.push_back(rule.name);
  EXPECT_THAT(names, ElementsAre("placement", "gpu_unavailable", "breaker_open",
                                 "work_below_min", "predicted_slower",
                                 "memory_pressure", "probe", "default"));
}

std::optional<DispatchDecision> AlwaysGpu(const DispatchSnapshot&) {
  DispatchDecision d;
  d.backend = BackendKind::kGpu;
  return d;
}
std::optional<DispatchDecision> Never(const DispatchSnapshot&) {
  return std::nullopt;
}

TEST_F(DispatchPolicyTest, CustomTablesAreValidatedAndEvaluatedInOrder) {
  EXPECT_FALSE(RuleTablePolicy::Create({{}}).ok());
  EXPECT_FALSE(RuleTablePolicy::Create({{{"a", &Never}, {"a", &Never}}}).ok());
  EXPECT_FALSE(RuleTablePolicy::Create({{{"", &Never}}}).ok());
  EXPECT_FALSE(RuleTablePolicy::Create({{{"a", nullptr}}}).ok());

  auto custom = RuleTablePolicy::Create(
      {{{"never", &Never}, {"always_gpu", &AlwaysGpu}}});
  ASSERT_TRUE(custom.ok());
  DispatchDecision d = (*custom)->Decide(Baseline());
  EXPECT_EQ(d.rule, "always_gpu");
  EXPECT_EQ(d.backend, BackendKind::kGpu);

  auto exhausted = RuleTablePolicy::Create({{{"never", &Never}}});
  ASSERT_TRUE(exhausted.ok());
  d = (*exhausted)->Decide(Baseline());
  EXPECT_EQ(d.rule, kRuleTableExhausted);
  EXPECT_EQ(d.backend, BackendKind::kCpu);
}

}  // namespace
}  // namespace engram::dispatch
