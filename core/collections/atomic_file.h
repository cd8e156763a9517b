// Crash-safe file writing and plain file reading for resident data files.
//
// WriteFileAtomically writes to a temporary name in the target's directory
// (".<name>.tmp-<pid>-<n>"), fsyncs the file, renames it over the target and
// fsyncs the directory, so after a crash the target holds either the old
// contents or the complete new ones, never a prefix. On any error the
// temporary file is removed and the target is untouched. StagedFile does the
// same for a file written piece by piece over time.
//
// Thread-safety: the functions are reentrant; concurrent writers to the same
// target each produce a complete file and the last rename wins.
#ifndef ENGRAM_CORE_COLLECTIONS_ATOMIC_FILE_H_
#define ENGRAM_CORE_COLLECTIONS_ATOMIC_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace engram::collections {

// Where a writer puts its bytes: sequential appends, and one rewrite of
// earlier bytes (a header whose checksum is known only at the end).
class FileSink {
 public:
  virtual ~FileSink() = default;
  virtual absl::Status Write(const void* data, size_t size) = 0;
  virtual absl::Status WriteAt(uint64_t offset, const void* data,
                               size_t size) = 0;
  absl::Status Write(absl::string_view bytes) {
    return Write(bytes.data(), bytes.size());
  }
};

// Runs `write` on a sink over a temporary file, then publishes it at `path`
// as described above. The writer's own error is returned as is; I/O errors
// carry the errno-mapped code (absl::ErrnoToStatus) and name the path and
// the step that failed.
absl::Status WriteFileAtomically(
    const std::string& path,
    const std::function<absl::Status(FileSink&)>& write);

// A file written at any offsets over any length of time, under the
// temporary name WriteFileAtomically uses, and published at its target by
// Publish() with the same steps (fsync, rename, fsync of the directory):
// nothing is at the target until then. An unpublished file's temporary is
// removed when the object goes; one a crash leaves behind is recognised by
// IsAtomicWriteLeftover. Move-only; one thread at a time.
class StagedFile {
 public:
  // Creates the temporary for target `path` (the errors of open, naming the
  // temporary).
  static absl::StatusOr<StagedFile> Create(const std::string& path);

  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&& other) noexcept;
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

  // Sets aside `bytes` of disk space for the file without changing its size,
  // so that a disk too full for the whole file refuses it now rather than
  // part-way (RESOURCE_EXHAUSTED for ENOSPC). OK where the file system has
  // no way to do so: the writes then meet the full disk.
  absl::Status Reserve(uint64_t bytes);
  absl::Status WriteAt(uint64_t offset, const void* data, size_t size);
  // Starts writing [offset, offset + size) back to the device without
  // waiting for it (Linux; elsewhere nothing), so that Publish's fsync finds
  // little left to write. Best effort: Publish reports any write error.
  void StartWriteback(uint64_t offset, uint64_t size);
  // Makes the file durable at path(). On error the temporary is removed and
  // the target is untouched; either way the object is finished.
  absl::Status Publish();

 private:
  StagedFile(std::string path, std::string temp, int fd)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(fd) {}
  // Closes and removes the temporary (not published).
  void Discard();

  std::string path_;
  std::string temp_;
  int fd_ = -1;
};

// Removes `path` and fsyncs its directory, so the removal survives a crash.
// OK when the file does not exist.
absl::Status RemoveFileDurably(const std::string& path);

// Renames `from` over `to` (both in one directory, whose fsync makes the
// rename survive a crash).
absl::Status RenameFileDurably(const std::string& from, const std::string& to);

// Creates directory `dir` when it is missing (its parent must exist) and
// fsyncs the parent, so the new entry survives a crash.
absl::Status EnsureDirectory(const std::string& dir);

// Whether `name` is a temporary file WriteFileAtomically left behind when
// the process died mid-write (".<target>.tmp-<pid>-<n>").
bool IsAtomicWriteLeftover(absl::string_view name);

// A read-only mapping of a whole file (FileReader::Map), unmapped when the
// last handle goes. Thread-safety: immutable.
class FileMapping {
 public:
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping();

  // The file's bytes; page-aligned.
  const char* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  friend class FileReader;
  FileMapping(const char* data, uint64_t size) : data_(data), size_(size) {}

  const char* const data_;
  const uint64_t size_;
};

// A file opened for sequential reading with its size known up front.
// Move-only; closes on destruction. Not thread-safe, except that ReadAt and
// AdviseSequential may be called from several threads at once
// (they neither use nor move position()), as long as no Read, move or
// destruction runs meanwhile.
class FileReader {
 public:
  // NOT_FOUND when the file does not exist; other open errors mapped from
  // errno. Every message names the path.
  static absl::StatusOr<FileReader> Open(const std::string& path);

  FileReader(FileReader&& other) noexcept;
  FileReader& operator=(FileReader&& other) noexcept;
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;
  ~FileReader();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  uint64_t position() const { return position_; }
  // Reads exactly `size` bytes; DATA_LOSS naming the path when the file
  // ends first (it shrank after Open).
  absl::Status Read(void* data, size_t size);
  // Reads exactly `size` bytes from byte `offset` (pread), leaving
  // position() alone; errors as Read.
  absl::Status ReadAt(uint64_t offset, void* data, size_t size) const;
  // Advice only, errors ignored: the whole file will be read once, in
  // order, so the kernel reads further ahead.
  void AdviseSequential() const;
  // Whether the file lies on a file system of this machine's own disks or
  // memory (ext4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS), as opposed to
  // a network or FUSE file system. Only such a file may be mapped for
  // long: there, a mapped file that another process deletes stays readable
  // through the mapping, while on NFS another client's delete turns the
  // next page fault into SIGBUS.
  bool OnLocalFileSystem() const;
  // Maps the whole file read-only (shared: the pages are the page cache's,
  // nothing is copied). The mapping lives as long as the returned handle,
  // independently of this reader. The file must not shrink while mapped (a
  // read past its new end is SIGBUS): map only files nothing rewrites.
  // Errors from mmap, naming the path; INVALID_ARGUMENT for an empty file.
  absl::StatusOr<std::shared_ptr<const FileMapping>> Map() const;

 private:
  FileReader(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t position_ = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_ATOMIC_FILE_H_
