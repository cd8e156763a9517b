// The dispatch engine through the real server, with the fault-injecting
// simulated GPU standing in for a device: both operations run on the "GPU",
// GPU failures fall back to the CPU with correct results and are counted,
// GPU-only requests fail with the documented codes, and SIGHUP swaps the
// hybrid configuration.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/spreading_cases.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;

std::string WriteConfig(const std::string& name, const std::string& text) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                                        name, "-", getpid(), ".conf");
  std::ofstream(path) << text;
  return path;
}

// Every request is big enough for the GPU; no exploration, so decisions are
// deterministic.
constexpr char kGpuFriendlyConfig[] =
    "min_gpu_work_cosine = 0\nmin_gpu_work_spread = 0\nprobe_enabled = "
    "false\n";

struct Server {
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<client::SimilarityClient> client;
};

Server StartServer(const std::vector<std::string>& flags) {
  Server s;
  std::vector<std::string> all = {"--worker_threads=2", "--log_level=error",
                                  "--simulated_gpu"};
  all.insert(all.end(), flags.begin(), flags.end());
  auto process = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, all);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return s;
  s.process = std::move(*process);
  client::SimilarityClient::Options options;
  options.target = s.process->grpc_target();
  auto client = client::SimilarityClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  s.client = std::move(*client);
  return s;
}

pb::BatchCosineRequest RandomCosine(size_t q, size_t n, size_t d,
                                    pb::Placement placement,
                                    std::vector<float>* queries,
                                    std::vector<float>* targets) {
  *queries = testing::RandomMatrix(q, d, q + n + d);
  *targets = testing::RandomMatrix(n, d, q * n + d);
  return client::MakeCosineRequest(*client::MakeMatrix(q, d, *queries),
                                   *client::MakeMatrix(n, d, *targets), 0,
                                   std::nullopt, placement);
}

void ExpectScoresMatch(const pb::BatchCosineResponse& response,
                       const std::vector<float>& queries,
                       const std::vector<float>& targets, size_t q, size_t n,
                       size_t d) {
  const auto expected =
      testing::ReferenceCosine(queries.data(), q, targets.data(), n, d);
  ASSERT_EQ(response.scores_size(), static_cast<int>(q * n));
  for (size_t i = 0; i < q * n; ++i) {
    ASSERT_NEAR(response.scores(i), expected[i], 1e-5) << i;
  }
}

double MetricValue(const std::string& body, const std::string& series) {
  // A sample line starts the line; "# HELP name ..." does not match.
  const std::string needle = "\n" + series + " ";
  const size_t at = body.find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + needle.size()));
}

TEST(SimulatedGpuE2ETest, GpuOnlyRunsBothOperationsOnTheGpu) {
  Server s = StartServer(
      {"--hybrid_config=" + WriteConfig("gpu-friendly", kGpuFriendlyConfig)});
  ASSERT_NE(s.client, nullptr);
  std::vector<float> queries, targets;
  auto cosine = s.client->BatchCosine(
      RandomCosine(6, 70, 33, pb::PLACEMENT_GPU_ONLY, &queries, &targets));
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_EQ(cosine->report().backend(), pb::BACKEND_GPU);
  EXPECT_EQ(cosine->report().decided_by(), "placement");
  ExpectScoresMatch(*cosine, queries, targets, 6, 70, 33);

  auto cases = testing::LoadSpreadCases(testing::kSpreadCasesPath);
  ASSERT_TRUE(cases.ok()) << cases.status();
  const auto& c = cases->front();
  pb::SpreadRequest spread;
  *spread.mutable_graph() = c.graph();
  *spread.mutable_seeds() = c.seeds();
  *spread.mutable_params() = c.params();
  spread.set_placement(pb::PLACEMENT_GPU_ONLY);
  auto response = s.client->Spread(spread);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->report().backend(), pb::BACKEND_GPU);
  for (int i = 0; i < response->activation_size(); ++i) {
    EXPECT_NEAR(response->activation(i), c.expected().activation(i), 1e-6);
  }
}

TEST(SimulatedGpuE2ETest, GpuFailuresFallBackToCpuAndOpenTheBreaker) {
  Server s = StartServer(
      {"--hybrid_config=" + WriteConfig("gpu-friendly", kGpuFriendlyConfig),
       "--simulated_gpu_error_rate=1"});
  ASSERT_NE(s.client, nullptr);
  std::vector<float> queries, targets;
  const pb::BatchCosineRequest request =
      RandomCosine(4, 50, 16, pb::PLACEMENT_AUTO, &queries, &targets);
  // Every GPU call fails: each request still gets correct scores from the
  // CPU, until the breaker opens and the GPU is not tried at all.
  bool saw_fallback = false, saw_breaker_open = false;
  for (int i = 0; i < 12; ++i) {
    auto response = s.client->BatchCosine(request);
    ASSERT_TRUE(response.ok()) << response.status();
    ExpectScoresMatch(*response, queries, targets, 4, 50, 16);
    EXPECT_EQ(response->report().backend(), pb::BACKEND_CPU);
    if (!response->report().fallback_reason().empty()) {
      EXPECT_THAT(response->report().fallback_reason(), HasSubstr("gpu_error"));
      saw_fallback = true;
    }
    if (response->report().decided_by() == "breaker_open") {
      saw_breaker_open = true;
    }
  }
  EXPECT_TRUE(saw_fallback);
  EXPECT_TRUE(saw_breaker_open);

  auto gpu_only = s.client->BatchCosine(
      RandomCosine(1, 2, 3, pb::PLACEMENT_GPU_ONLY, &queries, &targets));
  EXPECT_EQ(gpu_only.status().code(), absl::StatusCode::kUnavailable);

  auto body = testing::HttpGet(s.process->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_GE(MetricValue(*body,
                        "engram_gpu_fallbacks_total{operation=\"cosine\","
                        "reason=\"device_error\"}"),
            1);
  EXPECT_EQ(MetricValue(*body, "engram_circuit_breaker_state"), 2);
}

TEST(SimulatedGpuE2ETest, GpuOnlyThatCannotFitIsResourceExhausted) {
  Server s = StartServer(
      {"--hybrid_config=" + WriteConfig("gpu-friendly", kGpuFriendlyConfig),
       "--simulated_gpu_memory_bytes=65536"});
  ASSERT_NE(s.client, nullptr);
  std::vector<float> queries, targets;
  // 4000 x 32 targets are 512 KB: no chunk of queries fits in 64 KB.
  auto response = s.client->BatchCosine(
      RandomCosine(2, 4000, 32, pb::PLACEMENT_GPU_ONLY, &queries, &targets));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted)
      << response.status();
  // AUTO computes it on the CPU instead.
  auto automatic = s.client->BatchCosine(
      RandomCosine(2, 4000, 32, pb::PLACEMENT_AUTO, &queries, &targets));
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ(automatic->report().backend(), pb::BACKEND_CPU);
  ExpectScoresMatch(*automatic, queries, targets, 2, 4000, 32);
}

TEST(SimulatedGpuE2ETest, SighupReloadsTheHybridConfig) {
  const std::string path = WriteConfig("reloadable", kGpuFriendlyConfig);
  Server s = StartServer({"--hybrid_config=" + path});
  ASSERT_NE(s.client, nullptr);
  std::vector<float> queries, targets;
  const pb::BatchCosineRequest request =
      RandomCosine(2, 8, 4, pb::PLACEMENT_AUTO, &queries, &targets);
  auto before = s.client->BatchCosine(request);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_NE(before->report().decided_by(), "work_below_min");

  std::ofstream(path) << "min_gpu_work_cosine = 1000000000\n";
  s.process->Signal(SIGHUP);
  bool reloaded = false;
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(2));
  while (!reloaded && absl::Now() < give_up) {
    auto after = s.client->BatchCosine(request);
    ASSERT_TRUE(after.ok()) << after.status();
    reloaded = after->report().decided_by() == "work_below_min";
    if (!reloaded) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(reloaded);
}

TEST(SimulatedGpuE2ETest, AutoMovesEverySizeToTheCpuWhenTheDeviceIsSlower) {
  // A simulated device ten times slower than this CPU per unit, the model
  // left to decide every size, and a calibration sweep as the warm-up.
  const std::string path =
      WriteConfig("model_decides", "min_gpu_work_cosine = 0\n");
  Server s = StartServer({"--hybrid_config=" + path, "--calibrate",
                          "--simulated_gpu_seconds_per_unit=3e-9"});
  ASSERT_NE(s.client, nullptr);
  int on_cpu = 0;
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) {
    const size_t q = std::vector<size_t>{2, 16, 64}[i % 3];
    std::vector<float> queries, targets;
    pb::BatchCosineRequest request =
        RandomCosine(q, 4096, 256, pb::PLACEMENT_AUTO, &queries, &targets);
    request.set_top_k(10);
    auto response = s.client->BatchCosine(request);
    ASSERT_TRUE(response.ok()) << response.status();
    if (response->report().backend() == pb::BACKEND_CPU) ++on_cpu;
  }
  EXPECT_GE(on_cpu, kRequests * 9 / 10);
}

TEST(SimulatedGpuE2ETest, ACalibrationIsStoredAndLoadedAtTheNextStart) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/calibration_data_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    Server s = StartServer({"--calibrate", "--data_dir=" + dir});
    ASSERT_NE(s.client, nullptr);
  }
  const std::string path = dir + "/calibration.Simulated_GPU";
  ASSERT_TRUE(std::filesystem::exists(path));
  // Restarted without --calibrate: the stored models stand in for the
  // calls not yet observed.
  Server s = StartServer({"--data_dir=" + dir});
  ASSERT_NE(s.client, nullptr);
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  int priors = 0;
  for (const pb::CostModelStats& m : stats->cost_models()) {
    if (m.operation() == "cosine" && m.prior() && m.usable()) ++priors;
  }
  EXPECT_EQ(priors, 2);  // the CPU's and the GPU's
  std::filesystem::remove_all(dir);
}

TEST(SimulatedGpuE2ETest, CalibrationRunsBeforeTheServerTurnsServing) {
  Server s = StartServer({"--calibrate"});
  ASSERT_NE(s.client, nullptr);
  // The ready file is written only after Start() returned, i.e. after the
  // sweep; by then health must already say SERVING.
  auto health = s.client->Health("");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  // build_info names the simulated GPU the sweep ran on.
  auto body = testing::HttpGet(s.process->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("engram_build_info{"));
  EXPECT_THAT(*body, HasSubstr("gpu=\"simulated-gpu\""));
}

}  // namespace
}  // namespace engram
