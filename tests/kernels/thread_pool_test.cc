#include "kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/time_scale.h"

namespace engram::kernels {
namespace {

using ::engram::testing::Scaled;

// A deadlock would hang the whole test binary; this turns it into a failure
// with a message instead.
void RunWithDeadline(absl::Duration deadline, std::function<void()> body) {
  absl::Notification done;
  std::thread runner([&] {
    body();
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(deadline)) {
    std::fprintf(stderr, "deadline of %s exceeded: deadlock\n",
                 absl::FormatDuration(deadline).c_str());
    std::abort();
  }
  runner.join();
}

TEST(ThreadPoolTest, ParallelForCoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (size_t n : {size_t{1}, size_t{2}, size_t{7}, size_t{1000}}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(hits[i].load(), 1)
            << "index " << i << " of " << n << ", " << threads << " threads";
      }
    }
  }
}

// A throwing call on a worker would end the process; the caller gets the
// exception instead (how many other calls ran first depends on timing), and
// the pool keeps working.
TEST(ThreadPoolTest, AnExceptionInAnyCallReachesTheCallerAndThePoolLives) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    std::atomic<int> ran{0};
    RunWithDeadline(Scaled(absl::Seconds(30)), [&] {
      EXPECT_THROW(pool.ParallelFor(1000,
                                    [&](size_t i) {
                                      ran.fetch_add(1);
                                      if (i % 97 == 13) throw std::bad_alloc();
                                    }),
                   std::bad_alloc);
    });
    EXPECT_GE(ran.load(), 1) << threads << " threads";
    EXPECT_THROW(RunKernelTasks(&pool, 8,
                                [](size_t i) {
                                  if (i == 7) throw std::runtime_error("x");
                                }),
                 std::runtime_error);
    std::vector<std::atomic<int>> hits(100);
    pool.ParallelFor(100, [&](size_t i) { hits[i].fetch_add(1); });
    for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i].load(), 1) << i;
  }
}

TEST(ThreadPoolTest, ParallelForWithZeroItemsCallsNothing) {
  ThreadPool pool(2);
  int calls = 0;
  pool.ParallelFor(0, [&](size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPoolTest, ParallelForUsesWorkersAndCaller) {
  ThreadPool pool(2);
  // Each index blocks until three threads are inside at once: only the two
  // workers plus the calling thread can get there.
  absl::Barrier all_in(3);
  std::atomic<int> entered{0};
  RunWithDeadline(Scaled(absl::Seconds(20)), [&] {
    pool.ParallelFor(3, [&](size_t) {
      entered.fetch_add(1);
      all_in.Block();
    });
  });
  EXPECT_EQ(entered.load(), 3);
}

TEST(ThreadPoolTest, ParallelForRespectsMaxParallel) {
  ThreadPool pool(4);
  std::atomic<int> active{0};
  std::atomic<int> peak{0};
  pool.ParallelFor(
      64,
      [&](size_t) {
        const int now = active.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        active.fetch_sub(1);
      },
      /*max_parallel=*/2);
  EXPECT_LE(peak.load(), 2);
  EXPECT_GE(peak.load(), 1);
}

TEST(ThreadPoolTest, NestedParallelForInsidePoolTasksDoesNotDeadlock) {
  ThreadPool pool(2);
  constexpr size_t kOuter = 8;
  constexpr size_t kInner = 16;
  std::vector<std::atomic<int>> hits(kOuter * kInner);
  RunWithDeadline(Scaled(absl::Seconds(20)), [&] {
    // Every worker ends up inside an outer task calling ParallelFor, so the
    // inner loops can only finish if their callers take part.
    pool.ParallelFor(kOuter, [&](size_t i) {
      pool.ParallelFor(kInner,
                       [&](size_t j) { hits[i * kInner + j].fetch_add(1); });
    });
  });
  for (size_t i = 0; i < hits.size(); ++i) {
    EXPECT_EQ(hits[i].load(), 1) << "index " << i;
  }
}

TEST(ThreadPoolTest, ParallelForFromScheduledTasksDoesNotDeadlock) {
  ThreadPool pool(2);
  constexpr int kTasks = 6;
  std::atomic<int> total{0};
  absl::BlockingCounter finished(kTasks);
  RunWithDeadline(Scaled(absl::Seconds(20)), [&] {
    for (int t = 0; t < kTasks; ++t) {
      pool.Schedule([&] {
        pool.ParallelFor(10, [&](size_t) { total.fetch_add(1); });
        finished.DecrementCount();
      });
    }
    finished.Wait();
  });
  EXPECT_EQ(total.load(), kTasks * 10);
}

TEST(ThreadPoolTest, ScheduleRunsTasksOnWorkerThreads) {
  ThreadPool pool(2);
  constexpr int kTasks = 50;
  std::atomic<int> ran{0};
  std::atomic<int> on_caller{0};
  const std::thread::id caller = std::this_thread::get_id();
  absl::BlockingCounter finished(kTasks);
  for (int t = 0; t < kTasks; ++t) {
    pool.Schedule([&] {
      ran.fetch_add(1);
      if (std::this_thread::get_id() == caller) on_caller.fetch_add(1);
      finished.DecrementCount();
    });
  }
  finished.Wait();
  EXPECT_EQ(ran.load(), kTasks);
  EXPECT_EQ(on_caller.load(), 0);
}

TEST(ThreadPoolTest, DestructorRunsQueuedTasksBeforeJoining) {
  constexpr int kTasks = 40;
  std::atomic<int> ran{0};
  {
    ThreadPool pool(2);
    for (int t = 0; t < kTasks; ++t) {
      pool.Schedule([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ran.fetch_add(1);
      });
    }
    // Most tasks are still queued here; destruction must not drop them.
  }
  EXPECT_EQ(ran.load(), kTasks);
}

TEST(ThreadPoolTest, NonPositiveSizeMeansOneThreadPerHardwareThread) {
  ThreadPool pool(0);
  const int expected =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(pool.num_threads(), expected);
}

}  // namespace
}  // namespace engram::kernels
