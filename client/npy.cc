#include "client/npy.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "client/file_io.h"

namespace engram::client {
namespace {

constexpr absl::string_view kMagic("\x93NUMPY", 6);
constexpr absl::string_view kFloat32Descr = "<f4";
// numpy pads the preamble plus header to a multiple of 64 bytes so that the
// data is aligned for memory mapping; writers should do the same.
constexpr std::size_t kHeaderAlignment = 64;

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
};

absl::Status HeaderError(absl::string_view reason, absl::string_view header) {
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot parse .npy header: ", reason, " in \"",
      absl::CEscape(absl::StripTrailingAsciiWhitespace(header)), "\""));
}

// A parser for the Python dict literal numpy writes as the header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text), rest_(text) {}

  absl::StatusOr<Header> Parse() {
    Header header;
    bool has_descr = false, has_order = false, has_shape = false;
    SkipSpace();
    if (!Consume('{')) return Error("expected '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      ENGRAM_ASSIGN_OR_RETURN(std::string key, ParseString());
      SkipSpace();
      if (!Consume(':'))
        return Error(absl::StrCat("expected ':' after '", key, "'"));
      SkipSpace();
      if (key == "descr") {
        if (has_descr) return Error("duplicate key 'descr'");
        has_descr = true;
        if (!rest_.empty() && rest_.front() == '[') {
          return absl::InvalidArgumentError(
              "unsupported dtype: structured arrays are not supported; save "
              "a plain float32 array (dtype '<f4')");
        }
        ENGRAM_ASSIGN_OR_RETURN(header.descr, ParseString());
      } else if (key == "fortran_order") {
        if (has_order) return Error("duplicate key 'fortran_order'");
        has_order = true;
        ENGRAM_ASSIGN_OR_RETURN(header.fortran_order, ParseBool());
      } else if (key == "shape") {
        if (has_shape) return Error("duplicate key 'shape'");
        has_shape = true;
        ENGRAM_ASSIGN_OR_RETURN(header.shape, ParseShape());
      } else {
        return Error(absl::StrCat("unknown key '", key, "'"));
      }
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (!rest_.empty()) return Error("unexpected text after '}'");
    if (!has_descr) return HeaderError("missing key 'descr'", text_);
    if (!has_order) return HeaderError("missing key 'fortran_order'", text_);
    if (!has_shape) return HeaderError("missing key 'shape'", text_);
    return header;
  }

 private:
  absl::Status Error(absl::string_view reason) const {
    return HeaderError(
        absl::StrCat(reason, " at offset ", text_.size() - rest_.size()),
        text_);
  }

  void SkipSpace() {
    while (!rest_.empty() && absl::ascii_isspace(rest_.front())) {
      rest_.remove_prefix(1);
    }
  }

  bool Consume(char c) {
    if (rest_.empty() || rest_.front() != c) return false;
    rest_.remove_prefix(1);
    return true;
  }

  bool ConsumeWord(absl::string_view word) {
    if (!absl::StartsWith(rest_, word)) return false;
    rest_.remove_prefix(word.size());
    return true;
  }

  // A quoted string without escapes, which numpy never writes in a header.
  absl::StatusOr<std::string> ParseString() {
    if (rest_.empty() || (rest_.front() != '\'' && rest_.front() != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = rest_.front();
    const std::size_t end = rest_.find(quote, 1);
    if (end == absl::string_view::npos) return Error("unterminated string");
    std::string value(rest_.substr(1, end - 1));
    rest_.remove_prefix(end + 1);
    return value;
  }

  absl::StatusOr<bool> ParseBool() {
    if (ConsumeWord("True")) return true;
    if (ConsumeWord("False")) return false;
    return Error("expected True or False");
  }

  absl::StatusOr<uint64_t> ParseDimension() {
    std::size_t digits = 0;
    while (digits < rest_.size() && absl::ascii_isdigit(rest_[digits])) {
      ++digits;
    }
    if (digits == 0) return Error("expected a non-negative integer");
    uint64_t value = 0;
    for (std::size_t i = 0; i < digits; ++i) {
      const uint64_t digit = static_cast<uint64_t>(rest_[i] - '0');
      if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
        return Error("dimension too large");
      }
      value = value * 10 + digit;
    }
    rest_.remove_prefix(digits);
    Consume('L');  // Python 2 numpy wrote long integers as e.g. 3L.
    return value;
  }

  absl::StatusOr<std::vector<uint64_t>> ParseShape() {
    if (!Consume('(')) return Error("expected '(' to start the shape");
    std::vector<uint64_t> shape;
    while (true) {
      SkipSpace();
      if (Consume(')')) break;
      ENGRAM_ASSIGN_OR_RETURN(uint64_t dim, ParseDimension());
      shape.push_back(dim);
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume(')')) break;
      return Error("expected ',' or ')' in the shape");
    }
    return shape;
  }

  const absl::string_view text_;
  absl::string_view rest_;
};

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

std::string ShapeString(const std::vector<uint64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// A parsed file: its header and the bytes after it.
struct Array {
  Header header;
  absl::string_view data;
};

absl::StatusOr<Array> DecodeArray(absl::string_view bytes) {
  if (!absl::StartsWith(bytes, kMagic)) {
    return absl::InvalidArgumentError(
        "not a .npy file: wrong magic (expected \\x93NUMPY)");
  }
  if (bytes.size() < kMagic.size() + 2) {
    return absl::InvalidArgumentError(
        "truncated .npy file: no format version after the magic");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", major, ".", minor,
                     " (supported: 1.0, 2.0, 3.0)"));
  }
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  const std::size_t preamble = 8 + length_bytes;
  if (bytes.size() < preamble) {
    return absl::InvalidArgumentError(
        "truncated .npy file: incomplete header length");
  }
  uint64_t header_length = 0;
  for (std::size_t i = 0; i < length_bytes; ++i) {
    header_length |=
        static_cast<uint64_t>(static_cast<unsigned char>(bytes[8 + i]))
        << (8 * i);
  }
  if (bytes.size() - preamble < header_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated .npy file: header needs ", header_length,
                     " bytes, ", bytes.size() - preamble, " remain"));
  }
  const absl::string_view header_text = bytes.substr(preamble, header_length);
  Array array;
  ENGRAM_ASSIGN_OR_RETURN(array.header, HeaderParser(header_text).Parse());
  if (array.header.fortran_order) {
    return absl::InvalidArgumentError(
        "fortran_order True is not supported: save a C-ordered array, e.g. "
        "np.save(path, np.ascontiguousarray(arr))");
  }
  array.data = bytes.substr(preamble + header_length);
  return array;
}

// Whether `data` holds `count` values of `width` bytes.
absl::Status CheckDataSize(const Header& header, absl::string_view data,
                           uint64_t count, std::size_t width) {
  if (data.size() / width < count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "truncated data: shape ", ShapeString(header.shape), " needs ",
        count * width, " bytes, the file has ", data.size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FloatMatrix> DecodeNpy(absl::string_view bytes) {
  ENGRAM_ASSIGN_OR_RETURN(const Array array, DecodeArray(bytes));
  const Header& header = array.header;
  if (header.descr != kFloat32Descr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported dtype '", header.descr,
        "': only little-endian float32 ('<f4') is supported; convert with "
        "numpy, e.g. np.save(path, arr.astype('<f4'))"));
  }
  if (header.shape.empty() || header.shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported shape ", ShapeString(header.shape), ": ",
                     header.shape.size(),
                     "-dimensional arrays are not supported, only 1-D or 2-D"));
  }
  const uint64_t rows = header.shape.size() == 2 ? header.shape[0] : 1;
  const uint64_t cols = header.shape.back();
  const absl::string_view data = array.data;
  constexpr uint64_t kMaxValues =
      std::numeric_limits<std::size_t>::max() / sizeof(float);
  if (cols != 0 && rows > kMaxValues / cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape ", ShapeString(header.shape), " is too large to address"));
  }
  const uint64_t count = rows * cols;
  ENGRAM_RETURN_IF_ERROR(CheckDataSize(header, data, count, sizeof(float)));

  FloatMatrix matrix;
  matrix.rows = static_cast<std::size_t>(rows);
  matrix.cols = static_cast<std::size_t>(cols);
  matrix.values.resize(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < matrix.values.size(); ++i) {
    const uint32_t bits = LoadLittleEndian32(data.data() + i * sizeof(float));
    std::memcpy(&matrix.values[i], &bits, sizeof(float));
  }
  return matrix;
}

absl::StatusOr<std::vector<uint64_t>> DecodeNpyIds(absl::string_view bytes) {
  ENGRAM_ASSIGN_OR_RETURN(const Array array, DecodeArray(bytes));
  const Header& header = array.header;
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
        absl::StrCat("unsupported shape ", ShapeString(shape),
                     " for ids: one id per row, shape (N,) or (N, 1)"));
  }
  const uint64_t count = shape[0];
  if (count > std::numeric_limits<std::size_t>::max() / 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape ", ShapeString(shape), " is too large to address"));
  }
  ENGRAM_RETURN_IF_ERROR(CheckDataSize(header, array.data, count, width));
  std::vector<uint64_t> ids(static_cast<std::size_t>(count));
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
  std::string header = absl::StrCat(
      "{'descr': '", kFloat32Descr,
      "', 'fortran_order': False, 'shape': ", ShapeString(shape), ", }");
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
  out.append(kMagic.data(), kMagic.size());
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
