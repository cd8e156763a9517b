// EtcdCatalog against a real etcd (Debian's etcd-server, started by the
// fixture on free loopback ports): URL parsing, conditional writes and
// their races, the watch with its resyncs after compaction and after etcd
// was away, health, prompt failures while etcd is down, and failover.
#include "server/catalog/etcd_catalog.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/etcd_process.h"
#include "tests/server/server_process.h"
#include "tests/testing/time_scale.h"

namespace engram::server::catalog {
namespace {

using collections::CatalogEntry;
using collections::CatalogEvent;
using collections::CatalogSnapshot;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Keeps every call it gets, and the view they add up to.
class RecordingWatcher : public collections::CatalogWatcher {
 public:
  void OnEvents(absl::Span<const CatalogEvent> events) override {
    absl::MutexLock lock(&mu_);
    for (const CatalogEvent& event : events) {
      events_.push_back(event);
      if (event.type == CatalogEvent::Type::kPut) {
        view_[event.entry.key] = event.entry;
      } else {
        view_.erase(event.entry.key);
      }
    }
  }
  void OnResync(const CatalogSnapshot& snapshot) override {
    absl::MutexLock lock(&mu_);
    resyncs_.push_back(snapshot);
    events_at_resync_.push_back(events_.size());
    view_.clear();
    for (const CatalogEntry& entry : snapshot.entries) view_[entry.key] = entry;
  }

  // Waits until `done(*this)` holds or `timeout` passes; whether it holds.
  template <typename Predicate>
  bool WaitUntil(Predicate done, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done(*this); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
  }

  std::vector<CatalogEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<CatalogSnapshot> resyncs() const {
    absl::MutexLock lock(&mu_);
    return resyncs_;
  }
  // How many events had come when each resync came.
  std::vector<size_t> events_at_resync() const {
    absl::MutexLock lock(&mu_);
    return events_at_resync_;
  }
  std::map<std::string, CatalogEntry> view() const {
    absl::MutexLock lock(&mu_);
    return view_;
  }

  // For WaitUntil's predicates, which run under the lock (the analysis
  // cannot follow it into them).
  size_t event_count() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return events_.size();
  }
  size_t resync_count() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return resyncs_.size();
  }
  bool has_key(const std::string& key) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return view_.count(key) == 1;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<CatalogEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<CatalogSnapshot> resyncs_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> events_at_resync_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CatalogEntry> view_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::string> Keys(const CatalogSnapshot& snapshot) {
  std::vector<std::string> keys;
  for (const CatalogEntry& entry : snapshot.entries) keys.push_back(entry.key);
  return keys;
}

// key=value@revision, for comparing views in one line.
std::string Describe(const std::vector<CatalogEntry>& entries) {
  std::string text;
  for (const CatalogEntry& e : entries) {
    absl::StrAppend(&text, e.key, "=", e.value, "@", e.mod_revision, " ");
  }
  return text;
}
std::string Describe(const std::map<std::string, CatalogEntry>& view) {
  std::vector<CatalogEntry> entries;
  for (const auto& [key, entry] : view) entries.push_back(entry);
  return Describe(entries);
}

// Polls `done` until it holds or `timeout` passes; whether it holds.
template <typename Predicate>
bool Eventually(Predicate done, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class EtcdCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = testing::EtcdProcess::Start();
    ASSERT_NE(etcd_, nullptr);
  }
  void TearDown() override { etcd_.reset(); }

  EtcdCatalog::Options OptionsFor(const std::string& prefix) const {
    EtcdCatalog::Options options;
    options.endpoints = {etcd_->endpoint()};
    options.prefix = prefix;
    // Only ends a hung call.
    options.call_timeout = testing::Scaled(absl::Seconds(10));
    options.reconnect_backoff_min = absl::Milliseconds(50);
    options.reconnect_backoff_max = absl::Milliseconds(500);
    return options;
  }

  std::unique_ptr<EtcdCatalog> MakeCatalog(const std::string& prefix) {
    return MakeCatalog(OptionsFor(prefix));
  }
  std::unique_ptr<EtcdCatalog> MakeCatalog(
      const EtcdCatalog::Options& options) {
    auto catalog = EtcdCatalog::Create(options);
    EXPECT_TRUE(catalog.ok()) << catalog.status();
    return catalog.ok() ? *std::move(catalog) : nullptr;
  }

  std::unique_ptr<testing::EtcdProcess> etcd_;
};

TEST(ParseCatalogUrlTest, AcceptsEndpointsAndNormalisesThePrefix) {
  auto url = ParseCatalogUrl("etcd://127.0.0.1:2379/engram");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(url->endpoints, ElementsAre("127.0.0.1:2379"));
  EXPECT_EQ(url->prefix, "/engram/");

  url = ParseCatalogUrl(
      "etcd://etcd-0.etcd:2379,etcd-1.etcd:2379,[::1]:2379//prod//"
      "engram.v1_a-b/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(url->endpoints, ElementsAre("etcd-0.etcd:2379",
                                          "etcd-1.etcd:2379", "[::1]:2379"));
  EXPECT_EQ(url->prefix, "/prod/engram.v1_a-b/");
}

TEST(ParseCatalogUrlTest, RejectsBadUrlsNamingTheReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://127.0.0.1:2379/engram", "scheme must be etcd://"},
      {"127.0.0.1:2379/engram", "scheme must be etcd://"},
      {"etcd:///engram", "no endpoint"},
      {"etcd://127.0.0.1:2379,/engram", "an endpoint is empty"},
      {"etcd://127.0.0.1/engram", "has no port"},
      {"etcd://:2379/engram", "has no host"},
      {"etcd://127.0.0.1:http/engram", "not a number in 1..65535"},
      {"etcd://127.0.0.1:0/engram", "not a number in 1..65535"},
      {"etcd://127.0.0.1:65536/engram", "not a number in 1..65535"},
      {"etcd://127.0.0.1:/engram", "not a number in 1..65535"},
      {"etcd://::1:2379/engram", "IPv6 host in brackets"},
      {"etcd://127.0.0.1:2379", "no prefix"},
      {"etcd://127.0.0.1:2379/", "prefix is empty"},
      {"etcd://127.0.0.1:2379///", "prefix is empty"},
      {"etcd://127.0.0.1:2379/en gram", "holds ' '"},
      {"etcd://127.0.0.1:2379/engram?x=1", "holds '?'"},
  };
  for (const auto& [url, reason] : cases) {
    SCOPED_TRACE(url);
    const auto parsed = ParseCatalogUrl(url);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("catalog"));
    EXPECT_THAT(parsed.status().message(), HasSubstr(reason));
  }
}

TEST(EtcdCatalogOptionsTest, CreateRejectsBadOptionsWithoutContactingEtcd) {
  EtcdCatalog::Options good;
  good.endpoints = {"127.0.0.1:1"};  // nothing listens there
  good.prefix = "engram";
  auto catalog = EtcdCatalog::Create(good);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_EQ((*catalog)->Describe(), "etcd://127.0.0.1:1/engram");

  const std::vector<std::pair<std::string, void (*)(EtcdCatalog::Options&)>>
      cases = {
          {"no endpoint", [](EtcdCatalog::Options& o) { o.endpoints.clear(); }},
          {"has no port",
           [](EtcdCatalog::Options& o) { o.endpoints = {"localhost"}; }},
          {"prefix is empty", [](EtcdCatalog::Options& o) { o.prefix = "/"; }},
          {"call_timeout",
           [](EtcdCatalog::Options& o) {
             o.call_timeout = absl::ZeroDuration();
           }},
          {"reconnect_backoff_min",
           [](EtcdCatalog::Options& o) {
             o.reconnect_backoff_min = absl::ZeroDuration();
           }},
          {"reconnect_backoff_max",
           [](EtcdCatalog::Options& o) {
             o.reconnect_backoff_max = absl::Milliseconds(1);
           }},
          {"list_page_size",
           [](EtcdCatalog::Options& o) { o.list_page_size = 0; }},
      };
  for (const auto& [reason, spoil] : cases) {
    SCOPED_TRACE(reason);
    EtcdCatalog::Options options = good;
    spoil(options);
    const auto bad = EtcdCatalog::Create(options);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bad.status().message(), HasSubstr(reason));
  }
}

TEST_F(EtcdCatalogTest, ConditionalWritesCompareTheKeysRevision) {
  auto catalog = MakeCatalog("engram");
  ASSERT_NE(catalog, nullptr);

  auto created = catalog->PutIf("collections/a", "v1", 0);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(*created, 0);

  auto again = catalog->PutIf("collections/a", "v1 again", 0);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(again.status().message(), HasSubstr("collections/a"));
  EXPECT_THAT(again.status().message(),
              HasSubstr(absl::StrCat("found at revision ", *created)));

  auto updated = catalog->PutIf("collections/a", "v2", *created);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_GT(*updated, *created);

  auto stale = catalog->PutIf("collections/a", "v3", *created);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.status().message(), HasSubstr("collections/a"));

  auto stale_delete = catalog->DeleteIf("collections/a", *created);
  EXPECT_EQ(stale_delete.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale_delete.status().message(), HasSubstr("collections/a"));

  auto absent_delete = catalog->DeleteIf("collections/missing", 1);
  EXPECT_EQ(absent_delete.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(absent_delete.status().message(), HasSubstr("found absent"));

  auto listed = catalog->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->entries.size(), 1u);
  EXPECT_EQ(listed->entries[0].value, "v2");
  EXPECT_EQ(listed->entries[0].mod_revision, *updated);

  auto deleted = catalog->DeleteIf("collections/a", *updated);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_GT(*deleted, *updated);
  listed = catalog->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->entries.empty());
  EXPECT_EQ(listed->revision, *deleted);
  EXPECT_EQ(catalog->Health().revision, *deleted);
  EXPECT_TRUE(catalog->Health().connected);

  // Absent again, so "absent" holds again.
  EXPECT_TRUE(catalog->PutIf("collections/a", "v4", 0).ok());

  EXPECT_EQ(catalog->PutIf("", "v", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->PutIf("collections/b", "v", -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->DeleteIf("collections/a", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EtcdCatalogTest, ListReturnsRelativeSortedKeysOfItsPrefixOnly) {
  EtcdCatalog::Options options = OptionsFor("/app/");
  options.list_page_size = 2;  // several pages
  auto catalog = MakeCatalog(options);
  // Prefixes that share the first letters, below and above "/app/".
  auto longer = MakeCatalog("app2");
  auto shorter = MakeCatalog("ap");
  ASSERT_NE(catalog, nullptr);
  ASSERT_NE(longer, nullptr);
  ASSERT_NE(shorter, nullptr);

  for (const char* key : {"graphs/g", "collections/b", "collections/a",
                          "collections/a.b", "collections/c"}) {
    ASSERT_TRUE(catalog->PutIf(key, absl::StrCat("value of ", key), 0).ok());
  }
  ASSERT_TRUE(longer->PutIf("collections/outside", "x", 0).ok());
  ASSERT_TRUE(shorter->PutIf("collections/outside", "x", 0).ok());
  auto last = catalog->PutIf("collections/d", "value of collections/d", 0);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(longer->PutIf("collections/later", "x", 0).ok());

  auto listed = catalog->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(Keys(*listed),
              ElementsAre("collections/a", "collections/a.b", "collections/b",
                          "collections/c", "collections/d", "graphs/g"));
  for (const CatalogEntry& entry : listed->entries) {
    EXPECT_EQ(entry.value, "value of " + entry.key);
    EXPECT_GT(entry.mod_revision, 0);
  }
  EXPECT_GT(listed->revision, *last);

  auto other = longer->List();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_THAT(Keys(*other),
              ElementsAre("collections/later", "collections/outside"));
}

TEST_F(EtcdCatalogTest, RacingWritersFromOneRevisionHaveExactlyOneWinner) {
  auto first = MakeCatalog("engram");
  auto second = MakeCatalog("engram");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  auto created = first->PutIf("collections/race", "round 0", 0);
  ASSERT_TRUE(created.ok()) << created.status();

  constexpr int kThreads = 8;
  constexpr int kRounds = 10;
  int64_t revision = *created;
  for (int round = 1; round <= kRounds; ++round) {
    std::atomic<int> wins{0};
    std::atomic<int> aborts{0};
    std::atomic<int64_t> won_at{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      EtcdCatalog* catalog = (t % 2 == 0 ? first : second).get();
      threads.emplace_back([&, catalog, t] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        auto result =
            catalog->PutIf("collections/race",
                           absl::StrCat("round ", round, " by ", t), revision);
        if (result.ok()) {
          wins.fetch_add(1);
          won_at.store(*result);
        } else if (result.status().code() == absl::StatusCode::kAborted) {
          aborts.fetch_add(1);
        } else {
          ADD_FAILURE() << result.status();
        }
      });
    }
    go.store(true, std::memory_order_release);
    for (std::thread& thread : threads) thread.join();
    ASSERT_EQ(wins.load(), 1) << "round " << round;
    ASSERT_EQ(aborts.load(), kThreads - 1) << "round " << round;
    ASSERT_GT(won_at.load(), revision);
    revision = won_at.load();
  }
  auto listed = second->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->entries.size(), 1u);
  EXPECT_EQ(listed->entries[0].mod_revision, revision);
}

TEST_F(EtcdCatalogTest, WatchDeliversPutsAndDeletesInOrder) {
  auto watched = MakeCatalog("engram");
  auto other = MakeCatalog("engram");
  auto elsewhere = MakeCatalog("elsewhere");
  ASSERT_NE(watched, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_NE(elsewhere, nullptr);
  auto before = watched->PutIf("collections/old", "before the watch", 0);
  ASSERT_TRUE(before.ok()) << before.status();

  RecordingWatcher watcher;
  ASSERT_TRUE(watched->Watch(*before, &watcher).ok());
  EXPECT_EQ(watched->Watch(*before, &watcher).code(),
            absl::StatusCode::kFailedPrecondition);

  struct Expected {
    CatalogEvent::Type type;
    std::string key;
    std::string value;
    int64_t revision;
  };
  std::vector<Expected> expected;
  auto put = [&](EtcdCatalog& catalog, const std::string& key,
                 const std::string& value, int64_t revision) {
    auto result = catalog.PutIf(key, value, revision);
    ASSERT_TRUE(result.ok()) << result.status();
    expected.push_back({CatalogEvent::Type::kPut, key, value, *result});
  };
  auto remove = [&](EtcdCatalog& catalog, const std::string& key,
                    int64_t revision) {
    auto result = catalog.DeleteIf(key, revision);
    ASSERT_TRUE(result.ok()) << result.status();
    expected.push_back({CatalogEvent::Type::kDelete, key, "", *result});
  };
  put(*watched, "collections/a", "a1", 0);
  put(*other, "collections/b", "b1", 0);
  ASSERT_TRUE(elsewhere->PutIf("collections/a", "not ours", 0).ok());
  put(*other, "collections/a", "a2", expected[0].revision);
  remove(*watched, "collections/old", *before);
  remove(*other, "collections/b", expected[1].revision);
  put(*watched, "graphs/g", "g1", 0);

  ASSERT_TRUE(watcher.WaitUntil(
      [&](const RecordingWatcher& w) {
        return w.event_count() >= expected.size();
      },
      testing::Scaled(absl::Seconds(10))))
      << watcher.events().size() << " events";
  const std::vector<CatalogEvent> events = watcher.events();
  ASSERT_EQ(events.size(), expected.size());
  for (size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(events[i].type, expected[i].type);
    EXPECT_EQ(events[i].entry.key, expected[i].key);
    EXPECT_EQ(events[i].entry.value, expected[i].value);
    EXPECT_EQ(events[i].entry.mod_revision, expected[i].revision);
  }
  EXPECT_TRUE(watcher.resyncs().empty());
  EXPECT_GE(watched->Health().revision, expected.back().revision);

  // Stopped, it delivers nothing more; a new watch may start.
  watched->StopWatch();
  watched->StopWatch();
  ASSERT_TRUE(other->PutIf("collections/after", "x", 0).ok());
  RecordingWatcher second;
  ASSERT_TRUE(watched->Watch(expected.back().revision, &second).ok());
  ASSERT_TRUE(second.WaitUntil(
      [](const RecordingWatcher& w) { return w.event_count() >= 1; },
      testing::Scaled(absl::Seconds(10))));
  EXPECT_EQ(second.events()[0].entry.key, "collections/after");
  EXPECT_EQ(watcher.events().size(), expected.size());
}

TEST_F(EtcdCatalogTest, WatchFromACompactedRevisionResyncsThenFollows) {
  auto catalog = MakeCatalog("engram");
  ASSERT_NE(catalog, nullptr);
  auto first = catalog->PutIf("collections/a", "a1", 0);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = catalog->PutIf("collections/a", "a2", *first);
  ASSERT_TRUE(second.ok()) << second.status();
  auto third = catalog->PutIf("collections/b", "b1", 0);
  ASSERT_TRUE(third.ok()) << third.status();

  {
    auto channel = grpc::CreateChannel(etcd_->endpoint(),
                                       grpc::InsecureChannelCredentials());
    auto kv = etcdserverpb::KV::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(testing::ScaledDeadline(absl::Seconds(10)));
    etcdserverpb::CompactionRequest request;
    request.set_revision(*third);
    request.set_physical(true);
    etcdserverpb::CompactionResponse response;
    const grpc::Status compacted = kv->Compact(&context, request, &response);
    ASSERT_TRUE(compacted.ok()) << compacted.error_message();
  }

  RecordingWatcher watcher;
  ASSERT_TRUE(catalog->Watch(*first - 1, &watcher).ok());
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.resync_count() >= 1; },
      testing::Scaled(absl::Seconds(10))));
  const CatalogSnapshot snapshot = watcher.resyncs()[0];
  EXPECT_EQ(snapshot.revision, *third);
  EXPECT_EQ(Describe(snapshot.entries),
            absl::StrCat("collections/a=a2@", *second, " collections/b=b1@",
                         *third, " "));
  EXPECT_TRUE(watcher.events().empty());

  auto later = catalog->PutIf("collections/c", "c1", 0);
  ASSERT_TRUE(later.ok()) << later.status();
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.event_count() >= 1; },
      testing::Scaled(absl::Seconds(10))));
  const std::vector<CatalogEvent> events = watcher.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].entry.key, "collections/c");
  EXPECT_EQ(events[0].entry.mod_revision, *later);
  EXPECT_EQ(watcher.resyncs().size(), 1u);
  EXPECT_TRUE(catalog->Health().connected);
}

TEST_F(EtcdCatalogTest, ReportsEtcdDownAndResyncsWhenItIsBack) {
  EtcdCatalog::Options options = OptionsFor("engram");
  // Far longer than any bound below: failures must come from the refused
  // connection, not from the deadline.
  options.call_timeout = absl::Seconds(60);
  auto watched = MakeCatalog(options);
  ASSERT_NE(watched, nullptr);
  auto a = watched->PutIf("collections/a", "a1", 0);
  ASSERT_TRUE(a.ok()) << a.status();
  auto c = watched->PutIf("collections/c", "c1", 0);
  ASSERT_TRUE(c.ok()) << c.status();
  RecordingWatcher watcher;
  ASSERT_TRUE(watched->Watch(*c, &watcher).ok());
  auto b = watched->PutIf("collections/b", "b1", 0);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.event_count() >= 1; },
      testing::Scaled(absl::Seconds(10))));
  ASSERT_TRUE(watched->Health().connected);

  const int port = etcd_->client_port();
  etcd_->Kill();
  ASSERT_TRUE(Eventually([&] { return !watched->Health().connected; },
                         testing::Scaled(absl::Seconds(10))));
  const collections::CatalogHealth down = watched->Health();
  EXPECT_THAT(down.error, HasSubstr("etcd at " + etcd_->endpoint()));
  EXPECT_GE(down.revision, *b);

  absl::Time start = absl::Now();
  auto refused = watched->PutIf("collections/d", "d1", 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_THAT(refused.status().message(),
              HasSubstr("etcd at " + etcd_->endpoint()));
  EXPECT_LT(absl::Now() - start, testing::Scaled(absl::Seconds(5)));
  start = absl::Now();
  auto unlisted = watched->List();
  EXPECT_EQ(unlisted.status().code(), absl::StatusCode::kUnavailable)
      << unlisted.status();
  EXPECT_THAT(unlisted.status().message(), HasSubstr("etcd"));
  EXPECT_LT(absl::Now() - start, testing::Scaled(absl::Seconds(5)));
  EXPECT_FALSE(watched->Health().connected);

  // Changes while the watched catalog is away: etcd serves them on another
  // port first, so that they are all made before it can reconnect.
  absl::StatusOr<int> elsewhere_port = port;
  while (elsewhere_port.ok() && *elsewhere_port == port) {
    elsewhere_port = testing::PickFreePort();
  }
  ASSERT_TRUE(elsewhere_port.ok());
  ASSERT_TRUE(etcd_->Restart(*elsewhere_port));
  EtcdCatalog::Options writer_options = OptionsFor("engram");
  writer_options.endpoints = {etcd_->endpoint()};
  auto writer = MakeCatalog(writer_options);
  ASSERT_NE(writer, nullptr);
  auto a2 = writer->PutIf("collections/a", "a2", *a);
  ASSERT_TRUE(a2.ok()) << a2.status();
  ASSERT_TRUE(writer->DeleteIf("collections/c", *c).ok());
  auto e = writer->PutIf("collections/e", "e1", 0);
  ASSERT_TRUE(e.ok()) << e.status();
  auto away = writer->List();
  ASSERT_TRUE(away.ok()) << away.status();
  EXPECT_FALSE(watched->Health().connected);
  EXPECT_EQ(watcher.resyncs().size(), 0u);

  ASSERT_TRUE(etcd_->Restart(port));
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.resync_count() >= 1; },
      testing::Scaled(absl::Seconds(30))));
  const CatalogSnapshot resynced = watcher.resyncs()[0];
  EXPECT_EQ(Describe(resynced.entries), Describe(away->entries));
  EXPECT_EQ(Describe(resynced.entries),
            absl::StrCat("collections/a=a2@", *a2, " collections/b=b1@", *b,
                         " collections/e=e1@", *e, " "));
  EXPECT_GE(resynced.revision, *e);
  ASSERT_TRUE(Eventually([&] { return watched->Health().connected; },
                         testing::Scaled(absl::Seconds(30))));
  EXPECT_TRUE(watched->Health().error.empty());

  auto d = watched->PutIf("collections/d", "d1", 0);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(watcher.WaitUntil(
      [&](const RecordingWatcher& w) {
        return w.event_count() >= 2 && w.has_key("collections/d");
      },
      testing::Scaled(absl::Seconds(10))));
  const std::vector<CatalogEvent> events = watcher.events();
  EXPECT_EQ(events.back().entry.key, "collections/d");
  EXPECT_EQ(events.back().entry.mod_revision, *d);
  auto now = watched->List();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(Describe(watcher.view()), Describe(now->entries));
}

TEST_F(EtcdCatalogTest, StopWatchReturnsPromptlyWhileEtcdIsDown) {
  EtcdCatalog::Options options = OptionsFor("engram");
  // The watch then sleeps a minute between attempts.
  options.reconnect_backoff_min = absl::Seconds(60);
  options.reconnect_backoff_max = absl::Seconds(60);
  auto catalog = MakeCatalog(options);
  ASSERT_NE(catalog, nullptr);
  RecordingWatcher watcher;
  ASSERT_TRUE(catalog->Watch(0, &watcher).ok());
  ASSERT_TRUE(catalog->PutIf("collections/a", "a1", 0).ok());
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.event_count() >= 1; },
      testing::Scaled(absl::Seconds(10))));

  etcd_->Kill();
  ASSERT_TRUE(Eventually([&] { return !catalog->Health().connected; },
                         testing::Scaled(absl::Seconds(10))));
  absl::SleepFor(absl::Milliseconds(100));  // into the backoff wait
  // The bound is the behaviour: far below the minute of backoff.
  absl::Time start = absl::Now();
  catalog->StopWatch();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  // A watch that never reached etcd stops as promptly, on destruction.
  ASSERT_TRUE(catalog->Watch(0, &watcher).ok());
  absl::SleepFor(absl::Milliseconds(100));
  start = absl::Now();
  catalog.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(EtcdCatalogTest, FailsOverFromADeadEndpoint) {
  auto dead = testing::PickFreePort();
  ASSERT_TRUE(dead.ok());
  EtcdCatalog::Options options = OptionsFor("engram");
  const std::string dead_endpoint = absl::StrCat("127.0.0.1:", *dead);
  options.endpoints = {dead_endpoint, etcd_->endpoint()};
  auto catalog = MakeCatalog(options);
  ASSERT_NE(catalog, nullptr);
  EXPECT_EQ(catalog->Describe(), absl::StrCat("etcd://", dead_endpoint, ",",
                                              etcd_->endpoint(), "/engram"));

  // The first write already: nothing was sent to the dead endpoint.
  auto a = catalog->PutIf("collections/a", "a1", 0);
  ASSERT_TRUE(a.ok()) << a.status();
  auto listed = catalog->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(Keys(*listed), ElementsAre("collections/a"));

  RecordingWatcher watcher;
  ASSERT_TRUE(catalog->Watch(*a, &watcher).ok());
  auto b = catalog->PutIf("collections/b", "b1", 0);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(watcher.WaitUntil(
      [](const RecordingWatcher& w) { return w.has_key("collections/b"); },
      testing::Scaled(absl::Seconds(10))));
  EXPECT_TRUE(catalog->Health().connected);

  // A List from a fresh catalog reads through the live endpoint too.
  auto reader = MakeCatalog(options);
  ASSERT_NE(reader, nullptr);
  listed = reader->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(Keys(*listed), ElementsAre("collections/a", "collections/b"));
}

}  // namespace
}  // namespace engram::server::catalog
