// The data directory's files for what a collection version holds besides
// its rows: a segment's labels and a version's dead rows (tombstones). Both
// are framed like a manifest (an 8-byte magic, the message's length and
// CRC32C, then the message of manifest.proto), written atomically under a
// unique name and never rewritten, so that a manifest naming one with its
// checksum always finds the bytes it was committed with.
//
// Thread-safety: the functions are reentrant.
#ifndef ENGRAM_CORE_COLLECTIONS_STORED_ROWS_H_
#define ENGRAM_CORE_COLLECTIONS_STORED_ROWS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/collections/row_labels.h"

namespace engram::collections {

inline constexpr absl::string_view kLabelsMagic = "ENGRMLBL";
inline constexpr absl::string_view kDeadRowsMagic = "ENGRMDED";

// Writes the labels of every row of `labels` to `path` and returns the
// framed message's CRC32C. The disk's errors.
absl::StatusOr<uint32_t> WriteLabelsFile(const SegmentLabels& labels,
                                         const std::string& path);
// Reads a labels file: `rows` labels, one per row of its segment.
// DATA_LOSS naming `path` for a missing or damaged file, a checksum other
// than `crc`, or a row count other than `rows`.
absl::StatusOr<std::vector<RowLabels>> ReadLabelsFile(const std::string& path,
                                                      uint32_t crc,
                                                      uint64_t rows);

// Writes the dead rows of a version of `rows` rows (bit r of `words` set
// when row r is dead) and returns the CRC32C.
absl::StatusOr<uint32_t> WriteDeadRowsFile(absl::Span<const uint64_t> words,
                                           uint64_t rows,
                                           const std::string& path);
// The dead rows a dead-rows file lists, ascending. DATA_LOSS as
// ReadLabelsFile, or when it covers more rows than `max_rows`.
absl::StatusOr<std::vector<uint64_t>> ReadDeadRowsFile(const std::string& path,
                                                       uint32_t crc,
                                                       uint64_t max_rows);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_STORED_ROWS_H_
