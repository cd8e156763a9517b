#include "kernels/graph_overlay.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/spread_shape.h"

namespace engram::kernels {

absl::Status CheckOverlayShape(const GraphView& base,
                               const GraphOverlay& overlay) {
  ENGRAM_RETURN_IF_ERROR(CheckSpreadShape(base, {}));
  if (overlay.num_nodes < base.num_nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph overlay has ", overlay.num_nodes,
                     " nodes, fewer than its base's ", base.num_nodes));
  }
  if (overlay.page_shift >= 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "graph overlay page shift ", overlay.page_shift, " is not below 32"));
  }
  const uint64_t page_nodes = uint64_t{1} << overlay.page_shift;
  const uint64_t pages =
      (uint64_t{overlay.num_nodes} + page_nodes - 1) / page_nodes;
  if (overlay.pages.size() != pages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "graph overlay has ", overlay.pages.size(), " pages, expected ", pages,
        " for ", overlay.num_nodes, " nodes"));
  }
  return absl::OkStatus();
}

void CopyOverlaidGraph(const GraphView& base, const GraphOverlay& overlay,
                       uint32_t* row_offsets, uint32_t* targets,
                       float* weights) {
  const uint32_t page_nodes = uint32_t{1} << overlay.page_shift;
  uint32_t at = 0;
  for (size_t p = 0; p < overlay.pages.size(); ++p) {
    const uint32_t first = static_cast<uint32_t>(p << overlay.page_shift);
    const uint32_t last = static_cast<uint32_t>(
        std::min<uint64_t>(overlay.num_nodes, uint64_t{first} + page_nodes));
    if (overlay.pages[p] == nullptr && last <= base.num_nodes) {
      // A page no change touched: its nodes' lists are one run of the
      // base's arrays, copied whole.
      const uint32_t begin = base.row_offsets[first];
      const uint32_t end = base.row_offsets[last];
      const uint32_t shift = at - begin;
      for (uint32_t u = first; u < last; ++u) {
        row_offsets[u] = base.row_offsets[u] + shift;
      }
      std::memcpy(targets + at, base.targets.data() + begin,
                  static_cast<size_t>(end - begin) * sizeof(uint32_t));
      std::memcpy(weights + at, base.weights.data() + begin,
                  static_cast<size_t>(end - begin) * sizeof(float));
      at += end - begin;
      continue;
    }
    for (uint32_t u = first; u < last; ++u) {
      row_offsets[u] = at;
      const NodeEdges edges = EdgesOf(base, overlay, u);
      const uint32_t degree = edges.end - edges.begin;
      if (degree == 0) continue;
      std::memcpy(targets + at, edges.targets + edges.begin,
                  degree * sizeof(uint32_t));
      std::memcpy(weights + at, edges.weights + edges.begin,
                  degree * sizeof(float));
      at += degree;
    }
  }
  row_offsets[overlay.num_nodes] = at;
}

absl::Status MaterializeOverlaidGraph(const GraphView& base,
                                      const GraphOverlay& overlay,
                                      CsrGraph* out) {
  ENGRAM_RETURN_IF_ERROR(CheckOverlayShape(base, overlay));
  try {
    out->row_offsets =
        LargeBuffer<uint32_t>(static_cast<size_t>(overlay.num_nodes) + 1);
    out->targets = LargeBuffer<uint32_t>(overlay.num_edges);
    out->weights = LargeBuffer<float>(overlay.num_edges);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a CSR copy of a graph of ", overlay.num_nodes,
        " nodes and ", overlay.num_edges, " edges"));
  }
  out->num_nodes = overlay.num_nodes;
  CopyOverlaidGraph(base, overlay, out->row_offsets.data(), out->targets.data(),
                    out->weights.data());
  return absl::OkStatus();
}

}  // namespace engram::kernels
