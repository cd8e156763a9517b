// What the GPU benchmarks (bench/gpu_cosine_benchmark.cc,
// bench/gpu_spread_benchmark.cc) share: finding the GPU (and exiting cleanly
// without one), the device's reference figures printed in the run's context
// (peak memory bandwidth, measured PCIe bandwidth), timing device work with
// CUDA events, bandwidth counters, and fast seeded input data.
//
// Built only with the CUDA backend.
#ifndef ENGRAM_BENCH_GPU_BENCHMARK_UTIL_H_
#define ENGRAM_BENCH_GPU_BENCHMARK_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/gpu_device.h"

namespace engram::bench {

// The device's figures the counters compare against, measured once at start.
struct GpuReference {
  kernels::GpuDeviceInfo device;
  double peak_memory_bytes_per_s = 0;  // from clock and bus width
  double pcie_h2d_bytes_per_s = 0;     // pinned host to device, 256 MiB
  double pcie_d2h_bytes_per_s = 0;     // device to pinned host, 256 MiB
};

// Parses the benchmark flags, finds GPU 0 and, with one, measures the
// reference figures, adds them to the run's context, calls `register_all`
// and runs the benchmarks. Without a GPU it prints why and returns 0 (a clean
// skip). Returns the process's exit status.
int RunGpuBenchmarks(int argc, char** argv,
                     absl::FunctionRef<void(const GpuReference&)> register_all);

// Times device work with CUDA events on `stream`: Start() before enqueueing
// it, Stop() after; Stop() waits and returns the seconds between the two.
class EventTimer {
 public:
  explicit EventTimer(cudaStream_t stream);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void Start();
  double Stop();

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

// Sets the counters `name` (bytes_per_iteration as a rate, in bytes/s) and
// `name`_of_peak (that rate as a fraction of reference_bytes_per_s).
void SetBandwidth(benchmark::State& state, const char* name,
                  double bytes_per_iteration, double reference_bytes_per_s);

// Ends the benchmark with the status's message when it is not OK; returns
// whether it was OK.
bool Check(benchmark::State& state, const absl::Status& status);

// count floats uniform in [-1, 1), from `seed`, filled in parallel on `pool`
// (a counter-based generator, so the result does not depend on the pool).
void FillUniform(float* data, size_t count, uint64_t seed,
                 kernels::ThreadPool& pool);

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_GPU_BENCHMARK_UTIL_H_
