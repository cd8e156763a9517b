#include "client/file_io.h"

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace engram::client {
namespace {

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

absl::Status ErrnoStatus(int error, absl::string_view action,
                         const std::string& path) {
  // std::error_code formats the reason thread-safely, unlike std::strerror.
  std::string message = absl::StrCat(
      "cannot ", action, " '", path,
      "': ", std::error_code(error, std::generic_category()).message());
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return ErrnoStatus(errno, "open", path);
  std::string contents;
  char buffer[1 << 16];
  while (true) {
    const std::size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    contents.append(buffer, n);
    if (n < sizeof(buffer)) break;
  }
  // Reading a directory "opens" but fails here with EISDIR.
  if (std::ferror(file.get())) return ErrnoStatus(errno, "read", path);
  return contents;
}

absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents) {
  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (file == nullptr) return ErrnoStatus(errno, "create", path);
  if (std::fwrite(contents.data(), 1, contents.size(), file.get()) !=
      contents.size()) {
    return ErrnoStatus(errno, "write", path);
  }
  // fclose flushes; a full disk may only show up here.
  if (std::fclose(file.release()) != 0) {
    return ErrnoStatus(errno, "write", path);
  }
  return absl::OkStatus();
}

}  // namespace engram::client
