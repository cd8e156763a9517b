#include "client/cli/output.h"

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/status_conversion.h"
#include "google/protobuf/util/json_util.h"

namespace engram::client::cli {

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the response as JSON: ", status.ToString()));
  }
  return json;
}

std::string FormatError(const absl::Status& status) {
  return absl::StrCat("error: ", CodeName(status.code()), ": ",
                      status.message());
}

int PrintStatus(const absl::Status& status, std::ostream& out,
                std::ostream& err) {
  if (!status.ok()) {
    err << FormatError(status) << "\n";
    return kExitRpcError;
  }
  out << "{}\n";
  return kExitOk;
}

}  // namespace engram::client::cli
