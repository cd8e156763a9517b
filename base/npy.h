// The NumPy .npy format as both of its readers see it: the client's
// (client/npy.h, the files of engram-cli) and the engine's
// (core/collections/npy_loader.h, collections loaded at start-up). It parses
// the preamble and the header and does the arithmetic of the data that
// follows; what a reader accepts beyond that (dtypes, dimensions, limits) and
// how it gets the bytes (all at once, or streamed) are its own business.
//
// A file is the magic "\x93NUMPY", the format version (major, minor), the
// header length (2 little-endian bytes in 1.0, 4 in 2.0 and 3.0), the header
// (a Python dict literal such as {'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }, padded with spaces and ended by '\n'), then the data.
//
// Errors: INVALID_ARGUMENT for what is not a .npy file this code reads, with
// a message saying what was found and, where there is one, how to convert
// it; DATA_LOSS for bytes that end before what they promise. Messages do not
// name the file: the callers prefix the path. All functions are thread-safe.
#ifndef ENGRAM_BASE_NPY_H_
#define ENGRAM_BASE_NPY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace engram::base {

inline constexpr absl::string_view kNpyMagic("\x93NUMPY", 6);

// The dtype of little-endian float32 data, the only floating-point dtype the
// service reads or writes.
inline constexpr absl::string_view kNpyFloat32Descr = "<f4";

struct NpyHeader {
  int major_version = 0;  // 1, 2 or 3; the minor version is always 0
  // The dtype as the header spells it, e.g. "<f4"; never a structured dtype.
  std::string descr;
  // Empty for a 0-d array (one value).
  std::vector<uint64_t> shape;
  // Where the data starts, counted from the first byte of the file.
  uint64_t data_offset = 0;
};

// How many bytes from the start of a file ParseNpyHeader needs, judged from
// the `prefix` read so far, for a reader that streams the file: it reads
// until it holds that many bytes (or the file ends) and asks again, and once
// the answer is no more than it holds, it parses. The answer grows from the
// shortest preamble to the whole preamble to the end of the header, and
// never reaches into the data. A prefix that is not a .npy file needs no
// more bytes: ParseNpyHeader then says what is wrong with it.
uint64_t NpyHeaderBytesNeeded(absl::string_view prefix);

// Parses the preamble and header at the start of `prefix`, which may be the
// whole file or any prefix holding its header; later bytes are not looked
// at. INVALID_ARGUMENT for an empty prefix or a wrong magic, a version other
// than 1.0, 2.0 or 3.0, a header that is not numpy's dict of exactly
// 'descr', 'fortran_order' and 'shape', a structured dtype, and
// fortran_order True (no reader here takes column-major data); DATA_LOSS when
// `prefix` ends inside the preamble or the header.
absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix);

// "(2, 3)" for a 2-D shape and "(3,)" for a 1-D one, as Python writes them.
std::string NpyShapeString(const std::vector<uint64_t>& shape);

// OK when the header's dtype is kNpyFloat32Descr, else INVALID_ARGUMENT
// naming the dtype found and how to convert it.
absl::Status CheckNpyFloat32(const NpyHeader& header);

// The bytes of data the header's shape needs at `item_size` bytes a value:
// the product of its dimensions times `item_size`. INVALID_ARGUMENT "shape
// ... is too large to address" when that exceeds what a size_t can count.
absl::StatusOr<uint64_t> NpyDataBytes(const NpyHeader& header,
                                      std::size_t item_size);

// OK when `available` bytes after the header hold the data the shape needs
// (bytes past it are ignored, as numpy.load does), else DATA_LOSS "truncated
// data: shape ... needs N bytes, the file has M", or NpyDataBytes's error.
absl::Status CheckNpyDataSize(const NpyHeader& header, std::size_t item_size,
                              uint64_t available);

}  // namespace engram::base

#endif  // ENGRAM_BASE_NPY_H_
