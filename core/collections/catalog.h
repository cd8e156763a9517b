// Catalog: the shared record of which collection and graph versions exist,
// when several replicas serve one data directory (shared mode, --catalog).
//
// A catalog is a small key-value store with revisions, as etcd v3 is: every
// change gets a store-wide revision, larger than every earlier one, and each
// key remembers the revision that last wrote it (its mod revision). Writes
// are conditional on that revision, so two replicas that both started from
// version v of a collection cannot both commit v + 1: the second sees its
// expected revision gone and answers ABORTED. A watch delivers every change
// after a revision, in order, so every replica converges on the same
// sequence of versions.
//
// Keys are relative to the catalog's own prefix ("collections/NAME",
// "graphs/NAME"); values are opaque bytes (the data directory stores its
// manifests there).
//
// The data directory (data_dir.h) is the only user. The etcd client that
// implements this in production speaks gRPC, so it lives in the server
// layer; tests/testing/memory_catalog.h implements it in one process, so
// that tests of the data directory need no etcd.
//
// Thread-safety: implementations are thread-safe. Watch callbacks come from
// one thread of the catalog's, in revision order, never two at once; they
// may call the catalog's other methods but must not Stop their own watch.
#ifndef ENGRAM_CORE_COLLECTIONS_CATALOG_H_
#define ENGRAM_CORE_COLLECTIONS_CATALOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace engram::collections {

// One key, its value and the revision that last wrote it.
struct CatalogEntry {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
};

// Every key under the catalog's prefix as of one store revision.
struct CatalogSnapshot {
  std::vector<CatalogEntry> entries;  // sorted by key
  int64_t revision = 0;
};

// One change a watch saw. For a delete, entry.value is empty and
// entry.mod_revision is the revision of the delete.
struct CatalogEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  CatalogEntry entry;
};

// Receives a watch's changes (see Catalog::Watch).
class CatalogWatcher {
 public:
  virtual ~CatalogWatcher() = default;
  // Changes after the last revision delivered, in revision order.
  virtual void OnEvents(absl::Span<const CatalogEvent> events) = 0;
  // The watch lost its place (the revision it needed was compacted away, or
  // it reconnected after the catalog was unreachable): `snapshot` is the
  // whole catalog now, and the watcher replaces its view with it. Events
  // after snapshot.revision follow.
  virtual void OnResync(const CatalogSnapshot& snapshot) = 0;
};

// Whether the catalog answers, and since when (for GetStats and /metrics).
// Connected until a call or the watch first fails to reach it.
struct CatalogHealth {
  bool connected = true;
  // When `connected` last changed.
  absl::Time since = absl::InfinitePast();
  // The last store revision this replica saw. Store-wide, as etcd's: it
  // also counts writes under other prefixes.
  int64_t revision = 0;
  // Why it is disconnected; empty when connected.
  std::string error;
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  // Every key under the prefix. UNAVAILABLE when the catalog cannot be
  // reached.
  virtual absl::StatusOr<CatalogSnapshot> List() = 0;

  // Writes `value` at `key` when the key's mod revision is still
  // `expected_revision` (0: the key must be absent) and returns the new
  // revision. ABORTED when the condition fails (another writer came first);
  // UNAVAILABLE when the catalog cannot be reached, in which case the write
  // may or may not have happened: the watch brings it if it did, and a
  // writer that must know makes its values unique (the data directory's
  // segment files have unique names, and uploads carry idempotency keys).
  virtual absl::StatusOr<int64_t> PutIf(absl::string_view key,
                                        absl::string_view value,
                                        int64_t expected_revision) = 0;

  // Removes `key` when its mod revision is still `expected_revision` (> 0,
  // else INVALID_ARGUMENT) and returns the revision of the delete. ABORTED
  // and UNAVAILABLE as PutIf.
  virtual absl::StatusOr<int64_t> DeleteIf(absl::string_view key,
                                           int64_t expected_revision) = 0;

  // Starts delivering every change after `after_revision` to `watcher`
  // (borrowed; it must outlive the watch) until StopWatch or destruction.
  // At most one watch per catalog; FAILED_PRECONDITION for a second.
  virtual absl::Status Watch(int64_t after_revision,
                             CatalogWatcher* watcher) = 0;
  // Ends the watch and waits for a running callback to return. Idempotent.
  virtual void StopWatch() = 0;

  virtual CatalogHealth Health() const = 0;

  // Where the catalog lives, for logs ("etcd://127.0.0.1:2379/engram").
  virtual std::string Describe() const = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_CATALOG_H_
