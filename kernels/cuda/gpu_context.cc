// The CUDA build's GpuContext (kernels/gpu_device.h): the lanes it lends to
// calls, the sticky error that retires a device, and the table of resident
// matrices. What a call does on its lane is in cosine_pipeline.h,
// spread_pipeline.h and resident_matrices.h.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cuda/cosine_device.h"
#include "kernels/cuda/cosine_pipeline.h"
#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane.h"
#include "kernels/cuda/lane_pool.h"
#include "kernels/cuda/resident_matrices.h"
#include "kernels/cuda/spread_pipeline.h"
#include "kernels/gpu_device.h"
#include "kernels/query_preparation.h"
#include "kernels/row_mask.h"
#include "kernels/spread_shape.h"
#include "kernels/types.h"

namespace engram::kernels {
namespace {

using cuda::CudaStream;
using cuda::Lane;
using cuda::ResidentMatrix;

constexpr size_t kMinStagingBytes = size_t{64} << 10;

// The shared checks plus the device kernels' 32-bit dimensions.
absl::Status CheckShapes(const MatrixView& queries, const MatrixView& targets) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  if (queries.rows > std::numeric_limits<uint32_t>::max() ||
      targets.cols > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("matrix dimensions do not fit 32 bits");
  }
  return absl::OkStatus();
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
  cuda::ResidentMatrices resident;

  ~Impl() {
    cuda::DiscardCudaError(cudaSetDevice(options.device_ordinal));
    if (lanes != nullptr) lanes->Clear();
    resident.Clear();  // frees enqueued on resident_stream
    if (resident_stream.get() != nullptr) {
      cuda::DiscardCudaError(cudaStreamSynchronize(resident_stream.get()));
    }
    if (pool != nullptr) cuda::DiscardCudaError(cudaMemPoolDestroy(pool));
  }

  // What a call on a lane uses of this context.
  cuda::LaneContext lane_context() const {
    return cuda::LaneContext{&options, pool, cublas.get()};
  }

  absl::StatusOr<std::unique_ptr<Lane>> Acquire() {
    return lanes->Acquire([&]() -> absl::StatusOr<std::unique_ptr<Lane>> {
      ENGRAM_ASSIGN_OR_RETURN(std::unique_ptr<Lane> lane,
                              cuda::CreateLane(options.staging_bytes));
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
};

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
  return CosineDense(queries, targets, RowMask{}, out, out_stride, index_offset,
                     resident_key);
}

absl::Status GpuContext::CosineTopK(const MatrixView& queries,
                                    const MatrixView& targets, uint32_t k,
                                    float min_score, uint32_t index_offset,
                                    std::vector<TopKList>* out,
                                    uint64_t resident_key) {
  return CosineTopK(queries, targets, RowMask{}, k, min_score, index_offset,
                    out, resident_key);
}

absl::Status GpuContext::CosineDense(const MatrixView& queries,
                                     const MatrixView& targets,
                                     const RowMask& mask, float* out,
                                     size_t out_stride, uint32_t index_offset,
                                     uint64_t resident_key) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  ENGRAM_RETURN_IF_ERROR(CheckRowMask(mask, targets.rows));
  const size_t admitted = CountAdmitted(mask, 0, targets.rows);
  ENGRAM_RETURN_IF_ERROR(
      CheckCosineOutStride(out_stride, admitted, !mask.all()));
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, /*pad_floats=*/1, &pq));
  if (queries.rows == 0 || admitted == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  // A mask that admits every row is no mask: the unmasked path, which
  // reads the targets whole.
  const RowMask used = admitted < targets.rows ? mask : RowMask{};
  // Held until the lane's work is done: an eviction meanwhile frees it after.
  const std::shared_ptr<const ResidentMatrix> resident =
      impl_->resident.Find(resident_key, targets);
  std::vector<uint32_t> rows;
  if (resident == nullptr && !used.all()) {
    AppendAdmittedRows(used, 0, targets.rows, &rows);
  }
  return impl_->WithLane([&](Lane& lane) {
    if (resident != nullptr) {
      impl_->resident.NoteHit();
      return cuda::CosineResidentOnLane(impl_->lane_context(), lane, pq,
                                        *resident, used, out, out_stride, 0,
                                        0.0f, index_offset, nullptr);
    }
    return cuda::CosineOnLane(impl_->lane_context(), lane, pq, targets,
                              used.all() ? nullptr : &rows, out, out_stride, 0,
                              0.0f, index_offset, nullptr);
  });
}

absl::Status GpuContext::CosineTopK(const MatrixView& queries,
                                    const MatrixView& targets,
                                    const RowMask& mask, uint32_t k,
                                    float min_score, uint32_t index_offset,
                                    std::vector<TopKList>* out,
                                    uint64_t resident_key) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  ENGRAM_RETURN_IF_ERROR(CheckRowMask(mask, targets.rows));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  if (std::isnan(min_score)) {
    return absl::InvalidArgumentError("min_score is NaN");
  }
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, /*pad_floats=*/1, &pq));
  const size_t admitted =
      queries.rows == 0 ? 0 : CountAdmitted(mask, 0, targets.rows);
  if (admitted == 0) {
    out->assign(queries.rows, TopKList());
    return absl::OkStatus();
  }
  const RowMask used = admitted < targets.rows ? mask : RowMask{};
  const std::shared_ptr<const ResidentMatrix> resident =
      impl_->resident.Find(resident_key, targets);
  std::vector<uint32_t> rows;
  if (resident == nullptr && !used.all()) {
    AppendAdmittedRows(used, 0, targets.rows, &rows);
  }
  return impl_->WithLane([&](Lane& lane) {
    if (resident != nullptr) {
      impl_->resident.NoteHit();
      return cuda::CosineResidentOnLane(impl_->lane_context(), lane, pq,
                                        *resident, used, nullptr, 0, k,
                                        min_score, index_offset, out);
    }
    return cuda::CosineOnLane(impl_->lane_context(), lane, pq, targets,
                              used.all() ? nullptr : &rows, nullptr, 0, k,
                              min_score, index_offset, out);
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
  ENGRAM_RETURN_IF_ERROR(impl_->WithLane([&](Lane& lane) {
    return cuda::UploadResidentOnLane(impl_->lane_context(), lane,
                                      impl_->resident_stream.get(), rows,
                                      &matrix);
  }));
  return impl_->resident.Add(key, std::move(matrix));
}

absl::Status GpuContext::EvictResident(uint64_t key) {
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const ResidentMatrix> matrix,
                          impl_->resident.Remove(key));
  // The frees (now, or when the last call reading it ends) are enqueued on
  // the resident stream of this context's device; best effort.
  cuda::DiscardCudaError(cudaSetDevice(impl_->options.device_ordinal));
  matrix.reset();
  return absl::OkStatus();
}

bool GpuContext::HoldsResident(uint64_t key) const {
  return impl_->resident.Holds(key);
}

GpuResidentStats GpuContext::ResidentStats() const {
  return impl_->resident.Stats();
}

absl::Status GpuContext::Spread(const GraphView& graph,
                                absl::Span<const SpreadSeed> seeds,
                                const SpreadParams& params, uint32_t top_k,
                                SpreadResult* out, TopKList* top,
                                const base::Interrupt* interrupt) {
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  ENGRAM_RETURN_IF_ERROR(CheckSpreadShape(graph, seeds));
  return impl_->WithLane([&](Lane& lane) {
    return cuda::SpreadOnLane(impl_->lane_context(), lane, graph, seeds, params,
                              top_k, out, top, interrupt);
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
