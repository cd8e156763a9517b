#include "core/dispatch/circuit_breaker.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dispatch/backend_errors.h"
#include "core/dispatch/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  CircuitBreaker::Options BaseOptions() {
    CircuitBreaker::Options o;
    o.window_calls = 10;
    o.min_calls = 4;
    o.failure_rate_threshold = 0.5;
    o.window_duration = absl::Seconds(60);
    o.consecutive_failures_to_open = 3;
    o.open_initial = absl::Seconds(1);
    o.open_max = absl::Seconds(5);
    o.open_backoff = 2.0;
    o.healthy_reset = absl::Seconds(100);
    o.half_open_probes = 2;
    o.clock = &clock_;
    return o;
  }

  std::unique_ptr<CircuitBreaker> Make(const CircuitBreaker::Options& o) {
    auto breaker = CircuitBreaker::Create(o);
    EXPECT_TRUE(breaker.ok()) << breaker.status();
    return *std::move(breaker);
  }

  // Admits one call and, when admitted, records `outcome`. Returns whether
  // the call was admitted.
  static bool Call(CircuitBreaker& breaker, const absl::Status& outcome) {
    CircuitBreaker::Permit permit = breaker.Admit();
    if (!permit.allowed()) return false;
    breaker.Record(permit, outcome);
    return true;
  }

  // Trips a breaker built from BaseOptions() with consecutive failures.
  static void Trip(CircuitBreaker& breaker) {
    for (int i = 0; i < 3; ++i) Call(breaker, absl::InternalError("boom"));
    ASSERT_EQ(breaker.Snapshot().state, BreakerState::kOpen);
  }

  ManualClock clock_;
};

enum class Act { kSuccess, kFailure, kClientError, kOom, kSticky, kAdvance };

struct Step {
  Act act;
  BreakerState expected;
  double seconds = 0;  // for kAdvance
};

struct Scenario {
  std::string name;
  std::vector<Step> steps;
  int consecutive_failures_to_open = 3;
};

constexpr BreakerState kClosed = BreakerState::kClosed;
constexpr BreakerState kOpen = BreakerState::kOpen;
constexpr BreakerState kHalfOpen = BreakerState::kHalfOpen;
constexpr BreakerState kForcedOpen = BreakerState::kForcedOpen;

TEST_F(CircuitBreakerTest, StateMachineFollowsTheTable) {
  const std::vector<Scenario> scenarios = {
      {"OpensAfterConsecutiveFailures",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen}}},
      {"SuccessResetsTheConsecutiveCount",
       {{Act::kSuccess, kClosed},
        {Act::kSuccess, kClosed},
        {Act::kSuccess, kClosed},
        {Act::kSuccess, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kSuccess, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen}}},
      {"OpensWhenTheFailureRateReachesTheThreshold",
       {{Act::kSuccess, kClosed},
        {Act::kFailure, kClosed},
        {Act::kSuccess, kClosed},
        {Act::kFailure, kOpen}},
       /*consecutive_failures_to_open=*/100},
      {"FailureRateNeedsTheMinimumNumberOfCalls",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kSuccess, kOpen}},
       100},
      {"ClientErrorsAndOomNeverCount",
       {{Act::kClientError, kClosed},
        {Act::kClientError, kClosed},
        {Act::kClientError, kClosed},
        {Act::kOom, kClosed},
        {Act::kOom, kClosed},
        {Act::kOom, kClosed},
        {Act::kClientError, kClosed}}},
      {"HalfOpensAfterTheWaitAndClosesWhenAllProbesSucceed",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen},
        {Act::kAdvance, kOpen, 0.5},
        {Act::kSuccess, kOpen},  // rejected: still waiting
        {Act::kAdvance, kHalfOpen, 0.5},
        {Act::kSuccess, kHalfOpen},
        {Act::kSuccess, kClosed}}},
      {"OneFailingProbeReopens",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen},
        {Act::kAdvance, kHalfOpen, 1},
        {Act::kSuccess, kHalfOpen},
        {Act::kFailure, kOpen}}},
      {"ClientErrorProbeLeavesItHalfOpen",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen},
        {Act::kAdvance, kHalfOpen, 1},
        {Act::kClientError, kHalfOpen},
        {Act::kSuccess, kHalfOpen},
        {Act::kSuccess, kClosed}}},
      {"StickyErrorForcesItOpenForGood",
       {{Act::kSuccess, kClosed},
        {Act::kSticky, kForcedOpen},
        {Act::kAdvance, kForcedOpen, 3600},
        {Act::kSuccess, kForcedOpen}}},
      {"StickyErrorWhileHalfOpenForcesItOpen",
       {{Act::kFailure, kClosed},
        {Act::kFailure, kClosed},
        {Act::kFailure, kOpen},
        {Act::kAdvance, kHalfOpen, 1},
        {Act::kSticky, kForcedOpen}}},
  };
  for (const Scenario& scenario : scenarios) {
    SCOPED_TRACE(scenario.name);
    CircuitBreaker::Options options = BaseOptions();
    options.consecutive_failures_to_open =
        scenario.consecutive_failures_to_open;
    auto breaker = Make(options);
    int step_index = 0;
    for (const Step& step : scenario.steps) {
      SCOPED_TRACE(step_index++);
      switch (step.act) {
        case Act::kSuccess:
          Call(*breaker, absl::OkStatus());
          break;
        case Act::kFailure:
          Call(*breaker, absl::InternalError("kernel launch failed"));
          break;
        case Act::kClientError:
          Call(*breaker, absl::InvalidArgumentError("queries row 3"));
          break;
        case Act::kOom:
          Call(*breaker, DeviceOutOfMemoryError("out of memory"));
          break;
        case Act::kSticky:
          Call(*breaker, StickyDeviceError("illegal address"));
          break;
        case Act::kAdvance:
          clock_.Advance(absl::Seconds(step.seconds));
          break;
      }
      EXPECT_EQ(breaker->Snapshot().state, step.expected)
          << BreakerStateName(breaker->Snapshot().state) << " vs "
          << BreakerStateName(step.expected);
    }
  }
}

TEST_F(CircuitBreakerTest, RejectsEveryCallWhileOpen) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(breaker->Admit().admission(),
              CircuitBreaker::Admission::kRejected);
  }
}

TEST_F(CircuitBreakerTest, WaitGrowsWithConsecutiveTripsUpToTheCap) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  std::vector<double> waits = {
      absl::ToDoubleSeconds(breaker->Snapshot().retry_after)};
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(breaker->Snapshot().retry_after);
    Call(*breaker, absl::InternalError("still broken"));  // failing probe
    ASSERT_EQ(breaker->Snapshot().state, BreakerState::kOpen);
    waits.push_back(absl::ToDoubleSeconds(breaker->Snapshot().retry_after));
  }
  EXPECT_THAT(waits, ElementsAre(1.0, 2.0, 4.0, 5.0));
  EXPECT_EQ(breaker->Snapshot().consecutive_trips, 4u);
}

TEST_F(CircuitBreakerTest, TripCountResetsAfterAHealthyPeriod) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  Call(*breaker, absl::InternalError("still broken"));  // second trip: 2 s
  clock_.Advance(absl::Seconds(2));
  Call(*breaker, absl::OkStatus());
  Call(*breaker, absl::OkStatus());
  ASSERT_EQ(breaker->Snapshot().state, BreakerState::kClosed);

  // Tripping again soon continues the back-off...
  auto soon = Make(BaseOptions());
  Trip(*soon);
  clock_.Advance(absl::Seconds(1));
  Call(*soon, absl::InternalError("x"));
  clock_.Advance(absl::Seconds(2));
  Call(*soon, absl::OkStatus());
  Call(*soon, absl::OkStatus());
  Trip(*soon);
  EXPECT_EQ(soon->Snapshot().retry_after, absl::Seconds(4));

  // ...but after the healthy period it starts again from the initial wait.
  clock_.Advance(absl::Seconds(100));
  EXPECT_EQ(breaker->Snapshot().consecutive_trips, 0u);
  Trip(*breaker);
  EXPECT_EQ(breaker->Snapshot().retry_after, absl::Seconds(1));
}

TEST_F(CircuitBreakerTest, HalfOpenLetsOnlyTheConfiguredProbesThrough) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  CircuitBreaker::Permit first = breaker->Admit();
  CircuitBreaker::Permit second = breaker->Admit();
  CircuitBreaker::Permit third = breaker->Admit();
  EXPECT_EQ(first.admission(), CircuitBreaker::Admission::kProbe);
  EXPECT_EQ(second.admission(), CircuitBreaker::Admission::kProbe);
  EXPECT_EQ(third.admission(), CircuitBreaker::Admission::kRejected);
  EXPECT_EQ(breaker->Snapshot().probes_in_flight, 2u);

  // A probe given back unused frees its slot for another call.
  breaker->Release(second);
  CircuitBreaker::Permit fourth = breaker->Admit();
  EXPECT_EQ(fourth.admission(), CircuitBreaker::Admission::kProbe);
  breaker->Record(first, absl::OkStatus());
  breaker->Record(fourth, absl::OkStatus());
  EXPECT_EQ(breaker->Snapshot().state, BreakerState::kClosed);
}

TEST_F(CircuitBreakerTest, DestroyedPermitFreesItsProbeSlot) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  {
    CircuitBreaker::Permit a = breaker->Admit();
    CircuitBreaker::Permit b = breaker->Admit();
    ASSERT_TRUE(a.probe() && b.probe());
  }
  EXPECT_EQ(breaker->Snapshot().probes_in_flight, 0u);
  EXPECT_TRUE(breaker->Admit().probe());
}

TEST_F(CircuitBreakerTest, OutcomeAdmittedBeforeATripIsIgnored) {
  auto breaker = Make(BaseOptions());
  CircuitBreaker::Permit early = breaker->Admit();
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  breaker->Admit();  // half-open now; the early permit is from before
  breaker->Record(early, absl::OkStatus());
  EXPECT_EQ(breaker->Snapshot().state, BreakerState::kHalfOpen);
  EXPECT_EQ(breaker->Snapshot().probe_successes, 0u);
}

// The original executor kept a lifetime success rate and, once it dipped
// below 95%, never used the GPU again. Here failures leave the window.
TEST_F(CircuitBreakerTest, GpuLockoutRecoversAfterTheWindow) {
  CircuitBreaker::Options options = BaseOptions();
  options.consecutive_failures_to_open = 100;
  auto breaker = Make(options);
  for (int i = 0; i < 3; ++i) Call(*breaker, absl::InternalError("flaky"));
  ASSERT_EQ(breaker->Snapshot().window_failures, 3u);
  clock_.Advance(absl::Seconds(61));
  EXPECT_EQ(breaker->Snapshot().window_calls, 0u);
  // A lifetime count would trip on this success: 3 failures of 4 calls.
  EXPECT_TRUE(Call(*breaker, absl::OkStatus()));
  EXPECT_TRUE(Call(*breaker, absl::OkStatus()));
  EXPECT_TRUE(Call(*breaker, absl::InternalError("one more")));
  EXPECT_TRUE(Call(*breaker, absl::OkStatus()));
  EXPECT_EQ(breaker->Snapshot().state, BreakerState::kClosed);
}

TEST_F(CircuitBreakerTest, RecoversFullyAfterTripAndProbes) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  Call(*breaker, absl::OkStatus());
  Call(*breaker, absl::OkStatus());
  ASSERT_EQ(breaker->Snapshot().state, BreakerState::kClosed);
  // The failures that tripped it are gone: two new failures do not re-trip.
  Call(*breaker, absl::InternalError("a"));
  Call(*breaker, absl::InternalError("b"));
  EXPECT_EQ(breaker->Snapshot().state, BreakerState::kClosed);
  EXPECT_EQ(breaker->Snapshot().window_calls, 2u);
}

TEST_F(CircuitBreakerTest, SnapshotReportsFailuresAndLastError) {
  auto breaker = Make(BaseOptions());
  Call(*breaker, absl::InternalError("first"));
  Call(*breaker, absl::InternalError("second"));
  BreakerSnapshot s = breaker->Snapshot();
  EXPECT_EQ(s.state, BreakerState::kClosed);
  EXPECT_EQ(s.consecutive_failures, 2u);
  EXPECT_EQ(s.window_calls, 2u);
  EXPECT_EQ(s.window_failures, 2u);
  EXPECT_EQ(s.last_error, "second");
  EXPECT_EQ(s.retry_after, absl::ZeroDuration());
}

TEST_F(CircuitBreakerTest, ForcedOpenReportsItselfAndNeverRetries) {
  auto breaker = Make(BaseOptions());
  breaker->ForceOpen("device lost");
  BreakerSnapshot s = breaker->Snapshot();
  EXPECT_EQ(s.state, BreakerState::kForcedOpen);
  EXPECT_EQ(s.retry_after, absl::InfiniteDuration());
  EXPECT_EQ(s.last_error, "device lost");
  EXPECT_STREQ(BreakerStateName(s.state), "forced_open");
  clock_.Advance(absl::Hours(24));
  EXPECT_FALSE(breaker->Admit().allowed());
}

TEST_F(CircuitBreakerTest, StickyErrorForcesOpenEvenFromAStalePermit) {
  auto breaker = Make(BaseOptions());
  CircuitBreaker::Permit early = breaker->Admit();
  Trip(*breaker);
  breaker->Record(early, StickyDeviceError("illegal memory access"));
  EXPECT_EQ(breaker->Snapshot().state, BreakerState::kForcedOpen);
  EXPECT_THAT(breaker->Snapshot().last_error, HasSubstr("illegal memory"));
}

TEST_F(CircuitBreakerTest, AdmitReportsTheStateOfItsAnswer) {
  auto breaker = Make(BaseOptions());
  Trip(*breaker);
  BreakerSnapshot at;
  CircuitBreaker::Permit permit = breaker->Admit(&at);
  EXPECT_FALSE(permit.allowed());
  EXPECT_EQ(at.state, BreakerState::kOpen);
  EXPECT_EQ(at.retry_after, absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  permit = breaker->Admit(&at);
  EXPECT_TRUE(permit.probe());
  EXPECT_EQ(at.state, BreakerState::kHalfOpen);
  EXPECT_EQ(at.probes_in_flight, 1u);
}

TEST_F(CircuitBreakerTest, ListenerSeesEveryTransition) {
  auto breaker = Make(BaseOptions());
  absl::Mutex mu;
  std::vector<std::string> seen;
  breaker->AddListener([&](const BreakerTransition& t) {
    absl::MutexLock lock(&mu);
    seen.push_back(
        absl::StrCat(BreakerStateName(t.from), "->", BreakerStateName(t.to)));
  });
  Trip(*breaker);
  clock_.Advance(absl::Seconds(1));
  Call(*breaker, absl::OkStatus());
  Call(*breaker, absl::OkStatus());
  breaker->ForceOpen("test");
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre("closed->open", "open->half_open",
                                "half_open->closed", "closed->forced_open"));
}

TEST_F(CircuitBreakerTest, ListenerMayCallBackIntoTheBreaker) {
  auto breaker = Make(BaseOptions());
  std::atomic<int> calls{0};
  CircuitBreaker* raw = breaker.get();
  breaker->AddListener([&](const BreakerTransition& t) {
    // Would deadlock if listeners ran under the breaker's lock.
    EXPECT_EQ(raw->Snapshot().state, t.to);
    calls.fetch_add(1, std::memory_order_relaxed);
  });
  Trip(*breaker);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(CircuitBreakerTest, CreateRejectsOptionsOutOfRange) {
  struct Case {
    std::string name;
    void (*mutate)(CircuitBreaker::Options&);
  };
  const std::vector<Case> cases = {
      {"window_calls", [](auto& o) { o.window_calls = 0; }},
      {"min_calls", [](auto& o) { o.min_calls = o.window_calls + 1; }},
      {"failure_rate_zero", [](auto& o) { o.failure_rate_threshold = 0; }},
      {"failure_rate_above_one",
       [](auto& o) { o.failure_rate_threshold = 1.5; }},
      {"window_duration",
       [](auto& o) { o.window_duration = absl::ZeroDuration(); }},
      {"consecutive", [](auto& o) { o.consecutive_failures_to_open = 0; }},
      {"open_initial", [](auto& o) { o.open_initial = absl::ZeroDuration(); }},
      {"open_max", [](auto& o) { o.open_max = o.open_initial / 2; }},
      {"open_backoff", [](auto& o) { o.open_backoff = 0.5; }},
      {"healthy_reset", [](auto& o) { o.healthy_reset = -absl::Seconds(1); }},
      {"half_open_probes", [](auto& o) { o.half_open_probes = 0; }},
      {"half_open_probes_many", [](auto& o) { o.half_open_probes = 1001; }},
      {"consecutive_many",
       [](auto& o) { o.consecutive_failures_to_open = 100001; }},
      {"window_duration_long",
       [](auto& o) { o.window_duration = absl::Hours(24 * 365); }},
      {"healthy_reset_infinite",
       [](auto& o) { o.healthy_reset = absl::InfiniteDuration(); }},
  };
  for (const Case& c : cases) {
    CircuitBreaker::Options options = BaseOptions();
    c.mutate(options);
    EXPECT_EQ(CircuitBreaker::Create(options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << c.name;
  }
  EXPECT_TRUE(CircuitBreaker::Create(BaseOptions()).ok());
}

TEST_F(CircuitBreakerTest, ValidateNamesTheOptionAsTheCallerSpellsIt) {
  CircuitBreaker::Options options = BaseOptions();
  options.half_open_probes = 1001;
  EXPECT_EQ(CircuitBreaker::Validate(options).message(),
            "circuit breaker option half_open_probes = 1001 is outside "
            "[1, 1000]");
  EXPECT_EQ(CircuitBreaker::Validate(options,
                                     [](absl::string_view member) {
                                       return absl::StrCat("b.", member);
                                     })
                .message(),
            "b.half_open_probes = 1001 is outside [1, 1000]");
  options = BaseOptions();
  options.min_calls = options.window_calls + 1;
  EXPECT_THAT(CircuitBreaker::Validate(options).message(),
              HasSubstr("min_calls must be <= window_calls"));
}

TEST_F(CircuitBreakerTest, ConcurrentCallsKeepTheCountsConsistent) {
  CircuitBreaker::Options options = BaseOptions();
  options.window_calls = 1000;
  options.min_calls = 1000;
  options.consecutive_failures_to_open = 100000;
  auto breaker = Make(options);
  constexpr int kThreads = 16;
  constexpr int kCallsPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        const absl::Status outcome =
            (t + i) % 4 == 0 ? absl::InternalError("x") : absl::OkStatus();
        Call(*breaker, outcome);
        breaker->Snapshot();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  BreakerSnapshot s = breaker->Snapshot();
  EXPECT_EQ(s.state, BreakerState::kClosed);
  EXPECT_EQ(s.window_calls, 800u);
  EXPECT_EQ(s.window_failures, 200u);
}

}  // namespace
}  // namespace engram::dispatch
