#include "core/dispatch/memory_ledger.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kTotal = 1000;

// A probe answering `free` of kTotal bytes.
MemoryPressureMonitor::Probe FixedProbe(uint64_t free) {
  return [free]() -> absl::StatusOr<DeviceMemoryInfo> {
    return DeviceMemoryInfo{free, kTotal};
  };
}

std::unique_ptr<DeviceMemoryLedger> MakeLedger(
    absl::Duration max_wait = absl::Milliseconds(10), double margin = 0.5) {
  DeviceMemoryLedger::Options options;
  options.max_wait = max_wait;
  options.safety_margin = margin;
  auto ledger = DeviceMemoryLedger::Create(options);
  EXPECT_TRUE(ledger.ok()) << ledger.status();
  return *std::move(ledger);
}

TEST(DeviceMemoryLedgerTest, CreateRejectsOptionsOutOfRange) {
  DeviceMemoryLedger::Options options;
  EXPECT_TRUE(DeviceMemoryLedger::Create(options).ok());
  options.max_wait = absl::Seconds(2);
  EXPECT_THAT(DeviceMemoryLedger::Create(options).status().message(),
              HasSubstr("max_wait"));
  options.max_wait = -absl::Milliseconds(1);
  EXPECT_FALSE(DeviceMemoryLedger::Create(options).ok());
  options = {};
  options.safety_margin = 0;
  EXPECT_THAT(DeviceMemoryLedger::Create(options).status().message(),
              HasSubstr("safety_margin"));
}

TEST(DeviceMemoryLedgerTest, BeforeAnyReadingReservationsAreGrantedAndCounted) {
  auto ledger = MakeLedger();
  auto r = ledger->Reserve(10, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bytes(), 5000u);
  EXPECT_EQ(ledger->stats().reserved_bytes, 5000u);
  EXPECT_FALSE(ledger->stats().has_reading);
}

TEST(DeviceMemoryLedgerTest, GrantsWhatIsLeftDownToTheMinimum) {
  auto ledger = MakeLedger();
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());  // capacity 400
  EXPECT_EQ(ledger->stats().capacity_bytes, 400u);
  auto a = ledger->Reserve(100, 300);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->bytes(), 300u);
  auto b = ledger->Reserve(50, 300);  // 100 left
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes(), 100u);
  const DeviceMemoryLedger::Stats s = ledger->stats();
  EXPECT_EQ(s.reserved_bytes, 400u);
  EXPECT_EQ(s.reservations, 2u);
  EXPECT_EQ(s.granted, 2u);
  EXPECT_EQ(s.shrunk, 1u);
}

TEST(DeviceMemoryLedgerTest,
     ARequestThatDoesNotFitWaitsThenIsRefusedNamingBytes) {
  auto ledger = MakeLedger(absl::Milliseconds(20));
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());  // capacity 400
  auto held = ledger->Reserve(350, 350);
  ASSERT_TRUE(held.ok());
  const absl::Time start = absl::Now();
  auto refused = ledger->Reserve(100, 100);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("needs 100 bytes"), HasSubstr("50 of 400")));
  EXPECT_EQ(ledger->stats().waits, 1u);
  EXPECT_EQ(ledger->stats().refusals, 1u);
  EXPECT_EQ(ledger->stats().reserved_bytes, 350u);
}

TEST(DeviceMemoryLedgerTest, AWaitingRequestGetsTheBytesAReleaseFrees) {
  auto ledger = MakeLedger(absl::Seconds(1));
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());
  auto held = ledger->Reserve(350, 350);
  ASSERT_TRUE(held.ok());
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(20));
    held->Release();
  });
  auto waited = ledger->Reserve(200, 200);
  releaser.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->bytes(), 200u);
  EXPECT_EQ(ledger->stats().waits, 1u);
  EXPECT_EQ(ledger->stats().refusals, 0u);
}

TEST(DeviceMemoryLedgerTest, ARequestLargerThanTheCapacityIsRefusedAtOnce) {
  auto ledger = MakeLedger(absl::Seconds(1));
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());
  const absl::Time start = absl::Now();
  auto refused = ledger->Reserve(401, 401);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("never fit"));
}

TEST(DeviceMemoryLedgerTest, ReleaseShrinkAndDestructionGiveBytesBack) {
  auto ledger = MakeLedger();
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());
  {
    auto r = ledger->Reserve(300, 300);
    ASSERT_TRUE(r.ok());
    r->ShrinkTo(120);
    EXPECT_EQ(r->bytes(), 120u);
    EXPECT_EQ(ledger->stats().reserved_bytes, 120u);
    DeviceMemoryLedger::Reservation moved = *std::move(r);
    EXPECT_FALSE(r->held());
    EXPECT_EQ(ledger->stats().reserved_bytes, 120u);
  }
  EXPECT_EQ(ledger->stats().reserved_bytes, 0u);
  EXPECT_EQ(ledger->stats().reservations, 0u);
}

TEST(DeviceMemoryLedgerTest, BytesOnTheDeviceDuringAReadingAreNotCountedTwice) {
  auto ledger = MakeLedger(absl::ZeroDuration(), 0.5);
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());  // quiet: 500
  EXPECT_EQ(ledger->stats().quiet_capacity_bytes, 500u);
  auto running = ledger->Reserve(200, 200);
  ASSERT_TRUE(running.ok());
  {
    const auto on_device = running->Launch(200);
    // The device now shows the 200 bytes as used.
    ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());
  }
  // (800 + the 200 the reading already counted) * 0.5: the running request
  // is subtracted once, by the ledger, not a second time through `free`.
  EXPECT_EQ(ledger->stats().capacity_bytes, 500u);
  auto next = ledger->Reserve(300, 300);
  EXPECT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->bytes(), 300u);
}

TEST(DeviceMemoryLedgerTest, AReservationNotYetLaunchedIsNotAddedBack) {
  auto ledger = MakeLedger(absl::ZeroDuration(), 0.5);
  auto reserved = ledger->Reserve(200, 200);
  ASSERT_TRUE(reserved.ok());
  // The reading cannot show it: nothing is added back, and it is subtracted.
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());
  EXPECT_EQ(ledger->stats().capacity_bytes, 500u);
  EXPECT_FALSE(ledger->Reserve(301, 301).ok());
}

TEST(DeviceMemoryLedgerTest, OtherTenantsMemoryLowersTheCapacityAtOnce) {
  auto ledger = MakeLedger(absl::ZeroDuration(), 0.5);
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());
  auto running = ledger->Reserve(200, 200);
  ASSERT_TRUE(running.ok());
  const auto on_device = running->Launch(200);
  // Another process took 400 bytes besides our 200.
  ASSERT_TRUE(ledger->Observe(FixedProbe(400)).ok());
  EXPECT_EQ(ledger->stats().capacity_bytes, 300u);  // (400 + 200) * 0.5
}

// Calls marked on the device that have not allocated yet (or never will:
// they fail) make a reading over-state what is free; the last quiet reading
// caps the damage.
TEST(DeviceMemoryLedgerTest, ReadingsInTheLaunchGapAreCappedByTheQuietReading) {
  auto ledger = MakeLedger(absl::ZeroDuration(), 0.5);
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());  // quiet: 500
  std::vector<DeviceMemoryLedger::Reservation> held;
  std::vector<DeviceMemoryLedger::Reservation::OnDevice> launched;
  for (int i = 0; i < 5; ++i) {
    auto r = ledger->Reserve(100, 100);
    ASSERT_TRUE(r.ok());
    held.push_back(*std::move(r));
  }
  for (const auto& r : held) launched.push_back(r.Launch(100));
  // The device has not allocated any of it yet.
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());
  EXPECT_EQ(ledger->stats().capacity_bytes, 500u);  // not (1000 + 500) / 2
  EXPECT_FALSE(ledger->Reserve(1, 1).ok());
  launched.clear();
  held.clear();
  // Before any quiet reading the estimate stands alone.
  auto fresh = MakeLedger(absl::ZeroDuration(), 0.5);
  auto r = fresh->Reserve(100, 100);
  ASSERT_TRUE(r.ok());
  const auto on_device = r->Launch(100);
  ASSERT_TRUE(fresh->Observe(FixedProbe(1000)).ok());
  EXPECT_EQ(fresh->stats().capacity_bytes, 550u);
  EXPECT_EQ(fresh->stats().quiet_capacity_bytes, 0u);
}

TEST(DeviceMemoryLedgerTest, ALaunchDuringTheReadingIsNotAddedBack) {
  auto ledger = MakeLedger(absl::ZeroDuration(), 0.5);
  auto r = ledger->Reserve(200, 200);
  ASSERT_TRUE(r.ok());
  std::optional<DeviceMemoryLedger::Reservation::OnDevice> on_device;
  ASSERT_TRUE(ledger
                  ->Observe([&]() -> absl::StatusOr<DeviceMemoryInfo> {
                    // Launched while the probe runs: the reading may or may
                    // not show it.
                    on_device.emplace(r->Launch(200));
                    return DeviceMemoryInfo{1000, kTotal};
                  })
                  .ok());
  EXPECT_EQ(ledger->stats().capacity_bytes, 500u);
}

TEST(DeviceMemoryLedgerTest, AFailedOrImplausibleReadingChangesNothing) {
  auto ledger = MakeLedger();
  ASSERT_TRUE(ledger->Observe(FixedProbe(800)).ok());
  EXPECT_FALSE(ledger
                   ->Observe([]() -> absl::StatusOr<DeviceMemoryInfo> {
                     return absl::UnavailableError("probe down");
                   })
                   .ok());
  ASSERT_TRUE(ledger
                  ->Observe([]() -> absl::StatusOr<DeviceMemoryInfo> {
                    return DeviceMemoryInfo{5000, kTotal};
                  })
                  .ok());
  EXPECT_EQ(ledger->stats().capacity_bytes, 400u);
}

// Many threads reserve, hold and release at random; after every grant the
// ledger's reserved bytes are within its capacity.
TEST(DeviceMemoryLedgerTest, ConcurrentReservationsNeverExceedTheBudget) {
  auto ledger = MakeLedger(absl::Milliseconds(2), 0.5);
  ASSERT_TRUE(ledger->Observe(FixedProbe(1000)).ok());  // capacity 500
  constexpr int kThreads = 16;
  constexpr int kRounds = 300;
  std::atomic<int> over{0};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::uniform_int_distribution<uint64_t> size(1, 200);
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t want = size(rng);
        auto r = ledger->Reserve(want / 2, want);
        if (!r.ok()) continue;
        granted.fetch_add(1);
        const DeviceMemoryLedger::Stats s = ledger->stats();
        if (s.reserved_bytes > s.capacity_bytes) over.fetch_add(1);
        if (i % 3 == 0) r->ShrinkTo(r->bytes() / 2);
        if (i % 7 == 0) std::this_thread::yield();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(over.load(), 0);
  EXPECT_GT(granted.load(), 0);
  const DeviceMemoryLedger::Stats s = ledger->stats();
  EXPECT_LE(s.peak_reserved_bytes, 500u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.reservations, 0u);
}

}  // namespace
}  // namespace engram::dispatch
