#include "kernels/cuda/device_memory.h"

#include <cstdint>
#include <limits>
#include <utility>

namespace engram::kernels::cuda {

absl::StatusOr<cudaMemPool_t> CreateMemoryPool(int device, uint64_t max_bytes) {
  cudaMemPoolProps props = {};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  props.maxSize = static_cast<size_t>(max_bytes);
  cudaMemPool_t pool = nullptr;
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemPoolCreate(&pool, &props));
  uint64_t keep = std::numeric_limits<uint64_t>::max();
  const cudaError_t error =
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  if (error != cudaSuccess) {
    DiscardCudaError(cudaMemPoolDestroy(pool));
    ENGRAM_CUDA_RETURN_IF_ERROR(error);
  }
  return pool;
}

absl::StatusOr<PinnedBuffer> PinnedBuffer::Allocate(size_t bytes) {
  PinnedBuffer buffer;
  if (bytes == 0) return buffer;
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaMallocHost(&buffer.ptr_, bytes));
  buffer.bytes_ = bytes;
  return buffer;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) DiscardCudaError(cudaFreeHost(ptr_));
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ != nullptr) DiscardCudaError(cudaFreeHost(ptr_));
}

absl::StatusOr<CudaStream> CudaStream::Create() {
  CudaStream stream;
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&stream.stream_, cudaStreamNonBlocking));
  return stream;
}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) DiscardCudaError(cudaStreamDestroy(stream_));
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

CudaStream::~CudaStream() {
  if (stream_ != nullptr) DiscardCudaError(cudaStreamDestroy(stream_));
}

absl::StatusOr<CudaEvent> CudaEvent::Create() {
  CudaEvent event;
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&event.event_, cudaEventDisableTiming));
  return event;
}

CudaEvent& CudaEvent::operator=(CudaEvent&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) DiscardCudaError(cudaEventDestroy(event_));
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

CudaEvent::~CudaEvent() {
  if (event_ != nullptr) DiscardCudaError(cudaEventDestroy(event_));
}

}  // namespace engram::kernels::cuda
