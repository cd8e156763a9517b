#include "core/collections/snapshot.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/collections/names.h"
#include "kernels/graph_overlay.h"

namespace engram::collections {
namespace {

// Elements per read or write step: large enough for full-speed I/O, small
// enough that the staging buffer does not count.
constexpr size_t kStepBytes = size_t{4} << 20;

struct Header {
  std::string magic;
  uint32_t version = kSnapshotVersion;
  uint64_t payload_bytes = 0;
  uint32_t payload_crc = 0;
  uint32_t flags = 0;
  uint64_t count_a = 0;
  uint64_t count_b = 0;
  uint32_t name_bytes = 0;
  uint32_t metadata_bytes = 0;
  uint32_t graph_version = 0;
};

std::string EncodeHeader(const Header& h) {
  std::string out(kSnapshotHeaderBytes, '\0');
  char* p = out.data();
  std::memcpy(p, h.magic.data(), 8);
  StoreLittleEndian<uint32_t>(p + 8, h.version);
  StoreLittleEndian<uint32_t>(p + 12,
                              static_cast<uint32_t>(kSnapshotHeaderBytes));
  StoreLittleEndian<uint64_t>(p + 16, h.payload_bytes);
  StoreLittleEndian<uint32_t>(p + 24, h.payload_crc);
  StoreLittleEndian<uint32_t>(p + 28, h.flags);
  StoreLittleEndian<uint64_t>(p + 32, h.count_a);
  StoreLittleEndian<uint64_t>(p + 40, h.count_b);
  StoreLittleEndian<uint32_t>(p + 48, h.name_bytes);
  StoreLittleEndian<uint32_t>(p + 52, h.metadata_bytes);
  StoreLittleEndian<uint32_t>(p + 56, h.graph_version);
  StoreLittleEndian<uint32_t>(p + 60, Crc32c(p, 60));
  return out;
}

// Checks magic, length, header checksum and version, in that order.
absl::StatusOr<Header> ReadHeader(FileReader& file, absl::string_view magic,
                                  absl::string_view kind) {
  const std::string& path = file.path();
  char buf[kSnapshotHeaderBytes] = {};
  const size_t have = static_cast<size_t>(
      std::min<uint64_t>(file.size(), kSnapshotHeaderBytes));
  ENGRAM_RETURN_IF_ERROR(file.Read(buf, have));
  if (absl::string_view(buf, std::min<size_t>(have, 8)) !=
      magic.substr(0, std::min<size_t>(have, 8))) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an engram ", kind,
                     " snapshot (wrong magic; expected \"", magic, "\")"));
  }
  if (have < kSnapshotHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated: the file has ", file.size(),
                     " bytes, the header alone needs ", kSnapshotHeaderBytes));
  }
  const uint32_t stored = LoadLittleEndian<uint32_t>(buf + 60);
  const uint32_t computed = Crc32c(buf, 60);
  if (stored != computed) {
    return absl::DataLossError(absl::StrFormat(
        "%s: header checksum mismatch (stored 0x%08x, computed 0x%08x): the "
        "file is corrupt",
        path, stored, computed));
  }
  Header h;
  h.magic = std::string(magic);
  h.version = LoadLittleEndian<uint32_t>(buf + 8);
  if (h.version != kSnapshotVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported ", kind, " snapshot version ",
                     h.version, " (this build reads ", kSnapshotVersion, ")"));
  }
  if (LoadLittleEndian<uint32_t>(buf + 12) != kSnapshotHeaderBytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": header size field is ", LoadLittleEndian<uint32_t>(buf + 12),
        ", expected ", kSnapshotHeaderBytes));
  }
  h.payload_bytes = LoadLittleEndian<uint64_t>(buf + 16);
  h.payload_crc = LoadLittleEndian<uint32_t>(buf + 24);
  h.flags = LoadLittleEndian<uint32_t>(buf + 28);
  h.count_a = LoadLittleEndian<uint64_t>(buf + 32);
  h.count_b = LoadLittleEndian<uint64_t>(buf + 40);
  h.name_bytes = LoadLittleEndian<uint32_t>(buf + 48);
  h.metadata_bytes = LoadLittleEndian<uint32_t>(buf + 52);
  h.graph_version = LoadLittleEndian<uint32_t>(buf + 56);
  return h;
}

// The payload size the header's counts imply must be the one it states, and
// the file must hold exactly header + payload.
absl::Status CheckSizes(const FileReader& file, const Header& h,
                        uint64_t data_bytes) {
  const uint64_t expected =
      uint64_t{h.name_bytes} + h.metadata_bytes + data_bytes;
  if (h.payload_bytes != expected) {
    return absl::DataLossError(
        absl::StrCat(file.path(), ": header states ", h.payload_bytes,
                     " payload bytes, its counts imply ", expected));
  }
  const uint64_t total = kSnapshotHeaderBytes + h.payload_bytes;
  if (file.size() < total) {
    return absl::DataLossError(
        absl::StrCat(file.path(), ": truncated: the file has ", file.size(),
                     " bytes, its header declares ", total));
  }
  if (file.size() > total) {
    return absl::DataLossError(
        absl::StrCat(file.path(), ": the file has ", file.size() - total,
                     " bytes after the ", total, " its header declares"));
  }
  return absl::OkStatus();
}

// Reads `size` bytes of payload, extending the running checksum.
absl::Status ReadPayload(FileReader& file, void* data, size_t size,
                         uint32_t* crc) {
  ENGRAM_RETURN_IF_ERROR(file.Read(data, size));
  *crc = Crc32c(data, size, *crc);
  return absl::OkStatus();
}

absl::Status ChecksumMismatch(const std::string& path, uint32_t stored,
                              uint32_t computed) {
  return absl::DataLossError(absl::StrFormat(
      "%s: payload checksum mismatch (stored 0x%08x, computed 0x%08x): the "
      "file is corrupt",
      path, stored, computed));
}

// Reads and checksums whatever is left of the payload, so that a store
// error caused by corrupt bytes is reported as the corruption it is.
absl::Status DrainAndCheck(FileReader& file, const Header& h, uint32_t crc) {
  std::vector<char> buf(kStepBytes);
  while (file.position() < file.size()) {
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(buf.size(), file.size() - file.position()));
    ENGRAM_RETURN_IF_ERROR(ReadPayload(file, buf.data(), n, &crc));
  }
  if (crc != h.payload_crc) {
    return ChecksumMismatch(file.path(), h.payload_crc, crc);
  }
  return absl::OkStatus();
}

absl::Status WithPath(const std::string& path, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

// Streams `size` bytes to `sink`, extending the checksum.
absl::Status Emit(FileSink& sink, const void* data, size_t size,
                  uint32_t* crc) {
  *crc = Crc32c(data, size, *crc);
  return sink.Write(data, size);
}

std::string EncodeMetadata(const Metadata& metadata) {
  std::string out;
  for (const auto& [key, value] : metadata) {
    char len[4];
    StoreLittleEndian<uint32_t>(len, static_cast<uint32_t>(key.size()));
    out.append(len, 4);
    out.append(key);
    StoreLittleEndian<uint32_t>(len, static_cast<uint32_t>(value.size()));
    out.append(len, 4);
    out.append(value);
  }
  return out;
}

absl::StatusOr<Metadata> DecodeMetadata(const std::string& path,
                                        absl::string_view bytes) {
  Metadata metadata;
  auto bad = [&] {
    return absl::DataLossError(
        absl::StrCat(path, ": the metadata section is malformed"));
  };
  while (!bytes.empty()) {
    std::string parts[2];
    for (std::string& part : parts) {
      if (bytes.size() < 4) return bad();
      const uint32_t n = LoadLittleEndian<uint32_t>(bytes.data());
      bytes.remove_prefix(4);
      if (bytes.size() < n) return bad();
      part = std::string(bytes.substr(0, n));
      bytes.remove_prefix(n);
    }
    // The empty key is a segment file's alignment padding (no collection's
    // metadata may have it).
    if (!parts[0].empty()) metadata[parts[0]] = parts[1];
  }
  return metadata;
}

absl::StatusOr<std::pair<std::string, std::string>> ReadNameAndMetadata(
    FileReader& file, const Header& h, uint32_t* crc) {
  if (h.name_bytes > kMaxNameLength ||
      h.metadata_bytes > 2 * kMaxMetadataBytes) {
    return absl::DataLossError(
        absl::StrCat(file.path(), ": name or metadata section too large (",
                     h.name_bytes, " and ", h.metadata_bytes, " bytes)"));
  }
  std::string name(h.name_bytes, '\0');
  std::string metadata(h.metadata_bytes, '\0');
  ENGRAM_RETURN_IF_ERROR(ReadPayload(file, name.data(), name.size(), crc));
  ENGRAM_RETURN_IF_ERROR(
      ReadPayload(file, metadata.data(), metadata.size(), crc));
  return std::make_pair(std::move(name), std::move(metadata));
}

// A segment file's metadata: one entry with the empty key, which no
// collection's metadata may have, whose value is as many zeros as put the
// vectors at a 64-byte file offset (and so the ids, 8 bytes per row before
// them, at an 8-byte one). Mapped, the file's rows are then aligned as the
// kernels read segments, in place. Readers skip the entry.
std::string AlignmentEntry(uint64_t name_bytes, uint64_t ids_bytes) {
  const uint64_t before = kSnapshotHeaderBytes + name_bytes + 8 + ids_bytes;
  const uint64_t zeros = (64 - before % 64) % 64;
  std::string entry(8 + zeros, '\0');
  StoreLittleEndian<uint32_t>(entry.data() + 4, static_cast<uint32_t>(zeros));
  return entry;
}

// Writes `segments` (in row order) as one collection snapshot; *payload_crc
// receives the payload's checksum. Ids are written when `with_ids`, each
// segment's IdOf (so a segment without ids writes its row numbers).
absl::Status WriteRows(absl::string_view name, absl::string_view metadata,
                       uint32_t dimension, bool with_ids,
                       const std::vector<const Segment*>& segments,
                       const std::string& path, uint32_t* payload_crc) {
  uint64_t rows = 0;
  for (const Segment* segment : segments) rows += segment->rows();
  Header h;
  h.magic = std::string(kCollectionSnapshotMagic);
  h.flags = with_ids ? 1 : 0;
  h.count_a = rows;
  h.count_b = dimension;
  h.name_bytes = static_cast<uint32_t>(name.size());
  h.metadata_bytes = static_cast<uint32_t>(metadata.size());
  h.payload_bytes = h.name_bytes + h.metadata_bytes +
                    rows * (uint64_t{dimension} * sizeof(float) +
                            (with_ids ? sizeof(uint64_t) : 0));
  return WriteFileAtomically(path, [&](FileSink& sink) -> absl::Status {
    // The header goes last, once the payload checksum is known.
    ENGRAM_RETURN_IF_ERROR(sink.Write(std::string(kSnapshotHeaderBytes, '\0')));
    uint32_t crc = 0;
    ENGRAM_RETURN_IF_ERROR(Emit(sink, name.data(), name.size(), &crc));
    ENGRAM_RETURN_IF_ERROR(Emit(sink, metadata.data(), metadata.size(), &crc));
    if (with_ids) {
      const uint64_t step = kStepBytes / sizeof(uint64_t);
      std::vector<uint64_t> ids;
      ids.reserve(step);
      for (const Segment* segment : segments) {
        for (uint64_t i = 0; i < segment->rows(); i += step) {
          ids.clear();
          const uint64_t end = std::min<uint64_t>(segment->rows(), i + step);
          for (uint64_t r = i; r < end; ++r) ids.push_back(segment->IdOf(r));
          ENGRAM_RETURN_IF_ERROR(
              Emit(sink, ids.data(), ids.size() * sizeof(uint64_t), &crc));
        }
      }
    }
    for (const Segment* segment : segments) {
      const kernels::MatrixView& v = segment->vectors();
      const char* p = reinterpret_cast<const char*>(v.data);
      uint64_t left = uint64_t{v.rows} * v.cols * sizeof(float);
      while (left > 0) {
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>(left, kStepBytes));
        ENGRAM_RETURN_IF_ERROR(Emit(sink, p, n, &crc));
        p += n;
        left -= n;
      }
    }
    h.payload_crc = crc;
    *payload_crc = crc;
    return sink.WriteAt(0, EncodeHeader(h).data(), kSnapshotHeaderBytes);
  });
}

// Checks a collection header's shape and sizes against the file.
absl::Status CheckCollectionHeader(const FileReader& file, const Header& h) {
  const bool with_ids = (h.flags & 1) != 0;
  if (h.count_b == 0 || h.count_b > kMaxDimension || h.count_a == 0 ||
      h.count_a > kMaxCollectionRows || (h.flags & ~1u) != 0) {
    return absl::DataLossError(absl::StrCat(
        file.path(), ": header holds an impossible shape (", h.count_a,
        " rows x ", h.count_b, " dimension, flags ", h.flags, ")"));
  }
  const uint64_t row_bytes = h.count_b * sizeof(float);
  return CheckSizes(
      file, h, h.count_a * (row_bytes + (with_ids ? sizeof(uint64_t) : 0)));
}

// Each loading thread gets at least this much of the payload, so that small
// files are read on the calling thread alone and pay no thread start.
constexpr uint64_t kLoadBytesPerThread = uint64_t{32} << 20;
// At most this many threads (the caller's included) load one file: enough
// to keep up with a page-cache or NVMe read rate, few enough that a start-up
// load leaves the machine usable.
constexpr unsigned kMaxLoadThreads = 8;

// The split loads use: SnapshotLoadSplit's defaults, whose pieces are small
// enough to be checksummed and checked from the core's cache right after
// they were read and large enough that a read costs little per byte, unless
// a test or benchmark set another.
ABSL_CONST_INIT absl::Mutex split_mu(absl::kConstInit);
SnapshotLoadSplit& Split() ABSL_EXCLUSIVE_LOCKS_REQUIRED(split_mu) {
  static SnapshotLoadSplit split;
  return split;
}

SnapshotLoadSplit CurrentSplit() {
  absl::MutexLock lock(&split_mu);
  return Split();
}

// A run of payload bytes at `offset` in the file, read to `data`, or
// already there in a mapping of the file when `data` is null; a piece of
// vectors also names its rows within the staged block.
struct Piece {
  uint64_t offset = 0;
  char* data = nullptr;
  size_t size = 0;
  bool vectors = false;
  uint64_t first_row = 0;
  uint64_t end_row = 0;
};

// Splits [offset, offset + size) read to `data` (null: mapped) into pieces
// of at most `piece_bytes` bytes (at least one unit), each a whole number of
// `unit`s.
void AddPieces(uint64_t offset, char* data, uint64_t size, uint64_t unit,
               uint64_t piece_bytes, bool vectors, std::vector<Piece>* pieces) {
  const uint64_t units_per_piece = std::max<uint64_t>(1, piece_bytes / unit);
  const uint64_t units = size / unit;
  for (uint64_t u = 0; u < units; u += units_per_piece) {
    const uint64_t n = std::min(units_per_piece, units - u);
    pieces->push_back(Piece{offset + u * unit,
                            data != nullptr ? data + u * unit : nullptr,
                            static_cast<size_t>(n * unit), vectors, u, u + n});
  }
}

// Reads, checksums and checks the pieces of one file on a few threads; the
// pieces of a mapped file (`mapping`) are checksummed and checked in place,
// and their first touch is what reads them.
// Thread-safety: Run's workers share `next_` (relaxed: it only hands out
// indices) and record errors under `mu_`; each piece's CRC is written by the
// one worker that took the piece and read after the workers were joined.
class PieceLoader {
 public:
  PieceLoader(const FileReader& file, const FileMapping* mapping,
              const std::vector<Piece>& pieces, StagedRows* block)
      : file_(file),
        mapping_(mapping),
        pieces_(pieces),
        block_(block),
        crcs_(pieces.size()) {}

  // Loads every piece on `threads` threads, the caller's included.
  void Run(unsigned threads) {
    // The pieces are taken in file order, so the kernel's read-ahead still
    // sees one sequential reader. Asking for more (POSIX_FADV_WILLNEED
    // windows ahead of the pieces) made cold loads slower: the kernel then
    // reads in the caller's time.
    if (mapping_ == nullptr) file_.AdviseSequential();
    std::vector<std::thread> workers;
    workers.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) {
      try {
        workers.emplace_back([this] { Work(); });
      } catch (const std::system_error&) {
        break;  // fewer threads load it all the same
      }
    }
    Work();
    for (std::thread& worker : workers) worker.join();
  }

  // The first read error (by piece), or OK. Call after Run.
  absl::Status read_error() {
    absl::MutexLock lock(&mu_);
    return read_error_;
  }
  // The first refused row's error (by row), or OK. Call after Run.
  absl::Status check_error() {
    absl::MutexLock lock(&mu_);
    return check_error_;
  }
  // The checksum of the pieces in file order, extending `crc`. Call after
  // Run, when every piece was read.
  uint32_t Crc(uint32_t crc) const {
    for (size_t i = 0; i < pieces_.size(); ++i) {
      crc = Crc32cCombine(crc, crcs_[i], pieces_[i].size);
    }
    return crc;
  }

 private:
  void Work() {
    for (;;) {
      const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= pieces_.size()) return;
      const Piece& piece = pieces_[i];
      if (mapping_ != nullptr) {
        crcs_[i] = Crc32c(mapping_->data() + piece.offset, piece.size);
        Check(i, piece);
        continue;
      }
      absl::Status read = file_.ReadAt(piece.offset, piece.data, piece.size);
      if (!read.ok()) {
        absl::MutexLock lock(&mu_);
        if (read_error_.ok() || i < read_error_piece_) {
          read_error_ = std::move(read);
          read_error_piece_ = i;
        }
        // Nothing after a failed read is worth reading.
        next_.store(pieces_.size(), std::memory_order_relaxed);
        return;
      }
      crcs_[i] = Crc32c(piece.data, piece.size);
      Check(i, piece);
    }
  }

  // Checks the rows of piece `i` (vectors only) in the staged block.
  void Check(size_t i, const Piece& piece) {
    if (!piece.vectors || block_ == nullptr) return;
    absl::Status checked = block_->Check(piece.first_row, piece.end_row);
    if (!checked.ok()) {
      absl::MutexLock lock(&mu_);
      if (check_error_.ok() || i < check_error_piece_) {
        check_error_ = std::move(checked);
        check_error_piece_ = i;
      }
    }
  }

  const FileReader& file_;
  const FileMapping* const mapping_;
  const std::vector<Piece>& pieces_;
  StagedRows* const block_;
  std::vector<uint32_t> crcs_;
  std::atomic<size_t> next_{0};
  absl::Mutex mu_;
  absl::Status read_error_ ABSL_GUARDED_BY(mu_);
  size_t read_error_piece_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status check_error_ ABSL_GUARDED_BY(mu_);
  size_t check_error_piece_ ABSL_GUARDED_BY(mu_) = 0;
};

unsigned LoadThreads(const SnapshotLoadSplit& split, uint64_t bytes) {
  if (split.threads > 0) return split.threads;
  const uint64_t by_size = std::max<uint64_t>(1, bytes / kLoadBytesPerThread);
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(
      std::min<uint64_t>({by_size, hardware, kMaxLoadThreads}));
}

// Loads the ids and vectors that follow the name and metadata into
// `upload`, read straight into its storage (StagedRows) by a few threads
// for a large file; `crc` holds the checksum of what was read before. Ids:
// the file's when it has them; else, when the upload takes ids, the rows'
// numbers counted from `first_row`. The rows are received only when every
// piece was read and checked and the payload checksum matches; a checksum
// mismatch is reported in preference to a refused row, which corrupt bytes
// may have caused.
absl::Status LoadRows(FileReader& file, const Header& h, uint32_t crc,
                      uint64_t first_row, CollectionUpload* upload,
                      bool upload_takes_ids, bool map) {
  const std::string& path = file.path();
  const bool with_ids = (h.flags & 1) != 0;
  const uint64_t rows = h.count_a;
  const uint64_t row_bytes = h.count_b * sizeof(float);
  const uint64_t ids_offset = file.position();
  const uint64_t vectors_offset =
      ids_offset + (with_ids ? rows * sizeof(uint64_t) : 0);
  // Mapped only when the rows lie as a segment holds them and nothing else
  // could refuse them; any obstacle means a read, never an error.
  std::shared_ptr<const FileMapping> mapping;
  if (map && vectors_offset % 64 == 0 && (upload_takes_ids || !with_ids) &&
      file.OnLocalFileSystem()) {
    absl::StatusOr<std::shared_ptr<const FileMapping>> mapped = file.Map();
    if (mapped.ok()) mapping = *std::move(mapped);
  }
  absl::StatusOr<std::unique_ptr<StagedRows>> block =
      mapping == nullptr
          ? upload->StageRows(rows)
          : upload->AdoptRows(rows,
                              reinterpret_cast<const float*>(mapping->data() +
                                                             vectors_offset),
                              with_ids ? reinterpret_cast<const uint64_t*>(
                                             mapping->data() + ids_offset)
                                       : nullptr,
                              mapping);
  if (!block.ok()) {
    ENGRAM_RETURN_IF_ERROR(DrainAndCheck(file, h, crc));
    return WithPath(path, block.status());
  }
  StagedRows& staged = **block;
  // What Append would have refused about the ids, reported (as Append's
  // error was) once the checksum is known to match.
  absl::Status ids_refused;
  const bool ids_offered = with_ids || upload_takes_ids;
  if (mapping != nullptr) {
    // AdoptRows took the ids as they are.
  } else if (ids_offered && staged.ids() == nullptr) {
    ids_refused = absl::InvalidArgumentError(
        "ids given, but the upload was started without ids");
  } else if (!ids_offered && staged.ids() != nullptr) {
    ids_refused = absl::InvalidArgumentError(
        absl::StrCat("ids has 0 entries, expected one per row (", rows, ")"));
  }
  std::vector<uint64_t> unused_ids;
  const SnapshotLoadSplit split = CurrentSplit();
  std::vector<Piece> pieces;
  if (with_ids) {
    uint64_t* ids = staged.ids();
    if (ids == nullptr && mapping == nullptr) {
      unused_ids.resize(rows);
      ids = unused_ids.data();
    }
    AddPieces(ids_offset, reinterpret_cast<char*>(ids), rows * sizeof(uint64_t),
              sizeof(uint64_t), split.piece_bytes,
              /*vectors=*/false, &pieces);
  } else if (staged.ids() != nullptr && upload_takes_ids) {
    for (uint64_t r = 0; r < rows; ++r) staged.ids()[r] = first_row + r;
  }
  AddPieces(vectors_offset, reinterpret_cast<char*>(staged.vectors()),
            rows * row_bytes, row_bytes, split.piece_bytes, /*vectors=*/true,
            &pieces);

  PieceLoader loader(file, mapping.get(), pieces,
                     ids_refused.ok() ? &staged : nullptr);
  loader.Run(LoadThreads(split, h.payload_bytes));
  ENGRAM_RETURN_IF_ERROR(loader.read_error());
  crc = loader.Crc(crc);
  if (crc != h.payload_crc) return ChecksumMismatch(path, h.payload_crc, crc);
  ENGRAM_RETURN_IF_ERROR(WithPath(path, ids_refused));
  ENGRAM_RETURN_IF_ERROR(WithPath(path, loader.check_error()));
  return WithPath(path, upload->Receive(staged));
}

}  // namespace

namespace internal {

SnapshotLoadSplit SetSnapshotLoadSplitForTesting(
    const SnapshotLoadSplit& split) {
  absl::MutexLock lock(&split_mu);
  return std::exchange(Split(), split);
}

}  // namespace internal

absl::Status WriteCollectionSnapshot(const Collection& c,
                                     const std::string& path) {
  std::vector<const Segment*> segments;
  for (const auto& segment : c.segments()) segments.push_back(segment.get());
  uint32_t crc = 0;
  return WriteRows(c.name(), EncodeMetadata(c.metadata()), c.dimension(),
                   c.has_ids(), segments, path, &crc);
}

SegmentFileLayout LayOutSegmentFile(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids) {
  const uint64_t ids_bytes = with_ids ? rows * sizeof(uint64_t) : 0;
  SegmentFileLayout layout;
  layout.metadata_bytes =
      static_cast<uint32_t>(AlignmentEntry(name.size(), ids_bytes).size());
  layout.payload_prefix =
      absl::StrCat(name, AlignmentEntry(name.size(), ids_bytes));
  layout.prefix_offset = kSnapshotHeaderBytes;
  layout.ids_offset = layout.prefix_offset + layout.payload_prefix.size();
  layout.vectors_offset = layout.ids_offset + ids_bytes;
  layout.file_bytes =
      layout.vectors_offset + rows * uint64_t{dimension} * sizeof(float);
  return layout;
}

std::string EncodeSegmentFileHeader(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids,
                                    uint32_t payload_crc) {
  // WriteRows's header for one segment and its alignment entry.
  const SegmentFileLayout layout =
      LayOutSegmentFile(name, rows, dimension, with_ids);
  Header h;
  h.magic = std::string(kCollectionSnapshotMagic);
  h.flags = with_ids ? 1 : 0;
  h.count_a = rows;
  h.count_b = dimension;
  h.name_bytes = static_cast<uint32_t>(name.size());
  h.metadata_bytes = layout.metadata_bytes;
  h.payload_bytes = layout.file_bytes - kSnapshotHeaderBytes;
  h.payload_crc = payload_crc;
  return EncodeHeader(h);
}

absl::StatusOr<uint32_t> WriteSegmentSnapshot(absl::string_view name,
                                              const Segment& segment,
                                              const std::string& path) {
  const bool with_ids = !segment.ids().empty();
  const uint64_t ids_bytes = with_ids ? segment.rows() * sizeof(uint64_t) : 0;
  uint32_t crc = 0;
  ENGRAM_RETURN_IF_ERROR(WriteRows(name, AlignmentEntry(name.size(), ids_bytes),
                                   segment.dimension(), with_ids, {&segment},
                                   path, &crc));
  return crc;
}

absl::Status AppendSegmentSnapshot(const std::string& path,
                                   const SegmentExpectation& expected,
                                   uint64_t first_row, CollectionUpload* upload,
                                   bool upload_takes_ids, bool map) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  ENGRAM_ASSIGN_OR_RETURN(
      Header h, ReadHeader(file, kCollectionSnapshotMagic, "collection"));
  ENGRAM_RETURN_IF_ERROR(CheckCollectionHeader(file, h));
  if (h.count_a != expected.rows || h.count_b != upload->dimension() ||
      ((h.flags & 1) != 0) != expected.has_ids ||
      h.payload_crc != expected.payload_crc) {
    return absl::DataLossError(absl::StrFormat(
        "%s: holds %d rows x %d (ids: %s, checksum 0x%08x) where the "
        "manifest records %d rows x %d (ids: %s, checksum 0x%08x)",
        path, h.count_a, h.count_b, (h.flags & 1) != 0 ? "yes" : "no",
        h.payload_crc, expected.rows, upload->dimension(),
        expected.has_ids ? "yes" : "no", expected.payload_crc));
  }
  uint32_t crc = 0;
  ENGRAM_RETURN_IF_ERROR(ReadNameAndMetadata(file, h, &crc).status());
  return LoadRows(file, h, crc, first_row, upload, upload_takes_ids, map);
}

absl::StatusOr<std::shared_ptr<const Collection>> LoadCollectionSnapshot(
    const std::string& path, absl::string_view name, CollectionStore* store) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  ENGRAM_ASSIGN_OR_RETURN(
      Header h, ReadHeader(file, kCollectionSnapshotMagic, "collection"));
  ENGRAM_RETURN_IF_ERROR(CheckCollectionHeader(file, h));
  uint32_t crc = 0;
  ENGRAM_ASSIGN_OR_RETURN(auto name_and_metadata,
                          ReadNameAndMetadata(file, h, &crc));
  ENGRAM_ASSIGN_OR_RETURN(Metadata metadata,
                          DecodeMetadata(path, name_and_metadata.second));

  UploadOptions options;
  options.name = name.empty() ? name_and_metadata.first : std::string(name);
  options.create = true;
  options.dimension = static_cast<uint32_t>(h.count_b);
  options.metadata = std::move(metadata);
  options.rows = h.count_a;
  options.with_ids = (h.flags & 1) != 0;
  options.source = path;
  // The file is its own durable copy: nothing to journal.
  options.durable = false;
  absl::StatusOr<std::unique_ptr<CollectionUpload>> upload =
      store->BeginUpload(options);
  if (!upload.ok()) return WithPath(path, upload.status());
  ENGRAM_RETURN_IF_ERROR(LoadRows(file, h, crc, /*first_row=*/0, upload->get(),
                                  options.with_ids,
                                  /*map=*/false));
  absl::StatusOr<std::shared_ptr<const Collection>> committed =
      (*upload)->Commit();
  if (!committed.ok()) return WithPath(path, committed.status());
  return committed;
}

absl::Status WriteGraphSnapshot(const Graph& g, const std::string& path) {
  const kernels::GraphView& base = g.base();
  const kernels::GraphOverlay* overlay = g.overlay();
  const uint32_t num_nodes = g.num_nodes();
  const uint64_t num_edges = g.num_edges();
  // Node u's edges, through the graph's changes when it has any: the file
  // holds the graph a put of the same edges would have made.
  auto edges_of = [&](uint32_t u) -> kernels::NodeEdges {
    if (overlay != nullptr) return kernels::EdgesOf(base, *overlay, u);
    return {base.targets.data(), base.weights.data(), base.row_offsets[u],
            base.row_offsets[u + 1]};
  };
  Header h;
  h.magic = std::string(kGraphSnapshotMagic);
  h.count_a = num_nodes;
  h.count_b = num_edges;
  h.name_bytes = static_cast<uint32_t>(g.name().size());
  // A version too large for the field is not kept: the graph then gets the
  // loading store's next, as a graph from an older file does.
  h.graph_version = g.version() <= std::numeric_limits<uint32_t>::max()
                        ? static_cast<uint32_t>(g.version())
                        : 0;
  h.payload_bytes =
      h.name_bytes + (uint64_t{num_nodes} + 1) * 4 + num_edges * 8;
  return WriteFileAtomically(path, [&](FileSink& sink) -> absl::Status {
    ENGRAM_RETURN_IF_ERROR(sink.Write(std::string(kSnapshotHeaderBytes, '\0')));
    uint32_t crc = 0;
    ENGRAM_RETURN_IF_ERROR(Emit(sink, g.name().data(), g.name().size(), &crc));
    if (overlay == nullptr) {
      ENGRAM_RETURN_IF_ERROR(Emit(sink, base.row_offsets.data(),
                                  base.row_offsets.size() * sizeof(uint32_t),
                                  &crc));
    } else {
      std::vector<uint32_t> offsets;
      const size_t step = kStepBytes / 4;
      offsets.reserve(step);
      uint32_t at = 0;
      for (uint64_t u = 0; u <= num_nodes; ++u) {
        offsets.push_back(at);
        if (u < num_nodes) {
          const kernels::NodeEdges e = edges_of(static_cast<uint32_t>(u));
          at += e.end - e.begin;
        }
        if (offsets.size() == step || u == num_nodes) {
          ENGRAM_RETURN_IF_ERROR(Emit(sink, offsets.data(),
                                      offsets.size() * sizeof(uint32_t), &crc));
          offsets.clear();
        }
      }
    }
    std::vector<char> pairs;
    const size_t step = kStepBytes / 8;
    pairs.reserve(step * 8);
    for (uint32_t u = 0; u < num_nodes; ++u) {
      const kernels::NodeEdges e = edges_of(u);
      for (uint32_t i = e.begin; i < e.end; ++i) {
        const size_t at = pairs.size();
        pairs.resize(at + 8);
        std::memcpy(&pairs[at], &e.targets[i], 4);
        std::memcpy(&pairs[at + 4], &e.weights[i], 4);
        if (pairs.size() == step * 8) {
          ENGRAM_RETURN_IF_ERROR(Emit(sink, pairs.data(), pairs.size(), &crc));
          pairs.clear();
        }
      }
    }
    if (!pairs.empty()) {
      ENGRAM_RETURN_IF_ERROR(Emit(sink, pairs.data(), pairs.size(), &crc));
    }
    h.payload_crc = crc;
    return sink.WriteAt(0, EncodeHeader(h).data(), kSnapshotHeaderBytes);
  });
}

absl::StatusOr<uint64_t> ReadGraphSnapshotVersion(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  ENGRAM_ASSIGN_OR_RETURN(Header h,
                          ReadHeader(file, kGraphSnapshotMagic, "graph"));
  return h.graph_version;
}

absl::StatusOr<std::shared_ptr<const Graph>> LoadGraphSnapshot(
    const std::string& path, absl::string_view name, GraphStore* store,
    uint64_t version, std::vector<CommittedKey> restored_keys) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  ENGRAM_ASSIGN_OR_RETURN(Header h,
                          ReadHeader(file, kGraphSnapshotMagic, "graph"));
  if (h.count_a == 0 || h.count_a >= 0xffffffffu ||
      h.count_b > kMaxGraphEdges || h.flags != 0 || h.metadata_bytes != 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": header holds an impossible graph (", h.count_a,
                     " nodes, ", h.count_b, " edges, flags ", h.flags, ")"));
  }
  const uint32_t num_nodes = static_cast<uint32_t>(h.count_a);
  const uint64_t num_edges = h.count_b;
  ENGRAM_RETURN_IF_ERROR(
      CheckSizes(file, h, (uint64_t{num_nodes} + 1) * 4 + num_edges * 8));
  uint32_t crc = 0;
  ENGRAM_ASSIGN_OR_RETURN(auto name_and_metadata,
                          ReadNameAndMetadata(file, h, &crc));
  GraphPutOptions options;
  options.name = name.empty() ? name_and_metadata.first : std::string(name);
  options.num_nodes = num_nodes;
  options.num_edges = num_edges;
  options.source = path;
  options.durable = false;
  options.version = version != 0 ? version : h.graph_version;
  options.restored_keys = std::move(restored_keys);
  absl::StatusOr<std::unique_ptr<GraphUpload>> upload =
      store->BeginPut(options);
  if (!upload.ok()) return WithPath(path, upload.status());

  const size_t step = kStepBytes / 8;
  std::vector<uint32_t> offsets(step);
  for (uint64_t i = 0; i < uint64_t{num_nodes} + 1; i += step) {
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(step, uint64_t{num_nodes} + 1 - i));
    ENGRAM_RETURN_IF_ERROR(ReadPayload(file, offsets.data(), n * 4, &crc));
    ENGRAM_RETURN_IF_ERROR(WithPath(
        path,
        (*upload)->AppendRowOffsets(absl::MakeConstSpan(offsets.data(), n))));
  }
  std::vector<char> pairs(step * 8);
  std::vector<uint32_t> targets(step);
  std::vector<float> weights(step);
  for (uint64_t e = 0; e < num_edges; e += step) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(step, num_edges - e));
    ENGRAM_RETURN_IF_ERROR(ReadPayload(file, pairs.data(), n * 8, &crc));
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&targets[i], &pairs[8 * i], 4);
      std::memcpy(&weights[i], &pairs[8 * i + 4], 4);
    }
    ENGRAM_RETURN_IF_ERROR(WithPath(
        path, (*upload)->AppendEdges(absl::MakeConstSpan(targets.data(), n),
                                     absl::MakeConstSpan(weights.data(), n))));
  }
  if (crc != h.payload_crc) return ChecksumMismatch(path, h.payload_crc, crc);
  // Validation runs only on data whose checksum matched, so its errors are
  // about the graph as written, not about corruption.
  absl::StatusOr<std::shared_ptr<const Graph>> committed = (*upload)->Commit();
  if (!committed.ok()) return WithPath(path, committed.status());
  return committed;
}

}  // namespace engram::collections
