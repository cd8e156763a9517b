#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/dispatch/backend_errors.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/memory_ledger.h"
#include "core/dispatch/memory_pressure.h"
#include "core/dispatch/performance_model.h"
#include "core/engine_collector.h"
#include "core/engine_metrics.h"
#include "core/engine_stats.h"
#include "core/histograms.h"
#include "core/process_sample.h"
#include "core/rolling_counter.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace engram::core {
namespace {

using Labels = std::map<std::string, std::string>;

// The value of the sample of `name` whose labels include `want`; NaN when
// there is none. Counters and gauges only.
double Sample(const std::vector<prometheus::MetricFamily>& families,
              const std::string& name, const Labels& want = {}) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      Labels have;
      for (const auto& l : m.label) have[l.name] = l.value;
      bool match = true;
      for (const auto& [k, v] : want) match = match && have[k] == v;
      if (!match) continue;
      return family.type == prometheus::MetricType::Counter ? m.counter.value
                                                            : m.gauge.value;
    }
  }
  return std::nan("");
}

bool HasFamily(const std::vector<prometheus::MetricFamily>& families,
               const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return true;
  }
  return false;
}

TEST(HistogramQuantileTest, InterpolatesInsideTheBucketLikePromQL) {
  prometheus::ClientMetric::Histogram h;
  h.sample_count = 10;
  h.bucket = {
      {4, 1.0}, {10, 2.0}, {10, std::numeric_limits<double>::infinity()}};
  // rank 5 lies 1/6 of the way into the (1, 2] bucket.
  EXPECT_NEAR(HistogramQuantile(h, 0.5), 1.0 + 1.0 / 6.0, 1e-12);
  EXPECT_NEAR(HistogramQuantile(h, 0.2), 0.5, 1e-12);
  h.sample_count = 0;
  EXPECT_EQ(HistogramQuantile(h, 0.5), 0.0);
}

TEST(LatencyBucketsTest, SpanTensOfMicrosecondsToSecondsInOrder) {
  const auto& b = LatencyBuckets();
  ASSERT_GE(b.size(), 10u);
  EXPECT_LE(b.front(), 50e-6);
  EXPECT_GE(b.back(), 5.0);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
}

TEST(EngineMetricsTest, SnapshotReportsOnlyRecordedPairs) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  EXPECT_TRUE(metrics.Snapshot().empty());
  metrics.OnCompute(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                    0.002, 100);
  metrics.OnCompute(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                    0.004, 50);
  const auto snapshot = metrics.Snapshot();
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].operation, dispatch::Operation::kCosine);
  EXPECT_EQ(snapshot[0].backend, dispatch::BackendKind::kCpu);
  EXPECT_EQ(snapshot[0].requests, 2u);
  EXPECT_EQ(snapshot[0].work_items, 150u);
  EXPECT_NEAR(snapshot[0].compute_seconds_total, 0.006, 1e-12);
  EXPECT_GT(snapshot[0].p50_seconds, 0.001);
  EXPECT_LE(snapshot[0].p99_seconds, 0.005);
}

TEST(EngineMetricsTest, ExecutorFallbackReasonsMapToMetricReasons) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnFallback(dispatch::Operation::kCosine, dispatch::kFallbackGpuOom);
  metrics.OnFallback(dispatch::Operation::kCosine, dispatch::kFallbackGpuOom);
  metrics.OnFallback(dispatch::Operation::kSpread, dispatch::kFallbackGpuError);
  metrics.OnFallback(dispatch::Operation::kSpread, "something_new");
  metrics.OnFallback(dispatch::Operation::kCosine,
                     dispatch::kFallbackGpuMemoryBusy);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "memory_busy"),
            1u);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "oom"), 2u);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "device_error"),
            0u);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kSpread, "device_error"),
            1u);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kSpread, "other"), 1u);
  // The executor's own names are not label values.
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "gpu_oom"), 0u);
  const auto families = registry.Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_fallbacks_total",
                   {{"operation", "cosine"}, {"reason", "oom"}}),
            2);
}

TEST(EngineMetricsTest, BreakerRejectionsCountAsFallbacksUntilTheGpuIsLost) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "breaker_open", 1e-6);
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "memory_pressure", 1e-6);
  // A GPU-only refusal ran nothing: not a fallback.
  metrics.OnDecision(dispatch::Operation::kCosine,
                     dispatch::BackendKind::kUnspecified, "breaker_open", 1e-6);
  // Neither is a request the policy keeps on the CPU for its size.
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "work_below_min", 1e-6);
  dispatch::BreakerTransition lost;
  lost.from = dispatch::BreakerState::kClosed;
  lost.to = dispatch::BreakerState::kForcedOpen;
  metrics.OnBreakerTransition(lost);
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "breaker_open", 1e-6);
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "breaker_open", 1e-6);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "breaker_open"),
            1u);
  EXPECT_EQ(
      metrics.FallbackCount(dispatch::Operation::kCosine, "memory_pressure"),
      1u);
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "unavailable"),
            2u);
}

TEST(EngineMetricsTest, BreakerTransitionsAreCountedByFromAndTo) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  dispatch::BreakerTransition t;
  t.from = dispatch::BreakerState::kClosed;
  t.to = dispatch::BreakerState::kOpen;
  metrics.OnBreakerTransition(t);
  t.from = dispatch::BreakerState::kOpen;
  t.to = dispatch::BreakerState::kHalfOpen;
  metrics.OnBreakerTransition(t);
  const auto families = registry.Collect();
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_transitions_total",
                   {{"from", "closed"}, {"to", "open"}}),
            1);
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_transitions_total",
                   {{"from", "open"}, {"to", "half_open"}}),
            1);
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_transitions_total",
                   {{"from", "half_open"}, {"to", "closed"}}),
            0);
}

TEST(EngineMetricsTest, GpuErrorsAreCountedByKindAndRemembered) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnBackendError(dispatch::Operation::kCosine,
                         dispatch::BackendKind::kGpu,
                         absl::UnavailableError("launch failed"));
  metrics.OnBackendError(dispatch::Operation::kCosine,
                         dispatch::BackendKind::kGpu,
                         dispatch::StickyDeviceError("illegal address"));
  // Neither a client error nor a CPU error is the GPU's.
  metrics.OnBackendError(dispatch::Operation::kCosine,
                         dispatch::BackendKind::kGpu,
                         absl::InvalidArgumentError("bad input"));
  metrics.OnBackendError(dispatch::Operation::kCosine,
                         dispatch::BackendKind::kCpu,
                         absl::InternalError("cpu"));
  const auto families = registry.Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_errors_total",
                   {{"operation", "cosine"}, {"kind", "device"}}),
            1);
  EXPECT_EQ(Sample(families, "engram_gpu_errors_total",
                   {{"operation", "cosine"}, {"kind", "sticky"}}),
            1);
  const EngineStats stats = metrics.Stats(EngineStateSnapshot{});
  EXPECT_EQ(stats.last_gpu_error, "illegal address");
}

TEST(EngineMetricsTest, DecisionsAreCountedByBackendAndRule) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnDecision(dispatch::Operation::kCosine, dispatch::BackendKind::kCpu,
                     "work_below_min", 1e-6);
  metrics.OnDecision(dispatch::Operation::kCosine,
                     dispatch::BackendKind::kUnspecified, "gpu_unavailable",
                     1e-6);
  const auto families = registry.Collect();
  EXPECT_EQ(Sample(families, "engram_dispatch_decisions_total",
                   {{"operation", "cosine"},
                    {"backend", "cpu"},
                    {"rule", "work_below_min"}}),
            1);
  EXPECT_EQ(Sample(families, "engram_dispatch_decisions_total",
                   {{"operation", "cosine"},
                    {"backend", "none"},
                    {"rule", "gpu_unavailable"}}),
            1);
}

TEST(RollingCounterTest, ForgetsEventsOlderThanTheWindow) {
  RollingCounter counter;
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  counter.Add(t0, 3);
  counter.Add(t0 + absl::Seconds(30), 2);
  EXPECT_EQ(counter.Sum(t0 + absl::Seconds(30)), 5u);
  EXPECT_EQ(counter.Sum(t0 + absl::Seconds(59)), 5u);
  EXPECT_EQ(counter.Sum(t0 + absl::Seconds(60)), 2u);
  EXPECT_EQ(counter.Sum(t0 + absl::Seconds(90)), 0u);
  // A slot reused a minute later starts from zero.
  counter.Add(t0 + absl::Seconds(120), 1);
  EXPECT_EQ(counter.Sum(t0 + absl::Seconds(120)), 1u);
}

TEST(EngineMetricsTest, StatsWindowedRatesFollowTheClock) {
  dispatch::ManualClock clock(absl::FromUnixSeconds(2000000));
  prometheus::Registry registry;
  EngineMetrics metrics(registry, EngineMetrics::Options{&clock});
  clock.Advance(absl::Seconds(120));  // a full window of uptime
  for (int i = 0; i < 4; ++i) {
    metrics.OnDecision(dispatch::Operation::kCosine,
                       dispatch::BackendKind::kGpu, "default", 1e-6);
  }
  metrics.OnOom(dispatch::Operation::kCosine);
  metrics.OnOom(dispatch::Operation::kCosine);
  metrics.OnFallback(dispatch::Operation::kCosine, dispatch::kFallbackGpuOom);
  metrics.OnCompute(dispatch::Operation::kCosine, dispatch::BackendKind::kGpu,
                    0.01, 600);

  EngineStats stats = metrics.Stats(EngineStateSnapshot{});
  EXPECT_DOUBLE_EQ(stats.window_seconds, 60);
  ASSERT_EQ(stats.operations.size(), 2u);
  const EngineStats::OperationStats& cosine = stats.operations[0];
  EXPECT_EQ(cosine.requests, 4u);
  EXPECT_EQ(cosine.requests_in_window, 4u);
  EXPECT_EQ(cosine.ooms, 2u);
  EXPECT_DOUBLE_EQ(cosine.ooms_per_minute, 2);
  EXPECT_DOUBLE_EQ(cosine.fallback_rate, 0.25);
  ASSERT_EQ(stats.fallbacks.size(), 1u);
  EXPECT_EQ(stats.fallbacks[0].reason, "oom");
  EXPECT_EQ(stats.fallbacks[0].count, 1u);
  EXPECT_DOUBLE_EQ(stats.fallbacks[0].rate, 0.25);
  ASSERT_EQ(stats.backends.size(), 1u);
  EXPECT_DOUBLE_EQ(stats.backends[0].work_items_per_second, 10);

  // A minute later the totals stay and the window is empty.
  clock.Advance(absl::Seconds(61));
  stats = metrics.Stats(EngineStateSnapshot{});
  EXPECT_EQ(stats.operations[0].requests, 4u);
  EXPECT_EQ(stats.operations[0].requests_in_window, 0u);
  EXPECT_DOUBLE_EQ(stats.operations[0].ooms_per_minute, 0);
  EXPECT_EQ(stats.fallbacks[0].count, 1u);
  EXPECT_EQ(stats.fallbacks[0].count_in_window, 0u);
}

// A breaker, a model and a memory monitor on one manual clock, with the
// collector over them.
class EngineCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dispatch::CircuitBreaker::Options breaker;
    breaker.consecutive_failures_to_open = 1;
    breaker.open_initial = absl::Seconds(10);
    breaker.open_max = absl::Seconds(10);
    breaker.clock = &clock_;
    breaker_ = *dispatch::CircuitBreaker::Create(breaker);
    dispatch::PerformanceModel::Options model;
    model.clock = &clock_;
    model_ = *dispatch::PerformanceModel::Create(model);
    dispatch::MemoryPressureMonitor::Options memory;
    memory.refresh_interval = absl::ZeroDuration();
    memory.clock = &clock_;
    memory_ = *dispatch::MemoryPressureMonitor::Create(
        memory, [this]() -> absl::StatusOr<dispatch::DeviceMemoryInfo> {
          if (!probe_error_.ok()) return probe_error_;
          return dispatch::DeviceMemoryInfo{600, 1000};
        });
    registry_ = std::make_shared<prometheus::Registry>();
    collector_ = std::make_shared<EngineCollector>(
        registry_, EngineCollector::Sources{breaker_.get(), model_.get(),
                                            memory_.get(), &clock_});
  }

  dispatch::ManualClock clock_;
  absl::Status probe_error_;
  std::unique_ptr<dispatch::CircuitBreaker> breaker_;
  std::unique_ptr<dispatch::PerformanceModel> model_;
  std::unique_ptr<dispatch::MemoryPressureMonitor> memory_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<EngineCollector> collector_;
};

TEST_F(EngineCollectorTest, BreakerGaugesAreReadAtScrapeTime) {
  EXPECT_EQ(Sample(collector_->Collect(), "engram_circuit_breaker_state"), 0);
  dispatch::CircuitBreaker::Permit permit = breaker_->Admit();
  breaker_->Record(permit, absl::UnavailableError("launch failed"));
  auto families = collector_->Collect();
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_state"), 2);
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_retry_after_seconds"), 10);
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(Sample(collector_->Collect(),
                   "engram_circuit_breaker_retry_after_seconds"),
            6);
  // The wait is over: the breaker reads half-open although no call has
  // made the transition yet; the scrape says so.
  clock_.Advance(absl::Seconds(7));
  EXPECT_EQ(Sample(collector_->Collect(), "engram_circuit_breaker_state"), 1);
  breaker_->ForceOpen("device lost");
  families = collector_->Collect();
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_state"), 3);
  EXPECT_EQ(Sample(families, "engram_circuit_breaker_retry_after_seconds"),
            std::numeric_limits<double>::infinity());
}

TEST_F(EngineCollectorTest, MemoryGaugesFollowTheMonitorsReading) {
  (void)memory_->Assess();
  auto families = collector_->Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_memory_free_bytes"), 600);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_total_bytes"), 1000);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_limit_bytes"), 480);  // 0.8
  EXPECT_EQ(Sample(families, "engram_gpu_memory_query_failures_total"), 0);
  probe_error_ = absl::InternalError("driver gone");
  clock_.Advance(absl::Seconds(1));
  (void)memory_->Assess();
  clock_.Advance(absl::Seconds(1));
  (void)memory_->Assess();
  families = collector_->Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_memory_query_failures_total"), 2);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_reading_age_seconds"), 2);
  // Scraping again does not count the same failures twice.
  EXPECT_EQ(
      Sample(collector_->Collect(), "engram_gpu_memory_query_failures_total"),
      2);
}

TEST_F(EngineCollectorTest, LedgerGaugesAndCountersFollowTheLedger) {
  dispatch::DeviceMemoryLedger::Options options;
  options.max_wait = absl::ZeroDuration();
  options.safety_margin = 0.5;
  std::unique_ptr<dispatch::DeviceMemoryLedger> ledger =
      *dispatch::DeviceMemoryLedger::Create(options);
  EngineCollector::Sources sources{breaker_.get(), model_.get(), memory_.get(),
                                   &clock_};
  sources.ledger = ledger.get();
  auto registry = std::make_shared<prometheus::Registry>();
  EngineCollector collector(registry, sources);
  ASSERT_TRUE(ledger
                  ->Observe([]() -> absl::StatusOr<dispatch::DeviceMemoryInfo> {
                    return dispatch::DeviceMemoryInfo{600, 1000};
                  })
                  .ok());
  auto held = ledger->Reserve(200, 200);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(ledger->Reserve(200, 200).ok());  // 100 left: refused
  auto families = collector.Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_memory_reserved_bytes"), 200);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_ledger_capacity_bytes"), 300);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_ledger_refusals_total"), 1);
  EXPECT_EQ(Sample(families, "engram_gpu_memory_ledger_waits_total"), 0);
  const EngineStateSnapshot state = collector.Refresh();
  ASSERT_TRUE(state.memory_ledger.has_value());
  EXPECT_EQ(state.memory_ledger->reserved_bytes, 200u);
  held->Release();
  families = collector.Collect();
  EXPECT_EQ(Sample(families, "engram_gpu_memory_reserved_bytes"), 0);
  // Scraping again does not count the refusal twice.
  EXPECT_EQ(Sample(families, "engram_gpu_memory_ledger_refusals_total"), 1);
}

TEST_F(EngineCollectorTest, SpeedupIsExposedOnlyForBucketsMeasuredOnBoth) {
  // Bucket 2^10 measured on both (GPU 4x faster), 2^20 on the CPU only.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(model_
                    ->RecordTiming(dispatch::Operation::kCosine,
                                   dispatch::BackendKind::kCpu, 1024, 0.004)
                    .ok());
    ASSERT_TRUE(model_
                    ->RecordTiming(dispatch::Operation::kCosine,
                                   dispatch::BackendKind::kGpu, 1024, 0.001)
                    .ok());
    ASSERT_TRUE(model_
                    ->RecordTiming(dispatch::Operation::kCosine,
                                   dispatch::BackendKind::kCpu, 1 << 20, 0.5)
                    .ok());
  }
  const auto families = collector_->Collect();
  EXPECT_NEAR(Sample(families, "engram_gpu_speedup_estimate",
                     {{"operation", "cosine"}, {"size_bucket", "2^10"}}),
              4.0, 1e-9);
  EXPECT_TRUE(std::isnan(Sample(families, "engram_gpu_speedup_estimate",
                                {{"size_bucket", "2^20"}})));
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  const EngineStats stats = metrics.Stats(collector_->Refresh());
  ASSERT_EQ(stats.speedups.size(), 1u);
  EXPECT_EQ(stats.speedups[0].size_bucket, "2^10");
  EXPECT_EQ(stats.speedups[0].min_work, 1024u);
  EXPECT_NEAR(stats.speedups[0].speedup, 4.0, 1e-9);
}

TEST_F(EngineCollectorTest, TheFittedCostModelsAreExposedWithTheirParameters) {
  // GPU calls of 2^10..2^20 units: 20 us each plus 1 ns per unit; the CPU
  // was never measured.
  for (int b = 10; b <= 20; ++b) {
    ASSERT_TRUE(model_
                    ->RecordTiming(dispatch::Operation::kCosine,
                                   dispatch::BackendKind::kGpu,
                                   uint64_t{1} << b,
                                   2e-5 + 1e-9 * (uint64_t{1} << b))
                    .ok());
  }
  const auto families = collector_->Collect();
  auto parameter = [&](const std::string& name) {
    return Sample(
        families, "engram_dispatch_cost_model",
        {{"operation", "cosine"}, {"backend", "gpu"}, {"parameter", name}});
  };
  EXPECT_NEAR(parameter("fixed_seconds"), 2e-5, 1e-8);
  EXPECT_NEAR(parameter("seconds_per_unit"), 1e-9, 1e-12);
  EXPECT_EQ(parameter("seconds_per_byte"), 0);
  EXPECT_EQ(parameter("samples"), 11);
  EXPECT_EQ(parameter("usable"), 1);
  EXPECT_TRUE(std::isnan(
      Sample(families, "engram_dispatch_cost_model", {{"backend", "cpu"}})));
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  const EngineStats stats = metrics.Stats(collector_->Refresh());
  ASSERT_EQ(stats.cost_models.size(), 1u);
  EXPECT_EQ(stats.cost_models[0].operation, dispatch::Operation::kCosine);
  EXPECT_EQ(stats.cost_models[0].backend, dispatch::BackendKind::kGpu);
  EXPECT_NEAR(stats.cost_models[0].fit.fixed_seconds, 2e-5, 1e-8);
  EXPECT_EQ(stats.cost_models[0].fit.max_work, uint64_t{1} << 20);
}

TEST_F(EngineCollectorTest, CollectIncludesTheRegistryAndProcessFamilies) {
  prometheus::BuildCounter()
      .Name("engram_test_total")
      .Help("test")
      .Register(*registry_)
      .Add({})
      .Increment(7);
  const auto families = collector_->Collect();
  EXPECT_EQ(Sample(families, "engram_test_total"), 7);
  EXPECT_TRUE(HasFamily(families, "process_cpu_seconds_total"));
  EXPECT_GT(Sample(families, "process_resident_memory_bytes"), 0);
  EXPECT_GT(Sample(families, "process_open_fds"), 0);
}

TEST_F(EngineCollectorTest, ConcurrentEventsAndScrapesLoseNoEvent) {
  prometheus::Registry& registry = *registry_;
  EngineMetrics metrics(registry);
  constexpr int kThreads = 4;
  constexpr int kEvents = 500;
  std::atomic<bool> stop{false};
  // Scrapes and stats run while the events land.
  std::thread scraper([&] {
    while (!stop.load()) {
      (void)collector_->Collect();
      (void)metrics.Stats(collector_->Refresh());
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < kEvents; ++i) {
        metrics.OnDecision(dispatch::Operation::kCosine,
                           dispatch::BackendKind::kCpu, "breaker_open", 1e-6);
        metrics.OnCompute(dispatch::Operation::kCosine,
                          dispatch::BackendKind::kCpu, 1e-4, 2);
        metrics.OnOom(dispatch::Operation::kSpread);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  stop = true;
  scraper.join();
  const EngineStats stats = metrics.Stats(collector_->Refresh());
  EXPECT_EQ(stats.operations[0].requests, uint64_t{kThreads * kEvents});
  EXPECT_EQ(stats.operations[1].ooms, uint64_t{kThreads * kEvents});
  EXPECT_EQ(metrics.FallbackCount(dispatch::Operation::kCosine, "breaker_open"),
            uint64_t{kThreads * kEvents});
  ASSERT_EQ(stats.backends.size(), 1u);
  EXPECT_EQ(stats.backends[0].work_items, uint64_t{2 * kThreads * kEvents});
}

TEST(ProcessSampleTest, ReadsThisProcessFromProc) {
  absl::StatusOr<ProcessSample> p = ReadProcessSample();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_GT(p->resident_memory_bytes, 1 << 20);
  EXPECT_GE(p->virtual_memory_bytes, p->resident_memory_bytes);
  EXPECT_GE(p->cpu_seconds, 0);
  // Started within the last day, not in the future.
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_LE(p->start_time_seconds, now + 1);
  EXPECT_GT(p->start_time_seconds, now - 86400);
  EXPECT_GE(p->max_fds, p->open_fds);
}

}  // namespace
}  // namespace engram::core
