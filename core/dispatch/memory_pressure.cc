#include "core/dispatch/memory_pressure.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::dispatch {

absl::Status MemoryPressureMonitor::Validate(const Options& options) {
  absl::Status status =
      Validate(options, [](absl::string_view member) -> std::string {
        return std::string(member);
      });
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat("memory pressure monitor option ", status.message()));
}

absl::Status MemoryPressureMonitor::Validate(const Options& o,
                                             OptionNamer name) {
  const absl::Duration zero = absl::ZeroDuration();
  ENGRAM_RETURN_IF_ERROR(
      CheckRealRange(name("safety_margin"), o.safety_margin, 0, true, 1));
  ENGRAM_RETURN_IF_ERROR(CheckRealRange(name("high_pressure_fraction"),
                                        o.high_pressure_fraction, 0, true, 1));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(name("stale_after"), o.stale_after,
                                            zero, true,
                                            absl::Seconds(kMaxOptionSeconds)));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(name("refresh_interval"),
                                            o.refresh_interval, zero, false,
                                            absl::Seconds(kMaxOptionSeconds)));
  return CheckOrder(o.refresh_interval <= o.stale_after,
                    name("refresh_interval"), name("stale_after"));
}

absl::StatusOr<std::unique_ptr<MemoryPressureMonitor>>
MemoryPressureMonitor::Create(const Options& options, Probe probe) {
  ENGRAM_RETURN_IF_ERROR(Validate(options));
  if (!probe) {
    return absl::InvalidArgumentError(
        "memory pressure monitor option probe must be set");
  }
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

}  // namespace engram::dispatch
