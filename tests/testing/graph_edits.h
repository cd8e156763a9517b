// A reference for graphs changed edge by edge (UpdateGraph): a graph held
// as one edge list per node, changed by the rules of docs/api.md
// ("Changing a graph") written the plainest way, and the CSR built from
// scratch out of it; and seeded random edits to drive it. The stores and
// the kernels must agree with it bit for bit.
//
// Thread-safety: EdgeListGraph is a plain value; RandomGraphEdit is pure
// given its generator.
#ifndef ENGRAM_TESTS_TESTING_GRAPH_EDITS_H_
#define ENGRAM_TESTS_TESTING_GRAPH_EDITS_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/collections/graph_changes.h"
#include "core/collections/graph_store.h"
#include "kernels/types.h"
#include "tests/testing/random_data.h"

namespace engram::testing {

class EdgeListGraph {
 public:
  explicit EdgeListGraph(const kernels::GraphView& graph);

  uint32_t num_nodes() const { return static_cast<uint32_t>(lists_.size()); }
  uint64_t num_edges() const;
  // Node u's out-edges (target, weight), in order.
  const std::vector<std::pair<uint32_t, float>>& edges(uint32_t u) const {
    return lists_[u];
  }

  // Applies `edit` (valid for this graph) and returns what it did, every
  // not-found pair listed (the stores list the first 1,024).
  collections::GraphEditCounts Apply(const collections::GraphEdit& edit);

  // The graph as a CSR built from scratch, each node's edges in order.
  RandomCsrGraph ToCsr() const;

 private:
  std::vector<std::vector<std::pair<uint32_t, float>>> lists_;
};

enum class GraphEditKind { kAddNodes, kRemove, kReweight, kAdd, kMixed };

// A valid random edit of `kind` for `graph` with about `entries` pairs per
// list it fills: sources and targets half drawn from edges the graph holds
// (so most removes and re-weights find theirs), half uniform (so some do
// not, and duplicates and parallel edges occur); weights in (0, 1]; kMixed
// fills every list and adds nodes that its pairs may name.
collections::GraphEdit RandomGraphEdit(const EdgeListGraph& graph,
                                       GraphEditKind kind, size_t entries,
                                       std::mt19937_64& rng);

// The graph a stored version holds, changes included, as a compact CSR.
RandomCsrGraph FlattenGraph(const collections::Graph& graph);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_GRAPH_EDITS_H_
