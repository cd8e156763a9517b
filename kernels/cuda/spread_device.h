// Spreading activation over a graph already on the device (docs/api.md):
// the hop loop of spread_kernels.h, pushing over a sparse frontier and
// pulling over the transposed graph once the frontier is dense. GpuContext
// runs it after copying a request's graph in; the benchmarks run it on a
// graph kept on the device.
//
// This header needs the CUDA headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_SPREAD_DEVICE_H_
#define ENGRAM_KERNELS_CUDA_SPREAD_DEVICE_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

// A CSR graph in device memory, allocated in stream order on `stream` from
// `pool`; the caller copies the arrays in. Its transpose (in-edges in
// (source, edge) order) is built by the first hop that pulls and kept.
// Move-only; used by one stream at a time.
class DeviceGraph {
 public:
  static absl::StatusOr<DeviceGraph> Allocate(uint32_t num_nodes,
                                              uint32_t num_edges,
                                              cudaMemPool_t pool,
                                              cudaStream_t stream);

  uint32_t num_nodes() const { return num_nodes_; }
  uint32_t num_edges() const { return num_edges_; }
  uint32_t* row_offsets() { return row_offsets_.get(); }  // num_nodes + 1
  uint32_t* targets() { return targets_.get(); }
  float* weights() { return weights_.get(); }
  bool has_transpose() const { return in_offsets_.size() != 0; }

  // Builds the transpose if it is not there yet.
  absl::Status EnsureTranspose(cudaMemPool_t pool, cudaStream_t stream);

  const uint32_t* in_offsets() const { return in_offsets_.get(); }
  const uint32_t* in_sources() const { return in_sources_.get(); }
  const float* in_weights() const { return in_weights_.get(); }

 private:
  uint32_t num_nodes_ = 0;
  uint32_t num_edges_ = 0;
  DeviceArray<uint32_t> row_offsets_;
  DeviceArray<uint32_t> targets_;
  DeviceArray<float> weights_;
  DeviceArray<uint32_t> in_offsets_;
  DeviceArray<uint32_t> in_sources_;
  DeviceArray<float> in_weights_;
};

// Checks the whole graph on the device and reports the lowest bad node or
// edge as the CPU kernel words it (INVALID_ARGUMENT); `host` is the same
// graph in host memory, for the message. Synchronises `stream`.
absl::Status CheckGraphOnDevice(DeviceGraph& graph, const GraphView& host,
                                cudaMemPool_t pool, cudaStream_t stream);

// Copies `bytes` of host memory to the device in stream order.
using CopyToDevice = absl::FunctionRef<absl::Status(
    void* device, const void* host, size_t bytes)>;

struct SpreadOnDeviceOptions {
  // A hop pushes when its frontier's out-edges are at most this fraction of
  // all edges, and pulls above it. [0, 1].
  double push_max_fraction = 1.0 / 16;
};

struct SpreadOnDeviceResult {
  uint32_t hops = 0;
  uint64_t edges_traversed = 0;
  uint32_t push_hops = 0;  // hops executed by pushing
  uint32_t pull_hops = 0;  // hops executed by pulling
};

// Runs docs/api.md's propagation on `graph` (already checked) from `seeds`
// (host memory, validated: nodes in range, activations finite and >= 0).
// `host_row_offsets` is the graph's row_offsets in host memory (the seeds'
// out-degrees are read there). Leaves every node's float64 activation in
// *activation (allocated here). Synchronises `stream` once a hop, and
// checks `interrupt` (may be null) before each hop, returning a stop as it
// is.
absl::StatusOr<SpreadOnDeviceResult> SpreadOnDevice(
    DeviceGraph& graph, absl::Span<const uint32_t> host_row_offsets,
    absl::Span<const SpreadSeed> seeds, const SpreadParams& params,
    const SpreadOnDeviceOptions& options, CopyToDevice copy, cudaMemPool_t pool,
    cudaStream_t stream, const base::Interrupt* interrupt,
    DeviceArray<double>* activation);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_SPREAD_DEVICE_H_
