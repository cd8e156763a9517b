// The structural checks every spreading kernel (CPU and GPU) runs before it
// reads a graph, so that an unvalidated graph yields an error instead of an
// out-of-bounds read. Per-edge checks happen where each edge is read anyway.
// Header-only: the CUDA library cannot link the CPU kernels' library.
#ifndef ENGRAM_KERNELS_SPREAD_SHAPE_H_
#define ENGRAM_KERNELS_SPREAD_SHAPE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "kernels/types.h"

namespace engram::kernels {

// Every seed names a node below `num_nodes`.
inline absl::Status CheckSeedNodes(absl::Span<const SpreadSeed> seeds,
                                   uint32_t num_nodes) {
  for (size_t i = 0; i < seeds.size(); ++i) {
    if (seeds[i].node >= num_nodes) {
      return absl::InvalidArgumentError(
          absl::StrCat("seeds[", i, "].node ", seeds[i].node,
                       " is out of range for ", num_nodes, " nodes"));
    }
  }
  return absl::OkStatus();
}

inline absl::Status CheckSpreadShape(const GraphView& graph,
                                     absl::Span<const SpreadSeed> seeds) {
  if (graph.row_offsets.size() != static_cast<size_t>(graph.num_nodes) + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph.row_offsets has ", graph.row_offsets.size(),
                     " entries, expected num_nodes + 1 = ",
                     static_cast<uint64_t>(graph.num_nodes) + 1));
  }
  if (graph.weights.size() != graph.targets.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph has ", graph.targets.size(), " targets but ",
                     graph.weights.size(), " weights"));
  }
  if (graph.row_offsets[0] != 0 ||
      graph.row_offsets[graph.num_nodes] != graph.targets.size()) {
    return absl::InvalidArgumentError(
        "graph.row_offsets must start at 0 and end at the number of edges");
  }
  return CheckSeedNodes(seeds, graph.num_nodes);
}

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_SPREAD_SHAPE_H_
