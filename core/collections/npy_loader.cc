#include "core/collections/npy_loader.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/npy.h"
#include "base/status_macros.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"

namespace engram::collections {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "'<f4' data is copied as is");

constexpr size_t kStepBytes = size_t{4} << 20;

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("not a supported .npy file: ", what));
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

// The shared parse and what a collection needs beyond it: '<f4' rows of a
// 2-D array with at least one row and one column.
absl::StatusOr<base::NpyHeader> ParseCollectionHeader(
    absl::string_view prefix) {
  ENGRAM_ASSIGN_OR_RETURN(base::NpyHeader header, base::ParseNpyHeader(prefix));
  ENGRAM_RETURN_IF_ERROR(base::CheckNpyFloat32(header));
  const std::string shape = base::NpyShapeString(header.shape);
  if (header.shape.size() != 2) {
    return Invalid(absl::StrCat("shape ", shape, " has ", header.shape.size(),
                                " dimensions; a collection needs 2 (rows, "
                                "dimension)"));
  }
  if (header.shape[0] == 0 || header.shape[1] == 0) {
    return Invalid(absl::StrCat("shape ", shape, " is empty"));
  }
  return header;
}

absl::Status WithPath(const std::string& path, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

}  // namespace

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix) {
  ENGRAM_ASSIGN_OR_RETURN(const base::NpyHeader parsed,
                          ParseCollectionHeader(prefix));
  NpyHeader header;
  header.rows = parsed.shape[0];
  header.cols = parsed.shape[1];
  header.data_offset = parsed.data_offset;
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

  // Read exactly the preamble and the header, so the data starts at the
  // file's position. Whatever is missing is left for the parse to report.
  auto remaining = [&] { return file.size() - file.position(); };
  std::string prefix;
  while (remaining() > 0) {
    const uint64_t needed = base::NpyHeaderBytesNeeded(prefix);
    if (needed <= prefix.size()) break;
    const size_t have = prefix.size();
    prefix.resize(have +
                  static_cast<size_t>(std::min(needed - have, remaining())));
    ENGRAM_RETURN_IF_ERROR(read(prefix.data() + have, prefix.size() - have));
  }
  absl::StatusOr<base::NpyHeader> parsed = ParseCollectionHeader(prefix);
  if (!parsed.ok()) return WithPath(path, parsed.status());
  const uint64_t rows = parsed->shape[0];
  const uint64_t cols = parsed->shape[1];
  if (cols > kMaxDimension || rows > kMaxCollectionRows) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": shape (", rows, ", ", cols, ") is beyond the limits (",
        kMaxCollectionRows, " rows, dimension ", kMaxDimension, ")"));
  }
  ENGRAM_RETURN_IF_ERROR(WithPath(
      path, base::CheckNpyDataSize(*parsed, sizeof(float), remaining())));
  const uint64_t row_bytes = cols * sizeof(float);

  UploadOptions options;
  options.name = std::string(name);
  options.create = true;
  options.dimension = static_cast<uint32_t>(cols);
  options.rows = rows;
  options.source = path;
  absl::StatusOr<std::unique_ptr<CollectionUpload>> upload =
      store->BeginUpload(options);
  if (!upload.ok()) return WithPath(path, upload.status());

  const uint64_t step_rows = std::max<uint64_t>(1, kStepBytes / row_bytes);
  std::vector<float> buf(static_cast<size_t>(step_rows * cols));
  absl::Status appended;
  for (uint64_t r = 0; r < rows; r += step_rows) {
    const uint64_t n = std::min(step_rows, rows - r);
    ENGRAM_RETURN_IF_ERROR(
        read(buf.data(), static_cast<size_t>(n * row_bytes)));
    if (appended.ok()) {
      appended = (*upload)->Append(kernels::MatrixView{
          buf.data(), static_cast<size_t>(n), static_cast<size_t>(cols)});
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
