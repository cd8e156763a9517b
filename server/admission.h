// Admission: the bound on the work a server holds at once, and the state of
// a drain.
//
// A call is admitted while fewer than max_requests calls are in flight and
// their cost (the bytes of their payloads and of their responses, as
// estimated before any allocation) stays within max_bytes; beyond either it
// is refused at once, with a hint of when to retry, instead of queueing
// without limit. Together with the request size limits (--max_*), this bounds
// the memory the service's calls hold, whatever the load. A call alone is
// always admitted: its size is already bounded by those limits, and a bound
// smaller than one call must not refuse it forever.
//
// The retry hint is the recent mean time an admitted call held its place
// (an exponentially weighted mean), clamped to [min_retry_after,
// max_retry_after]: about when the next place frees up.
//
// Draining: once StartDraining() is called every call is refused; callers
// wait for the admitted ones to finish with WaitForDrain().
//
// Thread-safety: every method may be called concurrently.
#ifndef ENGRAM_SERVER_ADMISSION_H_
#define ENGRAM_SERVER_ADMISSION_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace engram::server {

class Admission {
 public:
  struct Options {
    // Calls admitted and not yet answered, queued ones included. [1, 2^20]
    int max_requests = 256;
    // Their summed cost in bytes (payload + response). >= 1
    uint64_t max_bytes = uint64_t{4} << 30;
    // Bounds of the retry hint given with a refusal; min <= max.
    absl::Duration min_retry_after = absl::Milliseconds(5);
    absl::Duration max_retry_after = absl::Seconds(2);
  };

  // INVALID_ARGUMENT naming the option that is out of range.
  static absl::StatusOr<std::unique_ptr<Admission>> Create(
      const Options& options);

  enum class Verdict { kAdmitted, kDraining, kOverloaded };
  struct Ticket {
    Verdict verdict = Verdict::kDraining;
    uint64_t cost = 0;
    absl::Time admitted_at;
    absl::Duration retry_after;  // set when overloaded
  };

  // Admits a call costing `cost` bytes or says why not. Every admitted
  // ticket must be Release()d exactly once.
  Ticket Admit(uint64_t cost) ABSL_LOCKS_EXCLUDED(mu_);
  void Release(const Ticket& ticket) ABSL_LOCKS_EXCLUDED(mu_);

  // From now on every call is refused (kDraining).
  void StartDraining() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no admitted call is left or `deadline` passes; true when
  // none is left.
  bool WaitForDrain(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no call has arrived for `quiet`, or `deadline` passes.
  void WaitForQuiet(absl::Duration quiet, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The retry hint an overloaded call gets now (the clamped mean hold
  // time), for refusals decided elsewhere, such as a full search queue.
  absl::Duration RetryAfter() const ABSL_LOCKS_EXCLUDED(mu_);

  int inflight_requests() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t inflight_bytes() const ABSL_LOCKS_EXCLUDED(mu_);
  const Options& options() const { return options_; }

 private:
  explicit Admission(const Options& options) : options_(options) {}
  absl::Duration RetryAfterLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_arrival_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Mean seconds an admitted call held its place; 0 until one finished.
  double mean_hold_seconds_ ABSL_GUARDED_BY(mu_) = 0.0;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_ADMISSION_H_
