// What the GPU benchmarks (bench/gpu_cosine_benchmark.cc,
// bench/gpu_spread_benchmark.cc) share: finding the GPU (and exiting cleanly
// without one), the device's reference figures printed in the run's context
// (peak memory bandwidth, measured PCIe bandwidth), setting the inputs up,
// registering each case's gpu_device / gpu_host / cpu rows side by side with
// an untimed warm-up call, timing device work with CUDA events, bandwidth
// counters, and fast seeded input data.
//
// Built only with the CUDA backend.
#ifndef ENGRAM_BENCH_GPU_BENCHMARK_UTIL_H_
#define ENGRAM_BENCH_GPU_BENCHMARK_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "benchmark/benchmark.h"
#include "kernels/gpu_device.h"
#include "kernels/thread_pool.h"

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

// Runs `init`, which builds the inputs every benchmark shares; when it fails,
// prints "cannot set the benchmark up: <status>" to stderr and returns false
// (the caller then registers nothing).
bool SetUpInputs(absl::FunctionRef<absl::Status()> init);

// One benchmark row's body. `warm_up` is true the first time the row runs
// (Google Benchmark runs a body several times while it settles the
// iteration count): the body then makes one untimed call of its shape first
// (WarmUp()), so that one-time costs are not timed: lazy loading of the
// kernels' modules, the first cuBLAS call on a handle (~90 ms on an H200),
// a CudaBackend lane's streams and pinned buffers, the memory pool's growth
// to the shape, the CPU pool's first touch of its buffers.
using BenchmarkBody = std::function<void(benchmark::State&, bool warm_up)>;

// Registers one case's rows side by side, in microseconds:
// gpu_device/<name> (manual time: the body reports CUDA-event time),
// gpu_host/<name> and cpu/<name> (real time).
void RegisterSideBySide(absl::string_view name, BenchmarkBody gpu_device,
                        BenchmarkBody gpu_host, BenchmarkBody cpu);

// With `warm_up`, runs `call` once (untimed: call it before the timed loop)
// and ends the benchmark with its error if it fails; returns whether the
// benchmark may go on.
bool WarmUp(benchmark::State& state, bool warm_up,
            absl::FunctionRef<absl::Status()> call);

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
