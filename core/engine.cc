#include "core/engine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "kernels/gpu_device.h"
#include "kernels/status_macros.h"

namespace engram::core {

Engine::Engine(const Options& options,
               std::shared_ptr<prometheus::Registry> registry)
    : options_(options), registry_(std::move(registry)) {}

Engine::~Engine() {
  // Queued tasks may still call into the executor: let them finish first.
  pool_.reset();
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
  ENGRAM_ASSIGN_OR_RETURN(e.cpu_, CpuBackend::Create({e.pool_.get()}));

  if (options.simulated_gpu.has_value()) {
    SimulatedGpuBackend::Options sim = *options.simulated_gpu;
    sim.pool = e.pool_.get();
    ENGRAM_ASSIGN_OR_RETURN(e.gpu_, SimulatedGpuBackend::Create(sim));
    e.device_name_ = sim.device_name;
  } else {
    // The first GPU the CUDA backend can use; without one (no driver, no
    // device, a device this build's kernels cannot run on, a CPU-only build)
    // the reason is kept for GPU-only refusals and the logs.
    auto devices = kernels::ListGpuDevices();
    if (!devices.ok()) {
      e.gpu_unavailable_reason_ = std::string(devices.status().message());
    } else {
      for (const kernels::GpuDeviceInfo& device : *devices) {
        CudaBackend::Options cuda;
        cuda.device_ordinal = device.ordinal;
        cuda.pool = e.pool_.get();
        auto backend = CudaBackend::Create(cuda);
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

  HybridConfig config;
  if (!options.hybrid_config_path.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(
        config,
        LoadHybridConfigFile(options.hybrid_config_path, e.device_name_));
  }
  ENGRAM_ASSIGN_OR_RETURN(e.config_, ConfigStore::Create(config));

  HybridExecutor::Options executor;
  executor.cpu = e.cpu_.get();
  executor.gpu = e.gpu_.get();
  executor.gpu_unavailable_reason = e.gpu_unavailable_reason_;
  executor.config = e.config_.get();
  executor.observer = e.metrics_.get();
  ENGRAM_ASSIGN_OR_RETURN(e.executor_, HybridExecutor::Create(executor));

  EngineCollector::Sources sources;
  sources.breaker = &e.executor_->breaker();
  sources.model = &e.executor_->performance_model();
  sources.memory = e.executor_->memory_monitor();
  e.collector_ = std::make_shared<EngineCollector>(e.registry_, sources);
  return engine;
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
  const std::shared_ptr<const HybridConfig> before = config_->Get();
  ENGRAM_ASSIGN_OR_RETURN(
      HybridConfig next,
      LoadHybridConfigFile(options_.hybrid_config_path, device_name_));
  ENGRAM_RETURN_IF_ERROR(config_->Update(next));
  return RestartOnlyChanges(*before, next);
}

absl::Status Engine::Cosine(const CosineJob& job, CosineOutput* out) {
  ENGRAM_RETURN_IF_ERROR(ValidateCosineJob(job, options_.limits));
  if (job.top_k == 0 &&
      out->scores.size() != job.queries.rows * job.targets.rows) {
    return absl::InternalError(absl::StrCat(
        "score buffer holds ", out->scores.size(),
        " floats, expected Q*N = ", job.queries.rows * job.targets.rows));
  }
  // Chunks split the queries; checking them here numbers a bad row in the
  // whole request. The pass is Q*d against the Q*N*d of the work.
  ENGRAM_RETURN_IF_ERROR(ValidateFiniteRows("queries", job.queries));
  return executor_->Cosine(job, out);
}

absl::Status Engine::Spread(const SpreadJob& job, SpreadOutput* out) {
  ENGRAM_RETURN_IF_ERROR(ValidateSpreadJob(job, options_.limits));
  return executor_->Spread(job, out);
}

}  // namespace engram::core
