#include "core/dispatch/backend_errors.h"

#include "absl/strings/cord.h"

namespace engram::dispatch {
namespace {

constexpr absl::string_view kOomPayload = "type.engram.dev/device-oom";
constexpr absl::string_view kStickyPayload = "type.engram.dev/device-sticky";

}  // namespace

const char* BackendErrorClassName(BackendErrorClass c) {
  switch (c) {
    case BackendErrorClass::kNone:
      return "none";
    case BackendErrorClass::kClient:
      return "client";
    case BackendErrorClass::kOutOfMemory:
      return "out_of_memory";
    case BackendErrorClass::kSticky:
      return "sticky";
    case BackendErrorClass::kDevice:
      return "device";
  }
  return "unknown";
}

absl::Status DeviceOutOfMemoryError(absl::string_view message) {
  absl::Status status = absl::ResourceExhaustedError(message);
  status.SetPayload(kOomPayload, absl::Cord("1"));
  return status;
}

absl::Status StickyDeviceError(absl::string_view message) {
  absl::Status status = absl::InternalError(message);
  status.SetPayload(kStickyPayload, absl::Cord("1"));
  return status;
}

BackendErrorClass ClassifyBackendError(const absl::Status& status) {
  if (status.ok()) return BackendErrorClass::kNone;
  if (status.GetPayload(kStickyPayload).has_value()) {
    return BackendErrorClass::kSticky;
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      return BackendErrorClass::kClient;
    case absl::StatusCode::kResourceExhausted:
      return BackendErrorClass::kOutOfMemory;
    default:
      return BackendErrorClass::kDevice;
  }
}

}  // namespace engram::dispatch
