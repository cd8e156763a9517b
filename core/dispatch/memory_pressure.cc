#include "core/dispatch/memory_pressure.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace engram::core {

absl::StatusOr<std::unique_ptr<MemoryPressureMonitor>>
MemoryPressureMonitor::Create(const Options& options, Probe probe) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory pressure monitor option ", what));
  };
  if (!(options.safety_margin > 0.0 && options.safety_margin <= 1.0)) {
    return bad("safety_margin must be in (0, 1]");
  }
  if (!(options.high_pressure_fraction > 0.0 &&
        options.high_pressure_fraction <= 1.0)) {
    return bad("high_pressure_fraction must be in (0, 1]");
  }
  if (options.stale_after <= absl::ZeroDuration()) {
    return bad("stale_after must be positive");
  }
  if (options.refresh_interval < absl::ZeroDuration() ||
      options.refresh_interval > options.stale_after) {
    return bad("refresh_interval must be in [0, stale_after]");
  }
  if (!probe) return bad("probe must be set");
  return std::unique_ptr<MemoryPressureMonitor>(
      new MemoryPressureMonitor(options, std::move(probe)));
}

MemoryPressureMonitor::MemoryPressureMonitor(const Options& options,
                                             Probe probe)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      probe_(std::move(probe)) {}

MemoryAssessment MemoryPressureMonitor::Assess() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    if (probing_ || now - last_attempt_at_ < options_.refresh_interval) {
      return AssessLocked(now);
    }
    probing_ = true;
    last_attempt_at_ = now;
  }
  // The probe may take a while (a driver call); nobody waits on mu_ for it.
  absl::StatusOr<DeviceMemoryInfo> info = probe_();
  if (info.ok() &&
      (info->total_bytes == 0 || info->free_bytes > info->total_bytes)) {
    info = absl::InternalError(absl::StrCat("implausible memory reading: free ",
                                            info->free_bytes, " of ",
                                            info->total_bytes, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  probing_ = false;
  const absl::Time now = clock_->Now();
  if (info.ok()) {
    has_reading_ = true;
    reading_ = *info;
    reading_at_ = now;
    last_probe_error_.clear();
  } else {
    ++probe_failures_;
    last_probe_error_ = std::string(info.status().message());
  }
  return AssessLocked(now);
}

MemoryAssessment MemoryPressureMonitor::Cached() const {
  absl::MutexLock lock(&mu_);
  return AssessLocked(clock_->Now());
}

MemoryAssessment MemoryPressureMonitor::AssessLocked(absl::Time now) const {
  MemoryAssessment a;
  a.probe_failures = probe_failures_;
  a.last_probe_error = last_probe_error_;
  if (!has_reading_) return a;
  a.has_reading = true;
  a.reading = reading_;
  a.age = now - reading_at_;
  a.stale = a.age > options_.stale_after;
  a.used_fraction = 1.0 - static_cast<double>(reading_.free_bytes) /
                              static_cast<double>(reading_.total_bytes);
  a.high_pressure =
      a.stale || a.used_fraction >= options_.high_pressure_fraction;
  a.budget_bytes = static_cast<uint64_t>(
      static_cast<double>(reading_.free_bytes) * options_.safety_margin);
  return a;
}

}  // namespace engram::core
