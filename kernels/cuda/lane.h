// Internal to kernels/cuda: a lane, the CUDA resources one GpuContext call
// works with (streams, pinned staging buffers, events, a cuBLAS handle),
// and the staged copies every pipeline makes through it. GpuContext lends
// lanes out through lane_pool.h; the pipelines that run on one are
// cosine_pipeline.h, spread_pipeline.h and resident_matrices.h.
//
// Not thread-safe: a lane serves one call at a time.
#ifndef ENGRAM_KERNELS_CUDA_LANE_H_
#define ENGRAM_KERNELS_CUDA_LANE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/gpu_device.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

// What a call on a lane uses of its GpuContext besides the lane. Set when the
// context is created and shared, unchanged, by every call.
struct LaneContext {
  const GpuContext::Options* options = nullptr;
  cudaMemPool_t pool = nullptr;    // device allocations, in stream order
  const Cublas* cublas = nullptr;  // null: cuBLAS did not load
};

// One concurrent call's CUDA resources, reused by later calls.
struct Lane {
  CudaStream copy;         // host-to-device copies
  CudaStream compute;      // kernels, then device-to-host copies
  PinnedBuffer in[2];      // staging for host-to-device copies
  PinnedBuffer out[2];     // staging for device-to-host copies
  CudaEvent in_done[2];    // the copy out of in[s] has finished
  CudaEvent tile_free[2];  // device tile s may be overwritten
  CudaEvent out_done[2];   // the copy into out[s] has finished
  CudaEvent handoff;       // orders the copy stream after compute
  const Cublas* cublas_library = nullptr;
  cublasHandle_t cublas = nullptr;  // on `compute`; created when first used

  Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane() {
    if (cublas != nullptr) cublas_library->DestroyHandle(cublas);
  }
  size_t slot_bytes() const { return in[0].bytes(); }
};

// A lane whose staging buffers hold `slot_bytes` each.
absl::StatusOr<std::unique_ptr<Lane>> CreateLane(size_t slot_bytes);

// Blocks until the lane's copy stream is idle when it goes out of scope.
// Declared after a call's device arrays, it is destroyed before them, so no
// copy can still be writing an array when it is freed, whichever way the call
// ends.
class CopiesFinishFirst {
 public:
  explicit CopiesFinishFirst(const Lane& lane) : stream_(lane.copy.get()) {}
  CopiesFinishFirst(const CopiesFinishFirst&) = delete;
  CopiesFinishFirst& operator=(const CopiesFinishFirst&) = delete;
  // A sticky error here reappears at the lane's release; a non-sticky one is
  // cleared from the thread's last-error slot (cuda_check.h).
  ~CopiesFinishFirst() { DiscardCudaError(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_;
};

// Grows the lane's staging buffers to at least `bytes` each: all four or,
// when pinned memory runs out, none, so that the lane stays usable at its
// old size (slot_bytes() reads in[0] and stands for all four).
absl::Status EnsureStaging(Lane& lane, size_t bytes);

// Host-to-host copy, split over the copy pool when large.
void CopyHost(const LaneContext& ctx, void* dst, const void* src, size_t bytes);

// Host-to-host gather: rows rows[0, count) of `source` (d floats each),
// one after another at `dst`, split over the copy pool when large.
void GatherRowsHost(const LaneContext& ctx, float* dst,
                    const MatrixView& source, const uint32_t* rows,
                    size_t count);

// Copies host memory to `device` through the staging buffers on the copy
// stream, the host filling one buffer while the other is in flight;
// compute work enqueued afterwards sees the data. Returns when the copies
// have finished.
absl::Status Upload(const LaneContext& ctx, Lane& lane, void* device,
                    const void* host, size_t bytes);

// Copies `bytes` at `device` to host memory after the compute stream's
// work, through the staging buffers: the host empties one while the other
// fills.
absl::Status Download(const LaneContext& ctx, Lane& lane, void* host,
                      const void* device, size_t bytes);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_LANE_H_
