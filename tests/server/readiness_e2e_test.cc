// Readiness end to end (ctest label `observability`): the standard health
// service answers NOT_SERVING until start-up (calibration included) is done,
// engram_ready drops at the start of a drain (whose gRPC port closes at
// once), and a sticky device error makes it fail
// only when the GPU is required (--require_gpu); otherwise the server keeps
// serving on the CPU and says so in GetStats, /metrics and its log.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using Health = grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

constexpr char kService[] = "engram.similarity.v1.Similarity";
constexpr char kGpuFriendly[] =
    "min_gpu_work_cosine = 0\nmin_gpu_work_spread = 0\nprobe_enabled = "
    "false\n";

std::string TempPath(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  static int counter = 0;
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-ready-test-",
                      getpid(), "-", counter++, "-", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<client::SimilarityClient> Connect(const std::string& target) {
  client::SimilarityClient::Options options;
  options.target = target;
  options.timeout = testing::Scaled(absl::Seconds(30));
  auto client = client::SimilarityClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

pb::BatchCosineRequest Cosine(size_t q, size_t n, size_t d) {
  return client::MakeCosineRequest(
      *client::MakeMatrix(q, d, testing::RandomMatrix(q, d, q + d)),
      *client::MakeMatrix(n, d, testing::RandomMatrix(n, d, n + d)), 0,
      std::nullopt);
}

struct Server {
  Server() = default;
  Server(Server&&) = default;
  // The temporary files go; the process is killed by its own destructor.
  ~Server() {
    for (const std::string& path : files) std::remove(path.c_str());
  }

  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::SimilarityClient> client;
  std::string log_path;
  std::vector<std::string> files;  // removed with the server
};

Server StartServer(const std::vector<std::string>& flags) {
  Server s;
  s.log_path = TempPath("server.log");
  const std::string config = TempPath("hybrid.conf");
  std::ofstream(config) << kGpuFriendly;
  s.files = {s.log_path, config};
  std::vector<std::string> all = {"--worker_threads=2", "--log_level=warning",
                                  "--hybrid_config=" + config};
  all.insert(all.end(), flags.begin(), flags.end());
  testing::ServerProcess::Options options;
  options.stderr_path = s.log_path;
  auto process =
      testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, all, options);
  EXPECT_TRUE(process.ok()) << process.status() << "\n" << ReadFile(s.log_path);
  if (!process.ok()) return s;
  s.process = std::move(*process);
  s.client = Connect(s.process->grpc_target());
  return s;
}

void ExpectHealth(const client::SimilarityClient& client,
                  Health::ServingStatus want) {
  for (const char* service : {"", kService}) {
    auto health = client.Health(service);
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, want) << "service '" << service << "'";
  }
}

// True when something accepts TCP connections on the loopback `port`.
bool PortOpen(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool open =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return open;
}

double Ready(const Server& s) {
  auto body = testing::HttpGet(s.process->metrics_port(), "/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  return testing::SampleValue(body.value_or(""), "engram_ready").value_or(-1);
}

std::vector<std::string> LogLines(const std::string& path,
                                  const std::string& event) {
  std::vector<std::string> out;
  const std::vector<std::string> lines = absl::StrSplit(ReadFile(path), '\n');
  for (const std::string& line : lines) {
    if (absl::StrContains(line, absl::StrCat("\"event\":\"", event, "\""))) {
      out.push_back(line);
    }
  }
  return out;
}

TEST(ReadinessTest, NotServingUntilCalibrationIsDone) {
  // The ready file only appears once Start() returns, so the test picks the
  // gRPC port itself to watch the server during start-up. Each simulated
  // GPU call costs 40 ms: the sweep takes about a second.
  auto port = testing::PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string target = absl::StrCat("127.0.0.1:", *port);
  testing::ServerProcess::Options options;
  options.wait_until_ready = false;
  options.stderr_path = TempPath("calibrating.log");
  auto process = testing::ServerProcess::Start(
      ENGRAM_SERVER_BINARY,
      {"--grpc_address=" + target, "--worker_threads=2", "--log_level=info",
       "--simulated_gpu", "--simulated_gpu_launch_overhead=40ms",
       "--calibrate"},
      options);
  ASSERT_TRUE(process.ok()) << process.status();
  Server cleanup;  // owns the log file
  cleanup.files = {options.stderr_path};
  // Connect only once the port is open: a channel that failed to connect
  // backs off for a second or more, long enough to miss the calibration.
  const absl::Time open_deadline =
      absl::Now() + testing::Scaled(absl::Seconds(20));
  while (!PortOpen(*port) && absl::Now() < open_deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto client = Connect(target);
  ASSERT_NE(client, nullptr);

  // Every answer until SERVING, in order (connection errors while the port
  // is not open yet are skipped).
  std::vector<Health::ServingStatus> seen;
  std::vector<std::string> phases;
  const absl::Time deadline = absl::Now() + testing::Scaled(absl::Seconds(30));
  while (absl::Now() < deadline) {
    auto health = client->Health(kService);
    if (health.ok()) {
      if (seen.empty() || seen.back() != *health) seen.push_back(*health);
      if (*health == Health::SERVING) break;
      auto stats = client->GetStats();
      if (stats.ok()) phases.push_back(stats->readiness().phase());
    } else {
      // Before the service name is set, the health service says NOT_FOUND.
      EXPECT_THAT(health.status().code(),
                  ::testing::AnyOf(absl::StatusCode::kUnavailable,
                                   absl::StatusCode::kNotFound,
                                   absl::StatusCode::kDeadlineExceeded))
          << health.status();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_THAT(seen,
              ::testing::ElementsAre(Health::NOT_SERVING, Health::SERVING))
      << ReadFile(options.stderr_path);
  EXPECT_THAT(phases, ::testing::Contains("calibrating"));
  ASSERT_TRUE(
      (*process)->WaitUntilReady(testing::Scaled(absl::Seconds(10))).ok());
  auto stats = client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->readiness().phase(), "serving");
  EXPECT_TRUE(stats->readiness().serving());
  // Calibration measured both backends: the model has speedups to show.
  EXPECT_GT(stats->speedups_size(), 0);
  const std::string log = ReadFile(options.stderr_path);
  EXPECT_LT(log.find("\"event\":\"calibrating\""),
            log.find("\"event\":\"serving\""));
}

TEST(ReadinessTest, StickyErrorWithRequireGpuTurnsNotServing) {
  Server s = StartServer({"--simulated_gpu", "--require_gpu",
                          "--simulated_gpu_sticky_after_calls=1"});
  ASSERT_NE(s.client, nullptr);
  ExpectHealth(*s.client, Health::SERVING);
  EXPECT_EQ(Ready(s), 1);
  // The first GPU call loses the device; the request itself still succeeds
  // on the CPU.
  auto response = s.client->BatchCosine(Cosine(2, 10, 4));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->report().fallback_reason(), "gpu_error");
  ExpectHealth(*s.client, Health::NOT_SERVING);
  EXPECT_EQ(Ready(s), 0);
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(stats->readiness().serving());
  EXPECT_TRUE(stats->readiness().gpu_required());
  EXPECT_TRUE(stats->readiness().cpu_only());
  EXPECT_THAT(stats->readiness().reason(), HasSubstr("--require_gpu"));
  EXPECT_EQ(stats->breaker().state(), "forced_open");
  const auto lines = LogLines(s.log_path, "readiness");
  ASSERT_EQ(lines.size(), 1u) << ReadFile(s.log_path);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"error\""));
  EXPECT_THAT(lines[0], HasSubstr("\"serving\":\"false\""));
}

TEST(ReadinessTest, StickyErrorWithoutRequireGpuKeepsServingOnTheCpu) {
  Server s =
      StartServer({"--simulated_gpu", "--simulated_gpu_sticky_after_calls=1"});
  ASSERT_NE(s.client, nullptr);
  ASSERT_TRUE(s.client->BatchCosine(Cosine(2, 10, 4)).ok());
  ExpectHealth(*s.client, Health::SERVING);
  EXPECT_EQ(Ready(s), 1);
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->readiness().serving());
  EXPECT_TRUE(stats->readiness().cpu_only());
  EXPECT_THAT(stats->readiness().reason(), HasSubstr("CPU only"));
  // Later requests go straight to the CPU.
  auto later = s.client->BatchCosine(Cosine(2, 10, 4));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->report().backend(), pb::BACKEND_CPU);
  EXPECT_EQ(later->report().decided_by(), "breaker_open");
  const auto lines = LogLines(s.log_path, "readiness");
  ASSERT_EQ(lines.size(), 1u) << ReadFile(s.log_path);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"warning\""));
  EXPECT_THAT(lines[0], HasSubstr("\"cpu_only\":\"true\""));
}

TEST(ReadinessTest, RequireGpuWithoutAUsableGpuIsNotServing) {
  // No --simulated_gpu: whether this machine's build has a usable GPU
  // decides the answer, and the answer must match it.
  Server s = StartServer({"--require_gpu"});
  ASSERT_NE(s.client, nullptr);
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const bool gpu = stats->gpu_available();
  ExpectHealth(*s.client, gpu ? Health::SERVING : Health::NOT_SERVING);
  EXPECT_EQ(stats->readiness().serving(), gpu);
  if (!gpu) {
    EXPECT_THAT(stats->readiness().reason(), HasSubstr("no GPU"));
    EXPECT_EQ(LogLines(s.log_path, "not_ready").size(), 1u);
  }
  // Calls are still answered (on the CPU) for whoever calls anyway.
  EXPECT_TRUE(s.client->BatchCosine(Cosine(1, 3, 2)).ok());
}

TEST(ReadinessTest, DrainTurnsNotReadyAndRefusesNewCalls) {
  // Each call sleeps half a second on the simulated GPU, on the one worker.
  Server s = StartServer(
      {"--worker_threads=1", "--drain_deadline=20s", "--simulated_gpu",
       "--simulated_gpu_launch_overhead=500ms", "--log_level=info"});
  ASSERT_NE(s.client, nullptr);
  ExpectHealth(*s.client, Health::SERVING);
  // Queue three slow calls on the only worker so the drain lasts.
  const pb::BatchCosineRequest slow = Cosine(4, 100, 16);
  std::atomic<int> done{0};
  std::vector<std::thread> busy;
  for (int i = 0; i < 3; ++i) {
    busy.emplace_back([&] {
      auto r = s.client->BatchCosine(slow);
      EXPECT_TRUE(r.ok()) << r.status();
      ++done;
    });
  }
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(10));
  while (absl::Now() < give_up) {
    auto stats = s.client->GetStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->inflight_requests() >= 3) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  s.process->Signal(SIGTERM);
  // The drain closes the gRPC port and sends GOAWAY at once, so from here
  // only the metrics endpoint can be asked; it says not ready while the
  // three calls finish, and a new call is refused.
  bool saw_not_ready = false;
  while (done < 3 && !saw_not_ready) {
    if (Ready(s) == 0) {
      saw_not_ready = true;
      auto refused = s.client->BatchCosine(Cosine(1, 1, 1));
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
          << refused.status();
      auto health = s.client->Health("");
      EXPECT_TRUE(!health.ok() || *health == Health::NOT_SERVING);
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (std::thread& t : busy) t.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_TRUE(saw_not_ready);
  auto exit_code = s.process->WaitForExit(testing::Scaled(absl::Seconds(15)));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

}  // namespace
}  // namespace engram
