// DeviceResidency: GPU copies of resident collection segments,
// made ahead of use so that a search reads its targets from device memory
// instead of sending them over PCIe on every call.
//
// The host copy (collections::CollectionStore) stays authoritative; this
// cache only decides which segments also have a device copy, and keeps the
// GPU backend's copies (ComputeBackend::UploadResident, keyed by
// collections::Segment::id()) in step:
//
//  - Ahead of use. As the store's CollectionObserver it hears of every
//    committed version (uploads, appends, start-up loads) and queues the new
//    segments; one background thread copies them to the device, one at a
//    time, so no search waits for a copy. WaitIdle() lets start-up finish the
//    copies before readiness turns SERVING.
//  - Budget. Copies may use at most Options::device_fraction of the device's
//    memory (and at most max_bytes), and an upload starts only while at least
//    min_free_fraction of the device stays free for requests' own chunks
//    (the free memory the executor's MemoryPressureMonitor last read, less
//    what this cache has uploaded since). To make room for a new segment the
//    least recently used copies go first (Touch() records use); a copy used
//    more recently than the segment being uploaded is never evicted for it.
//    The host copy is never evicted.
//  - Requests needing room. MakeRoom(bytes) evicts least recently used
//    copies at once, for the engine to call when a GPU request ran out of
//    device memory.
//  - Re-admission. A segment without a copy (evicted, refused for room, or
//    whose upload failed) is queued again when a search touches it, if it
//    fits the budget without evicting anything and its last attempt is at
//    least readmit_interval old: two hot segments that do not fit together
//    cannot evict each other on every search.
//  - Failures. A failed upload (device OOM or a device error) leaves the
//    segment host-only and is counted; a sticky device error stops residency
//    for good (the copies are dropped and nothing more is uploaded; searches
//    run from host memory).
//  - Deletion. OnDeleted drops the collection's copies at once (a search
//    already reading one finishes with it: the backend frees it after).
//
// A search opts in by setting CosineJob::resident_targets to the segment's
// id; if the copy is gone by then, the backend copies the host rows in, so a
// stale view of this cache costs time, never correctness.
//
// Metrics: evictions go to collections::ResidentMetrics::OnEviction()
// (engram_resident_evictions_total{device="gpu"}); DeviceResidencyMetrics
// below registers the device bytes, uploads and upload failures.
//
// Thread-safety: every method may be called concurrently from any thread.
// One mutex guards the cache's state; it is never held while the backend
// copies or evicts, while the memory monitor probes, or while a metric is
// set, so the cache calls no other component under its lock. The observer
// callbacks and Touch() only update that state and queue work (OnDeleted
// also evicts on the caller's thread, which is quick).
#ifndef ENGRAM_CORE_RESIDENCY_DEVICE_RESIDENCY_H_
#define ENGRAM_CORE_RESIDENCY_DEVICE_RESIDENCY_H_

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "core/collections/collection_store.h"
#include "core/collections/resident_metrics.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/memory_pressure.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace engram::residency {

// The Prometheus families of the device cache besides the evictions (which
// collections::ResidentMetrics registers): every child is created up front.
// Thread-safe (prometheus-cpp metrics are internally synchronised).
class DeviceResidencyMetrics {
 public:
  // Registers in `registry`, which must outlive this:
  //   engram_resident_device_bytes{device="gpu"}       gauge
  //   engram_resident_device_segments{device="gpu"}    gauge
  //   engram_resident_uploads_total{device="gpu"}      counter
  //   engram_resident_upload_failures_total{device="gpu",
  //       reason="out_of_memory"|"device_error"|"sticky"}  counter
  explicit DeviceResidencyMetrics(prometheus::Registry& registry);
  DeviceResidencyMetrics(const DeviceResidencyMetrics&) = delete;
  DeviceResidencyMetrics& operator=(const DeviceResidencyMetrics&) = delete;

  void SetResident(uint64_t bytes, uint64_t segments);
  void OnUpload();
  // Classified as backend_errors.h does.
  void OnUploadFailure(const absl::Status& error);

 private:
  prometheus::Gauge* bytes_ = nullptr;
  prometheus::Gauge* segments_ = nullptr;
  prometheus::Counter* uploads_ = nullptr;
  prometheus::Counter* failures_oom_ = nullptr;
  prometheus::Counter* failures_device_ = nullptr;
  prometheus::Counter* failures_sticky_ = nullptr;
};

// Where one collection's copies are (DescribeCollection's "where it is
// resident").
struct CollectionResidency {
  uint64_t segments = 0;           // segments of the collection known here
  uint64_t resident_segments = 0;  // of them, with a device copy
  uint64_t resident_rows = 0;
  uint64_t device_bytes = 0;
  // "host" (no device copy), "host+gpu" (every segment has one) or
  // "host+gpu-partial".
  std::string label = "host";
};

class DeviceResidency final : public collections::CollectionObserver {
 public:
  struct Options {
    // Required; borrowed; must outlive this. Its Capabilities() must say
    // supports_residency.
    dispatch::ComputeBackend* gpu = nullptr;
    // Optional; borrowed: the executor's monitor of the same device
    // (HybridExecutor::memory_monitor()). Without it only the budget bounds
    // uploads, and a device OOM is caught as an upload failure.
    dispatch::MemoryPressureMonitor* memory = nullptr;
    // (0, 1]: the share of the device's memory copies may hold.
    double device_fraction = 0.5;
    // 0: no cap beyond device_fraction; else the most bytes copies may hold.
    uint64_t max_bytes = 0;
    // [0, 1): an upload leaves at least this share of the device free
    // (by the monitor's reading), evicting older copies to get it.
    double min_free_fraction = 0.2;
    // >= 0: how long after its last attempt a segment without a copy may be
    // queued again by a search touching it.
    absl::Duration readmit_interval = absl::Seconds(10);
    // Optional; borrowed: OnEviction() per copy evicted for room.
    collections::ResidentMetrics* resident_metrics = nullptr;
    // Optional; borrowed.
    DeviceResidencyMetrics* metrics = nullptr;
    // Optional; borrowed; nullptr: Clock::Real(). The monitor's clock, so
    // that reading ages and upload times compare.
    dispatch::Clock* clock = nullptr;
  };

  // Totals since creation, and the state now.
  struct Stats {
    uint64_t segments = 0;           // known, of live collections
    uint64_t resident_segments = 0;  // with a device copy
    uint64_t resident_bytes = 0;     // device bytes of those copies
    uint64_t pending = 0;            // queued or being uploaded
    uint64_t uploads = 0;            // successful uploads
    uint64_t upload_failures = 0;    // failed uploads (OOM included)
    uint64_t upload_ooms = 0;        // of them, device out of memory
    uint64_t evictions = 0;          // copies evicted for room (LRU)
    uint64_t dropped = 0;            // copies dropped with their collection
    uint64_t no_room = 0;            // uploads skipped: no room in budget
    uint64_t budget_bytes = 0;       // the budget now
    bool stopped = false;            // a sticky error stopped residency
    std::string stop_reason;
  };

  // INVALID_ARGUMENT without a GPU backend, for one that does not support
  // residency, or for an option out of range. Starts the upload thread.
  static absl::StatusOr<std::unique_ptr<DeviceResidency>> Create(
      const Options& options);

  DeviceResidency(const DeviceResidency&) = delete;
  DeviceResidency& operator=(const DeviceResidency&) = delete;
  // Stops the upload thread (after the upload in progress, if any; queued
  // ones are dropped) and evicts every copy this cache made.
  ~DeviceResidency() override ABSL_LOCKS_EXCLUDED(mu_);

  // collections::CollectionObserver: queues the version's new segments
  // (ignored for a collection already deleted: notifications of one
  // collection may arrive out of order) ...
  void OnCommitted(
      const std::shared_ptr<const collections::Collection>& current) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // ... and drops every copy of a deleted collection.
  void OnDeleted(uint64_t uid, const std::string& name) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Records that a search is about to read every segment of `collection`
  // (in row order, so the last is the most recent), and queues a re-upload
  // of any without a copy (see the file comment). Segments it does not
  // know are ignored. Never blocks on the device.
  void Touch(const collections::Collection& collection)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Evicts least recently used copies until at least `bytes` are freed or
  // none is left, on the caller's thread; returns the bytes freed.
  uint64_t MakeRoom(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until nothing is queued or being uploaded, or `timeout` passes
  // (real time); true when idle.
  bool WaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether segment `segment_id` has a device copy now.
  bool IsResident(uint64_t segment_id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Collection `uid`'s copies; the "host" default for an unknown uid.
  CollectionResidency Describe(uint64_t uid) const ABSL_LOCKS_EXCLUDED(mu_);
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  enum class State {
    kQueued,     // waiting for the upload thread
    kUploading,  // being copied
    kResident,   // the device holds a copy
    kEvicting,   // its copy is being dropped
    kHostOnly,   // no copy: evicted, refused for room, or failed
  };
  struct Entry {
    std::weak_ptr<const collections::Segment> segment;
    uint64_t uid = 0;
    uint64_t rows = 0;
    uint64_t bytes = 0;  // device bytes of its copy
    State state = State::kQueued;
    bool readmit = false;  // queued by Touch: may not evict for room
    bool deleted = false;  // its collection went while it was uploading
    absl::Time last_attempt = absl::InfinitePast();
    std::list<uint64_t>::iterator lru;  // its place in lru_
  };
  // A change of the device memory this cache holds, to correct a memory
  // reading taken before it.
  struct Change {
    absl::Time at;
    int64_t bytes = 0;  // + uploaded, - evicted
  };

  DeviceResidency(const Options& options, uint64_t device_bytes);

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void Upload(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops the copies of `ids` (each in State::kEvicting, or already gone)
  // on the device and counts them as evictions when `for_room`.
  void EvictOnDevice(const std::vector<uint64_t>& ids, bool for_room)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Publish() ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t BudgetLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Chooses the copies to evict so that `entry` fits: none more recently
  // used than it, none at all when it is a re-admission. False when it
  // cannot fit.
  bool PlanRoomLocked(const Entry& entry,
                      const absl::optional<dispatch::MemoryAssessment>& memory,
                      std::vector<uint64_t>* victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkEvictingLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteChangeLocked(int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(uint64_t id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  dispatch::Clock* const clock_;

  mutable absl::Mutex mu_;
  // The device's memory: Capabilities() at creation, then the monitor's
  // readings (which honour a configured device memory limit).
  uint64_t device_bytes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Segment ids, most recently used first.
  std::list<uint64_t> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> collections_
      ABSL_GUARDED_BY(mu_);
  // Deleted collection uids (never reused), so that a commit notification
  // overtaken by its deletion is ignored.
  absl::flat_hash_set<uint64_t> deleted_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Change> changes_ ABSL_GUARDED_BY(mu_);
  uint64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // the thread is uploading
  bool stop_ ABSL_GUARDED_BY(mu_) = false;  // destruction
  Stats stats_ ABSL_GUARDED_BY(mu_);        // the totals; the rest is derived

  std::thread thread_;  // started last, by Create
};

}  // namespace engram::residency

#endif  // ENGRAM_CORE_RESIDENCY_DEVICE_RESIDENCY_H_
