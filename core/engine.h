// The engine: the one entry point through which every request is computed.
//
// Engine::Cosine and Engine::Spread validate the job (core/validation.h) and
// hand it to the HybridExecutor (core/dispatch/hybrid_executor.h), which
// decides CPU or GPU, chunks to fit GPU memory, recovers from out-of-memory
// and device errors on the CPU, and fills the ExecutionReport. The engine
// owns the worker pool, the backends, the hybrid configuration and the
// engine's metrics.
//
// The calls block the calling thread; the server calls them from Submit()ted
// tasks so that gRPC's threads only parse and respond.
//
// Thread-safety: all methods may be called concurrently from any thread.
#ifndef ENGRAM_CORE_ENGINE_H_
#define ENGRAM_CORE_ENGINE_H_

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/hybrid_config.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/jobs.h"
#include "core/engine_collector.h"
#include "core/engine_metrics.h"
#include "core/engine_stats.h"
#include "core/residency/device_residency.h"
#include "core/resident_data.h"
#include "core/validation.h"
#include "kernels/thread_pool.h"
#include "prometheus/registry.h"

namespace engram::core {

class Engine {
 public:
  struct Options {
    // CPU worker threads for requests and kernels; 0: one per hardware
    // thread.
    int worker_threads = 0;
    RequestLimits limits;
    // Hybrid dispatch configuration file (hybrid_config.h format); empty:
    // the documented defaults.
    std::string hybrid_config_path;
    // When set, the GPU backend is the one this makes (over the engine's
    // worker pool) instead of the first usable CUDA device: how tests and
    // demos inject the simulated device (core/dispatch/testing/). Its
    // Capabilities().device_name selects the hybrid configuration profile.
    dispatch::GpuBackendFactory gpu_backend;
    // Resident collections and graphs: their memory budget and the search
    // batching (core/resident_data.h).
    ResidentOptions resident;
  };

  // Validates `options`, loads the hybrid configuration, finds the GPU (if
  // any) and registers the engine's metrics in `registry`.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const Options& options, std::shared_ptr<prometheus::Registry> registry);
  ~Engine();

  // Computes `job` into *out. When job.top_k == 0, out->scores must already
  // hold Q*M floats, M the job's scored_targets() (N without a mask; the
  // caller sizes it after ValidateCosineJob). Errors:
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for bad or oversized input;
  // for PLACEMENT_GPU_ONLY, UNAVAILABLE (no GPU, breaker open, GPU failed) or
  // RESOURCE_EXHAUSTED (does not fit the GPU).
  absl::Status Cosine(const dispatch::CosineJob& job,
                      dispatch::CosineOutput* out);

  // Computes `job` into *out (activation of every node, and the top list
  // when job.top_k > 0). Errors as for Cosine.
  absl::Status Spread(const dispatch::SpreadJob& job,
                      dispatch::SpreadOutput* out);

  // Cosine of job.queries against rows held resident (a collection
  // segment): as Cosine, except that the targets do not count against
  // limits().max_input_elements, since they were admitted by the resident
  // memory budget when they were uploaded. The queries and the output still
  // do.
  absl::Status CosineResident(const dispatch::CosineJob& job,
                              dispatch::CosineOutput* out);

  // Runs `task` on the engine's worker threads.
  void Submit(absl::AnyInvocable<void()> task);

  // Re-reads Options::hybrid_config_path and swaps the configuration in
  // atomically; requests in flight finish with the one they started with.
  // Fields marked (restart) in hybrid_config.h keep their start-up values;
  // the returned list names those that changed in the file.
  absl::StatusOr<std::vector<std::string>> ReloadConfig();

  // What this build and process are made of, for logs and engram_build_info.
  struct BuildInfo {
    bool cuda_built = false;  // the CUDA backend was compiled in
    std::string simd_target;  // the CPU kernels' selected SIMD target
  };
  static BuildInfo Build();

  const RequestLimits& limits() const { return options_.limits; }
  bool gpu_available() const { return gpu_ != nullptr; }
  // The GPU backend's name ("simulated-gpu", "cuda"), or empty.
  std::string gpu_name() const;
  // Why no GPU is used ("built without the CUDA backend", ...); empty when a
  // GPU is available.
  const std::string& gpu_unavailable_reason() const {
    return gpu_unavailable_reason_;
  }
  const EngineMetrics& metrics() const { return *metrics_; }
  // What the exposer scrapes: the registry's families with the gauges
  // derived from component state refreshed first (EngineCollector).
  std::shared_ptr<prometheus::Collectable> collectable() const {
    return collector_;
  }
  // GetStats' numbers: refreshes the derived gauges from one snapshot and
  // reads the structured stats from the same children /metrics exposes.
  EngineStats Stats() const;
  dispatch::HybridExecutor& executor() { return *executor_; }
  std::shared_ptr<const dispatch::HybridConfig> config() const {
    return config_->Get();
  }
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // The resident collections, graphs and search batchers.
  ResidentData& resident() { return *resident_; }
  // Where the rows of the collection with `uid` (CollectionInfo::uid) are:
  // "host", "host+gpu" or "host+gpu-partial" (DescribeCollection's
  // residency).
  std::string ResidencyOf(uint64_t uid) const;
  // Blocks until the GPU copies queued so far are uploaded (start-up, before
  // SERVING) or `timeout` passes; true without a device cache.
  bool WaitForResidency(absl::Duration timeout) const;

 private:
  Engine(const Options& options,
         std::shared_ptr<prometheus::Registry> registry);

  // Cosine and CosineResident: validates `job` against `limits`, then runs
  // it on the executor.
  absl::Status CosineWithin(const RequestLimits& limits,
                            const dispatch::CosineJob& job,
                            dispatch::CosineOutput* out);

  const Options options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<EngineMetrics> metrics_;
  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<dispatch::ComputeBackend> cpu_;
  std::unique_ptr<dispatch::ComputeBackend> gpu_;  // null without a usable GPU
  std::string gpu_unavailable_reason_;
  std::string device_name_;  // selects hybrid config profiles
  std::unique_ptr<dispatch::ConfigStore> config_;
  std::unique_ptr<dispatch::HybridExecutor> executor_;
  std::shared_ptr<EngineCollector> collector_;
  // The resident stores' metrics, and the GPU copies of their segments (null
  // without a GPU that supports residency). Both outlive resident_, whose
  // store tells the cache of commits and deletions.
  std::unique_ptr<collections::ResidentMetrics> resident_metrics_;
  std::unique_ptr<residency::DeviceResidencyMetrics> residency_metrics_;
  std::unique_ptr<residency::DeviceResidency> residency_;
  // Destroyed before the pool: its batchers' passes run on the workers.
  std::unique_ptr<ResidentData> resident_;
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_ENGINE_H_
