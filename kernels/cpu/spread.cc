#include "kernels/cpu/spread.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace engram::kernels {
namespace {

// A node whose increase travels on the next hop, and that increase.
struct FrontierEntry {
  uint32_t node;
  double delta;
};

// Cheap structural checks, so that an unvalidated graph yields an error
// instead of an out-of-bounds read. Per-edge checks happen during the push,
// where the edge is read anyway.
absl::Status CheckShape(const GraphView& graph,
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
  for (size_t i = 0; i < seeds.size(); ++i) {
    if (seeds[i].node >= graph.num_nodes) {
      return absl::InvalidArgumentError(
          absl::StrCat("seeds[", i, "].node ", seeds[i].node,
                       " is out of range for ", graph.num_nodes, " nodes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// Serial sparse push. The frontier is kept in ascending node order and every
// node's input is summed in (source node, edge) order, which fixes the order
// of floating-point additions; the pool is deliberately unused, so the result
// is bit-identical whatever its size.
absl::Status Spread(const GraphView& graph, absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* /*pool*/,
                    SpreadResult* out) {
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  ENGRAM_RETURN_IF_ERROR(CheckShape(graph, seeds));

  const uint32_t n = graph.num_nodes;
  const double cap = params.max_activation;
  std::vector<double> act(n, 0.0);
  for (const SpreadSeed& seed : seeds) {
    act[seed.node] = std::min(cap, act[seed.node] + seed.activation);
  }

  std::vector<FrontierEntry> frontier;
  frontier.reserve(seeds.size());
  {
    std::vector<uint32_t> seed_nodes;
    seed_nodes.reserve(seeds.size());
    for (const SpreadSeed& seed : seeds) seed_nodes.push_back(seed.node);
    std::sort(seed_nodes.begin(), seed_nodes.end());
    seed_nodes.erase(std::unique(seed_nodes.begin(), seed_nodes.end()),
                     seed_nodes.end());
    for (uint32_t s : seed_nodes) {
      if (act[s] > 0.0) frontier.push_back({s, act[s]});
    }
  }

  // Only entries listed in `touched` are ever non-zero in `input` or set in
  // `is_touched`, and they are reset after each hop, so a hop costs time in
  // proportion to the edges it pushes along, not to the graph's size.
  std::vector<double> input(n, 0.0);
  std::vector<uint8_t> is_touched(n, 0);
  std::vector<uint32_t> touched;
  std::vector<FrontierEntry> next;

  uint32_t hops = 0;
  uint64_t edges_traversed = 0;
  for (uint32_t h = 1; h <= params.max_hops && !frontier.empty(); ++h) {
    const double decay = params.Decay(h);
    const double theta = params.Threshold(h);
    touched.clear();
    for (const FrontierEntry& f : frontier) {
      const uint32_t begin = graph.row_offsets[f.node];
      const uint32_t end = graph.row_offsets[f.node + 1];
      if (begin > end) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph.row_offsets decreases at node ", f.node));
      }
      edges_traversed += end - begin;
      for (uint32_t e = begin; e < end; ++e) {
        const uint32_t v = graph.targets[e];
        if (v >= n) {
          return absl::InvalidArgumentError(
              absl::StrCat("graph.targets[", e, "] = ", v,
                           " is out of range for ", n, " nodes"));
        }
        if (!is_touched[v]) {
          is_touched[v] = 1;
          touched.push_back(v);
        }
        input[v] += f.delta * static_cast<double>(graph.weights[e]) * decay;
      }
    }

    std::sort(touched.begin(), touched.end());
    next.clear();
    bool changed = false;
    for (uint32_t v : touched) {
      const double in = input[v];
      input[v] = 0.0;
      is_touched[v] = 0;
      if (!(in > 0.0)) continue;
      const double old = act[v];
      const double updated = std::min(cap, old + in);
      if (!(updated >= theta)) continue;
      const double increase = updated - old;
      if (increase >= theta && increase > 0.0) next.push_back({v, increase});
      if (updated != old) changed = true;
      act[v] = updated;
    }
    if (changed) hops = h;
    std::swap(frontier, next);
  }

  out->activation.assign(act.begin(), act.end());
  out->hops = hops;
  out->edges_traversed = edges_traversed;
  return absl::OkStatus();
}

}  // namespace engram::kernels
