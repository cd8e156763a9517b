// CallInterrupt: a gRPC call's cancellation and deadline as the engine's
// base::Interrupt, so that the work of a call the client abandoned stops
// at the next chunk or hop (base/interrupt.h).
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

namespace engram::server {

class CallInterrupt final : public base::Interrupt {
 public:
  // `context` is not owned and must outlive this.
  explicit CallInterrupt(grpc::CallbackServerContext* context)
      : context_(context), deadline_(absl::FromChrono(context->deadline())) {}

  // The deadline first: gRPC cancels a call whose deadline passed, and the
  // deadline is the more telling reason.
  absl::Status Check() const override {
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
  const absl::Time deadline_;
};

}  // namespace engram::server

#endif  // ENGRAM_SERVER_CALL_INTERRUPT_H_
