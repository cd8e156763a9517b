// The CUDA build's GpuContext (kernels/gpu_device.h): lanes of streams and
// pinned staging buffers, the tiled copy/compute pipeline, and the drivers of
// the cosine and spreading kernels.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cuda/cosine_device.h"
#include "kernels/cuda/cosine_kernels.h"
#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane_pool.h"
#include "kernels/cuda/spread_device.h"
#include "kernels/cuda/spread_kernels.h"
#include "kernels/cuda/topk_kernels.h"
#include "kernels/gpu_device.h"
#include "kernels/query_preparation.h"
#include "kernels/row_checks.h"
#include "kernels/spread_shape.h"
#include "kernels/thread_pool.h"

namespace engram::kernels {
namespace {

using cuda::CudaEvent;
using cuda::CudaStream;
using cuda::DeviceArray;
using cuda::PinnedBuffer;

constexpr size_t kMinStagingBytes = size_t{64} << 10;
// Host copies at least this large are split over the copy pool.
constexpr size_t kParallelCopyBytes = size_t{4} << 20;
constexpr size_t kCopyPieceBytes = size_t{1} << 20;
constexpr unsigned long long kNoBadRow = ~0ull;

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
  const cuda::Cublas* cublas_library = nullptr;
  cublasHandle_t cublas = nullptr;  // on `compute`; created when first used

  Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane() {
    if (cublas != nullptr) cublas_library->DestroyHandle(cublas);
  }
  size_t slot_bytes() const { return in[0].bytes(); }
};

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

// A target matrix kept on the device (GpuContext::UploadResident): the rows,
// each row's inverse norm and the list of rows to rescore in float64, found
// once at upload by the norm pass the many-query path runs on staged tiles.
// Shared by the context's table and the calls reading it; the last holder
// frees it, on the context's resident stream (a call lets go only after its
// lane's streams are idle, so no kernel still reads it).
struct ResidentMatrix {
  DeviceArray<float> values;     // rows x cols
  DeviceArray<double> inv_norm;  // rows
  DeviceArray<uint32_t> tiny;    // [0]: count; then up to `rows` indices
  size_t rows = 0;
  size_t cols = 0;

  uint64_t bytes() const {
    return values.bytes() + inv_norm.bytes() + tiny.bytes();
  }
  cuda::ResidentRows view() const {
    cuda::ResidentRows r;
    r.values = values.get();
    r.inv_norm = inv_norm.get();
    r.tiny.tiny_count = tiny.get();
    r.tiny.tiny_rows = tiny.get() + 1;
    r.rows = static_cast<uint32_t>(rows);
    return r;
  }
};

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
  ~CopiesFinishFirst() {
    cuda::DiscardCudaError(cudaStreamSynchronize(stream_));
  }

 private:
  cudaStream_t stream_;
};

// The shared checks plus the device kernels' 32-bit dimensions.
absl::Status CheckShapes(const MatrixView& queries, const MatrixView& targets) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  if (queries.rows > std::numeric_limits<uint32_t>::max() ||
      targets.cols > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("matrix dimensions do not fit 32 bits");
  }
  return absl::OkStatus();
}

// Orders device top-k keys best first (a larger key is better) and decodes
// them, indices offset by `index_offset`.
TopKList DecodeList(unsigned long long* keys, uint32_t count,
                    uint32_t index_offset) {
  std::sort(keys, keys + count, std::greater<unsigned long long>());
  TopKList list;
  list.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    ScoredIndex entry = cuda::DecodeTopKKey(keys[i]);
    entry.index += index_offset;
    list.push_back(entry);
  }
  return list;
}

}  // namespace

struct GpuContext::Impl {
  Options options;
  GpuDeviceInfo device;
  cudaMemPool_t pool = nullptr;
  std::unique_ptr<cuda::Cublas> cublas;
  std::string cublas_status;

  std::unique_ptr<cuda::LanePool<Lane>> lanes;

  absl::Mutex mu;
  absl::Status sticky ABSL_GUARDED_BY(mu);
  // Set once `sticky` is; lets calls fail fast without the lock.
  std::atomic<bool> has_sticky{false};

  // Resident matrices; freed on `resident_stream`, which outlives every
  // lane (a lane can be destroyed while a matrix it uploaded lives on).
  CudaStream resident_stream;
  mutable absl::Mutex resident_mu;
  std::unordered_map<uint64_t, std::shared_ptr<const ResidentMatrix>> resident
      ABSL_GUARDED_BY(resident_mu);
  uint64_t resident_bytes ABSL_GUARDED_BY(resident_mu) = 0;
  // Statistics only: relaxed.
  std::atomic<uint64_t> resident_hits{0};

  ~Impl() {
    cuda::DiscardCudaError(cudaSetDevice(options.device_ordinal));
    if (lanes != nullptr) lanes->Clear();
    {
      absl::MutexLock lock(&resident_mu);
      resident.clear();  // frees enqueued on resident_stream
    }
    if (resident_stream.get() != nullptr) {
      cuda::DiscardCudaError(cudaStreamSynchronize(resident_stream.get()));
    }
    if (pool != nullptr) cuda::DiscardCudaError(cudaMemPoolDestroy(pool));
  }

  // The resident matrix under `key` when it has the targets' shape, else
  // null (the call then copies its targets in).
  std::shared_ptr<const ResidentMatrix> FindResident(
      uint64_t key, const MatrixView& targets) const {
    if (key == 0) return nullptr;
    absl::MutexLock lock(&resident_mu);
    const auto it = resident.find(key);
    if (it == resident.end() || it->second->rows != targets.rows ||
        it->second->cols != targets.cols) {
      return nullptr;
    }
    return it->second;
  }

  absl::StatusOr<std::unique_ptr<Lane>> Acquire() {
    return lanes->Acquire([&]() -> absl::StatusOr<std::unique_ptr<Lane>> {
      ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Lane> lane,
                              CreateLane(options.staging_bytes));
      lane->cublas_library = cublas.get();
      return lane;
    });
  }

  // Waits for the lane's work, whether the call succeeded or not, so that
  // nothing of it is left in flight: an idle lane goes back for reuse
  // (after an out-of-memory or a bad-input error too; its streams, events
  // and buffers are intact), one whose streams failed is destroyed and its
  // slot freed.
  absl::Status Release(std::unique_ptr<Lane> lane) {
    absl::Status status = cuda::CheckCudaCall(
        cudaStreamSynchronize(lane->copy.get()), "cudaStreamSynchronize");
    if (status.ok()) {
      status = cuda::CheckCudaCall(cudaStreamSynchronize(lane->compute.get()),
                                   "cudaStreamSynchronize");
    }
    lanes->Release(std::move(lane), status.ok());
    return status;
  }

  // After an out-of-memory error, gives the pool's idle memory back to the
  // device. The pool keeps what calls free (release threshold at the
  // maximum), so its reserve can be fragmented into blocks none of which
  // fits the smaller retry the executor makes next, while the reserve
  // counts against memory_limit_bytes and the device's free memory; trimmed,
  // the retry's allocations map fresh, contiguous memory. Only memory no
  // allocation uses is released (other lanes' calls are unaffected), and the
  // pool grows back on demand. Best effort: an error here is the next
  // call's to report.
  void TrimPoolAfterOutOfMemory() {
    cuda::DiscardCudaError(cudaMemPoolTrimTo(pool, 0));
  }

  void NoteSticky(const absl::Status& status) {
    if (GpuErrorKindOf(status) != GpuErrorKind::kSticky) return;
    absl::MutexLock lock(&mu);
    if (sticky.ok()) sticky = status;
    has_sticky.store(true, std::memory_order_release);
  }

  absl::Status StickyError() {
    absl::MutexLock lock(&mu);
    return GpuError(GpuErrorKind::kSticky,
                    absl::StrCat("GPU ", device.name,
                                 " is unusable after an earlier error: ",
                                 sticky.message()));
  }

  // Runs fn(lane) on a lane of its own and gives the lane back.
  template <typename Fn>
  absl::Status WithLane(Fn fn) {
    if (has_sticky.load(std::memory_order_acquire)) return StickyError();
    // A non-sticky error some earlier call left in this thread's last-error
    // slot (other code in the process, a CUDA call made outside our checks)
    // would otherwise be reported by this call's first kernel launch check
    // as if the launch had failed (cuda_check.h); a sticky one fails the
    // call now.
    absl::Status status = cuda::TakeStaleCudaError();
    if (status.ok()) {
      status = cuda::CheckCudaCall(cudaSetDevice(options.device_ordinal),
                                   "cudaSetDevice");
    }
    if (status.ok()) {
      absl::StatusOr<std::unique_ptr<Lane>> lane = Acquire();
      if (lane.ok()) {
        status = fn(**lane);
        const absl::Status released = Release(*std::move(lane));
        if (status.ok()) status = released;
      } else {
        status = lane.status();
      }
    }
    if (GpuErrorKindOf(status) == GpuErrorKind::kOutOfMemory) {
      TrimPoolAfterOutOfMemory();
    }
    NoteSticky(status);
    return status;
  }

  // Grows the lane's staging buffers to at least `bytes` each: all four or,
  // when pinned memory runs out, none, so that the lane stays usable at its
  // old size (slot_bytes() reads in[0] and stands for all four).
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

  absl::Status EnsureCublas(Lane& lane) {
    if (cublas == nullptr || lane.cublas != nullptr) return absl::OkStatus();
    ENGRAM_ASSIGN_OR_RETURN(
        lane.cublas,
        cublas->CreateHandle(lane.compute.get(), options.allow_tf32));
    return absl::OkStatus();
  }

  // How `q` queries are scored on `lane`: cuBLAS from gemm_min_queries on
  // when it loaded (its handle made on first use), else the fused kernel.
  absl::StatusOr<cuda::TileScoring> ScoringFor(Lane& lane, size_t q) {
    cuda::TileScoring scoring;
    if (q >= options.gemm_min_queries && cublas != nullptr) {
      ENGRAM_RETURN_IF_ERROR(EnsureCublas(lane));
      scoring.cublas = cublas.get();
      scoring.handle = lane.cublas;
    }
    scoring.gemm_min_queries = options.gemm_min_queries;
    return scoring;
  }

  // Host-to-host copy, split over the copy pool when large.
  void CopyHost(void* dst, const void* src, size_t bytes) {
    ThreadPool* pool = options.copy_pool;
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

  // Copies host memory to `device` through the staging buffers on the copy
  // stream, the host filling one buffer while the other is in flight;
  // compute work enqueued afterwards sees the data. Returns when the copies
  // have finished.
  absl::Status Upload(Lane& lane, void* device, const void* host,
                      size_t bytes) {
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
      CopyHost(lane.in[s].get(), static_cast<const char*>(host) + done, len);
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

  // Copies `bytes` at `device` to host memory after the compute stream's
  // work, through the staging buffers: the host empties one while the other
  // fills.
  absl::Status Download(Lane& lane, void* host, const void* device,
                        size_t bytes) {
    if (bytes == 0) return absl::OkStatus();
    const size_t slot = lane.slot_bytes();
    const size_t pieces = (bytes + slot - 1) / slot;
    auto consume = [&](size_t piece) -> absl::Status {
      const int s = static_cast<int>(piece % 2);
      ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.out_done[s].get()));
      const size_t begin = piece * slot;
      CopyHost(static_cast<char*>(host) + begin, lane.out[s].get(),
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

  absl::StatusOr<GpuMemoryInfo> QueryMemory() {
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device_ordinal));
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
    uint64_t reserved = 0;
    uint64_t used = 0;
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemPoolGetAttribute(
        pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
    used = std::min(used, reserved);
    GpuMemoryInfo info;
    info.total_bytes = total_bytes;
    // What the pool keeps without using is ours to hand out again.
    info.free_bytes =
        std::min<uint64_t>(total_bytes, free_bytes + (reserved - used));
    const uint64_t limit = options.memory_limit_bytes;
    if (limit != 0 && limit < info.total_bytes) {
      info.total_bytes = limit;
      info.free_bytes =
          std::min(info.free_bytes, limit - std::min(limit, used));
    }
    return info;
  }

  absl::Status Cosine(Lane& lane, const PreparedQueries& pq,
                      const MatrixView& targets, float* out, size_t out_stride,
                      uint32_t k, float min_score, uint32_t index_offset,
                      std::vector<TopKList>* top);

  // Cosine against a resident matrix: no staging of targets, no norm pass.
  absl::Status CosineResident(Lane& lane, const PreparedQueries& pq,
                              const ResidentMatrix& targets, float* out,
                              size_t out_stride, uint32_t k, float min_score,
                              uint32_t index_offset,
                              std::vector<TopKList>* top);

  // The device top-k of a q x n score matrix (row stride n) into *top; only
  // q * min(k, n) keys cross PCIe.
  absl::Status SelectTopK(Lane& lane, const float* scores, size_t q, size_t n,
                          uint32_t k, float min_score, uint32_t index_offset,
                          std::vector<TopKList>* top);

  // Copies `rows` to new device memory and runs the norm pass over them.
  absl::Status UploadResident(Lane& lane, const MatrixView& rows,
                              std::shared_ptr<ResidentMatrix>* out);

  absl::Status Spread(Lane& lane, const GraphView& graph,
                      absl::Span<const SpreadSeed> seeds,
                      const SpreadParams& params, uint32_t top_k,
                      SpreadResult* out, TopKList* top,
                      const base::Interrupt* interrupt);
};

// Scores the targets a tile at a time. Tile t's rows go host -> staging
// in[t % 2] (host memcpy) -> device tile t % 2 (copy stream) -> scores
// (compute stream); dense scores come back through staging out[t % 2]. While
// the device scores tile t, the host empties tile t - 1's scores and fills
// the staging for tile t + 1, whose copy runs beside the compute.
absl::Status GpuContext::Impl::Cosine(Lane& lane, const PreparedQueries& pq,
                                      const MatrixView& targets, float* out,
                                      size_t out_stride, uint32_t k,
                                      float min_score, uint32_t index_offset,
                                      std::vector<TopKList>* top) {
  const bool dense = top == nullptr;
  const size_t q = pq.rows;
  const size_t n = targets.rows;
  const size_t d = targets.cols;
  const size_t row_bytes = d * sizeof(float);
  ENGRAM_RETURN_IF_ERROR(
      EnsureStaging(lane, std::max({options.staging_bytes, row_bytes,
                                    dense ? q * sizeof(float) : size_t{0}})));
  const size_t slot = lane.slot_bytes();
  size_t tile_rows = std::min(n, slot / row_bytes);
  if (dense) tile_rows = std::min(tile_rows, slot / (q * sizeof(float)));
  const size_t tiles = (n + tile_rows - 1) / tile_rows;
  cudaStream_t compute = lane.compute.get();

  ENGRAM_ASSIGN_OR_RETURN(const cuda::TileScoring scoring, ScoringFor(lane, q));
  const bool gemm = cuda::UsesGemm(scoring, static_cast<uint32_t>(q));

  // Device memory, all from the pool in stream order on `compute`.
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> query_values,
                          DeviceArray<float>::Allocate(q * d, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> query_inv_norm,
                          DeviceArray<double>::Allocate(q, pool, compute));
  DeviceArray<float> tile[2];
  DeviceArray<float> scores[2];
  for (int s = 0; s < (tiles > 1 ? 2 : 1); ++s) {
    ENGRAM_ASSIGN_OR_RETURN(
        tile[s], DeviceArray<float>::Allocate(tile_rows * d, pool, compute));
    if (dense) {
      ENGRAM_ASSIGN_OR_RETURN(scores[s], DeviceArray<float>::Allocate(
                                             q * tile_rows, pool, compute));
    }
  }
  if (!dense) {
    ENGRAM_ASSIGN_OR_RETURN(scores[0],
                            DeviceArray<float>::Allocate(q * n, pool, compute));
  }
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<double> inv_norm,
      DeviceArray<double>::Allocate(gemm ? tile_rows : 0, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> bad_row,
      DeviceArray<unsigned long long>::Allocate(1, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> tiny_rows,
      DeviceArray<uint32_t>::Allocate(tile_rows + 1, pool, compute));
  CopiesFinishFirst finish(lane);

  ENGRAM_RETURN_IF_ERROR(
      Upload(lane, query_values.get(), pq.values.data(), query_values.bytes()));
  ENGRAM_RETURN_IF_ERROR(Upload(lane, query_inv_norm.get(), pq.inv_norm.data(),
                                query_inv_norm.bytes()));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(bad_row.get(), 0xff, bad_row.bytes(), compute));
  // The tiles were allocated on `compute`; the copy stream writes them after
  // waiting on tile_free.
  for (int s = 0; s < 2; ++s) {
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.tile_free[s].get(), compute));
  }
  const cuda::DeviceQueries device_queries{
      query_values.get(), query_inv_norm.get(), static_cast<uint32_t>(q),
      static_cast<uint32_t>(d)};
  cuda::TileWorkspace workspace;
  workspace.flags.bad_row = bad_row.get();
  workspace.flags.tiny_count = tiny_rows.get();
  workspace.flags.tiny_rows = tiny_rows.get() + 1;
  workspace.inv_norm = inv_norm.get();

  // Scatters tile t's dense scores from staging into `out`.
  auto consume = [&](size_t t) -> absl::Status {
    const int s = static_cast<int>(t % 2);
    const size_t first = t * tile_rows;
    const size_t rows = std::min(tile_rows, n - first);
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.out_done[s].get()));
    const float* staged = static_cast<const float*>(lane.out[s].get());
    for (size_t j = 0; j < q; ++j) {
      std::memcpy(out + j * out_stride + first, staged + j * rows,
                  rows * sizeof(float));
    }
    return absl::OkStatus();
  };
  for (size_t t = 0; t < tiles; ++t) {
    const int s = static_cast<int>(t % 2);
    const size_t first = t * tile_rows;
    const size_t rows = std::min(tile_rows, n - first);
    const size_t bytes = rows * row_bytes;
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(lane.in_done[s].get()));
    CopyHost(lane.in[s].get(), targets.row(first), bytes);
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(lane.copy.get(), lane.tile_free[s].get(), 0));
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tile[s].get(), lane.in[s].get(),
                                                bytes, cudaMemcpyHostToDevice,
                                                lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.in_done[s].get(), lane.copy.get()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(compute, lane.in_done[s].get(), 0));
    float* tile_scores = dense ? scores[s].get() : scores[0].get() + first;
    ENGRAM_RETURN_IF_ERROR(cuda::ScoreTile(
        device_queries, tile[s].get(), static_cast<uint32_t>(rows), tile_scores,
        dense ? rows : n, first, workspace, scoring, compute));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaEventRecord(lane.tile_free[s].get(), compute));
    if (dense) {
      ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          lane.out[s].get(), scores[s].get(), q * rows * sizeof(float),
          cudaMemcpyDeviceToHost, compute));
      ENGRAM_CUDA_RETURN_IF_ERROR(
          cudaEventRecord(lane.out_done[s].get(), compute));
      if (t > 0) ENGRAM_RETURN_IF_ERROR(consume(t - 1));
    }
  }
  if (dense) ENGRAM_RETURN_IF_ERROR(consume(tiles - 1));

  unsigned long long bad = kNoBadRow;
  ENGRAM_RETURN_IF_ERROR(Download(lane, &bad, bad_row.get(), sizeof(bad)));
  if (bad != kNoBadRow) {
    return NonFiniteRowError("targets", targets.row(bad), d,
                             static_cast<uint64_t>(index_offset) + bad);
  }
  if (dense) return absl::OkStatus();
  return SelectTopK(lane, scores[0].get(), q, n, k, min_score, index_offset,
                    top);
}

absl::Status GpuContext::Impl::SelectTopK(Lane& lane, const float* scores,
                                          size_t q, size_t n, uint32_t k,
                                          float min_score,
                                          uint32_t index_offset,
                                          std::vector<TopKList>* top) {
  cudaStream_t compute = lane.compute.get();
  const uint32_t keep = static_cast<uint32_t>(std::min<size_t>(k, n));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned char> select_workspace,
      DeviceArray<unsigned char>::Allocate(
          cuda::TopKWorkspaceBytes(static_cast<uint32_t>(q)), pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> keys,
      DeviceArray<unsigned long long>::Allocate(q * keep, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> counts,
                          DeviceArray<uint32_t>::Allocate(q, pool, compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(cuda::LaunchTopKSelect(
      scores, static_cast<uint32_t>(q), static_cast<uint32_t>(n), n, keep,
      min_score, select_workspace.get(), keys.get(), counts.get(), compute));
  std::vector<unsigned long long> host_keys(q * keep);
  std::vector<uint32_t> host_counts(q);
  ENGRAM_RETURN_IF_ERROR(
      Download(lane, host_keys.data(), keys.get(), keys.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Download(lane, host_counts.data(), counts.get(), counts.bytes()));
  top->clear();
  top->reserve(q);
  for (size_t j = 0; j < q; ++j) {
    top->push_back(DecodeList(host_keys.data() + j * keep,
                              std::min(host_counts[j], keep), index_offset));
  }
  return absl::OkStatus();
}

// Scores a resident matrix in one pass: only the queries go in, and the
// scores (dense) or q * k keys (top-k) come out. The score matrix is the
// whole q x n block, as the top-k path already allocates it; the executor's
// footprint (CosineFootprint) counts it per query.
absl::Status GpuContext::Impl::CosineResident(
    Lane& lane, const PreparedQueries& pq, const ResidentMatrix& targets,
    float* out, size_t out_stride, uint32_t k, float min_score,
    uint32_t index_offset, std::vector<TopKList>* top) {
  const bool dense = top == nullptr;
  const size_t q = pq.rows;
  const size_t n = targets.rows;
  const size_t d = targets.cols;
  cudaStream_t compute = lane.compute.get();

  ENGRAM_ASSIGN_OR_RETURN(const cuda::TileScoring scoring, ScoringFor(lane, q));

  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> query_values,
                          DeviceArray<float>::Allocate(q * d, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> query_inv_norm,
                          DeviceArray<double>::Allocate(q, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> scores,
                          DeviceArray<float>::Allocate(q * n, pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(
      Upload(lane, query_values.get(), pq.values.data(), query_values.bytes()));
  ENGRAM_RETURN_IF_ERROR(Upload(lane, query_inv_norm.get(), pq.inv_norm.data(),
                                query_inv_norm.bytes()));
  const cuda::DeviceQueries device_queries{
      query_values.get(), query_inv_norm.get(), static_cast<uint32_t>(q),
      static_cast<uint32_t>(d)};
  ENGRAM_RETURN_IF_ERROR(cuda::ScoreResident(
      device_queries, targets.view(), scores.get(), n, scoring, compute));
  if (!dense) {
    return SelectTopK(lane, scores.get(), q, n, k, min_score, index_offset,
                      top);
  }
  if (out_stride == n) {
    return Download(lane, out, scores.get(), scores.bytes());
  }
  for (size_t j = 0; j < q; ++j) {
    ENGRAM_RETURN_IF_ERROR(Download(lane, out + j * out_stride,
                                    scores.get() + j * n, n * sizeof(float)));
  }
  return absl::OkStatus();
}

absl::Status GpuContext::Impl::UploadResident(
    Lane& lane, const MatrixView& rows, std::shared_ptr<ResidentMatrix>* out) {
  const size_t n = rows.rows;
  const size_t d = rows.cols;
  cudaStream_t compute = lane.compute.get();
  auto matrix = std::make_shared<ResidentMatrix>();
  matrix->rows = n;
  matrix->cols = d;
  // Allocated on the lane's compute stream, so that on any error below they
  // are freed in order after whatever of this call's work is queued there.
  ENGRAM_ASSIGN_OR_RETURN(matrix->values,
                          DeviceArray<float>::Allocate(n * d, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(matrix->inv_norm,
                          DeviceArray<double>::Allocate(n, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      matrix->tiny, DeviceArray<uint32_t>::Allocate(n + 1, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> bad_row,
      DeviceArray<unsigned long long>::Allocate(1, pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(
      Upload(lane, matrix->values.get(), rows.data, matrix->values.bytes()));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(bad_row.get(), 0xff, bad_row.bytes(), compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(matrix->tiny.get(), 0, sizeof(uint32_t), compute));
  cuda::RowFlags flags;
  flags.bad_row = bad_row.get();
  flags.tiny_count = matrix->tiny.get();
  flags.tiny_rows = matrix->tiny.get() + 1;
  ENGRAM_CUDA_RETURN_IF_ERROR(cuda::LaunchRowInverseNorms(
      matrix->values.get(), static_cast<uint32_t>(n), static_cast<uint32_t>(d),
      matrix->inv_norm.get(), 0, flags, compute));
  unsigned long long bad = kNoBadRow;
  ENGRAM_RETURN_IF_ERROR(Download(lane, &bad, bad_row.get(), sizeof(bad)));
  if (bad != kNoBadRow) {
    return NonFiniteRowError("targets", rows.row(bad), d, bad);
  }
  // Everything queued for the matrix has run: from now on it is read by
  // other lanes and freed on the resident stream.
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(compute));
  matrix->values.FreeOn(resident_stream.get());
  matrix->inv_norm.FreeOn(resident_stream.get());
  matrix->tiny.FreeOn(resident_stream.get());
  *out = std::move(matrix);
  return absl::OkStatus();
}

absl::Status GpuContext::Impl::Spread(Lane& lane, const GraphView& graph,
                                      absl::Span<const SpreadSeed> seeds,
                                      const SpreadParams& params,
                                      uint32_t top_k, SpreadResult* out,
                                      TopKList* top,
                                      const base::Interrupt* interrupt) {
  const uint32_t n = graph.num_nodes;
  const uint32_t num_edges = static_cast<uint32_t>(graph.num_edges());
  cudaStream_t compute = lane.compute.get();
  ENGRAM_ASSIGN_OR_RETURN(
      cuda::DeviceGraph device_graph,
      cuda::DeviceGraph::Allocate(n, num_edges, pool, compute));
  DeviceArray<double> activation;
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> activation_f32,
                          DeviceArray<float>::Allocate(n, pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(Upload(lane, device_graph.row_offsets(),
                                graph.row_offsets.data(),
                                graph.row_offsets.size() * sizeof(uint32_t)));
  ENGRAM_RETURN_IF_ERROR(Upload(lane, device_graph.targets(),
                                graph.targets.data(),
                                graph.targets.size() * sizeof(uint32_t)));
  ENGRAM_RETURN_IF_ERROR(Upload(lane, device_graph.weights(),
                                graph.weights.data(),
                                graph.weights.size() * sizeof(float)));
  ENGRAM_RETURN_IF_ERROR(
      cuda::CheckGraphOnDevice(device_graph, graph, pool, compute));
  cuda::SpreadOnDeviceOptions spread_options;
  spread_options.push_max_fraction = options.spread_push_max_fraction;
  ENGRAM_ASSIGN_OR_RETURN(
      const cuda::SpreadOnDeviceResult result,
      cuda::SpreadOnDevice(
          device_graph, graph.row_offsets, seeds, params, spread_options,
          [&](void* device, const void* host, size_t bytes) {
            return Upload(lane, device, host, bytes);
          },
          pool, compute, interrupt, &activation));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cuda::LaunchToFloat(activation.get(), n, activation_f32.get(), compute));
  out->hops = result.hops;
  out->edges_traversed = result.edges_traversed;
  if (top_k == 0) {
    out->activation.resize(n);
    return Download(lane, out->activation.data(), activation_f32.get(),
                    activation_f32.bytes());
  }
  // Nodes the activation never reached are not results.
  out->activation.clear();
  const uint32_t keep = std::min(top_k, n);
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<unsigned char> select_workspace,
                          DeviceArray<unsigned char>::Allocate(
                              cuda::TopKWorkspaceBytes(1), pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> keys,
      DeviceArray<unsigned long long>::Allocate(keep, pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> count,
                          DeviceArray<uint32_t>::Allocate(1, pool, compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(cuda::LaunchTopKSelect(
      activation_f32.get(), 1, n, n, keep,
      std::numeric_limits<float>::denorm_min(), select_workspace.get(),
      keys.get(), count.get(), compute));
  std::vector<unsigned long long> host_keys(keep);
  uint32_t host_count = 0;
  ENGRAM_RETURN_IF_ERROR(
      Download(lane, host_keys.data(), keys.get(), keys.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Download(lane, &host_count, count.get(), sizeof(host_count)));
  if (top != nullptr) {
    *top = DecodeList(host_keys.data(), std::min(host_count, keep), 0);
  }
  return absl::OkStatus();
}

GpuContext::GpuContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuContext::~GpuContext() = default;

absl::StatusOr<std::unique_ptr<GpuContext>> GpuContext::Create(
    const Options& options) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("GPU option ", what));
  };
  if (options.device_ordinal < 0) return bad("device_ordinal must be >= 0");
  if (options.staging_bytes < kMinStagingBytes) {
    return bad("staging_bytes must be at least 64 KiB");
  }
  if (options.max_streams < 1) return bad("max_streams must be >= 1");
  if (options.gemm_min_queries < 1) return bad("gemm_min_queries must be >= 1");
  if (!(options.spread_push_max_fraction >= 0.0 &&
        options.spread_push_max_fraction <= 1.0)) {
    return bad("spread_push_max_fraction must be in [0, 1]");
  }
  ENGRAM_ASSIGN_OR_RETURN(std::vector<GpuDeviceInfo> devices, ListGpuDevices());
  if (options.device_ordinal >= static_cast<int>(devices.size())) {
    return absl::UnavailableError(absl::StrCat(
        "no GPU ", options.device_ordinal, ": ", devices.size(), " visible"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->device = devices[options.device_ordinal];
  impl->lanes = std::make_unique<cuda::LanePool<Lane>>(options.max_streams);
  const GpuDeviceInfo& device = impl->device;
  const auto unusable = [&](const absl::Status& why) {
    return absl::UnavailableError(absl::StrCat(
        "GPU ", device.ordinal, " (", device.name, ", compute capability ",
        device.compute_capability_major, ".", device.compute_capability_minor,
        ") is not usable: ", why.message()));
  };
  absl::Status status = cuda::CheckCudaCall(
      cudaSetDevice(options.device_ordinal), "cudaSetDevice");
  if (status.ok()) {
    status = cuda::CheckCudaCall(cuda::CheckKernelImage(),
                                 "this build's kernels on the device");
  }
  if (!status.ok()) return unusable(status);
  absl::StatusOr<cudaMemPool_t> pool = cuda::CreateMemoryPool(
      options.device_ordinal, options.memory_limit_bytes);
  if (!pool.ok()) return unusable(pool.status());
  impl->pool = *pool;
  absl::StatusOr<CudaStream> resident_stream = CudaStream::Create();
  if (!resident_stream.ok()) return unusable(resident_stream.status());
  impl->resident_stream = *std::move(resident_stream);
  absl::StatusOr<std::unique_ptr<cuda::Cublas>> cublas = cuda::Cublas::Load();
  if (cublas.ok()) {
    impl->cublas = *std::move(cublas);
    impl->cublas_status = impl->cublas->description();
  } else {
    impl->cublas_status = std::string(cublas.status().message());
  }
  return std::unique_ptr<GpuContext>(new GpuContext(std::move(impl)));
}

const GpuDeviceInfo& GpuContext::device() const { return impl_->device; }

bool GpuContext::has_cublas() const { return impl_->cublas != nullptr; }

std::string GpuContext::cublas_status() const { return impl_->cublas_status; }

absl::Status GpuContext::CosineDense(const MatrixView& queries,
                                     const MatrixView& targets, float* out,
                                     size_t out_stride, uint32_t index_offset,
                                     uint64_t resident_key) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, /*pad_floats=*/1, &pq));
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  // Held until the lane's work is done: an eviction meanwhile frees it after.
  const std::shared_ptr<const ResidentMatrix> resident =
      impl_->FindResident(resident_key, targets);
  return impl_->WithLane([&](Lane& lane) {
    if (resident != nullptr) {
      impl_->resident_hits.fetch_add(1, std::memory_order_relaxed);
      return impl_->CosineResident(lane, pq, *resident, out, out_stride, 0,
                                   0.0f, index_offset, nullptr);
    }
    return impl_->Cosine(lane, pq, targets, out, out_stride, 0, 0.0f,
                         index_offset, nullptr);
  });
}

absl::Status GpuContext::CosineTopK(const MatrixView& queries,
                                    const MatrixView& targets, uint32_t k,
                                    float min_score, uint32_t index_offset,
                                    std::vector<TopKList>* out,
                                    uint64_t resident_key) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  if (std::isnan(min_score)) {
    return absl::InvalidArgumentError("min_score is NaN");
  }
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, /*pad_floats=*/1, &pq));
  if (queries.rows == 0 || targets.rows == 0) {
    out->assign(queries.rows, TopKList());
    return absl::OkStatus();
  }
  const std::shared_ptr<const ResidentMatrix> resident =
      impl_->FindResident(resident_key, targets);
  return impl_->WithLane([&](Lane& lane) {
    if (resident != nullptr) {
      impl_->resident_hits.fetch_add(1, std::memory_order_relaxed);
      return impl_->CosineResident(lane, pq, *resident, nullptr, 0, k,
                                   min_score, index_offset, out);
    }
    return impl_->Cosine(lane, pq, targets, nullptr, 0, k, min_score,
                         index_offset, out);
  });
}

absl::Status GpuContext::UploadResident(uint64_t key, const MatrixView& rows) {
  if (key == 0) {
    return absl::InvalidArgumentError("resident key must not be 0");
  }
  if (rows.rows == 0 || rows.cols == 0 || rows.data == nullptr) {
    return absl::InvalidArgumentError("resident rows must not be empty");
  }
  // cuBLAS takes int dimensions.
  constexpr size_t kMaxDim =
      static_cast<size_t>(std::numeric_limits<int32_t>::max());
  if (rows.rows > kMaxDim || rows.cols > kMaxDim) {
    return absl::InvalidArgumentError(
        "resident matrix dimensions must be below 2^31");
  }
  if (HoldsResident(key)) {
    return absl::AlreadyExistsError(
        absl::StrCat("resident key ", key, " is held"));
  }
  std::shared_ptr<ResidentMatrix> matrix;
  ENGRAM_RETURN_IF_ERROR(impl_->WithLane(
      [&](Lane& lane) { return impl_->UploadResident(lane, rows, &matrix); }));
  std::shared_ptr<const ResidentMatrix> unused;  // freed outside the lock
  absl::MutexLock lock(&impl_->resident_mu);
  auto [it, inserted] = impl_->resident.emplace(key, matrix);
  if (!inserted) {
    unused = std::move(matrix);
    return absl::AlreadyExistsError(
        absl::StrCat("resident key ", key, " is held"));
  }
  impl_->resident_bytes += it->second->bytes();
  return absl::OkStatus();
}

absl::Status GpuContext::EvictResident(uint64_t key) {
  std::shared_ptr<const ResidentMatrix> matrix;
  {
    absl::MutexLock lock(&impl_->resident_mu);
    const auto it = impl_->resident.find(key);
    if (it == impl_->resident.end()) {
      return absl::NotFoundError(absl::StrCat("no resident key ", key));
    }
    matrix = std::move(it->second);
    impl_->resident.erase(it);
    impl_->resident_bytes -= matrix->bytes();
  }
  // The frees (now, or when the last call reading it ends) are enqueued on
  // the resident stream of this context's device; best effort.
  cuda::DiscardCudaError(cudaSetDevice(impl_->options.device_ordinal));
  matrix.reset();
  return absl::OkStatus();
}

bool GpuContext::HoldsResident(uint64_t key) const {
  absl::MutexLock lock(&impl_->resident_mu);
  return impl_->resident.count(key) != 0;
}

GpuResidentStats GpuContext::ResidentStats() const {
  GpuResidentStats stats;
  {
    absl::MutexLock lock(&impl_->resident_mu);
    stats.matrices = impl_->resident.size();
    stats.bytes = impl_->resident_bytes;
  }
  stats.hits = impl_->resident_hits.load(std::memory_order_relaxed);
  return stats;
}

absl::Status GpuContext::Spread(const GraphView& graph,
                                absl::Span<const SpreadSeed> seeds,
                                const SpreadParams& params, uint32_t top_k,
                                SpreadResult* out, TopKList* top,
                                const base::Interrupt* interrupt) {
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  ENGRAM_RETURN_IF_ERROR(CheckSpreadShape(graph, seeds));
  return impl_->WithLane([&](Lane& lane) {
    return impl_->Spread(lane, graph, seeds, params, top_k, out, top,
                         interrupt);
  });
}

absl::StatusOr<GpuMemoryInfo> GpuContext::QueryMemory() {
  if (impl_->has_sticky.load(std::memory_order_acquire)) {
    return impl_->StickyError();
  }
  absl::StatusOr<GpuMemoryInfo> info = impl_->QueryMemory();
  impl_->NoteSticky(info.status());
  return info;
}

}  // namespace engram::kernels
