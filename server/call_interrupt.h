// CallInterrupt: a gRPC call's cancellation and deadline, and the drain's
// stop time, as the engine's base::Interrupt, so that the work of a call
// the client abandoned, or that a drain has to end, stops at the next chunk
// or hop (base/interrupt.h).
//
// Thread-safety: Check() may be called from any thread while the call is
// unanswered (CallbackServerContext::IsCancelled() is safe to call
// concurrently).
#ifndef ENGRAM_SERVER_CALL_INTERRUPT_H_
#define ENGRAM_SERVER_CALL_INTERRUPT_H_

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/interrupt.h"
#include "grpcpp/server_context.h"
#include "server/admission.h"
#include "server/rpc_call.h"

namespace engram::server {

class CallInterrupt final : public base::Interrupt {
 public:
  // Nothing is owned; both must outlive this.
  CallInterrupt(grpc::CallbackServerContext* context,
                const Admission* admission)
      : context_(context),
        admission_(admission),
        deadline_(absl::FromChrono(context->deadline())) {}

  // The drain first: its UNAVAILABLE is the answer a retry policy acts on.
  // Then the deadline: gRPC cancels a call whose deadline passed, and the
  // deadline is the more telling reason.
  absl::Status Check() const override {
    if (admission_->stopping()) return DrainStop();
    if (absl::Now() > deadline_) {
      return absl::DeadlineExceededError("the call's deadline passed");
    }
    if (context_->IsCancelled()) {
      return absl::CancelledError("the client cancelled the call");
    }
    return absl::OkStatus();
  }

 private:
  grpc::CallbackServerContext* const context_;
  const Admission* const admission_;
  const absl::Time deadline_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_CALL_INTERRUPT_H_
