// The CUDA backend: the GPU kernels of kernels/cuda behind ComputeBackend
// ("cuda").
//
// A thin adapter over kernels::GpuContext (kernels/gpu_device.h), which owns
// the device's streams, memory pool and pinned staging buffers; this class
// turns its errors into the classes backend_errors.h defines, so that the
// executor shrinks the chunk on device OOM, feeds the breaker on device
// failures and locks it open on a sticky error. The same source builds with
// and without the CUDA backend: without it (or without a usable GPU)
// Create() is UNAVAILABLE with the reason, so callers need no #ifdef.
//
// Residency: UploadResident and the rest are GpuContext's resident matrices;
// a cosine job whose resident_targets names one of its targets' shape reads
// it instead of copying its targets in.
//
// Results match CpuBackend's (GpuContext's contract): cosine scores within
// 1e-5, top-k lists of the same entries in the same order, spreading results
// bit for bit, and the same INVALID_ARGUMENT messages for bad input.
//
// Thread-safety: all methods may be called concurrently from any thread;
// concurrent calls run on separate CUDA streams (up to Options::max_streams,
// beyond which they wait for one).
#ifndef ENGRAM_CORE_DISPATCH_CUDA_BACKEND_H_
#define ENGRAM_CORE_DISPATCH_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/compute_backend.h"
#include "kernels/gpu_device.h"
#include "kernels/thread_pool.h"

namespace engram::dispatch {

class CudaBackend final : public ComputeBackend {
 public:
  static constexpr absl::string_view kName = "cuda";

  struct Options {
    int device_ordinal = 0;  // which GPU (kernels::ListGpuDevices)
    // Borrowed, may be null: threads for the host side of the copies.
    kernels::ThreadPool* pool = nullptr;
    // The rest are kernels::GpuContext::Options, with its defaults.
    size_t staging_bytes = kernels::GpuContext::Options().staging_bytes;
    int max_streams = kernels::GpuContext::Options().max_streams;
    bool allow_tf32 = false;  // off: scores in full float32
    uint32_t gemm_min_queries = kernels::GpuContext::Options().gemm_min_queries;
    uint64_t memory_limit_bytes = 0;  // 0: the device's memory
    double spread_push_max_fraction =
        kernels::GpuContext::Options().spread_push_max_fraction;
  };

  // UNAVAILABLE when the build has no CUDA backend or the device is missing
  // or unusable (the message says which); INVALID_ARGUMENT for an option out
  // of range.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(
      const Options& options);

  absl::string_view name() const override { return kName; }
  BackendCapabilities Capabilities() const override;
  // INTERNAL when out->scores does not hold Q*M floats (a caller bug; M the
  // job's scored_targets()); INVALID_ARGUMENT for non-finite input in an
  // admitted row or a mask that does not cover the targets; device errors
  // as ToBackendError. A job's mask goes to the device with it.
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override;
  // Fills out->result (every node's activation); job.top_k is the
  // executor's to apply.
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override;
  // free/total device memory (cudaMemGetInfo, the pool's idle memory
  // counted as free).
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override;
  // GpuContext::UploadResident, errors as ToBackendError.
  absl::Status UploadResident(uint64_t key,
                              const kernels::MatrixView& rows) override;
  absl::Status EvictResident(uint64_t key) override;
  bool HoldsResident(uint64_t key) const override;
  uint64_t ResidentBytes() const override;
  // Resident matrices held and cosine calls that read one.
  kernels::GpuResidentStats resident_stats() const {
    return context_->ResidentStats();
  }

  const kernels::GpuDeviceInfo& device() const { return context_->device(); }
  // Whether the many-query path has cuBLAS, and what was loaded or why not.
  bool has_cublas() const { return context_->has_cublas(); }
  std::string cublas_status() const { return context_->cublas_status(); }

  // A GpuContext status as backend_errors.h classifies it: device OOM
  // becomes DeviceOutOfMemoryError, a sticky error StickyDeviceError; any
  // other status keeps its code and message.
  static absl::Status ToBackendError(const absl::Status& status);

 private:
  explicit CudaBackend(std::unique_ptr<kernels::GpuContext> context)
      : context_(std::move(context)) {}

  const std::unique_ptr<kernels::GpuContext> context_;
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CUDA_BACKEND_H_
