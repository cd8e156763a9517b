#include "client/npy.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/npy.h"
#include "base/status_macros.h"
#include "client/file_io.h"

namespace engram::client {
namespace {

// numpy pads the preamble plus header to a multiple of 64 bytes so that the
// data is aligned for memory mapping; writers should do the same.
constexpr std::size_t kHeaderAlignment = 64;

uint32_t LoadLittleEndian32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
         static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
}

void AppendLittleEndian(uint64_t value, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

// A parsed file: its header and the bytes after it.
struct Array {
  base::NpyHeader header;
  absl::string_view data;
};

// The client has the whole file in hand, so bytes that end early are bad
// input like any other: every error is INVALID_ARGUMENT, as npy.h promises.
absl::Status AsInvalidArgument(const absl::Status& status) {
  if (status.ok()) return status;
  return absl::InvalidArgumentError(status.message());
}

absl::StatusOr<Array> DecodeArray(absl::string_view bytes) {
  absl::StatusOr<base::NpyHeader> header = base::ParseNpyHeader(bytes);
  if (!header.ok()) return AsInvalidArgument(header.status());
  Array array;
  array.header = *std::move(header);
  array.data = bytes.substr(static_cast<std::size_t>(array.header.data_offset));
  return array;
}

}  // namespace

absl::StatusOr<FloatMatrix> DecodeNpy(absl::string_view bytes) {
  ENGRAM_ASSIGN_OR_RETURN(const Array array, DecodeArray(bytes));
  const base::NpyHeader& header = array.header;
  ENGRAM_RETURN_IF_ERROR(base::CheckNpyFloat32(header));
  if (header.shape.empty() || header.shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported shape ", base::NpyShapeString(header.shape),
                     ": ", header.shape.size(),
                     "-dimensional arrays are not supported, only 1-D or 2-D"));
  }
  ENGRAM_RETURN_IF_ERROR(AsInvalidArgument(
      base::CheckNpyDataSize(header, sizeof(float), array.data.size())));

  FloatMatrix matrix;
  matrix.rows =
      static_cast<std::size_t>(header.shape.size() == 2 ? header.shape[0] : 1);
  matrix.cols = static_cast<std::size_t>(header.shape.back());
  matrix.values.resize(matrix.rows * matrix.cols);
  for (std::size_t i = 0; i < matrix.values.size(); ++i) {
    const uint32_t bits =
        LoadLittleEndian32(array.data.data() + i * sizeof(float));
    std::memcpy(&matrix.values[i], &bits, sizeof(float));
  }
  return matrix;
}

absl::StatusOr<std::vector<uint64_t>> DecodeNpyIds(absl::string_view bytes) {
  ENGRAM_ASSIGN_OR_RETURN(const Array array, DecodeArray(bytes));
  const base::NpyHeader& header = array.header;
  const std::string& descr = header.descr;
  // '|' marks a one-byte type, '<' little-endian, '=' native (little on
  // every platform we build for).
  const bool little = descr.size() == 3 && (descr[0] == '<' || descr[0] == '=');
  const char kind = descr.size() == 3 ? descr[1] : 0;
  const int width = descr.size() == 3 ? descr[2] - '0' : 0;
  if (!little || (kind != 'u' && kind != 'i') || (width != 4 && width != 8)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported dtype '", descr,
        "' for ids: use little-endian integers ('<u8', '<i8', '<u4' or "
        "'<i4'), e.g. np.save(path, ids.astype('<u8'))"));
  }
  const auto& shape = header.shape;
  if (!(shape.size() == 1 || (shape.size() == 2 && shape[1] == 1))) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported shape ", base::NpyShapeString(shape),
                     " for ids: one id per row, shape (N,) or (N, 1)"));
  }
  ENGRAM_RETURN_IF_ERROR(AsInvalidArgument(base::CheckNpyDataSize(
      header, static_cast<std::size_t>(width), array.data.size())));
  std::vector<uint64_t> ids(static_cast<std::size_t>(shape[0]));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto* b =
        reinterpret_cast<const unsigned char*>(array.data.data() + i * width);
    uint64_t value = 0;
    for (int j = 0; j < width; ++j) value |= uint64_t{b[j]} << (8 * j);
    const bool negative = kind == 'i' && (b[width - 1] & 0x80) != 0;
    if (negative) {
      return absl::InvalidArgumentError(
          absl::StrCat("ids[", i, "] is negative; ids are unsigned 64-bit"));
    }
    ids[i] = value;
  }
  return ids;
}

absl::StatusOr<std::string> EncodeNpy(const FloatMatrix& matrix,
                                      const NpyWriteOptions& options) {
  if (options.major_version < 1 || options.major_version > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", options.major_version,
                     " (supported: 1, 2, 3)"));
  }
  if (options.one_dimensional && matrix.rows != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a 1-D .npy array needs exactly one row, got ", matrix.rows));
  }
  if (matrix.cols != 0 && matrix.rows > matrix.values.size() / matrix.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", matrix.rows, " x ", matrix.cols, " matrix needs more than ",
        matrix.values.size(), " values"));
  }
  if (matrix.values.size() != matrix.rows * matrix.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", matrix.rows, " x ", matrix.cols, " matrix needs ",
        matrix.rows * matrix.cols, " values, got ", matrix.values.size()));
  }

  const std::vector<uint64_t> shape =
      options.one_dimensional ? std::vector<uint64_t>{matrix.cols}
                              : std::vector<uint64_t>{matrix.rows, matrix.cols};
  std::string header = absl::StrCat("{'descr': '", base::kNpyFloat32Descr,
                                    "', 'fortran_order': False, 'shape': ",
                                    base::NpyShapeString(shape), ", }");
  const std::size_t preamble = options.major_version == 1 ? 10 : 12;
  // Pad with spaces to the alignment, leaving room for the final newline.
  const std::size_t unpadded = preamble + header.size() + 1;
  header.append(
      (kHeaderAlignment - unpadded % kHeaderAlignment) % kHeaderAlignment, ' ');
  header.push_back('\n');
  if (options.major_version == 1 &&
      header.size() > std::numeric_limits<uint16_t>::max()) {
    return absl::InvalidArgumentError(
        "header too long for .npy format version 1; use version 2");
  }

  std::string out;
  out.reserve(preamble + header.size() + matrix.values.size() * sizeof(float));
  out.append(base::kNpyMagic.data(), base::kNpyMagic.size());
  out.push_back(static_cast<char>(options.major_version));
  out.push_back(0);
  AppendLittleEndian(header.size(), preamble - 8, &out);
  out.append(header);
  for (float value : matrix.values) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    AppendLittleEndian(bits, sizeof(bits), &out);
  }
  return out;
}

absl::StatusOr<FloatMatrix> ReadNpyFile(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  absl::StatusOr<FloatMatrix> matrix = DecodeNpy(bytes);
  if (!matrix.ok()) {
    return absl::Status(matrix.status().code(),
                        absl::StrCat(path, ": ", matrix.status().message()));
  }
  return matrix;
}

absl::StatusOr<std::vector<uint64_t>> ReadNpyIdsFile(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  absl::StatusOr<std::vector<uint64_t>> ids = DecodeNpyIds(bytes);
  if (!ids.ok()) {
    return absl::Status(ids.status().code(),
                        absl::StrCat(path, ": ", ids.status().message()));
  }
  return ids;
}

absl::Status WriteNpyFile(const std::string& path, const FloatMatrix& matrix,
                          const NpyWriteOptions& options) {
  ENGRAM_ASSIGN_OR_RETURN(std::string bytes, EncodeNpy(matrix, options));
  return WriteStringToFile(path, bytes);
}

}  // namespace engram::client
