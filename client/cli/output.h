// The output contract every engram-cli command keeps, in one place so that
// the commands cannot drift apart: a successful command prints one JSON
// object (the response, proto field names, default values included) on
// stdout; a failure prints `error: <CODE_NAME>: <message>` on stderr. Exit
// codes are kExit* below.
#ifndef ENGRAM_CLIENT_CLI_OUTPUT_H_
#define ENGRAM_CLIENT_CLI_OUTPUT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace engram::client::cli {

// Success; for `health`, the server reported SERVING.
inline constexpr int kExitOk = 0;
// The RPC failed, or `health` got an answer other than SERVING. Container
// health checks read any non-zero code as unhealthy.
inline constexpr int kExitRpcError = 1;
// Bad usage or input: unknown subcommand or flag, invalid flag value,
// unreadable or malformed input file. Nothing was sent.
inline constexpr int kExitUsage = 2;

// The status for bad usage or input: INVALID_ARGUMENT with `message`. The
// commands report it with kExitUsage.
inline absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// `message` as one line of JSON: proto field names, fields at their default
// values included. INTERNAL when protobuf cannot print it.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// `error: <CODE_NAME>: <message>`.
std::string FormatError(const absl::Status& status);

// Prints the result of an RPC: the response as JSON on `out`, or the error
// on `err`. Returns kExitOk, or kExitRpcError when the call failed or the
// response cannot be printed.
template <typename Response>
int PrintResponse(const absl::StatusOr<Response>& response, std::ostream& out,
                  std::ostream& err) {
  if (!response.ok()) {
    err << FormatError(response.status()) << "\n";
    return kExitRpcError;
  }
  absl::StatusOr<std::string> json = ToJson(*response);
  if (!json.ok()) {
    err << FormatError(json.status()) << "\n";
    return kExitRpcError;
  }
  out << *json << "\n";
  return kExitOk;
}

// For calls that answer nothing but success: prints an empty JSON object on
// `out`, or the error on `err`. Returns kExitOk or kExitRpcError.
int PrintStatus(const absl::Status& status, std::ostream& out,
                std::ostream& err);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_OUTPUT_H_
