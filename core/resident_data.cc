#include "core/resident_data.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/dispatch/jobs.h"
#include "core/logging.h"

namespace engram::core {

absl::StatusOr<std::unique_ptr<ResidentData>> ResidentData::Create(
    const ResidentOptions& options, const RequestLimits& limits,
    collections::BatchExecutor execute, collections::TaskRunner run,
    collections::ResidentMetrics* metrics,
    collections::CollectionObserver* device_cache,
    prometheus::Registry& registry) {
  if (!execute || !run || metrics == nullptr) {
    return absl::InvalidArgumentError(
        "resident data needs a search executor, a task runner and metrics");
  }
  auto data = std::unique_ptr<ResidentData>(
      new ResidentData(options, std::move(execute), std::move(run)));
  // Validates the batching options once, at start-up, rather than on the
  // first search.
  ENGRAM_RETURN_IF_ERROR(collections::SearchBatcher::ValidateOptions(
      data->BatcherOptions(),
      {"batch_max_queries", "batch_max_delay", "batch_max_passes",
       "batch_max_pending", "batch_pass_linger"}));
  data->metrics_ = metrics;
  collections::MemoryBudget::Options budget;
  budget.limit_bytes = options.memory_bytes;
  budget.metrics = data->metrics_;
  ENGRAM_ASSIGN_OR_RETURN(data->budget_,
                          collections::MemoryBudget::Create(budget));
  if (options.catalog != nullptr && options.data_dir.empty()) {
    return absl::InvalidArgumentError(
        "catalog: a shared catalog needs a data directory (data_dir) that "
        "every replica shares");
  }
  if (!options.data_dir.empty()) {
    collections::DataDir::Options dir;
    dir.path = options.data_dir;
    dir.catalog = options.catalog;
    dir.map_segments = options.map_segments;
    ResidentData* self = data.get();
    dir.on_catalog_change = [self](const collections::LoadOutcome& outcome) {
      self->OnCatalogChange(outcome);
    };
    ENGRAM_ASSIGN_OR_RETURN(data->data_dir_, collections::DataDir::Open(dir));
  }
  collections::CollectionStore::Options store;
  store.budget = data->budget_;
  store.metrics = data->metrics_;
  store.observer = device_cache;
  store.journal = data->data_dir_.get();
  store.compact_dead_share = options.compact_dead_share;
  ENGRAM_ASSIGN_OR_RETURN(data->collections_,
                          collections::CollectionStore::Create(store));
  collections::GraphStore::Options graphs;
  graphs.budget = data->budget_;
  graphs.metrics = data->metrics_;
  graphs.journal =
      data->data_dir_ == nullptr ? nullptr : data->data_dir_->graph_journal();
  // A stored graph passes exactly the checks an inline one does.
  graphs.validate = [limits](const kernels::GraphView& g) {
    dispatch::SpreadJob job;
    job.graph = g;
    return ValidateSpreadJob(job, limits);
  };
  // An updated graph stays within the limits a put meets.
  graphs.validate_size = [limits](uint64_t num_nodes, uint64_t num_edges) {
    return ValidateGraphSize(num_nodes, num_edges, limits);
  };
  graphs.merge_share = options.graph_merge_share;
  graphs.merge_max_updates = options.graph_merge_max_updates;
  ENGRAM_ASSIGN_OR_RETURN(data->graphs_,
                          collections::GraphStore::Create(graphs));

  auto& failures =
      prometheus::BuildCounter()
          .Name("engram_resident_load_failures_total")
          .Help(
              "Resident collections and graphs that failed to load at "
              "start-up (from the data directory or the declarations file), "
              "by kind: collection, graph, or config (the declarations file "
              "itself missing or malformed). The service starts without "
              "them.")
          .Register(registry);
  data->load_failures_collection_ = &failures.Add({{"kind", "collection"}});
  data->load_failures_graph_ = &failures.Add({{"kind", "graph"}});
  data->load_failures_config_ = &failures.Add({{"kind", "config"}});
  auto& loaded = prometheus::BuildCounter()
                     .Name("engram_resident_loads_total")
                     .Help(
                         "Resident collections and graphs loaded at start-up "
                         "(from the data directory or the declarations file), "
                         "by kind: collection or graph.")
                     .Register(registry);
  data->loaded_collection_ = &loaded.Add({{"kind", "collection"}});
  data->loaded_graph_ = &loaded.Add({{"kind", "graph"}});
  return data;
}

ResidentData::~ResidentData() {
  // Changes from the catalog stop before the stores they apply to go.
  if (data_dir_ != nullptr) data_dir_->StopFollowing();
  std::thread waiter;
  {
    absl::MutexLock lock(&waiters_mu_);
    waiters_stop_ = true;
    waiter.swap(waiter_thread_);
  }
  if (waiter.joinable()) waiter.join();
  std::map<std::string, std::shared_ptr<collections::SearchBatcher>,
           std::less<>>
      batchers;
  std::vector<std::shared_ptr<collections::SearchBatcher>> retired;
  {
    absl::MutexLock lock(&mu_);
    batchers.swap(batchers_);
    retired.swap(retired_);
  }
  // Each batcher's destructor fails its waiting calls and waits for its
  // passes; they run on the engine's workers, which outlive this.
  batchers.clear();
  retired.clear();
}

collections::SearchBatcher::Options ResidentData::BatcherOptions() const {
  collections::SearchBatcher::Options b;
  b.enabled = options_.batching;
  b.max_batch_queries = options_.batch_max_queries;
  b.max_queue_delay = options_.batch_max_delay;
  b.max_pending_requests = options_.batch_max_pending;
  b.max_concurrent_passes = options_.batch_max_passes;
  b.max_pass_linger = options_.batch_pass_linger;
  b.execute = execute_;
  b.run = run_;
  b.metrics = metrics_;
  return b;
}

absl::StatusOr<std::shared_ptr<collections::SearchBatcher>>
ResidentData::BatcherFor(absl::string_view name) {
  {
    absl::MutexLock lock(&mu_);
    auto it = batchers_.find(name);
    if (it != batchers_.end()) return it->second;
  }
  ReapRetired();
  // Created outside the lock (it starts a thread); a concurrent creator may
  // win, and then this one is dropped unused.
  ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<collections::SearchBatcher> created,
                          collections::SearchBatcher::Create(BatcherOptions()));
  std::shared_ptr<collections::SearchBatcher> batcher = std::move(created);
  absl::MutexLock lock(&mu_);
  return batchers_.emplace(std::string(name), batcher).first->second;
}

absl::Status ResidentData::DeleteCollection(absl::string_view name) {
  ENGRAM_RETURN_IF_ERROR(collections_->Delete(name));
  RetireBatcher(name);
  return absl::OkStatus();
}

void ResidentData::RetireBatcher(absl::string_view name) {
  {
    absl::MutexLock lock(&mu_);
    auto it = batchers_.find(name);
    if (it != batchers_.end()) {
      retired_.push_back(std::move(it->second));
      batchers_.erase(it);
    }
  }
  ReapRetired();
}

namespace {

// A read that may succeed once a change from the catalog arrives: the name
// is absent here, or held at an older version.
bool MayArrive(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsNotFound(status);
}

}  // namespace

template <typename T>
void ResidentData::Await(std::function<absl::StatusOr<T>()> look,
                         uint64_t min_version, absl::Duration wait,
                         std::function<void(absl::StatusOr<T>)> done) {
  absl::StatusOr<T> now = look();
  if (min_version == 0 || now.ok() || wait <= absl::ZeroDuration() ||
      !MayArrive(now.status())) {
    done(std::move(now));
    return;
  }
  VersionWaiter waiter;
  waiter.deadline = absl::Now() + wait;
  waiter.poll = [look, done](bool last) {
    absl::StatusOr<T> current = look();
    if (!last && MayArrive(current.status())) return false;
    done(std::move(current));
    return true;
  };
  waiter.cancel = [done] {
    done(absl::UnavailableError("the server is shutting down"));
  };
  absl::MutexLock lock(&waiters_mu_);
  if (waiters_stop_) {
    waiter.cancel();
    return;
  }
  waiters_.push_back(std::move(waiter));
  waiters_changed_ = true;
  if (!waiter_thread_.joinable()) {
    waiter_thread_ = std::thread([this] { RunWaiters(); });
  }
}

void ResidentData::WhenAtLeast(const std::string& name, uint64_t min_version,
                               absl::Duration wait, CollectionCallback done) {
  collections::CollectionStore* store = collections_.get();
  Await<std::shared_ptr<const collections::Collection>>(
      [store, name, min_version] {
        return store->GetAtLeast(name, min_version, absl::ZeroDuration());
      },
      min_version, wait, std::move(done));
}

void ResidentData::WhenGraphAtLeast(const std::string& name,
                                    uint64_t min_version, absl::Duration wait,
                                    GraphCallback done) {
  collections::GraphStore* store = graphs_.get();
  Await<std::shared_ptr<const collections::Graph>>(
      [store, name, min_version] {
        return store->GetAtLeast(name, min_version);
      },
      min_version, wait, std::move(done));
}

void ResidentData::WakeWaiters() {
  absl::MutexLock lock(&waiters_mu_);
  waiters_changed_ = true;
}

void ResidentData::RunWaiters() {
  // A local commit does not wake this thread; the poll bounds how late a
  // waiter notices one.
  constexpr absl::Duration kPoll = absl::Milliseconds(20);
  while (true) {
    std::vector<VersionWaiter> waiting;
    bool stop;
    {
      absl::MutexLock lock(&waiters_mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiters_mu_) {
        return waiters_stop_ || waiters_changed_;
      };
      waiters_mu_.AwaitWithTimeout(absl::Condition(&woken), kPoll);
      waiters_changed_ = false;
      stop = waiters_stop_;
      waiting.swap(waiters_);
    }
    const absl::Time now = absl::Now();
    std::vector<VersionWaiter> still;
    for (VersionWaiter& w : waiting) {
      if (stop) {
        w.cancel();
      } else if (!w.poll(/*last=*/now >= w.deadline)) {
        still.push_back(std::move(w));
      }
    }
    // After a stop no wait is added (WhenAtLeast answers it), so every
    // waiter has been answered above.
    if (stop) return;
    absl::MutexLock lock(&waiters_mu_);
    for (VersionWaiter& w : still) waiters_.push_back(std::move(w));
  }
}

void ResidentData::OnCatalogChange(const collections::LoadOutcome& outcome) {
  WakeWaiters();
  // A graph's updates arrive one by one, as often as clients make them: not
  // loads to log and count.
  if (outcome.updated && outcome.status.ok()) return;
  if (!outcome.evicted) {
    Report(outcome, "catalog");
    return;
  }
  if (outcome.declaration.kind == collections::ResidentKind::kCollection) {
    RetireBatcher(outcome.declaration.name);
  }
  Log(outcome.status.ok() ? LogLevel::kInfo : LogLevel::kWarning,
      "resident_evicted",
      {{"kind", collections::ResidentKindName(outcome.declaration.kind)},
       {"name", outcome.declaration.name},
       {"origin", "catalog"},
       {"code", absl::StatusCodeToString(outcome.status.code())}});
}

void ResidentData::ReapRetired() {
  std::vector<std::shared_ptr<collections::SearchBatcher>> idle;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      // Nobody else holds it (no call can reach it any more) and no call is
      // pending: destroying it now waits for nothing.
      if (it->use_count() == 1 && (*it)->pending() == 0) {
        idle.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  idle.clear();
}

void ResidentData::Report(const collections::LoadOutcome& o,
                          const char* origin) {
  const bool graph = o.declaration.kind == collections::ResidentKind::kGraph;
  const std::string kind = collections::ResidentKindName(o.declaration.kind);
  if (o.status.ok()) {
    (graph ? loaded_graph_ : loaded_collection_)->Increment();
    Log(LogLevel::kInfo, "resident_loaded",
        {{"kind", kind},
         {"origin", origin},
         {"name", o.declaration.name},
         {"path", o.declaration.path},
         {"format", collections::FileFormatName(o.format)},
         {"verified_by", o.verified_by},
         {"rows", absl::StrCat(o.rows)},
         {"bytes", absl::StrCat(o.bytes)},
         {"seconds", absl::StrCat(o.seconds)}});
  } else {
    (graph ? load_failures_graph_ : load_failures_collection_)->Increment();
    // A declaration names the line of the declarations file it came from.
    Log(LogLevel::kError, "resident_load_failed",
        {{"kind", kind},
         {"origin", origin},
         {"name", o.declaration.name},
         {"path", o.declaration.path},
         {"line", o.declaration.line > 0 ? absl::StrCat(o.declaration.line)
                                         : std::string("none")},
         {"code", absl::StatusCodeToString(o.status.code())},
         {"error", std::string(o.status.message())}});
  }
}

std::vector<collections::LoadOutcome> ResidentData::LoadDataDir() {
  if (data_dir_ == nullptr) return {};
  absl::StatusOr<std::vector<collections::LoadOutcome>> loaded;
  for (int attempt = 1;; ++attempt) {
    loaded = data_dir_->Load(collections_.get(), graphs_.get());
    if (loaded.ok()) break;
    // Only the catalog fails a whole load: a replica that has never read
    // it has nothing it could serve consistently, so it keeps trying.
    Log(LogLevel::kWarning, "catalog_unavailable",
        {{"catalog", data_dir_->catalog() == nullptr
                         ? std::string()
                         : data_dir_->catalog()->Describe()},
         {"attempt", absl::StrCat(attempt)},
         {"error", std::string(loaded.status().message())}});
    absl::SleepFor(options_.catalog_retry);
  }
  std::vector<collections::LoadOutcome> outcomes = *std::move(loaded);
  for (const collections::LoadOutcome& o : outcomes) Report(o, "data_dir");
  if (data_dir_->catalog() != nullptr) {
    if (absl::Status follow = data_dir_->Follow(); !follow.ok()) {
      Log(LogLevel::kError, "catalog_follow_failed",
          {{"catalog", data_dir_->catalog()->Describe()},
           {"error", std::string(follow.message())}});
    }
  }
  if (data_dir_->leftovers_removed() > 0) {
    Log(LogLevel::kInfo, "data_dir_leftovers_removed",
        {{"path", data_dir_->path()},
         {"files", absl::StrCat(data_dir_->leftovers_removed())}});
  }
  return outcomes;
}

absl::StatusOr<std::vector<collections::LoadOutcome>>
ResidentData::LoadDeclarationsFile(const std::string& path) {
  absl::StatusOr<std::vector<collections::Declaration>> declarations =
      collections::LoadDeclarationsFile(path);
  if (!declarations.ok()) {
    load_failures_config_->Increment();
    Log(LogLevel::kError, "resident_config_failed",
        {{"path", path},
         {"code", absl::StatusCodeToString(declarations.status().code())},
         {"error", std::string(declarations.status().message())}});
    return declarations.status();
  }
  // A name the data directory brought back is what clients last wrote;
  // the operator's file yields to it.
  std::vector<collections::Declaration> remaining;
  for (collections::Declaration& d : *declarations) {
    const bool graph = d.kind == collections::ResidentKind::kGraph;
    const absl::Status stored = graph ? graphs_->Get(d.name).status()
                                      : collections_->Get(d.name).status();
    if (data_dir_ != nullptr && !absl::IsNotFound(stored)) {
      Log(LogLevel::kInfo, "resident_declaration_superseded",
          {{"kind", collections::ResidentKindName(d.kind)},
           {"name", d.name},
           {"path", d.path},
           {"data_dir", data_dir_->path()}});
      continue;
    }
    remaining.push_back(std::move(d));
  }
  std::vector<collections::LoadOutcome> outcomes =
      collections::LoadDeclared(remaining, collections_.get(), graphs_.get());
  for (const collections::LoadOutcome& o : outcomes) Report(o, "declaration");
  return outcomes;
}

}  // namespace engram::core
