// MemoryCatalog: a collections::Catalog held in this process, with etcd's
// semantics (store-wide revisions, conditional writes, ordered watches,
// compaction), so that several DataDirs in one test act as replicas of one
// shared data directory without an etcd server. Connect() gives another
// client of the same catalog, as a second replica's connection would;
// SetReachable(false) makes every client's calls fail as an unreachable
// etcd does, and a watch resyncs when it comes back.
//
// Thread-safety: every method may be called from any thread; all clients
// share one mutex. Watch callbacks run on one thread per client.
#ifndef ENGRAM_TESTS_TESTING_MEMORY_CATALOG_H_
#define ENGRAM_TESTS_TESTING_MEMORY_CATALOG_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/collections/catalog.h"

namespace engram::testing {

class MemoryCatalog final : public collections::Catalog {
 public:
  MemoryCatalog();
  ~MemoryCatalog() override;

  // Another client of the same catalog.
  std::shared_ptr<MemoryCatalog> Connect() const;
  // For every client: false makes calls answer UNAVAILABLE and watches
  // report disconnected; true brings them back (watches resync).
  void SetReachable(bool reachable);
  // Forgets the history up to `revision`: a watch that needs it resyncs.
  void Compact(int64_t revision);
  // The latest revision.
  int64_t revision() const;

  absl::StatusOr<collections::CatalogSnapshot> List() override;
  absl::StatusOr<int64_t> PutIf(absl::string_view key, absl::string_view value,
                                int64_t expected_revision) override;
  absl::StatusOr<int64_t> DeleteIf(absl::string_view key,
                                   int64_t expected_revision) override;
  absl::Status Watch(int64_t after_revision,
                     collections::CatalogWatcher* watcher) override;
  void StopWatch() override;
  collections::CatalogHealth Health() const override;
  std::string Describe() const override { return "memory://catalog"; }

 private:
  struct Shared {
    mutable absl::Mutex mu;
    std::map<std::string, collections::CatalogEntry> entries
        ABSL_GUARDED_BY(mu);
    // Every change after `compacted`, in revision order.
    std::vector<collections::CatalogEvent> history ABSL_GUARDED_BY(mu);
    int64_t revision ABSL_GUARDED_BY(mu) = 0;
    int64_t compacted ABSL_GUARDED_BY(mu) = 0;
    bool reachable ABSL_GUARDED_BY(mu) = true;
  };

  explicit MemoryCatalog(std::shared_ptr<Shared> shared)
      : shared_(std::move(shared)) {}
  void RunWatch(int64_t after_revision, collections::CatalogWatcher* watcher);

  const std::shared_ptr<Shared> shared_;
  // Set under shared_->mu, so that a waiting watch wakes for it.
  std::atomic<bool> stop_{false};
  std::thread watch_;
  mutable absl::Mutex health_mu_;
  collections::CatalogHealth health_ ABSL_GUARDED_BY(health_mu_);
};

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_MEMORY_CATALOG_H_
