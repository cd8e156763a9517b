// Observability end to end (ctest label `observability`): the real server
// with the fault-injecting simulated GPU runs a known workload, and then
// - its /metrics page passes `promtool check metrics` with no findings and
//   lists only families docs/metrics.md documents;
// - every counter matches the workload exactly (requests, fallbacks by
//   reason, GPU errors, OOMs and retries, breaker transitions and state);
// - GetStats says the same as /metrics;
// - a real Prometheus server scrapes it and answers PromQL with the request
//   count and the histogram_quantile() the exposed buckets imply;
// - the request id (the caller's x-request-id, or a generated one echoed
//   back) and the caller's traceparent reach the engine's log lines, and a
//   fault storm's warnings are rate-limited without losing count.
// promtool and prometheus come from the Debian package `prometheus`
// (scripts/install-deps.sh); the tests fail, not skip, without them.
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/requests.h"
#include "client/similarity_client.h"
#include "engram/similarity/v1/similarity.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/server/child_process.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using ::testing::HasSubstr;
using testing::MetricLabels;
using testing::SampleValue;

constexpr char kPromtool[] = ENGRAM_PROMTOOL;
constexpr char kPrometheus[] = ENGRAM_PROMETHEUS;
constexpr char kTraceparent[] =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

std::string TempPath(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  static int counter = 0;
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-obs-", getpid(),
                      "-", counter++, "-", name);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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

// A JSON log line's string field, or nullopt.
std::optional<std::string> Field(const std::string& line,
                                 const std::string& name) {
  const std::string key = absl::StrCat("\"", name, "\":\"");
  const size_t at = line.find(key);
  if (at == std::string::npos) return std::nullopt;
  const size_t start = at + key.size();
  return line.substr(start, line.find('"', start) - start);
}

// Every request is big enough for the GPU; no exploration, so each decision
// follows from the breaker alone.
constexpr char kGpuFriendly[] =
    "min_gpu_work_cosine = 0\nmin_gpu_work_spread = 0\nprobe_enabled = "
    "false\n";

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

Server StartServer(const std::vector<std::string>& flags,
                   const std::string& config = kGpuFriendly) {
  Server s;
  s.log_path = TempPath("server.log");
  const std::string config_path = WriteFile("hybrid.conf", config);
  s.files = {s.log_path, config_path};
  std::vector<std::string> all = {"--worker_threads=2", "--simulated_gpu",
                                  "--hybrid_config=" + config_path};
  all.insert(all.end(), flags.begin(), flags.end());
  testing::ServerProcess::Options options;
  options.stderr_path = s.log_path;
  auto process =
      testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, all, options);
  EXPECT_TRUE(process.ok()) << process.status() << "\n" << ReadFile(s.log_path);
  if (!process.ok()) return s;
  s.process = std::move(*process);
  client::SimilarityClient::Options client_options;
  client_options.target = s.process->grpc_target();
  auto client = client::SimilarityClient::Create(client_options);
  EXPECT_TRUE(client.ok()) << client.status();
  s.client = std::move(*client);
  return s;
}

pb::BatchCosineRequest Cosine(size_t q, size_t n, size_t d) {
  return client::MakeCosineRequest(
      *client::MakeMatrix(q, d, testing::RandomMatrix(q, d, q + d)),
      *client::MakeMatrix(n, d, testing::RandomMatrix(n, d, n + d)), 0,
      std::nullopt);
}

pb::SpreadRequest Chain() {
  pb::SpreadRequest r;
  pb::Graph* g = r.mutable_graph();
  g->set_num_nodes(4);
  for (uint32_t v : {0, 1, 2, 3, 3}) g->add_row_offsets(v);
  for (uint32_t v : {1, 2, 3}) g->add_targets(v);
  for (int i = 0; i < 3; ++i) g->add_weights(1.0f);
  pb::Seed* seed = r.add_seeds();
  seed->set_node(0);
  seed->set_activation(1.0f);
  return r;
}

client::CallOptions WithId(const std::string& id) {
  client::CallOptions call;
  call.request_id = id;
  return call;
}

// Scrapes /metrics and runs promtool's linter over the page.
std::string ScrapeAndLint(int metrics_port) {
  auto body = testing::HttpGet(metrics_port, "/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  if (!body.ok()) return "";
  EXPECT_NE(std::string(kPromtool), "")
      << "promtool not found at configure time: run scripts/install-deps.sh";
  const std::string path = WriteFile("scrape.txt", *body);
  auto lint =
      testing::RunCommand(absl::StrCat(kPromtool, " check metrics < ", path));
  EXPECT_TRUE(lint.ok()) << lint.status();
  if (lint.ok()) {
    EXPECT_EQ(lint->exit_code, 0) << lint->output;
    EXPECT_EQ(lint->output, "") << "promtool findings";
  }
  std::remove(path.c_str());
  return *body;
}

double Value(const std::string& body, const std::string& name,
             const MetricLabels& labels = {}) {
  const std::optional<double> v = SampleValue(body, name, labels);
  EXPECT_TRUE(v.has_value()) << name << " with the given labels is missing";
  return v.value_or(std::nan(""));
}

MetricLabels Fallback(const std::string& op, const std::string& reason) {
  return {{"operation", op}, {"reason", reason}};
}

const pb::FallbackStats* FindFallback(const pb::GetStatsResponse& stats,
                                      const std::string& op,
                                      const std::string& reason) {
  for (const auto& f : stats.fallbacks()) {
    if (f.operation() == op && f.reason() == reason) return &f;
  }
  return nullptr;
}

// Every fallback series on the page agrees with GetStats (reasons with a
// zero count are left out of GetStats).
void ExpectFallbacksAgree(const std::string& body,
                          const pb::GetStatsResponse& stats) {
  for (const testing::MetricSample& s : testing::ParseSamples(body)) {
    if (s.name != "engram_gpu_fallbacks_total") continue;
    const pb::FallbackStats* f =
        FindFallback(stats, s.labels.at("operation"), s.labels.at("reason"));
    EXPECT_EQ(f == nullptr ? 0.0 : static_cast<double>(f->count()), s.value)
        << s.labels.at("operation") << " " << s.labels.at("reason");
  }
}

TEST(ObservabilityTest, CountersMatchAWorkloadWithDeviceErrors) {
  // Every GPU call fails; three in a row open the breaker for ten minutes.
  Server s =
      StartServer({"--simulated_gpu_error_rate=1", "--log_level=warning"},
                  absl::StrCat(kGpuFriendly,
                               "breaker_consecutive_failures = 3\n"
                               "breaker_open_initial_seconds = 600\n"
                               "breaker_open_max_seconds = 600\n"));
  ASSERT_NE(s.client, nullptr);
  for (int i = 0; i < 8; ++i) {
    auto r = s.client->BatchCosine(Cosine(4, 50, 16),
                                   WithId(absl::StrCat("dev-", i)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->report().decided_by(), i < 3 ? "default" : "breaker_open");
  }
  for (int i = 0; i < 2; ++i) {
    auto r = s.client->Spread(Chain());
    ASSERT_TRUE(r.ok()) << r.status();
  }

  const std::string body = ScrapeAndLint(s.process->metrics_port());
  EXPECT_EQ(Value(body, "engram_requests_total",
                  {{"method", "BatchCosine"}, {"code", "OK"}}),
            8);
  EXPECT_EQ(Value(body, "engram_requests_total",
                  {{"method", "Spread"}, {"code", "OK"}}),
            2);
  EXPECT_EQ(Value(body, "engram_request_duration_seconds_count",
                  {{"method", "BatchCosine"}}),
            8);
  // Three failed on the GPU and finished on the CPU; then the open breaker
  // kept the GPU out of five cosine and both spread requests.
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "device_error")),
            3);
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "breaker_open")),
            5);
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("spread", "breaker_open")),
            2);
  for (const char* reason : {"oom", "unavailable", "memory_pressure"}) {
    EXPECT_EQ(
        Value(body, "engram_gpu_fallbacks_total", Fallback("cosine", reason)),
        0)
        << reason;
  }
  EXPECT_EQ(Value(body, "engram_gpu_errors_total",
                  {{"operation", "cosine"}, {"kind", "device"}}),
            3);
  EXPECT_EQ(Value(body, "engram_gpu_oom_total", {{"operation", "cosine"}}), 0);
  EXPECT_EQ(Value(body, "engram_circuit_breaker_transitions_total",
                  {{"from", "closed"}, {"to", "open"}}),
            1);
  EXPECT_EQ(Value(body, "engram_circuit_breaker_state"), 2);
  const double retry_after =
      Value(body, "engram_circuit_breaker_retry_after_seconds");
  EXPECT_GT(retry_after, 500);
  EXPECT_LE(retry_after, 600);
  EXPECT_EQ(
      Value(body, "engram_dispatch_decisions_total",
            {{"operation", "cosine"}, {"backend", "gpu"}, {"rule", "default"}}),
      3);
  EXPECT_EQ(Value(body, "engram_dispatch_decisions_total",
                  {{"operation", "cosine"},
                   {"backend", "cpu"},
                   {"rule", "breaker_open"}}),
            5);
  EXPECT_EQ(Value(body, "engram_compute_duration_seconds_count",
                  {{"operation", "cosine"}, {"backend", "cpu"}}),
            8);
  EXPECT_EQ(Value(body, "engram_compute_duration_seconds_count",
                  {{"operation", "cosine"}, {"backend", "gpu"}}),
            0);
  EXPECT_EQ(Value(body, "engram_work_items_total",
                  {{"operation", "cosine"}, {"backend", "cpu"}}),
            8 * 4 * 50);
  EXPECT_EQ(
      Value(body, "engram_rejected_requests_total", {{"reason", "draining"}}),
      0);
  EXPECT_EQ(Value(body, "engram_ready"), 1);
  EXPECT_EQ(Value(body, "engram_inflight_requests"), 0);
  EXPECT_GT(Value(body, "engram_gpu_memory_total_bytes"), 0);
  EXPECT_GT(Value(body, "process_resident_memory_bytes"), 0);
  EXPECT_GT(Value(body, "process_start_time_seconds"), 0);

  // GetStats reads the same counters.
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ExpectFallbacksAgree(body, *stats);
  bool saw_cosine_ok = false;
  for (const auto& m : stats->methods()) {
    if (m.method() == "BatchCosine" && m.code() == "OK") {
      saw_cosine_ok = true;
      EXPECT_EQ(m.count(), 8u);
    }
  }
  EXPECT_TRUE(saw_cosine_ok);
  bool saw_cpu_cosine = false;
  for (const auto& b : stats->backends()) {
    if (b.operation() != "cosine" || b.backend() != pb::BACKEND_CPU) continue;
    saw_cpu_cosine = true;
    EXPECT_EQ(b.requests(), 8u);
    EXPECT_EQ(b.work_items(), 8u * 4 * 50);
    const auto buckets = testing::HistogramBuckets(
        body, "engram_compute_duration_seconds",
        {{"operation", "cosine"}, {"backend", "cpu"}});
    EXPECT_NEAR(b.p50_seconds(), testing::BucketQuantile(buckets, 0.5), 1e-12);
    EXPECT_NEAR(b.p99_seconds(), testing::BucketQuantile(buckets, 0.99), 1e-12);
    EXPECT_DOUBLE_EQ(b.compute_seconds_total(),
                     Value(body, "engram_compute_duration_seconds_sum",
                           {{"operation", "cosine"}, {"backend", "cpu"}}));
  }
  EXPECT_TRUE(saw_cpu_cosine);
  ASSERT_EQ(stats->operations_size(), 2);
  EXPECT_EQ(stats->operations(0).operation(), "cosine");
  EXPECT_EQ(stats->operations(0).requests(), 8u);
  EXPECT_EQ(stats->operations(0).fallbacks(), 8u);
  EXPECT_DOUBLE_EQ(stats->operations(0).fallback_rate(), 1.0);
  EXPECT_EQ(stats->breaker().state(), "open");
  EXPECT_GT(stats->breaker().retry_after_seconds(), 500);
  EXPECT_THAT(stats->last_gpu_error(), HasSubstr("simulated"));
  EXPECT_EQ(stats->gpu_memory().total_bytes(),
            Value(body, "engram_gpu_memory_total_bytes"));
  // Nothing runs now: the ledger holds nothing, and its gauge agrees.
  EXPECT_TRUE(stats->gpu_memory().ledger_enabled());
  EXPECT_EQ(stats->gpu_memory().ledger_reserved_bytes(), 0u);
  EXPECT_EQ(Value(body, "engram_gpu_memory_reserved_bytes"), 0);
  EXPECT_TRUE(stats->readiness().serving());
  EXPECT_FALSE(stats->readiness().cpu_only());

  // Each fallback was logged once, with the id of the request it hit; the
  // breaker's transition names the request whose failure tripped it.
  const auto fallbacks = LogLines(s.log_path, "gpu_fallback");
  ASSERT_EQ(fallbacks.size(), 10u) << ReadFile(s.log_path);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(Field(fallbacks[i], "request_id"), absl::StrCat("dev-", i));
  }
  const auto transitions = LogLines(s.log_path, "circuit_breaker");
  ASSERT_EQ(transitions.size(), 1u);
  EXPECT_EQ(Field(transitions[0], "request_id"), "dev-2");
  EXPECT_EQ(Field(transitions[0], "to"), "open");
}

TEST(ObservabilityTest, CountersMatchAWorkloadWithOutOfMemory) {
  // Every GPU chunk is "too big": 32 queries OOM, then 16, then 8 (two
  // halvings allowed), and the request finishes on the CPU.
  Server s =
      StartServer({"--simulated_gpu_oom_above_bytes=1", "--log_level=warning"},
                  absl::StrCat(kGpuFriendly,
                               "max_oom_retries = 2\n"
                               "min_chunk_queries = 8\n"));
  ASSERT_NE(s.client, nullptr);
  for (int i = 0; i < 4; ++i) {
    auto r = s.client->BatchCosine(Cosine(32, 64, 16));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->report().fallback_reason(), "gpu_oom");
  }
  const std::string body = ScrapeAndLint(s.process->metrics_port());
  EXPECT_EQ(Value(body, "engram_gpu_oom_total", {{"operation", "cosine"}}), 12);
  EXPECT_EQ(
      Value(body, "engram_gpu_oom_retries_total", {{"operation", "cosine"}}),
      8);
  EXPECT_EQ(
      Value(body, "engram_gpu_fallbacks_total", Fallback("cosine", "oom")), 4);
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "device_error")),
            0);
  // Out of memory says nothing about the device's health.
  EXPECT_EQ(Value(body, "engram_circuit_breaker_state"), 0);
  EXPECT_EQ(Value(body, "engram_circuit_breaker_transitions_total",
                  {{"from", "closed"}, {"to", "open"}}),
            0);
  EXPECT_EQ(Value(body, "engram_chunks_total",
                  {{"operation", "cosine"}, {"backend", "cpu"}}),
            4);
  EXPECT_EQ(Value(body, "engram_gpu_memory_query_failures_total"), 0);

  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ExpectFallbacksAgree(body, *stats);
  const pb::OperationStats& cosine = stats->operations(0);
  EXPECT_EQ(cosine.ooms(), 12u);
  EXPECT_EQ(cosine.oom_retries(), 8u);
  // All twelve happened within the window.
  EXPECT_NEAR(cosine.ooms_per_minute(), 12 * 60 / stats->window_seconds(),
              1e-9);
  EXPECT_EQ(stats->breaker().state(), "closed");
  EXPECT_EQ(LogLines(s.log_path, "gpu_oom").size(), 12u);
}

TEST(ObservabilityTest, StickyErrorCountsTheGpuAsUnavailableFromThenOn) {
  // Calls 1 and 2 succeed on the GPU, call 3 loses the device.
  Server s = StartServer(
      {"--simulated_gpu_sticky_after_calls=3", "--log_level=warning"});
  ASSERT_NE(s.client, nullptr);
  for (int i = 0; i < 6; ++i) {
    auto r = s.client->BatchCosine(Cosine(2, 20, 8));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  const std::string body = ScrapeAndLint(s.process->metrics_port());
  EXPECT_EQ(Value(body, "engram_compute_duration_seconds_count",
                  {{"operation", "cosine"}, {"backend", "gpu"}}),
            2);
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "device_error")),
            1);
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "unavailable")),
            3);
  EXPECT_EQ(Value(body, "engram_gpu_errors_total",
                  {{"operation", "cosine"}, {"kind", "sticky"}}),
            1);
  EXPECT_EQ(Value(body, "engram_circuit_breaker_transitions_total",
                  {{"from", "closed"}, {"to", "forced_open"}}),
            1);
  EXPECT_EQ(Value(body, "engram_circuit_breaker_state"), 3);
  EXPECT_TRUE(
      std::isinf(Value(body, "engram_circuit_breaker_retry_after_seconds")));
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ExpectFallbacksAgree(body, *stats);
  EXPECT_EQ(stats->breaker().state(), "forced_open");
  EXPECT_TRUE(std::isinf(stats->breaker().retry_after_seconds()));
  EXPECT_THAT(stats->breaker().last_error(), HasSubstr("sticky"));
  const auto fallback = LogLines(s.log_path, "gpu_fallback");
  ASSERT_EQ(fallback.size(), 4u);
  EXPECT_EQ(Field(fallback[0], "sticky"), "true");
  EXPECT_EQ(Field(fallback[1], "reason"), "unavailable");
}

TEST(ObservabilityTest, RejectionsAndTheQueueAreCountedByReason) {
  // One worker; every GPU call fails after a second of "device time".
  Server s = StartServer({"--worker_threads=1", "--simulated_gpu_error_rate=1",
                          "--simulated_gpu_launch_overhead=1s",
                          "--max_input_elements=1000", "--log_level=error"});
  ASSERT_NE(s.client, nullptr);
  // Over --max_input_elements: refused before dispatch.
  EXPECT_EQ(s.client->BatchCosine(Cosine(10, 100, 10)).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Malformed input is the caller's mistake, not a rejection.
  pb::BatchCosineRequest bad = Cosine(1, 2, 3);
  bad.mutable_queries()->set_cols(4);
  EXPECT_EQ(s.client->BatchCosine(bad).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A GPU-only call occupies the worker for a second and then fails without
  // fallback; a call with a 200 ms deadline waits behind it in the queue
  // and is abandoned when the worker reaches it.
  pb::BatchCosineRequest gpu_only = Cosine(2, 10, 4);
  gpu_only.set_placement(pb::PLACEMENT_GPU_ONLY);
  std::thread slow([&] {
    EXPECT_EQ(s.client->BatchCosine(gpu_only).status().code(),
              absl::StatusCode::kUnavailable);
  });
  const absl::Time give_up = absl::Now() + testing::Scaled(absl::Seconds(5));
  while (absl::Now() < give_up) {
    auto stats = s.client->GetStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->inflight_requests() == 1) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  client::CallOptions short_deadline;
  short_deadline.timeout = absl::Milliseconds(200);
  std::thread expiring([&] {
    EXPECT_EQ(
        s.client->BatchCosine(Cosine(1, 2, 2), short_deadline).status().code(),
        absl::StatusCode::kDeadlineExceeded);
  });
  uint64_t most_queued = 0;
  while (absl::Now() < give_up && most_queued == 0) {
    auto stats = s.client->GetStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    most_queued = stats->queued_work_items();
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(most_queued, 1u);
  slow.join();
  expiring.join();
  // The abandoned call is counted when the worker picks it up.
  const absl::Time settle = absl::Now() + testing::Scaled(absl::Seconds(5));
  std::string body;
  while (absl::Now() < settle) {
    body = ScrapeAndLint(s.process->metrics_port());
    if (SampleValue(body, "engram_rejected_requests_total",
                    {{"reason", "abandoned"}}) == 1.0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(
      Value(body, "engram_rejected_requests_total", {{"reason", "too_large"}}),
      1);
  EXPECT_EQ(Value(body, "engram_rejected_requests_total",
                  {{"reason", "gpu_unavailable"}}),
            1);
  EXPECT_EQ(
      Value(body, "engram_rejected_requests_total", {{"reason", "abandoned"}}),
      1);
  EXPECT_EQ(
      Value(body, "engram_rejected_requests_total", {{"reason", "draining"}}),
      0);
  EXPECT_EQ(Value(body, "engram_queued_work_items"), 0);
  auto stats = s.client->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (const pb::RejectionStats& r : stats->rejections()) {
    EXPECT_EQ(
        static_cast<double>(r.count()),
        Value(body, "engram_rejected_requests_total", {{"reason", r.reason()}}))
        << r.reason();
  }
  EXPECT_EQ(stats->rejections_size(), 5);
}

TEST(ObservabilityTest, EveryExposedFamilyIsDocumented) {
  // Start with a measured speedup so that the family on demand shows too:
  // calibration measures both backends in the same buckets.
  Server s = StartServer({"--calibrate", "--log_level=warning"});
  ASSERT_NE(s.client, nullptr);
  const std::string body = ScrapeAndLint(s.process->metrics_port());
  const std::string doc = ReadFile("docs/metrics.md");
  ASSERT_FALSE(doc.empty()) << "docs/metrics.md not found";
  const auto families = testing::DeclaredFamilies(body);
  EXPECT_TRUE(families.count("engram_gpu_speedup_estimate"));
  EXPECT_TRUE(families.count("engram_dispatch_cost_model"));
  for (const auto& [name, type] : families) {
    // prometheus-cpp's exposer adds exposer_* about itself.
    if (absl::StartsWith(name, "exposer_")) continue;
    EXPECT_TRUE(absl::StrContains(doc, absl::StrCat("`", name, "`")))
        << name << " (" << type << ") is not in docs/metrics.md";
  }
}

// A Prometheus server on loopback with a temporary configuration and
// storage, scraping one target every second; stopped and removed after.
class PrometheusServer {
 public:
  static std::unique_ptr<PrometheusServer> Start(int target_port) {
    auto p = std::unique_ptr<PrometheusServer>(new PrometheusServer());
    p->dir_ = TempPath("prometheus");
    std::filesystem::create_directories(p->dir_ + "/data");
    const std::string config = p->dir_ + "/prometheus.yml";
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 1s\n"
                             "  evaluation_interval: 1s\n"
                             "scrape_configs:\n"
                             "  - job_name: engram\n"
                             "    static_configs:\n"
                             "      - targets: ['127.0.0.1:"
                          << target_port << "']\n";
    auto port = testing::PickFreePort();
    EXPECT_TRUE(port.ok()) << port.status();
    if (!port.ok()) return nullptr;
    p->port_ = *port;
    std::vector<std::string> args = {
        kPrometheus, "--config.file=" + config,
        "--storage.tsdb.path=" + p->dir_ + "/data",
        absl::StrCat("--web.listen-address=127.0.0.1:", p->port_),
        "--log.level=warn"};
    const std::string log = p->dir_ + "/prometheus.log";
    testing::ChildProcess::Options child;
    child.stderr_path = log;
    child.stdout_too = true;
    auto started = testing::ChildProcess::Start(args, child);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return nullptr;
    p->process_ = *std::move(started);
    const absl::Time deadline =
        absl::Now() + testing::Scaled(absl::Seconds(20));
    while (absl::Now() < deadline) {
      if (testing::HttpGet(p->port_, "/-/ready").ok()) return p;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "Prometheus did not become ready:\n" << ReadFile(log);
    return nullptr;
  }

  ~PrometheusServer() {
    if (process_ != nullptr) process_->Stop(absl::Seconds(10));
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // The single value of an instant query, or nullopt while the result is
  // empty (not scraped yet).
  std::optional<double> Query(const std::string& promql) {
    auto body =
        testing::HttpGet(port_, "/api/v1/query?query=" + Encode(promql));
    if (!body.ok()) return std::nullopt;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":
    // {...},"value":[1700000000.123,"8"]}]}}
    const size_t at = body->find("\"value\":[");
    if (at == std::string::npos) return std::nullopt;
    const size_t quote = body->find('"', body->find(',', at) + 1);
    const size_t end = body->find('"', quote + 1);
    return std::stod(body->substr(quote + 1, end - quote - 1));
  }

  // True when Prometheus accepts `promql` (it parses and evaluates).
  bool Accepts(const std::string& promql) {
    auto body =
        testing::HttpGet(port_, "/api/v1/query?query=" + Encode(promql));
    return body.ok() && absl::StrContains(*body, "\"status\":\"success\"");
  }

  // Polls `promql` until it equals `want` or `timeout` passes; returns the
  // last value seen.
  std::optional<double> AwaitValue(const std::string& promql, double want,
                                   absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    std::optional<double> v;
    while (absl::Now() < deadline) {
      v = Query(promql);
      if (v.has_value() && *v == want) return v;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return v;
  }

 private:
  PrometheusServer() = default;

  static std::string Encode(const std::string& promql) {
    std::string encoded;
    for (unsigned char c : promql) {
      if (std::isalnum(c) || c == '_' || c == '.' || c == '-') {
        encoded += static_cast<char>(c);
      } else {
        encoded += absl::StrFormat("%%%02X", c);
      }
    }
    return encoded;
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<testing::ChildProcess> process_;
};

TEST(ObservabilityTest, PrometheusScrapesTheServiceAndAnswersPromQL) {
  ASSERT_NE(std::string(kPrometheus), "")
      << "prometheus not found at configure time: run scripts/install-deps.sh";
  Server s = StartServer({"--log_level=warning"});
  ASSERT_NE(s.client, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(s.client->BatchCosine(Cosine(8, 200, 32)).ok());
  }
  // One malformed call: counted under its own code.
  pb::BatchCosineRequest bad = Cosine(1, 2, 3);
  bad.mutable_queries()->set_cols(4);
  EXPECT_FALSE(s.client->BatchCosine(bad).ok());

  auto prometheus = PrometheusServer::Start(s.process->metrics_port());
  ASSERT_NE(prometheus, nullptr);
  EXPECT_EQ(prometheus->AwaitValue(
                "sum(engram_requests_total{method=\"BatchCosine\"})", 6,
                testing::Scaled(absl::Seconds(30))),
            6);
  EXPECT_EQ(prometheus->Query("engram_requests_total{method=\"BatchCosine\","
                              "code=\"INVALID_ARGUMENT\"}"),
            1);
  EXPECT_EQ(prometheus->Query("up{job=\"engram\"}"), 1);

  // The quantile Prometheus computes is the one the exposed buckets imply
  // (BatchCosine is idle now, so the buckets do not move).
  const std::string body = ScrapeAndLint(s.process->metrics_port());
  const auto buckets = testing::HistogramBuckets(
      body, "engram_request_duration_seconds", {{"method", "BatchCosine"}});
  const double expected = testing::BucketQuantile(buckets, 0.9);
  ASSERT_GT(expected, 0);
  const std::optional<double> p90 = prometheus->Query(
      "histogram_quantile(0.9, sum by (le) "
      "(engram_request_duration_seconds_bucket{method=\"BatchCosine\"}))");
  ASSERT_TRUE(p90.has_value());
  EXPECT_NEAR(*p90, expected, 1e-9 * expected);

  // Every query of the Grafana dashboard is PromQL this Prometheus accepts,
  // with the dashboard's variables filled in.
  const std::string dashboard =
      ReadFile("deploy/monitoring/grafana-dashboard.json");
  const std::regex expr_field(R"re("expr": "((?:[^"\\]|\\.)*)")re");
  int queries = 0;
  for (auto it =
           std::sregex_iterator(dashboard.begin(), dashboard.end(), expr_field);
       it != std::sregex_iterator(); ++it) {
    std::string expr =
        absl::StrReplaceAll((*it)[1].str(), {{"\\\"", "\""}, {"\\\\", "\\"}});
    expr = absl::StrReplaceAll(
        expr,
        {{"$__rate_interval", "1m"}, {"$job", ".*"}, {"$instance", ".*"}});
    EXPECT_TRUE(prometheus->Accepts(expr)) << expr;
    ++queries;
  }
  EXPECT_GT(queries, 20);
}

// Calls BatchCosine with raw metadata and returns the x-request-id the
// server echoed in its trailing metadata.
std::string CallWithMetadata(
    const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& md) {
  auto stub = pb::Similarity::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(testing::ScaledDeadline(absl::Seconds(10)));
  for (const auto& [k, v] : md) context.AddMetadata(k, v);
  pb::BatchCosineResponse response;
  const grpc::Status status =
      stub->BatchCosine(&context, Cosine(2, 10, 4), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // Never in the headers: they would commit an error response, which a
  // client's retry policy could then not retry on another replica.
  EXPECT_EQ(context.GetServerInitialMetadata().count("x-request-id"), 0u);
  const auto& echoed = context.GetServerTrailingMetadata();
  const auto it = echoed.find("x-request-id");
  return it == echoed.end() ? ""
                            : std::string(it->second.data(), it->second.size());
}

TEST(ObservabilityTest, RequestIdAndTraceparentReachTheEnginesLogLines) {
  Server s = StartServer({"--log_level=debug"});
  ASSERT_NE(s.client, nullptr);
  const std::string given = CallWithMetadata(
      s.process->grpc_target(),
      {{"x-request-id", "caller-42"}, {"traceparent", kTraceparent}});
  EXPECT_EQ(given, "caller-42");
  const std::string generated = CallWithMetadata(s.process->grpc_target(), {});
  EXPECT_THAT(generated, ::testing::MatchesRegex("[0-9a-f]{16}"));
  // A malformed traceparent is not logged.
  CallWithMetadata(s.process->grpc_target(),
                   {{"x-request-id", "caller-43"}, {"traceparent", "junk"}});

  const auto decisions = LogLines(s.log_path, "dispatch_decision");
  ASSERT_EQ(decisions.size(), 3u) << ReadFile(s.log_path);
  EXPECT_EQ(Field(decisions[0], "request_id"), "caller-42");
  EXPECT_EQ(Field(decisions[0], "traceparent"), kTraceparent);
  EXPECT_EQ(Field(decisions[1], "request_id"), generated);
  EXPECT_EQ(Field(decisions[1], "traceparent"), std::nullopt);
  EXPECT_EQ(Field(decisions[2], "request_id"), "caller-43");
  EXPECT_EQ(Field(decisions[2], "traceparent"), std::nullopt);
  const auto rpcs = LogLines(s.log_path, "rpc");
  ASSERT_EQ(rpcs.size(), 3u);
  EXPECT_EQ(Field(rpcs[1], "request_id"), generated);
  EXPECT_EQ(Field(rpcs[1], "code"), "OK");
}

TEST(ObservabilityTest, AFaultStormIsRateLimitedWithoutLosingCount) {
  // Every GPU call fails and the breaker never opens: one fallback warning
  // per request. Three may pass at once, then one every two seconds.
  Server s = StartServer(
      {"--simulated_gpu_error_rate=1", "--log_level=warning",
       "--log_rate_limit_burst=3", "--log_rate_limit_per_second=0.5"},
      absl::StrCat(kGpuFriendly,
                   "breaker_window_calls = 1000\nbreaker_min_calls = 1000\n"
                   "breaker_consecutive_failures = 100000\n"));
  ASSERT_NE(s.client, nullptr);
  const pb::BatchCosineRequest request = Cosine(2, 20, 8);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(
        s.client->BatchCosine(request, WithId(absl::StrCat("storm-", i))).ok());
  }
  absl::SleepFor(absl::Milliseconds(2100));  // one token back
  ASSERT_TRUE(s.client->BatchCosine(request, WithId("storm-last")).ok());

  const auto lines = LogLines(s.log_path, "gpu_fallback");
  ASSERT_FALSE(lines.empty());
  EXPECT_LT(lines.size(), 10u);
  int accounted = 0;
  for (const std::string& line : lines) {
    ++accounted;
    if (auto n = Field(line, "suppressed")) accounted += std::stoi(*n);
    EXPECT_THAT(Field(line, "request_id").value_or(""),
                ::testing::StartsWith("storm-"));
  }
  // Every fallback is a line or counted by the line that resumed logging.
  EXPECT_EQ(accounted, 21);
  EXPECT_EQ(Field(lines.back(), "request_id"), "storm-last");
  EXPECT_TRUE(Field(lines.back(), "suppressed").has_value());
  // The counter is not rate-limited.
  const std::string body = ScrapeAndLint(s.process->metrics_port());
  EXPECT_EQ(Value(body, "engram_gpu_fallbacks_total",
                  Fallback("cosine", "device_error")),
            21);
}

}  // namespace
}  // namespace engram
