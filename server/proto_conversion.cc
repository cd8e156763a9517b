#include "server/proto_conversion.h"

#include "core/validation.h"
#include "kernels/status_macros.h"

namespace engram::server {

core::Placement PlacementFromProto(pb::Placement placement) {
  switch (placement) {
    case pb::PLACEMENT_CPU_ONLY:
      return core::Placement::kCpuOnly;
    case pb::PLACEMENT_GPU_ONLY:
      return core::Placement::kGpuOnly;
    default:
      return core::Placement::kAuto;
  }
}

pb::Backend BackendToProto(core::BackendKind backend) {
  switch (backend) {
    case core::BackendKind::kCpu:
      return pb::BACKEND_CPU;
    case core::BackendKind::kGpu:
      return pb::BACKEND_GPU;
    case core::BackendKind::kMixed:
      return pb::BACKEND_MIXED;
    case core::BackendKind::kUnspecified:
      break;
  }
  return pb::BACKEND_UNSPECIFIED;
}

absl::StatusOr<core::CosineJob> CosineJobFromProto(
    const pb::BatchCosineRequest& request) {
  const pb::Matrix& q = request.queries();
  const pb::Matrix& t = request.targets();
  ENGRAM_RETURN_IF_ERROR(core::ValidateMatrixShape("queries", q.rows(),
                                                   q.cols(), q.values_size()));
  ENGRAM_RETURN_IF_ERROR(core::ValidateMatrixShape("targets", t.rows(),
                                                   t.cols(), t.values_size()));
  if (request.placement() != pb::PLACEMENT_AUTO &&
      request.placement() != pb::PLACEMENT_CPU_ONLY &&
      request.placement() != pb::PLACEMENT_GPU_ONLY) {
    return absl::InvalidArgumentError("placement has an unknown value");
  }
  core::CosineJob job;
  job.queries = kernels::MatrixView{q.values().data(), q.rows(), q.cols()};
  job.targets = kernels::MatrixView{t.values().data(), t.rows(), t.cols()};
  job.top_k = request.top_k();
  if (request.has_min_score()) job.min_score = request.min_score();
  job.placement = PlacementFromProto(request.placement());
  return job;
}

absl::StatusOr<core::SpreadJob> SpreadJobFromProto(
    const pb::SpreadRequest& request,
    std::vector<kernels::SpreadSeed>* seed_storage) {
  if (request.placement() != pb::PLACEMENT_AUTO &&
      request.placement() != pb::PLACEMENT_CPU_ONLY &&
      request.placement() != pb::PLACEMENT_GPU_ONLY) {
    return absl::InvalidArgumentError("placement has an unknown value");
  }
  const pb::Graph& g = request.graph();
  core::SpreadJob job;
  job.graph.num_nodes = g.num_nodes();
  job.graph.row_offsets =
      absl::MakeConstSpan(g.row_offsets().data(), g.row_offsets_size());
  job.graph.targets = absl::MakeConstSpan(g.targets().data(), g.targets_size());
  job.graph.weights = absl::MakeConstSpan(g.weights().data(), g.weights_size());

  seed_storage->clear();
  seed_storage->reserve(request.seeds_size());
  for (const pb::Seed& seed : request.seeds()) {
    seed_storage->push_back({seed.node(), seed.activation()});
  }
  job.seeds = *seed_storage;

  const pb::SpreadParams& p = request.params();
  kernels::SpreadParams& params = job.params;
  if (p.has_max_hops()) params.max_hops = p.max_hops();
  switch (p.decay_case()) {
    case pb::SpreadParams::kExponentialRate:
      params.decay = kernels::DecayKind::kExponential;
      params.decay_param = p.exponential_rate();
      break;
    case pb::SpreadParams::kPowerLawExponent:
      params.decay = kernels::DecayKind::kPowerLaw;
      params.decay_param = p.power_law_exponent();
      break;
    case pb::SpreadParams::kLinearSlope:
      params.decay = kernels::DecayKind::kLinear;
      params.decay_param = p.linear_slope();
      break;
    case pb::SpreadParams::kConstantFactor:
      params.decay = kernels::DecayKind::kConstant;
      params.decay_param = p.constant_factor();
      break;
    case pb::SpreadParams::DECAY_NOT_SET:
      break;  // the in-class default: exponential 0.7
  }
  if (p.has_threshold()) params.threshold = p.threshold();
  params.hop_thresholds.assign(p.hop_thresholds().begin(),
                               p.hop_thresholds().end());
  if (p.has_max_activation()) params.max_activation = p.max_activation();
  job.top_k = request.top_k();
  job.placement = PlacementFromProto(request.placement());
  return job;
}

void ReportToProto(const core::ExecutionReport& report,
                   pb::ExecutionReport* out) {
  out->set_backend(BackendToProto(report.backend));
  out->set_decided_by(report.decided_by);
  out->set_fallback_reason(report.fallback_reason);
  out->set_chunks(report.chunks);
  out->set_compute_seconds(report.compute_seconds);
}

}  // namespace engram::server
