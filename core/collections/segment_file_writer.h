// SegmentFileWriter: a data directory's segment file (snapshot.h's format,
// as WriteSegmentSnapshot writes it) written while an upload's rows arrive,
// so that its commit has only the header and an fsync left to do.
//
// The upload declares its row count, so every row's id and vector have a
// known place in the file and are written there as they come. A thread of
// the writer's own does the writing: the caller queues rows (Write) and goes
// back to receiving the next chunk while the thread writes them, extends the
// payload's CRC32C and starts their writeback to the device
// (StagedFile::StartWriteback), so that by the commit most of the file is on
// disk. The ids and the vectors are separate regions of the file, each
// checksummed as a stream of its own; Finish joins the two with
// Crc32cCombine.
//
// Until Finish the file has a temporary name (StagedFile): a crash leaves a
// leftover that start-up removes, never a file under a segment's name, and
// destroying an unfinished writer removes it.
//
// Thread-safety: the public methods are called by one thread at a time (the
// upload's). The writer thread reads the queued rows until Finish returns or
// the writer is destroyed, so they must not change meanwhile.
#ifndef ENGRAM_CORE_COLLECTIONS_SEGMENT_FILE_WRITER_H_
#define ENGRAM_CORE_COLLECTIONS_SEGMENT_FILE_WRITER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/collections/atomic_file.h"
#include "core/collections/snapshot.h"

namespace engram::collections {

class SegmentFileWriter {
 public:
  struct Options {
    // Where the finished file is published.
    std::string path;
    // The collection's name, stored in the file.
    std::string name;
    uint64_t rows = 0;       // >= 1
    uint32_t dimension = 0;  // >= 1
    bool with_ids = false;
  };

  // Creates the temporary file, sets its disk space aside (so that a disk
  // too full for the whole file refuses it here) and starts the thread.
  // INVALID_ARGUMENT for zero rows or dimension; the errors of the file
  // system, naming the file (RESOURCE_EXHAUSTED for a full disk).
  static absl::StatusOr<std::unique_ptr<SegmentFileWriter>> Create(
      const Options& options);

  // Stops the thread after the rows it is writing and removes the file,
  // unless Finish published it.
  ~SegmentFileWriter();

  SegmentFileWriter(const SegmentFileWriter&) = delete;
  SegmentFileWriter& operator=(const SegmentFileWriter&) = delete;

  // Queues rows [first_row, first_row + rows): `vectors` (rows x dimension)
  // and, with ids, `ids` (else null). Rows come in order, each once
  // (INTERNAL otherwise); FAILED_PRECONDITION after Finish. Returns the
  // first error any earlier write met, and from then on nothing more is
  // written.
  absl::Status Write(uint64_t first_row, const float* vectors,
                     const uint64_t* ids, uint64_t rows)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Waits for the queued rows, then writes the header, fsyncs the file and
  // publishes it at its path (StagedFile::Publish); returns the payload's
  // CRC32C. FAILED_PRECONDITION when not every declared row was queued, or
  // when called twice; the first write error otherwise. The file is gone on
  // error.
  absl::StatusOr<uint32_t> Finish() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Rows queued by Write.
  struct Rows {
    uint64_t first_row = 0;
    const float* vectors = nullptr;
    const uint64_t* ids = nullptr;
    uint64_t rows = 0;
  };

  // One region of the file written front to back: where the next byte
  // goes, how far writeback was started, and the CRC32C so far.
  struct Stream {
    uint64_t next = 0;
    uint64_t writeback_from = 0;
    uint32_t crc = 0;
  };

  SegmentFileWriter(const Options& options, SegmentFileLayout layout,
                    StagedFile file);

  // The writer thread: writes what Write queues until Stop.
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // On the writer thread: one queued piece.
  absl::Status WriteRows(const Rows& rows);
  // Appends `size` bytes to `stream`, extending its checksum, and starts
  // writing back the whole pages written.
  absl::Status Append(Stream& stream, const void* data, uint64_t size);
  // Ends the thread once the queue is written (`drop`: once the piece being
  // written is) and joins it. Idempotent.
  void Stop(bool drop) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  const SegmentFileLayout layout_;
  // The file and the streams belong to the writer thread while it runs,
  // then to Finish (after the join), which takes the file.
  StagedFile file_;
  Stream ids_;
  Stream vectors_;
  // The caller's alone.
  uint64_t rows_queued_ = 0;
  bool finished_ = false;

  absl::Mutex mu_;
  std::deque<Rows> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool drop_ ABSL_GUARDED_BY(mu_) = false;
  // The first error a write met.
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_SEGMENT_FILE_WRITER_H_
