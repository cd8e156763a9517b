#include "core/dispatch/circuit_breaker.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "core/dispatch/backend_errors.h"

namespace engram::dispatch {

const char* BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
    case BreakerState::kForcedOpen:
      return "forced_open";
  }
  return "unknown";
}

CircuitBreaker::Permit::Permit(Permit&& other) noexcept
    : breaker_(std::exchange(other.breaker_, nullptr)),
      admission_(std::exchange(other.admission_, Admission::kRejected)),
      generation_(other.generation_) {}

CircuitBreaker::Permit& CircuitBreaker::Permit::operator=(
    Permit&& other) noexcept {
  if (this != &other) {
    if (breaker_ != nullptr) breaker_->Release(*this);
    breaker_ = std::exchange(other.breaker_, nullptr);
    admission_ = std::exchange(other.admission_, Admission::kRejected);
    generation_ = other.generation_;
  }
  return *this;
}

CircuitBreaker::Permit::~Permit() {
  if (breaker_ != nullptr) breaker_->Release(*this);
}

absl::Status CircuitBreaker::Validate(const Options& options) {
  absl::Status status =
      Validate(options, [](absl::string_view member) -> std::string {
        return std::string(member);
      });
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat("circuit breaker option ", status.message()));
}

absl::Status CircuitBreaker::Validate(const Options& o, OptionNamer name) {
  const absl::Duration max_wait = absl::Seconds(kMaxOptionSeconds);
  ENGRAM_RETURN_IF_ERROR(
      CheckIntRange(name("window_calls"), o.window_calls, 1, 100000));
  ENGRAM_RETURN_IF_ERROR(
      CheckIntRange(name("min_calls"), o.min_calls, 1, 100000));
  ENGRAM_RETURN_IF_ERROR(CheckOrder(o.min_calls <= o.window_calls,
                                    name("min_calls"), name("window_calls")));
  ENGRAM_RETURN_IF_ERROR(CheckRealRange(name("failure_rate_threshold"),
                                        o.failure_rate_threshold, 0, true, 1));
  ENGRAM_RETURN_IF_ERROR(
      CheckDurationRange(name("window_duration"), o.window_duration,
                         absl::ZeroDuration(), true, max_wait));
  ENGRAM_RETURN_IF_ERROR(CheckIntRange(name("consecutive_failures_to_open"),
                                       o.consecutive_failures_to_open, 1,
                                       100000));
  ENGRAM_RETURN_IF_ERROR(
      CheckDurationRange(name("open_initial"), o.open_initial,
                         absl::ZeroDuration(), true, max_wait));
  ENGRAM_RETURN_IF_ERROR(CheckDurationRange(
      name("open_max"), o.open_max, absl::ZeroDuration(), true, max_wait));
  ENGRAM_RETURN_IF_ERROR(CheckOrder(o.open_initial <= o.open_max,
                                    name("open_initial"), name("open_max")));
  ENGRAM_RETURN_IF_ERROR(
      CheckRealRange(name("open_backoff"), o.open_backoff, 1, false, 16));
  ENGRAM_RETURN_IF_ERROR(
      CheckDurationRange(name("healthy_reset"), o.healthy_reset,
                         absl::ZeroDuration(), true, max_wait));
  return CheckIntRange(name("half_open_probes"), o.half_open_probes, 1, 1000);
}

absl::StatusOr<std::unique_ptr<CircuitBreaker>> CircuitBreaker::Create(
    const Options& options) {
  ENGRAM_RETURN_IF_ERROR(Validate(options));
  return std::unique_ptr<CircuitBreaker>(new CircuitBreaker(options));
}

CircuitBreaker::CircuitBreaker(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {
  absl::MutexLock lock(&mu_);
  ring_.resize(options_.window_calls);
  closed_since_ = clock_->Now();
  open_until_ = closed_since_;
}

CircuitBreaker::Permit CircuitBreaker::Admit(BreakerSnapshot* at_admission) {
  std::vector<BreakerTransition> transitions;
  Permit permit;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    if (state_ == BreakerState::kOpen && now >= open_until_) {
      TransitionLocked(BreakerState::kHalfOpen, "open wait elapsed", now,
                       &transitions);
    }
    switch (state_) {
      case BreakerState::kClosed:
        permit = Permit(this, Admission::kAllowed, generation_);
        break;
      case BreakerState::kHalfOpen:
        if (probes_in_flight_ + probe_successes_ < options_.half_open_probes) {
          ++probes_in_flight_;
          permit = Permit(this, Admission::kProbe, generation_);
        }
        break;
      case BreakerState::kOpen:
      case BreakerState::kForcedOpen:
        break;
    }
    if (at_admission != nullptr) *at_admission = SnapshotLocked(now);
  }
  Notify(transitions);
  return permit;
}

void CircuitBreaker::Record(Permit& permit, const absl::Status& outcome) {
  const BackendErrorClass error_class = ClassifyBackendError(outcome);
  std::vector<BreakerTransition> transitions;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    if (error_class == BackendErrorClass::kSticky) {
      // A sticky error outlives every permit: the device is gone whatever
      // state the call was admitted in.
      ReleaseLocked(permit);
      last_error_ = std::string(outcome.message());
      if (state_ != BreakerState::kForcedOpen) {
        TransitionLocked(
            BreakerState::kForcedOpen,
            absl::StrCat("sticky device error: ", outcome.message()), now,
            &transitions);
      }
    } else if (permit.breaker_ == this) {
      const bool failure = error_class == BackendErrorClass::kDevice;
      const bool neutral = error_class == BackendErrorClass::kClient ||
                           error_class == BackendErrorClass::kOutOfMemory;
      const bool current = permit.generation_ == generation_;
      const bool probe = permit.probe();
      if (neutral || !current) {
        ReleaseLocked(permit);
        if (failure) last_error_ = std::string(outcome.message());
      } else {
        permit.breaker_ = nullptr;
        permit.admission_ = Admission::kRejected;
        if (failure) last_error_ = std::string(outcome.message());
        if (state_ == BreakerState::kClosed) {
          ring_[ring_next_] = Outcome{now, failure};
          ring_next_ = (ring_next_ + 1) % ring_.size();
          ring_size_ = std::min(ring_size_ + 1, ring_.size());
          consecutive_failures_ = failure ? consecutive_failures_ + 1 : 0;
          uint32_t calls = 0;
          uint32_t failures = 0;
          CountWindowLocked(now, &calls, &failures);
          const double rate =
              calls == 0 ? 0.0 : static_cast<double>(failures) / calls;
          if (consecutive_failures_ >= options_.consecutive_failures_to_open) {
            TripLocked(absl::StrCat(
                           consecutive_failures_,
                           " consecutive failures; last: ", outcome.message()),
                       now, &transitions);
          } else if (calls >= options_.min_calls &&
                     rate >= options_.failure_rate_threshold) {
            // Checked after successes too: a success that completes the
            // minimum number of calls can reveal a failure rate already
            // above the threshold.
            TripLocked(absl::StrFormat("failure rate %.2f over %d calls; "
                                       "last error: %s",
                                       rate, calls, last_error_),
                       now, &transitions);
          }
        } else if (state_ == BreakerState::kHalfOpen && probe) {
          --probes_in_flight_;
          if (failure) {
            ++consecutive_failures_;
            TripLocked(absl::StrCat("probe failed: ", outcome.message()), now,
                       &transitions);
          } else if (++probe_successes_ >= options_.half_open_probes) {
            TransitionLocked(
                BreakerState::kClosed,
                absl::StrCat(probe_successes_, " probes succeeded"), now,
                &transitions);
          }
        }
      }
    }
  }
  Notify(transitions);
}

void CircuitBreaker::Release(Permit& permit) {
  absl::MutexLock lock(&mu_);
  ReleaseLocked(permit);
}

void CircuitBreaker::ReleaseLocked(Permit& permit) {
  if (permit.breaker_ != this) return;
  if (permit.probe() && permit.generation_ == generation_ &&
      state_ == BreakerState::kHalfOpen) {
    --probes_in_flight_;
  }
  permit.breaker_ = nullptr;
  permit.admission_ = Admission::kRejected;
}

void CircuitBreaker::ForceOpen(absl::string_view reason) {
  std::vector<BreakerTransition> transitions;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != BreakerState::kForcedOpen) {
      last_error_ = std::string(reason);
      TransitionLocked(BreakerState::kForcedOpen, std::string(reason),
                       clock_->Now(), &transitions);
    }
  }
  Notify(transitions);
}

BreakerSnapshot CircuitBreaker::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return SnapshotLocked(clock_->Now());
}

BreakerSnapshot CircuitBreaker::SnapshotLocked(absl::Time now) const {
  BreakerSnapshot s;
  s.state = state_;
  s.consecutive_failures = consecutive_failures_;
  s.consecutive_trips = consecutive_trips_;
  s.last_error = last_error_;
  s.probes_in_flight = probes_in_flight_;
  s.probe_successes = probe_successes_;
  CountWindowLocked(now, &s.window_calls, &s.window_failures);
  switch (state_) {
    case BreakerState::kOpen:
      if (now >= open_until_) {
        s.state = BreakerState::kHalfOpen;
        s.probes_in_flight = 0;
        s.probe_successes = 0;
      } else {
        s.retry_after = open_until_ - now;
      }
      break;
    case BreakerState::kForcedOpen:
      s.retry_after = absl::InfiniteDuration();
      break;
    case BreakerState::kClosed:
      if (now - closed_since_ >= options_.healthy_reset) {
        s.consecutive_trips = 0;
      }
      break;
    case BreakerState::kHalfOpen:
      break;
  }
  return s;
}

void CircuitBreaker::AddListener(Listener listener) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.push_back(std::move(listener));
}

void CircuitBreaker::TransitionLocked(BreakerState to, std::string reason,
                                      absl::Time now,
                                      std::vector<BreakerTransition>* out) {
  BreakerTransition t;
  t.from = state_;
  t.to = to;
  t.reason = std::move(reason);
  t.at = now;
  state_ = to;
  ++generation_;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  if (to == BreakerState::kClosed) {
    consecutive_failures_ = 0;
    closed_since_ = now;
  }
  if (to == BreakerState::kOpen) t.open_for = open_until_ - now;
  out->push_back(std::move(t));
}

void CircuitBreaker::TripLocked(std::string reason, absl::Time now,
                                std::vector<BreakerTransition>* out) {
  if (state_ == BreakerState::kClosed &&
      now - closed_since_ >= options_.healthy_reset) {
    consecutive_trips_ = 0;
  }
  ++consecutive_trips_;
  const double factor = std::pow(options_.open_backoff,
                                 static_cast<double>(consecutive_trips_ - 1));
  // Duration multiplication saturates at InfiniteDuration, so even a factor
  // that overflows after many trips is capped correctly.
  const absl::Duration wait =
      std::min(options_.open_initial * factor, options_.open_max);
  open_until_ = now + wait;
  ring_size_ = 0;
  ring_next_ = 0;
  TransitionLocked(BreakerState::kOpen, std::move(reason), now, out);
}

void CircuitBreaker::CountWindowLocked(absl::Time now, uint32_t* calls,
                                       uint32_t* failures) const {
  *calls = 0;
  *failures = 0;
  const absl::Time oldest = now - options_.window_duration;
  for (size_t i = 0; i < ring_size_; ++i) {
    const Outcome& o = ring_[i];
    if (o.at < oldest) continue;
    ++*calls;
    if (o.failure) ++*failures;
  }
}

void CircuitBreaker::Notify(const std::vector<BreakerTransition>& transitions) {
  if (transitions.empty()) return;
  std::vector<Listener> listeners;
  {
    absl::MutexLock lock(&listeners_mu_);
    listeners = listeners_;
  }
  for (const BreakerTransition& t : transitions) {
    for (const Listener& listener : listeners) listener(t);
  }
}

}  // namespace engram::dispatch
