#include "core/metrics.h"

#include <map>
#include <string>

#include "core/dispatch/circuit_breaker.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace engram::core {
namespace {

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

TEST(EngineMetricsTest, SnapshotReportsOnlyRecordedPairs) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  EXPECT_TRUE(metrics.Snapshot().empty());
  metrics.OnCompute(Operation::kCosine, BackendKind::kCpu, 0.002, 100);
  metrics.OnCompute(Operation::kCosine, BackendKind::kCpu, 0.004, 50);
  const auto snapshot = metrics.Snapshot();
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].operation, Operation::kCosine);
  EXPECT_EQ(snapshot[0].backend, BackendKind::kCpu);
  EXPECT_EQ(snapshot[0].requests, 2u);
  EXPECT_EQ(snapshot[0].work_items, 150u);
  EXPECT_NEAR(snapshot[0].compute_seconds_total, 0.006, 1e-12);
  EXPECT_GT(snapshot[0].p50_seconds, 0.001);
  EXPECT_LE(snapshot[0].p99_seconds, 0.005);
}

TEST(EngineMetricsTest, FallbacksOomsAndBreakerTransitionsAreCounted) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnFallback(Operation::kCosine, "gpu_oom");
  metrics.OnFallback(Operation::kCosine, "gpu_oom");
  metrics.OnFallback(Operation::kSpread, "gpu_error");
  EXPECT_EQ(metrics.FallbackCount(Operation::kCosine, "gpu_oom"), 2u);
  EXPECT_EQ(metrics.FallbackCount(Operation::kCosine, "gpu_error"), 0u);
  EXPECT_EQ(metrics.FallbackCount(Operation::kSpread, "gpu_error"), 1u);

  BreakerTransition t;
  t.from = BreakerState::kClosed;
  t.to = BreakerState::kOpen;
  metrics.OnBreakerTransition(t);
  double state = -1, opened = -1;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name == "engram_circuit_breaker_state") {
      state = family.metric.at(0).gauge.value;
    }
    if (family.name == "engram_circuit_breaker_transitions_total") {
      for (const auto& m : family.metric) {
        bool closed_to_open = false;
        for (const auto& l : m.label) {
          if (l.name == "to" &&
              l.value == BreakerStateName(BreakerState::kOpen)) {
            closed_to_open = true;
          }
          if (l.name == "from" &&
              l.value != BreakerStateName(BreakerState::kClosed)) {
            closed_to_open = false;
            break;
          }
        }
        if (closed_to_open) opened = m.counter.value;
      }
    }
  }
  EXPECT_EQ(state, 2);  // open
  EXPECT_EQ(opened, 1);
}

TEST(EngineMetricsTest, DecisionsAreCountedByBackendAndRule) {
  prometheus::Registry registry;
  EngineMetrics metrics(registry);
  metrics.OnDecision(Operation::kCosine, BackendKind::kCpu, "work_below_min",
                     1e-6);
  metrics.OnDecision(Operation::kCosine, BackendKind::kUnspecified,
                     "gpu_unavailable", 1e-6);
  double below_min = 0, refused = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "engram_dispatch_decisions_total") continue;
    for (const auto& m : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& l : m.label) labels[l.name] = l.value;
      if (labels["operation"] != "cosine") continue;
      if (labels["backend"] == "cpu" && labels["rule"] == "work_below_min") {
        below_min = m.counter.value;
      }
      if (labels["backend"] == "none" && labels["rule"] == "gpu_unavailable") {
        refused = m.counter.value;
      }
    }
  }
  EXPECT_EQ(below_min, 1);
  EXPECT_EQ(refused, 1);
}

}  // namespace
}  // namespace engram::core
