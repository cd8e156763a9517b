#include "base/npy.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace engram::base {
namespace {

// The magic, the version and a 2-byte header length: the preamble of 1.0.
constexpr std::size_t kShortestPreamble = 10;

absl::Status HeaderError(absl::string_view reason, absl::string_view header) {
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot parse .npy header: ", reason, " in \"",
      absl::CEscape(absl::StripTrailingAsciiWhitespace(header)), "\""));
}

// What the header dict says, before any reader's policy is applied.
struct HeaderDict {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
};

// A parser for the Python dict literal numpy writes as the header. It is
// strict, as numpy.load is: exactly the three keys, each once.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text), rest_(text) {}

  absl::StatusOr<HeaderDict> Parse() {
    HeaderDict header;
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
              "a plain array of one dtype, e.g. float32 ('<f4')");
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

// Whether `prefix` starts like a .npy file as far as it goes: a prefix of
// the magic, or the magic and more.
bool StartsWithMagic(absl::string_view prefix) {
  const std::size_t n = std::min(prefix.size(), kNpyMagic.size());
  return prefix.substr(0, n) == kNpyMagic.substr(0, n);
}

bool IsSupportedVersion(int major, int minor) {
  return (major == 1 || major == 2 || major == 3) && minor == 0;
}

std::size_t PreambleSize(int major) {
  return major == 1 ? kShortestPreamble : kShortestPreamble + 2;
}

// The header length in the preamble; `prefix` holds the whole preamble.
uint64_t HeaderLength(absl::string_view prefix, int major) {
  uint64_t length = 0;
  for (std::size_t i = 8; i < PreambleSize(major); ++i) {
    length |= uint64_t{static_cast<unsigned char>(prefix[i])} << (8 * (i - 8));
  }
  return length;
}

}  // namespace

uint64_t NpyHeaderBytesNeeded(absl::string_view prefix) {
  if (!StartsWithMagic(prefix)) return prefix.size();
  if (prefix.size() < 8) return kShortestPreamble;
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  if (!IsSupportedVersion(major, minor)) return prefix.size();
  const std::size_t preamble = PreambleSize(major);
  if (prefix.size() < preamble) return preamble;
  return preamble + HeaderLength(prefix, major);
}

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix) {
  if (prefix.empty() || !StartsWithMagic(prefix)) {
    return absl::InvalidArgumentError(
        "not a .npy file: wrong magic (expected \\x93NUMPY)");
  }
  if (prefix.size() < kNpyMagic.size()) {
    return absl::DataLossError(absl::StrCat(
        "truncated .npy file: ", prefix.size(), " bytes end inside the magic"));
  }
  if (prefix.size() < 8) {
    return absl::DataLossError(
        "truncated .npy file: no format version after the magic");
  }
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  if (!IsSupportedVersion(major, minor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", major, ".", minor,
                     " (supported: 1.0, 2.0, 3.0)"));
  }
  const std::size_t preamble = PreambleSize(major);
  if (prefix.size() < preamble) {
    return absl::DataLossError("truncated .npy file: incomplete header length");
  }
  const uint64_t header_length = HeaderLength(prefix, major);
  if (prefix.size() - preamble < header_length) {
    return absl::DataLossError(
        absl::StrCat("truncated .npy file: header needs ", header_length,
                     " bytes, ", prefix.size() - preamble, " remain"));
  }
  ENGRAM_ASSIGN_OR_RETURN(
      HeaderDict dict,
      HeaderParser(
          prefix.substr(preamble, static_cast<std::size_t>(header_length)))
          .Parse());
  if (dict.fortran_order) {
    return absl::InvalidArgumentError(
        "fortran_order True is not supported: save a C-ordered array, e.g. "
        "np.save(path, np.ascontiguousarray(arr))");
  }
  NpyHeader header;
  header.major_version = major;
  header.descr = std::move(dict.descr);
  header.shape = std::move(dict.shape);
  header.data_offset = preamble + header_length;
  return header;
}

std::string NpyShapeString(const std::vector<uint64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

absl::Status CheckNpyFloat32(const NpyHeader& header) {
  if (header.descr == kNpyFloat32Descr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype '", header.descr,
      "': only little-endian float32 ('<f4') is supported; convert with "
      "numpy, e.g. np.save(path, arr.astype('<f4'))"));
}

absl::StatusOr<uint64_t> NpyDataBytes(const NpyHeader& header,
                                      std::size_t item_size) {
  // Any zero dimension makes the array empty, however large the others.
  if (std::find(header.shape.begin(), header.shape.end(), uint64_t{0}) !=
      header.shape.end()) {
    return 0;
  }
  uint64_t bytes = item_size;
  for (const uint64_t dim : header.shape) {
    if (bytes > std::numeric_limits<std::size_t>::max() / dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", NpyShapeString(header.shape), " is too large to address"));
    }
    bytes *= dim;
  }
  return bytes;
}

absl::Status CheckNpyDataSize(const NpyHeader& header, std::size_t item_size,
                              uint64_t available) {
  ENGRAM_ASSIGN_OR_RETURN(const uint64_t needed,
                          NpyDataBytes(header, item_size));
  if (available < needed) {
    return absl::DataLossError(
        absl::StrCat("truncated data: shape ", NpyShapeString(header.shape),
                     " needs ", needed, " bytes, the file has ", available));
  }
  return absl::OkStatus();
}

}  // namespace engram::base
