// A GpuContext call's lane and its staged copies (kernels/cuda/lane.h).
#include "kernels/cuda/lane.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane_pool.h"
#include "kernels/thread_pool.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {
namespace {

// Host copies at least this large are split over the copy pool.
constexpr size_t kParallelCopyBytes = size_t{4} << 20;
constexpr size_t kCopyPieceBytes = size_t{1} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<Lane>> CreateLane(size_t slot_bytes) {
  auto lane = std::make_unique<Lane>();
  ENGRAM_ASSIGN_OR_RETURN(lane->copy, CudaStream::Create());
  ENGRAM_ASSIGN_OR_RETURN(lane->compute, CudaStream::Create());
  for (int s = 0; s < 2; ++s) {
    ENGRAM_ASSIGN_OR_RETURN(lane->in[s], PinnedBuffer::Allocate(slot_bytes));
    ENGRAM_ASSIGN_OR_RETURN(lane->out[s], PinnedBuffer::Allocate(slot_bytes));
    ENGRAM_ASSIGN_OR_RETURN(lane->in_done[s], CudaEvent::Create());
    ENGRAM_ASSIGN_OR_RETURN(lane->tile_free[s], CudaEvent::Create());
    ENGRAM_ASSIGN_OR_RETURN(lane->out_done[s], CudaEvent::Create());
  }
  ENGRAM_ASSIGN_OR_RETURN(lane->handoff, CudaEvent::Create());
  return lane;
}

absl::Status EnsureStaging(Lane& lane, size_t bytes) {
  if (lane.slot_bytes() >= bytes) return absl::OkStatus();
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(lane.copy.get()));
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(lane.compute.get()));
  PinnedBuffer* const slots[] = {&lane.in[0], &lane.in[1], &lane.out[0],
                                 &lane.out[1]};
  return cuda::ReplaceAllOrNone<PinnedBuffer>(
      absl::MakeConstSpan(slots),
      [bytes] { return PinnedBuffer::Allocate(bytes); });
}

void CopyHost(const LaneContext& ctx, void* dst, const void* src,
              size_t bytes) {
  ThreadPool* pool = ctx.options->copy_pool;
  if (pool == nullptr || bytes < kParallelCopyBytes) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t pieces =
      std::min<size_t>((bytes + kCopyPieceBytes - 1) / kCopyPieceBytes,
                       static_cast<size_t>(pool->num_threads()) + 1);
  const size_t piece = (bytes + pieces - 1) / pieces;
  pool->ParallelFor(pieces, [&](size_t i) {
    const size_t begin = i * piece;
    if (begin >= bytes) return;
    std::memcpy(static_cast<char*>(dst) + begin,
                static_cast<const char*>(src) + begin,
                std::min(piece, bytes - begin));
  });
}

void GatherRowsHost(const LaneContext& ctx, float* dst,
                    const MatrixView& source, const uint32_t* rows,
                    size_t count) {
  const size_t d = source.cols;
  const auto gather = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      std::memcpy(dst + i * d, source.row(rows[i]), d * sizeof(float));
    }
  };
  ThreadPool* pool = ctx.options->copy_pool;
  const size_t bytes = count * d * sizeof(float);
  if (pool == nullptr || bytes < kParallelCopyBytes) {
    gather(0, count);
    return;
  }
  const size_t pieces =
      std::min<size_t>((bytes + kCopyPieceBytes - 1) / kCopyPieceBytes,
                       static_cast<size_t>(pool->num_threads()) + 1);
  const size_t per_piece = (count + pieces - 1) / pieces;
  pool->ParallelFor(pieces, [&](size_t i) {
    const size_t begin = i * per_piece;
    if (begin < count) gather(begin, std::min(count, begin + per_piece));
  });
}

absl::Status Upload(const LaneContext& ctx, Lane& lane, void* device,
                    const void* host, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  CopiesFinishFirst finish(lane);
  // The destination may have just been allocated on the compute stream.
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaEventRecord(lane.handoff.get(), lane.compute.get()));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaStreamWaitEvent(lane.copy.get(), lane.handoff.get(), 0));
  const size_t slot = lane.slot_bytes();
  int s = 0;
  for (size_t done = 0; done < bytes; done += slot, s ^= 1) {
    const size_t len = std::min(slot, bytes - done);
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.in_done[s].get()));
    CopyHost(ctx, lane.in[s].get(), static_cast<const char*>(host) + done, len);
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(static_cast<char*>(device) + done, lane.in[s].get(),
                        len, cudaMemcpyHostToDevice, lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.in_done[s].get(), lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(lane.compute.get(), lane.in_done[s].get(), 0));
  }
  return absl::OkStatus();
}

absl::Status Download(const LaneContext& ctx, Lane& lane, void* host,
                      const void* device, size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  const size_t slot = lane.slot_bytes();
  const size_t pieces = (bytes + slot - 1) / slot;
  auto consume = [&](size_t piece) -> absl::Status {
    const int s = static_cast<int>(piece % 2);
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.out_done[s].get()));
    const size_t begin = piece * slot;
    CopyHost(ctx, static_cast<char*>(host) + begin, lane.out[s].get(),
             std::min(slot, bytes - begin));
    return absl::OkStatus();
  };
  for (size_t piece = 0; piece < pieces; ++piece) {
    const int s = static_cast<int>(piece % 2);
    const size_t begin = piece * slot;
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        lane.out[s].get(), static_cast<const char*>(device) + begin,
        std::min(slot, bytes - begin), cudaMemcpyDeviceToHost,
        lane.compute.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.out_done[s].get(), lane.compute.get()));
    if (piece > 0) ENGRAM_RETURN_IF_ERROR(consume(piece - 1));
  }
  return consume(pieces - 1);
}

}  // namespace engram::kernels::cuda
