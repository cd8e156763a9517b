#include "server/request_context.h"

#include <algorithm>
#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"

namespace engram::server {

std::string NewRequestId() {
  // One generator per thread: no lock on the request path.
  thread_local absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

bool IsAcceptableRequestId(absl::string_view id) {
  return !id.empty() && id.size() <= kMaxRequestIdLength &&
         std::all_of(id.begin(), id.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7e; });
}

RequestIds RequestIdsFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  RequestIds ids;
  if (auto it = metadata.find(kRequestIdKey); it != metadata.end()) {
    const absl::string_view id(it->second.data(), it->second.size());
    if (IsAcceptableRequestId(id)) ids.request_id = std::string(id);
  }
  if (ids.request_id.empty()) ids.request_id = NewRequestId();
  if (auto it = metadata.find(kTraceparentKey); it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (core::IsValidTraceparent(value)) ids.traceparent = std::string(value);
  }
  return ids;
}

}  // namespace engram::server
