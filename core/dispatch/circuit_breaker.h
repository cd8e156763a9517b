// The circuit breaker that guards the GPU.
//
// CLOSED: calls go through; outcomes enter a sliding window (the last
// `window_calls` calls no older than `window_duration`). The breaker trips to
// OPEN when the window holds at least `min_calls` calls and their failure rate
// reaches `failure_rate_threshold`, or after `consecutive_failures_to_open`
// failures in a row. Tripping clears the window, so old failures can never
// lock the GPU out once it has recovered.
// OPEN: every call is rejected (the caller uses the CPU) for a wait that
// starts at `open_initial` and grows by `open_backoff` with each consecutive
// trip, capped at `open_max`; the trip count returns to zero once the breaker
// has stayed CLOSED for `healthy_reset`.
// HALF_OPEN (after the wait): `half_open_probes` calls are let through as
// probes, the others are rejected. All probes succeeding closes the breaker;
// one failing re-opens it with the next, longer wait.
// FORCED_OPEN: a sticky device error (backend_errors.h) or ForceOpen() opens
// the breaker for the rest of the process.
//
// Client errors (bad input, cancellation) and device OOM are neither
// successes nor failures: they say nothing about the device's health.
//
// Thread-safety: every method may be called concurrently. One mutex guards
// the state; listeners are called after it is released, so a listener may
// call back into the breaker (transitions from different threads may then be
// reported in either order; each carries its time).
#ifndef ENGRAM_CORE_DISPATCH_CIRCUIT_BREAKER_H_
#define ENGRAM_CORE_DISPATCH_CIRCUIT_BREAKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/option_check.h"

namespace engram::dispatch {

enum class BreakerState { kClosed, kOpen, kHalfOpen, kForcedOpen };
// "closed", "open", "half_open", "forced_open".
const char* BreakerStateName(BreakerState state);

// One state change, as reported to listeners.
struct BreakerTransition {
  BreakerState from = BreakerState::kClosed;
  BreakerState to = BreakerState::kClosed;
  std::string reason;
  absl::Time at;
  // For a transition to OPEN: how long it stays open.
  absl::Duration open_for = absl::ZeroDuration();
};

// A consistent view of the breaker at one instant.
struct BreakerSnapshot {
  // The effective state: an OPEN breaker whose wait is over reads HALF_OPEN.
  BreakerState state = BreakerState::kClosed;
  uint32_t consecutive_failures = 0;
  uint32_t window_calls = 0;     // calls in the sliding window
  uint32_t window_failures = 0;  // failures among them
  uint32_t consecutive_trips = 0;
  // OPEN: time left before probes are admitted; FORCED_OPEN: infinite;
  // otherwise zero.
  absl::Duration retry_after = absl::ZeroDuration();
  std::string last_error;  // the last failure's message; empty when none
  uint32_t probes_in_flight = 0;
  uint32_t probe_successes = 0;
};

class CircuitBreaker {
 public:
  // Durations' upper bound, 1e7 s, is kMaxOptionSeconds (option_check.h).
  struct Options {
    uint32_t window_calls = 20;                          // [1, 100000]
    uint32_t min_calls = 10;                             // [1, window_calls]
    double failure_rate_threshold = 0.5;                 // (0, 1]
    absl::Duration window_duration = absl::Seconds(60);  // (0, 1e7 s]
    uint32_t consecutive_failures_to_open = 5;           // [1, 100000]
    absl::Duration open_initial = absl::Seconds(1);      // (0, 1e7 s]
    absl::Duration open_max = absl::Seconds(60);      // [open_initial, 1e7 s]
    double open_backoff = 2.0;                        // [1, 16]
    absl::Duration healthy_reset = absl::Minutes(5);  // (0, 1e7 s]
    uint32_t half_open_probes = 3;                    // [1, 1000]
    Clock* clock = nullptr;  // borrowed; nullptr means Clock::Real()
  };

  enum class Admission { kAllowed, kProbe, kRejected };

  // The right to make one GPU call, returned by Admit(). Hand it back through
  // Record() with the call's outcome; a permit destroyed unrecorded counts as
  // neither success nor failure (a HALF_OPEN probe slot is freed). Move-only;
  // must not outlive the breaker. Not thread-safe itself.
  class Permit {
   public:
    Permit() = default;
    Permit(Permit&& other) noexcept;
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit();

    Admission admission() const { return admission_; }
    bool allowed() const { return admission_ != Admission::kRejected; }
    bool probe() const { return admission_ == Admission::kProbe; }

   private:
    friend class CircuitBreaker;
    Permit(CircuitBreaker* breaker, Admission admission, uint64_t generation)
        : breaker_(breaker), admission_(admission), generation_(generation) {}

    CircuitBreaker* breaker_ = nullptr;  // null once recorded or released
    Admission admission_ = Admission::kRejected;
    uint64_t generation_ = 0;
  };

  using Listener = std::function<void(const BreakerTransition&)>;

  // OK, or INVALID_ARGUMENT naming the first option outside its range: the
  // one place these ranges are checked (Create() calls it, and so does the
  // hybrid config for the Options it embeds). `name` spells an option in the
  // message; without it the message reads "circuit breaker option MEMBER".
  static absl::Status Validate(const Options& options);
  static absl::Status Validate(const Options& options, OptionNamer name);

  // INVALID_ARGUMENT for an option outside its range (Validate).
  static absl::StatusOr<std::unique_ptr<CircuitBreaker>> Create(
      const Options& options);

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Asks to make a GPU call now. Moves OPEN to HALF_OPEN once the wait is
  // over. When `at_admission` is not null it receives the breaker's state at
  // the instant of the answer (same lock), so a caller never pairs an answer
  // with a state read at another time. Never blocks beyond the breaker's own
  // mutex.
  Permit Admit(BreakerSnapshot* at_admission = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_, listeners_mu_);

  // Reports the outcome of the call `permit` allowed and consumes the permit
  // (later calls with it do nothing). An outcome from before the last state
  // change is ignored, except that a sticky error always forces the breaker
  // open, whatever the permit.
  void Record(Permit& permit, const absl::Status& outcome)
      ABSL_LOCKS_EXCLUDED(mu_, listeners_mu_);

  // Gives a permit back unused: neither success nor failure.
  void Release(Permit& permit) ABSL_LOCKS_EXCLUDED(mu_);

  // Opens the breaker for good (FORCED_OPEN), e.g. when the device is lost.
  void ForceOpen(absl::string_view reason)
      ABSL_LOCKS_EXCLUDED(mu_, listeners_mu_);

  BreakerSnapshot Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);

  // Adds a listener called on every transition, outside the breaker's lock.
  // The listener must be thread-safe and must outlive the breaker.
  void AddListener(Listener listener) ABSL_LOCKS_EXCLUDED(listeners_mu_);

  const Options& options() const { return options_; }

 private:
  struct Outcome {
    absl::Time at;
    bool failure = false;
  };

  explicit CircuitBreaker(const Options& options);

  void TransitionLocked(BreakerState to, std::string reason, absl::Time now,
                        std::vector<BreakerTransition>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TripLocked(std::string reason, absl::Time now,
                  std::vector<BreakerTransition>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseLocked(Permit& permit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  BreakerSnapshot SnapshotLocked(absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Failures and calls in the window, dropping outcomes older than it.
  void CountWindowLocked(absl::Time now, uint32_t* calls,
                         uint32_t* failures) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Notify(const std::vector<BreakerTransition>& transitions)
      ABSL_LOCKS_EXCLUDED(listeners_mu_);

  const Options options_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  BreakerState state_ ABSL_GUARDED_BY(mu_) = BreakerState::kClosed;
  // Bumped on every transition; a permit from an older generation is stale.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Outcome> ring_ ABSL_GUARDED_BY(mu_);  // window_calls slots
  size_t ring_next_ ABSL_GUARDED_BY(mu_) = 0;
  size_t ring_size_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t consecutive_trips_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time closed_since_ ABSL_GUARDED_BY(mu_);
  absl::Time open_until_ ABSL_GUARDED_BY(mu_);
  uint32_t probes_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t probe_successes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);

  absl::Mutex listeners_mu_;
  std::vector<Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CIRCUIT_BREAKER_H_
