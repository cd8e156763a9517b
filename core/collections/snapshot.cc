#include "core/collections/snapshot.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/collections/names.h"

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
    metadata[parts[0]] = parts[1];
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

// Writes `segments` (in row order) as one collection snapshot; *payload_crc
// receives the payload's checksum. Ids are written when `with_ids`, each
// segment's IdOf (so a segment without ids writes its row numbers).
absl::Status WriteRows(absl::string_view name, const Metadata& metadata_map,
                       uint32_t dimension, bool with_ids,
                       const std::vector<const Segment*>& segments,
                       const std::string& path, uint32_t* payload_crc) {
  uint64_t rows = 0;
  for (const Segment* segment : segments) rows += segment->rows();
  const std::string metadata = EncodeMetadata(metadata_map);
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

// Streams the rows that follow the name and metadata into `upload`,
// checksumming them; `crc` holds the checksum of what was read before.
// Ids: the file's when it has them; else, when the upload takes ids, the
// rows' numbers counted from `first_row`.
absl::Status StreamRows(FileReader& file, const Header& h, uint32_t crc,
                        uint64_t first_row, CollectionUpload* upload,
                        bool upload_takes_ids) {
  const std::string& path = file.path();
  const bool with_ids = (h.flags & 1) != 0;
  const uint64_t rows = h.count_a;
  const uint32_t dimension = static_cast<uint32_t>(h.count_b);
  const uint64_t row_bytes = uint64_t{dimension} * sizeof(float);
  std::vector<uint64_t> ids;
  if (with_ids) {
    ids.resize(rows);
    ENGRAM_RETURN_IF_ERROR(
        ReadPayload(file, ids.data(), rows * sizeof(uint64_t), &crc));
  } else if (upload_takes_ids) {
    ids.resize(rows);
    for (uint64_t r = 0; r < rows; ++r) ids[r] = first_row + r;
  }
  const uint64_t step_rows = std::max<uint64_t>(1, kStepBytes / row_bytes);
  std::vector<float> buf(step_rows * dimension);
  for (uint64_t r = 0; r < rows; r += step_rows) {
    const uint64_t n = std::min(step_rows, rows - r);
    ENGRAM_RETURN_IF_ERROR(ReadPayload(file, buf.data(), n * row_bytes, &crc));
    absl::Status appended = upload->Append(
        kernels::MatrixView{buf.data(), static_cast<size_t>(n), dimension},
        ids.empty() ? absl::Span<const uint64_t>()
                    : absl::MakeConstSpan(ids.data() + r, n));
    if (!appended.ok()) {
      ENGRAM_RETURN_IF_ERROR(DrainAndCheck(file, h, crc));
      return WithPath(path, appended);
    }
  }
  if (crc != h.payload_crc) return ChecksumMismatch(path, h.payload_crc, crc);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteCollectionSnapshot(const Collection& c,
                                     const std::string& path) {
  std::vector<const Segment*> segments;
  for (const auto& segment : c.segments()) segments.push_back(segment.get());
  uint32_t crc = 0;
  return WriteRows(c.name(), c.metadata(), c.dimension(), c.has_ids(), segments,
                   path, &crc);
}

SegmentFileLayout LayOutSegmentFile(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids) {
  SegmentFileLayout layout;
  layout.payload_prefix = std::string(name);
  layout.prefix_offset = kSnapshotHeaderBytes;
  layout.ids_offset = layout.prefix_offset + name.size();
  layout.vectors_offset =
      layout.ids_offset + (with_ids ? rows * sizeof(uint64_t) : 0);
  layout.file_bytes =
      layout.vectors_offset + rows * uint64_t{dimension} * sizeof(float);
  return layout;
}

std::string EncodeSegmentFileHeader(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids,
                                    uint32_t payload_crc) {
  // WriteRows's header for one segment and no metadata.
  Header h;
  h.magic = std::string(kCollectionSnapshotMagic);
  h.flags = with_ids ? 1 : 0;
  h.count_a = rows;
  h.count_b = dimension;
  h.name_bytes = static_cast<uint32_t>(name.size());
  h.payload_bytes =
      LayOutSegmentFile(name, rows, dimension, with_ids).file_bytes -
      kSnapshotHeaderBytes;
  h.payload_crc = payload_crc;
  return EncodeHeader(h);
}

absl::StatusOr<uint32_t> WriteSegmentSnapshot(absl::string_view name,
                                              const Segment& segment,
                                              const std::string& path) {
  uint32_t crc = 0;
  ENGRAM_RETURN_IF_ERROR(WriteRows(name, Metadata(), segment.dimension(),
                                   !segment.ids().empty(), {&segment}, path,
                                   &crc));
  return crc;
}

absl::Status AppendSegmentSnapshot(const std::string& path,
                                   const SegmentExpectation& expected,
                                   uint64_t first_row, CollectionUpload* upload,
                                   bool upload_takes_ids) {
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
  return StreamRows(file, h, crc, first_row, upload, upload_takes_ids);
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
  ENGRAM_RETURN_IF_ERROR(StreamRows(file, h, crc, /*first_row=*/0,
                                    upload->get(), options.with_ids));
  absl::StatusOr<std::shared_ptr<const Collection>> committed =
      (*upload)->Commit();
  if (!committed.ok()) return WithPath(path, committed.status());
  return committed;
}

absl::Status WriteGraphSnapshot(const Graph& g, const std::string& path) {
  const kernels::GraphView& v = g.view();
  Header h;
  h.magic = std::string(kGraphSnapshotMagic);
  h.count_a = v.num_nodes;
  h.count_b = v.num_edges();
  h.name_bytes = static_cast<uint32_t>(g.name().size());
  h.payload_bytes = h.name_bytes + (uint64_t{v.num_nodes} + 1) * 4 +
                    uint64_t{v.num_edges()} * 8;
  return WriteFileAtomically(path, [&](FileSink& sink) -> absl::Status {
    ENGRAM_RETURN_IF_ERROR(sink.Write(std::string(kSnapshotHeaderBytes, '\0')));
    uint32_t crc = 0;
    ENGRAM_RETURN_IF_ERROR(Emit(sink, g.name().data(), g.name().size(), &crc));
    ENGRAM_RETURN_IF_ERROR(Emit(sink, v.row_offsets.data(),
                                v.row_offsets.size() * sizeof(uint32_t), &crc));
    std::vector<char> pairs;
    const size_t step = kStepBytes / 8;
    for (size_t e = 0; e < v.num_edges(); e += step) {
      const size_t n = std::min(step, v.num_edges() - e);
      pairs.resize(n * 8);
      for (size_t i = 0; i < n; ++i) {
        std::memcpy(&pairs[8 * i], &v.targets[e + i], 4);
        std::memcpy(&pairs[8 * i + 4], &v.weights[e + i], 4);
      }
      ENGRAM_RETURN_IF_ERROR(Emit(sink, pairs.data(), pairs.size(), &crc));
    }
    h.payload_crc = crc;
    return sink.WriteAt(0, EncodeHeader(h).data(), kSnapshotHeaderBytes);
  });
}

absl::StatusOr<std::shared_ptr<const Graph>> LoadGraphSnapshot(
    const std::string& path, absl::string_view name, GraphStore* store) {
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
