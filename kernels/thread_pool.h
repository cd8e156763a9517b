// A fixed-size pool of worker threads for CPU compute.
//
// One pool serves both levels of parallelism in the service: whole requests are
// Schedule()d onto it (so gRPC's threads only parse and respond), and kernels
// split their work with ParallelFor(). ParallelFor lets the calling thread take
// part, so a task running on the pool may call it without deadlocking even
// when every other worker is busy.
//
// Worker threads run with flush-to-zero and denormals-are-zero set, because a
// denormal operand slows a SIMD multiply-add by two orders of magnitude and
// cosine scores never need them.
//
// Thread-safety: every method may be called from any thread, including from
// tasks running on the pool. The destructor runs queued tasks to completion
// and joins; no task may be scheduled after destruction has begun.
#ifndef ENGRAM_KERNELS_THREAD_POOL_H_
#define ENGRAM_KERNELS_THREAD_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace engram::kernels {

class ThreadPool {
 public:
  // num_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int num_threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  // Queues `task` to run on a worker thread.
  void Schedule(absl::AnyInvocable<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs fn(i) for every i in [0, n), spread over the workers and the calling
  // thread, and returns when all calls have returned. At most `max_parallel`
  // threads (0: all workers plus the caller) work on it at once. When an
  // fn(i) throws, the calls not yet started are skipped and the first
  // exception is rethrown here, on the calling thread.
  void ParallelFor(size_t n, absl::FunctionRef<void(size_t)> fn,
                   int max_parallel = 0);

  int num_threads() const { return static_cast<int>(threads_.size()); }

  // Sets flush-to-zero and denormals-are-zero on the calling thread (x86).
  static void DisableDenormals();

 private:
  void WorkerLoop();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Sets flush-to-zero and denormals-are-zero on the calling thread for its
// lifetime and restores the previous modes when it ends, so that kernel code
// computes the same on any thread, a caller taking part in ParallelFor
// included. Cheap (two control-register writes); a no-op off x86.
class ScopedDenormalsDisabled {
 public:
  ScopedDenormalsDisabled();
  ScopedDenormalsDisabled(const ScopedDenormalsDisabled&) = delete;
  ScopedDenormalsDisabled& operator=(const ScopedDenormalsDisabled&) = delete;
  ~ScopedDenormalsDisabled();

 private:
  unsigned int saved_mode_ = 0;
};

// fn(i) for every i in [0, n): on `pool` (the caller takes part) or, with no
// pool or a single task, inline; every call with denormals flushed
// (ScopedDenormalsDisabled), so that a kernel's result does not depend on
// the thread a task lands on. How the kernels run their tasks.
void RunKernelTasks(ThreadPool* pool, size_t n,
                    absl::FunctionRef<void(size_t)> fn);

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_THREAD_POOL_H_
