// Fault-injected soak (ctest labels `reliability`, `soak`):
// 32 concurrent clients for ENGRAM_SOAK_SECONDS (default 60; plus a
// calibration run of half that, at most 30 s, first) against the
// real engram-server with the simulated GPU failing about 10% of its calls
// (device errors, OOM, in bursts, plus latency spikes) and one sticky error
// near the middle, after which the breaker is forced open and everything
// runs on the CPU. The clients send a mix of BatchCosine and Spread, dense
// and top-k, tiny to large, all PLACEMENT_AUTO, and 5% malformed requests of
// every documented kind. It passes only with
// - 0 wrong answers against the float64 reference (tests/testing),
// - 0 lost requests: every valid call OK and every malformed one refused
//   with its documented code, and the client's tally of calls by (method,
//   code) equal to engram_requests_total on /metrics,
// - 0 INTERNAL/UNKNOWN,
// - the faults really injected and the sticky error really part-way (not in
//   the first or last tenth), with no GPU result after it,
// - the server's resident memory growing by less than kRssGrowthBound over
//   the second half; MemoryGateRejectsALeakingProcess shows the same gate
//   failing on a process that leaks.
// The run prints one `SOAK SUMMARY` line of figures for docs/reliability.md.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/similarity_client.h"
#include "gtest/gtest.h"
#include "tests/server/load_harness.h"
#include "tests/server/metrics_text.h"
#include "tests/server/server_process.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using testing::LoadCase;
using testing::LoadMethod;
using testing::SizeClass;

constexpr int kClients = 32;
constexpr double kInvalidShare = 0.05;
constexpr int kDefaultSoakSeconds = 60;
constexpr double kMiB = 1 << 20;

// The memory gate: the server's resident memory level (median of a window
// of samples, testing::SecondHalfGrowth) may rise by less than this from
// the midpoint to the end of the run. By the midpoint every request shape
// has run hundreds of times at full concurrency, so the allocator's arenas,
// gRPC's buffers and the 32 concurrent calls' arenas have reached their
// working size: measured, the level stays within a few MiB from 5 s on
// (about 90 MiB), single samples swing by +-10 MiB with the requests in
// flight, and the most the calls in flight can hold at once is about 32 x
// 3 MiB (a 1 MiB request, its parsed copy, a 1 MiB response). 32 MiB is
// far above that noise yet catches a steady leak of 1.5 MiB/s, about 4 KiB
// per request at the soak's 400 requests/s (a leak of r shows as about
// r x 3T/8 = 22 s x r in a 60 s run); the positive control leaks 80 MiB/s
// and must fail.
constexpr uint64_t kRssGrowthBound = uint64_t{32} << 20;
constexpr absl::Duration kRssPeriod = absl::Milliseconds(500);

// Faults: about 3% device errors, 0.5% of calls start a burst of 8 failing
// calls (about 4% of calls), 3% OOM whatever the size: about 10% of GPU
// calls fail. 2% more stall for 50 ms (latency spikes).
const std::vector<std::string> kFaultFlags = {
    "--simulated_gpu",
    "--simulated_gpu_error_rate=0.03",
    "--simulated_gpu_burst_rate=0.005",
    "--simulated_gpu_burst_length=8",
    "--simulated_gpu_oom_rate=0.03",
    "--simulated_gpu_spike_rate=0.02",
    "--simulated_gpu_spike_latency=50ms",
    "--simulated_gpu_seed=7"};

// Every request of any size goes to the GPU (the simulated device computes
// with the CPU kernels, so it is never predicted much faster); GPU chunks
// are small so large requests take several calls and OOM halves them. The
// breaker tolerates the injected 10% (a burst of 8 does not trip it, 12
// failures in a row or half of the last 40 calls do) and, when it does
// trip, re-opens the GPU quickly, so that the GPU keeps getting work until
// the sticky error.
constexpr char kHybridConfig[] =
    "min_gpu_work_cosine = 64\n"
    "min_gpu_work_spread = 8\n"
    "gpu_advantage = 0.1\n"
    "max_chunk_queries = 32\n"
    "min_chunk_queries = 2\n"
    "max_oom_retries = 3\n"
    "breaker_window_calls = 40\n"
    "breaker_min_calls = 20\n"
    "breaker_consecutive_failures = 12\n"
    "breaker_open_initial_seconds = 0.2\n"
    "breaker_open_max_seconds = 1\n"
    "breaker_healthy_reset_seconds = 5\n"
    "breaker_half_open_probes = 2\n"
    "memory_refresh_seconds = 0.05\n";

double SumSamples(const std::string& text, const std::string& name,
                  const testing::MetricLabels& having = {}) {
  double sum = 0;
  for (const testing::MetricSample& s : testing::ParseSamples(text)) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [key, value] : having) {
      auto it = s.labels.find(key);
      match = match && it != s.labels.end() && it->second == value;
    }
    if (match) sum += s.value;
  }
  return sum;
}

// Every call the simulated device saw: chunks it computed plus the calls
// that failed.
double GpuCalls(const std::string& metrics) {
  return SumSamples(metrics, "engram_chunks_total", {{"backend", "gpu"}}) +
         SumSamples(metrics, "engram_gpu_errors_total") +
         SumSamples(metrics, "engram_gpu_oom_total");
}

struct Workload {
  std::vector<LoadCase> valid;
  std::vector<LoadCase> invalid;
  std::map<SizeClass, std::vector<const LoadCase*>> by_size;
};

// What the clients saw. Thread-safe.
struct Observed {
  testing::OutcomeTally tally;
  std::atomic<uint64_t> valid_sent{0};
  std::atomic<uint64_t> valid_ok{0};
  std::atomic<uint64_t> valid_failed{0};
  std::atomic<uint64_t> wrong_answers{0};
  std::atomic<uint64_t> invalid_sent{0};
  std::atomic<uint64_t> invalid_as_documented{0};
  std::atomic<uint64_t> too_large_sent{0};
  std::atomic<uint64_t> on_cpu{0};
  std::atomic<uint64_t> on_gpu{0};
  std::atomic<uint64_t> mixed{0};
  std::atomic<uint64_t> masked{0};  // GPU failed, the CPU finished the work
  std::atomic<uint64_t> gpu_after_sticky{0};
  std::atomic<uint64_t> started_after_sticky{0};
  absl::Mutex mu;
  std::map<std::string, uint64_t> invalid_by_kind ABSL_GUARDED_BY(mu);
  std::vector<std::string> failures ABSL_GUARDED_BY(mu);  // the first few

  void Fail(const std::string& what) {
    absl::MutexLock lock(&mu);
    if (failures.size() < 20) failures.push_back(what);
  }
};

const LoadCase& Pick(const Workload& w, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  if (u(rng) < kInvalidShare) return w.invalid[rng() % w.invalid.size()];
  // Mostly small requests, as a service sees them, and a steady trickle of
  // large ones.
  const double size = u(rng);
  const SizeClass c = size < 0.35   ? SizeClass::kTiny
                      : size < 0.65 ? SizeClass::kSmall
                      : size < 0.9  ? SizeClass::kMedium
                                    : SizeClass::kLarge;
  const std::vector<const LoadCase*>& cases = w.by_size.at(c);
  return *cases[rng() % cases.size()];
}

// `sticky_seen` holds the seconds since `start` at which the monitor first
// saw the breaker forced open, or a negative value.
void RunClient(const client::SimilarityClient& client, const Workload& w,
               uint64_t seed, absl::Time start, absl::Time end,
               const std::atomic<double>& sticky_seen, Observed& out) {
  std::mt19937_64 rng(seed);
  client::CallOptions call;
  // A hang, not a slow answer, trips it.
  call.timeout = testing::Scaled(absl::Seconds(60));
  while (absl::Now() < end) {
    const LoadCase& c = Pick(w, rng);
    const double sticky_at = sticky_seen.load();
    const bool after_sticky =
        sticky_at >= 0 &&
        absl::ToDoubleSeconds(absl::Now() - start) > sticky_at;
    absl::Status status;
    std::string wrong;
    pb::ExecutionReport report;
    if (c.method == LoadMethod::kBatchCosine) {
      auto r = client.BatchCosine(c.cosine, call);
      status = r.status();
      if (r.ok() && c.expected_code == absl::StatusCode::kOk) {
        wrong = testing::CheckCosineResponse(c, *r);
        report = r->report();
      }
    } else {
      auto r = client.Spread(c.spread, call);
      status = r.status();
      if (r.ok() && c.expected_code == absl::StatusCode::kOk) {
        wrong = testing::CheckSpreadResponse(c, *r);
        report = r->report();
      }
    }
    out.tally.Add(c.method, status.code());
    if (c.expected_code != absl::StatusCode::kOk) {
      ++out.invalid_sent;
      if (c.expected_code == absl::StatusCode::kResourceExhausted) {
        ++out.too_large_sent;
      }
      {
        absl::MutexLock lock(&out.mu);
        ++out.invalid_by_kind[c.name];
      }
      if (status.code() == c.expected_code &&
          absl::StrContains(status.message(), c.expected_message)) {
        ++out.invalid_as_documented;
      } else {
        out.Fail(absl::StrCat(
            c.name, ": expected ", absl::StatusCodeToString(c.expected_code),
            " naming \"", c.expected_message, "\", got ", status.ToString()));
      }
      continue;
    }
    ++out.valid_sent;
    if (!status.ok()) {
      ++out.valid_failed;
      out.Fail(absl::StrCat(c.name, ": ", status.ToString()));
      continue;
    }
    ++out.valid_ok;
    if (!wrong.empty()) {
      ++out.wrong_answers;
      out.Fail(absl::StrCat(c.name, " wrong answer (backend ",
                            pb::Backend_Name(report.backend()), ", ",
                            report.decided_by(), "): ", wrong));
    }
    if (report.fallback_reason() == "gpu_error" ||
        report.fallback_reason() == "gpu_oom") {
      ++out.masked;
    }
    switch (report.backend()) {
      case pb::BACKEND_GPU:
        ++out.on_gpu;
        break;
      case pb::BACKEND_MIXED:
        ++out.mixed;
        break;
      default:
        ++out.on_cpu;
    }
    if (after_sticky) {
      ++out.started_after_sticky;
      if (report.backend() != pb::BACKEND_CPU) ++out.gpu_after_sticky;
    }
  }
}

// Runs kClients clients for `duration`; a monitor polls /metrics every
// 500 ms for the breaker state (3: forced open) into *sticky_seen.
void RunLoad(const testing::ServerProcess& server, const Workload& w,
             absl::Duration duration, uint64_t seed, Observed& out,
             std::atomic<double>* sticky_seen) {
  client::SimilarityClient::Options options;
  options.target = server.grpc_target();
  auto client = client::SimilarityClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::atomic<bool> done{false};
  std::thread monitor([&] {
    while (!done.load()) {
      auto body = testing::HttpGet(server.metrics_port(), "/metrics");
      if (body.ok() && sticky_seen->load() < 0) {
        const auto state =
            testing::SampleValue(*body, "engram_circuit_breaker_state");
        if (state.has_value() && *state == 3) {
          sticky_seen->store(absl::ToDoubleSeconds(absl::Now() - start));
        }
      }
      absl::SleepFor(absl::Milliseconds(500));
    }
  });
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      RunClient(**client, w, seed * 1000 + t, start, end, *sticky_seen, out);
    });
  }
  for (std::thread& t : clients) t.join();
  done.store(true);
  monitor.join();
}

Workload MakeWorkload() {
  Workload w;
  w.valid = testing::MakeValidCases(/*seed=*/2024);
  w.invalid = testing::MakeInvalidCases();
  for (const LoadCase& c : w.valid) w.by_size[c.size].push_back(&c);
  return w;
}

TEST(SoakTest, FaultInjectedSoakLosesNothingAndAnswersCorrectly) {
  const int seconds =
      testing::EnvSeconds("ENGRAM_SOAK_SECONDS", kDefaultSoakSeconds);
  const Workload w = MakeWorkload();
  for (SizeClass c : {SizeClass::kTiny, SizeClass::kSmall, SizeClass::kMedium,
                      SizeClass::kLarge}) {
    ASSERT_FALSE(w.by_size.at(c).empty()) << testing::SizeClassName(c);
  }
  std::vector<std::string> flags = {
      "--worker_threads=2", "--log_level=error",
      "--hybrid_config=" + testing::WriteTempFile("soak.conf", kHybridConfig)};
  flags.insert(flags.end(), kFaultFlags.begin(), kFaultFlags.end());
  for (const std::string& f : testing::LoadLimitFlags()) flags.push_back(f);

  // 1. A run with the same load and faults but no sticky error, from a
  // fresh server, counts the device's calls over what will be the first
  // half of the soak, so that the sticky error lands near its middle. (The
  // rate is not steady: the performance model learns within seconds that
  // the spiking device is slower for small requests and sends fewer there,
  // so a short sample would misplace it.) Soaks longer than a minute
  // extrapolate from the first 30 s.
  const int calibration_seconds = std::min(seconds / 2, 30);
  double gpu_calls_per_second = 0;
  {
    auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
    ASSERT_TRUE(server.ok()) << server.status();
    Observed calibration;
    std::atomic<double> no_sticky{-1};
    RunLoad(**server, w, absl::Seconds(calibration_seconds), 1, calibration,
            &no_sticky);
    auto metrics = testing::HttpGet((*server)->metrics_port(), "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    gpu_calls_per_second = GpuCalls(*metrics) / calibration_seconds;
    EXPECT_EQ(calibration.wrong_answers.load(), 0u);
    EXPECT_EQ(calibration.valid_failed.load(), 0u);
  }
  ASSERT_GT(gpu_calls_per_second, 1) << "the GPU got no work";
  const uint64_t sticky_after = std::max<uint64_t>(
      20, static_cast<uint64_t>(gpu_calls_per_second * seconds / 2));
  flags.push_back(
      absl::StrCat("--simulated_gpu_sticky_after_calls=", sticky_after));

  // 2. The soak.
  auto server = testing::ServerProcess::Start(ENGRAM_SERVER_BINARY, flags);
  ASSERT_TRUE(server.ok()) << server.status();
  Observed seen;
  std::atomic<double> sticky_seen{-1};
  testing::RssSampler rss((*server)->pid(), kRssPeriod);
  const absl::Time start = absl::Now();
  RunLoad(**server, w, absl::Seconds(seconds), 2, seen, &sticky_seen);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  rss.Stop();
  auto metrics = testing::HttpGet((*server)->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();

  // Figures.
  const uint64_t sent = seen.tally.Total();
  const uint64_t lost =
      sent - seen.valid_ok.load() - seen.invalid_as_documented.load();
  const uint64_t internal = seen.tally.CountCode(absl::StatusCode::kInternal) +
                            seen.tally.CountCode(absl::StatusCode::kUnknown);
  const double device_errors =
      SumSamples(*metrics, "engram_gpu_errors_total", {{"kind", "device"}});
  const double sticky_errors =
      SumSamples(*metrics, "engram_gpu_errors_total", {{"kind", "sticky"}});
  const double ooms = SumSamples(*metrics, "engram_gpu_oom_total");
  const double gpu_calls = GpuCalls(*metrics);
  const double injected_share =
      gpu_calls > sticky_errors
          ? (device_errors + ooms) / (gpu_calls - sticky_errors)
          : 0;
  const double fallbacks = SumSamples(*metrics, "engram_gpu_fallbacks_total");
  const std::vector<testing::RssSample> samples = rss.samples();
  const absl::StatusOr<testing::MemoryGrowth> growth =
      testing::SecondHalfGrowth(samples);
  ASSERT_TRUE(growth.ok()) << growth.status();
  std::printf(
      "SOAK SUMMARY: %d s x %d clients, %llu requests (%.0f req/s): %s; "
      "valid %llu (on cpu %llu, gpu %llu, mixed %llu; %llu GPU failures "
      "finished on the CPU), malformed %llu "
      "(%llu as documented); wrong answers %llu, lost %llu, "
      "INTERNAL/UNKNOWN %llu; GPU calls %.0f, injected failures %.1f%% "
      "(device %.0f, oom %.0f), fallbacks %.0f, sticky after call %llu seen "
      "at %.1f s, %llu requests after it, %llu on the GPU; RSS first %.1f "
      "MiB, level at the midpoint %.1f MiB, at the end %.1f MiB, last %.1f "
      "MiB, peak %.1f MiB, growth over the second half %.1f MiB (bound "
      "%.0f MiB)\n",
      seconds, kClients, static_cast<unsigned long long>(sent), sent / elapsed,
      seen.tally.ByCode().c_str(),
      static_cast<unsigned long long>(seen.valid_sent.load()),
      static_cast<unsigned long long>(seen.on_cpu.load()),
      static_cast<unsigned long long>(seen.on_gpu.load()),
      static_cast<unsigned long long>(seen.mixed.load()),
      static_cast<unsigned long long>(seen.masked.load()),
      static_cast<unsigned long long>(seen.invalid_sent.load()),
      static_cast<unsigned long long>(seen.invalid_as_documented.load()),
      static_cast<unsigned long long>(seen.wrong_answers.load()),
      static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(internal), gpu_calls,
      100 * injected_share, device_errors, ooms, fallbacks,
      static_cast<unsigned long long>(sticky_after), sticky_seen.load(),
      static_cast<unsigned long long>(seen.started_after_sticky.load()),
      static_cast<unsigned long long>(seen.gpu_after_sticky.load()),
      growth->first / kMiB, growth->midpoint_level / kMiB,
      growth->end_level / kMiB, growth->last / kMiB, growth->peak / kMiB,
      growth->growth / kMiB, kRssGrowthBound / kMiB);
  std::string decisions, rss_trace;
  for (const testing::MetricSample& m : testing::ParseSamples(*metrics)) {
    if (m.name != "engram_dispatch_decisions_total" || m.value == 0) continue;
    absl::StrAppend(&decisions, " ", m.labels.at("operation"), "/",
                    m.labels.at("backend"), "/", m.labels.at("rule"), "=",
                    m.value);
  }
  for (const testing::RssSample& r : samples) {
    absl::StrAppendFormat(&rss_trace, " %.0f", r.bytes / kMiB);
  }
  std::printf("dispatch decisions:%s\nRSS samples (MiB, every %.1f s):%s\n",
              decisions.c_str(), absl::ToDoubleSeconds(kRssPeriod),
              rss_trace.c_str());
  std::fflush(stdout);
  {
    absl::MutexLock lock(&seen.mu);
    for (const std::string& f : seen.failures) ADD_FAILURE() << f;
  }

  // Correctness and accounting.
  EXPECT_EQ(seen.wrong_answers.load(), 0u);
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(seen.valid_failed.load(), 0u);
  EXPECT_EQ(internal, 0u);
  EXPECT_EQ(seen.tally.CompareWithServer(*metrics), "");
  EXPECT_EQ(testing::SampleValue(*metrics, "engram_rejected_requests_total",
                                 {{"reason", "too_large"}})
                .value_or(-1),
            static_cast<double>(seen.too_large_sent.load()));
  // Every kind of malformed request was sent, and the share is about 5%.
  {
    absl::MutexLock lock(&seen.mu);
    for (const LoadCase& c : w.invalid) {
      EXPECT_GT(seen.invalid_by_kind[c.name], 0u) << c.name << " never sent";
    }
  }
  EXPECT_NEAR(static_cast<double>(seen.invalid_sent.load()) / sent,
              kInvalidShare, 0.02);

  // The faults were real: the GPU computed, failed in every injected way
  // at about the configured share, and the CPU took over.
  EXPECT_GT(seen.on_gpu.load() + seen.mixed.load(), 0u);
  EXPECT_GT(seen.masked.load(), 0u);
  EXPECT_GT(device_errors, 0);
  EXPECT_GT(ooms, 0);
  EXPECT_GE(sticky_errors, 1);
  EXPECT_GT(fallbacks, 0);
  EXPECT_GT(injected_share, 0.03);
  EXPECT_LT(injected_share, 0.25);
  // The sticky error came part-way, forced the breaker open for good, and
  // nothing started after that ran on the GPU.
  EXPECT_GT(sticky_seen.load(), 0.1 * seconds);
  EXPECT_LT(sticky_seen.load(), 0.9 * seconds);
  EXPECT_EQ(testing::SampleValue(*metrics, "engram_circuit_breaker_state")
                .value_or(-1),
            3);
  EXPECT_GT(seen.started_after_sticky.load(), 0u);
  EXPECT_EQ(seen.gpu_after_sticky.load(), 0u);

  // Memory. Under AddressSanitizer (scripts/asan.sh sets
  // ENGRAM_SOAK_MEMORY_GATE=0) the quarantine of freed blocks grows the
  // resident set by design, and leaks are LeakSanitizer's to find at exit.
  EXPECT_GE(samples.size(), static_cast<size_t>(seconds));  // 2 per second
  const char* gate = std::getenv("ENGRAM_SOAK_MEMORY_GATE");
  if (gate == nullptr || std::string(gate) != "0") {
    EXPECT_TRUE(testing::MemoryGrowthBelow(samples, kRssGrowthBound));
  }

  // A clean stop: health, drain and exit 0 (under the sanitizer job, with
  // LeakSanitizer's verdict on everything the soak allocated).
  (*server)->Signal(SIGTERM);
  absl::StatusOr<int> exit_code =
      (*server)->WaitForExit(testing::Scaled(absl::Seconds(60)));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << "the server did not stop cleanly";
}

// A child that maps and touches `step` bytes every `every`, `steps` times
// (a leak when steps > 1), then sleeps until killed. mmap and memset only:
// the child of a threaded process must not call malloc.
pid_t SpawnAllocator(size_t step, absl::Duration every, int steps) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const timespec nap = absl::ToTimespec(every);
  for (int i = 0; i < steps; ++i) {
    void* p = mmap(nullptr, step, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) _exit(1);
    std::memset(p, 1, step);
    nanosleep(&nap, nullptr);
  }
  while (true) pause();
}

std::vector<testing::RssSample> SampleChild(pid_t pid, absl::Duration for_) {
  testing::RssSampler sampler(pid, kRssPeriod);
  absl::SleepFor(for_);
  sampler.Stop();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return sampler.samples();
}

// The positive control of the memory gate: the same sampler and gate that
// judge the server reject a process that leaks 4 MiB every 50 ms (80 MiB/s:
// its level rises by about 150 MiB from the midpoint to the end of 5 s of
// sampling), and pass one that holds 256 MiB from the start without
// growing.
TEST(SoakTest, MemoryGateRejectsALeakingProcess) {
  const pid_t leaking =
      SpawnAllocator(size_t{4} << 20, absl::Milliseconds(50), 120);
  ASSERT_GT(leaking, 0);
  const std::vector<testing::RssSample> leak =
      SampleChild(leaking, absl::Seconds(5));
  ASSERT_GE(leak.size(), 8u);
  const ::testing::AssertionResult leak_verdict =
      testing::MemoryGrowthBelow(leak, kRssGrowthBound);
  EXPECT_FALSE(leak_verdict) << leak_verdict.message();
  std::printf("leaking control: %s\n", leak_verdict.message());

  const pid_t steady =
      SpawnAllocator(size_t{256} << 20, absl::ZeroDuration(), 1);
  ASSERT_GT(steady, 0);
  absl::SleepFor(absl::Milliseconds(300));  // let it touch its memory
  const std::vector<testing::RssSample> flat =
      SampleChild(steady, absl::Seconds(5));
  const ::testing::AssertionResult flat_verdict =
      testing::MemoryGrowthBelow(flat, kRssGrowthBound);
  EXPECT_TRUE(flat_verdict);
  std::printf("steady control: %s\n", flat_verdict.message());
}

}  // namespace
}  // namespace engram
