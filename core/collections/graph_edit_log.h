// The edit log of a resident graph: the updates (UpdateGraph) it has had
// since its graph file was written, as the data directory stores them
// (data_dir.h). An update is appended and fsynced before it becomes
// visible; a merge writes a new graph file and a new log that keeps only
// the updates the file does not hold.
//
// Layout: the magic "ENGRMGLG", then records, each a u32 length, the u32
// CRC32C of the payload and the payload (little-endian), a serialized
// message of manifest.proto: the first record a GraphEditLogHeader, every
// later one a GraphEdit. Shared mode stores each update in a file of the
// same format holding one GraphEdit.
//
// A crash in the middle of an append leaves a torn last record: the file
// ends inside it, or it fails its checksum with nothing but zero bytes
// after it (a file system may extend a file before its data lands). That
// update was never acknowledged (an update answers after the fsync), so
// reading drops it and the writer cuts it off. Damage anywhere else is
// DATA_LOSS naming the file and the offset.
//
// Thread-safety: the functions are reentrant; a GraphEditLogWriter is used
// by one thread at a time.
#ifndef ENGRAM_CORE_COLLECTIONS_GRAPH_EDIT_LOG_H_
#define ENGRAM_CORE_COLLECTIONS_GRAPH_EDIT_LOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/collections/graph_changes.h"
#include "core/collections/manifest.pb.h"

namespace engram::collections {

inline constexpr absl::string_view kGraphEditLogMagic = "ENGRMGLG";

// An update as stored, and back (DATA_LOSS naming `where` when its
// parallel lists differ in length).
storage::GraphEdit EncodeGraphEdit(const GraphEdit& edit, uint64_t version,
                                   absl::string_view idempotency_key);
absl::StatusOr<GraphEdit> DecodeGraphEdit(const storage::GraphEdit& stored,
                                          absl::string_view where);

struct GraphEditLogContents {
  storage::GraphEditLogHeader header;
  std::vector<storage::GraphEdit> edits;
  // The bytes up to the end of the last whole record: the file's size,
  // unless a torn record follows.
  uint64_t valid_bytes = 0;
  bool torn = false;
};

// Reads the log at `path`: NOT_FOUND when there is none; DATA_LOSS for a
// bad magic, a missing or malformed header, or damage before the last
// record (see the file comment).
absl::StatusOr<GraphEditLogContents> ReadGraphEditLog(const std::string& path);

// Writes a whole log at `path` atomically (atomic_file.h), replacing one
// there: `header`, then `edits`. A shared-mode update's file is a log whose
// header names the graph and holds one edit.
absl::Status WriteGraphEditLog(const std::string& path,
                               const storage::GraphEditLogHeader& header,
                               absl::Span<const storage::GraphEdit> edits);

// A log kept open for appending.
class GraphEditLogWriter {
 public:
  // Opens the log at `path` and cuts it to `valid_bytes` (a torn record
  // ReadGraphEditLog found is removed, durably); kWholeFile keeps it whole.
  // Errors of open and ftruncate, naming the path.
  static constexpr uint64_t kWholeFile = ~uint64_t{0};
  static absl::StatusOr<std::unique_ptr<GraphEditLogWriter>> Open(
      const std::string& path, uint64_t valid_bytes = kWholeFile);
  GraphEditLogWriter(const GraphEditLogWriter&) = delete;
  GraphEditLogWriter& operator=(const GraphEditLogWriter&) = delete;
  ~GraphEditLogWriter();

  // Appends one record and waits until it is on the disk (fdatasync). On
  // error the file is cut back to its size before, so a failed append
  // leaves no partial record for a later one to follow; the error is
  // errno's, naming the path.
  absl::Status Append(const storage::GraphEdit& edit);

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

 private:
  GraphEditLogWriter(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  const int fd_;
  uint64_t size_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_GRAPH_EDIT_LOG_H_
