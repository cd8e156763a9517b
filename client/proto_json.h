// Protobuf JSON text into a message, with the parser's complaint as an
// absl::Status: the input format of the labels files and of
// `engram-cli collection search --filter`.
#ifndef ENGRAM_CLIENT_PROTO_JSON_H_
#define ENGRAM_CLIENT_PROTO_JSON_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace engram::client {

// Replaces `message` with the protobuf JSON object `json` (proto field names
// or their lowerCamelCase forms; 64-bit integers as numbers or strings).
// Returns INVALID_ARGUMENT with the parser's reason on one line, naming the
// field where it names one ("tags[0].integer: invalid value ..."), for
// malformed JSON, an unknown field, a value of the wrong type or anything but
// one object; `message` is then unspecified. Thread-safe for distinct
// messages.
absl::Status ParseProtoJson(absl::string_view json,
                            google::protobuf::Message* message);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_PROTO_JSON_H_
