#include "core/collections/stored_rows.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/collections/manifest.pb.h"

namespace engram::collections {
namespace {

constexpr size_t kHeaderBytes = 16;  // magic, length, CRC32C
// Far above any labels file the per-row limits allow for 2^32 rows is not
// needed: a file this large is taken as corrupt.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 36;

// Frames `message` and writes it to `path`; returns the CRC32C.
absl::StatusOr<uint32_t> WriteFramed(absl::string_view magic,
                                     const google::protobuf::Message& message,
                                     const std::string& path) {
  std::string body;
  if (!message.SerializeToString(&body)) {
    return absl::InternalError(absl::StrCat(path, ": cannot serialise"));
  }
  const uint32_t crc = Crc32c(body.data(), body.size());
  std::string header(kHeaderBytes, '\0');
  std::memcpy(header.data(), magic.data(), 8);
  StoreLittleEndian<uint32_t>(header.data() + 8,
                              static_cast<uint32_t>(body.size()));
  StoreLittleEndian<uint32_t>(header.data() + 12, crc);
  if (body.size() > 0xffffffffu) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": ", body.size(), " bytes, over 4 GiB"));
  }
  ENGRAM_RETURN_IF_ERROR(WriteFileAtomically(path, [&](FileSink& sink) {
    ENGRAM_RETURN_IF_ERROR(sink.Write(header));
    return sink.Write(body);
  }));
  return crc;
}

absl::Status ReadFramed(absl::string_view magic, const std::string& path,
                        uint32_t crc, google::protobuf::Message* message) {
  absl::StatusOr<FileReader> reader = FileReader::Open(path);
  if (!reader.ok()) return absl::DataLossError(reader.status().message());
  if (reader->size() < kHeaderBytes || reader->size() > kMaxFileBytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": ", reader->size(), " bytes is not a ", magic, " file"));
  }
  std::string bytes(reader->size(), '\0');
  if (absl::Status read = reader->Read(bytes.data(), bytes.size());
      !read.ok()) {
    return absl::DataLossError(read.message());
  }
  if (absl::string_view(bytes).substr(0, 8) != magic) {
    return absl::DataLossError(
        absl::StrCat(path, ": wrong magic, not a ", magic, " file"));
  }
  const uint32_t length = LoadLittleEndian<uint32_t>(bytes.data() + 8);
  const uint32_t stored = LoadLittleEndian<uint32_t>(bytes.data() + 12);
  if (bytes.size() != kHeaderBytes + length) {
    return absl::DataLossError(absl::StrCat(
        path, ": the file has ", bytes.size(), " bytes, its header ",
        "declares ", kHeaderBytes + length));
  }
  const uint32_t computed =
      Crc32c(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes);
  if (computed != stored || stored != crc) {
    return absl::DataLossError(absl::StrFormat(
        "%s: checksum mismatch (manifest 0x%08x, header 0x%08x, computed "
        "0x%08x)",
        path, crc, stored, computed));
  }
  if (!message->ParseFromArray(bytes.data() + kHeaderBytes,
                               static_cast<int>(length))) {
    return absl::DataLossError(absl::StrCat(path, ": does not parse"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint32_t> WriteLabelsFile(const SegmentLabels& labels,
                                         const std::string& path) {
  storage::StoredLabels stored;
  stored.mutable_rows()->Reserve(static_cast<int>(labels.rows()));
  for (uint64_t r = 0; r < labels.rows(); ++r) {
    const RowLabels row = labels.LabelsOf(r);
    storage::StoredRowLabels* out = stored.add_rows();
    for (const Tag& tag : row.tags) {
      storage::StoredTag* t = out->add_tags();
      t->set_key(tag.key);
      if (tag.value.is_integer) {
        t->set_integer(tag.value.integer);
      } else {
        t->set_text(tag.value.text);
      }
    }
    for (const auto& [name, value] : row.attributes) {
      (*out->mutable_attributes())[name] = value;
    }
  }
  return WriteFramed(kLabelsMagic, stored, path);
}

absl::StatusOr<std::vector<RowLabels>> ReadLabelsFile(const std::string& path,
                                                      uint32_t crc,
                                                      uint64_t rows) {
  storage::StoredLabels stored;
  ENGRAM_RETURN_IF_ERROR(ReadFramed(kLabelsMagic, path, crc, &stored));
  if (static_cast<uint64_t>(stored.rows_size()) != rows) {
    return absl::DataLossError(absl::StrCat(path, ": labels ",
                                            stored.rows_size(), " rows, the ",
                                            "segment has ", rows));
  }
  std::vector<RowLabels> out(rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const storage::StoredRowLabels& in = stored.rows(static_cast<int>(r));
    for (const storage::StoredTag& t : in.tags()) {
      Tag tag;
      tag.key = t.key();
      tag.value = t.value_case() == storage::StoredTag::kInteger
                      ? TagValue::Integer(t.integer())
                      : TagValue::Text(t.text());
      out[r].tags.push_back(std::move(tag));
    }
    for (const auto& [name, value] : in.attributes()) {
      out[r].attributes[name] = value;
    }
  }
  return out;
}

absl::StatusOr<uint32_t> WriteDeadRowsFile(absl::Span<const uint64_t> words,
                                           uint64_t rows,
                                           const std::string& path) {
  storage::StoredDeadRows stored;
  stored.set_rows(rows);
  std::string bitmap((rows + 7) / 8, '\0');
  for (uint64_t r = 0; r < rows; ++r) {
    if ((words[r >> 6] >> (r & 63)) & 1) {
      bitmap[r >> 3] = static_cast<char>(bitmap[r >> 3] | (1 << (r & 7)));
    }
  }
  stored.set_bitmap(std::move(bitmap));
  return WriteFramed(kDeadRowsMagic, stored, path);
}

absl::StatusOr<std::vector<uint64_t>> ReadDeadRowsFile(const std::string& path,
                                                       uint32_t crc,
                                                       uint64_t max_rows) {
  storage::StoredDeadRows stored;
  ENGRAM_RETURN_IF_ERROR(ReadFramed(kDeadRowsMagic, path, crc, &stored));
  if (stored.rows() > max_rows ||
      stored.bitmap().size() != (stored.rows() + 7) / 8) {
    return absl::DataLossError(absl::StrCat(
        path, ": covers ", stored.rows(), " rows in ", stored.bitmap().size(),
        " bytes; the collection has ", max_rows));
  }
  std::vector<uint64_t> dead;
  const std::string& bitmap = stored.bitmap();
  for (uint64_t r = 0; r < stored.rows(); ++r) {
    if ((static_cast<unsigned char>(bitmap[r >> 3]) >> (r & 7)) & 1) {
      dead.push_back(r);
    }
  }
  return dead;
}

}  // namespace engram::collections
