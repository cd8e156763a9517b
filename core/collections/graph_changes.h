// GraphEdit, one UpdateGraph's changes to a resident graph, and
// GraphChanges, what a graph version holds of the edits made since its
// compact CSR was built: the paged overlay of kernels/graph_overlay.h, with
// the storage its views point into.
//
// An edit is applied in this order (docs/api.md, "Changing a graph"):
// add_nodes new nodes without edges; then every edge source -> target of
// each remove_edges pair is removed; then every edge source -> target of
// each set_weights entry gets its weight (a later entry for the same pair
// wins); then add_edges are appended after their source's other edges, in
// request order. A remove or set pair the graph does not hold at its step
// is not an error: it is counted, and the first kMaxListedNotFound are
// listed.
//
// A GraphChanges is immutable. Applying an edit copies only the pages of
// the nodes it changes (each holding those nodes' whole new lists) and
// shares every other page with the version it came from, so an edit costs
// time in proportion to the pages it touches and the lists it rewrites, and
// readers of older versions keep theirs. The pages are owned in groups of
// kPagesPerGroup, shared the same way, so that an edit takes a reference to
// each group rather than to each page; the flat table of page views the
// kernels read is copied whole, plain pointers. Pages pay for their memory
// with reservations from the stores' MemoryBudget.
//
// Thread-safety: GraphChanges is immutable once built; the functions are
// reentrant.
#ifndef ENGRAM_CORE_COLLECTIONS_GRAPH_CHANGES_H_
#define ENGRAM_CORE_COLLECTIONS_GRAPH_CHANGES_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/collections/memory_budget.h"
#include "kernels/graph_overlay.h"
#include "kernels/types.h"

namespace engram::collections {

// The most entries each of an edit's lists may hold.
inline constexpr size_t kMaxGraphEditEntries = size_t{1} << 20;
// The not-found pairs an edit's outcome lists; all are counted.
inline constexpr size_t kMaxListedNotFound = 1024;
// CSR indices are uint32 (kernels::GraphView): num_nodes + 1 row offsets
// must be countable, and every edge index must fit.
inline constexpr uint64_t kMaxGraphNodes = 0xfffffffeu;
inline constexpr uint64_t kMaxGraphEdges = 0xffffffffu;

struct GraphEdgeRef {
  uint32_t source = 0;
  uint32_t target = 0;

  friend bool operator==(const GraphEdgeRef& a, const GraphEdgeRef& b) {
    return a.source == b.source && a.target == b.target;
  }
};

struct GraphWeightedEdge {
  uint32_t source = 0;
  uint32_t target = 0;
  float weight = 0.0f;
};

struct GraphEdit {
  uint32_t add_nodes = 0;
  std::vector<GraphEdgeRef> remove_edges;
  std::vector<GraphWeightedEdge> set_weights;
  std::vector<GraphWeightedEdge> add_edges;

  bool empty() const {
    return add_nodes == 0 && remove_edges.empty() && set_weights.empty() &&
           add_edges.empty();
  }
};

// What applying an edit did.
struct GraphEditCounts {
  uint64_t edges_removed = 0;
  uint64_t edges_reweighted = 0;  // edges that got a weight, each once
  uint64_t edges_added = 0;
  // remove_edges and set_weights entries whose pair the graph did not
  // hold at their step; the first kMaxListedNotFound of them, remove_edges'
  // then set_weights', each in request order.
  uint64_t not_found = 0;
  std::vector<GraphEdgeRef> not_found_edges;
};

// Checks `edit` against a graph of `num_nodes` nodes before anything is
// applied: each list at most kMaxGraphEditEntries long, every node id below
// num_nodes + add_nodes, every weight finite and >= 0 (INVALID_ARGUMENT
// naming the field and the index, e.g. "add_edges[3].target");
// num_nodes + add_nodes within kMaxGraphNodes (RESOURCE_EXHAUSTED). The
// edge count is checked by Apply, once it is known.
absl::Status ValidateGraphEdit(const GraphEdit& edit, uint32_t num_nodes);

class GraphChanges {
 public:
  GraphChanges(const GraphChanges&) = delete;
  GraphChanges& operator=(const GraphChanges&) = delete;
  ~GraphChanges();

  // The page shift overlays of a base of `num_nodes` nodes use: pages of
  // about sqrt(num_nodes) nodes, so that an edit copies about as much of
  // the page table as of the pages it touches.
  static uint32_t PageShiftFor(uint32_t base_nodes);

  // Applies `edit` (which passed ValidateGraphEdit) to the graph `base`
  // changed by `current` (null: by nothing), and fills *counts. The pages
  // the edit writes are reserved from `budget` (RESOURCE_EXHAUSTED naming
  // `what` when they do not fit); RESOURCE_EXHAUSTED as well when the
  // graph would pass kMaxGraphEdges. Nothing is changed on
  // error.
  static absl::StatusOr<std::shared_ptr<const GraphChanges>> Apply(
      const kernels::GraphView& base, const GraphChanges* current,
      const GraphEdit& edit, MemoryBudget& budget, absl::string_view what,
      GraphEditCounts* counts);

  // The same graph as `base` changed by `current`, over `new_base`, which
  // must hold every node's list as that graph does except for `nodes`
  // (sorted, unique): their lists are copied into the new changes. For a
  // merge whose rebuilt CSR missed the edits made while it ran.
  // `pending_changes` and `edits` are what the result reports.
  static absl::StatusOr<std::shared_ptr<const GraphChanges>> Rebase(
      const kernels::GraphView& new_base, const kernels::GraphView& base,
      const GraphChanges& current, absl::Span<const uint32_t> nodes,
      uint64_t pending_changes, uint64_t edits, MemoryBudget& budget,
      absl::string_view what);

  // The view the kernels read (kernels/graph_overlay.h); valid while this
  // object is alive.
  const kernels::GraphOverlay& overlay() const { return overlay_; }
  uint32_t num_nodes() const { return overlay_.num_nodes; }
  uint64_t num_edges() const { return overlay_.num_edges; }
  // Edges removed, re-weighted and added since the base was built.
  uint64_t pending_changes() const { return pending_changes_; }
  // Edits applied since the base was built (Apply: one more than
  // `current`'s; Rebase: as given).
  uint64_t edits() const { return edits_; }
  // Nodes whose lists replace the base's, and the edges those lists hold.
  uint64_t replaced_nodes() const { return replaced_nodes_; }
  uint64_t replaced_edges() const { return replaced_edges_; }
  // Host bytes of the pages and the page table.
  uint64_t bytes() const { return bytes_; }

 private:
  struct Page;
  struct PageGroup;
  static constexpr size_t kPagesPerGroup = 32;
  // One node's new list while a change is built.
  struct NewList {
    uint32_t node = 0;
    std::vector<uint32_t> targets;
    std::vector<float> weights;
  };

  GraphChanges() = default;
  // The changes with `lists` (sorted by node) written over the pages of
  // `from` (null: none), the page table grown to cover `num_nodes`.
  static absl::StatusOr<std::shared_ptr<const GraphChanges>> Build(
      uint32_t page_shift, uint32_t num_nodes, uint64_t num_edges,
      uint64_t pending_changes, uint64_t edits, const GraphChanges* from,
      absl::Span<const NewList> lists, MemoryBudget& budget,
      absl::string_view what);
  // Page p, or null.
  const Page* PageAt(size_t p) const;

  std::vector<std::shared_ptr<const PageGroup>> groups_;
  std::vector<const kernels::GraphOverlay::Page*> page_views_;
  kernels::GraphOverlay overlay_;
  uint64_t pending_changes_ = 0;
  uint64_t edits_ = 0;
  uint64_t replaced_nodes_ = 0;
  uint64_t replaced_edges_ = 0;
  uint64_t bytes_ = 0;
  // Pays for the page table and the groups this version made; each page
  // holds its own.
  Reservation reservation_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_GRAPH_CHANGES_H_
