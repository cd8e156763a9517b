#include "core/engine.h"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "core/spread_filters.h"
#include "kernels/cpu/cosine.h"
#include "kernels/gpu_device.h"
#include "kernels/row_checks.h"

namespace engram::core {

Engine::Engine(const Options& options,
               std::shared_ptr<prometheus::Registry> registry)
    : options_(options), registry_(std::move(registry)) {}

Engine::~Engine() {
  // Batchers fail their waiting calls and wait for their passes, which run
  // on the pool; then no pass touches the device cache any more, and it may
  // go (its upload thread reports into resident_metrics_, which goes last).
  resident_.reset();
  residency_.reset();
  // Queued tasks may still call into the executor: let them finish first.
  pool_.reset();
}

Engine::BuildInfo Engine::Build() {
  BuildInfo info;
  info.cuda_built = kernels::BuiltWithCuda();
  info.simd_target = kernels::cpu::CosineSimdTarget();
  return info;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(
    const Options& options, std::shared_ptr<prometheus::Registry> registry) {
  if (options.worker_threads < 0) {
    return absl::InvalidArgumentError("worker_threads must be >= 0");
  }
  ENGRAM_RETURN_IF_ERROR(ValidateLimits(options.limits));
  if (registry == nullptr) {
    return absl::InvalidArgumentError("a metrics registry is required");
  }
  auto engine =
      std::unique_ptr<Engine>(new Engine(options, std::move(registry)));
  Engine& e = *engine;
  e.metrics_ = std::make_unique<EngineMetrics>(*e.registry_);
  e.pool_ = std::make_unique<kernels::ThreadPool>(options.worker_threads);
  ENGRAM_ASSIGN_OR_RETURN(e.cpu_,
                          dispatch::CpuBackend::Create({e.pool_.get()}));

  if (options.gpu_backend) {
    ENGRAM_ASSIGN_OR_RETURN(e.gpu_, options.gpu_backend(e.pool_.get()));
    if (e.gpu_ == nullptr) {
      return absl::InvalidArgumentError("gpu_backend made no backend");
    }
    e.device_name_ = e.gpu_->Capabilities().device_name;
  } else {
    // The first GPU the CUDA backend can use; without one (no driver, no
    // device, a device this build's kernels cannot run on, a CPU-only build)
    // the reason is kept for GPU-only refusals and the logs.
    auto devices = kernels::ListGpuDevices();
    if (!devices.ok()) {
      e.gpu_unavailable_reason_ = std::string(devices.status().message());
    } else {
      for (const kernels::GpuDeviceInfo& device : *devices) {
        dispatch::CudaBackend::Options cuda;
        cuda.device_ordinal = device.ordinal;
        cuda.pool = e.pool_.get();
        auto backend = dispatch::CudaBackend::Create(cuda);
        if (backend.ok()) {
          e.device_name_ = device.name;
          e.gpu_ = *std::move(backend);
          e.gpu_unavailable_reason_.clear();
          break;
        }
        absl::StrAppend(&e.gpu_unavailable_reason_,
                        e.gpu_unavailable_reason_.empty() ? "" : "; ",
                        backend.status().message());
      }
    }
  }

  dispatch::HybridConfig config;
  if (!options.hybrid_config_path.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(
        config, dispatch::LoadHybridConfigFile(options.hybrid_config_path,
                                               e.device_name_));
  }
  ENGRAM_ASSIGN_OR_RETURN(e.config_, dispatch::ConfigStore::Create(config));

  dispatch::HybridExecutor::Options executor;
  executor.cpu = e.cpu_.get();
  executor.gpu = e.gpu_.get();
  executor.gpu_unavailable_reason = e.gpu_unavailable_reason_;
  executor.config = e.config_.get();
  executor.observer = e.metrics_.get();
  ENGRAM_ASSIGN_OR_RETURN(e.executor_,
                          dispatch::HybridExecutor::Create(executor));

  EngineCollector::Sources sources;
  sources.breaker = &e.executor_->breaker();
  sources.model = &e.executor_->performance_model();
  sources.memory = e.executor_->memory_monitor();
  sources.ledger = e.executor_->memory_ledger();
  sources.catalog = options.resident.catalog.get();
  e.collector_ = std::make_shared<EngineCollector>(e.registry_, sources);

  // One batched search pass: every segment of the collection through the
  // dispatch engine, as one multi-query cosine job each.
  Engine* self = &e;
  collections::BatchExecutor execute = [self](
                                           const collections::BatchPass& pass,
                                           collections::BatchPassOutput* out) {
    dispatch::ExecutionReport report;
    double seconds = 0;
    uint32_t chunks = 0;
    // Least recently used device copies are evicted first.
    if (self->residency_ != nullptr) self->residency_->Touch(*pass.collection);
    ENGRAM_RETURN_IF_ERROR(collections::SearchSegments(
        pass,
        [&](const kernels::MatrixView& queries,
            const collections::Segment& segment, const kernels::RowMask& mask,
            uint32_t top_k, std::optional<float> min_score,
            std::vector<kernels::TopKList>* lists) {
          dispatch::CosineJob job;
          job.queries = queries;
          job.targets = segment.vectors();
          job.mask = mask;
          job.top_k = top_k;
          job.min_score = min_score;
          job.placement = pass.placement;
          // The segment's identity lets a GPU backend holding a resident
          // copy of it read that instead of copying the rows in.
          job.resident_targets = segment.id();
          dispatch::CosineOutput result;
          ENGRAM_RETURN_IF_ERROR(self->CosineResident(job, &result));
          *lists = std::move(result.top);
          seconds += result.report.compute_seconds;
          chunks += result.report.chunks;
          report = std::move(result.report);
          return absl::OkStatus();
        },
        &out->top));
    report.compute_seconds = seconds;
    report.chunks = chunks;
    out->report = std::move(report);
    return absl::OkStatus();
  };
  e.resident_metrics_ =
      std::make_unique<collections::ResidentMetrics>(*e.registry_);
  if (e.gpu_ != nullptr && e.gpu_->Capabilities().supports_residency) {
    e.residency_metrics_ =
        std::make_unique<residency::DeviceResidencyMetrics>(*e.registry_);
    residency::DeviceResidency::Options residency;
    residency.gpu = e.gpu_.get();
    residency.memory = e.executor_->memory_monitor();
    residency.resident_metrics = e.resident_metrics_.get();
    residency.metrics = e.residency_metrics_.get();
    ENGRAM_ASSIGN_OR_RETURN(e.residency_,
                            residency::DeviceResidency::Create(residency));
  }
  ENGRAM_ASSIGN_OR_RETURN(
      e.resident_,
      ResidentData::Create(
          options.resident, options.limits, std::move(execute),
          [self](absl::AnyInvocable<void()> task) {
            self->Submit(std::move(task));
          },
          e.resident_metrics_.get(), e.residency_.get(), *e.registry_));
  return engine;
}

std::string Engine::ResidencyOf(uint64_t uid) const {
  if (residency_ == nullptr) return "host";
  return residency_->Describe(uid).label;
}

bool Engine::WaitForResidency(absl::Duration timeout) const {
  return residency_ == nullptr || residency_->WaitIdle(timeout);
}

void Engine::Submit(absl::AnyInvocable<void()> task) {
  pool_->Schedule(std::move(task));
}

std::string Engine::gpu_name() const {
  return gpu_ == nullptr ? "" : std::string(gpu_->name());
}

EngineStats Engine::Stats() const {
  return metrics_->Stats(collector_->Refresh());
}

absl::StatusOr<std::vector<std::string>> Engine::ReloadConfig() {
  if (options_.hybrid_config_path.empty()) {
    return absl::FailedPreconditionError(
        "no hybrid config file was given at start-up");
  }
  const std::shared_ptr<const dispatch::HybridConfig> before = config_->Get();
  ENGRAM_ASSIGN_OR_RETURN(dispatch::HybridConfig next,
                          dispatch::LoadHybridConfigFile(
                              options_.hybrid_config_path, device_name_));
  // A calibration measured on this machine keeps its thresholds.
  executor_->AdjustConfig(&next);
  ENGRAM_RETURN_IF_ERROR(config_->Update(next));
  return dispatch::RestartOnlyChanges(*before, next);
}

absl::Status Engine::Cosine(const dispatch::CosineJob& job,
                            dispatch::CosineOutput* out) {
  return CosineWithin(options_.limits, job, out);
}

absl::Status Engine::CosineResident(const dispatch::CosineJob& job,
                                    dispatch::CosineOutput* out) {
  RequestLimits limits = options_.limits;
  const uint64_t targets =
      static_cast<uint64_t>(job.targets.rows) * job.targets.cols;
  if (limits.max_input_elements <= UINT64_MAX - targets) {
    limits.max_input_elements += targets;
  } else {
    limits.max_input_elements = UINT64_MAX;
  }
  return CosineWithin(limits, job, out);
}

absl::Status Engine::CosineWithin(const RequestLimits& limits,
                                  const dispatch::CosineJob& job,
                                  dispatch::CosineOutput* out) {
  ENGRAM_RETURN_IF_ERROR(ValidateCosineJob(job, limits));
  // A mask's excluded rows have no scores: Q*M, M = N without a mask.
  const uint64_t scored = job.scored_targets();
  if (job.top_k == 0 && out->scores.size() != job.queries.rows * scored) {
    return absl::InternalError(
        absl::StrCat("score buffer holds ", out->scores.size(),
                     " floats, expected Q*M = ", job.queries.rows * scored));
  }
  // Chunks split the queries; checking them here numbers a bad row in the
  // whole request. The pass is Q*d against the Q*N*d of the work.
  ENGRAM_RETURN_IF_ERROR(kernels::CheckFiniteRows("queries", job.queries));
  return executor_->Cosine(job, out);
}

absl::Status Engine::Spread(const dispatch::SpreadJob& job,
                            dispatch::SpreadOutput* out) {
  ENGRAM_RETURN_IF_ERROR(ValidateSpreadJob(job, options_.limits));
  out->seeds_ignored = 0;
  if (job.seed_nodes.empty() && job.result_nodes.empty()) {
    return executor_->Spread(job, out);
  }
  // The filters apply around the dispatch, the same whatever runs it.
  dispatch::SpreadJob inner = job;
  inner.seed_nodes = {};
  inner.result_nodes = {};
  uint32_t ignored = 0;
  std::vector<kernels::SpreadSeed> admitted;
  if (!job.seed_nodes.empty()) {
    admitted = AdmittedSeeds(job.seeds, NodeSet(job.seed_nodes), &ignored);
    inner.seeds = admitted;
  }
  const NodeSet results(job.result_nodes);
  // The top list is chosen among the admitted nodes only.
  if (!results.admits_all()) inner.top_k = 0;
  ENGRAM_RETURN_IF_ERROR(executor_->Spread(inner, out));
  out->seeds_ignored = ignored;
  RestrictResult(results, job.top_k, out);
  return absl::OkStatus();
}

}  // namespace engram::core
