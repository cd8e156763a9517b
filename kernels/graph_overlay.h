// A graph changed edge by edge, read without rebuilding its CSR: a compact
// base CSR (kernels::GraphView) and an overlay that replaces the out-edge
// lists of the nodes whose edges changed, and adds nodes past the base's.
//
// The overlay is paged, so that a change copies only the pages it touches:
// page p covers nodes [p << page_shift, (p + 1) << page_shift), and a node
// whose page is null, or whose page entry is kBaseList, keeps the base's
// list (none at all for a node past the base). A replaced list holds the
// node's whole new adjacency, in the order a CSR built from scratch would
// hold it, so a kernel that reads each node's list through EdgesOf() sees
// exactly that CSR and gives exactly its result.
//
// Views only: the arrays belong to the caller (collections::Graph keeps
// them alive for as long as the graph version is held). The CPU spreading
// kernel reads an overlay directly (kernels/cpu/spread.h); other readers
// flatten the graph with CopyOverlaidGraph.
//
// Thread-safety: views of immutable data; the functions are reentrant.
#ifndef ENGRAM_KERNELS_GRAPH_OVERLAY_H_
#define ENGRAM_KERNELS_GRAPH_OVERLAY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/large_buffer.h"
#include "kernels/types.h"

namespace engram::kernels {

// One node's out-edges: entries [begin, end) of `targets` and `weights`.
struct NodeEdges {
  const uint32_t* targets = nullptr;
  const float* weights = nullptr;
  uint32_t begin = 0;
  uint32_t end = 0;
};

struct GraphOverlay {
  // A page entry of a node that keeps the base's list.
  static constexpr uint32_t kBaseList = 0xffffffffu;

  // The replaced lists of one page's nodes.
  struct Page {
    // 1 << page_shift entries, one per node of the page: the index of its
    // list (list i is entries [offsets[i], offsets[i + 1]) of targets and
    // weights), or kBaseList.
    const uint32_t* list = nullptr;
    const uint32_t* offsets = nullptr;
    const uint32_t* targets = nullptr;
    const float* weights = nullptr;
  };

  // Of the changed graph: base.num_nodes plus the nodes added since.
  uint32_t num_nodes = 0;
  // Of the changed graph.
  uint64_t num_edges = 0;
  uint32_t page_shift = 0;
  // ceil(num_nodes / (1 << page_shift)) entries; null: no node of the page
  // changed.
  absl::Span<const Page* const> pages;
};

// Node u's out-edges in `base` changed by `overlay`; u < overlay.num_nodes.
inline NodeEdges EdgesOf(const GraphView& base, const GraphOverlay& overlay,
                         uint32_t u) {
  if (const GraphOverlay::Page* page = overlay.pages[u >> overlay.page_shift];
      page != nullptr) {
    const uint32_t mask = (uint32_t{1} << overlay.page_shift) - 1;
    const uint32_t list = page->list[u & mask];
    if (list != GraphOverlay::kBaseList) {
      return {page->targets, page->weights, page->offsets[list],
              page->offsets[list + 1]};
    }
  }
  if (u < base.num_nodes) {
    return {base.targets.data(), base.weights.data(), base.row_offsets[u],
            base.row_offsets[u + 1]};
  }
  return {};
}

// The structural checks a reader runs before EdgesOf may be called for
// every node: a well-formed base (kernels/spread_shape.h's offsets checks),
// num_nodes >= base.num_nodes, the page count, and a page shift below 32.
// INVALID_ARGUMENT naming what is wrong. O(pages); the lists themselves
// are trusted (collections::GraphStore validates every change).
absl::Status CheckOverlayShape(const GraphView& base,
                               const GraphOverlay& overlay);

// The changed graph as one compact CSR, each node's list in the overlay's
// order: the graph a put of the same edges would have made.
struct CsrGraph {
  uint32_t num_nodes = 0;
  LargeBuffer<uint32_t> row_offsets;  // num_nodes + 1
  LargeBuffer<uint32_t> targets;
  LargeBuffer<float> weights;

  GraphView view() const {
    return GraphView{
        num_nodes, absl::MakeConstSpan(row_offsets.data(), row_offsets.size()),
        absl::MakeConstSpan(targets.data(), targets.size()),
        absl::MakeConstSpan(weights.data(), weights.size())};
  }
};

// Writes the changed graph's CSR arrays into caller-owned memory:
// overlay.num_nodes + 1 row offsets and overlay.num_edges targets and
// weights. Requires CheckOverlayShape to pass and the lists to add up to
// overlay.num_edges. O(nodes + edges), on the calling thread.
void CopyOverlaidGraph(const GraphView& base, const GraphOverlay& overlay,
                       uint32_t* row_offsets, uint32_t* targets,
                       float* weights);

// CopyOverlaidGraph into buffers of its own. RESOURCE_EXHAUSTED when the
// memory is not there; the errors of CheckOverlayShape.
absl::Status MaterializeOverlaidGraph(const GraphView& base,
                                      const GraphOverlay& overlay,
                                      CsrGraph* out);

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_GRAPH_OVERLAY_H_
