// Owners for the CUDA resources of the backend: stream-ordered device
// allocations, pinned host buffers, streams and events. Each releases its
// resource when destroyed; releasing cannot report an error (a destructor has
// no status to return): a sticky error it meets reappears at the next checked
// call, and a non-sticky one is cleared from the thread's last-error slot
// (DiscardCudaError) so that no later launch check reports it.
//
// This header needs the CUDA headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_DEVICE_MEMORY_H_
#define ENGRAM_KERNELS_CUDA_DEVICE_MEMORY_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_check.h"

namespace engram::kernels::cuda {

// A memory pool on `device` that keeps what it allocates (release threshold
// at the maximum), so that after warm-up a request's allocations are served
// from the pool without reaching the driver. max_bytes > 0 caps the pool:
// allocations past it fail with cudaErrorMemoryAllocation, a non-sticky
// error after which the pool and the stream stay usable.
absl::StatusOr<cudaMemPool_t> CreateMemoryPool(int device, uint64_t max_bytes);

// `count` elements of T from `pool`, allocated in stream order on `stream`
// and freed on it when destroyed, so the memory lives until the work queued
// on that stream before the free has run. Work on other streams that uses
// the array must be ordered before the free (an event the stream waits on).
// Move-only.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  // An empty array for count == 0; device OOM is a kOutOfMemory error.
  static absl::StatusOr<DeviceArray> Allocate(size_t count, cudaMemPool_t pool,
                                              cudaStream_t stream) {
    DeviceArray array;
    if (count == 0) return array;
    void* ptr = nullptr;
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMallocFromPoolAsync(&ptr, count * sizeof(T), pool, stream));
    array.ptr_ = static_cast<T*>(ptr);
    array.count_ = count;
    array.stream_ = stream;
    return array;
  }
  DeviceArray(DeviceArray&& other) noexcept { *this = std::move(other); }
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      count_ = std::exchange(other.count_, 0);
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { Reset(); }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  // Frees on `stream` instead of the allocation stream, for an array that
  // outlives the stream it was allocated on (a resident matrix outlives the
  // lane that uploaded it). The caller orders every use before the free.
  void FreeOn(cudaStream_t stream) { stream_ = stream; }

  void Reset() {
    if (ptr_ != nullptr) DiscardCudaError(cudaFreeAsync(ptr_, stream_));
    ptr_ = nullptr;
    count_ = 0;
  }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
  cudaStream_t stream_ = nullptr;
};

// Page-locked host memory, so copies to and from the device run
// asynchronously at the bus's full speed. Move-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // Pinned memory that cannot be had is a kOutOfMemory error.
  static absl::StatusOr<PinnedBuffer> Allocate(size_t bytes);
  PinnedBuffer(PinnedBuffer&& other) noexcept { *this = std::move(other); }
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer();

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream (it does not synchronise with the legacy default
// stream). Move-only.
class CudaStream {
 public:
  CudaStream() = default;
  static absl::StatusOr<CudaStream> Create();
  CudaStream(CudaStream&& other) noexcept { *this = std::move(other); }
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream();

  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// An event without timing, for ordering streams and the host. Move-only.
class CudaEvent {
 public:
  CudaEvent() = default;
  static absl::StatusOr<CudaEvent> Create();
  CudaEvent(CudaEvent&& other) noexcept { *this = std::move(other); }
  CudaEvent& operator=(CudaEvent&& other) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent();

  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_DEVICE_MEMORY_H_
