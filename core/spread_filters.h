// The node allow-lists of a spreading request (SpreadRequest.seed_nodes and
// result_nodes, docs/api.md): seeds on nodes outside `seed_nodes` are
// dropped before the spread and counted, and results outside
// `result_nodes` are dropped after it. Applied by Engine::Spread around the
// dispatch, so that every backend, and a graph given inline or by name,
// gives the same answer.
//
// Thread-safety: NodeSet is immutable after construction; the functions
// are reentrant.
#ifndef ENGRAM_CORE_SPREAD_FILTERS_H_
#define ENGRAM_CORE_SPREAD_FILTERS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "core/dispatch/jobs.h"
#include "kernels/types.h"

namespace engram::core {

// A set of node ids, held sorted; an empty set admits every node.
class NodeSet {
 public:
  explicit NodeSet(absl::Span<const uint32_t> nodes);

  bool admits_all() const { return nodes_.empty(); }
  bool Admits(uint32_t node) const;
  // Sorted, without duplicates.
  const std::vector<uint32_t>& nodes() const { return nodes_; }

 private:
  std::vector<uint32_t> nodes_;
};

// The seeds `allowed` admits, in order; *ignored counts the others.
std::vector<kernels::SpreadSeed> AdmittedSeeds(
    absl::Span<const kernels::SpreadSeed> seeds, const NodeSet& allowed,
    uint32_t* ignored);

// Restricts a spread's result to `allowed` (whose nodes are all below the
// activation's size): every other node's activation becomes 0, and when
// top_k > 0 out->top holds the best top_k admitted nodes the spread
// reached, in the service's order (kernels::BetterThan).
void RestrictResult(const NodeSet& allowed, uint32_t top_k,
                    dispatch::SpreadOutput* out);

}  // namespace engram::core

#endif  // ENGRAM_CORE_SPREAD_FILTERS_H_
