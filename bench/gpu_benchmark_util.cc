#include "bench/gpu_benchmark_util.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"

namespace engram::bench {
namespace {

constexpr size_t kPcieBytes = size_t{256} << 20;

// Pinned-memory copy bandwidth in each direction, the best of three.
absl::Status MeasurePcie(GpuReference* reference) {
  using kernels::cuda::CudaStream;
  using kernels::cuda::DeviceArray;
  using kernels::cuda::PinnedBuffer;
  ENGRAM_ASSIGN_OR_RETURN(PinnedBuffer host,
                          PinnedBuffer::Allocate(kPcieBytes));
  ENGRAM_ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create());
  cudaMemPool_t pool = nullptr;
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetDefaultMemPool(&pool, reference->device.ordinal));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<char> device,
      DeviceArray<char>::Allocate(kPcieBytes, pool, stream.get()));
  double h2d = 0, d2h = 0;
  EventTimer timer(stream.get());
  for (int i = 0; i < 3; ++i) {
    timer.Start();
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device.get(), host.get(), kPcieBytes,
                        cudaMemcpyHostToDevice, stream.get()));
    const double up = timer.Stop();
    timer.Start();
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host.get(), device.get(), kPcieBytes,
                        cudaMemcpyDeviceToHost, stream.get()));
    const double down = timer.Stop();
    if (up > 0) h2d = std::max(h2d, kPcieBytes / up);
    if (down > 0) d2h = std::max(d2h, kPcieBytes / down);
  }
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream.get()));
  reference->pcie_h2d_bytes_per_s = h2d;
  reference->pcie_d2h_bytes_per_s = d2h;
  return absl::OkStatus();
}

std::string GBps(double bytes_per_s) {
  return absl::StrFormat("%.1f GB/s", bytes_per_s / 1e9);
}

}  // namespace

int RunGpuBenchmarks(
    int argc, char** argv,
    absl::FunctionRef<void(const GpuReference&)> register_all) {
  benchmark::Initialize(&argc, argv);
  auto devices = kernels::ListGpuDevices();
  if (!devices.ok()) {
    std::printf("skipped: no GPU: %s\n",
                std::string(devices.status().message()).c_str());
    return 0;
  }
  GpuReference reference;
  reference.device = devices->front();
  reference.peak_memory_bytes_per_s = reference.device.PeakMemoryBandwidth();
  if (cudaSetDevice(reference.device.ordinal) != cudaSuccess) {
    std::printf("skipped: GPU %d cannot be selected\n",
                reference.device.ordinal);
    return 0;
  }
  const absl::Status pcie = MeasurePcie(&reference);
  if (!pcie.ok()) {
    std::fprintf(stderr, "cannot measure PCIe: %s\n", pcie.ToString().c_str());
    return 1;
  }
  const kernels::GpuDeviceInfo& d = reference.device;
  benchmark::AddCustomContext(
      "gpu", absl::StrCat(d.name, " (sm_", d.compute_capability_major,
                          d.compute_capability_minor, ", ", d.multiprocessors,
                          " SMs, ", d.total_memory_bytes >> 20, " MiB)"));
  benchmark::AddCustomContext(
      "gpu_peak_memory_bandwidth",
      absl::StrCat(GBps(reference.peak_memory_bytes_per_s), " (",
                   d.memory_clock_khz / 1000, " MHz x ",
                   d.memory_bus_width_bits, " bit x 2)"));
  benchmark::AddCustomContext("pcie_host_to_device",
                              GBps(reference.pcie_h2d_bytes_per_s));
  benchmark::AddCustomContext("pcie_device_to_host",
                              GBps(reference.pcie_d2h_bytes_per_s));
  register_all(reference);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

EventTimer::EventTimer(cudaStream_t stream) : stream_(stream) {
  // Without events the timings read 0, which the counters show plainly.
  if (cudaEventCreate(&start_) != cudaSuccess) start_ = nullptr;
  if (cudaEventCreate(&stop_) != cudaSuccess) stop_ = nullptr;
}

EventTimer::~EventTimer() {
  if (start_ != nullptr) static_cast<void>(cudaEventDestroy(start_));
  if (stop_ != nullptr) static_cast<void>(cudaEventDestroy(stop_));
}

void EventTimer::Start() {
  if (start_ != nullptr) static_cast<void>(cudaEventRecord(start_, stream_));
}

double EventTimer::Stop() {
  if (start_ == nullptr || stop_ == nullptr) return 0.0;
  float ms = 0.0f;
  if (cudaEventRecord(stop_, stream_) != cudaSuccess ||
      cudaEventSynchronize(stop_) != cudaSuccess ||
      cudaEventElapsedTime(&ms, start_, stop_) != cudaSuccess) {
    return 0.0;
  }
  return ms * 1e-3;
}

void SetBandwidth(benchmark::State& state, const char* name,
                  double bytes_per_iteration, double reference_bytes_per_s) {
  state.counters[name] = benchmark::Counter(
      bytes_per_iteration, benchmark::Counter::kIsIterationInvariantRate,
      benchmark::Counter::kIs1000);
  if (reference_bytes_per_s > 0) {
    state.counters[absl::StrCat(name, "_of_peak")] =
        benchmark::Counter(bytes_per_iteration / reference_bytes_per_s,
                           benchmark::Counter::kIsIterationInvariantRate);
  }
}

bool SetUpInputs(absl::FunctionRef<absl::Status()> init) {
  const absl::Status status = init();
  if (status.ok()) return true;
  std::fprintf(stderr, "cannot set the benchmark up: %s\n",
               status.ToString().c_str());
  return false;
}

void RegisterSideBySide(absl::string_view name, BenchmarkBody gpu_device,
                        BenchmarkBody gpu_host, BenchmarkBody cpu) {
  auto add = [&](absl::string_view row, BenchmarkBody body, bool manual) {
    // Benchmarks run one at a time, on this thread: a plain flag will do.
    auto warmed = std::make_shared<bool>(false);
    benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
        absl::StrCat(row, "/", name).c_str(),
        [body = std::move(body), warmed](benchmark::State& state) {
          const bool first = !*warmed;
          *warmed = true;
          body(state, first);
        });
    if (manual) {
      b->UseManualTime();
    } else {
      b->UseRealTime();
    }
    b->Unit(benchmark::kMicrosecond);
  };
  add("gpu_device", std::move(gpu_device), true);
  add("gpu_host", std::move(gpu_host), false);
  add("cpu", std::move(cpu), false);
}

bool WarmUp(benchmark::State& state, bool warm_up,
            absl::FunctionRef<absl::Status()> call) {
  return !warm_up || Check(state, call());
}

bool Check(benchmark::State& state, const absl::Status& status) {
  if (status.ok()) return true;
  state.SkipWithError(status.ToString().c_str());
  return false;
}

void FillUniform(float* data, size_t count, uint64_t seed,
                 kernels::ThreadPool& pool) {
  constexpr size_t kBlock = size_t{1} << 20;
  const size_t blocks = (count + kBlock - 1) / kBlock;
  pool.ParallelFor(blocks, [&](size_t b) {
    const size_t end = std::min(count, (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) {
      // SplitMix64 of (seed, i): independent of the order blocks run in.
      uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      data[i] = static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
  });
}

}  // namespace engram::bench
