// The identity of one call, for logs: the caller's request id (the
// `x-request-id` metadata entry, or a fresh one) and its W3C trace context
// (`traceparent`), read from gRPC metadata here so that core/ only ever sees
// strings (core::ScopedLogContext).
#ifndef ENGRAM_SERVER_REQUEST_CONTEXT_H_
#define ENGRAM_SERVER_REQUEST_CONTEXT_H_

#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/support/string_ref.h"

namespace engram::server {

inline constexpr char kRequestIdKey[] = "x-request-id";
inline constexpr char kTraceparentKey[] = "traceparent";
// Longer caller ids are replaced by a generated one rather than logged.
inline constexpr size_t kMaxRequestIdLength = 128;

struct RequestIds {
  std::string request_id;   // never empty
  std::string traceparent;  // empty unless the caller sent a valid one
};

// The caller's x-request-id when it is 1..kMaxRequestIdLength printable
// ASCII characters, else NewRequestId(); the traceparent when it is well
// formed (core::IsValidTraceparent), else empty.
RequestIds RequestIdsFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// 16 random lower-case hex digits. Thread-safe.
std::string NewRequestId();

// True for 1..kMaxRequestIdLength characters in 0x20..0x7E.
bool IsAcceptableRequestId(absl::string_view id);

}  // namespace engram::server

#endif  // ENGRAM_SERVER_REQUEST_CONTEXT_H_
