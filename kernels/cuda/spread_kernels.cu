// The spreading-activation kernels and their launchers (spread_kernels.h).
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>

#include "kernels/cuda/spread_kernels.h"

namespace engram::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kMaxBlocks = 8192;
// A node with more inputs than this is summed by its whole warp.
constexpr uint32_t kLightRun = kWarp;

unsigned BlocksFor(uint64_t items, uint64_t per_block) {
  const uint64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1            ? 1
                               : blocks > kMaxBlocks ? kMaxBlocks
                                                     : blocks);
}

__device__ __forceinline__ uint64_t GlobalThread() {
  return blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
}

__device__ __forceinline__ uint64_t GridThreads() {
  return static_cast<uint64_t>(gridDim.x) * blockDim.x;
}

// contribution = (delta * w) * D(h), rounded after each product, as the CPU
// computes it (no fused multiply-add).
__device__ __forceinline__ double Contribution(double delta, float weight,
                                               double decay) {
  return __dmul_rn(__dmul_rn(delta, static_cast<double>(weight)), decay);
}

// Sums c(j) for j in [begin, end) one term after another.
template <class C>
__device__ double SerialSum(uint32_t begin, uint32_t end, const C& c) {
  double sum = 0.0;
  for (uint32_t j = begin; j < end; ++j) sum = __dadd_rn(sum, c(j));
  return sum;
}

// The same sum by the whole warp: the lanes load 32 terms at once, then every
// lane adds them in order. Every lane of the warp must call it with the same
// range; every lane gets the sum.
template <class C>
__device__ double WarpOrderedSum(uint32_t begin, uint32_t end, const C& c) {
  const uint32_t lane = threadIdx.x % kWarp;
  double sum = 0.0;
  for (uint32_t chunk = begin; chunk < end; chunk += kWarp) {
    const uint32_t j = chunk + lane;
    const double mine = j < end ? c(j) : 0.0;
    const uint32_t m = end - chunk < kWarp ? end - chunk : kWarp;
    for (uint32_t t = 0; t < m; ++t) {
      sum = __dadd_rn(sum, __shfl_sync(kFullMask, mine, t));
    }
  }
  return sum;
}

// Each lane's input, the in-order sum over its range [begin, end): short
// ranges by the lane alone, long ones by the warp together, one after
// another. Every lane of the warp must call it.
template <class C>
__device__ double LaneInputs(bool valid, uint32_t begin, uint32_t end,
                             const C& c) {
  const bool heavy = valid && end - begin > kLightRun;
  double sum = 0.0;
  if (valid && !heavy) sum = SerialSum(begin, end, c);
  unsigned heavy_lanes = __ballot_sync(kFullMask, heavy);
  while (heavy_lanes != 0) {
    const int owner = __ffs(heavy_lanes) - 1;
    heavy_lanes &= heavy_lanes - 1;
    const uint32_t b = __shfl_sync(kFullMask, begin, owner);
    const uint32_t e = __shfl_sync(kFullMask, end, owner);
    const double s = WarpOrderedSum(b, e, c);
    if (static_cast<int>(threadIdx.x % kWarp) == owner) sum = s;
  }
  return sum;
}

// docs/api.md's update of node v by its input: written only where it reaches
// theta(h), saturated at the cap; returns whether the increase travels on.
__device__ bool Apply(uint32_t v, double in, const HopParams& hop, double* act,
                      double* next_delta, bool* changed) {
  if (!(in > 0.0)) return false;
  const double old = act[v];
  const double sum = __dadd_rn(old, in);
  const double updated = sum < hop.cap ? sum : hop.cap;
  if (!(updated >= hop.theta)) return false;
  const double increase = __dsub_rn(updated, old);
  const bool joins = increase >= hop.theta && increase > 0.0;
  if (joins) next_delta[v] = increase;
  if (updated != old) *changed = true;
  act[v] = updated;
  return joins;
}

// Adds the warp's joining nodes, their out-edges and whether anything changed
// to the counters, with one atomic each per warp. Every lane must call it.
__device__ void CountWarp(bool joins, uint32_t degree, bool changed,
                          HopCounters* counters) {
  const unsigned joined = __ballot_sync(kFullMask, joins);
  const unsigned any_changed = __ballot_sync(kFullMask, changed);
  unsigned long long edges = joins ? degree : 0;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    edges += __shfl_xor_sync(kFullMask, edges, offset);
  }
  if (threadIdx.x % kWarp != 0) return;
  if (joined != 0) {
    atomicAdd(&counters->frontier_nodes, static_cast<uint32_t>(__popc(joined)));
    atomicAdd(&counters->frontier_edges, edges);
  }
  if (any_changed != 0) atomicOr(&counters->changed, 1u);
}

__global__ void ValidateKernel(const uint32_t* offsets, const uint32_t* targets,
                               uint32_t n, uint32_t num_edges,
                               unsigned long long* bad_node,
                               unsigned long long* bad_edge) {
  const uint64_t items = n > num_edges ? n : num_edges;
  for (uint64_t i = GlobalThread(); i < items; i += GridThreads()) {
    const auto index = static_cast<unsigned long long>(i);
    if (i < n && offsets[i + 1] < offsets[i]) atomicMin(bad_node, index);
    if (i < num_edges && targets[i] >= n) atomicMin(bad_edge, index);
  }
}

__global__ void ScatterSeedsKernel(const uint32_t* nodes, const double* values,
                                   uint32_t count, double* act, double* delta) {
  for (uint64_t i = GlobalThread(); i < count; i += GridThreads()) {
    act[nodes[i]] = values[i];
    delta[nodes[i]] = values[i];
  }
}

__global__ void DegreesKernel(const uint32_t* frontier, uint32_t count,
                              const uint32_t* offsets, uint32_t* degrees) {
  for (uint64_t i = GlobalThread(); i < count; i += GridThreads()) {
    const uint32_t u = frontier[i];
    degrees[i] = offsets[u + 1] - offsets[u];
  }
}

__global__ void ExpandKernel(const uint32_t* frontier, uint32_t count,
                             const uint32_t* positions, const uint32_t* offsets,
                             const uint32_t* targets, const float* weights,
                             const double* delta, double decay,
                             uint32_t num_edges, uint32_t* keys,
                             double* contrib) {
  for (uint64_t j = GlobalThread(); j < num_edges; j += GridThreads()) {
    // The last frontier entry whose edges start at or before j.
    uint32_t lo = 0;
    uint32_t hi = count;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (positions[mid] <= j) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const uint32_t i = lo - 1;
    const uint32_t u = frontier[i];
    const uint32_t e = offsets[u] + static_cast<uint32_t>(j - positions[i]);
    keys[j] = targets[e];
    contrib[j] = Contribution(delta[u], weights[e], decay);
  }
}

__global__ void MarkRunsKernel(const uint32_t* keys, uint32_t count,
                               uint8_t* flags) {
  for (uint64_t p = GlobalThread(); p < count; p += GridThreads()) {
    flags[p] = p == 0 || keys[p] != keys[p - 1];
  }
}

// One warp per 32 consecutive runs (grid-stride, warp-uniform).
__global__ void __launch_bounds__(kBlock)
    PushApplyKernel(const uint32_t* starts, const uint32_t* num_runs,
                    uint32_t count, const uint32_t* keys, const uint32_t* perm,
                    const double* contrib, const uint32_t* offsets,
                    HopParams hop, double* act, double* next_delta,
                    uint32_t* run_nodes, uint8_t* run_flags,
                    HopCounters* counters) {
  const uint32_t runs = *num_runs;
  const uint64_t warps = GridThreads() / kWarp;
  const auto contribution = [=](uint32_t p) { return contrib[perm[p]]; };
  for (uint64_t base = GlobalThread() / kWarp * kWarp; base < runs;
       base += warps * kWarp) {
    const uint64_t i = base + threadIdx.x % kWarp;
    const bool valid = i < runs;
    const uint32_t begin = valid ? starts[i] : 0;
    const uint32_t end = !valid ? 0 : i + 1 < runs ? starts[i + 1] : count;
    const double in = LaneInputs(valid, begin, end, contribution);
    bool changed = false;
    bool joins = false;
    uint32_t degree = 0;
    if (valid) {
      const uint32_t v = keys[begin];
      joins = Apply(v, in, hop, act, next_delta, &changed);
      if (joins) degree = offsets[v + 1] - offsets[v];
      run_nodes[i] = v;
      run_flags[i] = joins;
    }
    CountWarp(joins, degree, changed, counters);
  }
}

// One warp per 32 consecutive nodes (grid-stride, warp-uniform).
__global__ void __launch_bounds__(kBlock)
    PullApplyKernel(const uint32_t* in_offsets, const uint32_t* in_sources,
                    const float* in_weights, uint32_t n, const double* delta,
                    const uint32_t* offsets, HopParams hop, double* act,
                    double* next_delta, uint8_t* node_flags,
                    HopCounters* counters) {
  const uint64_t warps = GridThreads() / kWarp;
  const auto contribution = [=](uint32_t j) {
    const double du = delta[in_sources[j]];
    return du > 0.0 ? Contribution(du, in_weights[j], hop.decay) : 0.0;
  };
  for (uint64_t base = GlobalThread() / kWarp * kWarp; base < n;
       base += warps * kWarp) {
    const uint64_t v = base + threadIdx.x % kWarp;
    const bool valid = v < n;
    const uint32_t begin = valid ? in_offsets[v] : 0;
    const uint32_t end = valid ? in_offsets[v + 1] : 0;
    const double in = LaneInputs(valid, begin, end, contribution);
    bool changed = false;
    bool joins = false;
    uint32_t degree = 0;
    if (valid) {
      joins =
          Apply(static_cast<uint32_t>(v), in, hop, act, next_delta, &changed);
      if (joins) degree = offsets[v + 1] - offsets[v];
      if (node_flags != nullptr) node_flags[v] = joins;
    }
    CountWarp(joins, degree, changed, counters);
  }
}

__global__ void EdgeSourcesKernel(const uint32_t* offsets, uint32_t n,
                                  uint32_t num_edges, uint32_t* sources) {
  for (uint64_t e = GlobalThread(); e < num_edges; e += GridThreads()) {
    // The last node whose edges start at or before e.
    uint32_t lo = 0;
    uint32_t hi = n + 1;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (offsets[mid] <= e) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    sources[e] = lo - 1;
  }
}

__global__ void InOffsetsKernel(const uint32_t* sorted_targets,
                                uint32_t num_edges, uint32_t n,
                                uint32_t* in_offsets) {
  for (uint64_t v = GlobalThread(); v <= n; v += GridThreads()) {
    uint32_t lo = 0;
    uint32_t hi = num_edges;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (sorted_targets[mid] < v) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    in_offsets[v] = lo;
  }
}

__global__ void GatherTransposedKernel(const uint32_t* perm, uint32_t num_edges,
                                       const uint32_t* sources,
                                       const float* weights,
                                       uint32_t* in_sources,
                                       float* in_weights) {
  for (uint64_t j = GlobalThread(); j < num_edges; j += GridThreads()) {
    const uint32_t e = perm[j];
    in_sources[j] = sources[e];
    in_weights[j] = weights[e];
  }
}

__global__ void IotaKernel(uint32_t* out, uint32_t count) {
  for (uint64_t i = GlobalThread(); i < count; i += GridThreads()) {
    out[i] = static_cast<uint32_t>(i);
  }
}

__global__ void ToFloatKernel(const double* in, uint32_t count, float* out) {
  for (uint64_t i = GlobalThread(); i < count; i += GridThreads()) {
    out[i] = __double2float_rn(in[i]);
  }
}

}  // namespace

cudaError_t LaunchValidateGraph(const uint32_t* offsets,
                                const uint32_t* targets, uint32_t n,
                                uint32_t num_edges,
                                unsigned long long* bad_node,
                                unsigned long long* bad_edge,
                                cudaStream_t stream) {
  const uint64_t items = n > num_edges ? n : num_edges;
  if (items == 0) return cudaSuccess;
  ValidateKernel<<<BlocksFor(items, kBlock), kBlock, 0, stream>>>(
      offsets, targets, n, num_edges, bad_node, bad_edge);
  return cudaGetLastError();
}

cudaError_t LaunchScatterSeeds(const uint32_t* nodes, const double* values,
                               uint32_t count, double* act, double* delta,
                               cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  ScatterSeedsKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(
      nodes, values, count, act, delta);
  return cudaGetLastError();
}

cudaError_t LaunchFrontierDegrees(const uint32_t* frontier, uint32_t count,
                                  const uint32_t* offsets, uint32_t* degrees,
                                  cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  DegreesKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(
      frontier, count, offsets, degrees);
  return cudaGetLastError();
}

cudaError_t LaunchExpandFrontier(const uint32_t* frontier, uint32_t count,
                                 const uint32_t* positions,
                                 const uint32_t* offsets,
                                 const uint32_t* targets, const float* weights,
                                 const double* delta, double decay,
                                 uint32_t num_edges, uint32_t* keys,
                                 double* contrib, cudaStream_t stream) {
  if (num_edges == 0) return cudaSuccess;
  ExpandKernel<<<BlocksFor(num_edges, kBlock), kBlock, 0, stream>>>(
      frontier, count, positions, offsets, targets, weights, delta, decay,
      num_edges, keys, contrib);
  return cudaGetLastError();
}

cudaError_t LaunchMarkRuns(const uint32_t* keys, uint32_t count, uint8_t* flags,
                           cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  MarkRunsKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(keys, count,
                                                                  flags);
  return cudaGetLastError();
}

cudaError_t LaunchPushApply(const uint32_t* starts, const uint32_t* num_runs,
                            uint32_t count, const uint32_t* keys,
                            const uint32_t* perm, const double* contrib,
                            const uint32_t* offsets, HopParams hop, double* act,
                            double* next_delta, uint32_t* run_nodes,
                            uint8_t* run_flags, HopCounters* counters,
                            cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  // At most `count` runs; a warp takes 32.
  PushApplyKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(
      starts, num_runs, count, keys, perm, contrib, offsets, hop, act,
      next_delta, run_nodes, run_flags, counters);
  return cudaGetLastError();
}

cudaError_t LaunchPullApply(const uint32_t* in_offsets,
                            const uint32_t* in_sources, const float* in_weights,
                            uint32_t n, const double* delta,
                            const uint32_t* offsets, HopParams hop, double* act,
                            double* next_delta, uint8_t* node_flags,
                            HopCounters* counters, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  PullApplyKernel<<<BlocksFor(n, kBlock), kBlock, 0, stream>>>(
      in_offsets, in_sources, in_weights, n, delta, offsets, hop, act,
      next_delta, node_flags, counters);
  return cudaGetLastError();
}

cudaError_t LaunchEdgeSources(const uint32_t* offsets, uint32_t n,
                              uint32_t num_edges, uint32_t* sources,
                              cudaStream_t stream) {
  if (num_edges == 0) return cudaSuccess;
  EdgeSourcesKernel<<<BlocksFor(num_edges, kBlock), kBlock, 0, stream>>>(
      offsets, n, num_edges, sources);
  return cudaGetLastError();
}

cudaError_t LaunchInOffsets(const uint32_t* sorted_targets, uint32_t num_edges,
                            uint32_t n, uint32_t* in_offsets,
                            cudaStream_t stream) {
  InOffsetsKernel<<<BlocksFor(uint64_t{n} + 1, kBlock), kBlock, 0, stream>>>(
      sorted_targets, num_edges, n, in_offsets);
  return cudaGetLastError();
}

cudaError_t LaunchGatherTransposed(const uint32_t* perm, uint32_t num_edges,
                                   const uint32_t* sources,
                                   const float* weights, uint32_t* in_sources,
                                   float* in_weights, cudaStream_t stream) {
  if (num_edges == 0) return cudaSuccess;
  GatherTransposedKernel<<<BlocksFor(num_edges, kBlock), kBlock, 0, stream>>>(
      perm, num_edges, sources, weights, in_sources, in_weights);
  return cudaGetLastError();
}

cudaError_t LaunchIota(uint32_t* out, uint32_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  IotaKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(out, count);
  return cudaGetLastError();
}

cudaError_t LaunchToFloat(const double* in, uint32_t count, float* out,
                          cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  ToFloatKernel<<<BlocksFor(count, kBlock), kBlock, 0, stream>>>(in, count,
                                                                 out);
  return cudaGetLastError();
}

cudaError_t ExclusiveSum(const uint32_t* in, uint32_t* out, uint32_t count,
                         void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return cub::DeviceScan::ExclusiveSum(temp, *temp_bytes, in, out, count,
                                       stream);
}

cudaError_t SortPairs(const uint32_t* keys_in, uint32_t* keys_out,
                      const uint32_t* values_in, uint32_t* values_out,
                      uint32_t count, int bits, void* temp, size_t* temp_bytes,
                      cudaStream_t stream) {
  return cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, keys_in, keys_out,
                                         values_in, values_out, count, 0, bits,
                                         stream);
}

cudaError_t SelectFlagged(const uint32_t* in, const uint8_t* flags,
                          uint32_t* out, uint32_t* num_out, uint32_t count,
                          void* temp, size_t* temp_bytes, cudaStream_t stream) {
  return cub::DeviceSelect::Flagged(temp, *temp_bytes, in, flags, out, num_out,
                                    count, stream);
}

}  // namespace engram::kernels::cuda
