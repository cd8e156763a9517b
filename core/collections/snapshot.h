// Snapshot files of resident collections and graphs: engram's own binary
// format, written atomically (atomic_file.h) and checksummed, so a replica
// can load exactly what another wrote and a crash or a bad disk never yields
// a file that loads with wrong contents.
//
// Layout (all integers little-endian; the loader and writer require a
// little-endian host, as every platform we build for is):
//
//   offset size  field
//   0      8     magic: "ENGRMCOL" (collection) or "ENGRMGRF" (graph)
//   8      4     format version (1)
//   12     4     header bytes (64)
//   16     8     payload bytes (everything after the header)
//   24     4     CRC32C of the payload
//   28     4     flags: bit 0, the collection carries ids (graph: 0)
//   32     8     collection: rows;      graph: num_nodes
//   40     8     collection: dimension; graph: num_edges
//   48     4     name bytes
//   52     4     metadata bytes (graph: 0)
//   56     4     graph: its version (Graph::version; 0: none, as in files
//                 written before graphs had versions); collection: 0
//   60     4     CRC32C of bytes [0, 60)
//
//   payload: name; metadata as (u32 key length, key, u32 value length,
//   value) per entry, by key (a segment file's: one entry with the empty
//   key, whose value is the zeros that put its vectors at a 64-byte file
//   offset, so that the file can be mapped and its rows used in place;
//   readers skip it); then
//     collection: ids (rows x u64, when flagged), vectors (rows x dimension
//                 float32, row-major);
//     graph:      row_offsets ((num_nodes + 1) x u32), then the edges as
//                 (u32 target, float32 weight) pairs.
//
// The header has its own checksum so that a flipped bit in a size is caught
// before the size is trusted. Loading checks, in this order: the magic
// (INVALID_ARGUMENT: not a snapshot of that kind), the header's length and
// checksum (DATA_LOSS), the version (INVALID_ARGUMENT), the sizes against
// each other and the file's length (DATA_LOSS: truncated or extended), then
// reserves the budget and reads the ids and vectors straight into a staged
// upload (StagedRows), or maps the file and leaves them where they are
// (AppendSegmentSnapshot's `map`), in pieces that are checksummed and
// checked as they arrive, on a few threads for a large file
// (SnapshotLoadSplit). The rows
// count as received only when the payload checksum matches (else DATA_LOSS,
// reported in preference to a value the checks refused, since corrupt bytes
// may have made it) and every row passed the stores' own validation (else
// the first bad row's error); the upload is then committed. Every message
// starts with the file's path. A file that fails any check leaves nothing
// visible.
//
// Thread-safety: the functions are reentrant; a load's threads are its
// own, started and joined within the call. Writing reads an immutable
// snapshot, so a collection may be written while it is searched and
// appended to (the file holds the version passed in).
#ifndef ENGRAM_CORE_COLLECTIONS_SNAPSHOT_H_
#define ENGRAM_CORE_COLLECTIONS_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"

namespace engram::collections {

inline constexpr absl::string_view kCollectionSnapshotMagic = "ENGRMCOL";
inline constexpr absl::string_view kGraphSnapshotMagic = "ENGRMGRF";
inline constexpr uint32_t kSnapshotVersion = 1;
inline constexpr size_t kSnapshotHeaderBytes = 64;

// Writes `collection` (name, metadata, ids when it has any, vectors) to
// `path` atomically. Norms are not stored: loading recomputes them while it
// checks the values.
absl::Status WriteCollectionSnapshot(const Collection& collection,
                                     const std::string& path);

// Writes one segment's rows as a collection snapshot named `name` (no
// metadata; ids when the segment has its own) and returns the payload's
// CRC32C: the data directory's segment files.
absl::StatusOr<uint32_t> WriteSegmentSnapshot(absl::string_view name,
                                              const Segment& segment,
                                              const std::string& path);

// Where the parts of a segment file (WriteSegmentSnapshot's format) lie, so
// that an upload's rows can be written in place as they arrive
// (segment_file_writer.h). The payload is `payload_prefix`, then the ids,
// then the vectors, which start at a 64-byte file offset.
struct SegmentFileLayout {
  // The name, then the metadata: the alignment entry alone.
  std::string payload_prefix;
  uint32_t metadata_bytes = 0;
  uint64_t prefix_offset = 0;   // the header's size
  uint64_t ids_offset = 0;      // rows x u64 when the segment has ids
  uint64_t vectors_offset = 0;  // rows x dimension float32, row-major
  uint64_t file_bytes = 0;
};
SegmentFileLayout LayOutSegmentFile(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids);
// The header of that file, once the payload's CRC32C is known.
std::string EncodeSegmentFileHeader(absl::string_view name, uint64_t rows,
                                    uint32_t dimension, bool with_ids,
                                    uint32_t payload_crc);

// What a data directory's manifest records of a segment file.
struct SegmentExpectation {
  uint64_t rows = 0;
  bool has_ids = false;
  uint32_t payload_crc = 0;
};

// Streams the rows of the segment file at `path` into `upload` (a restore
// of several segments into one upload), after checking the file against
// `expected` and the upload's dimension (DATA_LOSS naming the file when they
// differ). When the upload takes ids and the file has none, the rows get
// their numbers counted from `first_row`, the ids they had in the collection.
// With `map` (the upload must take blocks, UploadOptions::blocks), the rows
// stay where they are in a read-only mapping of the file, checked in place
// (CollectionUpload::AdoptRows), when the file allows it: its vectors at a
// 64-byte offset (every segment file this build writes) and the file on a
// local file system (FileReader::OnLocalFileSystem). Otherwise, and always
// without `map`, they are read into memory of the upload's own. Map only
// files that are never rewritten in place, as a data directory's are.
absl::Status AppendSegmentSnapshot(const std::string& path,
                                   const SegmentExpectation& expected,
                                   uint64_t first_row, CollectionUpload* upload,
                                   bool upload_takes_ids, bool map = false);

// Loads a collection snapshot into `store` as a new collection named `name`
// (empty: the name stored in the file), with source `path`. Errors as in the
// file comment, plus the store's (ALREADY_EXISTS, RESOURCE_EXHAUSTED, ...).
absl::StatusOr<std::shared_ptr<const Collection>> LoadCollectionSnapshot(
    const std::string& path, absl::string_view name, CollectionStore* store);

// How a collection load splits the ids and vectors of a file: pieces of
// about `piece_bytes` (whole rows), each read into its place in the upload
// and checksummed and checked while it is in cache, on `threads` threads,
// the caller's included (0: one per 32 MiB of payload, at most one per CPU
// and 8, so a small file is read on the calling thread alone).
struct SnapshotLoadSplit {
  uint64_t piece_bytes = uint64_t{256} << 10;
  unsigned threads = 0;
};

namespace internal {

// Replaces the split every later load in this process uses and returns the
// previous one: tests reach several pieces and threads with small files,
// benchmarks measure other splits. Thread-safe (loads read it once, at
// their start).
SnapshotLoadSplit SetSnapshotLoadSplitForTesting(
    const SnapshotLoadSplit& split);

}  // namespace internal

// Writes the whole graph, its changes included (Graph::overlay), as the
// compact CSR a put of the same edges would have made.
absl::Status WriteGraphSnapshot(const Graph& graph, const std::string& path);

// The version a graph snapshot records (0: none), read from its header
// alone; the header checks' errors.
absl::StatusOr<uint64_t> ReadGraphSnapshotVersion(const std::string& path);

// Loads a graph snapshot into `store` under `name` (empty: the stored name),
// as `version` (0: the version the file records, else the store's next),
// with `restored_keys` as its committed keys (an edit log's). The graph
// passes the store's validator before it becomes visible. Loaded
// collections and graphs are not journaled: their file is their copy.
absl::StatusOr<std::shared_ptr<const Graph>> LoadGraphSnapshot(
    const std::string& path, absl::string_view name, GraphStore* store,
    uint64_t version = 0, std::vector<CommittedKey> restored_keys = {});

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_SNAPSHOT_H_
