#include "tests/testing/graph_edits.h"

#include <set>

#include "kernels/graph_overlay.h"

namespace engram::testing {

using collections::GraphEdgeRef;
using collections::GraphEdit;
using collections::GraphEditCounts;
using collections::GraphWeightedEdge;

EdgeListGraph::EdgeListGraph(const kernels::GraphView& graph)
    : lists_(graph.num_nodes) {
  for (uint32_t u = 0; u < graph.num_nodes; ++u) {
    for (uint32_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
      lists_[u].push_back({graph.targets[e], graph.weights[e]});
    }
  }
}

uint64_t EdgeListGraph::num_edges() const {
  uint64_t m = 0;
  for (const auto& list : lists_) m += list.size();
  return m;
}

GraphEditCounts EdgeListGraph::Apply(const GraphEdit& edit) {
  GraphEditCounts counts;
  lists_.resize(lists_.size() + edit.add_nodes);
  auto holds = [&](uint32_t u, uint32_t v) {
    for (const auto& [target, weight] : lists_[u]) {
      if (target == v) return true;
    }
    return false;
  };
  std::vector<GraphEdgeRef> missing_removes;
  std::set<std::pair<uint32_t, uint32_t>> removed;
  for (const GraphEdgeRef& e : edit.remove_edges) {
    if (!holds(e.source, e.target)) missing_removes.push_back(e);
    removed.insert({e.source, e.target});
  }
  for (uint32_t u = 0; u < lists_.size(); ++u) {
    std::vector<std::pair<uint32_t, float>> kept;
    for (const auto& edge : lists_[u]) {
      if (removed.count({u, edge.first}) > 0) {
        ++counts.edges_removed;
      } else {
        kept.push_back(edge);
      }
    }
    lists_[u] = std::move(kept);
  }
  std::vector<GraphEdgeRef> missing_sets;
  std::set<std::pair<uint32_t, size_t>> reweighted;
  for (const GraphWeightedEdge& e : edit.set_weights) {
    bool found = false;
    for (size_t i = 0; i < lists_[e.source].size(); ++i) {
      if (lists_[e.source][i].first != e.target) continue;
      lists_[e.source][i].second = e.weight;
      reweighted.insert({e.source, i});
      found = true;
    }
    if (!found) missing_sets.push_back({e.source, e.target});
  }
  counts.edges_reweighted = reweighted.size();
  for (const GraphWeightedEdge& e : edit.add_edges) {
    lists_[e.source].push_back({e.target, e.weight});
    ++counts.edges_added;
  }
  counts.not_found_edges = missing_removes;
  counts.not_found_edges.insert(counts.not_found_edges.end(),
                                missing_sets.begin(), missing_sets.end());
  counts.not_found = counts.not_found_edges.size();
  return counts;
}

RandomCsrGraph EdgeListGraph::ToCsr() const {
  RandomCsrGraph g;
  g.num_nodes = num_nodes();
  g.row_offsets.push_back(0);
  for (const auto& list : lists_) {
    for (const auto& [target, weight] : list) {
      g.targets.push_back(target);
      g.weights.push_back(weight);
    }
    g.row_offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  }
  return g;
}

GraphEdit RandomGraphEdit(const EdgeListGraph& graph, GraphEditKind kind,
                          size_t entries, std::mt19937_64& rng) {
  GraphEdit edit;
  if (kind == GraphEditKind::kAddNodes || kind == GraphEditKind::kMixed) {
    edit.add_nodes = std::uniform_int_distribution<uint32_t>(1, 5)(rng);
  }
  const uint32_t n = graph.num_nodes() + edit.add_nodes;
  std::uniform_int_distribution<uint32_t> any(0, n - 1);
  std::uniform_int_distribution<uint32_t> old_node(0, graph.num_nodes() - 1);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  auto weight = [&] {
    const float w = 1.0f - unit(rng);
    return w > 0.0f ? w : 1.0f;
  };
  // A pair the graph holds when one can be drawn, else a uniform one.
  auto pair = [&]() -> GraphEdgeRef {
    if (std::bernoulli_distribution(0.5)(rng)) {
      for (int attempt = 0; attempt < 8; ++attempt) {
        const uint32_t u = old_node(rng);
        const auto& list = graph.edges(u);
        if (list.empty()) continue;
        const size_t i =
            std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng);
        return {u, list[i].first};
      }
    }
    return {any(rng), any(rng)};
  };
  const bool mixed = kind == GraphEditKind::kMixed;
  if (kind == GraphEditKind::kRemove || mixed) {
    for (size_t i = 0; i < entries; ++i) edit.remove_edges.push_back(pair());
  }
  if (kind == GraphEditKind::kReweight || mixed) {
    for (size_t i = 0; i < entries; ++i) {
      const GraphEdgeRef p = pair();
      edit.set_weights.push_back({p.source, p.target, weight()});
    }
  }
  if (kind == GraphEditKind::kAdd || mixed) {
    for (size_t i = 0; i < entries; ++i) {
      const GraphEdgeRef p = pair();
      edit.add_edges.push_back({p.source, p.target, weight()});
    }
  }
  return edit;
}

RandomCsrGraph FlattenGraph(const collections::Graph& graph) {
  const kernels::GraphView& base = graph.base();
  RandomCsrGraph out;
  out.num_nodes = graph.num_nodes();
  out.row_offsets.push_back(0);
  for (uint32_t u = 0; u < graph.num_nodes(); ++u) {
    kernels::NodeEdges e{base.targets.data(), base.weights.data(), 0, 0};
    if (graph.overlay() != nullptr) {
      e = kernels::EdgesOf(base, *graph.overlay(), u);
    } else {
      e.begin = base.row_offsets[u];
      e.end = base.row_offsets[u + 1];
    }
    out.targets.insert(out.targets.end(), e.targets + e.begin,
                       e.targets + e.end);
    out.weights.insert(out.weights.end(), e.weights + e.begin,
                       e.weights + e.end);
    out.row_offsets.push_back(static_cast<uint32_t>(out.targets.size()));
  }
  return out;
}

}  // namespace engram::testing
