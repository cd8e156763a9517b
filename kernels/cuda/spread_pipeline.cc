// GpuContext::Spread on a lane (kernels/cuda/spread_pipeline.h).
#include "kernels/cuda/spread_pipeline.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "base/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane.h"
#include "kernels/cuda/spread_device.h"
#include "kernels/cuda/spread_kernels.h"
#include "kernels/cuda/topk_kernels.h"
#include "kernels/cuda/topk_lists.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

absl::Status SpreadOnLane(const LaneContext& ctx, Lane& lane,
                          const GraphView& graph,
                          absl::Span<const SpreadSeed> seeds,
                          const SpreadParams& params, uint32_t top_k,
                          SpreadResult* out, TopKList* top,
                          const base::Interrupt* interrupt) {
  const uint32_t n = graph.num_nodes;
  const uint32_t num_edges = static_cast<uint32_t>(graph.num_edges());
  cudaStream_t compute = lane.compute.get();
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceGraph device_graph,
      DeviceGraph::Allocate(n, num_edges, ctx.pool, compute));
  DeviceArray<double> activation;
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<float> activation_f32,
                          DeviceArray<float>::Allocate(n, ctx.pool, compute));
  CopiesFinishFirst finish(lane);
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, device_graph.row_offsets(),
                                graph.row_offsets.data(),
                                graph.row_offsets.size() * sizeof(uint32_t)));
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, device_graph.targets(),
                                graph.targets.data(),
                                graph.targets.size() * sizeof(uint32_t)));
  ENGRAM_RETURN_IF_ERROR(Upload(ctx, lane, device_graph.weights(),
                                graph.weights.data(),
                                graph.weights.size() * sizeof(float)));
  ENGRAM_RETURN_IF_ERROR(
      CheckGraphOnDevice(device_graph, graph, ctx.pool, compute));
  SpreadOnDeviceOptions spread_options;
  spread_options.push_max_fraction = ctx.options->spread_push_max_fraction;
  ENGRAM_ASSIGN_OR_RETURN(
      const SpreadOnDeviceResult result,
      SpreadOnDevice(
          device_graph, graph.row_offsets, seeds, params, spread_options,
          [&](void* device, const void* host, size_t bytes) {
            return Upload(ctx, lane, device, host, bytes);
          },
          ctx.pool, compute, interrupt, &activation));
  ENGRAM_CUDA_RETURN_IF_ERROR(
      LaunchToFloat(activation.get(), n, activation_f32.get(), compute));
  out->hops = result.hops;
  out->edges_traversed = result.edges_traversed;
  if (top_k == 0) {
    out->activation.resize(n);
    return Download(ctx, lane, out->activation.data(), activation_f32.get(),
                    activation_f32.bytes());
  }
  // Nodes the activation never reached are not results.
  out->activation.clear();
  const uint32_t keep = std::min(top_k, n);
  ENGRAM_ASSIGN_OR_RETURN(DeviceArray<unsigned char> select_workspace,
                          DeviceArray<unsigned char>::Allocate(
                              TopKWorkspaceBytes(1), ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<unsigned long long> keys,
      DeviceArray<unsigned long long>::Allocate(keep, ctx.pool, compute));
  ENGRAM_ASSIGN_OR_RETURN(
      DeviceArray<uint32_t> count,
      DeviceArray<uint32_t>::Allocate(1, ctx.pool, compute));
  ENGRAM_CUDA_RETURN_IF_ERROR(LaunchTopKSelect(
      activation_f32.get(), 1, n, n, keep,
      std::numeric_limits<float>::denorm_min(), select_workspace.get(),
      keys.get(), count.get(), compute));
  std::vector<unsigned long long> host_keys(keep);
  uint32_t host_count = 0;
  ENGRAM_RETURN_IF_ERROR(
      Download(ctx, lane, host_keys.data(), keys.get(), keys.bytes()));
  ENGRAM_RETURN_IF_ERROR(
      Download(ctx, lane, &host_count, count.get(), sizeof(host_count)));
  if (top != nullptr) {
    *top = DecodeTopKList(host_keys.data(), std::min(host_count, keep), 0);
  }
  return absl::OkStatus();
}

}  // namespace engram::kernels::cuda
