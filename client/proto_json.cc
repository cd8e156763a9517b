#include "client/proto_json.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"

namespace engram::client {

absl::Status ParseProtoJson(absl::string_view json,
                            google::protobuf::Message* message) {
  message->Clear();
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message);
  if (status.ok()) return absl::OkStatus();
  const std::string reason(status.message().data(), status.message().size());
  // The lines after the first only echo the input under a caret, which
  // means nothing once the message is one line of a longer error.
  absl::string_view first_line = reason;
  first_line = first_line.substr(0, first_line.find('\n'));
  first_line = absl::StripAsciiWhitespace(first_line);
  // Errors at the root carry an empty path ("": Root element must be ...").
  absl::ConsumePrefix(&first_line, ": ");
  return absl::InvalidArgumentError(absl::StrCat(
      "not a ", message->GetDescriptor()->name(), " in JSON: ", first_line));
}

}  // namespace engram::client
