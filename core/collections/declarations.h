// Start-up declarations: the resident collections and graphs a replica loads
// before it reports SERVING, so that Kubernetes replicas get the same data
// from a mounted volume without a replication protocol of our own.
//
// File format: the syntax of the hybrid config (core/dispatch/hybrid_config.h),
// read by the same lexer (base/key_value_text.h): one `key = value` per line;
// `#` starts a comment; blank lines are ignored. A line `[collection NAME]` or
// `[graph NAME]` starts a declaration; its keys follow:
//
//   path   = file to load (required). A relative path is relative to the
//            directory of the declarations file.
//   format = auto | npy | snapshot (optional, default auto: by the file's
//            magic). Collections load from a .npy file (npy_loader.h) or a
//            collection snapshot; graphs only from a graph snapshot
//            (snapshot.h).
//
// For example:
//
//   [collection products]
//   path = /data/products.npy      # verified by products.npy.sha256 if there
//   [graph knowledge]
//   path = knowledge.engg
//
// Keys outside a section, unknown keys, a key set twice in one section, a
// section without a path, a bad NAME and a name declared twice for the same
// kind are INVALID_ARGUMENT naming the line: a malformed file stops start-up,
// since it is a mistake in the deployment, whereas a declared file that is
// missing or corrupt fails only its own entry (LoadDeclared).
//
// Thread-safety: the functions are reentrant; LoadDeclared calls the stores,
// which are thread-safe.
#ifndef ENGRAM_CORE_COLLECTIONS_DECLARATIONS_H_
#define ENGRAM_CORE_COLLECTIONS_DECLARATIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"

namespace engram::collections {

enum class ResidentKind { kCollection, kGraph };
const char* ResidentKindName(ResidentKind kind);  // "collection", "graph"

enum class FileFormat { kAuto, kNpy, kSnapshot };
const char* FileFormatName(FileFormat format);  // "auto", "npy", "snapshot"

struct Declaration {
  ResidentKind kind = ResidentKind::kCollection;
  std::string name;
  std::string path;
  FileFormat format = FileFormat::kAuto;
  int line = 0;  // of the section header, for messages
};

// Parses the format above. Paths are kept as written.
absl::StatusOr<std::vector<Declaration>> ParseDeclarations(
    absl::string_view text);

// Reads and parses `path`, resolving relative paths against its directory.
// NOT_FOUND when it cannot be opened; parse errors are prefixed with `path`.
absl::StatusOr<std::vector<Declaration>> LoadDeclarationsFile(
    const std::string& path);

// What loading one declaration did: what the caller needs to log the line
// and count the metric for it.
struct LoadOutcome {
  Declaration declaration;
  // OK, or why this entry is not loaded (NOT_FOUND for a missing file,
  // DATA_LOSS for a corrupt or truncated one, INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED, ALREADY_EXISTS ...). The message names the file.
  absl::Status status;
  FileFormat format = FileFormat::kAuto;  // the format actually read
  // "crc32c" (snapshot), "sha256" (.npy with a sidecar) or "none" (.npy
  // without one): how the contents were verified.
  std::string verified_by = "none";
  uint64_t rows = 0;   // collection rows, or graph nodes
  uint64_t bytes = 0;  // resident bytes
  double seconds = 0;
  // Shared mode: the name was deleted on another replica and evicted here
  // (nothing was loaded).
  bool evicted = false;
  // Shared mode: updates another replica made to a graph this replica
  // holds were applied to it (nothing was loaded anew).
  bool updated = false;
};

// Loads every declaration in order into the stores and returns one outcome
// each; never stops at a failed entry. `graphs` may be null when no graph is
// declared (a graph entry then fails with FAILED_PRECONDITION).
std::vector<LoadOutcome> LoadDeclared(
    const std::vector<Declaration>& declarations, CollectionStore* collections,
    GraphStore* graphs);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_DECLARATIONS_H_
