// Resident matrices: their upload and table (kernels/cuda/resident_matrices.h).
#include "kernels/cuda/resident_matrices.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "kernels/cuda/cosine_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane.h"
#include "kernels/row_checks.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {
namespace {

constexpr unsigned long long kNoBadRow = ~0ull;

}  // namespace

absl::Status UploadResidentOnLane(const LaneContext& ctx, Lane& lane,
                                  cudaStream_t resident_stream,
                                  const MatrixView& rows,
                                  std::shared_ptr<ResidentMatrix>* out) {
  const size_t n = rows.rows;
  const size_t d = rows.cols;
  cudaStream_t compute = lane.compute.get();
  auto matrix = std::make_shared<ResidentMatrix>();
  matrix->rows = n;
  matrix->cols = d;
  // Allocated on the lane's compute stream, so that on any error below they
  // are freed in order after whatever of this call's work is queued there.
  ENGRAM_ASSIGN_OR_RETURN(
      matrix->values, DeviceArray<float>::Allocate(n * d, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(matrix->inv_norm,
                          DeviceArray<double>::Allocate(n, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      matrix->tiny, DeviceArray<uint32_t>::Allocate(n + 1, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> bad_row,
      DeviceArray<unsigned long long>::Allocate(1, ctx.pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, matrix->values.get(), rows.data,
                                matrix->values.bytes()));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(bad_row.get(), 0xff, bad_row.bytes(), compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(matrix->tiny.get(), 0, sizeof(uint32_t), compute));
  RowFlags flags;
  flags.bad_row = bad_row.get();
  flags.tiny_count = matrix->tiny.get();
  flags.tiny_rows = matrix->tiny.get() + 1;
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchRowInverseNorms(
      matrix->values.get(), static_cast<uint32_t>(n), static_cast<uint32_t>(d),
      matrix->inv_norm.get(), 0, flags, compute));
  unsigned long long bad = kNoBadRow;
  ENGRAM_RETURN_IF_ERROR(Download(ctx, lane, &bad, bad_row.get(), sizeof(bad)));
  if (bad != kNoBadRow) {
    return NonFiniteRowError("targets", rows.row(bad), d, bad);
  }
  // Everything queued for the matrix has run: from now on it is read by
  // other lanes and freed on the resident stream.
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(compute));
  matrix->values.FreeOn(resident_stream);
  matrix->inv_norm.FreeOn(resident_stream);
  matrix->tiny.FreeOn(resident_stream);
  *out = std::move(matrix);
  return absl::OkStatus();
}

std::shared_ptr<const ResidentMatrix> ResidentMatrices::Find(
    uint64_t key, const MatrixView& targets) const {
  if (key == 0) return nullptr;
  absl::MutexLock lock(&mu_);
  const auto it = matrices_.find(key);
  if (it == matrices_.end() || it->second->rows != targets.rows ||
      it->second->cols != targets.cols) {
    return nullptr;
  }
  return it->second;
}

bool ResidentMatrices::Holds(uint64_t key) const {
  absl::MutexLock lock(&mu_);
  return matrices_.count(key) != 0;
}

absl::Status ResidentMatrices::Add(
    uint64_t key, std::shared_ptr<const ResidentMatrix> matrix) {
  std::shared_ptr<const ResidentMatrix> unused;  // freed outside the lock
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = matrices_.emplace(key, matrix);
  if (!inserted) {
    unused = std::move(matrix);
    return absl::AlreadyExistsError(
        absl::StrCat("resident key ", key, " is held"));
  }
  bytes_ += it->second->bytes();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ResidentMatrix>> ResidentMatrices::Remove(
    uint64_t key) {
  std::shared_ptr<const ResidentMatrix> matrix;
  absl::MutexLock lock(&mu_);
  const auto it = matrices_.find(key);
  if (it == matrices_.end()) {
    return absl::NotFoundError(absl::StrCat("no resident key ", key));
  }
  matrix = std::move(it->second);
  matrices_.erase(it);
  bytes_ -= matrix->bytes();
  return matrix;
}

void ResidentMatrices::NoteHit() {
  hits_.fetch_add(1, std::memory_order_relaxed);
}

GpuResidentStats ResidentMatrices::Stats() const {
  GpuResidentStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats.matrices = matrices_.size();
    stats.bytes = bytes_;
  }
  stats.hits = hits_.load(std::memory_order_relaxed);
  return stats;
}

void ResidentMatrices::Clear() {
  absl::MutexLock lock(&mu_);
  matrices_.clear();
}

}  // namespace engram::kernels::cuda
