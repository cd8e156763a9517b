// The CPU-only build's side of kernels/gpu_device.h: no GPU is ever found and
// no GpuContext can be created.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kernels/gpu_device.h"

namespace engram::kernels {
namespace {

constexpr absl::string_view kNotBuilt = "built without the CUDA backend";

}  // namespace

bool BuiltWithCuda() { return false; }

absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices() {
  return absl::UnavailableError(kNotBuilt);
}

// Never instantiated: Create() always fails.
struct GpuContext::Impl {
  GpuDeviceInfo device;
};

GpuContext::GpuContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuContext::~GpuContext() = default;

absl::StatusOr<std::unique_ptr<GpuContext>> GpuContext::Create(
    const Options& /*options*/) {
  return absl::UnavailableError(kNotBuilt);
}

const GpuDeviceInfo& GpuContext::device() const { return impl_->device; }

bool GpuContext::has_cublas() const { return false; }

std::string GpuContext::cublas_status() const { return std::string(kNotBuilt); }

absl::Status GpuContext::CosineDense(const MatrixView& /*queries*/,
                                     const MatrixView& /*targets*/,
                                     float* /*out*/, size_t /*out_stride*/,
                                     uint32_t /*index_offset*/,
                                     uint64_t /*resident_key*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::Status GpuContext::CosineTopK(const MatrixView& /*queries*/,
                                    const MatrixView& /*targets*/,
                                    uint32_t /*k*/, float /*min_score*/,
                                    uint32_t /*index_offset*/,
                                    std::vector<TopKList>* /*out*/,
                                    uint64_t /*resident_key*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::Status GpuContext::CosineDense(const MatrixView& /*queries*/,
                                     const MatrixView& /*targets*/,
                                     const RowMask& /*mask*/, float* /*out*/,
                                     size_t /*out_stride*/,
                                     uint32_t /*index_offset*/,
                                     uint64_t /*resident_key*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::Status GpuContext::CosineTopK(const MatrixView& /*queries*/,
                                    const MatrixView& /*targets*/,
                                    const RowMask& /*mask*/, uint32_t /*k*/,
                                    float /*min_score*/,
                                    uint32_t /*index_offset*/,
                                    std::vector<TopKList>* /*out*/,
                                    uint64_t /*resident_key*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::Status GpuContext::UploadResident(uint64_t /*key*/,
                                        const MatrixView& /*rows*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::Status GpuContext::EvictResident(uint64_t /*key*/) {
  return absl::UnavailableError(kNotBuilt);
}

bool GpuContext::HoldsResident(uint64_t /*key*/) const { return false; }

GpuResidentStats GpuContext::ResidentStats() const {
  return GpuResidentStats();
}

absl::Status GpuContext::Spread(const GraphView& /*graph*/,
                                absl::Span<const SpreadSeed> /*seeds*/,
                                const SpreadParams& /*params*/,
                                uint32_t /*top_k*/, SpreadResult* /*out*/,
                                TopKList* /*top*/,
                                const base::Interrupt* /*interrupt*/) {
  return absl::UnavailableError(kNotBuilt);
}

absl::StatusOr<GpuMemoryInfo> GpuContext::QueryMemory() {
  return absl::UnavailableError(kNotBuilt);
}

}  // namespace engram::kernels
