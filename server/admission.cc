#include "server/admission.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/time/clock.h"

namespace engram::server {
namespace {

// Weight of the newest call in the mean hold time: about the last 20 calls
// count, so the hint follows a change of load within a fraction of a second.
constexpr double kHoldWeight = 0.05;

}  // namespace

absl::StatusOr<std::unique_ptr<Admission>> Admission::Create(
    const Options& options) {
  if (options.max_requests < 1 || options.max_requests > (1 << 20)) {
    return absl::InvalidArgumentError(
        "admission max_requests must be in [1, 1048576]");
  }
  if (options.max_bytes < 1) {
    return absl::InvalidArgumentError("admission max_bytes must be >= 1");
  }
  if (options.min_retry_after < absl::ZeroDuration() ||
      options.max_retry_after < options.min_retry_after) {
    return absl::InvalidArgumentError(
        "admission retry hint bounds must satisfy 0 <= min <= max");
  }
  return std::unique_ptr<Admission>(new Admission(options));
}

Admission::Ticket Admission::Admit(uint64_t cost) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  Ticket ticket;
  ticket.cost = cost;
  const bool fits =
      requests_ == 0 ||
      (requests_ < options_.max_requests &&
       cost <= options_.max_bytes - std::min(bytes_, options_.max_bytes));
  if (!fits) {
    ticket.verdict = Verdict::kOverloaded;
    ticket.retry_after = RetryAfterLocked();
    return ticket;
  }
  ticket.verdict = Verdict::kAdmitted;
  ticket.admitted_at = now;
  ++requests_;
  bytes_ += cost;
  return ticket;
}

void Admission::Release(const Ticket& ticket) {
  const double held = absl::ToDoubleSeconds(absl::Now() - ticket.admitted_at);
  absl::MutexLock lock(&mu_);
  --requests_;
  bytes_ -= std::min(bytes_, ticket.cost);
  mean_hold_seconds_ =
      mean_hold_seconds_ == 0.0
          ? held
          : mean_hold_seconds_ + kHoldWeight * (held - mean_hold_seconds_);
}

absl::Duration Admission::RetryAfterLocked() const {
  return std::clamp(absl::Seconds(mean_hold_seconds_), options_.min_retry_after,
                    options_.max_retry_after);
}

absl::Duration Admission::RetryAfter() const {
  absl::MutexLock lock(&mu_);
  return RetryAfterLocked();
}

bool Admission::Arrive(Call* call) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  last_activity_ = now;
  if (draining_) return false;
  arrived_.insert(call);
  return true;
}

void Admission::Leave(Call* call) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  last_activity_ = now;
  arrived_.erase(call);
}

void Admission::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool Admission::WaitForDrain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return arrived_.empty();
  };
  return mu_.AwaitWithDeadline(absl::Condition(&drained), deadline);
}

void Admission::StopCalls() {
  absl::MutexLock lock(&mu_);
  stopping_.store(true, std::memory_order_release);
  for (Call* call : arrived_) call->StopForDrain();
}

void Admission::WaitForQuiet(absl::Duration quiet, absl::Time deadline) {
  while (true) {
    absl::Time quiet_at;
    {
      absl::MutexLock lock(&mu_);
      quiet_at = last_activity_ + quiet;
    }
    const absl::Time now = absl::Now();
    if (now >= quiet_at || now >= deadline) return;
    absl::SleepFor(std::min(quiet_at, deadline) - now);
  }
}

bool Admission::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

int Admission::arrived_calls() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(arrived_.size());
}

int Admission::inflight_requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

uint64_t Admission::inflight_bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace engram::server
