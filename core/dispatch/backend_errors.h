// How a compute backend's errors are told apart, so that the dispatch engine
// reacts to each kind the right way: a caller's mistake is returned as it is,
// device out-of-memory shrinks the chunk, a device failure feeds the circuit
// breaker, and a sticky device error (the CUDA context is unusable until the
// process restarts) opens the breaker for good.
//
// Backends mark OOM and sticky errors with a payload so that the codes
// themselves stay the ones docs/api.md assigns (RESOURCE_EXHAUSTED, INTERNAL).
#ifndef ENGRAM_CORE_DISPATCH_BACKEND_ERRORS_H_
#define ENGRAM_CORE_DISPATCH_BACKEND_ERRORS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace engram::dispatch {

enum class BackendErrorClass {
  kNone,         // OK
  kClient,       // bad input, cancellation or deadline: not the device's fault
  kOutOfMemory,  // the device could not allocate; a smaller chunk may fit
  kSticky,       // the device is unusable for the rest of the process
  kDevice,       // any other device or driver failure
};

const char* BackendErrorClassName(BackendErrorClass c);

// RESOURCE_EXHAUSTED marked as device OOM.
absl::Status DeviceOutOfMemoryError(absl::string_view message);
// INTERNAL marked as a sticky device error.
absl::Status StickyDeviceError(absl::string_view message);

// INVALID_ARGUMENT, OUT_OF_RANGE, CANCELLED and DEADLINE_EXCEEDED are kClient;
// RESOURCE_EXHAUSTED is kOutOfMemory whether marked or not (a backend has no
// other reason to run out of a resource); a sticky mark wins over the code;
// everything else is kDevice.
BackendErrorClass ClassifyBackendError(const absl::Status& status);

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_BACKEND_ERRORS_H_
