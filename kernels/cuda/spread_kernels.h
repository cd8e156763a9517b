// Host launchers of the spreading-activation kernels
// (kernels/cuda/spread_kernels.cu) and the CUB primitives they need.
//
// One hop of docs/api.md's propagation either pushes or pulls:
//  - push (sparse frontier): the frontier's out-edges are expanded into
//    (target, contribution) pairs in (source, edge) order, stably sorted by
//    target, and each target's run is summed in order;
//  - pull (dense frontier): every node sums its in-edges (the transposed
//    graph, in (source, edge) order) whose source is on the frontier.
// Either way a node's input is the float64 sum of delta(u) * w * D(h) over
// its frontier in-edges in ascending (source, edge) order, the order the CPU
// kernel adds them in, with no fused multiply-add: the result is the CPU's
// bit for bit. A node's long sum is shared by a warp, which adds the
// warp's 32 loaded contributions one after another, so the order is kept.
//
// Same conventions as cosine_kernels.h: device pointers, work enqueued on
// `stream`, the launch error returned.
#ifndef ENGRAM_KERNELS_CUDA_SPREAD_KERNELS_H_
#define ENGRAM_KERNELS_CUDA_SPREAD_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace engram::kernels::cuda {

// What a hop leaves for the host to decide the next one on.
struct HopCounters {
  unsigned long long frontier_edges;  // out-edges of the next frontier
  uint32_t frontier_nodes;            // nodes on the next frontier
  uint32_t changed;                   // 1 if some activation changed
};

// The parameters of one hop h.
struct HopParams {
  double decay;  // D(h)
  double theta;  // theta(h)
  double cap;    // max_activation
};

// Finds the lowest node u whose row_offsets decrease (offsets[u + 1] <
// offsets[u]) and the lowest edge whose target is >= n, as atomic minima
// (the caller initialises both to ~0).
cudaError_t LaunchValidateGraph(const uint32_t* offsets,
                                const uint32_t* targets, uint32_t n,
                                uint32_t num_edges,
                                unsigned long long* bad_node,
                                unsigned long long* bad_edge,
                                cudaStream_t stream);

// act[nodes[i]] = delta[nodes[i]] = values[i] for i < count.
cudaError_t LaunchScatterSeeds(const uint32_t* nodes, const double* values,
                               uint32_t count, double* act, double* delta,
                               cudaStream_t stream);

// degrees[i] = out-degree of frontier[i].
cudaError_t LaunchFrontierDegrees(const uint32_t* frontier, uint32_t count,
                                  const uint32_t* offsets, uint32_t* degrees,
                                  cudaStream_t stream);

// For the frontier's edges j < num_edges, in (frontier entry, edge) order
// (`positions` the exclusive scan of the degrees): keys[j] = the edge's target
// and contrib[j] = delta(source) * w * decay.
cudaError_t LaunchExpandFrontier(const uint32_t* frontier, uint32_t count,
                                 const uint32_t* positions,
                                 const uint32_t* offsets,
                                 const uint32_t* targets, const float* weights,
                                 const double* delta, double decay,
                                 uint32_t num_edges, uint32_t* keys,
                                 double* contrib, cudaStream_t stream);

// flags[p] = 1 where sorted keys[p] starts a run (p == 0 or a new key).
cudaError_t LaunchMarkRuns(const uint32_t* keys, uint32_t count, uint8_t* flags,
                           cudaStream_t stream);

// The push hop's update. Run i (i < *num_runs) covers sorted positions
// [starts[i], starts[i + 1]) (the last ends at count) of node keys[starts[i]];
// its input is the in-order sum of contrib[perm[p]]. Applies docs/api.md's
// update to act and next_delta, sets run_nodes[i] and run_flags[i] (1 when
// the node joins the next frontier) and adds to *counters.
cudaError_t LaunchPushApply(const uint32_t* starts, const uint32_t* num_runs,
                            uint32_t count, const uint32_t* keys,
                            const uint32_t* perm, const double* contrib,
                            const uint32_t* offsets, HopParams hop, double* act,
                            double* next_delta, uint32_t* run_nodes,
                            uint8_t* run_flags, HopCounters* counters,
                            cudaStream_t stream);

// The pull hop's update for every node, from the transposed graph
// (in_offsets, in_sources, in_weights) and the frontier's delta. node_flags
// (may be null) gets 1 for the nodes that join the next frontier.
cudaError_t LaunchPullApply(const uint32_t* in_offsets,
                            const uint32_t* in_sources, const float* in_weights,
                            uint32_t n, const double* delta,
                            const uint32_t* offsets, HopParams hop, double* act,
                            double* next_delta, uint8_t* node_flags,
                            HopCounters* counters, cudaStream_t stream);

// sources[e] = the node whose out-edge e is.
cudaError_t LaunchEdgeSources(const uint32_t* offsets, uint32_t n,
                              uint32_t num_edges, uint32_t* sources,
                              cudaStream_t stream);

// in_offsets[v] = the first position of v in the sorted targets, v <= n.
cudaError_t LaunchInOffsets(const uint32_t* sorted_targets, uint32_t num_edges,
                            uint32_t n, uint32_t* in_offsets,
                            cudaStream_t stream);

// in_sources[j] = sources[perm[j]], in_weights[j] = weights[perm[j]].
cudaError_t LaunchGatherTransposed(const uint32_t* perm, uint32_t num_edges,
                                   const uint32_t* sources,
                                   const float* weights, uint32_t* in_sources,
                                   float* in_weights, cudaStream_t stream);

// out[i] = i for i < count.
cudaError_t LaunchIota(uint32_t* out, uint32_t count, cudaStream_t stream);

// out[i] = float(in[i]) for i < count.
cudaError_t LaunchToFloat(const double* in, uint32_t count, float* out,
                          cudaStream_t stream);

// CUB's device-wide primitives. Each first tells the temporary storage it
// needs when temp is null (setting *temp_bytes), then runs with it.
// out = exclusive prefix sums of in.
cudaError_t ExclusiveSum(const uint32_t* in, uint32_t* out, uint32_t count,
                         void* temp, size_t* temp_bytes, cudaStream_t stream);
// A stable sort of (keys_in, values_in) by the key's low `bits` bits.
cudaError_t SortPairs(const uint32_t* keys_in, uint32_t* keys_out,
                      const uint32_t* values_in, uint32_t* values_out,
                      uint32_t count, int bits, void* temp, size_t* temp_bytes,
                      cudaStream_t stream);
// out = the entries of in whose flag is set, in order; *num_out their count.
cudaError_t SelectFlagged(const uint32_t* in, const uint8_t* flags,
                          uint32_t* out, uint32_t* num_out, uint32_t count,
                          void* temp, size_t* temp_bytes, cudaStream_t stream);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_SPREAD_KERNELS_H_
