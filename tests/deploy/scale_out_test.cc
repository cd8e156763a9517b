// Scale-out as a client in Kubernetes sees it through the headless Service:
// three engram-server processes on loopback, one channel over all three with
// the service config that docs/deploy.md gives clients
// (deploy/grpc-service-config.json: round_robin, client-side health checking
// of the Similarity service, retries of UNAVAILABLE). Requests spread over
// every replica, and a replica killed or drained mid-run loses no request.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;

constexpr int kReplicas = 3;
constexpr int kQueries = 16;
constexpr int kTopK = 5;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// 16 queries against 512 targets of dimension 64: about 130 KiB, under gRPC's
// default 256 KiB per-call retry buffer, so every attempt can be retried.
pb::BatchCosineRequest Request(uint64_t seed) {
  auto queries = client::MakeMatrix(kQueries, 64,
                                    testing::RandomMatrix(kQueries, 64, seed));
  auto targets =
      client::MakeMatrix(512, 64, testing::RandomMatrix(512, 64, seed + 1));
  return client::MakeCosineRequest(*queries, *targets, kTopK, std::nullopt);
}

class ScaleOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < kReplicas; ++i) {
      auto replica = testing::ServerProcess::Start(
          ENGRAM_SERVER_BINARY,
          {"--worker_threads=1", "--drain_deadline=5s", "--log_level=warning"});
      ASSERT_TRUE(replica.ok()) << replica.status();
      // A client of this replica alone, for its GetStats.
      client::SimilarityClient::Options options;
      options.target = (*replica)->grpc_target();
      options.timeout = testing::Scaled(absl::Seconds(5));
      auto direct = client::SimilarityClient::Create(options);
      ASSERT_TRUE(direct.ok()) << direct.status();
      replicas_.push_back(std::move(*replica));
      direct_.push_back(std::move(*direct));
    }
  }

  // One channel over every replica, as a headless Service's DNS name
  // resolves, configured by deploy/grpc-service-config.json.
  std::unique_ptr<client::SimilarityClient> BalancedClient() {
    std::vector<std::string> addresses;
    for (const auto& replica : replicas_) {
      addresses.push_back(replica->grpc_target());
    }
    client::SimilarityClient::Options options;
    options.target = absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
    options.timeout = testing::Scaled(absl::Seconds(10));
    options.service_config_json = ReadFile(ENGRAM_SERVICE_CONFIG);
    EXPECT_FALSE(options.service_config_json.empty()) << ENGRAM_SERVICE_CONFIG;
    auto client = client::SimilarityClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return nullptr;
    EXPECT_TRUE((*client)->channel()->WaitForConnected(
        testing::ScaledDeadline(absl::Seconds(10))))
        << options.target;
    return std::move(*client);
  }

  // BatchCosine calls replica `i` answered OK, from its own GetStats.
  absl::StatusOr<uint64_t> ServedBy(int i) {
    auto stats = direct_[i]->GetStats();
    if (!stats.ok()) return stats.status();
    uint64_t served = 0;
    for (const pb::MethodStats& m : stats->methods()) {
      if (m.method() == "BatchCosine" && m.code() == "OK") served += m.count();
    }
    return served;
  }

  // BatchCosine calls replicas 1 and 2 answered OK.
  absl::StatusOr<uint64_t> ServedBySurvivors() {
    auto one = ServedBy(1);
    if (!one.ok()) return one.status();
    auto two = ServedBy(2);
    if (!two.ok()) return two.status();
    return *one + *two;
  }

  // Sends `total` calls from `threads` threads through one balanced channel;
  // once `stop_at` calls have completed, sends `signal` to replica 0 and
  // waits for it to exit. Every call must succeed with the same answer.
  void RunLoadAndStopReplicaZero(int total, int threads, int stop_at,
                                 int signal, int expected_exit_code) {
    auto balanced = BalancedClient();
    ASSERT_NE(balanced, nullptr);
    const pb::BatchCosineRequest request = Request(11);
    auto expected = balanced->BatchCosine(request);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_EQ(expected->top_size(), kQueries);

    std::atomic<int> next{0};
    std::atomic<int> completed{0};
    absl::Mutex mu;
    std::vector<std::string> failures;
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
      clients.emplace_back([&] {
        while (next.fetch_add(1) < total) {
          auto response = balanced->BatchCosine(request);
          std::string failure;
          if (!response.ok()) {
            failure = response.status().ToString();
          } else if (response->top_size() != kQueries) {
            failure =
                absl::StrCat("answer with ", response->top_size(), " queries");
          } else {
            for (int q = 0; q < kQueries && failure.empty(); ++q) {
              const auto& got = response->top(q).indices();
              const auto& want = expected->top(q).indices();
              if (!std::equal(got.begin(), got.end(), want.begin(),
                              want.end())) {
                failure = absl::StrCat("query ", q, ": other top-k indices");
              }
            }
          }
          if (!failure.empty()) {
            absl::MutexLock lock(&mu);
            failures.push_back(failure);
          }
          completed.fetch_add(1);
        }
      });
    }

    while (completed.load() < stop_at) absl::SleepFor(absl::Milliseconds(1));
    auto survivors_before_stop = ServedBySurvivors();
    auto served_before_stop = ServedBy(0);
    const int completed_at_stop = completed.load();
    replicas_[0]->Signal(signal);
    absl::StatusOr<int> exit_code =
        replicas_[0]->WaitForExit(testing::Scaled(absl::Seconds(10)));
    for (std::thread& t : clients) t.join();
    auto survivors_after = ServedBySurvivors();

    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, expected_exit_code);
    // The replica was taking its share, and was stopped mid-run.
    ASSERT_TRUE(served_before_stop.ok()) << served_before_stop.status();
    EXPECT_GT(*served_before_stop, 0u);
    ASSERT_LT(completed_at_stop, total / 2);
    // No request lost: every call came back OK with the right answer.
    EXPECT_EQ(completed.load(), total);
    EXPECT_TRUE(failures.empty())
        << failures.size() << " of " << total << " calls failed, first: "
        << (failures.empty() ? "" : failures.front());
    // The survivors took the rest: all but the few calls that were in flight
    // around the signal (a tenth is ample room for those).
    ASSERT_TRUE(survivors_before_stop.ok()) << survivors_before_stop.status();
    ASSERT_TRUE(survivors_after.ok()) << survivors_after.status();
    EXPECT_GE(*survivors_after - *survivors_before_stop,
              static_cast<uint64_t>((total - completed_at_stop) * 9 / 10));
  }

  std::vector<std::unique_ptr<testing::ServerProcess>> replicas_;
  std::vector<std::unique_ptr<client::SimilarityClient>> direct_;
};

TEST_F(ScaleOutTest, RoundRobinSpreadsRequestsOverEveryReplica) {
  auto balanced = BalancedClient();
  ASSERT_NE(balanced, nullptr);
  constexpr int kCalls = 90;
  for (int i = 0; i < kCalls; ++i) {
    auto response = balanced->BatchCosine(Request(i));
    ASSERT_TRUE(response.ok()) << "call " << i << ": " << response.status();
    ASSERT_EQ(response->top_size(), kQueries);
  }
  uint64_t total = 0;
  for (int i = 0; i < kReplicas; ++i) {
    auto served = ServedBy(i);
    ASSERT_TRUE(served.ok()) << served.status();
    // round_robin gives each replica a third; pick_first would give one
    // replica everything. Half a share leaves room for connection start-up.
    EXPECT_GE(*served, static_cast<uint64_t>(kCalls / kReplicas / 2))
        << "replica " << i;
    total += *served;
  }
  EXPECT_EQ(total, static_cast<uint64_t>(kCalls));
}

TEST_F(ScaleOutTest, KillingOneReplicaLosesNoRequest) {
  // SIGKILL: calls in flight on the replica fail as UNAVAILABLE on the
  // client, and the retry policy sends them to another replica.
  RunLoadAndStopReplicaZero(/*total=*/1500, /*threads=*/4, /*stop_at=*/300,
                            SIGKILL, 128 + SIGKILL);
}

TEST_F(ScaleOutTest, DrainingOneReplicaLosesNoRequest) {
  // SIGTERM, as Kubernetes sends on scale-in or a rolling update: health
  // turns NOT_SERVING so the client stops picking the replica, and calls
  // refused while that news travels are retried elsewhere.
  RunLoadAndStopReplicaZero(/*total=*/1500, /*threads=*/4, /*stop_at=*/300,
                            SIGTERM, 0);
}

}  // namespace
}  // namespace engram
