// The one place where absl::Status becomes grpc::Status.
#ifndef ENGRAM_SERVER_STATUS_CONVERSION_H_
#define ENGRAM_SERVER_STATUS_CONVERSION_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace engram::server {

// Keeps the code (absl and gRPC share the canonical numbering) and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Canonical upper-case name of a gRPC code, e.g. "INVALID_ARGUMENT".
const char* GrpcCodeName(grpc::StatusCode code);

// Number of canonical codes (OK .. UNAUTHENTICATED).
inline constexpr int kNumGrpcCodes = 17;

}  // namespace engram::server

#endif  // ENGRAM_SERVER_STATUS_CONVERSION_H_
