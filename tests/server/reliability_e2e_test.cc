// Admission, deadlines and cancellation against the real engram-server
// binary: excess calls are refused at once with a retry hint, and a call
// whose deadline passes or whose client cancels stops between chunks, frees
// its worker and is counted.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

// One query row per CPU call for the slow request below, so that a stop is
// seen within milliseconds.
constexpr char kSmallCpuChunks[] = "cpu_chunk_work = 1048576\n";

std::string WriteTempFile(const std::string& name, const std::string& text) {
  const char* tmp = std::getenv("TMPDIR");
  static std::atomic<int> counter{0};
  const std::string path =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-rel-", getpid(), "-",
                   counter++, "-", name);
  std::ofstream(path) << text;
  return path;
}

// A top-10 request of 1024 queries against 32Ki targets of dimension 128:
// 2^32 multiply-adds in 1024 CPU calls of one query each under
// kSmallCpuChunks, each reading the 16 MiB of targets: seconds on one worker,
// 16.5 MiB on the wire.
constexpr int kSlowQueries = 1024;
const pb::BatchCosineRequest& SlowRequest() {
  static const pb::BatchCosineRequest* const request = [] {
    constexpr size_t kQ = kSlowQueries, kN = 32768, kD = 128;
    return new pb::BatchCosineRequest(client::MakeCosineRequest(
        *client::MakeMatrix(kQ, kD, testing::RandomMatrix(kQ, kD, 1)),
        *client::MakeMatrix(kN, kD, testing::RandomMatrix(kN, kD, 2)), 10,
        std::nullopt, pb::PLACEMENT_CPU_ONLY));
  }();
  return *request;
}

// SlowRequest's shape with 64 queries against 8Ki targets: 64 CPU calls,
// tens of milliseconds, 4 MiB on the wire.
const pb::BatchCosineRequest& MediumRequest() {
  static const pb::BatchCosineRequest* const request = [] {
    constexpr size_t kQ = 64, kN = 8192, kD = 128;
    return new pb::BatchCosineRequest(client::MakeCosineRequest(
        *client::MakeMatrix(kQ, kD, testing::RandomMatrix(kQ, kD, 5)),
        *client::MakeMatrix(kN, kD, testing::RandomMatrix(kN, kD, 6)), 10,
        std::nullopt, pb::PLACEMENT_CPU_ONLY));
  }();
  return *request;
}

// SlowRequest's targets with 16Ki queries: minutes of work on one worker,
// 24 MiB on the wire. Only ever sent to be stopped: whenever a deadline or
// cancellation lands after the work started, it lands mid-work, however
// long the request took to arrive on a loaded machine.
constexpr int kEndlessQueries = 16384;
const pb::BatchCosineRequest& EndlessRequest() {
  static const pb::BatchCosineRequest* const request = [] {
    constexpr size_t kQ = kEndlessQueries, kN = 32768, kD = 128;
    return new pb::BatchCosineRequest(client::MakeCosineRequest(
        *client::MakeMatrix(kQ, kD, testing::RandomMatrix(kQ, kD, 7)),
        *client::MakeMatrix(kN, kD, testing::RandomMatrix(kN, kD, 2)), 10,
        std::nullopt, pb::PLACEMENT_CPU_ONLY));
  }();
  return *request;
}

pb::BatchCosineRequest TinyRequest() {
  return client::MakeCosineRequest(
      *client::MakeMatrix(1, 4, testing::RandomMatrix(1, 4, 3)),
      *client::MakeMatrix(8, 4, testing::RandomMatrix(8, 4, 4)), 0,
      std::nullopt);
}

class ReliabilityTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags) {
    config_path_ = WriteTempFile("hybrid.conf", kSmallCpuChunks);
    flags.push_back("--hybrid_config=" + config_path_);
    flags.push_back("--log_level=warning");
    auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = pb::Similarity::NewStub(grpc::CreateCustomChannel(
        server_->grpc_target(), grpc::InsecureChannelCredentials(), args));
  }

  // Every test ends with a clean stop: under the sanitizer job a leak (or
  // any report) at exit changes the exit code, so this is where
  // LeakSanitizer's verdict on the server lands.
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Signal(SIGTERM);
      absl::StatusOr<int> exit_code =
          server_->WaitForExit(testing::Scaled(absl::Seconds(60)));
      ASSERT_TRUE(exit_code.ok()) << exit_code.status();
      EXPECT_EQ(*exit_code, 0) << "the server did not stop cleanly";
    }
    if (!config_path_.empty()) std::remove(config_path_.c_str());
  }

 public:
  double Metric(const std::string& name, const testing::MetricLabels& labels) {
    auto body = testing::HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    if (!body.ok()) return -1;
    return testing::SampleValue(*body, name, labels).value_or(-1);
  }

 protected:
  double CpuChunks() {
    return Metric("engram_chunks_total",
                  {{"operation", "cosine"}, {"backend", "cpu"}});
  }

  // Waits until the server has answered `calls` calls of `code`.
  void AwaitCalls(const std::string& code, double calls) {
    const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(20));
    while (absl::Now() < give_up &&
           Metric("engram_requests_total",
                  {{"method", "BatchCosine"}, {"code", code}}) < calls) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  // After a stopped call: no chunk starts any more, fewer than the whole
  // job's ran, and the worker answers a new call at once.
  void ExpectWorkStopped() {
    const double chunks = CpuChunks();
    EXPECT_GT(chunks, 0);
    EXPECT_LT(chunks, kEndlessQueries);
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_EQ(CpuChunks(), chunks) << "a chunk started after the stop";
    grpc::ClientContext context;
    context.set_deadline(testing::ScaledDeadline(absl::Seconds(5)));
    pb::BatchCosineResponse response;
    const grpc::Status status =
        stub_->BatchCosine(&context, TinyRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  std::string config_path_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<pb::Similarity::Stub> stub_;
};

// The stop must land while the work runs, not before it starts (that is an
// "abandoned" call): on a loaded machine the 24 MiB request may take a while
// to arrive, so each try waits twice as long as the one before until a stop
// lands mid-work. Returns the number of tries.
template <typename Try>
int UntilInterrupted(ReliabilityTest* test, const std::string& reason,
                     Try try_once) {
  absl::Duration wait = absl::Milliseconds(200);
  for (int tries = 1; tries <= 7; ++tries, wait = wait * 2) {
    try_once(wait);
    // The server sees the stop at its next chunk, a moment after the
    // client; a call stopped in transit never reaches it at all.
    const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(2));
    while (absl::Now() < give_up) {
      if (test->Metric("engram_interrupted_requests_total",
                       {{"reason", reason}}) >= 1) {
        return tries;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return 0;
}

TEST_F(ReliabilityTest, DeadlineStopsTheWorkBetweenChunks) {
  Start({"--worker_threads=1"});
  const int tries =
      UntilInterrupted(this, "deadline_exceeded", [&](absl::Duration wait) {
        const pb::BatchCosineRequest& request = EndlessRequest();
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + wait));
        pb::BatchCosineResponse response;
        const grpc::Status status =
            stub_->BatchCosine(&context, request, &response);
        EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
            << "deadline " << wait << ": " << status.error_message();
      });
  ASSERT_GT(tries, 0) << "no deadline landed while the work ran";
  ExpectWorkStopped();
}

TEST_F(ReliabilityTest, CancellationStopsTheWorkBetweenChunks) {
  Start({"--worker_threads=1"});
  const int tries =
      UntilInterrupted(this, "cancelled", [&](absl::Duration wait) {
        const pb::BatchCosineRequest& request = EndlessRequest();
        grpc::ClientContext context;
        std::thread cancel([&] {
          absl::SleepFor(wait);
          context.TryCancel();
        });
        pb::BatchCosineResponse response;
        const grpc::Status status =
            stub_->BatchCosine(&context, request, &response);
        cancel.join();
        EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
      });
  ASSERT_GT(tries, 0) << "no cancellation landed while the work ran";
  ExpectWorkStopped();
}

TEST_F(ReliabilityTest, RandomCancellationsStopWorkAndLeakNothing) {
  Start({"--worker_threads=2"});
  // Mixed sizes: calls that finish in microseconds, and slow ones cancelled
  // while queued, while running, or after they finished.
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 25;
  const pb::BatchCosineRequest tiny = TinyRequest();
  std::atomic<int> ok{0}, cancelled{0}, cancels{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kCallsPerThread; ++i) {
        const bool slow = rng() % 2 == 0;
        const bool cancel = rng() % 5 == 0;  // 20% of the calls
        grpc::ClientContext context;
        context.set_deadline(testing::ScaledDeadline(absl::Seconds(60)));
        std::thread canceller;
        if (cancel) {
          ++cancels;
          const auto delay = std::chrono::milliseconds(rng() % 200);
          canceller = std::thread([&context, delay] {
            std::this_thread::sleep_for(delay);
            context.TryCancel();
          });
        }
        pb::BatchCosineResponse response;
        const grpc::Status status = stub_->BatchCosine(
            &context, slow ? MediumRequest() : tiny, &response);
        if (canceller.joinable()) canceller.join();
        if (status.ok()) {
          ++ok;
        } else {
          EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
              << status.error_message();
          EXPECT_TRUE(cancel) << "a call nobody cancelled failed";
          ++cancelled;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok + cancelled, kThreads * kCallsPerThread);
  EXPECT_GT(cancelled.load(), 0);
  // Every cancellation the server saw is accounted for: before the work
  // started (abandoned) or part-way (interrupted); the rest were answered.
  AwaitCalls("CANCELLED", cancelled.load());
  const double interrupted =
      Metric("engram_interrupted_requests_total", {{"reason", "cancelled"}});
  const double abandoned =
      Metric("engram_rejected_requests_total", {{"reason", "abandoned"}});
  EXPECT_LE(interrupted + abandoned, cancelled.load());
  // Nothing is left running: a tiny call is answered at once.
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(5)));
  pb::BatchCosineResponse response;
  EXPECT_TRUE(stub_->BatchCosine(&context, tiny, &response).ok());
  EXPECT_EQ(Metric("engram_inflight_requests", {}), 0);
}

TEST_F(ReliabilityTest, OldConnectionsAreClosedSoClientsReResolve) {
  Start({"--worker_threads=1", "--max_connection_age=500ms"});
  auto channel = grpc::CreateChannel(server_->grpc_target(),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::Similarity::NewStub(channel);
  for (int round = 0; round < 2; ++round) {
    grpc::ClientContext context;
    context.set_deadline(testing::ScaledDeadline(absl::Seconds(5)));
    pb::BatchCosineResponse response;
    ASSERT_TRUE(stub->BatchCosine(&context, TinyRequest(), &response).ok());
    ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
    // The server closes the connection (GOAWAY) once it is 500 ms old; the
    // channel leaves READY, and the next call connects (and resolves) anew.
    EXPECT_TRUE(channel->WaitForStateChange(
        GRPC_CHANNEL_READY, testing::ScaledDeadline(absl::Seconds(10))))
        << "the connection outlived --max_connection_age";
  }
}

TEST_F(ReliabilityTest, ExcessCallsAreRefusedAtOnceWithARetryHint) {
  Start({"--worker_threads=1", "--max_inflight_requests=2"});
  constexpr int kCalls = 6;
  struct Outcome {
    grpc::Status status;
    absl::Time answered;
    std::string pushback;
  };
  std::vector<Outcome> outcomes(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      // Both admitted calls run one after the other on the one worker; the
      // deadline only ends a hung run, so it scales with the build.
      context.set_deadline(testing::ScaledDeadline(absl::Seconds(30)));
      pb::BatchCosineResponse response;
      outcomes[i].status =
          stub_->BatchCosine(&context, SlowRequest(), &response);
      outcomes[i].answered = absl::Now();
      const auto& trailers = context.GetServerTrailingMetadata();
      if (auto it = trailers.find("grpc-retry-pushback-ms");
          it != trailers.end()) {
        outcomes[i].pushback.assign(it->second.data(), it->second.size());
      }
    });
  }
  for (std::thread& t : threads) t.join();

  int ok = 0;
  int refused = 0;
  absl::Time first_ok = absl::InfiniteFuture();
  absl::Time last_refusal = absl::InfinitePast();
  for (const Outcome& o : outcomes) {
    if (o.status.ok()) {
      ++ok;
      first_ok = std::min(first_ok, o.answered);
      continue;
    }
    ASSERT_EQ(o.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << o.status.error_message();
    ++refused;
    last_refusal = std::max(last_refusal, o.answered);
    EXPECT_THAT(o.status.error_message(), HasSubstr("overloaded"));
    int64_t ms = -1;
    ASSERT_TRUE(absl::SimpleAtoi(o.pushback, &ms)) << "'" << o.pushback << "'";
    EXPECT_GE(ms, 5);
    EXPECT_LE(ms, 2000);
  }
  // Two places: at most two calls ran, the rest were refused, and every
  // refusal came before the first admitted call finished (it did not wait).
  EXPECT_GE(ok, 1);
  EXPECT_LE(ok, 2);
  EXPECT_EQ(ok + refused, kCalls);
  EXPECT_LT(last_refusal, first_ok);
  EXPECT_EQ(
      Metric("engram_rejected_requests_total", {{"reason", "overloaded"}}),
      refused);
  EXPECT_EQ(Metric("engram_requests_total",
                   {{"method", "BatchCosine"}, {"code", "RESOURCE_EXHAUSTED"}}),
            refused);
}

TEST_F(ReliabilityTest, AdmissionCountsBytesAsWellAsCalls) {
  // Room for one slow call's 16 MiB at a time, however many calls.
  Start({"--worker_threads=2", "--max_inflight_requests=100",
         absl::StrCat("--max_inflight_bytes=", 20 << 20)});
  std::vector<grpc::Status> statuses(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      pb::BatchCosineResponse response;
      statuses[i] = stub_->BatchCosine(&context, SlowRequest(), &response);
    });
  }
  for (std::thread& t : threads) t.join();
  int refused = 0;
  for (const grpc::Status& s : statuses) {
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  EXPECT_LE(refused, 2);
}

}  // namespace
}  // namespace engram
