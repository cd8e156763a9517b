#include "core/collections/segment_file_writer.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/collections/checksum.h"

namespace engram::collections {
namespace {

// Bytes per write and checksum step: small enough that a step's bytes are
// still in the cache when they are written, large enough that the calls do
// not count.
constexpr uint64_t kStepBytes = uint64_t{4} << 20;
// Writeback is started on whole pages only: a page written back half full
// would be written again when the rest of it arrives.
constexpr uint64_t kPageBytes = 4096;

}  // namespace

absl::StatusOr<std::unique_ptr<SegmentFileWriter>> SegmentFileWriter::Create(
    const Options& options) {
  if (options.rows == 0 || options.dimension == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment file ", options.path, ": ", options.rows,
                     " rows x ", options.dimension, " is empty"));
  }
  ENGRAM_ASSIGN_OR_RETURN(StagedFile file, StagedFile::Create(options.path));
  SegmentFileLayout layout = LayOutSegmentFile(
      options.name, options.rows, options.dimension, options.with_ids);
  ENGRAM_RETURN_IF_ERROR(file.Reserve(layout.file_bytes));
  ENGRAM_RETURN_IF_ERROR(file.WriteAt(layout.prefix_offset,
                                      layout.payload_prefix.data(),
                                      layout.payload_prefix.size()));
  std::unique_ptr<SegmentFileWriter> writer(
      new SegmentFileWriter(options, std::move(layout), std::move(file)));
  try {
    writer->thread_ = std::thread(&SegmentFileWriter::Run, writer.get());
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("segment file ", options.path,
                     ": cannot start its writer: ", e.what()));
  }
  return writer;
}

SegmentFileWriter::SegmentFileWriter(const Options& options,
                                     SegmentFileLayout layout, StagedFile file)
    : options_(options), layout_(std::move(layout)), file_(std::move(file)) {
  // The payload starts with the prefix, then the ids: the ids' checksum
  // goes on from the prefix's, so it covers everything before the vectors.
  ids_.next = ids_.writeback_from = layout_.ids_offset;
  ids_.crc = Crc32c(layout_.payload_prefix);
  vectors_.next = vectors_.writeback_from = layout_.vectors_offset;
}

SegmentFileWriter::~SegmentFileWriter() { Stop(/*drop=*/true); }

absl::Status SegmentFileWriter::Write(uint64_t first_row, const float* vectors,
                                      const uint64_t* ids, uint64_t rows) {
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment file ", options_.path, " was already finished"));
  }
  if (first_row != rows_queued_ || rows > options_.rows - rows_queued_ ||
      (ids != nullptr) != options_.with_ids || vectors == nullptr) {
    return absl::InternalError(
        absl::StrCat("segment file ", options_.path, ": rows [", first_row,
                     ", ", first_row + rows, ") written out of order, after ",
                     rows_queued_, " of ", options_.rows,
                     " rows (ids: ", ids != nullptr ? "yes" : "no", ")"));
  }
  absl::MutexLock lock(&mu_);
  if (!error_.ok()) return error_;
  if (rows == 0) return absl::OkStatus();
  queue_.push_back(Rows{first_row, vectors, ids, rows});
  rows_queued_ += rows;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> SegmentFileWriter::Finish() {
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment file ", options_.path, " was already finished"));
  }
  finished_ = true;
  Stop(/*drop=*/false);
  // Taken, so that on any error below the local removes the file.
  StagedFile file = std::move(file_);
  {
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
  }
  if (rows_queued_ != options_.rows) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment file ", options_.path, ": ", rows_queued_,
                     " of its ", options_.rows, " rows were written"));
  }
  const uint32_t crc = Crc32cCombine(
      ids_.crc, vectors_.crc, layout_.file_bytes - layout_.vectors_offset);
  const std::string header = EncodeSegmentFileHeader(
      options_.name, options_.rows, options_.dimension, options_.with_ids, crc);
  ENGRAM_RETURN_IF_ERROR(file.WriteAt(0, header.data(), header.size()));
  ENGRAM_RETURN_IF_ERROR(file.Publish());
  return crc;
}

void SegmentFileWriter::Run() {
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  };
  while (true) {
    Rows rows;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&has_work));
      // After an error, or when dropped, the rest of the queue is not written.
      if (!error_.ok() || drop_) queue_.clear();
      if (queue_.empty()) return;  // stopping, and nothing left
      rows = queue_.front();
      queue_.pop_front();
    }
    absl::Status written = WriteRows(rows);
    if (!written.ok()) {
      absl::MutexLock lock(&mu_);
      if (error_.ok()) error_ = std::move(written);
    }
  }
}

absl::Status SegmentFileWriter::WriteRows(const Rows& rows) {
  if (rows.ids != nullptr) {
    ENGRAM_RETURN_IF_ERROR(
        Append(ids_, rows.ids, rows.rows * sizeof(uint64_t)));
  }
  return Append(vectors_, rows.vectors,
                rows.rows * uint64_t{options_.dimension} * sizeof(float));
}

absl::Status SegmentFileWriter::Append(Stream& stream, const void* data,
                                       uint64_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t n = static_cast<size_t>(std::min(size, kStepBytes));
    stream.crc = Crc32c(p, n, stream.crc);
    ENGRAM_RETURN_IF_ERROR(file_.WriteAt(stream.next, p, n));
    p += n;
    size -= n;
    stream.next += n;
    const uint64_t whole = stream.next / kPageBytes * kPageBytes;
    if (whole > stream.writeback_from) {
      file_.StartWriteback(stream.writeback_from,
                           whole - stream.writeback_from);
      stream.writeback_from = whole;
    }
  }
  return absl::OkStatus();
}

void SegmentFileWriter::Stop(bool drop) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    drop_ = drop_ || drop;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace engram::collections
