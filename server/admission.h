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
// Draining: every call is counted from the moment its headers arrive
// (Arrive) until it is done (Leave), before it is admitted and whatever its
// kind, so that a drain sees a call whose request is still arriving. Once
// StartDraining() is called, Arrive refuses new calls; the server waits for
// the counted ones with WaitForDrain() and, at its stop time, StopCalls()
// ends the rest: interrupts then answer UNAVAILABLE (stopping()) and each
// call's StopForDrain() answers one that is waiting for its client.
//
// Thread-safety: every method may be called concurrently.
#ifndef ENGRAM_SERVER_ADMISSION_H_
#define ENGRAM_SERVER_ADMISSION_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
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

  enum class Verdict { kAdmitted, kOverloaded };
  struct Ticket {
    Verdict verdict = Verdict::kOverloaded;
    uint64_t cost = 0;
    absl::Time admitted_at;
    absl::Duration retry_after;  // set when overloaded
  };

  // Admits a call costing `cost` bytes or says why not. Every admitted
  // ticket must be Release()d exactly once.
  Ticket Admit(uint64_t cost) ABSL_LOCKS_EXCLUDED(mu_);
  void Release(const Ticket& ticket) ABSL_LOCKS_EXCLUDED(mu_);

  // A call in flight, as the drain sees it: implemented by every reactor.
  class Call {
   public:
    // The drain's stop time came and the call is not answered. Runs under
    // the admission's lock (so the call cannot be destroyed meanwhile): it
    // must not call back into Admission, and must not block. A call waiting
    // for its client (its request, the next message of a stream) answers
    // UNAVAILABLE now; one whose work runs leaves it to the work, which
    // sees stopping() at its next chunk or hop.
    virtual void StopForDrain() = 0;

   protected:
    ~Call() = default;
  };

  // Counts `call` in from the moment its headers arrive. False once
  // draining: the call is not counted and must be refused (UNAVAILABLE).
  bool Arrive(Call* call) ABSL_LOCKS_EXCLUDED(mu_);
  // The call is done (gRPC's OnDone): no longer counted. Waits while
  // StopCalls() runs, so a call outlives its StopForDrain().
  void Leave(Call* call) ABSL_LOCKS_EXCLUDED(mu_);

  // From now on Arrive refuses every call; the calls counted already are
  // admitted as before.
  void StartDraining() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no counted call is left or `deadline` passes; true when
  // none is left.
  bool WaitForDrain(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // The drain's stop time: stopping() turns true and every counted call's
  // StopForDrain() runs.
  void StopCalls() ABSL_LOCKS_EXCLUDED(mu_);
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  // Blocks until no call has arrived (counted or refused) or ended for
  // `quiet`, or `deadline` passes.
  void WaitForQuiet(absl::Duration quiet, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool draining() const ABSL_LOCKS_EXCLUDED(mu_);
  int arrived_calls() const ABSL_LOCKS_EXCLUDED(mu_);

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
  std::atomic<bool> stopping_{false};
  absl::flat_hash_set<Call*> arrived_ ABSL_GUARDED_BY(mu_);
  // The last Arrive or Leave.
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Mean seconds an admitted call held its place; 0 until one finished.
  double mean_hold_seconds_ ABSL_GUARDED_BY(mu_) = 0.0;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_ADMISSION_H_
