// SIGTERM while the server is under load: health turns NOT_SERVING, new
// calls are refused with UNAVAILABLE, every accepted call completes, and the
// process exits 0 before the drain deadline.
#include <signal.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;

// Long enough for every accepted call to finish in this build: the tests
// assert that the drain completes them, not how fast.
std::string DrainDeadlineFlag() {
  return absl::StrCat("--drain_deadline=",
                      absl::FormatDuration(testing::Scaled(absl::Seconds(20))));
}

pb::BatchCosineRequest LoadRequest(size_t q, size_t n, size_t d,
                                   uint64_t seed) {
  auto queries = client::MakeMatrix(q, d, testing::RandomMatrix(q, d, seed));
  auto targets =
      client::MakeMatrix(n, d, testing::RandomMatrix(n, d, seed + 1));
  return client::MakeCosineRequest(*queries, *targets, 5, std::nullopt);
}

TEST(ServerShutdownTest, SigtermDuringLoadLosesNoAcceptedCall) {
  auto server = testing::ServerProcess::Start(
      ENGRAM_SERVER_BINARY,
      {"--worker_threads=2", DrainDeadlineFlag(), "--log_level=warning"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::SimilarityClient::Options options;
  options.target = (*server)->grpc_target();
  options.timeout = testing::Scaled(options.timeout);
  auto client = client::SimilarityClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();

  // Each call takes milliseconds, so calls are in flight when the signal
  // lands. Like a real client, each thread moves on (stops) once this
  // server refuses it.
  const pb::BatchCosineRequest request = LoadRequest(16, 4000, 64, 3);
  absl::Mutex mu;
  std::map<absl::StatusCode, int> outcomes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (true) {
        auto response = (*client)->BatchCosine(request);
        absl::MutexLock lock(&mu);
        ++outcomes[response.status().code()];
        if (response.ok()) {
          EXPECT_EQ(response->top_size(), 16);
          continue;
        }
        if (response.status().code() != absl::StatusCode::kUnavailable) {
          ADD_FAILURE() << "accepted call lost: " << response.status();
        }
        return;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  (*server)->Signal(SIGTERM);
  absl::StatusOr<int> exit_code =
      (*server)->WaitForExit(testing::Scaled(absl::Seconds(15)));
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  absl::MutexLock lock(&mu);
  EXPECT_GT(outcomes[absl::StatusCode::kOk], 0);
  // Only OK and UNAVAILABLE (refused, never accepted) may occur.
  for (const auto& [code, count] : outcomes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk ||
                code == absl::StatusCode::kUnavailable)
        << static_cast<int>(code) << " x" << count;
  }
}

TEST(ServerShutdownTest, HealthTurnsNotServingWhileDraining) {
  auto server = testing::ServerProcess::Start(
      ENGRAM_SERVER_BINARY,
      {"--worker_threads=1", DrainDeadlineFlag(), "--log_level=warning"});
  ASSERT_TRUE(server.ok()) << server.status();
  client::SimilarityClient::Options options;
  options.target = (*server)->grpc_target();
  options.timeout = testing::Scaled(options.timeout);
  auto client = client::SimilarityClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_EQ(*(*client)->Health(""),
            grpc::health::v1::HealthCheckResponse::SERVING);

  // Occupy the only worker with slow calls so draining takes a while.
  const pb::BatchCosineRequest slow = LoadRequest(512, 20000, 256, 4);
  std::vector<std::thread> busy;
  std::atomic<int> ok_calls{0};
  for (int i = 0; i < 3; ++i) {
    busy.emplace_back([&] {
      auto response = (*client)->BatchCosine(slow);
      EXPECT_TRUE(response.ok()) << response.status();
      if (response.ok()) ++ok_calls;
    });
  }
  // Signal only once all three are accepted (counted in flight), so every
  // one of them must complete.
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(10));
  while (absl::Now() < give_up) {
    auto stats = (*client)->GetStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->inflight_requests() >= 3) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  (*server)->Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(50));
  auto health = (*client)->Health("");
  // Either the health service already answers NOT_SERVING, or the listener
  // is gone; it never claims SERVING after the signal.
  if (health.ok()) {
    EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  } else {
    EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  }
  auto refused = (*client)->BatchCosine(LoadRequest(1, 1, 1, 5));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  for (std::thread& t : busy) t.join();
  EXPECT_EQ(ok_calls.load(), 3);
  auto exit_code = (*server)->WaitForExit(testing::Scaled(absl::Seconds(15)));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

}  // namespace
}  // namespace engram
