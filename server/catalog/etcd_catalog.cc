#include "server/catalog/etcd_catalog.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/mvcc/mvccpb/kv.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/status.h"

namespace engram::server::catalog {

namespace pb = ::etcdserverpb;
using collections::CatalogEntry;
using collections::CatalogEvent;
using collections::CatalogHealth;
using collections::CatalogSnapshot;
using collections::CatalogWatcher;

struct EtcdCatalog::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
};

namespace {

constexpr absl::string_view kScheme = "etcd://";

// The reason an endpoint is unusable, or an empty string.
std::string EndpointProblem(absl::string_view endpoint) {
  if (endpoint.empty()) return "an endpoint is empty";
  const size_t colon = endpoint.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::StrCat("endpoint '", endpoint, "' has no port");
  }
  const absl::string_view host = endpoint.substr(0, colon);
  const absl::string_view port = endpoint.substr(colon + 1);
  if (host.empty())
    return absl::StrCat("endpoint '", endpoint, "' has no host");
  const bool bracketed =
      absl::StartsWith(host, "[") && absl::EndsWith(host, "]");
  // Without brackets the port of "::1:2379" would be a guess.
  if (!bracketed && absl::StrContains(host, ':')) {
    return absl::StrCat("endpoint '", endpoint,
                        "': write an IPv6 host in brackets");
  }
  for (char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_' &&
        c != ':' && c != '[' && c != ']') {
      return absl::StrCat("endpoint '", endpoint, "' has a host holding '",
                          absl::string_view(&c, 1), "'");
    }
  }
  int number = 0;
  if (port.empty() ||
      !std::all_of(port.begin(), port.end(),
                   [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return absl::StrCat("endpoint '", endpoint, "' has port '", port,
                        "', not a number in 1..65535");
  }
  return "";
}

// "a//b/" becomes "/a/b/"; the reason it cannot, in `problem`.
std::string NormalizePrefix(absl::string_view prefix, std::string* problem) {
  for (char c : prefix) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-' &&
        c != '/') {
      *problem = absl::StrCat("prefix '", prefix, "' holds '",
                              absl::string_view(&c, 1),
                              "' (allowed: A-Z a-z 0-9 . _ - /)");
      return "";
    }
  }
  const std::vector<absl::string_view> parts =
      absl::StrSplit(prefix, '/', absl::SkipEmpty());
  if (parts.empty()) {
    *problem = "the prefix is empty (etcd://HOST:PORT/PREFIX)";
    return "";
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"), "/");
}

// The first key after every key that starts with `prefix`.
std::string RangeEnd(const std::string& prefix) {
  std::string end = prefix;
  // A prefix ends in '/', so the increment never carries.
  end.back() = static_cast<char>(end.back() + 1);
  return end;
}

int64_t Milliseconds(absl::Duration d) {
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

bool Unreachable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

absl::StatusOr<CatalogUrl> ParseCatalogUrl(absl::string_view url) {
  auto invalid = [url](absl::string_view reason) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalog URL '", url, "': ", reason));
  };
  if (!absl::StartsWith(url, kScheme)) {
    return invalid("the scheme must be etcd://");
  }
  const absl::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) {
    return invalid("no prefix (etcd://HOST:PORT/PREFIX)");
  }
  const absl::string_view hosts = rest.substr(0, slash);
  if (hosts.empty()) return invalid("no endpoint (etcd://HOST:PORT/PREFIX)");
  CatalogUrl parsed;
  for (absl::string_view endpoint : absl::StrSplit(hosts, ',')) {
    const std::string problem = EndpointProblem(endpoint);
    if (!problem.empty()) return invalid(problem);
    parsed.endpoints.emplace_back(endpoint);
  }
  std::string problem;
  parsed.prefix = NormalizePrefix(rest.substr(slash), &problem);
  if (!problem.empty()) return invalid(problem);
  return parsed;
}

absl::StatusOr<std::unique_ptr<EtcdCatalog>> EtcdCatalog::Create(
    const Options& options) {
  auto invalid = [](absl::string_view reason) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalog options: ", reason));
  };
  if (options.endpoints.empty()) return invalid("no endpoint");
  for (const std::string& endpoint : options.endpoints) {
    const std::string problem = EndpointProblem(endpoint);
    if (!problem.empty()) return invalid(problem);
  }
  std::string problem;
  std::string prefix = NormalizePrefix(options.prefix, &problem);
  if (!problem.empty()) return invalid(problem);
  if (options.call_timeout <= absl::ZeroDuration()) {
    return invalid("call_timeout must be positive");
  }
  if (options.reconnect_backoff_min <= absl::ZeroDuration()) {
    return invalid("reconnect_backoff_min must be positive");
  }
  if (options.reconnect_backoff_max < options.reconnect_backoff_min) {
    return invalid(
        "reconnect_backoff_max must be at least reconnect_backoff_min");
  }
  if (options.list_page_size < 1) {
    return invalid("list_page_size must be at least 1");
  }

  grpc::ChannelArguments args;
  // gRPC's own defaults (1 s growing to 120 s) would leave a restarted etcd
  // unnoticed for up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              Milliseconds(options.reconnect_backoff_min));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              Milliseconds(options.reconnect_backoff_max));
  // A List page is bounded in keys, not bytes; etcd bounds each value.
  args.SetMaxReceiveMessageSize(-1);
  // A watch stream over a connection whose peer vanished without closing it
  // (a host lost, a partition) would otherwise wait forever for the next
  // event. etcd refuses pings more often than every 5 s.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  // A connection of our own: another client's backoff state in this process
  // must not decide when this one reconnects.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);

  std::vector<Endpoint> endpoints;
  for (const std::string& address : options.endpoints) {
    Endpoint endpoint;
    endpoint.address = address;
    endpoint.channel = grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args);
    endpoint.kv = pb::KV::NewStub(endpoint.channel);
    endpoint.watch = pb::Watch::NewStub(endpoint.channel);
    endpoints.push_back(std::move(endpoint));
  }
  return std::unique_ptr<EtcdCatalog>(
      new EtcdCatalog(options, std::move(prefix), std::move(endpoints)));
}

EtcdCatalog::EtcdCatalog(const Options& options, std::string prefix,
                         std::vector<Endpoint> endpoints)
    : options_(options),
      prefix_(std::move(prefix)),
      range_end_(RangeEnd(prefix_)),
      endpoints_(std::move(endpoints)) {
  absl::MutexLock lock(&mu_);
  health_.connected = true;
  health_.since = absl::Now();
}

EtcdCatalog::~EtcdCatalog() { StopWatch(); }

std::string EtcdCatalog::Describe() const {
  return absl::StrCat(kScheme, absl::StrJoin(options_.endpoints, ","),
                      prefix_.substr(0, prefix_.size() - 1));
}

CatalogHealth EtcdCatalog::Health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

void EtcdCatalog::MarkConnected() {
  absl::MutexLock lock(&mu_);
  if (!health_.connected) {
    health_.connected = true;
    health_.since = absl::Now();
  }
  health_.error.clear();
}

void EtcdCatalog::MarkDisconnected(const std::string& error) {
  absl::MutexLock lock(&mu_);
  if (health_.connected) {
    health_.connected = false;
    health_.since = absl::Now();
  }
  health_.error = error;
}

void EtcdCatalog::NoteRevision(int64_t revision) {
  absl::MutexLock lock(&mu_);
  health_.revision = std::max(health_.revision, revision);
}

size_t EtcdCatalog::CurrentEndpoint() const {
  absl::MutexLock lock(&mu_);
  return current_endpoint_;
}

size_t EtcdCatalog::PickWriteEndpoint(absl::Time deadline) {
  const size_t start = CurrentEndpoint();
  if (endpoints_.size() == 1) return start;
  for (size_t k = 0; k < endpoints_.size(); ++k) {
    const size_t i = (start + k) % endpoints_.size();
    grpc::Channel& channel = *endpoints_[i].channel;
    grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    while (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) {
      if (!channel.WaitForStateChange(state, absl::ToChronoTime(deadline))) {
        break;
      }
      state = channel.GetState(/*try_to_connect=*/true);
    }
    if (state == GRPC_CHANNEL_READY) {
      absl::MutexLock lock(&mu_);
      current_endpoint_ = i;
      return i;
    }
  }
  // None connects: the call on the current one says why.
  return start;
}

absl::Status EtcdCatalog::Conclude(size_t endpoint, const grpc::Status& status,
                                   absl::string_view what) {
  const std::string& address = endpoints_[endpoint].address;
  if (status.ok()) {
    MarkConnected();
    return absl::OkStatus();
  }
  if (Unreachable(status)) {
    const std::string error =
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
            ? absl::StrCat("etcd at ", address, " did not answer ", what,
                           " within ",
                           absl::FormatDuration(options_.call_timeout))
            : absl::StrCat("etcd at ", address, " unreachable (", what,
                           "): ", status.error_message());
    MarkDisconnected(error);
    {
      absl::MutexLock lock(&mu_);
      // Only the first of several calls failing on this endpoint moves on.
      if (current_endpoint_ == endpoint) {
        current_endpoint_ = (endpoint + 1) % endpoints_.size();
      }
    }
    return absl::UnavailableError(error);
  }
  // etcd answered, if with a refusal (a request too large, too many
  // requests, a cancelled watch call): it is reachable.
  if (status.error_code() != grpc::StatusCode::CANCELLED) MarkConnected();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd at ", address, ", ", what, ": ",
                                   status.error_message()));
}

absl::Status EtcdCatalog::ListPage(const std::string& from, int64_t revision,
                                   const uint64_t* watch_generation,
                                   CatalogSnapshot* snapshot, bool* more) {
  pb::RangeRequest request;
  request.set_key(from);
  request.set_range_end(range_end_);
  request.set_limit(options_.list_page_size);
  request.set_revision(revision);
  // No sort order: etcd then answers in key order, and limits a page
  // without reading every key first.
  absl::Status status;
  const size_t start = CurrentEndpoint();
  for (size_t k = 0; k < endpoints_.size(); ++k) {
    const size_t endpoint = (start + k) % endpoints_.size();
    grpc::ClientContext context;
    context.set_deadline(Deadline(options_.call_timeout));
    if (watch_generation != nullptr &&
        !BeginWatchCall(*watch_generation, &context)) {
      return absl::CancelledError("catalog watch stopped");
    }
    pb::RangeResponse response;
    const grpc::Status rpc =
        endpoints_[endpoint].kv->Range(&context, request, &response);
    if (watch_generation != nullptr) EndWatchCall(&context);
    status = Conclude(endpoint, rpc, "listing the catalog");
    if (absl::IsUnavailable(status)) continue;
    if (!status.ok()) return status;
    NoteRevision(response.header().revision());
    if (snapshot->revision == 0) {
      snapshot->revision = response.header().revision();
    }
    for (const auto& kv : response.kvs()) {
      CatalogEntry entry;
      entry.key = kv.key().substr(prefix_.size());
      entry.value = kv.value();
      entry.mod_revision = kv.mod_revision();
      snapshot->entries.push_back(std::move(entry));
    }
    *more = response.more() && response.kvs_size() > 0;
    return absl::OkStatus();
  }
  return status;
}

absl::StatusOr<CatalogSnapshot> EtcdCatalog::ListImpl(
    const uint64_t* watch_generation) {
  // A compaction between two pages takes away the revision the later pages
  // read at; the list then starts over at the newest.
  constexpr int kAttempts = 3;
  absl::Status status;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    CatalogSnapshot snapshot;
    std::string from = prefix_;
    bool more = true;
    while (more) {
      more = false;
      status =
          ListPage(from, snapshot.revision, watch_generation, &snapshot, &more);
      if (!status.ok()) break;
      if (more) {
        // The smallest key after the last one.
        from = absl::StrCat(prefix_, snapshot.entries.back().key,
                            absl::string_view("\0", 1));
      }
    }
    if (status.ok()) return snapshot;
    if (!absl::IsOutOfRange(status) || snapshot.revision == 0) return status;
  }
  return status;
}

absl::StatusOr<CatalogSnapshot> EtcdCatalog::List() {
  return ListImpl(/*watch_generation=*/nullptr);
}

template <typename SetOperation>
absl::StatusOr<int64_t> EtcdCatalog::CommitIf(absl::string_view key,
                                              int64_t expected_revision,
                                              SetOperation set_operation) {
  if (key.empty()) return absl::InvalidArgumentError("catalog key is empty");
  if (expected_revision < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("catalog key '", key, "': expected_revision ",
                     expected_revision, " is negative"));
  }
  const std::string full_key = absl::StrCat(prefix_, key);
  pb::TxnRequest request;
  pb::Compare* compare = request.add_compare();
  compare->set_key(full_key);
  compare->set_result(pb::Compare::EQUAL);
  if (expected_revision == 0) {
    // etcd gives every absent key create revision 0, a deleted one too:
    // this means "absent now", not "never written".
    compare->set_target(pb::Compare::CREATE);
    compare->set_create_revision(0);
  } else {
    compare->set_target(pb::Compare::MOD);
    compare->set_mod_revision(expected_revision);
  }
  set_operation(full_key, request.add_success());
  // On failure, read the key back: the ABORTED message says what is there.
  pb::RangeRequest* found = request.add_failure()->mutable_request_range();
  found->set_key(full_key);
  found->set_keys_only(true);

  const absl::Time deadline = absl::Now() + options_.call_timeout;
  const size_t endpoint = PickWriteEndpoint(deadline);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  pb::TxnResponse response;
  const grpc::Status rpc =
      endpoints_[endpoint].kv->Txn(&context, request, &response);
  const absl::Status status =
      Conclude(endpoint, rpc, absl::StrCat("writing key '", key, "'"));
  if (!status.ok()) return status;
  NoteRevision(response.header().revision());
  if (response.succeeded()) return response.header().revision();

  int64_t found_revision = 0;
  if (response.responses_size() == 1 &&
      response.responses(0).response_range().kvs_size() == 1) {
    found_revision =
        response.responses(0).response_range().kvs(0).mod_revision();
  }
  const auto describe = [](int64_t revision) {
    return revision == 0 ? std::string("absent")
                         : absl::StrCat("at revision ", revision);
  };
  return absl::AbortedError(absl::StrCat(
      "catalog key '", key, "' changed: expected ", describe(expected_revision),
      ", found ", describe(found_revision)));
}

absl::StatusOr<int64_t> EtcdCatalog::PutIf(absl::string_view key,
                                           absl::string_view value,
                                           int64_t expected_revision) {
  return CommitIf(key, expected_revision,
                  [value](const std::string& full_key, pb::RequestOp* op) {
                    pb::PutRequest* put = op->mutable_request_put();
                    put->set_key(full_key);
                    put->set_value(std::string(value));
                  });
}

absl::StatusOr<int64_t> EtcdCatalog::DeleteIf(absl::string_view key,
                                              int64_t expected_revision) {
  if (expected_revision == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "catalog key '", key, "': a delete needs the key's revision, not 0"));
  }
  return CommitIf(key, expected_revision,
                  [](const std::string& full_key, pb::RequestOp* op) {
                    op->mutable_request_delete_range()->set_key(full_key);
                  });
}

absl::Status EtcdCatalog::Watch(int64_t after_revision,
                                CatalogWatcher* watcher) {
  if (watcher == nullptr) {
    return absl::InvalidArgumentError("catalog watch: the watcher is null");
  }
  if (after_revision < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "catalog watch: after_revision ", after_revision, " is negative"));
  }
  absl::MutexLock lock(&mu_);
  if (watch_thread_.joinable() || watch_stopping_) {
    return absl::FailedPreconditionError(
        absl::StrCat("catalog ", Describe(), " is already watched"));
  }
  const uint64_t generation = ++watch_generation_;
  watch_thread_ = std::thread([this, generation, after_revision, watcher] {
    WatchLoop(generation, after_revision, watcher);
  });
  return absl::OkStatus();
}

void EtcdCatalog::StopWatch() {
  absl::MutexLock stop_lock(&stop_mu_);
  std::thread thread;
  {
    absl::MutexLock lock(&mu_);
    if (!watch_thread_.joinable()) return;
    ++watch_generation_;
    if (watch_call_ != nullptr) watch_call_->TryCancel();
    watch_stopped_.SignalAll();
    thread = std::move(watch_thread_);
    watch_stopping_ = true;
  }
  thread.join();
  absl::MutexLock lock(&mu_);
  watch_stopping_ = false;
}

bool EtcdCatalog::BeginWatchCall(uint64_t generation,
                                 grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (watch_generation_ != generation) return false;
  watch_call_ = context;
  return true;
}

void EtcdCatalog::EndWatchCall(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (watch_call_ == context) watch_call_ = nullptr;
}

bool EtcdCatalog::WaitUnlessStopped(uint64_t generation, absl::Duration delay) {
  const absl::Time deadline = absl::Now() + delay;
  absl::MutexLock lock(&mu_);
  while (watch_generation_ == generation && absl::Now() < deadline) {
    watch_stopped_.WaitWithDeadline(&mu_, deadline);
  }
  return watch_generation_ == generation;
}

void EtcdCatalog::WatchLoop(uint64_t generation, int64_t after_revision,
                            CatalogWatcher* watcher) {
  int64_t next_revision = after_revision + 1;
  bool resync = false;
  absl::Duration backoff = options_.reconnect_backoff_min;
  for (;;) {
    bool established = false;
    if (resync) {
      absl::StatusOr<CatalogSnapshot> snapshot = ListImpl(&generation);
      if (absl::IsCancelled(snapshot.status())) return;
      if (snapshot.ok()) {
        watcher->OnResync(*snapshot);
        next_revision = snapshot->revision + 1;
        resync = false;
      }
    }
    if (!resync) {
      switch (RunStream(generation, &next_revision, watcher, &established)) {
        case StreamEnd::kStopped:
          return;
        case StreamEnd::kCompacted:
          // Not a failure: resync at once.
          resync = true;
          backoff = options_.reconnect_backoff_min;
          continue;
        case StreamEnd::kBroken:
          // The watcher may have missed changes while the stream was down,
          // and etcd may compact them before it is back.
          resync = true;
          break;
      }
    }
    if (established) backoff = options_.reconnect_backoff_min;
    if (!WaitUnlessStopped(generation, backoff)) return;
    backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
  }
}

EtcdCatalog::StreamEnd EtcdCatalog::RunStream(uint64_t generation,
                                              int64_t* next_revision,
                                              CatalogWatcher* watcher,
                                              bool* established) {
  const size_t endpoint = CurrentEndpoint();
  grpc::ClientContext context;
  if (!BeginWatchCall(generation, &context)) return StreamEnd::kStopped;
  std::unique_ptr<grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>>
      stream = endpoints_[endpoint].watch->Watch(&context);

  pb::WatchRequest request;
  pb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(prefix_);
  create->set_range_end(range_end_);
  create->set_start_revision(*next_revision);
  bool compacted = false;
  std::string canceled;
  bool stopped_reading = false;
  if (stream->Write(request)) {
    pb::WatchResponse response;
    std::vector<CatalogEvent> events;
    while (stream->Read(&response)) {
      NoteRevision(response.header().revision());
      if (response.compact_revision() != 0) {
        compacted = true;
        stopped_reading = true;
        break;
      }
      if (response.canceled()) {
        canceled = response.cancel_reason();
        stopped_reading = true;
        break;
      }
      if (response.created() && !*established) {
        *established = true;
        MarkConnected();
      }
      if (response.events_size() == 0) continue;
      events.clear();
      for (const mvccpb::Event& event : response.events()) {
        CatalogEvent& out = events.emplace_back();
        out.type = event.type() == mvccpb::Event::DELETE
                       ? CatalogEvent::Type::kDelete
                       : CatalogEvent::Type::kPut;
        out.entry.key = event.kv().key().substr(prefix_.size());
        if (out.type == CatalogEvent::Type::kPut) {
          out.entry.value = event.kv().value();
        }
        out.entry.mod_revision = event.kv().mod_revision();
      }
      *next_revision = events.back().entry.mod_revision + 1;
      watcher->OnEvents(events);
    }
  }
  // Finish would wait for etcd to end a stream we stopped reading.
  if (stopped_reading) context.TryCancel();
  const grpc::Status status = stream->Finish();
  EndWatchCall(&context);

  {
    absl::MutexLock lock(&mu_);
    if (watch_generation_ != generation) return StreamEnd::kStopped;
  }
  if (compacted) return StreamEnd::kCompacted;
  if (!canceled.empty() || status.ok() ||
      status.error_code() == grpc::StatusCode::CANCELLED) {
    // etcd ended the watch while it was reachable.
    const std::string reason =
        canceled.empty() ? "the watch stream ended" : canceled;
    (void)Conclude(endpoint, grpc::Status(grpc::StatusCode::ABORTED, reason),
                   "watching the catalog");
    return StreamEnd::kBroken;
  }
  (void)Conclude(endpoint, status, "watching the catalog");
  return StreamEnd::kBroken;
}

}  // namespace engram::server::catalog
