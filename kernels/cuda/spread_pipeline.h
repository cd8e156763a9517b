// Internal to kernels/cuda: GpuContext::Spread (kernels/gpu_device.h) on a
// lane. The graph is staged onto the device and spread there
// (spread_device.h); the whole activation comes back, or with top_k > 0 only
// the best top_k nodes the activation reached, selected on the device. The
// caller checks the arguments (kernels/spread_shape.h) and gives back the
// lane.
#ifndef ENGRAM_KERNELS_CUDA_SPREAD_PIPELINE_H_
#define ENGRAM_KERNELS_CUDA_SPREAD_PIPELINE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "kernels/cuda/lane.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

absl::Status SpreadOnLane(const LaneContext& ctx, Lane& lane,
                          const GraphView& graph,
                          absl::Span<const SpreadSeed> seeds,
                          const SpreadParams& params, uint32_t top_k,
                          SpreadResult* out, TopKList* top,
                          const base::Interrupt* interrupt);

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_SPREAD_PIPELINE_H_
