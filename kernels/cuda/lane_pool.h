// The host-side bookkeeping of GpuContext's lanes (one concurrent call's
// streams, staging buffers, events and cuBLAS handle, kernels/cuda/lane.h),
// kept apart from CUDA so that its failure paths are tested without a GPU
// (tests/kernels/cuda/lane_pool_test.cc).
//
// A failed call must not cost a lane for good nor leave one half-built: a
// lane whose creation fails gives its slot back, a lane that comes back
// unhealthy is destroyed and its slot freed, and staging buffers are
// replaced all together or not at all.
//
// This header needs neither CUDA nor nvcc.
#ifndef ENGRAM_KERNELS_CUDA_LANE_POOL_H_
#define ENGRAM_KERNELS_CUDA_LANE_POOL_H_

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace engram::kernels::cuda {

// At most `max_lanes` lanes of type Lane exist at once; idle ones are reused.
// Thread-safe: Acquire() and Release() may be called concurrently; Acquire()
// blocks while every lane is taken.
template <typename Lane>
class LanePool {
 public:
  explicit LanePool(int max_lanes) : max_lanes_(max_lanes) {}
  LanePool(const LanePool&) = delete;
  LanePool& operator=(const LanePool&) = delete;

  // An idle lane, or a new one from `create` (a callable returning
  // absl::StatusOr<std::unique_ptr<Lane>>, run without the lock) while fewer
  // than max_lanes exist; waits otherwise. A failed `create` frees the slot
  // it was given and returns its status.
  template <typename Create>
  absl::StatusOr<std::unique_ptr<Lane>> Acquire(Create&& create)
      ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_, absl::Condition(this, &LanePool::Available));
      if (!idle_.empty()) {
        std::unique_ptr<Lane> lane = std::move(idle_.back());
        idle_.pop_back();
        return lane;
      }
      ++lanes_;
    }
    absl::StatusOr<std::unique_ptr<Lane>> lane = create();
    if (!lane.ok() || *lane == nullptr) {
      absl::MutexLock lock(&mu_);
      --lanes_;
      return lane.ok() ? absl::InternalError("lane creation returned null")
                       : lane.status();
    }
    return lane;
  }

  // Takes back a lane from Acquire(): kept for reuse when `healthy`,
  // destroyed (outside the lock) otherwise, freeing its slot either way.
  void Release(std::unique_ptr<Lane> lane, bool healthy)
      ABSL_LOCKS_EXCLUDED(mu_) {
    if (lane == nullptr) return;
    if (!healthy) lane.reset();
    absl::MutexLock lock(&mu_);
    if (lane != nullptr) {
      idle_.push_back(std::move(lane));
    } else {
      --lanes_;
    }
  }

  // Destroys the idle lanes (the owner's destructor; no lane may be out).
  void Clear() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::unique_ptr<Lane>> idle;
    {
      absl::MutexLock lock(&mu_);
      idle.swap(idle_);
      lanes_ -= static_cast<int>(idle.size());
    }
  }

  // Lanes that exist (idle or out), and those idle.
  int lanes() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return lanes_;
  }
  int idle() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(idle_.size());
  }

 private:
  bool Available() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || lanes_ < max_lanes_;
  }

  const int max_lanes_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Lane>> idle_ ABSL_GUARDED_BY(mu_);
  int lanes_ ABSL_GUARDED_BY(mu_) = 0;  // created and not yet destroyed
};

// Replaces every buffer in `slots` with allocate() (a callable returning
// absl::StatusOr<Buffer>), or none of them: the new buffers are all made
// first, and on the first failure the old ones stay as they were, still
// valid and matching each other, and its status is returned. (Freeing the
// old buffers first and allocating in place would leave a lane with some
// buffers of the new size and some empty after a pinned out-of-memory, which
// the next call would write through.) Old buffers are released after the
// new ones are made, so for a moment both exist.
template <typename Buffer, typename Allocate>
absl::Status ReplaceAllOrNone(absl::Span<Buffer* const> slots,
                              Allocate&& allocate) {
  std::vector<Buffer> fresh;
  fresh.reserve(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    absl::StatusOr<Buffer> buffer = allocate();
    if (!buffer.ok()) return buffer.status();
    fresh.push_back(*std::move(buffer));
  }
  for (size_t i = 0; i < slots.size(); ++i) *slots[i] = std::move(fresh[i]);
  return absl::OkStatus();
}

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_LANE_POOL_H_
