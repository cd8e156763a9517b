#include "core/dispatch/cuda_backend.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/dispatch/backend_errors.h"
#include "kernels/graph_overlay.h"

namespace engram::dispatch {

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const Options& options) {
  kernels::GpuContext::Options gpu;
  gpu.device_ordinal = options.device_ordinal;
  gpu.staging_bytes = options.staging_bytes;
  gpu.max_streams = options.max_streams;
  gpu.allow_tf32 = options.allow_tf32;
  gpu.gemm_min_queries = options.gemm_min_queries;
  gpu.memory_limit_bytes = options.memory_limit_bytes;
  gpu.spread_push_max_fraction = options.spread_push_max_fraction;
  gpu.copy_pool = options.pool;
  absl::StatusOr<std::unique_ptr<kernels::GpuContext>> context =
      kernels::GpuContext::Create(gpu);
  if (!context.ok()) return context.status();
  return std::unique_ptr<CudaBackend>(new CudaBackend(*std::move(context)));
}

absl::Status CudaBackend::ToBackendError(const absl::Status& status) {
  switch (kernels::GpuErrorKindOf(status)) {
    case kernels::GpuErrorKind::kOutOfMemory:
      return DeviceOutOfMemoryError(status.message());
    case kernels::GpuErrorKind::kSticky:
      return StickyDeviceError(status.message());
    default:
      return status;
  }
}

BackendCapabilities CudaBackend::Capabilities() const {
  const kernels::GpuDeviceInfo& info = context_->device();
  BackendCapabilities c;
  c.name = std::string(kName);
  c.kind = BackendKind::kGpu;
  c.device_name = info.name;
  c.has_memory_probe = true;
  c.memory_bytes = info.total_memory_bytes;
  c.supports_residency = true;
  return c;
}

absl::Status CudaBackend::Cosine(const CosineJob& job, CosineOutput* out) {
  if (job.top_k == 0) {
    const size_t m = job.scored_targets();
    if (out->scores.size() != job.queries.rows * m) {
      return absl::InternalError(
          absl::StrCat("score buffer holds ", out->scores.size(),
                       " floats, expected ", job.queries.rows * m));
    }
    return ToBackendError(context_->CosineDense(job.queries, job.targets,
                                                job.mask, out->scores.data(), m,
                                                0, job.resident_targets));
  }
  const float min_score =
      job.min_score.value_or(-std::numeric_limits<float>::infinity());
  return ToBackendError(context_->CosineTopK(job.queries, job.targets, job.mask,
                                             job.top_k, min_score, 0, &out->top,
                                             job.resident_targets));
}

absl::Status CudaBackend::Spread(const SpreadJob& job, SpreadOutput* out) {
  if (job.overlay != nullptr) {
    // The device reads a compact CSR: the changed graph is flattened on the
    // host first, which costs about what copying it in does. Its edges are
    // in the order the CPU reads them, so the results are the same.
    kernels::CsrGraph flat;
    ENGRAM_RETURN_IF_ERROR(
        kernels::MaterializeOverlaidGraph(job.graph, *job.overlay, &flat));
    return ToBackendError(context_->Spread(flat.view(), job.seeds, job.params,
                                           0, &out->result, nullptr,
                                           job.interrupt));
  }
  return ToBackendError(context_->Spread(job.graph, job.seeds, job.params, 0,
                                         &out->result, nullptr, job.interrupt));
}

absl::StatusOr<DeviceMemoryInfo> CudaBackend::QueryMemory() {
  absl::StatusOr<kernels::GpuMemoryInfo> info = context_->QueryMemory();
  if (!info.ok()) return ToBackendError(info.status());
  DeviceMemoryInfo memory;
  memory.free_bytes = info->free_bytes;
  memory.total_bytes = info->total_bytes;
  return memory;
}

absl::Status CudaBackend::UploadResident(uint64_t key,
                                         const kernels::MatrixView& rows) {
  return ToBackendError(context_->UploadResident(key, rows));
}

absl::Status CudaBackend::EvictResident(uint64_t key) {
  return context_->EvictResident(key);
}

bool CudaBackend::HoldsResident(uint64_t key) const {
  return context_->HoldsResident(key);
}

uint64_t CudaBackend::ResidentBytes() const {
  return context_->ResidentStats().bytes;
}

}  // namespace engram::dispatch
