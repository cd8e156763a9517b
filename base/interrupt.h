// Interrupt: lets a long computation stop between units of work when its
// caller no longer wants the result (the client cancelled, the deadline
// passed), so that an abandoned request stops using workers.
//
// Computations ask Check() before each unit they start (a chunk of queries
// in the dispatch engine, a hop in spreading) and never in the middle of
// one, so a unit's cost bounds how late a stop is seen. The kernels and the
// engine only see this interface; the server implements it over the call's
// context (server/call_interrupt.h).
//
// Thread-safety: Check() is called from worker threads, possibly several at
// once; implementations must be thread-safe and cheap (an atomic load and a
// clock read).
#ifndef ENGRAM_BASE_INTERRUPT_H_
#define ENGRAM_BASE_INTERRUPT_H_

#include "absl/status/status.h"

namespace engram::base {

class Interrupt {
 public:
  virtual ~Interrupt();

  // OK to go on; otherwise why to stop (CANCELLED, DEADLINE_EXCEEDED), which
  // the computation returns as it is.
  virtual absl::Status Check() const = 0;
};

// OK when `interrupt` is null.
inline absl::Status CheckInterrupt(const Interrupt* interrupt) {
  return interrupt == nullptr ? absl::OkStatus() : interrupt->Check();
}

}  // namespace engram::base

#endif  // ENGRAM_BASE_INTERRUPT_H_
