#include "core/spread_filters.h"

#include <algorithm>

namespace engram::core {

NodeSet::NodeSet(absl::Span<const uint32_t> nodes)
    : nodes_(nodes.begin(), nodes.end()) {
  std::sort(nodes_.begin(), nodes_.end());
  nodes_.erase(std::unique(nodes_.begin(), nodes_.end()), nodes_.end());
}

bool NodeSet::Admits(uint32_t node) const {
  return nodes_.empty() ||
         std::binary_search(nodes_.begin(), nodes_.end(), node);
}

std::vector<kernels::SpreadSeed> AdmittedSeeds(
    absl::Span<const kernels::SpreadSeed> seeds, const NodeSet& allowed,
    uint32_t* ignored) {
  std::vector<kernels::SpreadSeed> kept;
  kept.reserve(seeds.size());
  *ignored = 0;
  for (const kernels::SpreadSeed& seed : seeds) {
    if (allowed.Admits(seed.node)) {
      kept.push_back(seed);
    } else {
      ++*ignored;
    }
  }
  return kept;
}

void RestrictResult(const NodeSet& allowed, uint32_t top_k,
                    dispatch::SpreadOutput* out) {
  if (allowed.admits_all()) return;
  std::vector<float>& act = out->result.activation;
  // Zeroes the runs between admitted nodes, in one pass.
  size_t from = 0;
  for (const uint32_t node : allowed.nodes()) {
    std::fill(act.begin() + from, act.begin() + node, 0.0f);
    from = static_cast<size_t>(node) + 1;
  }
  std::fill(act.begin() + std::min(from, act.size()), act.end(), 0.0f);
  out->top.clear();
  if (top_k == 0) return;
  // Nodes the activation never reached are not results, as for an
  // unrestricted spread.
  for (const uint32_t node : allowed.nodes()) {
    if (act[node] > 0.0f) out->top.push_back({node, act[node]});
  }
  const size_t k = std::min<size_t>(top_k, out->top.size());
  std::partial_sort(out->top.begin(), out->top.begin() + k, out->top.end(),
                    kernels::BetterThan);
  out->top.resize(k);
}

}  // namespace engram::core
