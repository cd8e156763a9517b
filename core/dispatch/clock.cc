#include "core/dispatch/clock.h"

#include <chrono>

namespace engram::dispatch {
namespace {

class SteadyClock final : public Clock {
 public:
  absl::Time Now() const override {
    // steady_clock's epoch is arbitrary; only differences are meaningful.
    const auto since_start =
        std::chrono::steady_clock::now().time_since_epoch();
    return absl::UnixEpoch() + absl::FromChrono(since_start);
  }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

}  // namespace

Clock* Clock::Real() {
  static Clock* const clock = new SteadyClock();
  return clock;
}

ManualClock::ManualClock(absl::Time start) : now_(start) {}

absl::Time ManualClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void ManualClock::SleepFor(absl::Duration d) { Advance(d); }

void ManualClock::Advance(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void ManualClock::SetTime(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace engram::dispatch
