#include "core/engine_collector.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "core/dispatch/jobs.h"
#include "core/metric_labels.h"
#include "core/process_sample.h"
#include "prometheus/client_metric.h"

namespace engram::core {
namespace {

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddSample(prometheus::MetricFamily* family, double value,
               std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family->metric.push_back(std::move(m));
}

std::vector<prometheus::MetricFamily> ProcessFamilies() {
  std::vector<prometheus::MetricFamily> out;
  absl::StatusOr<ProcessSample> p = ReadProcessSample();
  if (!p.ok()) return out;
  prometheus::MetricFamily cpu;
  cpu.name = "process_cpu_seconds_total";
  cpu.help = "Total user and system CPU time spent in seconds.";
  cpu.type = prometheus::MetricType::Counter;
  AddSample(&cpu, p->cpu_seconds);
  out.push_back(std::move(cpu));
  const std::pair<const char*, std::pair<const char*, double>> gauges[] = {
      {"process_resident_memory_bytes",
       {"Resident memory size in bytes.", p->resident_memory_bytes}},
      {"process_virtual_memory_bytes",
       {"Virtual memory size in bytes.", p->virtual_memory_bytes}},
      {"process_start_time_seconds",
       {"Start time of the process since unix epoch in seconds.",
        p->start_time_seconds}},
      {"process_open_fds", {"Number of open file descriptors.", p->open_fds}},
      {"process_max_fds",
       {"Maximum number of open file descriptors.", p->max_fds}},
  };
  for (const auto& [name, help_value] : gauges) {
    prometheus::MetricFamily f = GaugeFamily(name, help_value.first);
    AddSample(&f, help_value.second);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

EngineCollector::EngineCollector(std::shared_ptr<prometheus::Registry> registry,
                                 const Sources& sources)
    : registry_(std::move(registry)),
      sources_(sources),
      clock_(sources.clock != nullptr ? sources.clock
                                      : dispatch::Clock::Real()) {
  prometheus::Registry& r = *registry_;
  auto gauge = [&r](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
  };
  breaker_state_ =
      gauge("engram_circuit_breaker_state",
            "GPU circuit breaker: 0 closed, 1 half-open, 2 open, 3 forced open "
            "(sticky device error). Read at scrape time.");
  breaker_failures_ = gauge("engram_circuit_breaker_consecutive_failures",
                            "GPU failures in a row counted by the breaker.");
  breaker_retry_after_ =
      gauge("engram_circuit_breaker_retry_after_seconds",
            "Open: seconds until probes are let through; forced open: +Inf; "
            "otherwise 0.");
  memory_free_ = gauge("engram_gpu_memory_free_bytes",
                       "Free GPU memory at the last good reading (0 without "
                       "a GPU or a reading).");
  memory_total_ = gauge("engram_gpu_memory_total_bytes",
                        "Total GPU memory at the last good reading.");
  memory_limit_ =
      gauge("engram_gpu_memory_limit_bytes",
            "The most one request may plan to use: free bytes times "
            "memory_safety_margin.");
  memory_age_ = gauge(
      "engram_gpu_memory_reading_age_seconds",
      "Age of the last good GPU memory reading (+Inf: none yet; 0 without a "
      "GPU).");
  memory_query_failures_ = &prometheus::BuildCounter()
                                .Name("engram_gpu_memory_query_failures_total")
                                .Help("GPU memory queries that failed.")
                                .Register(r)
                                .Add({});
  ledger_reserved_ =
      gauge("engram_gpu_memory_reserved_bytes",
            "GPU memory reserved in the device memory ledger by requests "
            "planned or running on the GPU.");
  ledger_capacity_ =
      gauge("engram_gpu_memory_ledger_capacity_bytes",
            "What the device memory ledger may hand out in all: (free + the "
            "reserved bytes the last reading counted as used) x "
            "memory_safety_margin, at most that of the last reading taken "
            "with nothing reserved on the device.");
  auto counter = [&r](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(
        {});
  };
  ledger_waits_ = counter("engram_gpu_memory_ledger_waits_total",
                          "Requests that waited for room in the device "
                          "memory ledger.");
  ledger_refusals_ = counter(
      "engram_gpu_memory_ledger_refusals_total",
      "Requests the device memory ledger had no room for within its wait: "
      "they ran on the CPU (memory_busy) or failed with RESOURCE_EXHAUSTED.");
  Refresh();
}

EngineStateSnapshot EngineCollector::Refresh() const {
  absl::MutexLock lock(&mu_);
  EngineStateSnapshot s;
  s.at = clock_->Now();
  s.breaker = sources_.breaker->Snapshot();
  if (sources_.memory != nullptr) s.memory = sources_.memory->Cached();
  if (sources_.ledger != nullptr) s.memory_ledger = sources_.ledger->stats();
  s.perf = sources_.model->SnapshotAll();
  s.outcomes[0] = sources_.model->Snapshot(dispatch::Operation::kCosine, 0);
  s.outcomes[1] = sources_.model->Snapshot(dispatch::Operation::kSpread, 0);

  breaker_state_->Set(BreakerStateValue(s.breaker.state));
  breaker_failures_->Set(s.breaker.consecutive_failures);
  breaker_retry_after_->Set(s.breaker.retry_after == absl::InfiniteDuration()
                                ? std::numeric_limits<double>::infinity()
                                : absl::ToDoubleSeconds(s.breaker.retry_after));
  if (s.memory.has_value()) {
    const dispatch::MemoryAssessment& m = *s.memory;
    memory_free_->Set(static_cast<double>(m.reading.free_bytes));
    memory_total_->Set(static_cast<double>(m.reading.total_bytes));
    memory_limit_->Set(static_cast<double>(m.budget_bytes));
    memory_age_->Set(m.has_reading ? absl::ToDoubleSeconds(m.age)
                                   : std::numeric_limits<double>::infinity());
    const double failures = static_cast<double>(m.probe_failures);
    const double seen = memory_query_failures_->Value();
    if (failures > seen) memory_query_failures_->Increment(failures - seen);
  }
  if (s.memory_ledger.has_value()) {
    const dispatch::DeviceMemoryLedger::Stats& l = *s.memory_ledger;
    ledger_reserved_->Set(static_cast<double>(l.reserved_bytes));
    ledger_capacity_->Set(static_cast<double>(l.capacity_bytes));
    auto advance = [](prometheus::Counter* counter, uint64_t count) {
      const double seen = counter->Value();
      if (static_cast<double>(count) > seen) {
        counter->Increment(static_cast<double>(count) - seen);
      }
    };
    advance(ledger_waits_, l.waits);
    advance(ledger_refusals_, l.refusals);
  }
  return s;
}

std::vector<prometheus::MetricFamily> EngineCollector::Collect() const {
  const EngineStateSnapshot state = Refresh();
  std::vector<prometheus::MetricFamily> families = registry_->Collect();

  prometheus::MetricFamily speedup = GaugeFamily(
      "engram_gpu_speedup_estimate",
      "CPU time over GPU time per unit of work in one work-size bucket "
      "(work in [2^b, 2^(b+1))), from the performance model's window; only "
      "buckets measured on both backends.");
  for (const dispatch::PerfSnapshot& p : state.perf) {
    if (!p.cpu.usable || !p.gpu.usable || p.gpu.seconds_per_unit <= 0) continue;
    AddSample(&speedup, p.cpu.seconds_per_unit / p.gpu.seconds_per_unit,
              {{"operation", dispatch::OperationName(p.op)},
               {"size_bucket", SizeBucketLabel(p.bucket)}});
  }
  // A family without samples is left out rather than exposed empty.
  if (!speedup.metric.empty()) families.push_back(std::move(speedup));

  prometheus::MetricFamily cost = GaugeFamily(
      "engram_dispatch_cost_model",
      "The dispatch engine's fitted cost model of one backend for one "
      "operation: one call costs fixed_seconds + bytes x seconds_per_byte + "
      "work x seconds_per_unit (parameter), fitted to the calls in the "
      "performance model's window; also its samples, relative_error and "
      "usable (1 when it predicts). Only backends with samples.");
  for (const dispatch::PerfSnapshot& p : state.outcomes) {
    for (const auto& [backend, fit] : {std::make_pair("cpu", &p.cpu_fit),
                                       std::make_pair("gpu", &p.gpu_fit)}) {
      if (fit->samples == 0) continue;
      for (const auto& [parameter, value] :
           {std::make_pair("fixed_seconds", fit->fixed_seconds),
            std::make_pair("seconds_per_byte", fit->seconds_per_byte),
            std::make_pair("seconds_per_unit", fit->seconds_per_unit),
            std::make_pair("relative_error", fit->relative_error),
            std::make_pair("samples", static_cast<double>(fit->samples)),
            std::make_pair("usable", fit->usable ? 1.0 : 0.0)}) {
        AddSample(&cost, value,
                  {{"operation", dispatch::OperationName(p.op)},
                   {"backend", backend},
                   {"parameter", parameter}});
      }
    }
  }
  if (!cost.metric.empty()) families.push_back(std::move(cost));

  if (sources_.catalog != nullptr) {
    const collections::CatalogHealth health = sources_.catalog->Health();
    prometheus::MetricFamily connected = GaugeFamily(
        "engram_catalog_connected",
        "1 while the shared catalog (etcd) answers, 0 while it does not "
        "(reads serve what is loaded, writes answer UNAVAILABLE).");
    AddSample(&connected, health.connected ? 1 : 0);
    families.push_back(std::move(connected));
    prometheus::MetricFamily since = GaugeFamily(
        "engram_catalog_state_seconds",
        "Seconds since engram_catalog_connected last changed (how long the "
        "catalog has been unreachable, while it is 0).");
    AddSample(&since, health.since == absl::InfinitePast()
                          ? 0
                          : absl::ToDoubleSeconds(absl::Now() - health.since));
    families.push_back(std::move(since));
  }
  for (prometheus::MetricFamily& f : ProcessFamilies()) {
    families.push_back(std::move(f));
  }
  return families;
}

}  // namespace engram::core
