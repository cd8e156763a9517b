// Time source for the dispatch engine, injectable so that the breaker's
// waits, the performance model's windows and the memory monitor's staleness
// can be tested without sleeping.
//
// Clock::Real() is monotonic (std::chrono::steady_clock mapped onto
// absl::Time): its absl::Time values measure intervals, they are not wall-clock
// dates. ManualClock only moves when told to.
#ifndef ENGRAM_CORE_DISPATCH_CLOCK_H_
#define ENGRAM_CORE_DISPATCH_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace engram::dispatch {

// Thread-safety: implementations must allow concurrent calls from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;
  // Blocks the caller for `d` as this clock measures time. The simulated
  // device backend "spends" its modelled cost through this, so with a
  // ManualClock a modelled millisecond costs no real time.
  virtual void SleepFor(absl::Duration d) = 0;

  // The process-wide monotonic clock; never null, never destroyed.
  static Clock* Real();
};

// A clock that moves only through Advance(), SetTime() and SleepFor() (which
// advances instead of blocking). Thread-safe; never goes backwards unless
// SetTime() is told to.
class ManualClock final : public Clock {
 public:
  // Starts well after absl::UnixEpoch() so that "now minus a window" never
  // underflows into a special value in tests.
  explicit ManualClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24));

  absl::Time Now() const override ABSL_LOCKS_EXCLUDED(mu_);
  void SleepFor(absl::Duration d) override ABSL_LOCKS_EXCLUDED(mu_);

  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);
  void SetTime(absl::Time t) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CLOCK_H_
