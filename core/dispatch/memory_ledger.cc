#include "core/dispatch/memory_ledger.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::dispatch {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

uint64_t SatAdd(uint64_t a, uint64_t b) { return b > kMax - a ? kMax : a + b; }

}  // namespace

DeviceMemoryLedger::Reservation::Reservation(Reservation&& other) noexcept
    : ledger_(std::exchange(other.ledger_, nullptr)),
      id_(std::exchange(other.id_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceMemoryLedger::Reservation& DeviceMemoryLedger::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    ledger_ = std::exchange(other.ledger_, nullptr);
    id_ = std::exchange(other.id_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceMemoryLedger::Reservation::ShrinkTo(uint64_t bytes) {
  if (ledger_ == nullptr || bytes >= bytes_) return;
  if (bytes == 0) {
    Release();
    return;
  }
  ledger_->Resize(id_, bytes);
  bytes_ = bytes;
}

void DeviceMemoryLedger::Reservation::Release() {
  if (ledger_ == nullptr) return;
  ledger_->Resize(id_, 0);
  ledger_ = nullptr;
  id_ = 0;
  bytes_ = 0;
}

DeviceMemoryLedger::Reservation::OnDevice
DeviceMemoryLedger::Reservation::Launch(uint64_t bytes) const {
  if (ledger_ == nullptr) return OnDevice(nullptr, 0);
  ledger_->Launch(id_, std::min(bytes, bytes_));
  return OnDevice(ledger_, id_);
}

void DeviceMemoryLedger::Reservation::Land(DeviceMemoryLedger* ledger,
                                           uint64_t id) {
  if (ledger != nullptr) ledger->Land(id);
}

absl::Status DeviceMemoryLedger::Validate(const Options& options) {
  absl::Status status =
      Validate(options, [](absl::string_view member) -> std::string {
        return std::string(member);
      });
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat("device memory ledger option ", status.message()));
}

absl::Status DeviceMemoryLedger::Validate(const Options& o, OptionNamer name) {
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(name("max_wait"), o.max_wait,
                                            absl::ZeroDuration(), false,
                                            absl::Seconds(1)));
  return CheckRealRange(name("safety_margin"), o.safety_margin, 0, true, 1);
}

absl::StatusOr<std::unique_ptr<DeviceMemoryLedger>> DeviceMemoryLedger::Create(
    const Options& options) {
  ENGRAM_RETURN_IF_ERROR(Validate(options));
  return std::unique_ptr<DeviceMemoryLedger>(new DeviceMemoryLedger(options));
}

absl::StatusOr<DeviceMemoryInfo> DeviceMemoryLedger::Observe(
    const MemoryPressureMonitor::Probe& probe) {
  uint64_t epoch_at_start = 0;
  bool on_device_at_start = false;
  {
    absl::MutexLock lock(&mu_);
    epoch_at_start = epoch_;
    for (const auto& [id, entry] : entries_) {
      if (entry.on_device_bytes != 0) on_device_at_start = true;
    }
  }
  absl::StatusOr<DeviceMemoryInfo> info = probe();
  if (!info.ok() || info->total_bytes == 0 ||
      info->free_bytes > info->total_bytes) {
    return info;  // the monitor counts and reports it
  }
  absl::MutexLock lock(&mu_);
  // On the device for the whole probe: launched before it began and not
  // landed since (a landing resets the epoch, a relaunch advances it).
  uint64_t on_device = 0;
  for (const auto& [id, entry] : entries_) {
    if (entry.on_device_bytes != 0 && entry.launch_epoch <= epoch_at_start) {
      on_device = SatAdd(on_device, entry.on_device_bytes);
    }
  }
  const uint64_t estimate = static_cast<uint64_t>(
      static_cast<double>(SatAdd(info->free_bytes, on_device)) *
      options_.safety_margin);
  // Nothing on the device at the start and no launch since: nothing of ours
  // was on the device during the probe, so the reading is exact.
  if (!on_device_at_start && epoch_ == epoch_at_start) {
    has_quiet_reading_ = true;
    quiet_capacity_ = estimate;
  }
  capacity_ =
      has_quiet_reading_ ? std::min(estimate, quiet_capacity_) : estimate;
  has_reading_ = true;
  return info;
}

uint64_t DeviceMemoryLedger::AvailableLocked() const {
  if (!has_reading_) return kMax;
  return capacity_ > reserved_ ? capacity_ - reserved_ : 0;
}

absl::StatusOr<DeviceMemoryLedger::Reservation> DeviceMemoryLedger::Reserve(
    uint64_t min_bytes, uint64_t want_bytes) {
  want_bytes = std::max(want_bytes, min_bytes);
  absl::MutexLock lock(&mu_);
  bool fits = AvailableLocked() >= min_bytes;
  const bool never = has_reading_ && min_bytes > capacity_;
  if (!fits && !never && options_.max_wait > absl::ZeroDuration()) {
    ++counts_.waits;
    auto room = [this, min_bytes] {
      mu_.AssertReaderHeld();  // Await evaluates it under mu_
      return AvailableLocked() >= min_bytes;
    };
    fits = mu_.AwaitWithTimeout(absl::Condition(&room), options_.max_wait);
  }
  if (!fits) {
    ++counts_.refusals;
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU memory ledger: the request needs ", min_bytes, " bytes, ",
        AvailableLocked(), " of ", capacity_, " are available",
        never ? " (it can never fit)"
              : absl::StrCat(" after waiting ",
                             absl::FormatDuration(options_.max_wait))));
  }
  const uint64_t granted = std::min(want_bytes, AvailableLocked());
  const uint64_t id = next_id_++;
  entries_[id].bytes = granted;
  reserved_ = SatAdd(reserved_, granted);
  counts_.peak_reserved_bytes =
      std::max(counts_.peak_reserved_bytes, reserved_);
  ++counts_.granted;
  if (granted < want_bytes) ++counts_.shrunk;
  return Reservation(this, id, granted);
}

void DeviceMemoryLedger::Resize(uint64_t id, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end()) return;
  reserved_ -= it->second.bytes - std::min(bytes, it->second.bytes);
  if (bytes == 0) {
    entries_.erase(it);
  } else {
    it->second.bytes = std::min(bytes, it->second.bytes);
    it->second.on_device_bytes =
        std::min(it->second.on_device_bytes, it->second.bytes);
  }
}

void DeviceMemoryLedger::Launch(uint64_t id, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.on_device_bytes = bytes;
  it->second.launch_epoch = ++epoch_;
}

void DeviceMemoryLedger::Land(uint64_t id) {
  absl::MutexLock lock(&mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.on_device_bytes = 0;
  it->second.launch_epoch = 0;
}

DeviceMemoryLedger::Stats DeviceMemoryLedger::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s = counts_;
  s.reserved_bytes = reserved_;
  s.reservations = entries_.size();
  s.capacity_bytes = capacity_;
  s.has_reading = has_reading_;
  s.quiet_capacity_bytes = quiet_capacity_;
  return s;
}

}  // namespace engram::dispatch
