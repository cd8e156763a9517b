#include "kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif

namespace engram::kernels {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = std::max(1u, std::thread::hardware_concurrency());
  }
  threads_.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::DisableDenormals() {
#if defined(__x86_64__) || defined(__i386__)
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

ScopedDenormalsDisabled::ScopedDenormalsDisabled() {
#if defined(__x86_64__) || defined(__i386__)
  saved_mode_ = _mm_getcsr();
  ThreadPool::DisableDenormals();
#endif
}

ScopedDenormalsDisabled::~ScopedDenormalsDisabled() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_setcsr(saved_mode_);
#endif
}

void ThreadPool::Schedule(absl::AnyInvocable<void()> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void ThreadPool::WorkerLoop() {
  DisableDenormals();
  while (true) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping_ and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

namespace {

// Shared by the caller and the helper tasks of one ParallelFor. Helpers may
// run after the ParallelFor has returned (they were queued behind other work);
// they then find no index left and never touch `fn`, which lives on the
// caller's stack.
struct ParallelForState {
  explicit ParallelForState(size_t n) : n(n) {}
  const size_t n;
  std::atomic<size_t> next{0};
  // Set by the first fn(i) that throws: the indices after it are counted
  // but not run, and the caller rethrows `error`.
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  size_t done ABSL_GUARDED_BY(mu) = 0;
  std::exception_ptr error ABSL_GUARDED_BY(mu);
};

void RunIndices(ParallelForState& state, absl::FunctionRef<void(size_t)> fn) {
  size_t finished = 0;
  std::exception_ptr error;
  for (size_t i = state.next.fetch_add(1, std::memory_order_relaxed);
       i < state.n; i = state.next.fetch_add(1, std::memory_order_relaxed)) {
    // An exception escaping a worker would end the process: it is carried
    // to the caller instead, as if fn had run on the caller's thread.
    if (!state.failed.load(std::memory_order_relaxed)) {
      try {
        fn(i);
      } catch (...) {
        if (!error) error = std::current_exception();
        state.failed.store(true, std::memory_order_relaxed);
      }
    }
    ++finished;
  }
  if (finished > 0) {
    absl::MutexLock lock(&state.mu);
    state.done += finished;
    if (error && !state.error) state.error = std::move(error);
  }
}

}  // namespace

void ThreadPool::ParallelFor(size_t n, absl::FunctionRef<void(size_t)> fn,
                             int max_parallel) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  size_t helpers = threads_.size();
  if (max_parallel > 0) helpers = std::min<size_t>(helpers, max_parallel - 1);
  helpers = std::min(helpers, n - 1);
  auto state = std::make_shared<ParallelForState>(n);
  for (size_t h = 0; h < helpers; ++h) {
    // `fn` is a reference into the caller's frame; the wait below keeps it
    // alive for every helper that claims an index.
    Schedule([state, fn] { RunIndices(*state, fn); });
  }
  RunIndices(*state, fn);
  std::exception_ptr error;
  {
    absl::MutexLock lock(&state->mu);
    auto all_done = [&state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
      return state->done == state->n;
    };
    state->mu.Await(absl::Condition(&all_done));
    error = state->error;
  }
  if (error) std::rethrow_exception(error);
}

void RunKernelTasks(ThreadPool* pool, size_t n,
                    absl::FunctionRef<void(size_t)> fn) {
  auto task = [fn](size_t i) {
    ScopedDenormalsDisabled flush;
    fn(i);
  };
  if (pool == nullptr || n <= 1) {
    for (size_t i = 0; i < n; ++i) task(i);
  } else {
    pool->ParallelFor(n, task);
  }
}

}  // namespace engram::kernels
