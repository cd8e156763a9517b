#include "core/collections/graph_edit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"

namespace engram::collections {
namespace {

constexpr size_t kRecordHeaderBytes = 8;  // length, CRC32C
// An update's lists hold at most 3 x kMaxGraphEditEntries entries of a few
// bytes each; a length beyond this is damage.
constexpr uint32_t kMaxRecordBytes = uint32_t{256} << 20;

std::string Frame(const google::protobuf::MessageLite& message) {
  std::string payload;
  message.SerializeToString(&payload);
  std::string out(kRecordHeaderBytes, '\0');
  StoreLittleEndian<uint32_t>(out.data(),
                              static_cast<uint32_t>(payload.size()));
  StoreLittleEndian<uint32_t>(out.data() + 4,
                              Crc32c(payload.data(), payload.size()));
  out += payload;
  return out;
}

bool AllZero(absl::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(),
                     [](char c) { return c == '\0'; });
}

absl::Status IoError(int errno_value, absl::string_view step,
                     absl::string_view path) {
  return absl::ErrnoToStatus(errno_value, absl::StrCat(step, " ", path));
}

}  // namespace

storage::GraphEdit EncodeGraphEdit(const GraphEdit& edit, uint64_t version,
                                   absl::string_view idempotency_key) {
  storage::GraphEdit out;
  out.set_version(version);
  out.set_add_nodes(edit.add_nodes);
  for (const GraphEdgeRef& e : edit.remove_edges) {
    out.add_remove_sources(e.source);
    out.add_remove_targets(e.target);
  }
  for (const GraphWeightedEdge& e : edit.set_weights) {
    out.add_set_sources(e.source);
    out.add_set_targets(e.target);
    out.add_set_weights(e.weight);
  }
  for (const GraphWeightedEdge& e : edit.add_edges) {
    out.add_add_sources(e.source);
    out.add_add_targets(e.target);
    out.add_add_weights(e.weight);
  }
  out.set_idempotency_key(std::string(idempotency_key));
  return out;
}

absl::StatusOr<GraphEdit> DecodeGraphEdit(const storage::GraphEdit& stored,
                                          absl::string_view where) {
  if (stored.remove_sources_size() != stored.remove_targets_size() ||
      stored.set_sources_size() != stored.set_targets_size() ||
      stored.set_sources_size() != stored.set_weights_size() ||
      stored.add_sources_size() != stored.add_targets_size() ||
      stored.add_sources_size() != stored.add_weights_size()) {
    return absl::DataLossError(absl::StrCat(
        where, ": an update of version ", stored.version(),
        " whose lists of sources, targets and weights differ in length"));
  }
  GraphEdit edit;
  edit.add_nodes = stored.add_nodes();
  edit.remove_edges.reserve(stored.remove_sources_size());
  for (int i = 0; i < stored.remove_sources_size(); ++i) {
    edit.remove_edges.push_back(
        {stored.remove_sources(i), stored.remove_targets(i)});
  }
  edit.set_weights.reserve(stored.set_sources_size());
  for (int i = 0; i < stored.set_sources_size(); ++i) {
    edit.set_weights.push_back(
        {stored.set_sources(i), stored.set_targets(i), stored.set_weights(i)});
  }
  edit.add_edges.reserve(stored.add_sources_size());
  for (int i = 0; i < stored.add_sources_size(); ++i) {
    edit.add_edges.push_back(
        {stored.add_sources(i), stored.add_targets(i), stored.add_weights(i)});
  }
  return edit;
}

absl::StatusOr<GraphEditLogContents> ReadGraphEditLog(const std::string& path) {
  std::string bytes;
  {
    ENGRAM_ASSIGN_OR_RETURN(FileReader reader, FileReader::Open(path));
    bytes.resize(static_cast<size_t>(reader.size()));
    ENGRAM_RETURN_IF_ERROR(reader.Read(bytes.data(), bytes.size()));
  }
  if (bytes.size() < kGraphEditLogMagic.size() ||
      absl::string_view(bytes).substr(0, kGraphEditLogMagic.size()) !=
          kGraphEditLogMagic) {
    return absl::DataLossError(absl::StrCat(
        path, ": not a graph edit log (too short or wrong magic)"));
  }
  GraphEditLogContents contents;
  const absl::string_view all(bytes);
  size_t pos = kGraphEditLogMagic.size();
  bool have_header = false;
  while (pos < all.size()) {
    // Whether the record at `pos` is a torn append; damage otherwise.
    auto torn_or_damaged = [&](absl::string_view why,
                               size_t rest_from) -> absl::Status {
      if (have_header && AllZero(all.substr(std::min(rest_from, all.size())))) {
        contents.torn = true;
        return absl::OkStatus();
      }
      return absl::DataLossError(
          absl::StrCat(path, ": record at byte ", pos, " ", why));
    };
    if (all.size() - pos < kRecordHeaderBytes) {
      ENGRAM_RETURN_IF_ERROR(
          torn_or_damaged("is cut off in its header", all.size()));
      break;
    }
    const uint32_t length = LoadLittleEndian<uint32_t>(all.data() + pos);
    const uint32_t stored = LoadLittleEndian<uint32_t>(all.data() + pos + 4);
    if (length == 0 || length > kMaxRecordBytes) {
      ENGRAM_RETURN_IF_ERROR(torn_or_damaged(
          absl::StrCat("declares an impossible length of ", length),
          pos + kRecordHeaderBytes));
      break;
    }
    if (all.size() - pos - kRecordHeaderBytes < length) {
      // The file ends inside the record: only an append does that.
      if (!have_header) {
        return absl::DataLossError(
            absl::StrCat(path, ": the header record is cut off"));
      }
      contents.torn = true;
      break;
    }
    const absl::string_view payload =
        all.substr(pos + kRecordHeaderBytes, length);
    const uint32_t computed = Crc32c(payload.data(), payload.size());
    if (computed != stored) {
      ENGRAM_RETURN_IF_ERROR(torn_or_damaged(
          absl::StrFormat("fails its checksum (stored 0x%08x, computed 0x%08x)",
                          stored, computed),
          pos + kRecordHeaderBytes + length));
      break;
    }
    const bool parsed =
        have_header ? contents.edits.emplace_back().ParseFromArray(
                          payload.data(), static_cast<int>(payload.size()))
                    : contents.header.ParseFromArray(
                          payload.data(), static_cast<int>(payload.size()));
    if (!parsed) {
      return absl::DataLossError(
          absl::StrCat(path, ": record at byte ", pos, " does not parse"));
    }
    have_header = true;
    pos += kRecordHeaderBytes + length;
  }
  if (!have_header) {
    return absl::DataLossError(absl::StrCat(path, ": no header record"));
  }
  contents.valid_bytes = pos;
  return contents;
}

absl::Status WriteGraphEditLog(const std::string& path,
                               const storage::GraphEditLogHeader& header,
                               absl::Span<const storage::GraphEdit> edits) {
  return WriteFileAtomically(path, [&](FileSink& sink) -> absl::Status {
    ENGRAM_RETURN_IF_ERROR(sink.Write(kGraphEditLogMagic));
    ENGRAM_RETURN_IF_ERROR(sink.Write(Frame(header)));
    for (const storage::GraphEdit& edit : edits) {
      ENGRAM_RETURN_IF_ERROR(sink.Write(Frame(edit)));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<GraphEditLogWriter>> GraphEditLogWriter::Open(
    const std::string& path, uint64_t valid_bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, "cannot open", path);
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    const int error = errno;
    ::close(fd);
    return IoError(error, "cannot seek in", path);
  }
  if (valid_bytes == kWholeFile) valid_bytes = static_cast<uint64_t>(end);
  std::unique_ptr<GraphEditLogWriter> writer(
      new GraphEditLogWriter(path, fd, valid_bytes));
  if (static_cast<uint64_t>(end) != valid_bytes) {
    if (::ftruncate(fd, static_cast<off_t>(valid_bytes)) != 0 ||
        ::fdatasync(fd) != 0) {
      return IoError(errno, "cannot cut the torn record off", path);
    }
  }
  return writer;
}

GraphEditLogWriter::~GraphEditLogWriter() { ::close(fd_); }

absl::Status GraphEditLogWriter::Append(const storage::GraphEdit& edit) {
  const std::string record = Frame(edit);
  size_t done = 0;
  absl::Status status;
  while (done < record.size()) {
    const ssize_t n = ::pwrite(fd_, record.data() + done, record.size() - done,
                               static_cast<off_t>(size_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = IoError(errno, "cannot append to", path_);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (status.ok() && ::fdatasync(fd_) != 0) {
    status = IoError(errno, "cannot fsync", path_);
  }
  if (!status.ok()) {
    // Best effort: a later append must not follow a partial record.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) ::fdatasync(fd_);
    return status;
  }
  size_ += record.size();
  return absl::OkStatus();
}

}  // namespace engram::collections
