#include "tests/testing/memory_catalog.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace engram::testing {

using collections::CatalogEntry;
using collections::CatalogEvent;
using collections::CatalogSnapshot;

namespace {

absl::Status Unreachable() {
  return absl::UnavailableError("memory catalog: unreachable (test)");
}

}  // namespace

MemoryCatalog::MemoryCatalog() : shared_(std::make_shared<Shared>()) {}

MemoryCatalog::~MemoryCatalog() { StopWatch(); }

std::shared_ptr<MemoryCatalog> MemoryCatalog::Connect() const {
  return std::shared_ptr<MemoryCatalog>(new MemoryCatalog(shared_));
}

void MemoryCatalog::SetReachable(bool reachable) {
  absl::MutexLock lock(&shared_->mu);
  shared_->reachable = reachable;
}

void MemoryCatalog::Compact(int64_t revision) {
  absl::MutexLock lock(&shared_->mu);
  auto& history = shared_->history;
  history.erase(std::remove_if(history.begin(), history.end(),
                               [&](const CatalogEvent& e) {
                                 return e.entry.mod_revision <= revision;
                               }),
                history.end());
  shared_->compacted = std::max(shared_->compacted, revision);
}

int64_t MemoryCatalog::revision() const {
  absl::MutexLock lock(&shared_->mu);
  return shared_->revision;
}

absl::StatusOr<CatalogSnapshot> MemoryCatalog::List() {
  absl::MutexLock lock(&shared_->mu);
  if (!shared_->reachable) return Unreachable();
  CatalogSnapshot snapshot;
  for (const auto& [key, entry] : shared_->entries) {
    snapshot.entries.push_back(entry);
  }
  snapshot.revision = shared_->revision;
  return snapshot;
}

absl::StatusOr<int64_t> MemoryCatalog::PutIf(absl::string_view key,
                                             absl::string_view value,
                                             int64_t expected_revision) {
  absl::MutexLock lock(&shared_->mu);
  if (!shared_->reachable) return Unreachable();
  auto it = shared_->entries.find(std::string(key));
  const int64_t current =
      it == shared_->entries.end() ? 0 : it->second.mod_revision;
  if (current != expected_revision) {
    return absl::AbortedError(absl::StrCat("memory catalog: ", key, " is at ",
                                           current, ", expected ",
                                           expected_revision));
  }
  CatalogEvent event;
  event.type = CatalogEvent::Type::kPut;
  event.entry.key = std::string(key);
  event.entry.value = std::string(value);
  event.entry.mod_revision = ++shared_->revision;
  shared_->entries[event.entry.key] = event.entry;
  shared_->history.push_back(std::move(event));
  return shared_->revision;
}

absl::StatusOr<int64_t> MemoryCatalog::DeleteIf(absl::string_view key,
                                                int64_t expected_revision) {
  if (expected_revision <= 0) {
    return absl::InvalidArgumentError(
        "memory catalog: DeleteIf needs the key's revision (> 0)");
  }
  absl::MutexLock lock(&shared_->mu);
  if (!shared_->reachable) return Unreachable();
  auto it = shared_->entries.find(std::string(key));
  const int64_t current =
      it == shared_->entries.end() ? 0 : it->second.mod_revision;
  if (current != expected_revision || it == shared_->entries.end()) {
    return absl::AbortedError(absl::StrCat("memory catalog: ", key, " is at ",
                                           current, ", expected ",
                                           expected_revision));
  }
  shared_->entries.erase(it);
  CatalogEvent event;
  event.type = CatalogEvent::Type::kDelete;
  event.entry.key = std::string(key);
  event.entry.mod_revision = ++shared_->revision;
  shared_->history.push_back(std::move(event));
  return shared_->revision;
}

absl::Status MemoryCatalog::Watch(int64_t after_revision,
                                  collections::CatalogWatcher* watcher) {
  if (watch_.joinable()) {
    return absl::FailedPreconditionError("memory catalog: already watching");
  }
  stop_ = false;
  watch_ = std::thread(
      [this, after_revision, watcher] { RunWatch(after_revision, watcher); });
  return absl::OkStatus();
}

void MemoryCatalog::StopWatch() {
  {
    absl::MutexLock lock(&shared_->mu);
    stop_ = true;
  }
  if (watch_.joinable()) watch_.join();
}

collections::CatalogHealth MemoryCatalog::Health() const {
  absl::MutexLock lock(&health_mu_);
  return health_;
}

void MemoryCatalog::RunWatch(int64_t after_revision,
                             collections::CatalogWatcher* watcher) {
  int64_t next = after_revision + 1;
  bool resync = false;
  auto set_health = [&](bool connected, int64_t revision) {
    absl::MutexLock lock(&health_mu_);
    if (health_.connected != connected) health_.since = absl::Now();
    health_.connected = connected;
    health_.error = connected ? "" : "memory catalog: unreachable (test)";
    health_.revision = std::max(health_.revision, revision);
  };
  while (true) {
    std::vector<CatalogEvent> events;
    CatalogSnapshot snapshot;
    bool deliver_snapshot = false;
    {
      absl::MutexLock lock(&shared_->mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
        return stop_.load() || !shared_->reachable || resync ||
               shared_->revision >= next;
      };
      shared_->mu.Await(absl::Condition(&ready));
      if (stop_) return;
      if (!shared_->reachable) {
        resync = true;
        set_health(false, 0);  // health_mu_ nests inside shared_->mu
        auto back = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
          return stop_.load() || shared_->reachable;
        };
        shared_->mu.Await(absl::Condition(&back));
        continue;
      }
      if (resync || next <= shared_->compacted) {
        for (const auto& [key, entry] : shared_->entries) {
          snapshot.entries.push_back(entry);
        }
        snapshot.revision = shared_->revision;
        deliver_snapshot = true;
        resync = false;
      } else {
        for (const CatalogEvent& e : shared_->history) {
          if (e.entry.mod_revision >= next) events.push_back(e);
        }
      }
    }
    if (deliver_snapshot) {
      set_health(true, snapshot.revision);
      watcher->OnResync(snapshot);
      next = snapshot.revision + 1;
    } else if (!events.empty()) {
      set_health(true, events.back().entry.mod_revision);
      watcher->OnEvents(events);
      next = events.back().entry.mod_revision + 1;
    }
  }
}

}  // namespace engram::testing
