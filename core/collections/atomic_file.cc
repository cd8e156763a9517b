#include "core/collections/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace engram::collections {
namespace {

absl::Status IoError(int errno_value, absl::string_view step,
                     absl::string_view path) {
  return absl::ErrnoToStatus(errno_value, absl::StrCat(step, " ", path));
}

// Directory and base name of `path`; "." when it has no directory.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

absl::Status SyncDirectory(const std::string& dir) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return IoError(errno, "cannot open directory", dir);
  absl::Status status;
  if (::fsync(dir_fd) != 0) {
    status = IoError(errno, "cannot fsync directory", dir);
  }
  ::close(dir_fd);
  return status;
}

class FdSink final : public FileSink {
 public:
  FdSink(int fd, const std::string& path) : fd_(fd), path_(path) {}

  absl::Status Write(const void* data, size_t size) override {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError(errno, "cannot write", path_);
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status WriteAt(uint64_t offset, const void* data,
                       size_t size) override {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError(errno, "cannot write", path_);
      }
      p += n;
      offset += static_cast<uint64_t>(n);
      size -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

 private:
  const int fd_;
  const std::string& path_;
};

}  // namespace

absl::Status WriteFileAtomically(
    const std::string& path,
    const std::function<absl::Status(FileSink&)>& write) {
  static std::atomic<uint64_t> counter{0};
  const auto [dir, base] = SplitPath(path);
  if (base.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", path, ": not a file name"));
  }
  const std::string temp =
      absl::StrCat(dir, "/.", base, ".tmp-", ::getpid(), "-",
                   counter.fetch_add(1, std::memory_order_relaxed));
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(errno, "cannot create", temp);

  absl::Status status;
  {
    FdSink sink(fd, temp);
    status = write(sink);
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = IoError(errno, "cannot fsync", temp);
  }
  if (::close(fd) != 0 && status.ok()) {
    status = IoError(errno, "cannot close", temp);
  }
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = IoError(errno, absl::StrCat("cannot rename ", temp, " to"), path);
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  // The rename is durable only once the directory entry is.
  return SyncDirectory(dir);
}

absl::Status RemoveFileDurably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return IoError(errno, "cannot remove", path);
  }
  return SyncDirectory(SplitPath(path).first);
}

absl::Status EnsureDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno != EEXIST) return IoError(errno, "cannot create directory", dir);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
      return IoError(errno, "cannot stat", dir);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " exists and is not a directory"));
    }
    return absl::OkStatus();
  }
  return SyncDirectory(SplitPath(dir).first);
}

bool IsAtomicWriteLeftover(absl::string_view name) {
  return absl::StartsWith(name, ".") &&
         name.find(".tmp-") != absl::string_view::npos;
}

absl::StatusOr<FileReader> FileReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return IoError(e, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  return FileReader(path, fd, static_cast<uint64_t>(st.st_size));
}

FileReader::FileReader(FileReader&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      size_(other.size_),
      position_(other.position_) {}

FileReader& FileReader::operator=(FileReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    position_ = other.position_;
  }
  return *this;
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status FileReader::Read(void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, "cannot read", path_);
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path_, ": the file ends at byte ",
                                              position_, ", before the ", size,
                                              " more bytes expected"));
    }
    p += n;
    size -= static_cast<size_t>(n);
    position_ += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FileReader::ReadAt(uint64_t offset, void* data,
                                size_t size) const {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, "cannot read", path_);
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path_, ": the file ends at byte ",
                                              offset, ", before the ", size,
                                              " more bytes expected"));
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

void FileReader::AdviseSequential() const {
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

}  // namespace engram::collections
