#include "core/collections/npy_loader.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"

namespace engram::collections {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "'<f4' data is copied as is");

constexpr absl::string_view kMagic("\x93NUMPY", 6);
constexpr size_t kStepBytes = size_t{4} << 20;

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("not a supported .npy file: ", what));
}

// The value of `key` in numpy's header dict, e.g. {'descr': '<f4',
// 'fortran_order': False, 'shape': (3, 4), }: the text up to the next
// top-level comma or the closing brace.
std::optional<absl::string_view> DictValue(absl::string_view dict,
                                           absl::string_view key) {
  for (const char quote : {'\'', '"'}) {
    const std::string quoted =
        absl::StrCat(std::string(1, quote), key, std::string(1, quote));
    size_t at = dict.find(quoted);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = dict.substr(at + quoted.size());
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (!absl::ConsumePrefix(&rest, ":")) return std::nullopt;
    int depth = 0;
    size_t end = 0;
    for (; end < rest.size(); ++end) {
      const char c = rest[end];
      if (c == '(') ++depth;
      if (c == ')') --depth;
      if (depth == 0 && (c == ',' || c == '}')) break;
    }
    return absl::StripAsciiWhitespace(rest.substr(0, end));
  }
  return std::nullopt;
}

absl::StatusOr<std::string> ReadSidecar(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader sidecar, FileReader::Open(path));
  if (sidecar.size() > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a SHA-256 sidecar is one line, this file has ",
                     sidecar.size(), " bytes"));
  }
  std::string text(sidecar.size(), '\0');
  ENGRAM_RETURN_IF_ERROR(sidecar.Read(text.data(), text.size()));
  const absl::string_view digest =
      *absl::StrSplit(absl::StripLeadingAsciiWhitespace(text),
                      absl::ByAnyChar(" \t\r\n"))
           .begin();
  bool hex = digest.size() == 64;
  for (char c : digest) hex = hex && absl::ascii_isxdigit(c);
  if (!hex) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": expected 64 hex digits (the SHA-256 of the .npy file, as "
        "sha256sum writes it), found \"",
        absl::CEscape(digest.substr(0, 80)), "\""));
  }
  return absl::AsciiStrToLower(digest);
}

absl::Status WithPath(const std::string& path, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

}  // namespace

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix) {
  if (!absl::StartsWith(
          prefix, kMagic.substr(0, std::min(prefix.size(), kMagic.size())))) {
    return Invalid("wrong magic (expected \\x93NUMPY)");
  }
  if (prefix.size() < 10) {
    return absl::DataLossError(
        absl::StrCat("truncated .npy file: ", prefix.size(),
                     " bytes end inside the preamble"));
  }
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    return Invalid(absl::StrCat("format version ", major, ".", minor,
                                " (supported: 1.0, 2.0, 3.0)"));
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t preamble = 8 + length_bytes;
  if (prefix.size() < preamble) {
    return absl::DataLossError(
        "truncated .npy file: it ends inside the header length");
  }
  uint64_t header_length = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    header_length |= uint64_t{static_cast<unsigned char>(prefix[8 + i])}
                     << (8 * i);
  }
  if (prefix.size() - preamble < header_length) {
    return absl::DataLossError(
        absl::StrCat("truncated .npy file: the header needs ", header_length,
                     " bytes, ", prefix.size() - preamble, " remain"));
  }
  const absl::string_view dict = absl::StripAsciiWhitespace(
      prefix.substr(preamble, static_cast<size_t>(header_length)));
  if (!absl::StartsWith(dict, "{") || !absl::EndsWith(dict, "}")) {
    return Invalid("the header is not a dict literal");
  }
  const std::optional<absl::string_view> descr = DictValue(dict, "descr");
  const std::optional<absl::string_view> order =
      DictValue(dict, "fortran_order");
  const std::optional<absl::string_view> shape = DictValue(dict, "shape");
  if (!descr || !order || !shape) {
    return Invalid("the header lacks 'descr', 'fortran_order' or 'shape'");
  }
  if (*descr != "'<f4'" && *descr != "\"<f4\"") {
    return Invalid(absl::StrCat("dtype ", *descr,
                                " (only little-endian float32 '<f4' is "
                                "accepted; convert with arr.astype('<f4'))"));
  }
  if (*order != "False") {
    return Invalid(
        absl::StrCat("fortran_order ", *order, " (save a C-ordered array)"));
  }
  absl::string_view dims = *shape;
  if (!absl::ConsumePrefix(&dims, "(") || !absl::ConsumeSuffix(&dims, ")")) {
    return Invalid(absl::StrCat("shape ", *shape));
  }
  std::vector<uint64_t> values;
  for (absl::string_view part :
       absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v)) {
      return Invalid(absl::StrCat("shape ", *shape));
    }
    values.push_back(v);
  }
  if (values.size() != 2) {
    return Invalid(absl::StrCat("shape ", *shape, " has ", values.size(),
                                " dimensions; a collection needs 2 (rows, "
                                "dimension)"));
  }
  if (values[0] == 0 || values[1] == 0) {
    return Invalid(absl::StrCat("shape ", *shape, " is empty"));
  }
  NpyHeader header;
  header.rows = values[0];
  header.cols = values[1];
  header.data_offset = preamble + header_length;
  return header;
}

absl::StatusOr<NpyLoadResult> LoadNpyCollection(const std::string& path,
                                                absl::string_view name,
                                                CollectionStore* store) {
  ENGRAM_ASSIGN_OR_RETURN(FileReader file, FileReader::Open(path));
  std::optional<std::string> expected_sha;
  {
    absl::StatusOr<std::string> sidecar =
        ReadSidecar(absl::StrCat(path, kNpySidecarSuffix));
    if (sidecar.ok()) {
      expected_sha = *std::move(sidecar);
    } else if (!absl::IsNotFound(sidecar.status())) {
      return sidecar.status();
    }
  }
  Sha256 sha;
  auto read = [&](void* data, size_t size) -> absl::Status {
    ENGRAM_RETURN_IF_ERROR(file.Read(data, size));
    if (expected_sha) sha.Update(data, size);
    return absl::OkStatus();
  };

  // The preamble says how long the header is: read exactly the preamble
  // and the header, so the data starts at the file's position. Whatever is
  // missing is left for ParseNpyHeader to report.
  auto remaining = [&] { return file.size() - file.position(); };
  std::string prefix(static_cast<size_t>(std::min<uint64_t>(remaining(), 10)),
                     '\0');
  ENGRAM_RETURN_IF_ERROR(read(prefix.data(), prefix.size()));
  const bool long_length = prefix.size() == 10 &&
                           absl::StartsWith(prefix, kMagic) &&
                           (prefix[6] == 2 || prefix[6] == 3);
  auto extend = [&](uint64_t n) -> absl::Status {
    const size_t have = prefix.size();
    prefix.resize(have + static_cast<size_t>(std::min(n, remaining())));
    return read(prefix.data() + have, prefix.size() - have);
  };
  if (long_length) ENGRAM_RETURN_IF_ERROR(extend(2));
  const size_t length_bytes = long_length ? 4 : 2;
  if (prefix.size() == 8 + length_bytes) {
    uint64_t header_length = 0;
    for (size_t i = 0; i < length_bytes; ++i) {
      header_length |= uint64_t{static_cast<unsigned char>(prefix[8 + i])}
                       << (8 * i);
    }
    ENGRAM_RETURN_IF_ERROR(extend(header_length));
  }
  absl::StatusOr<NpyHeader> header = ParseNpyHeader(prefix);
  if (!header.ok()) return WithPath(path, header.status());
  if (header->cols > kMaxDimension || header->rows > kMaxCollectionRows) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape (", header->rows, ", ", header->cols,
                     ") is beyond the limits (", kMaxCollectionRows,
                     " rows, dimension ", kMaxDimension, ")"));
  }
  const uint64_t row_bytes = header->cols * sizeof(float);
  const uint64_t data_bytes = header->rows * row_bytes;
  if (remaining() < data_bytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated: shape (", header->rows, ", ", header->cols,
        ") needs ", data_bytes, " bytes of data, the file has ", remaining()));
  }

  UploadOptions options;
  options.name = std::string(name);
  options.create = true;
  options.dimension = static_cast<uint32_t>(header->cols);
  options.rows = header->rows;
  options.source = path;
  absl::StatusOr<std::unique_ptr<CollectionUpload>> upload =
      store->BeginUpload(options);
  if (!upload.ok()) return WithPath(path, upload.status());

  const uint64_t step_rows = std::max<uint64_t>(1, kStepBytes / row_bytes);
  std::vector<float> buf(static_cast<size_t>(step_rows * header->cols));
  absl::Status appended;
  for (uint64_t r = 0; r < header->rows; r += step_rows) {
    const uint64_t n = std::min(step_rows, header->rows - r);
    ENGRAM_RETURN_IF_ERROR(
        read(buf.data(), static_cast<size_t>(n * row_bytes)));
    if (appended.ok()) {
      appended = (*upload)->Append(
          kernels::MatrixView{buf.data(), static_cast<size_t>(n),
                              static_cast<size_t>(header->cols)});
    }
    // After a refused chunk the rest is still hashed when a sidecar
    // exists, so corruption is reported as corruption.
    if (!appended.ok() && !expected_sha) break;
  }
  if (expected_sha) {
    while (file.position() < file.size()) {
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(buf.size() * sizeof(float), remaining()));
      ENGRAM_RETURN_IF_ERROR(read(buf.data(), n));
    }
    const std::string actual = sha.FinishHex();
    if (actual != *expected_sha) {
      return absl::DataLossError(
          absl::StrCat(path, ": SHA-256 mismatch: ", path, kNpySidecarSuffix,
                       " says ", *expected_sha, ", the file hashes to ", actual,
                       "; the file is corrupt or the sidecar is stale"));
    }
  }
  if (!appended.ok()) return WithPath(path, appended);
  absl::StatusOr<std::shared_ptr<const Collection>> committed =
      (*upload)->Commit();
  if (!committed.ok()) return WithPath(path, committed.status());
  NpyLoadResult result;
  result.collection = *std::move(committed);
  result.sha256_verified = expected_sha.has_value();
  return result;
}

}  // namespace engram::collections
