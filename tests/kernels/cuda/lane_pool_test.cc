// Tests of GpuContext's lane bookkeeping (kernels/cuda/lane_pool.h) on the
// host, with fake lanes: the failure paths a real GPU rarely takes (a lane
// that cannot be created, a lane that comes back broken, staging buffers
// that cannot all be grown) must neither leak a lane slot nor leave a lane
// half-built.
#include "kernels/cuda/lane_pool.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace engram::kernels::cuda {
namespace {

struct FakeLane {
  int id = 0;
};

absl::StatusOr<std::unique_ptr<FakeLane>> MakeLane(int id) {
  auto lane = std::make_unique<FakeLane>();
  lane->id = id;
  return lane;
}

TEST(LanePoolTest, ReusesAHealthyLane) {
  LanePool<FakeLane> pool(2);
  int made = 0;
  auto create = [&] { return MakeLane(++made); };
  auto lane = pool.Acquire(create);
  ASSERT_TRUE(lane.ok());
  pool.Release(*std::move(lane), /*healthy=*/true);
  auto again = pool.Acquire(create);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->id, 1);
  EXPECT_EQ(made, 1);
  EXPECT_EQ(pool.lanes(), 1);
  pool.Release(*std::move(again), true);
  EXPECT_EQ(pool.idle(), 1);
}

TEST(LanePoolTest, AFailedCreationGivesItsSlotBack) {
  LanePool<FakeLane> pool(1);
  auto fail = []() -> absl::StatusOr<std::unique_ptr<FakeLane>> {
    return absl::ResourceExhaustedError("cudaMallocHost: out of memory");
  };
  for (int i = 0; i < 3; ++i) {
    auto lane = pool.Acquire(fail);
    EXPECT_EQ(lane.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(pool.lanes(), 0);
  }
  // With one slot, this would wait for ever had a failure kept it.
  auto lane = pool.Acquire([] { return MakeLane(7); });
  ASSERT_TRUE(lane.ok());
  EXPECT_EQ((*lane)->id, 7);
  pool.Release(*std::move(lane), true);
}

TEST(LanePoolTest, AnUnhealthyLaneIsDestroyedAndItsSlotFreed) {
  LanePool<FakeLane> pool(1);
  int made = 0;
  auto create = [&] { return MakeLane(++made); };
  auto lane = pool.Acquire(create);
  ASSERT_TRUE(lane.ok());
  pool.Release(*std::move(lane), /*healthy=*/false);
  EXPECT_EQ(pool.lanes(), 0);
  EXPECT_EQ(pool.idle(), 0);
  auto fresh = pool.Acquire(create);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ((*fresh)->id, 2);
  pool.Release(*std::move(fresh), true);
}

TEST(LanePoolTest, AWaitingCallerGetsALaneBackAfterAFailedCall) {
  LanePool<FakeLane> pool(1);
  auto held = pool.Acquire([] { return MakeLane(1); });
  ASSERT_TRUE(held.ok());
  std::atomic<int> got{0};
  absl::Notification started;
  std::thread waiter([&] {
    started.Notify();
    auto lane = pool.Acquire([] { return MakeLane(2); });
    if (lane.ok()) {
      got = (*lane)->id;
      pool.Release(*std::move(lane), true);
    }
  });
  started.WaitForNotification();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(got.load(), 0);  // still waiting: the only lane is out
  // The call on the held lane failed (say, out of memory) but the lane is
  // intact: it goes back and the waiter takes it.
  pool.Release(*std::move(held), /*healthy=*/true);
  waiter.join();
  EXPECT_EQ(got.load(), 1);
  EXPECT_EQ(pool.lanes(), 1);
}

TEST(LanePoolTest, NeverMoreLanesThanTheMaximum) {
  LanePool<FakeLane> pool(2);
  std::atomic<int> out{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto lane = pool.Acquire([&] { return MakeLane(t); });
        ASSERT_TRUE(lane.ok());
        const int now = ++out;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        --out;
        // Every fifth call "fails" and its lane is thrown away.
        pool.Release(*std::move(lane), i % 5 != 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), 2);
  EXPECT_LE(pool.lanes(), 2);
  pool.Clear();
  EXPECT_EQ(pool.lanes(), 0);
}

// A move-only stand-in for a pinned buffer.
struct FakeBuffer {
  size_t bytes = 0;
};

TEST(ReplaceAllOrNoneTest, ReplacesEveryBuffer) {
  FakeBuffer a{8}, b{8}, c{8}, d{8};
  FakeBuffer* const slots[] = {&a, &b, &c, &d};
  const absl::Status status = ReplaceAllOrNone<FakeBuffer>(
      absl::MakeConstSpan(slots),
      []() -> absl::StatusOr<FakeBuffer> { return FakeBuffer{64}; });
  ASSERT_TRUE(status.ok());
  for (FakeBuffer* slot : slots) EXPECT_EQ(slot->bytes, 64u);
}

TEST(ReplaceAllOrNoneTest, AFailureLeavesEveryOldBufferInPlace) {
  for (int fail_at = 0; fail_at < 4; ++fail_at) {
    SCOPED_TRACE(fail_at);
    FakeBuffer a{8}, b{8}, c{8}, d{8};
    FakeBuffer* const slots[] = {&a, &b, &c, &d};
    int calls = 0;
    const absl::Status status = ReplaceAllOrNone<FakeBuffer>(
        absl::MakeConstSpan(slots), [&]() -> absl::StatusOr<FakeBuffer> {
          if (calls++ == fail_at) {
            return absl::ResourceExhaustedError("cudaMallocHost");
          }
          return FakeBuffer{64};
        });
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
    // The lane keeps four matching buffers of the old size, never a mix of
    // new, old and empty ones.
    for (FakeBuffer* slot : slots) EXPECT_EQ(slot->bytes, 8u);
  }
}

}  // namespace
}  // namespace engram::kernels::cuda
