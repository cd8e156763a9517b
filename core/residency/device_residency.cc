#include "core/residency/device_residency.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/chunking.h"

namespace engram::residency {
namespace {

// Changes older than this cannot matter: a reading older than the monitor's
// staleness limit is not used.
constexpr absl::Duration kChangeHorizon = absl::Minutes(1);
constexpr size_t kMaxChanges = 4096;

prometheus::Counter* FailureCounter(prometheus::Family<prometheus::Counter>& f,
                                    const char* reason) {
  return &f.Add({{"device", "gpu"}, {"reason", reason}});
}

}  // namespace

DeviceResidencyMetrics::DeviceResidencyMetrics(prometheus::Registry& registry) {
  bytes_ = &prometheus::BuildGauge()
                .Name("engram_resident_device_bytes")
                .Help(
                    "Device memory held by copies of resident collection "
                    "segments (the host copy is counted elsewhere).")
                .Register(registry)
                .Add({{"device", "gpu"}});
  segments_ = &prometheus::BuildGauge()
                   .Name("engram_resident_device_segments")
                   .Help("Resident collection segments with a device copy.")
                   .Register(registry)
                   .Add({{"device", "gpu"}});
  uploads_ = &prometheus::BuildCounter()
                  .Name("engram_resident_uploads_total")
                  .Help("Segments copied to the device ahead of use.")
                  .Register(registry)
                  .Add({{"device", "gpu"}});
  auto& failures =
      prometheus::BuildCounter()
          .Name("engram_resident_upload_failures_total")
          .Help(
              "Segment copies to the device that failed, by reason; the "
              "segment stays host-only (sticky: residency stopped).")
          .Register(registry);
  failures_oom_ = FailureCounter(failures, "out_of_memory");
  failures_device_ = FailureCounter(failures, "device_error");
  failures_sticky_ = FailureCounter(failures, "sticky");
}

void DeviceResidencyMetrics::SetResident(uint64_t bytes, uint64_t segments) {
  bytes_->Set(static_cast<double>(bytes));
  segments_->Set(static_cast<double>(segments));
}

void DeviceResidencyMetrics::OnUpload() { uploads_->Increment(); }

void DeviceResidencyMetrics::OnUploadFailure(const absl::Status& error) {
  switch (dispatch::ClassifyBackendError(error)) {
    case dispatch::BackendErrorClass::kOutOfMemory:
      failures_oom_->Increment();
      break;
    case dispatch::BackendErrorClass::kSticky:
      failures_sticky_->Increment();
      break;
    default:
      failures_device_->Increment();
      break;
  }
}

absl::StatusOr<std::unique_ptr<DeviceResidency>> DeviceResidency::Create(
    const Options& options) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("device residency option ", what));
  };
  if (options.gpu == nullptr) return bad("gpu is required");
  const dispatch::BackendCapabilities caps = options.gpu->Capabilities();
  if (caps.kind != dispatch::BackendKind::kGpu || !caps.supports_residency) {
    return bad(absl::StrCat("gpu: backend ", options.gpu->name(),
                            " holds no resident data"));
  }
  if (caps.memory_bytes == 0) {
    return bad(absl::StrCat("gpu: backend ", options.gpu->name(),
                            " reports no device memory"));
  }
  if (!(options.device_fraction > 0.0 && options.device_fraction <= 1.0)) {
    return bad("device_fraction must be in (0, 1]");
  }
  if (!(options.min_free_fraction >= 0.0 && options.min_free_fraction < 1.0)) {
    return bad("min_free_fraction must be in [0, 1)");
  }
  if (options.readmit_interval < absl::ZeroDuration()) {
    return bad("readmit_interval must be >= 0");
  }
  std::unique_ptr<DeviceResidency> residency(
      new DeviceResidency(options, caps.memory_bytes));
  DeviceResidency* self = residency.get();
  residency->thread_ = std::thread([self] { self->Run(); });
  return residency;
}

DeviceResidency::DeviceResidency(const Options& options, uint64_t device_bytes)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock
                                      : dispatch::Clock::Real()) {
  absl::MutexLock lock(&mu_);
  device_bytes_ = device_bytes;
}

DeviceResidency::~DeviceResidency() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::vector<uint64_t> held;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (entry.state == State::kResident) held.push_back(id);
    }
  }
  // Not evictions for room: the copies go with the cache.
  for (uint64_t id : held) (void)options_.gpu->EvictResident(id);
}

void DeviceResidency::TouchLocked(uint64_t id, absl::Time now) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  lru_.splice(lru_.begin(), lru_, entry.lru);
  if (entry.state != State::kHostOnly || stats_.stopped) return;
  if (now - entry.last_attempt < options_.readmit_interval) return;
  // Re-admitted only into free budget: it may not evict other copies.
  if (resident_bytes_ + entry.bytes > BudgetLocked()) return;
  entry.state = State::kQueued;
  entry.readmit = true;
  queue_.push_back(id);
}

void DeviceResidency::OnCommitted(
    const std::shared_ptr<const collections::Collection>& current) {
  if (current == nullptr) return;
  absl::MutexLock lock(&mu_);
  const uint64_t uid = current->uid();
  if (deleted_.contains(uid)) return;
  std::vector<uint64_t>& ids = collections_[uid];
  for (const std::shared_ptr<const collections::Segment>& segment :
       current->segments()) {
    const uint64_t id = segment->id();
    if (entries_.contains(id)) continue;
    lru_.push_front(id);
    Entry& entry = entries_[id];
    entry.segment = segment;
    entry.uid = uid;
    entry.rows = segment->rows();
    entry.bytes =
        dispatch::ResidentFootprintBytes(segment->rows(), segment->dimension());
    entry.lru = lru_.begin();
    ids.push_back(id);
    if (stats_.stopped) {
      entry.state = State::kHostOnly;
    } else {
      entry.state = State::kQueued;
      queue_.push_back(id);
    }
  }
}

void DeviceResidency::OnDeleted(uint64_t uid, const std::string& /*name*/) {
  std::vector<uint64_t> drop;
  {
    absl::MutexLock lock(&mu_);
    deleted_.insert(uid);
    auto it = collections_.find(uid);
    if (it == collections_.end()) return;
    for (uint64_t id : it->second) {
      auto e = entries_.find(id);
      if (e == entries_.end()) continue;
      switch (e->second.state) {
        case State::kUploading:
          // The upload thread drops the copy when the upload returns.
          e->second.deleted = true;
          continue;
        case State::kResident:
          MarkEvictingLocked(id);
          drop.push_back(id);
          break;
        default:
          break;
      }
      EraseLocked(id);
    }
    collections_.erase(it);
  }
  for (uint64_t id : drop) (void)options_.gpu->EvictResident(id);
  {
    absl::MutexLock lock(&mu_);
    stats_.dropped += drop.size();
  }
  Publish();
}

void DeviceResidency::Touch(const collections::Collection& collection) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (const auto& segment : collection.segments()) {
    TouchLocked(segment->id(), now);
  }
}

uint64_t DeviceResidency::MakeRoom(uint64_t bytes) {
  std::vector<uint64_t> victims;
  uint64_t freed = 0;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = lru_.rbegin(); it != lru_.rend() && freed < bytes; ++it) {
      const Entry& entry = entries_.at(*it);
      if (entry.state != State::kResident) continue;
      victims.push_back(*it);
      freed += entry.bytes;
    }
    for (uint64_t id : victims) MarkEvictingLocked(id);
  }
  EvictOnDevice(victims, /*for_room=*/true);
  return freed;
}

bool DeviceResidency::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && !busy_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

bool DeviceResidency::IsResident(uint64_t segment_id) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(segment_id);
  return it != entries_.end() && it->second.state == State::kResident;
}

CollectionResidency DeviceResidency::Describe(uint64_t uid) const {
  CollectionResidency r;
  absl::MutexLock lock(&mu_);
  auto it = collections_.find(uid);
  if (it == collections_.end()) return r;
  for (uint64_t id : it->second) {
    auto e = entries_.find(id);
    if (e == entries_.end()) continue;
    ++r.segments;
    if (e->second.state != State::kResident) continue;
    ++r.resident_segments;
    r.resident_rows += e->second.rows;
    r.device_bytes += e->second.bytes;
  }
  if (r.resident_segments > 0) {
    r.label =
        r.resident_segments == r.segments ? "host+gpu" : "host+gpu-partial";
  }
  return r;
}

DeviceResidency::Stats DeviceResidency::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.segments = entries_.size();
  s.resident_segments = 0;
  for (const auto& [id, entry] : entries_) {
    if (entry.state == State::kResident) ++s.resident_segments;
  }
  s.resident_bytes = resident_bytes_;
  s.pending = queue_.size() + (busy_ ? 1 : 0);
  s.budget_bytes = BudgetLocked();
  return s;
}

uint64_t DeviceResidency::BudgetLocked() const {
  uint64_t budget = static_cast<uint64_t>(options_.device_fraction *
                                          static_cast<double>(device_bytes_));
  if (options_.max_bytes != 0) budget = std::min(budget, options_.max_bytes);
  return budget;
}

bool DeviceResidency::PlanRoomLocked(
    const Entry& entry,
    const absl::optional<dispatch::MemoryAssessment>& memory,
    std::vector<uint64_t>* victims) {
  const uint64_t budget = BudgetLocked();
  if (entry.bytes > budget) return false;
  // The free memory the monitor read, less what this cache has uploaded
  // (plus what it has evicted) since: a reading can be a few hundred
  // milliseconds old.
  const bool check_free =
      memory.has_value() && memory->has_reading && !memory->stale;
  int64_t free_bytes = 0;
  uint64_t reserve = 0;
  if (check_free) {
    const absl::Time read_at = clock_->Now() - memory->age;
    free_bytes = static_cast<int64_t>(std::min<uint64_t>(
        memory->reading.free_bytes, std::numeric_limits<int64_t>::max()));
    for (const Change& change : changes_) {
      if (change.at > read_at) free_bytes -= change.bytes;
    }
    reserve = static_cast<uint64_t>(options_.min_free_fraction *
                                    static_cast<double>(device_bytes_));
  }
  uint64_t resident = resident_bytes_;
  int64_t free_after = free_bytes - static_cast<int64_t>(entry.bytes);
  auto fits = [&] {
    return resident + entry.bytes <= budget &&
           (!check_free || free_after >= static_cast<int64_t>(reserve));
  };
  // Least recently used first, up to (not including) the entry itself.
  for (auto it = lru_.rbegin(); !fits(); ++it) {
    if (it == lru_.rend() ||
        it == std::make_reverse_iterator(std::next(entry.lru))) {
      victims->clear();
      return false;
    }
    const Entry& other = entries_.at(*it);
    if (other.state != State::kResident) continue;
    if (entry.readmit) {
      victims->clear();
      return false;
    }
    victims->push_back(*it);
    resident -= other.bytes;
    free_after += static_cast<int64_t>(other.bytes);
  }
  return true;
}

void DeviceResidency::MarkEvictingLocked(uint64_t id) {
  Entry& entry = entries_.at(id);
  entry.state = State::kEvicting;
  resident_bytes_ -= entry.bytes;
}

void DeviceResidency::EraseLocked(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

void DeviceResidency::NoteChangeLocked(int64_t bytes) {
  const absl::Time now = clock_->Now();
  changes_.push_back(Change{now, bytes});
  while (!changes_.empty() && (changes_.size() > kMaxChanges ||
                               now - changes_.front().at > kChangeHorizon)) {
    changes_.pop_front();
  }
}

void DeviceResidency::EvictOnDevice(const std::vector<uint64_t>& ids,
                                    bool for_room) {
  if (ids.empty()) return;
  for (uint64_t id : ids) (void)options_.gpu->EvictResident(id);
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t id : ids) {
      auto it = entries_.find(id);
      if (it == entries_.end()) continue;  // deleted meanwhile
      NoteChangeLocked(-static_cast<int64_t>(it->second.bytes));
      if (it->second.state == State::kEvicting) {
        it->second.state = State::kHostOnly;
        it->second.last_attempt = clock_->Now();
      }
    }
    if (for_room) stats_.evictions += ids.size();
  }
  if (for_room && options_.resident_metrics != nullptr) {
    for (size_t i = 0; i < ids.size(); ++i) {
      options_.resident_metrics->OnEviction();
    }
  }
  Publish();
}

void DeviceResidency::Publish() {
  if (options_.metrics == nullptr) return;
  uint64_t bytes = 0;
  uint64_t segments = 0;
  {
    absl::MutexLock lock(&mu_);
    bytes = resident_bytes_;
    for (const auto& [id, entry] : entries_) {
      if (entry.state == State::kResident) ++segments;
    }
  }
  options_.metrics->SetResident(bytes, segments);
}

void DeviceResidency::Run() {
  for (;;) {
    uint64_t id = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      id = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    Upload(id);
    absl::MutexLock lock(&mu_);
    busy_ = false;
  }
}

void DeviceResidency::Upload(uint64_t id) {
  // The monitor may probe the device: outside the lock.
  absl::optional<dispatch::MemoryAssessment> memory;
  if (options_.memory != nullptr) memory = options_.memory->Assess();

  std::shared_ptr<const collections::Segment> segment;
  std::vector<uint64_t> victims;
  uint64_t bytes = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state != State::kQueued) return;
    Entry& entry = it->second;
    if (stats_.stopped) {
      entry.state = State::kHostOnly;
      return;
    }
    segment = entry.segment.lock();
    if (segment == nullptr) {  // its collection is gone
      EraseLocked(id);
      return;
    }
    if (memory.has_value() && memory->has_reading &&
        memory->reading.total_bytes > 0) {
      device_bytes_ = memory->reading.total_bytes;
    }
    if (!PlanRoomLocked(entry, memory, &victims)) {
      entry.state = State::kHostOnly;
      entry.last_attempt = clock_->Now();
      ++stats_.no_room;
      return;
    }
    for (uint64_t victim : victims) MarkEvictingLocked(victim);
    entry.state = State::kUploading;
    bytes = entry.bytes;
  }
  EvictOnDevice(victims, /*for_room=*/true);

  absl::Status status = options_.gpu->UploadResident(id, segment->vectors());
  // Should the backend still hold a copy under this id (an eviction that
  // failed), it is the same rows: use it.
  if (absl::IsAlreadyExists(status)) status = absl::OkStatus();
  segment.reset();

  bool drop = false;
  std::vector<uint64_t> lost;  // every copy, after a sticky error
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    const bool deleted = it == entries_.end() || it->second.deleted;
    if (status.ok()) {
      ++stats_.uploads;
      if (deleted) {
        drop = true;
        ++stats_.dropped;
      } else {
        it->second.state = State::kResident;
        resident_bytes_ += bytes;
        NoteChangeLocked(static_cast<int64_t>(bytes));
      }
    } else {
      ++stats_.upload_failures;
      const dispatch::BackendErrorClass error_class =
          dispatch::ClassifyBackendError(status);
      if (error_class == dispatch::BackendErrorClass::kOutOfMemory) {
        ++stats_.upload_ooms;
      }
      if (!deleted) {
        it->second.state = State::kHostOnly;
        it->second.last_attempt = clock_->Now();
      }
      if (error_class == dispatch::BackendErrorClass::kSticky &&
          !stats_.stopped) {
        // The device is gone for this process: nothing more is uploaded.
        stats_.stopped = true;
        stats_.stop_reason = std::string(status.message());
        for (uint64_t queued : queue_) {
          auto q = entries_.find(queued);
          if (q != entries_.end() && q->second.state == State::kQueued) {
            q->second.state = State::kHostOnly;
          }
        }
        queue_.clear();
        for (auto& [other, entry] : entries_) {
          if (entry.state == State::kResident) lost.push_back(other);
        }
        for (uint64_t other : lost) MarkEvictingLocked(other);
      }
    }
    if (deleted && it != entries_.end()) EraseLocked(id);
  }
  if (drop) (void)options_.gpu->EvictResident(id);
  // Copies on a device that is gone are of no use; not evictions for room.
  EvictOnDevice(lost, /*for_room=*/false);
  if (options_.metrics != nullptr) {
    if (status.ok()) {
      options_.metrics->OnUpload();
    } else {
      options_.metrics->OnUploadFailure(status);
    }
  }
  Publish();
}

}  // namespace engram::residency
