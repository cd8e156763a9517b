// Reading and writing NumPy .npy files of float32 data, the input format of
// `engram-cli cosine --queries/--targets`, and reading integer ids
// (`engram-cli collection upload --ids`).
//
// Supported: format versions 1.0, 2.0 and 3.0; dtype '<f4' (little-endian
// float32); C order; 1-D arrays (read as one row, 1 x n) and 2-D arrays.
// Anything else is rejected with INVALID_ARGUMENT and a message saying what
// was found and, where there is one, how to convert it. As with numpy.load,
// bytes after the array's data are ignored. The format is parsed by
// base/npy.h, which the engine's loader shares; bytes that end early, which
// it reports as DATA_LOSS, are INVALID_ARGUMENT here like any other bad file.
// All functions are thread-safe.
#ifndef ENGRAM_CLIENT_NPY_H_
#define ENGRAM_CLIENT_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/types.h"

namespace engram::client {

struct NpyWriteOptions {
  // Format version 1, 2 or 3 (the header length field is 16 bits in 1.0 and
  // 32 bits after; 3.0 allows a UTF-8 header).
  int major_version = 1;
  // Writes shape (cols,) instead of (rows, cols); requires rows == 1.
  bool one_dimensional = false;
};

// Parses the bytes of a .npy file.
absl::StatusOr<FloatMatrix> DecodeNpy(absl::string_view bytes);

// Parses the bytes of a .npy file of ids, one per row of a collection
// upload: shape (N,) or (N, 1), dtype '<u8', '<i8', '<u4' or '<i4' ('='
// for '<' too). INVALID_ARGUMENT as for DecodeNpy, for another dtype or
// shape, and for a negative id (naming its index).
absl::StatusOr<std::vector<uint64_t>> DecodeNpyIds(absl::string_view bytes);

// The bytes of a .npy file holding `matrix`. Returns INVALID_ARGUMENT for an
// unsupported version, one_dimensional with rows != 1, or values.size() !=
// rows * cols.
absl::StatusOr<std::string> EncodeNpy(const FloatMatrix& matrix,
                                      const NpyWriteOptions& options = {});

// DecodeNpy of the file at `path`; errors are prefixed with the path. A
// missing file gives NOT_FOUND.
absl::StatusOr<FloatMatrix> ReadNpyFile(const std::string& path);

// DecodeNpyIds of the file at `path`, errors prefixed with the path.
absl::StatusOr<std::vector<uint64_t>> ReadNpyIdsFile(const std::string& path);

// Writes EncodeNpy(matrix, options) to `path`, replacing any file there.
absl::Status WriteNpyFile(const std::string& path, const FloatMatrix& matrix,
                          const NpyWriteOptions& options = {});

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_NPY_H_
