// Whole-file reads and writes for the client's file formats (.npy, edge
// lists), with failures reported as absl::Status naming the path.
#ifndef ENGRAM_CLIENT_FILE_IO_H_
#define ENGRAM_CLIENT_FILE_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace engram::client {

// The bytes of the file at `path`. NOT_FOUND when it does not exist,
// PERMISSION_DENIED when it may not be read, otherwise INTERNAL with the
// system's reason. Thread-safe.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Replaces the file at `path` with `contents`. An error names the path and the
// system's reason. Thread-safe for distinct paths.
absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_FILE_IO_H_
