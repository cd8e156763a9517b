// engram-calibrate: measures where the GPU starts to beat the CPU on this
// machine and prints the crossover table and a config profile to paste into
// the hybrid config file (hybrid_config.h).
//
//   engram-calibrate                   # CPU vs the CUDA backend's GPU 0
//   engram-calibrate --simulated_gpu   # CPU vs the simulated device (demo)
//
// The GPU measured is the CUDA backend (core/dispatch/cuda_backend.h) on
// --gpu_device when the build has it and the GPU is usable; otherwise the
// CPU alone, saying why. --simulated_gpu measures against the
// fault-injecting simulated device instead, which shows the procedure but
// not real hardware. Each size is run --warmup_calls times untimed first
// (calibration.h says why), then --repetitions times timed.
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "core/dispatch/calibration.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "kernels/thread_pool.h"

ABSL_FLAG(int, threads, 0, "CPU worker threads; 0: one per hardware thread");
ABSL_FLAG(bool, simulated_gpu, false,
          "measure against the simulated device instead of a real GPU");
ABSL_FLAG(double, simulated_launch_us, 20.0,
          "simulated device: launch overhead in microseconds");
ABSL_FLAG(double, simulated_seconds_per_unit, 1e-12,
          "simulated device: seconds per unit of work");
ABSL_FLAG(int, gpu_device, 0, "which GPU the CUDA backend measures");
ABSL_FLAG(uint32_t, warmup_calls, 1,
          "untimed runs per size and backend before the timed ones "
          "(first-call costs: streams, pinned buffers, pool growth, cuBLAS)");
ABSL_FLAG(uint32_t, repetitions, 3, "timed runs per size (median reported)");
ABSL_FLAG(uint32_t, cosine_dim, 128, "vector dimension of the cosine sweep");
ABSL_FLAG(uint32_t, cosine_targets, 4096, "targets N of the cosine sweep");
ABSL_FLAG(std::vector<std::string>, cosine_queries,
          std::vector<std::string>({"1", "8", "64", "512"}),
          "query counts Q of the cosine sweep");
ABSL_FLAG(std::vector<std::string>, spread_nodes,
          std::vector<std::string>({"1000", "10000", "100000"}),
          "graph sizes of the spreading sweep");
ABSL_FLAG(uint64_t, seed, 42, "seed of the random data");

namespace {

bool ParseList(const std::vector<std::string>& in, const char* flag,
               std::vector<uint32_t>* out) {
  for (const std::string& s : in) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(s, &v) || v == 0) {
      std::cerr << "--" << flag << ": \"" << s
                << "\" is not a positive integer\n";
      return false;
    }
    out->push_back(v);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using engram::dispatch::CalibrationOptions;
  CalibrationOptions options;
  options.warmup_calls = absl::GetFlag(FLAGS_warmup_calls);
  options.repetitions = absl::GetFlag(FLAGS_repetitions);
  options.cosine_dim = absl::GetFlag(FLAGS_cosine_dim);
  options.cosine_targets = absl::GetFlag(FLAGS_cosine_targets);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.cosine_queries.clear();
  options.spread_nodes.clear();
  if (!ParseList(absl::GetFlag(FLAGS_cosine_queries), "cosine_queries",
                 &options.cosine_queries) ||
      !ParseList(absl::GetFlag(FLAGS_spread_nodes), "spread_nodes",
                 &options.spread_nodes)) {
    return 2;
  }

  engram::kernels::ThreadPool pool(absl::GetFlag(FLAGS_threads));
  engram::dispatch::CpuBackend::Options cpu_options;
  cpu_options.pool = &pool;
  auto cpu = engram::dispatch::CpuBackend::Create(cpu_options);
  if (!cpu.ok()) {
    std::cerr << cpu.status() << "\n";
    return 1;
  }
  std::unique_ptr<engram::dispatch::ComputeBackend> gpu;
  if (absl::GetFlag(FLAGS_simulated_gpu)) {
    engram::dispatch::testing::SimulatedGpuBackend::Options sim;
    sim.pool = &pool;
    sim.launch_overhead =
        absl::Microseconds(absl::GetFlag(FLAGS_simulated_launch_us));
    sim.seconds_per_unit = absl::GetFlag(FLAGS_simulated_seconds_per_unit);
    auto backend = engram::dispatch::testing::SimulatedGpuBackend::Create(sim);
    if (!backend.ok()) {
      std::cerr << backend.status() << "\n";
      return 2;
    }
    gpu = *std::move(backend);
  } else {
    engram::dispatch::CudaBackend::Options cuda;
    cuda.device_ordinal = absl::GetFlag(FLAGS_gpu_device);
    cuda.pool = &pool;
    auto backend = engram::dispatch::CudaBackend::Create(cuda);
    if (backend.ok()) {
      gpu = *std::move(backend);
    } else {
      std::cerr << "no GPU backend to measure (" << backend.status().message()
                << "); measuring the CPU only. --simulated_gpu demonstrates "
                   "the crossover against the simulated device.\n";
    }
  }
  auto table = engram::dispatch::RunCalibration(**cpu, gpu.get(), options,
                                                nullptr, nullptr);
  if (!table.ok()) {
    std::cerr << table.status() << "\n";
    return 1;
  }
  std::cout << engram::dispatch::FormatCrossoverTable(*table);
  const std::string profile = engram::dispatch::FormatCrossoverProfile(*table);
  if (!profile.empty()) std::cout << "\n" << profile;
  return 0;
}
