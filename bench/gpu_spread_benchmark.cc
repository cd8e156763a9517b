// Spreading activation on the GPU against the CPU, on R-MAT graphs
// (a, b, c, d = 0.57, 0.19, 0.19, 0.05; Graph500's) of 2^16 and 2^20 nodes
// with 16 out-edges per node on average, from 64 seeds, in one run:
//   gpu_device/<params>/scale:S  the hops alone, the graph (and its
//                                transpose, built by a warm-up run) already on
//                                the device (CUDA-event time);
//   gpu_host/<params>/scale:S    CudaBackend end to end from host memory:
//                                the graph copied in, every activation back;
//   cpu/<params>/scale:S         CpuBackend.
// <params> is "default" (docs/api.md's defaults: a few thousand nodes reached)
// or "wide" (constant decay 0.5, threshold 1e-4, 6 hops: most of the graph,
// so the GPU pulls). Counters: edges_per_s (edges traversed, as
// docs/api.md counts them), GBps an estimate of the traffic (16 bytes per
// traversed edge: target id, weight, the source's float64 delta; 24 bytes per
// node per hop for the activation arrays), GBps_of_peak that over the
// device's peak; for gpu_host, GBps counts the graph's bytes over PCIe against
// the measured pcie_host_to_device. Without a GPU the program says so and
// exits 0.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/gpu_benchmark_util.h"
#include "benchmark/benchmark.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/spread_device.h"
#include "kernels/thread_pool.h"

namespace engram::bench {
namespace {

using kernels::cuda::DeviceArray;

constexpr uint32_t kAverageDegree = 16;
constexpr uint32_t kSeeds = 64;

struct CsrGraph {
  uint32_t num_nodes = 0;
  std::vector<uint32_t> row_offsets;
  std::vector<uint32_t> targets;
  std::vector<float> weights;

  kernels::GraphView view() const {
    return kernels::GraphView{num_nodes, row_offsets, targets, weights};
  }
  double bytes() const {
    return 4.0 * row_offsets.size() + 8.0 * targets.size();
  }
};

// An R-MAT graph of 2^scale nodes and 2^scale * kAverageDegree edges,
// weights uniform in (0, 1], edges of a node in the order generated.
CsrGraph RMat(int scale, uint64_t seed) {
  const uint32_t n = uint32_t{1} << scale;
  const uint64_t m = uint64_t{n} * kAverageDegree;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<uint32_t> src(m), dst(m);
  for (uint64_t e = 0; e < m; ++e) {
    uint32_t u = 0, v = 0;
    for (int level = 0; level < scale; ++level) {
      const double r = uniform(rng);
      const uint32_t down = r >= 0.57 + 0.19;  // quadrants c and d
      const uint32_t right = (r >= 0.57 && r < 0.76) || r >= 0.95;  // b, d
      u = 2 * u + down;
      v = 2 * v + right;
    }
    src[e] = u;
    dst[e] = v;
  }
  CsrGraph g;
  g.num_nodes = n;
  g.row_offsets.assign(n + 1, 0);
  for (uint64_t e = 0; e < m; ++e) ++g.row_offsets[src[e] + 1];
  for (uint32_t u = 0; u < n; ++u) g.row_offsets[u + 1] += g.row_offsets[u];
  g.targets.resize(m);
  g.weights.resize(m);
  std::vector<uint32_t> next(g.row_offsets.begin(), g.row_offsets.end() - 1);
  for (uint64_t e = 0; e < m; ++e) {
    const uint32_t slot = next[src[e]]++;
    g.targets[slot] = dst[e];
    g.weights[slot] = static_cast<float>(1.0 - uniform(rng));  // (0, 1]
  }
  return g;
}

kernels::SpreadParams Params(bool wide) {
  kernels::SpreadParams params;
  if (wide) {
    params.decay = kernels::DecayKind::kConstant;
    params.decay_param = 0.5f;
    params.threshold = 1e-4f;
    params.max_hops = 6;
  }
  return params;
}

struct Inputs {
  explicit Inputs(const GpuReference& reference) : reference(reference) {}

  absl::Status Init() {
    pool = std::make_unique<kernels::ThreadPool>(0);
    ENGRAM_ASSIGN_OR_RETURN(cpu, dispatch::CpuBackend::Create({pool.get()}));
    dispatch::CudaBackend::Options options;
    options.pool = pool.get();
    ENGRAM_ASSIGN_OR_RETURN(gpu, dispatch::CudaBackend::Create(options));
    ENGRAM_ASSIGN_OR_RETURN(stream, kernels::cuda::CudaStream::Create());
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetDefaultMemPool(&pool_handle, reference.device.ordinal));
    for (int scale : {16, 20}) {
      graphs.push_back(RMat(scale, 1000 + scale));
      const CsrGraph& g = graphs.back();
      ENGRAM_ASSIGN_OR_RETURN(
          kernels::cuda::DeviceGraph d,
          kernels::cuda::DeviceGraph::Allocate(
              g.num_nodes, static_cast<uint32_t>(g.targets.size()), pool_handle,
              stream.get()));
      ENGRAM_RETURN_IF_ERROR(Copy(d.row_offsets(), g.row_offsets.data(),
                                  g.row_offsets.size() * 4));
      ENGRAM_RETURN_IF_ERROR(
          Copy(d.targets(), g.targets.data(), g.targets.size() * 4));
      ENGRAM_RETURN_IF_ERROR(
          Copy(d.weights(), g.weights.data(), g.weights.size() * 4));
      device_graphs.push_back(std::move(d));
      std::mt19937_64 rng(scale);
      std::vector<kernels::SpreadSeed> s;
      for (uint32_t i = 0; i < kSeeds; ++i) {
        s.push_back({static_cast<uint32_t>(rng() % g.num_nodes), 1.0f});
      }
      seeds.push_back(std::move(s));
    }
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream.get()));
    return absl::OkStatus();
  }

  absl::Status Copy(void* device, const void* host, size_t bytes) {
    ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        device, host, bytes, cudaMemcpyHostToDevice, stream.get()));
    return absl::OkStatus();
  }

  const GpuReference reference;
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<dispatch::CpuBackend> cpu;
  std::unique_ptr<dispatch::CudaBackend> gpu;
  kernels::cuda::CudaStream stream;
  cudaMemPool_t pool_handle = nullptr;
  std::vector<CsrGraph> graphs;
  std::vector<kernels::cuda::DeviceGraph> device_graphs;
  std::vector<std::vector<kernels::SpreadSeed>> seeds;
};

Inputs* g_inputs = nullptr;

void SetSpreadCounters(benchmark::State& state, const CsrGraph& g,
                       uint64_t edges_traversed, uint32_t hops) {
  state.counters["edges_per_s"] =
      benchmark::Counter(static_cast<double>(edges_traversed),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["hops"] = hops;
  SetBandwidth(state, "GBps",
               16.0 * edges_traversed + 24.0 * g.num_nodes * hops,
               g_inputs->reference.peak_memory_bytes_per_s);
}

void GpuDevice(benchmark::State& state, bool warm_up, size_t graph, bool wide) {
  Inputs& in = *g_inputs;
  const CsrGraph& g = in.graphs[graph];
  kernels::cuda::DeviceGraph& d = in.device_graphs[graph];
  const kernels::SpreadParams params = Params(wide);
  cudaStream_t stream = in.stream.get();
  auto copy = [&](void* device, const void* host, size_t bytes) {
    return in.Copy(device, host, bytes);
  };
  kernels::cuda::SpreadOnDeviceResult result;
  if (!WarmUp(state, warm_up, [&]() -> absl::Status {
        DeviceArray<double> activation;
        ENGRAM_RETURN_IF_ERROR(kernels::cuda::SpreadOnDevice(
                                   d, g.row_offsets, in.seeds[graph], params,
                                   kernels::cuda::SpreadOnDeviceOptions(), copy,
                                   in.pool_handle, stream,
                                   /*interrupt=*/nullptr, &activation)
                                   .status());
        ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
        return absl::OkStatus();
      })) {
    return;
  }
  EventTimer timer(stream);
  for (auto _ : state) {
    DeviceArray<double> activation;
    timer.Start();
    auto run = kernels::cuda::SpreadOnDevice(
        d, g.row_offsets, in.seeds[graph], params,
        kernels::cuda::SpreadOnDeviceOptions(), copy, in.pool_handle, stream,
        /*interrupt=*/nullptr, &activation);
    const double seconds = timer.Stop();
    if (!Check(state, run.status())) return;
    result = *run;
    state.SetIterationTime(seconds);
  }
  state.SetLabel(absl::StrCat(result.push_hops, " push + ", result.pull_hops,
                              " pull hops"));
  SetSpreadCounters(state, g, result.edges_traversed, result.hops);
}

void Backend(benchmark::State& state, bool warm_up,
             dispatch::ComputeBackend& backend, size_t graph, bool wide,
             bool pcie) {
  Inputs& in = *g_inputs;
  const CsrGraph& g = in.graphs[graph];
  dispatch::SpreadJob job;
  job.graph = g.view();
  job.seeds = in.seeds[graph];
  job.params = Params(wide);
  dispatch::SpreadOutput out;
  if (!WarmUp(state, warm_up, [&] { return backend.Spread(job, &out); })) {
    return;
  }
  for (auto _ : state) {
    if (!Check(state, backend.Spread(job, &out))) return;
    benchmark::DoNotOptimize(out.result.activation.data());
  }
  if (pcie) {
    state.counters["edges_per_s"] =
        benchmark::Counter(static_cast<double>(out.result.edges_traversed),
                           benchmark::Counter::kIsIterationInvariantRate);
    SetBandwidth(state, "GBps", g.bytes() + 4.0 * g.num_nodes,
                 in.reference.pcie_h2d_bytes_per_s);
  } else {
    SetSpreadCounters(state, g, out.result.edges_traversed, out.result.hops);
  }
}

void RegisterAll(const GpuReference& reference) {
  // Never freed: the CUDA runtime may be gone by static destruction time.
  Inputs& inputs = *new Inputs(reference);
  if (!SetUpInputs([&] { return inputs.Init(); })) return;
  g_inputs = &inputs;
  for (bool wide : {false, true}) {
    for (size_t graph = 0; graph < inputs.graphs.size(); ++graph) {
      RegisterSideBySide(
          absl::StrCat(wide ? "wide" : "default",
                       "/scale:", graph == 0 ? 16 : 20),
          [=](benchmark::State& s, bool warm_up) {
            GpuDevice(s, warm_up, graph, wide);
          },
          [=](benchmark::State& s, bool warm_up) {
            Backend(s, warm_up, *g_inputs->gpu, graph, wide, true);
          },
          [=](benchmark::State& s, bool warm_up) {
            Backend(s, warm_up, *g_inputs->cpu, graph, wide, false);
          });
    }
  }
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  return engram::bench::RunGpuBenchmarks(argc, argv,
                                         engram::bench::RegisterAll);
}
