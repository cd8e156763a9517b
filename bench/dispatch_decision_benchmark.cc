// The cost of the dispatch decision itself: evaluating the standard rule
// table on a prepared snapshot, for the snapshots that stop at each rule,
// taking a performance-model snapshot (the part of building a
// DispatchSnapshot that copies timings under the model's lock), and a tiny
// request's whole way through the executor with and without the shortcut
// that keeps it off the breaker, memory and model steps, and a larger
// request's, which takes every step and is decided by the fitted cost
// models.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "core/dispatch/dispatch_policy.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/performance_model.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "kernels/cpu/cosine.h"

namespace engram::dispatch {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

DispatchSnapshot Snapshot() {
  DispatchSnapshot s;
  s.op = Operation::kCosine;
  s.placement = Placement::kAuto;
  s.work = uint64_t{1} << 26;
  s.gpu_present = true;
  s.breaker_admission = CircuitBreaker::Admission::kAllowed;
  s.memory.has_reading = true;
  s.memory.stale = false;
  s.memory.high_pressure = false;
  s.memory.reading = DeviceMemoryInfo{40 * kGiB, 80 * kGiB};
  s.memory.budget_bytes = 32 * kGiB;
  s.footprint = CosineFootprint(512, 100000, 128, 0);
  s.min_chunk_items = 8;
  s.min_gpu_work = uint64_t{1} << 24;
  s.perf.cpu.usable = s.perf.gpu.usable = true;
  s.perf.cpu.seconds_per_unit = 1e-9;
  s.perf.gpu.seconds_per_unit = 1e-10;
  return s;
}

// Arg: the rule that decides. 0 placement, 1 breaker_open, 2 work_below_min,
// 3 predicted_slower, 4 memory_pressure, 5 probe, 6 default.
void BM_Decide(benchmark::State& state) {
  auto policy = RuleTablePolicy::Create({});
  if (!policy.ok()) {
    state.SkipWithError("policy creation failed");
    return;
  }
  DispatchSnapshot s = Snapshot();
  switch (state.range(0)) {
    case 0:
      s.placement = Placement::kCpuOnly;
      break;
    case 1:
      s.breaker_admission = CircuitBreaker::Admission::kRejected;
      break;
    case 2:
      s.work = 1000;
      break;
    case 3:
      s.perf.gpu.seconds_per_unit = 1e-8;
      break;
    case 4:
      s.memory.high_pressure = true;
      break;
    case 5:
      s.perf.probe_due = true;
      break;
    default:
      break;
  }
  for (auto _ : state) {
    DispatchDecision d = (*policy)->Decide(s);
    benchmark::DoNotOptimize(d);
  }
  state.SetLabel(std::string((*policy)->Decide(s).rule));
}
BENCHMARK(BM_Decide)->DenseRange(0, 6);

void BM_PerformanceModelSnapshot(benchmark::State& state) {
  PerformanceModel::Options options;
  options.window_samples = static_cast<uint32_t>(state.range(0));
  auto model = PerformanceModel::Create(options);
  if (!model.ok()) {
    state.SkipWithError("model creation failed");
    return;
  }
  const uint64_t work = uint64_t{1} << 26;
  for (int64_t i = 0; i < state.range(0); ++i) {
    (void)(*model)->RecordTiming(Operation::kCosine, BackendKind::kCpu, work,
                                 1e-3 + 1e-6 * i);
    (void)(*model)->RecordTiming(Operation::kCosine, BackendKind::kGpu, work,
                                 1e-4 + 1e-7 * i);
  }
  for (auto _ : state) {
    PerfSnapshot s = (*model)->Snapshot(Operation::kCosine, work);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_PerformanceModelSnapshot)->Arg(16)->Arg(64)->Arg(256);

// A CPU backend that computes nothing, so that a request through the
// executor measures the dispatch path alone.
class NoopBackend final : public ComputeBackend {
 public:
  absl::string_view name() const override { return "noop"; }
  BackendCapabilities Capabilities() const override {
    BackendCapabilities c;
    c.kind = BackendKind::kCpu;
    return c;
  }
  absl::Status Cosine(const CosineJob&, CosineOutput*) override {
    return absl::OkStatus();
  }
  absl::Status Spread(const SpreadJob&, SpreadOutput*) override {
    return absl::OkStatus();
  }
  // As CpuBackend answers: the executor never asks a CPU backend.
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    return absl::UnimplementedError("the CPU backend has no device memory");
  }
};

// An executor over a CPU that computes nothing and a simulated GPU, so that
// a request through it measures the dispatch path alone; `executor` is null
// when the set-up failed.
struct DispatchOnly {
  DispatchOnly(const HybridConfig& values, const DispatchPolicy* policy) {
    auto made_gpu = testing::SimulatedGpuBackend::Create({});
    auto made_config = ConfigStore::Create(values);
    if (!made_gpu.ok() || !made_config.ok()) return;
    gpu = *std::move(made_gpu);
    config = *std::move(made_config);
    HybridExecutor::Options options;
    options.cpu = &cpu;
    options.gpu = gpu.get();
    options.config = config.get();
    options.policy = policy;
    auto made = HybridExecutor::Create(options);
    if (made.ok()) executor = *std::move(made);
  }

  NoopBackend cpu;
  std::unique_ptr<testing::SimulatedGpuBackend> gpu;
  std::unique_ptr<ConfigStore> config;
  std::unique_ptr<HybridExecutor> executor;
};

// One tiny AUTO request (1 x 64 x 768, below min_gpu_work) through
// HybridExecutor::Cosine with a GPU present, the CPU computing nothing: the
// whole dispatch path, from the config read to the report. Arg 0: the
// standard policy, which stops at the config for such a request; arg 1: the
// same rules passed as a custom policy, so that the request also takes a
// breaker permit, a memory assessment and a model snapshot (what every
// request paid before the shortcut).
void BM_ExecutorDispatchOfATinyRequest(benchmark::State& state) {
  auto rules = RuleTablePolicy::Create({});
  if (!rules.ok()) {
    state.SkipWithError("policy creation failed");
    return;
  }
  DispatchOnly dispatch(HybridConfig(),
                        state.range(0) == 1 ? rules->get() : nullptr);
  HybridExecutor* executor = dispatch.executor.get();
  if (executor == nullptr) {
    state.SkipWithError("set-up failed");
    return;
  }
  const size_t n = 64, d = 768;
  std::vector<float> queries(d, 0.5f), targets(n * d, 0.25f), scores(n);
  CosineJob job;
  job.queries = kernels::MatrixView{queries.data(), 1, d};
  job.targets = kernels::MatrixView{targets.data(), n, d};
  CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  for (auto _ : state) {
    absl::Status status = executor->Cosine(job, &out);
    benchmark::DoNotOptimize(status);
  }
  state.SetLabel(out.report.decided_by);
}
BENCHMARK(BM_ExecutorDispatchOfATinyRequest)->Arg(0)->Arg(1);

// One AUTO request above min_gpu_work (16 x 4096 x 256) through the
// executor, the CPU computing nothing: the decision's every step, the
// breaker's admission, the memory assessment with the device-memory ledger
// and a model snapshot with both backends' fitted cost models, which
// predict the GPU slower here (predicted_slower). Each request records its
// CPU call, so the fits are refitted as often as traffic makes them.
void BM_ExecutorDispatchOfAModelDecidedRequest(benchmark::State& state) {
  HybridConfig config;
  config.probe_enabled = false;  // every request decided alike
  DispatchOnly dispatch(config, nullptr);
  HybridExecutor* executor = dispatch.executor.get();
  if (executor == nullptr) {
    state.SkipWithError("set-up failed");
    return;
  }
  // Both backends measured over sizes 2^20..2^30, the GPU ten times slower.
  PerformanceModel& model = executor->performance_model();
  for (int b = 20; b <= 30; ++b) {
    for (int i = 0; i < 8; ++i) {
      const uint64_t w = uint64_t{1} << b;
      (void)model.RecordTiming(Operation::kCosine, BackendKind::kCpu, w,
                               1e-10 * static_cast<double>(w));
      (void)model.RecordTiming(Operation::kCosine, BackendKind::kGpu, w,
                               1e-9 * static_cast<double>(w), w / 16);
    }
  }
  const size_t q = 16, n = 4096, d = 256;
  std::vector<float> queries(q * d, 0.5f), targets(n * d, 0.25f);
  CosineJob job;
  job.queries = kernels::MatrixView{queries.data(), q, d};
  job.targets = kernels::MatrixView{targets.data(), n, d};
  job.top_k = 10;
  CosineOutput out;
  for (auto _ : state) {
    absl::Status status = executor->Cosine(job, &out);
    benchmark::DoNotOptimize(status);
  }
  state.SetLabel(out.report.decided_by);
}
BENCHMARK(BM_ExecutorDispatchOfAModelDecidedRequest);

}  // namespace
}  // namespace engram::dispatch

// The baseline the review asked about: the smallest batch worth sending, one
// query against 64 targets of dimension 768, on one CPU thread. The decision
// must cost a small fraction of it.
void BM_SmallBatchCosineBaseline(benchmark::State& state) {
  const size_t n = 64, d = 768;
  std::vector<float> queries(d), targets(n * d), scores(n);
  for (size_t i = 0; i < queries.size(); ++i) queries[i] = 0.001f * (i % 97);
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = 0.002f * (i % 89);
  const engram::kernels::MatrixView q{queries.data(), 1, d};
  const engram::kernels::MatrixView t{targets.data(), n, d};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        engram::kernels::cpu::CosineDense(q, t, scores.data(), n, 0, nullptr));
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_SmallBatchCosineBaseline);

BENCHMARK_MAIN();
