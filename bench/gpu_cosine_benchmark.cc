// Batch cosine on the GPU against the CPU, d = 768, Q in {1, 16, 128}, N in
// {1Ki, 16Ki, 256Ki, 1Mi}, in one run:
//   gpu_device/{dense,top10}  the kernels alone, inputs already on the device
//                             (CUDA-event time): the fused kernel for Q <= 16,
//                             cuBLAS SGEMM + epilogue above (when libcublas is
//                             found), plus the top-k select for top10;
//   gpu_host/{dense,top10}    CudaBackend end to end from host memory (wall
//                             time): staging, PCIe both ways, kernels;
//   cpu/{dense,top10}         CpuBackend on every core of this machine;
//   gpu_resident/top10        CudaBackend as a resident collection search
//                             runs it: the 1 Mi x 768 targets held
//                             on the device under a residency key
//                             (UploadResident, once), queries in and lists
//                             out per call (wall time), Q = 1 (one search)
//                             and Q = 32 (a batched pass);
//   cpu_resident/top10        the same jobs on CpuBackend, the baseline the
//                             batched GPU throughput is reported against;
//   gpu_resident_masked/top10 the gpu_resident search with a row mask
//                             admitting 1%, 10%, 50% or 90% of the rows at
//                             random (a filter, or tombstones), Q = 1 and
//                             32: ns_per_admitted_row against the unmasked
//                             gpu_resident row's time per row.
// Counters: GBps is the memory traffic the kernels need at the least
// (targets read once, scores written once and, for top10, read by the 9
// select passes), GBps_of_peak that over the device's peak bandwidth (the
// run's context line gpu_peak_memory_bandwidth); for gpu_host, GBps counts
// the bytes crossing PCIe and GBps_of_peak compares them with the measured
// pcie_host_to_device line. The resident rows add queries_per_s. Every row
// makes one untimed call of its shape
// before it is timed (gpu_benchmark_util.h WarmUp), so that one-time costs
// such as the first cuBLAS call (~90 ms on an H200) stay out of the figures.
// Without a GPU the program says so and exits 0.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/gpu_benchmark_util.h"
#include "benchmark/benchmark.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "kernels/cuda/cosine_device.h"
#include "kernels/cuda/cublas_loader.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/topk_kernels.h"
#include "kernels/query_preparation.h"
#include "kernels/thread_pool.h"

namespace engram::bench {
namespace {

using kernels::cuda::DeviceArray;

constexpr size_t kDim = 768;
constexpr size_t kMaxQueries = 128;
constexpr size_t kMaxTargets = size_t{1} << 20;
constexpr uint32_t kTopK = 10;
constexpr int kSelectPasses = 9;  // 8 histogram passes and the gather
// The residency key the whole target matrix is held under.
constexpr uint64_t kResidentKey = 1;

// Inputs shared by every benchmark: the largest case, smaller ones use its
// first rows. Device copies are made once, for the gpu_device benchmarks.
struct Inputs {
  explicit Inputs(const GpuReference& reference) : reference(reference) {}

  absl::Status Init() {
    pool = std::make_unique<kernels::ThreadPool>(0);
    queries.resize(kMaxQueries * kDim);
    targets.resize(kMaxTargets * kDim);
    FillUniform(queries.data(), queries.size(), 1, *pool);
    FillUniform(targets.data(), targets.size(), 2, *pool);
    ENGRAM_ASSIGN_OR_RETURN(cpu, dispatch::CpuBackend::Create({pool.get()}));
    dispatch::CudaBackend::Options options;
    options.pool = pool.get();
    ENGRAM_ASSIGN_OR_RETURN(gpu, dispatch::CudaBackend::Create(options));
    ENGRAM_RETURN_IF_ERROR(gpu->UploadResident(
        kResidentKey, kernels::MatrixView{targets.data(), kMaxTargets, kDim}));

    ENGRAM_ASSIGN_OR_RETURN(stream, kernels::cuda::CudaStream::Create());
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetDefaultMemPool(&pool_handle, reference.device.ordinal));
    kernels::PreparedQueries pq;
    ENGRAM_RETURN_IF_ERROR(kernels::PrepareQueries(
        kernels::MatrixView{queries.data(), kMaxQueries, kDim},
        /*pad_floats=*/1, &pq));
    ENGRAM_ASSIGN_OR_RETURN(d_queries, Upload(pq.values));
    ENGRAM_ASSIGN_OR_RETURN(d_inv_norm, Upload(pq.inv_norm));
    ENGRAM_ASSIGN_OR_RETURN(d_targets, Upload(targets));
    ENGRAM_ASSIGN_OR_RETURN(d_scores, Alloc<float>(kMaxQueries * kMaxTargets));
    ENGRAM_ASSIGN_OR_RETURN(d_inv_t, Alloc<double>(kMaxTargets));
    ENGRAM_ASSIGN_OR_RETURN(d_flags, Alloc<uint32_t>(kMaxTargets + 1));
    ENGRAM_ASSIGN_OR_RETURN(d_bad, Alloc<unsigned long long>(1));
    ENGRAM_ASSIGN_OR_RETURN(
        d_select,
        Alloc<unsigned char>(kernels::cuda::TopKWorkspaceBytes(kMaxQueries)));
    ENGRAM_ASSIGN_OR_RETURN(d_keys,
                            Alloc<unsigned long long>(kMaxQueries * kTopK));
    ENGRAM_ASSIGN_OR_RETURN(d_counts, Alloc<uint32_t>(kMaxQueries));
    auto cublas = kernels::cuda::Cublas::Load();
    if (cublas.ok()) {
      cublas_library = *std::move(cublas);
      ENGRAM_ASSIGN_OR_RETURN(
          cublas_handle, cublas_library->CreateHandle(stream.get(), false));
    }
    benchmark::AddCustomContext("cublas",
                                cublas_library != nullptr
                                    ? cublas_library->description()
                                    : std::string(cublas.status().message()));
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream.get()));
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<DeviceArray<T>> Alloc(size_t count) {
    return DeviceArray<T>::Allocate(count, pool_handle, stream.get());
  }

  template <typename T>
  absl::StatusOr<DeviceArray<T>> Upload(const std::vector<T>& host) {
    ENGRAM_ASSIGN_OR_RETURN(DeviceArray<T> array, Alloc<T>(host.size()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(array.get(), host.data(), array.bytes(),
                        cudaMemcpyHostToDevice, stream.get()));
    return array;
  }

  const GpuReference reference;
  std::unique_ptr<kernels::ThreadPool> pool;
  std::vector<float> queries;
  std::vector<float> targets;
  std::unique_ptr<dispatch::CpuBackend> cpu;
  std::unique_ptr<dispatch::CudaBackend> gpu;
  kernels::cuda::CudaStream stream;
  cudaMemPool_t pool_handle = nullptr;
  DeviceArray<float> d_queries;
  DeviceArray<double> d_inv_norm;
  DeviceArray<float> d_targets;
  DeviceArray<float> d_scores;
  DeviceArray<double> d_inv_t;
  DeviceArray<uint32_t> d_flags;
  DeviceArray<unsigned long long> d_bad;
  DeviceArray<unsigned char> d_select;
  DeviceArray<unsigned long long> d_keys;
  DeviceArray<uint32_t> d_counts;
  std::unique_ptr<kernels::cuda::Cublas> cublas_library;
  cublasHandle_t cublas_handle = nullptr;
};

Inputs* g_inputs = nullptr;

dispatch::CosineJob Job(size_t q, size_t n, uint32_t top_k) {
  dispatch::CosineJob job;
  job.queries = kernels::MatrixView{g_inputs->queries.data(), q, kDim};
  job.targets = kernels::MatrixView{g_inputs->targets.data(), n, kDim};
  job.top_k = top_k;
  return job;
}

// Minimal traffic of one call: targets read once, scores written once and,
// with top-k, read by every select pass.
double KernelBytes(size_t q, size_t n, uint32_t top_k) {
  const double scores = 4.0 * q * n;
  return 4.0 * n * kDim + scores * (top_k > 0 ? 1 + kSelectPasses : 1);
}

void GpuDevice(benchmark::State& state, bool warm_up, size_t q, size_t n,
               uint32_t top_k) {
  Inputs& in = *g_inputs;
  cudaStream_t stream = in.stream.get();
  const kernels::cuda::DeviceQueries queries{
      in.d_queries.get(), in.d_inv_norm.get(), static_cast<uint32_t>(q),
      static_cast<uint32_t>(kDim)};
  kernels::cuda::TileWorkspace workspace;
  workspace.flags.bad_row = in.d_bad.get();
  workspace.flags.tiny_count = in.d_flags.get();
  workspace.flags.tiny_rows = in.d_flags.get() + 1;
  workspace.inv_norm = in.d_inv_t.get();
  kernels::cuda::TileScoring scoring;
  scoring.cublas = in.cublas_library.get();
  scoring.handle = in.cublas_handle;
  state.SetLabel(kernels::cuda::UsesGemm(scoring, static_cast<uint32_t>(q))
                     ? "cublas"
                     : "fused");
  auto enqueue = [&]() -> absl::Status {
    ENGRAM_RETURN_IF_ERROR(kernels::cuda::ScoreTile(
        queries, in.d_targets.get(), static_cast<uint32_t>(n),
        in.d_scores.get(), n, 0, workspace, scoring, stream));
    if (top_k == 0) return absl::OkStatus();
    return kernels::cuda::CheckCudaCall(
        kernels::cuda::LaunchTopKSelect(
            in.d_scores.get(), static_cast<uint32_t>(q),
            static_cast<uint32_t>(n), n, top_k,
            -std::numeric_limits<float>::infinity(), in.d_select.get(),
            in.d_keys.get(), in.d_counts.get(), stream),
        "LaunchTopKSelect");
  };
  if (!WarmUp(state, warm_up, [&]() -> absl::Status {
        ENGRAM_RETURN_IF_ERROR(enqueue());
        ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
        return absl::OkStatus();
      })) {
    return;
  }
  EventTimer timer(stream);
  for (auto _ : state) {
    timer.Start();
    const absl::Status status = enqueue();
    const double seconds = timer.Stop();
    if (!Check(state, status)) return;
    state.SetIterationTime(seconds);
  }
  SetBandwidth(state, "GBps", KernelBytes(q, n, top_k),
               in.reference.peak_memory_bytes_per_s);
}

// End to end through a backend from host memory; `bytes` per call.
void Backend(benchmark::State& state, bool warm_up,
             dispatch::ComputeBackend& backend, size_t q, size_t n,
             uint32_t top_k, double bytes, double reference_bytes_per_s) {
  const dispatch::CosineJob job = Job(q, n, top_k);
  std::vector<float> scores(top_k == 0 ? q * n : 0);
  dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  if (!WarmUp(state, warm_up, [&] { return backend.Cosine(job, &out); })) {
    return;
  }
  for (auto _ : state) {
    if (!Check(state, backend.Cosine(job, &out))) return;
    benchmark::DoNotOptimize(out.top.data());
  }
  SetBandwidth(state, "GBps", bytes, reference_bytes_per_s);
}

// A resident search pass through `backend`: `key` names the device copy of
// the targets (0 for the CPU, which reads them from host memory). GBps is
// the kernels' minimal traffic (KernelBytes) against the device's peak; for
// the CPU row it is the targets read once, without a reference.
void Resident(benchmark::State& state, bool warm_up,
              dispatch::ComputeBackend& backend, uint64_t key, size_t q) {
  dispatch::CosineJob job = Job(q, kMaxTargets, kTopK);
  job.resident_targets = key;
  dispatch::CosineOutput out;
  if (!WarmUp(state, warm_up, [&] { return backend.Cosine(job, &out); })) {
    return;
  }
  for (auto _ : state) {
    if (!Check(state, backend.Cosine(job, &out))) return;
    benchmark::DoNotOptimize(out.top.data());
  }
  if (key != 0) {
    SetBandwidth(state, "GBps", KernelBytes(q, kMaxTargets, kTopK),
                 g_inputs->reference.peak_memory_bytes_per_s);
  } else {
    SetBandwidth(state, "GBps", 4.0 * kMaxTargets * kDim, 0);
  }
  state.counters["queries_per_s"] = benchmark::Counter(
      static_cast<double>(q), benchmark::Counter::kIsIterationInvariantRate);
}

// A mask over kMaxTargets rows admitting each with probability
// percent / 100, from a fixed seed; kept for the life of the program.
kernels::RowMask RandomMask(int percent) {
  auto* words = new std::vector<uint64_t>((kMaxTargets + 63) / 64);
  uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(percent + 1);
  for (size_t r = 0; r < kMaxTargets; ++r) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    if ((state >> 33) % 100 < static_cast<uint64_t>(percent)) {
      (*words)[r / 64] |= uint64_t{1} << (r % 64);
    }
  }
  return kernels::RowMask{words->data(), 0, kMaxTargets};
}

// The gpu_resident search restricted to the rows `mask` admits.
void ResidentMasked(benchmark::State& state, bool warm_up, size_t q,
                    const kernels::RowMask& mask) {
  dispatch::CosineJob job = Job(q, kMaxTargets, kTopK);
  job.resident_targets = kResidentKey;
  job.mask = mask;
  const size_t admitted = job.scored_targets();
  dispatch::CosineOutput out;
  if (!WarmUp(state, warm_up,
              [&] { return g_inputs->gpu->Cosine(job, &out); })) {
    return;
  }
  for (auto _ : state) {
    if (!Check(state, g_inputs->gpu->Cosine(job, &out))) return;
    benchmark::DoNotOptimize(out.top.data());
  }
  state.counters["admitted_rows"] = static_cast<double>(admitted);
  state.counters["ns_per_admitted_row"] =
      benchmark::Counter(static_cast<double>(admitted) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate |
                             benchmark::Counter::kInvert);
}

void RegisterResidentMasked() {
  for (int percent : {1, 10, 50, 90}) {
    const kernels::RowMask mask = RandomMask(percent);
    for (size_t q : {size_t{1}, size_t{32}}) {
      auto warmed = std::make_shared<bool>(false);
      benchmark::RegisterBenchmark(
          absl::StrCat("gpu_resident_masked/top10/Q:", q, "/N:", kMaxTargets,
                       "/admitted:", percent, "%")
              .c_str(),
          [=](benchmark::State& state) {
            const bool first = !*warmed;
            *warmed = true;
            ResidentMasked(state, first, q, mask);
          })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

// gpu_resident and cpu_resident rows for Q = 1 and 32.
void RegisterResident(bool on_gpu) {
  for (size_t q : {size_t{1}, size_t{32}}) {
    // Benchmarks run one at a time, on this thread: a plain flag will do.
    auto warmed = std::make_shared<bool>(false);
    benchmark::RegisterBenchmark(
        absl::StrCat(on_gpu ? "gpu_resident" : "cpu_resident", "/top10/Q:", q,
                     "/N:", kMaxTargets)
            .c_str(),
        [=](benchmark::State& state) {
          const bool first = !*warmed;
          *warmed = true;
          dispatch::ComputeBackend& backend =
              on_gpu ? static_cast<dispatch::ComputeBackend&>(*g_inputs->gpu)
                     : *g_inputs->cpu;
          Resident(state, first, backend, on_gpu ? kResidentKey : 0, q);
        })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

void RegisterAll(const GpuReference& reference) {
  // Never freed: the CUDA runtime may be gone by static destruction time.
  Inputs& inputs = *new Inputs(reference);
  if (!SetUpInputs([&] { return inputs.Init(); })) return;
  g_inputs = &inputs;
  for (uint32_t top_k : {0u, kTopK}) {
    const std::string kind = top_k == 0 ? "dense" : "top10";
    for (size_t q : {size_t{1}, size_t{16}, kMaxQueries}) {
      for (size_t n : {size_t{1} << 10, size_t{16} << 10, size_t{256} << 10,
                       kMaxTargets}) {
        // Bytes over PCIe: the targets in, the scores or lists out.
        const double pcie_bytes =
            4.0 * n * kDim + (top_k == 0 ? 4.0 * q * n : 12.0 * q * top_k);
        // Targets read once, dense scores written once.
        const double cpu_bytes =
            4.0 * n * kDim + (top_k == 0 ? 4.0 * q * n : 0.0);
        RegisterSideBySide(
            absl::StrCat(kind, "/Q:", q, "/N:", n),
            [=](benchmark::State& s, bool warm_up) {
              GpuDevice(s, warm_up, q, n, top_k);
            },
            [=](benchmark::State& s, bool warm_up) {
              Backend(s, warm_up, *g_inputs->gpu, q, n, top_k, pcie_bytes,
                      g_inputs->reference.pcie_h2d_bytes_per_s);
            },
            [=](benchmark::State& s, bool warm_up) {
              Backend(s, warm_up, *g_inputs->cpu, q, n, top_k, cpu_bytes, 0);
            });
      }
    }
  }
  RegisterResident(/*on_gpu=*/true);
  RegisterResidentMasked();
  RegisterResident(/*on_gpu=*/false);
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  return engram::bench::RunGpuBenchmarks(argc, argv,
                                         engram::bench::RegisterAll);
}
