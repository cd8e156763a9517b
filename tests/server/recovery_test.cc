// Recovery (ctest label `reliability`): an in-process
// SimilarityServer whose simulated GPU fails every call for
// ENGRAM_RECOVERY_FAIL_SECONDS (default 10), then none, while clients keep
// sending AUTO requests that the dispatch engine gives to the GPU. The
// breaker's transitions are recorded by a listener. It passes only with
// - the breaker opening within its window once the failures start (after
//   at most its consecutive-failure count of failed calls, plus the calls
//   already in flight, and within breaker_window_seconds),
// - never closing while the device still fails,
// - closing again within its longest open wait plus the time for its
//   half-open probes once the failures stop, and the GPU then serving again,
// - every call of the whole run OK and correct: the CPU served throughout
//   with no client-visible error.
// The run prints the breaker timeline and a `RECOVERY SUMMARY` line.
#include <atomic>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/similarity_client.h"
#include "core/dispatch/circuit_breaker.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "core/logging.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/load_harness.h"
#include "tests/testing/time_scale.h"

namespace engram {
namespace {

namespace pb = ::engram::similarity::v1;
using dispatch::BreakerState;
using testing::LoadCase;
using testing::LoadMethod;
using testing::SizeClass;

constexpr int kClients = 4;
constexpr int kDefaultFailSeconds = 10;
// The breaker of this test (written to the hybrid config below).
constexpr uint32_t kConsecutiveFailures = 5;
constexpr double kWindowSeconds = 5;
constexpr double kOpenInitialSeconds = 0.25;
constexpr double kOpenMaxSeconds = 1;
constexpr uint32_t kHalfOpenProbes = 3;
// Time for the half-open probes once the open wait is over: kHalfOpenProbes
// small GPU calls (milliseconds each) that the clients' next requests make.
// 1 s covers a loaded 2-core box many times over in an optimized build; the
// clients check every answer against a float64 reference between requests,
// so a sanitized build makes the probes come later (ProbeAllowanceSeconds).
constexpr double kProbeAllowanceSeconds = 1;
double ProbeAllowanceSeconds() {
  return absl::ToDoubleSeconds(
      testing::Scaled(absl::Seconds(kProbeAllowanceSeconds)));
}
constexpr double kHealthySeconds = 1;

std::string HybridConfig() {
  return absl::StrCat(
      // Every request of these sizes goes to the GPU.
      "min_gpu_work_cosine = 64\n"
      "min_gpu_work_spread = 8\n"
      "gpu_advantage = 0.1\n"
      "probe_enabled = false\n",
      "breaker_window_calls = 20\n"
      "breaker_min_calls = 10\n"
      "breaker_failure_rate = 0.5\n",
      "breaker_window_seconds = ", kWindowSeconds, "\n",
      "breaker_consecutive_failures = ", kConsecutiveFailures, "\n",
      "breaker_open_initial_seconds = ", kOpenInitialSeconds, "\n",
      "breaker_open_max_seconds = ", kOpenMaxSeconds, "\n",
      "breaker_open_backoff = 2\n"
      "breaker_healthy_reset_seconds = 30\n",
      "breaker_half_open_probes = ", kHalfOpenProbes, "\n");
}

// The breaker's transitions with the device's failure count at each and
// the wall time they were reported (the transitions' own times are on the
// engine's monotonic clock).
// Thread-safe; must outlive the server (the breaker calls it).
class Timeline {
 public:
  struct Entry {
    dispatch::BreakerTransition transition;
    uint64_t device_errors = 0;
    absl::Time seen_at;
  };

  void Add(const dispatch::BreakerTransition& t, uint64_t device_errors) {
    absl::MutexLock lock(&mu_);
    entries_.push_back({t, device_errors, absl::Now()});
  }
  std::vector<Entry> entries() const {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

void SleepUntil(absl::Time t) {
  const absl::Duration left = t - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left);
}

struct Observed {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> wrong{0};
  // Responses computed at least partly on the GPU, by phase.
  std::atomic<uint64_t> gpu_healthy{0};
  std::atomic<uint64_t> gpu_after_close{0};
  std::atomic<uint64_t> fell_back{0};
  absl::Mutex mu;
  std::vector<std::string> failures ABSL_GUARDED_BY(mu);
};

TEST(RecoveryTest, BreakerOpensOnFailuresAndClosesAfterThem) {
  const int fail_seconds =
      testing::EnvSeconds("ENGRAM_RECOVERY_FAIL_SECONDS", kDefaultFailSeconds);
  core::SetLogLevel(core::LogLevel::kError);  // no line per fallback
  Timeline timeline;                          // outlives the server
  server::SimilarityServer::Options options;
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.engine.worker_threads = 2;
  options.engine.hybrid_config_path =
      testing::WriteTempFile("recovery.conf", HybridConfig());
  dispatch::testing::SimulatedGpuBackend* gpu = nullptr;
  options.engine.gpu_backend = dispatch::testing::SimulatedGpuFactory(
      dispatch::testing::SimulatedGpuBackend::Options{}, &gpu);
  auto server = server::SimilarityServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  ASSERT_NE(gpu, nullptr);
  dispatch::CircuitBreaker& breaker = (*server)->engine().executor().breaker();
  breaker.AddListener([&timeline, gpu](const dispatch::BreakerTransition& t) {
    timeline.Add(t, gpu->stats().device_errors);
  });

  // Requests big enough for the GPU, both operations, dense and top-k.
  std::vector<LoadCase> cases;
  for (LoadCase& c : testing::MakeValidCases(/*seed=*/99)) {
    if (c.size == SizeClass::kSmall || c.size == SizeClass::kMedium) {
      cases.push_back(std::move(c));
    }
  }
  ASSERT_FALSE(cases.empty());

  std::atomic<double> closed_again_at{-1};  // seconds since start
  std::atomic<bool> stop{false};
  Observed seen;
  const absl::Time start = absl::Now();
  auto client = client::SimilarityClient::CreateFromChannel(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()),
                          grpc::InsecureChannelCredentials()),
      testing::Scaled(absl::Seconds(30)));
  ASSERT_TRUE(client.ok()) << client.status();
  const double fail_from = kHealthySeconds;
  const double fail_until = kHealthySeconds + fail_seconds;
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      while (!stop.load()) {
        const LoadCase& c = cases[rng() % cases.size()];
        const double sent_at = absl::ToDoubleSeconds(absl::Now() - start);
        absl::Status status;
        std::string wrong;
        pb::ExecutionReport report;
        if (c.method == LoadMethod::kBatchCosine) {
          auto r = (*client)->BatchCosine(c.cosine);
          status = r.status();
          if (r.ok()) {
            wrong = testing::CheckCosineResponse(c, *r);
            report = r->report();
          }
        } else {
          auto r = (*client)->Spread(c.spread);
          status = r.status();
          if (r.ok()) {
            wrong = testing::CheckSpreadResponse(c, *r);
            report = r->report();
          }
        }
        ++seen.calls;
        if (!status.ok() || !wrong.empty()) {
          ++(status.ok() ? seen.wrong : seen.failed);
          absl::MutexLock lock(&seen.mu);
          if (seen.failures.size() < 20) {
            seen.failures.push_back(
                absl::StrCat(c.name, " at ", sent_at,
                             " s: ", status.ok() ? wrong : status.ToString()));
          }
          continue;
        }
        if (!report.fallback_reason().empty()) ++seen.fell_back;
        const bool on_gpu = report.backend() != pb::BACKEND_CPU;
        const double closed = closed_again_at.load();
        if (on_gpu && sent_at < fail_from) ++seen.gpu_healthy;
        if (on_gpu && closed >= 0 && sent_at > closed) ++seen.gpu_after_close;
      }
    });
  }

  // Healthy, then every GPU call fails, then none.
  SleepUntil(start + absl::Seconds(fail_from));
  ASSERT_TRUE(gpu->SetErrorProbability(1.0).ok());
  const uint64_t errors_before = gpu->stats().device_errors;
  SleepUntil(start + absl::Seconds(fail_until));
  ASSERT_TRUE(gpu->SetErrorProbability(0.0).ok());
  const double heal_deadline =
      fail_until + kOpenMaxSeconds + ProbeAllowanceSeconds();
  // Wait for the breaker to close (or the gate to be missed), then watch
  // the GPU serve again for a second.
  while (absl::ToDoubleSeconds(absl::Now() - start) < heal_deadline + 2) {
    if (breaker.Snapshot().state == BreakerState::kClosed) {
      closed_again_at.store(absl::ToDoubleSeconds(absl::Now() - start));
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Seconds(1));
  stop.store(true);
  for (std::thread& t : clients) t.join();
  const dispatch::BreakerSnapshot final_state = breaker.Snapshot();
  const dispatch::testing::SimulatedGpuBackend::Stats gpu_stats = gpu->stats();
  ASSERT_TRUE((*server)->Drain().ok());

  // The timeline, relative to the start of the failures.
  const std::vector<Timeline::Entry> entries = timeline.entries();
  const absl::Time failures_start = start + absl::Seconds(fail_from);
  double first_open = -1, closed_after_heal = -1;
  uint64_t errors_at_open = 0;
  int closes_while_failing = 0, opens = 0;
  for (const Timeline::Entry& e : entries) {
    const double at = absl::ToDoubleSeconds(e.seen_at - failures_start);
    std::printf(
        "breaker %+8.3f s: %s -> %s (open for %.3f s; %llu device "
        "errors) %s\n",
        at, dispatch::BreakerStateName(e.transition.from),
        dispatch::BreakerStateName(e.transition.to),
        absl::ToDoubleSeconds(e.transition.open_for),
        static_cast<unsigned long long>(e.device_errors),
        e.transition.reason.c_str());
    if (e.transition.to == BreakerState::kOpen) {
      ++opens;
      if (first_open < 0) {
        first_open = at;
        errors_at_open = e.device_errors - errors_before;
      }
    }
    if (e.transition.to == BreakerState::kClosed) {
      if (at < fail_seconds) ++closes_while_failing;
      if (at >= fail_seconds && closed_after_heal < 0) {
        closed_after_heal = at - fail_seconds;
      }
    }
  }
  std::printf(
      "RECOVERY SUMMARY: %d s of 100%% GPU failure; %llu calls, %llu failed, "
      "%llu wrong, %llu fell back to the CPU; breaker opened %.3f s after the "
      "failures began (%llu failed GPU calls), opened %d times, closed %.3f s "
      "after they stopped (bound %.1f s); GPU calls %llu, device errors %llu; "
      "GPU results before %llu, after recovery %llu\n",
      fail_seconds, static_cast<unsigned long long>(seen.calls.load()),
      static_cast<unsigned long long>(seen.failed.load()),
      static_cast<unsigned long long>(seen.wrong.load()),
      static_cast<unsigned long long>(seen.fell_back.load()), first_open,
      static_cast<unsigned long long>(errors_at_open), opens, closed_after_heal,
      kOpenMaxSeconds + ProbeAllowanceSeconds(),
      static_cast<unsigned long long>(gpu_stats.calls),
      static_cast<unsigned long long>(gpu_stats.device_errors),
      static_cast<unsigned long long>(seen.gpu_healthy.load()),
      static_cast<unsigned long long>(seen.gpu_after_close.load()));
  std::fflush(stdout);
  {
    absl::MutexLock lock(&seen.mu);
    for (const std::string& f : seen.failures) ADD_FAILURE() << f;
  }

  // The CPU served throughout.
  EXPECT_EQ(seen.failed.load(), 0u);
  EXPECT_EQ(seen.wrong.load(), 0u);
  EXPECT_GT(seen.fell_back.load(), 0u);
  // The GPU really served while healthy, and nothing tripped before.
  EXPECT_GT(seen.gpu_healthy.load(), 0u);
  ASSERT_FALSE(entries.empty()) << "the breaker never moved";
  EXPECT_GE(first_open, 0) << "opened before the failures began";
  // Opened within its window: after its consecutive-failure count (the
  // calls in flight when it tripped may fail too) and within the window's
  // duration.
  EXPECT_LE(errors_at_open, kConsecutiveFailures + kClients);
  EXPECT_LT(first_open, kWindowSeconds);
  // Never closed on a failing device: probes fail and re-open it.
  EXPECT_EQ(closes_while_failing, 0);
  EXPECT_GE(opens, 2) << "half-open probes should have re-opened it";
  // Closed again within the longest open wait plus the probes.
  EXPECT_GE(closed_after_heal, 0) << "never closed after the failures stopped";
  EXPECT_LE(closed_after_heal, kOpenMaxSeconds + ProbeAllowanceSeconds());
  EXPECT_EQ(final_state.state, BreakerState::kClosed);
  EXPECT_GT(seen.gpu_after_close.load(), 0u);
}

}  // namespace
}  // namespace engram
