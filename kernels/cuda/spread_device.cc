#include "kernels/cuda/spread_device.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/spread_kernels.h"

namespace engram::kernels::cuda {
namespace {

constexpr unsigned long long kNone = ~0ull;

// Bits a sort must look at for node ids below n.
int KeyBits(uint32_t n) {
  int bits = 1;
  while (bits < 32 && (uint64_t{1} << bits) < n) ++bits;
  return bits;
}

template <typename T>
absl::StatusOr<DeviceArray<T>> Zeroed(size_t count, cudaMemPool_t pool,
                                      cudaStream_t stream) {
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<T> array,
                          DeviceArray<T>::Allocate(count, pool, stream));
  if (count != 0) {
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(array.get(), 0, array.bytes(), stream));
  }
  return array;
}

// Temporary storage for CUB calls, grown on demand, in stream order.
class Scratch {
 public:
  Scratch(cudaMemPool_t pool, cudaStream_t stream)
      : pool_(pool), stream_(stream) {}
  absl::StatusOr<void*> Reserve(size_t bytes) {
    if (bytes > buffer_.size()) {
      buffer_.Reset();
      ENGRAM_ASSIGN_OR_RETURN(
          buffer_, DeviceArray<uint8_t>::Allocate(bytes, pool_, stream_));
    }
    return static_cast<void*>(buffer_.get());
  }

 private:
  cudaMemPool_t pool_;
  cudaStream_t stream_;
  DeviceArray<uint8_t> buffer_;
};

// Runs a CUB primitive: asks for its temporary storage, reserves it, runs.
template <typename Call>
absl::Status RunCub(Scratch& scratch, Call call) {
  size_t bytes = 0;
  ENGRAM_CUDA_RETURN_IF_ERROR(call(nullptr, &bytes));
  ENGRAM_ASSIGN_OR_RETURN(void* temp, scratch.Reserve(bytes));
  ENGRAM_CUDA_RETURN_IF_ERROR(call(temp, &bytes));
  return absl::OkStatus();
}

template <typename T>
absl::Status CopyOut(const T* device, T* host, size_t count,
                     cudaStream_t stream) {
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, device, count * sizeof(T),
                                              cudaMemcpyDeviceToHost, stream));
  ENGRAM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

// The seeds as the CPU applies them: act[s] = min(cap, act[s] + a) in their
// order, then the frontier is every seeded node with act > 0, ascending.
struct FoldedSeeds {
  std::vector<uint32_t> nodes;  // ascending, distinct
  std::vector<double> values;   // their activations
  std::vector<uint32_t> frontier;
};

FoldedSeeds FoldSeeds(absl::Span<const SpreadSeed> seeds, double cap) {
  std::vector<uint32_t> order(seeds.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return seeds[a].node < seeds[b].node;
  });
  FoldedSeeds folded;
  for (uint32_t i : order) {
    const SpreadSeed& seed = seeds[i];
    if (folded.nodes.empty() || folded.nodes.back() != seed.node) {
      folded.nodes.push_back(seed.node);
      folded.values.push_back(0.0);
    }
    double& act = folded.values.back();
    act = std::min(cap, act + seed.activation);
  }
  for (size_t i = 0; i < folded.nodes.size(); ++i) {
    if (folded.values[i] > 0.0) folded.frontier.push_back(folded.nodes[i]);
  }
  return folded;
}

// The per-hop working set of a push, sized for `capacity` frontier edges.
struct PushBuffers {
  DeviceArray<uint32_t> keys_in;
  DeviceArray<uint32_t> keys_out;
  DeviceArray<uint32_t> perm;
  DeviceArray<double> contrib;
  DeviceArray<uint8_t> run_heads;
  DeviceArray<uint32_t> run_starts;
  DeviceArray<uint32_t> run_nodes;
  DeviceArray<uint8_t> run_flags;
  DeviceArray<uint32_t> num_runs;

  static absl::StatusOr<PushBuffers> Allocate(size_t capacity,
                                              cudaMemPool_t pool,
                                              cudaStream_t stream) {
    PushBuffers b;
    ENGRAM_ASSIGN_OR_RETURN(
        b.keys_in, DeviceArray<uint32_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.keys_out, DeviceArray<uint32_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.perm, DeviceArray<uint32_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.contrib, DeviceArray<double>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.run_heads, DeviceArray<uint8_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.run_starts, DeviceArray<uint32_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.run_nodes, DeviceArray<uint32_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        b.run_flags, DeviceArray<uint8_t>::Allocate(capacity, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(b.num_runs,
                            DeviceArray<uint32_t>::Allocate(1, pool, stream));
    return b;
  }
};

}  // namespace

absl::StatusOr<DeviceGraph> DeviceGraph::Allocate(uint32_t num_nodes,
                                                  uint32_t num_edges,
                                                  cudaMemPool_t pool,
                                                  cudaStream_t stream) {
  DeviceGraph graph;
  graph.num_nodes_ = num_nodes;
  graph.num_edges_ = num_edges;
  ENGRAM_ASSIGN_OR_RETURN(
      graph.row_offsets_,
      DeviceArray<uint32_t>::Allocate(size_t{num_nodes} + 1, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(
      graph.targets_, DeviceArray<uint32_t>::Allocate(num_edges, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(
      graph.weights_, DeviceArray<float>::Allocate(num_edges, pool, stream));
  return graph;
}

absl::Status DeviceGraph::EnsureTranspose(cudaMemPool_t pool,
                                          cudaStream_t stream) {
  if (has_transpose()) return absl::OkStatus();
  const uint32_t n = num_nodes_;
  const uint32_t e = num_edges_;
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> in_offsets,
                          Zeroed<uint32_t>(size_t{n} + 1, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> in_sources,
                          DeviceArray<uint32_t>::Allocate(e, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> in_weights,
                          DeviceArray<float>::Allocate(e, pool, stream));
  if (e > 0) {
    // Edge ids are in (source, edge) order, so a stable sort of (target,
    // edge id) by target lists each node's in-edges in that order.
    ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> sources,
                            DeviceArray<uint32_t>::Allocate(e, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> ids,
                            DeviceArray<uint32_t>::Allocate(e, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> sorted,
                            DeviceArray<uint32_t>::Allocate(e, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> perm,
                            DeviceArray<uint32_t>::Allocate(e, pool, stream));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchEdgeSources(row_offsets_.get(), n, e, sources.get(), stream));
    ENGRAM_CUDA_RETURN_IF_ERROR(LaunchIota(ids.get(), e, stream));
    Scratch scratch(pool, stream);
    ENGRAM_RETURN_IF_ERROR(RunCub(scratch, [&](void* temp, size_t* bytes) {
      return SortPairs(targets_.get(), sorted.get(), ids.get(), perm.get(), e,
                       KeyBits(n), temp, bytes, stream);
    }));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchInOffsets(sorted.get(), e, n, in_offsets.get(), stream));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchGatherTransposed(perm.get(), e, sources.get(), weights_.get(),
                               in_sources.get(), in_weights.get(), stream));
  }
  in_offsets_ = std::move(in_offsets);
  in_sources_ = std::move(in_sources);
  in_weights_ = std::move(in_weights);
  return absl::OkStatus();
}

absl::Status CheckGraphOnDevice(DeviceGraph& graph, const GraphView& host,
                                cudaMemPool_t pool, cudaStream_t stream) {
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> bad,
      DeviceArray<unsigned long long>::Allocate(2, pool, stream));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(bad.get(), 0xff, bad.bytes(), stream));
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchValidateGraph(
      graph.row_offsets(), graph.targets(), graph.num_nodes(),
      graph.num_edges(), bad.get(), bad.get() + 1, stream));
  unsigned long long found[2];
  ENGRAM_RETURN_IF_ERROR(CopyOut(bad.get(), found, 2, stream));
  if (found[0] != kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.row_offsets decreases at node ", found[0]));
  }
  if (found[1] != kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.targets[", found[1], "] = ", host.targets[found[1]],
                     " is out of range for ", host.num_nodes, " nodes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SpreadOnDeviceResult> SpreadOnDevice(
    DeviceGraph& graph, absl::Span<const uint32_t> host_row_offsets,
    absl::Span<const SpreadSeed> seeds, const SpreadParams& params,
    const SpreadOnDeviceOptions& options, CopyToDevice copy, cudaMemPool_t pool,
    cudaStream_t stream, const base::Interrupt* interrupt,
    DeviceArray<double>* activation) {
  const uint32_t n = graph.num_nodes();
  const uint32_t num_edges = graph.num_edges();
  SpreadOnDeviceResult result;
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> act,
                          Zeroed<double>(n, pool, stream));
  if (n == 0) {
    *activation = std::move(act);
    return result;
  }
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> delta,
                          Zeroed<double>(n, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<double> next_delta,
                          Zeroed<double>(n, pool, stream));

  const double cap = params.max_activation;
  const FoldedSeeds folded = FoldSeeds(seeds, cap);
  const uint32_t num_seeded = static_cast<uint32_t>(folded.nodes.size());
  {
    ENGRAM_ASSIGN_OR_RETURN(
        DeviceArray<uint32_t> seed_nodes,
        DeviceArray<uint32_t>::Allocate(num_seeded, pool, stream));
    ENGRAM_ASSIGN_OR_RETURN(
        DeviceArray<double> seed_values,
        DeviceArray<double>::Allocate(num_seeded, pool, stream));
    ENGRAM_RETURN_IF_ERROR(
        copy(seed_nodes.get(), folded.nodes.data(), seed_nodes.bytes()));
    ENGRAM_RETURN_IF_ERROR(
        copy(seed_values.get(), folded.values.data(), seed_values.bytes()));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        LaunchScatterSeeds(seed_nodes.get(), seed_values.get(), num_seeded,
                           act.get(), delta.get(), stream));
  }

  // The frontier as a list, ascending (push hops read it), and as delta.
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> frontier,
                          DeviceArray<uint32_t>::Allocate(n, pool, stream));
  ENGRAM_RETURN_IF_ERROR(copy(frontier.get(), folded.frontier.data(),
                              folded.frontier.size() * sizeof(uint32_t)));
  uint32_t frontier_nodes = static_cast<uint32_t>(folded.frontier.size());
  uint64_t frontier_edges = 0;
  for (uint32_t u : folded.frontier) {
    frontier_edges += host_row_offsets[u + 1] - host_row_offsets[u];
  }

  const uint64_t push_capacity =
      options.push_max_fraction >= 1.0
          ? num_edges
          : static_cast<uint64_t>(
                std::floor(options.push_max_fraction * num_edges));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> degrees,
                          DeviceArray<uint32_t>::Allocate(n, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> positions,
                          DeviceArray<uint32_t>::Allocate(n, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint8_t> node_flags,
                          DeviceArray<uint8_t>::Allocate(n, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> iota,
      DeviceArray<uint32_t>::Allocate(std::max<uint64_t>(n, push_capacity),
                                      pool, stream));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      LaunchIota(iota.get(), static_cast<uint32_t>(iota.size()), stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<HopCounters> counters,
                          DeviceArray<HopCounters>::Allocate(1, pool, stream));
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<uint32_t> selected,
                          DeviceArray<uint32_t>::Allocate(1, pool, stream));
  PushBuffers push_buffers;
  bool have_push_buffers = false;
  Scratch scratch(pool, stream);
  const int key_bits = KeyBits(n);

  bool push = frontier_edges <= push_capacity;
  for (uint32_t h = 1; h <= params.max_hops && frontier_nodes > 0; ++h) {
    // The previous hop's counters were copied out, so the stream is idle:
    // a stop here leaves no work queued behind it.
    ENGRAM_RETURN_IF_ERROR(base::CheckInterrupt(interrupt));
    const HopParams hop{params.Decay(h),
                        static_cast<double>(params.Threshold(h)), cap};
    const uint32_t hop_edges = static_cast<uint32_t>(frontier_edges);
    result.edges_traversed += hop_edges;
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(next_delta.get(), 0, next_delta.bytes(), stream));
    ENGRAM_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(counters.get(), 0, counters.bytes(), stream));
    ++(push ? result.push_hops : result.pull_hops);
    if (hop_edges > 0 && push) {
      if (!have_push_buffers) {
        ENGRAM_ASSIGN_OR_RETURN(
            push_buffers, PushBuffers::Allocate(push_capacity, pool, stream));
        have_push_buffers = true;
      }
      PushBuffers& b = push_buffers;
      ENGRAM_CUDA_RETURN_IF_ERROR(
          LaunchFrontierDegrees(frontier.get(), frontier_nodes,
                                graph.row_offsets(), degrees.get(), stream));
      ENGRAM_RETURN_IF_ERROR(RunCub(scratch, [&](void* temp, size_t* bytes) {
        return ExclusiveSum(degrees.get(), positions.get(), frontier_nodes,
                            temp, bytes, stream);
      }));
      ENGRAM_CUDA_RETURN_IF_ERROR(LaunchExpandFrontier(
          frontier.get(), frontier_nodes, positions.get(), graph.row_offsets(),
          graph.targets(), graph.weights(), delta.get(), hop.decay, hop_edges,
          b.keys_in.get(), b.contrib.get(), stream));
      ENGRAM_RETURN_IF_ERROR(RunCub(scratch, [&](void* temp, size_t* bytes) {
        return SortPairs(b.keys_in.get(), b.keys_out.get(), iota.get(),
                         b.perm.get(), hop_edges, key_bits, temp, bytes,
                         stream);
      }));
      ENGRAM_CUDA_RETURN_IF_ERROR(LaunchMarkRuns(b.keys_out.get(), hop_edges,
                                                 b.run_heads.get(), stream));
      ENGRAM_RETURN_IF_ERROR(RunCub(scratch, [&](void* temp, size_t* bytes) {
        return SelectFlagged(iota.get(), b.run_heads.get(), b.run_starts.get(),
                             b.num_runs.get(), hop_edges, temp, bytes, stream);
      }));
      ENGRAM_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(b.run_flags.get(), 0, hop_edges, stream));
      ENGRAM_CUDA_RETURN_IF_ERROR(LaunchPushApply(
          b.run_starts.get(), b.num_runs.get(), hop_edges, b.keys_out.get(),
          b.perm.get(), b.contrib.get(), graph.row_offsets(), hop, act.get(),
          next_delta.get(), b.run_nodes.get(), b.run_flags.get(),
          counters.get(), stream));
    } else if (hop_edges > 0) {
      ENGRAM_RETURN_IF_ERROR(graph.EnsureTranspose(pool, stream));
      ENGRAM_CUDA_RETURN_IF_ERROR(LaunchPullApply(
          graph.in_offsets(), graph.in_sources(), graph.in_weights(), n,
          delta.get(), graph.row_offsets(), hop, act.get(), next_delta.get(),
          node_flags.get(), counters.get(), stream));
    }
    HopCounters after;
    ENGRAM_RETURN_IF_ERROR(CopyOut(counters.get(), &after, 1, stream));
    if (after.changed != 0) result.hops = h;
    std::swap(delta, next_delta);
    frontier_nodes = after.frontier_nodes;
    frontier_edges = after.frontier_edges;
    if (frontier_nodes == 0 || h == params.max_hops) break;
    const bool next_push = frontier_edges <= push_capacity;
    if (next_push) {
      // The next frontier as an ascending list: the runs (ascending by
      // node) or the nodes whose flag the pull set.
      ENGRAM_RETURN_IF_ERROR(RunCub(scratch, [&](void* temp, size_t* bytes) {
        return push
                   ? SelectFlagged(push_buffers.run_nodes.get(),
                                   push_buffers.run_flags.get(), frontier.get(),
                                   selected.get(), hop_edges, temp, bytes,
                                   stream)
                   : SelectFlagged(iota.get(), node_flags.get(), frontier.get(),
                                   selected.get(), n, temp, bytes, stream);
      }));
    }
    push = next_push;
  }
  // Everything above ran on `stream`; the arrays freed at return are freed
  // after it in stream order.
  *activation = std::move(act);
  return result;
}

}  // namespace engram::kernels::cuda
