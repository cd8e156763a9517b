// Loading a plain NumPy .npy file as a resident collection: the way a
// collection is declared in the service configuration from a file made
// anywhere with numpy.save.
//
// Accepted: format versions 1.0, 2.0 and 3.0, dtype '<f4' (little-endian
// float32), fortran_order False, 2-D shape (rows >= 1, cols >= 1): one
// collection row per array row. Anything else is INVALID_ARGUMENT naming the
// file and what was found. Data shorter than the shape needs is DATA_LOSS
// (truncated); bytes after the data are ignored, as numpy.load does.
//
// Integrity: a .npy file has no checksum of its own, so when a sidecar file
// "<path>.sha256" exists it is checked. It holds the SHA-256 of the whole
// .npy file as 64 hex digits, optionally followed by whitespace and a file
// name: exactly what `sha256sum file.npy > file.npy.sha256` writes. A
// mismatch is DATA_LOSS and nothing is committed; a malformed sidecar is
// INVALID_ARGUMENT. Without a sidecar the file loads unverified, and the
// result says so (the operator chose not to checksum it).
//
// The format itself (preamble, header dict, data length) is read by
// base/npy.h, the parser client/npy.h shares; this file adds what a
// collection needs of it and streams the data straight into a staged upload,
// never holding the file twice.
//
// Thread-safety: the functions are reentrant.
#ifndef ENGRAM_CORE_COLLECTIONS_NPY_LOADER_H_
#define ENGRAM_CORE_COLLECTIONS_NPY_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/collections/collection_store.h"

namespace engram::collections {

inline constexpr absl::string_view kNpySidecarSuffix = ".sha256";

struct NpyHeader {
  uint64_t rows = 0;
  uint64_t cols = 0;
  // Offset of the first value in the file.
  uint64_t data_offset = 0;
};

// Parses the preamble and header at the start of a .npy file and checks
// that they describe a collection. `prefix` must hold at least the whole
// header (the first 64 KiB of the file, or all of it, always does for a
// version 1 file). Errors are base::ParseNpyHeader's (INVALID_ARGUMENT, or
// DATA_LOSS when `prefix` ends inside the header) and INVALID_ARGUMENT for a
// dtype, dimension count or empty shape a collection cannot take.
absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix);

struct NpyLoadResult {
  std::shared_ptr<const Collection> collection;
  // Whether a "<path>.sha256" sidecar was found and matched.
  bool sha256_verified = false;
};

// Loads `path` into `store` as a new collection `name` (source `path`,
// without ids: rows are identified by their index). Errors as in the file
// comment, prefixed with the path, plus the store's (ALREADY_EXISTS,
// RESOURCE_EXHAUSTED before any allocation, INVALID_ARGUMENT for a
// non-finite value).
absl::StatusOr<NpyLoadResult> LoadNpyCollection(const std::string& path,
                                                absl::string_view name,
                                                CollectionStore* store);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_NPY_LOADER_H_
