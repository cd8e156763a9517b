// EtcdCatalog: the catalog (core/collections/catalog.h) kept in etcd, over
// etcd's v3 gRPC API, for replicas that share one data directory
// (--catalog=etcd://HOST:PORT[,HOST:PORT...]/PREFIX).
//
// Every key lives under one key prefix ("/PREFIX/"), so several deployments
// can share an etcd cluster. A conditional write is one etcd transaction
// comparing the key's mod revision (its create revision, for "absent"), so
// etcd itself decides which of two racing replicas wins; the revisions the
// catalog speaks of are etcd's own store revisions.
//
// Reaching etcd: one gRPC channel per endpoint, all made at Create() without
// waiting, so a server starts, and serves what it already holds, while etcd
// is down. A call goes to the current endpoint; when that one cannot be
// reached (UNAVAILABLE, or no answer within call_timeout) the next call goes
// to the next endpoint. A read (List) also tries the other endpoints at once,
// since repeating it is harmless. A write is never repeated once it may have
// been sent: had the first attempt committed, the repeat would answer ABORTED
// to the replica that won. Before a write is sent, though, an endpoint whose
// channel cannot connect is passed over for one that can.
//
// The watch runs on a thread of its own over etcd's Watch stream. When the
// stream breaks it reports the catalog disconnected, retries with
// exponential backoff, and once etcd answers again lists the whole catalog
// and hands it to the watcher (OnResync) before following the stream from
// that revision: changes made while it was away are in the snapshot, and
// changes etcd has compacted away can be recovered no other way. etcd
// answering that the revision the watch needs was compacted is handled the
// same way.
//
// Thread-safety: every method may be called concurrently (the contract of
// catalog.h). One mutex guards the health record, the current endpoint and
// the watch's bookkeeping; it is never held across an RPC or a watcher
// callback. A second one only orders StopWatch calls. Watcher callbacks run
// on the watch thread, one at a time, and may call every method but
// StopWatch.
#ifndef ENGRAM_SERVER_CATALOG_ETCD_CATALOG_H_
#define ENGRAM_SERVER_CATALOG_ETCD_CATALOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/collections/catalog.h"
#include "grpcpp/client_context.h"

namespace engram::server::catalog {

// A parsed etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
struct CatalogUrl {
  std::vector<std::string> endpoints;  // "host:port", in the URL's order
  std::string prefix;                  // the key prefix, "/PREFIX/"
};

// INVALID_ARGUMENT, naming the catalog URL and the reason, for a scheme other
// than etcd://, no endpoint, an endpoint without a host or with a port that
// is not 1..65535, and a prefix that is missing, empty or holds characters
// outside [A-Za-z0-9._/-]. Repeated slashes in the prefix collapse into one
// ("etcd://h:1//a//b/" has the key prefix "/a/b/"). An IPv6 host is written
// in brackets ("[::1]:2379").
absl::StatusOr<CatalogUrl> ParseCatalogUrl(absl::string_view url);

class EtcdCatalog final : public collections::Catalog {
 public:
  struct Options {
    // "host:port" of each etcd member to use, the first tried first. At
    // least one; each as ParseCatalogUrl accepts it.
    std::vector<std::string> endpoints;
    // The key prefix, with or without its slashes ("engram", "/engram/");
    // as ParseCatalogUrl accepts it.
    std::string prefix;
    // Deadline of each RPC (a List page, a write). > 0
    absl::Duration call_timeout = absl::Seconds(5);
    // The watch's retry delay after a failure, doubled on each failure in a
    // row; also the channels' reconnect backoff, so a restarted etcd is
    // noticed within about reconnect_backoff_max. 0 < min <= max
    absl::Duration reconnect_backoff_min = absl::Milliseconds(100);
    absl::Duration reconnect_backoff_max = absl::Seconds(5);
    // Keys per Range call of List, which bounds the size of one answer.
    // >= 1
    int list_page_size = 500;
  };

  // INVALID_ARGUMENT naming the option that is out of range. Does not
  // contact etcd.
  static absl::StatusOr<std::unique_ptr<EtcdCatalog>> Create(
      const Options& options);
  // Stops the watch (as StopWatch) before the channels go.
  ~EtcdCatalog() override;

  EtcdCatalog(const EtcdCatalog&) = delete;
  EtcdCatalog& operator=(const EtcdCatalog&) = delete;

  // One revision's view, read in pages of list_page_size keys (every page
  // at the first page's revision). UNAVAILABLE naming etcd and the endpoint
  // when no endpoint answers.
  absl::StatusOr<collections::CatalogSnapshot> List() override
      ABSL_LOCKS_EXCLUDED(mu_);
  // INVALID_ARGUMENT for an empty key or a negative expected_revision;
  // ABORTED naming the key and the revision found; UNAVAILABLE naming etcd
  // and the endpoint.
  absl::StatusOr<int64_t> PutIf(absl::string_view key, absl::string_view value,
                                int64_t expected_revision) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // As PutIf; expected_revision must be positive (an absent key has nothing
  // to delete).
  absl::StatusOr<int64_t> DeleteIf(absl::string_view key,
                                   int64_t expected_revision) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns at once: the watch connects (and reconnects) on its own thread.
  // INVALID_ARGUMENT for a null watcher or a negative revision;
  // FAILED_PRECONDITION while a watch runs or is being stopped.
  absl::Status Watch(int64_t after_revision,
                     collections::CatalogWatcher* watcher) override
      ABSL_LOCKS_EXCLUDED(mu_, stop_mu_);
  // Cancels the stream or the backoff wait the watch is in, so it returns
  // promptly even while etcd is unreachable.
  void StopWatch() override ABSL_LOCKS_EXCLUDED(mu_, stop_mu_);

  // Connected until a call or the watch stream fails to reach etcd, and
  // again after the next call or stream start that succeeds. `revision` is
  // the largest store revision seen in any answer.
  collections::CatalogHealth Health() const override ABSL_LOCKS_EXCLUDED(mu_);
  // "etcd://HOST:PORT[,...]/PREFIX".
  std::string Describe() const override;

 private:
  struct Endpoint;
  enum class StreamEnd { kStopped, kCompacted, kBroken };

  EtcdCatalog(const Options& options, std::string prefix,
              std::vector<Endpoint> endpoints);

  // One page of the prefix's keys from `from` on, at `revision` (0: the
  // newest), trying every endpoint once. With `watch_generation`, the call
  // is the watch's and StopWatch cancels it.
  absl::Status ListPage(const std::string& from, int64_t revision,
                        const uint64_t* watch_generation,
                        collections::CatalogSnapshot* snapshot, bool* more)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<collections::CatalogSnapshot> ListImpl(
      const uint64_t* watch_generation) ABSL_LOCKS_EXCLUDED(mu_);
  // PutIf and DeleteIf: one transaction of `operation` on `key` guarded by
  // the comparison of its revision with `expected_revision`.
  template <typename SetOperation>
  absl::StatusOr<int64_t> CommitIf(absl::string_view key,
                                   int64_t expected_revision,
                                   SetOperation set_operation)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t CurrentEndpoint() const ABSL_LOCKS_EXCLUDED(mu_);
  // The endpoint a write goes to (see the file comment).
  size_t PickWriteEndpoint(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // The one place a finished RPC's status becomes ours: it records whether
  // etcd was reached (Health, and the endpoint the next call goes to) and
  // names etcd, the endpoint and `what` in an error.
  absl::Status Conclude(size_t endpoint, const grpc::Status& status,
                        absl::string_view what) ABSL_LOCKS_EXCLUDED(mu_);
  void MarkConnected() ABSL_LOCKS_EXCLUDED(mu_);
  void MarkDisconnected(const std::string& error) ABSL_LOCKS_EXCLUDED(mu_);
  void NoteRevision(int64_t revision) ABSL_LOCKS_EXCLUDED(mu_);

  // The watch thread's body, and one stream from `*next_revision` on, which
  // it advances past each delivered event.
  void WatchLoop(uint64_t generation, int64_t after_revision,
                 collections::CatalogWatcher* watcher) ABSL_LOCKS_EXCLUDED(mu_);
  StreamEnd RunStream(uint64_t generation, int64_t* next_revision,
                      collections::CatalogWatcher* watcher, bool* established)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `context` the call StopWatch cancels; false when the watch of
  // `generation` has been stopped (then the call must not start).
  bool BeginWatchCall(uint64_t generation, grpc::ClientContext* context)
      ABSL_LOCKS_EXCLUDED(mu_);
  void EndWatchCall(grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits `delay` unless the watch of `generation` is stopped first; false
  // when it was.
  bool WaitUnlessStopped(uint64_t generation, absl::Duration delay)
      ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  const std::string prefix_;     // "/PREFIX/"
  const std::string range_end_;  // the first key after every prefixed one
  const std::vector<Endpoint> endpoints_;

  // Serializes StopWatch calls, so that each returns only once the thread
  // has ended; Watch and the watch thread never take it.
  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  size_t current_endpoint_ ABSL_GUARDED_BY(mu_) = 0;
  collections::CatalogHealth health_ ABSL_GUARDED_BY(mu_);
  std::thread watch_thread_ ABSL_GUARDED_BY(mu_);
  // Changes when a watch starts or is stopped: a watch thread whose
  // generation is no longer current stops.
  uint64_t watch_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // From StopWatch's taking the thread until it has joined it.
  bool watch_stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The watch thread's RPC in flight, for StopWatch to cancel.
  grpc::ClientContext* watch_call_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Signalled when the generation changes, ending a backoff wait.
  absl::CondVar watch_stopped_;
};

}  // namespace engram::server::catalog

#endif  // ENGRAM_SERVER_CATALOG_ETCD_CATALOG_H_
