// Conversion between gRPC statuses and absl::Status for the client, and the
// canonical upper-case code names the CLI prints and the server's metrics use.
#ifndef ENGRAM_CLIENT_STATUS_CONVERSION_H_
#define ENGRAM_CLIENT_STATUS_CONVERSION_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace engram::client {

// The same code (gRPC and absl share the canonical numbering) and message.
// A code outside the canonical range becomes UNKNOWN, as gRPC itself treats
// unrecognised codes. Thread-safe.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The canonical gRPC name of `code`, e.g. "OK", "INVALID_ARGUMENT",
// "RESOURCE_EXHAUSTED"; "UNKNOWN" for a value outside the canonical range.
// Thread-safe.
std::string CodeName(absl::StatusCode code);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_STATUS_CONVERSION_H_
