#include "core/dispatch/cpu_backend.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cosine.h"
#include "kernels/cpu/spread.h"
#include "kernels/cpu/topk.h"

namespace engram::dispatch {

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(
    const Options& options) {
  return std::unique_ptr<CpuBackend>(new CpuBackend(options));
}

BackendCapabilities CpuBackend::Capabilities() const {
  BackendCapabilities c;
  c.name = std::string(kName);
  c.kind = BackendKind::kCpu;
  c.device_name = kernels::cpu::CosineSimdTarget();
  c.threads = options_.pool != nullptr ? options_.pool->num_threads() : 1;
  return c;
}

absl::Status CpuBackend::Cosine(const CosineJob& job, CosineOutput* out) {
  if (job.top_k == 0) {
    const size_t m = job.scored_targets();
    if (out->scores.size() != job.queries.rows * m) {
      return absl::InternalError(
          absl::StrCat("score buffer holds ", out->scores.size(),
                       " floats, expected ", job.queries.rows * m));
    }
    return kernels::cpu::CosineDense(job.queries, job.targets, job.mask,
                                     out->scores.data(), m, 0, options_.pool);
  }
  const float min_score = kernels::cpu::FlushSafeMinScore(
      job.min_score.value_or(-std::numeric_limits<float>::infinity()));
  return kernels::cpu::CosineTopK(job.queries, job.targets, job.mask, job.top_k,
                                  min_score, 0, options_.pool, &out->top);
}

absl::Status CpuBackend::Spread(const SpreadJob& job, SpreadOutput* out) {
  if (job.overlay != nullptr) {
    // Read through the changes: the same bits as the compact graph.
    return kernels::cpu::Spread(job.graph, *job.overlay, job.seeds, job.params,
                                options_.pool, &out->result,
                                kernels::cpu::SpreadMode::kAuto,
                                /*stats=*/nullptr, job.interrupt);
  }
  return kernels::cpu::Spread(job.graph, job.seeds, job.params, options_.pool,
                              &out->result, kernels::cpu::SpreadMode::kAuto,
                              /*stats=*/nullptr, job.interrupt);
}

absl::StatusOr<DeviceMemoryInfo> CpuBackend::QueryMemory() {
  return absl::UnimplementedError("the CPU backend has no device memory");
}

}  // namespace engram::dispatch
