#include "core/collections/atomic_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

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

// Appends at a running position; WriteAt rewrites earlier bytes.
class StagedFileSink final : public FileSink {
 public:
  explicit StagedFileSink(StagedFile& file) : file_(file) {}

  absl::Status Write(const void* data, size_t size) override {
    absl::Status status = file_.WriteAt(position_, data, size);
    if (status.ok()) position_ += size;
    return status;
  }

  absl::Status WriteAt(uint64_t offset, const void* data,
                       size_t size) override {
    return file_.WriteAt(offset, data, size);
  }

 private:
  StagedFile& file_;
  uint64_t position_ = 0;
};

}  // namespace

absl::StatusOr<StagedFile> StagedFile::Create(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  const auto [dir, base] = SplitPath(path);
  if (base.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", path, ": not a file name"));
  }
  std::string temp =
      absl::StrCat(dir, "/.", base, ".tmp-", ::getpid(), "-",
                   counter.fetch_add(1, std::memory_order_relaxed));
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(errno, "cannot create", temp);
  return StagedFile(path, std::move(temp), fd);
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_(std::move(other.temp_)),
      fd_(std::exchange(other.fd_, -1)) {}

StagedFile& StagedFile::operator=(StagedFile&& other) noexcept {
  if (this != &other) {
    Discard();
    path_ = std::move(other.path_);
    temp_ = std::move(other.temp_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

StagedFile::~StagedFile() { Discard(); }

void StagedFile::Discard() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
}

absl::Status StagedFile::Reserve(uint64_t bytes) {
#if defined(__linux__)
  if (bytes == 0) return absl::OkStatus();
  while (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes)) !=
         0) {
    if (errno == EINTR) continue;
    if (errno == EOPNOTSUPP || errno == ENOSYS) return absl::OkStatus();
    return IoError(errno, "cannot reserve disk space for", temp_);
  }
#else
  (void)bytes;
#endif
  return absl::OkStatus();
}

absl::Status StagedFile::WriteAt(uint64_t offset, const void* data,
                                 size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, "cannot write", temp_);
    }
    p += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void StagedFile::StartWriteback(uint64_t offset, uint64_t size) {
#if defined(__linux__)
  // Errors are not lost: a failed writeback fails the fsync in Publish.
  ::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(size),
                    SYNC_FILE_RANGE_WRITE);
#else
  (void)offset;
  (void)size;
#endif
}

absl::Status StagedFile::Publish() {
  absl::Status status;
  if (::fsync(fd_) != 0) status = IoError(errno, "cannot fsync", temp_);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0 && status.ok()) {
    status = IoError(errno, "cannot close", temp_);
  }
  if (status.ok() && ::rename(temp_.c_str(), path_.c_str()) != 0) {
    status =
        IoError(errno, absl::StrCat("cannot rename ", temp_, " to"), path_);
  }
  if (!status.ok()) {
    ::unlink(temp_.c_str());
    return status;
  }
  // The rename is durable only once the directory entry is.
  return SyncDirectory(SplitPath(path_).first);
}

absl::Status WriteFileAtomically(
    const std::string& path,
    const std::function<absl::Status(FileSink&)>& write) {
  absl::StatusOr<StagedFile> file = StagedFile::Create(path);
  if (!file.ok()) return file.status();
  StagedFileSink sink(*file);
  ENGRAM_RETURN_IF_ERROR(write(sink));
  return file->Publish();
}

absl::Status RemoveFileDurably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return IoError(errno, "cannot remove", path);
  }
  return SyncDirectory(SplitPath(path).first);
}

absl::Status RenameFileDurably(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return IoError(errno, absl::StrCat("cannot rename ", from, " to"), to);
  }
  return SyncDirectory(SplitPath(to).first);
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

bool FileReader::OnLocalFileSystem() const {
  struct statfs fs;
  if (::fstatfs(fd_, &fs) != 0) return false;
  // An allow-list, so that a network file system this list does not know
  // is never mapped. The magic numbers are linux/magic.h's.
  switch (static_cast<uint64_t>(fs.f_type)) {
    case 0xEF53:      // ext2, ext3, ext4
    case 0x58465342:  // XFS
    case 0x9123683E:  // Btrfs
    case 0x01021994:  // tmpfs
    case 0x794C7630:  // overlayfs (a container's root)
    case 0x2FC12FC1:  // ZFS
    case 0xF2F52010:  // F2FS
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::shared_ptr<const FileMapping>> FileReader::Map() const {
  if (size_ == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot map ", path_, ": the file is empty"));
  }
  void* data = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ,
                      MAP_SHARED, fd_, 0);
  if (data == MAP_FAILED) return IoError(errno, "cannot map", path_);
  return std::shared_ptr<const FileMapping>(
      new FileMapping(static_cast<const char*>(data), size_));
}

FileMapping::~FileMapping() {
  ::munmap(const_cast<char*>(data_), static_cast<size_t>(size_));
}

}  // namespace engram::collections
