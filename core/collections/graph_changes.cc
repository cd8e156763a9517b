#include "core/collections/graph_changes.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::collections {

// One page's replaced lists and the view of them the overlay holds.
struct GraphChanges::Page {
  std::vector<uint32_t> list;
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> targets;
  std::vector<float> weights;
  kernels::GraphOverlay::Page view;
  Reservation reservation;

  uint64_t lists() const { return offsets.size() - 1; }
  uint64_t Bytes() const {
    return list.size() * sizeof(uint32_t) + offsets.size() * sizeof(uint32_t) +
           targets.size() * (sizeof(uint32_t) + sizeof(float));
  }
};

// The owners of kPagesPerGroup consecutive pages (null: none).
struct GraphChanges::PageGroup {
  std::shared_ptr<const Page> pages[kPagesPerGroup];
};

const GraphChanges::Page* GraphChanges::PageAt(size_t p) const {
  if (p / kPagesPerGroup >= groups_.size()) return nullptr;
  const PageGroup* group = groups_[p / kPagesPerGroup].get();
  return group == nullptr ? nullptr : group->pages[p % kPagesPerGroup].get();
}

namespace {

absl::Status CheckNode(const char* list, size_t index, const char* end,
                       uint32_t node, uint64_t num_nodes) {
  if (node < num_nodes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(list, "[", index, "].", end, " is ", node,
                   ", not below the graph's num_nodes (", num_nodes,
                   ", counting the nodes this update adds)"));
}

absl::Status CheckWeight(const char* list, size_t index, float weight) {
  if (std::isfinite(weight) && weight >= 0.0f) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      list, "[", index, "].weight is ", weight, ", must be finite and >= 0"));
}

absl::Status CheckLength(const char* list, size_t size) {
  if (size <= kMaxGraphEditEntries) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      list, " has ", size, " entries, at most ", kMaxGraphEditEntries));
}

// Positions 0..n-1 of a list, ordered by their entry's source, request
// order kept within a source.
template <typename Entry>
std::vector<uint32_t> BySource(const std::vector<Entry>& entries) {
  std::vector<uint32_t> order(entries.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return entries[a].source < entries[b].source;
  });
  return order;
}

// The next run of `order` whose entries have source `u`: [*at, end).
template <typename Entry>
size_t RunEnd(const std::vector<Entry>& entries,
              const std::vector<uint32_t>& order, size_t at, uint32_t u) {
  size_t end = at;
  while (end < order.size() && entries[order[end]].source == u) ++end;
  return end;
}

// Node u's list in `base` changed by `changes` (null: by nothing); none for
// a node the edit being applied adds.
kernels::NodeEdges ListOf(const kernels::GraphView& base,
                          const GraphChanges* changes, uint32_t u) {
  if (changes != nullptr) {
    if (u >= changes->num_nodes()) return {};
    return kernels::EdgesOf(base, changes->overlay(), u);
  }
  if (u >= base.num_nodes) return {};
  return {base.targets.data(), base.weights.data(), base.row_offsets[u],
          base.row_offsets[u + 1]};
}

// A not-found pair, by list (0: remove_edges, 1: set_weights) and index.
struct Missing {
  uint32_t list;
  uint32_t index;
};

}  // namespace

absl::Status ValidateGraphEdit(const GraphEdit& edit, uint32_t num_nodes) {
  ENGRAM_RETURN_IF_ERROR(CheckLength("remove_edges", edit.remove_edges.size()));
  ENGRAM_RETURN_IF_ERROR(CheckLength("set_weights", edit.set_weights.size()));
  ENGRAM_RETURN_IF_ERROR(CheckLength("add_edges", edit.add_edges.size()));
  const uint64_t nodes = uint64_t{num_nodes} + edit.add_nodes;
  if (nodes > kMaxGraphNodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("add_nodes: the graph would have ", nodes,
                     " nodes, over the limit of ", kMaxGraphNodes));
  }
  for (size_t i = 0; i < edit.remove_edges.size(); ++i) {
    const GraphEdgeRef& e = edit.remove_edges[i];
    ENGRAM_RETURN_IF_ERROR(
        CheckNode("remove_edges", i, "source", e.source, nodes));
    ENGRAM_RETURN_IF_ERROR(
        CheckNode("remove_edges", i, "target", e.target, nodes));
  }
  for (const auto& [list, entries] :
       {std::pair<const char*, const std::vector<GraphWeightedEdge>*>{
            "set_weights", &edit.set_weights},
        {"add_edges", &edit.add_edges}}) {
    for (size_t i = 0; i < entries->size(); ++i) {
      const GraphWeightedEdge& e = (*entries)[i];
      ENGRAM_RETURN_IF_ERROR(CheckNode(list, i, "source", e.source, nodes));
      ENGRAM_RETURN_IF_ERROR(CheckNode(list, i, "target", e.target, nodes));
      ENGRAM_RETURN_IF_ERROR(CheckWeight(list, i, e.weight));
    }
  }
  return absl::OkStatus();
}

GraphChanges::~GraphChanges() = default;

uint32_t GraphChanges::PageShiftFor(uint32_t base_nodes) {
  uint32_t bits = 0;
  while (bits < 32 && (uint64_t{1} << bits) < base_nodes) ++bits;
  return std::max<uint32_t>(6, (bits + 1) / 2);
}

absl::StatusOr<std::shared_ptr<const GraphChanges>> GraphChanges::Apply(
    const kernels::GraphView& base, const GraphChanges* current,
    const GraphEdit& edit, MemoryBudget& budget, absl::string_view what,
    GraphEditCounts* counts) {
  *counts = GraphEditCounts();
  const uint32_t old_nodes =
      current != nullptr ? current->num_nodes() : base.num_nodes;
  const uint64_t old_edges =
      current != nullptr ? current->num_edges() : base.num_edges();
  const uint32_t num_nodes = old_nodes + edit.add_nodes;

  const std::vector<uint32_t> removes = BySource(edit.remove_edges);
  const std::vector<uint32_t> sets = BySource(edit.set_weights);
  const std::vector<uint32_t> adds = BySource(edit.add_edges);
  std::vector<uint32_t> sources;
  sources.reserve(removes.size() + sets.size() + adds.size());
  for (const GraphEdgeRef& e : edit.remove_edges) sources.push_back(e.source);
  for (const GraphWeightedEdge& e : edit.set_weights) {
    sources.push_back(e.source);
  }
  for (const GraphWeightedEdge& e : edit.add_edges) sources.push_back(e.source);
  std::sort(sources.begin(), sources.end());
  sources.erase(std::unique(sources.begin(), sources.end()), sources.end());

  std::vector<NewList> lists;
  lists.reserve(sources.size());
  std::vector<Missing> missing;
  size_t r = 0, s = 0, a = 0;
  // Per source: sorted, unique targets of its removes and sets, and whether
  // the graph held each.
  std::vector<uint32_t> remove_targets;
  std::vector<uint8_t> removed_any;
  std::vector<std::pair<uint32_t, float>> set_targets;
  std::vector<uint8_t> set_any;
  for (const uint32_t u : sources) {
    const kernels::NodeEdges old = ListOf(base, current, u);
    NewList next;
    next.node = u;
    next.targets.reserve(old.end - old.begin);
    next.weights.reserve(old.end - old.begin);

    const size_t r_end = RunEnd(edit.remove_edges, removes, r, u);
    remove_targets.clear();
    for (size_t i = r; i < r_end; ++i) {
      remove_targets.push_back(edit.remove_edges[removes[i]].target);
    }
    std::sort(remove_targets.begin(), remove_targets.end());
    remove_targets.erase(
        std::unique(remove_targets.begin(), remove_targets.end()),
        remove_targets.end());
    removed_any.assign(remove_targets.size(), 0);
    for (uint32_t e = old.begin; e < old.end; ++e) {
      const uint32_t v = old.targets[e];
      if (!remove_targets.empty()) {
        auto it =
            std::lower_bound(remove_targets.begin(), remove_targets.end(), v);
        if (it != remove_targets.end() && *it == v) {
          removed_any[it - remove_targets.begin()] = 1;
          ++counts->edges_removed;
          continue;
        }
      }
      next.targets.push_back(v);
      next.weights.push_back(old.weights[e]);
    }
    for (size_t i = r; i < r_end; ++i) {
      const uint32_t v = edit.remove_edges[removes[i]].target;
      const size_t at =
          std::lower_bound(remove_targets.begin(), remove_targets.end(), v) -
          remove_targets.begin();
      if (!removed_any[at]) missing.push_back({0, removes[i]});
    }
    r = r_end;

    const size_t s_end = RunEnd(edit.set_weights, sets, s, u);
    set_targets.clear();
    // In request order, so that after a stable sort by target the last
    // entry of each target is the one that wins.
    for (size_t i = s; i < s_end; ++i) {
      const GraphWeightedEdge& e = edit.set_weights[sets[i]];
      set_targets.push_back({e.target, e.weight});
    }
    std::stable_sort(
        set_targets.begin(), set_targets.end(),
        [](const auto& x, const auto& y) { return x.first < y.first; });
    {
      // Keep the last entry of each target.
      size_t out = 0;
      for (size_t i = 0; i < set_targets.size(); ++i) {
        if (i + 1 < set_targets.size() &&
            set_targets[i + 1].first == set_targets[i].first) {
          continue;
        }
        set_targets[out++] = set_targets[i];
      }
      set_targets.resize(out);
    }
    set_any.assign(set_targets.size(), 0);
    if (!set_targets.empty()) {
      for (size_t e = 0; e < next.targets.size(); ++e) {
        const uint32_t v = next.targets[e];
        auto it = std::lower_bound(
            set_targets.begin(), set_targets.end(), v,
            [](const auto& x, uint32_t t) { return x.first < t; });
        if (it != set_targets.end() && it->first == v) {
          next.weights[e] = it->second;
          set_any[it - set_targets.begin()] = 1;
          ++counts->edges_reweighted;
        }
      }
    }
    for (size_t i = s; i < s_end; ++i) {
      const uint32_t v = edit.set_weights[sets[i]].target;
      auto it = std::lower_bound(
          set_targets.begin(), set_targets.end(), v,
          [](const auto& x, uint32_t t) { return x.first < t; });
      if (!set_any[it - set_targets.begin()]) missing.push_back({1, sets[i]});
    }
    s = s_end;

    const size_t a_end = RunEnd(edit.add_edges, adds, a, u);
    for (size_t i = a; i < a_end; ++i) {
      const GraphWeightedEdge& e = edit.add_edges[adds[i]];
      next.targets.push_back(e.target);
      next.weights.push_back(e.weight);
    }
    counts->edges_added += a_end - a;
    a = a_end;
    lists.push_back(std::move(next));
  }

  const uint64_t num_edges =
      old_edges - counts->edges_removed + counts->edges_added;
  if (num_edges > kMaxGraphEdges) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " would have ", num_edges,
                     " edges, over the limit of ", kMaxGraphEdges));
  }
  counts->not_found = missing.size();
  std::sort(missing.begin(), missing.end(),
            [](const Missing& x, const Missing& y) {
              return x.list != y.list ? x.list < y.list : x.index < y.index;
            });
  for (size_t i = 0; i < missing.size() && i < kMaxListedNotFound; ++i) {
    if (missing[i].list == 0) {
      counts->not_found_edges.push_back(edit.remove_edges[missing[i].index]);
    } else {
      const GraphWeightedEdge& e = edit.set_weights[missing[i].index];
      counts->not_found_edges.push_back({e.source, e.target});
    }
  }

  const uint32_t page_shift = current != nullptr ? current->overlay_.page_shift
                                                 : PageShiftFor(base.num_nodes);
  const uint64_t pending =
      (current != nullptr ? current->pending_changes_ : 0) +
      counts->edges_removed + counts->edges_reweighted + counts->edges_added;
  const uint64_t edits = (current != nullptr ? current->edits_ : 0) + 1;
  return Build(page_shift, num_nodes, num_edges, pending, edits, current, lists,
               budget, what);
}

absl::StatusOr<std::shared_ptr<const GraphChanges>> GraphChanges::Rebase(
    const kernels::GraphView& new_base, const kernels::GraphView& base,
    const GraphChanges& current, absl::Span<const uint32_t> nodes,
    uint64_t pending_changes, uint64_t edits, MemoryBudget& budget,
    absl::string_view what) {
  std::vector<NewList> lists;
  lists.reserve(nodes.size());
  for (const uint32_t u : nodes) {
    const kernels::NodeEdges edges =
        kernels::EdgesOf(base, current.overlay_, u);
    NewList list;
    list.node = u;
    list.targets.assign(edges.targets + edges.begin, edges.targets + edges.end);
    list.weights.assign(edges.weights + edges.begin, edges.weights + edges.end);
    lists.push_back(std::move(list));
  }
  return Build(PageShiftFor(new_base.num_nodes), current.num_nodes(),
               current.num_edges(), pending_changes, edits, nullptr, lists,
               budget, what);
}

absl::StatusOr<std::shared_ptr<const GraphChanges>> GraphChanges::Build(
    uint32_t page_shift, uint32_t num_nodes, uint64_t num_edges,
    uint64_t pending_changes, uint64_t edits, const GraphChanges* from,
    absl::Span<const NewList> lists, MemoryBudget& budget,
    absl::string_view what) {
  const uint32_t page_nodes = uint32_t{1} << page_shift;
  const size_t page_count =
      static_cast<size_t>((uint64_t{num_nodes} + page_nodes - 1) >> page_shift);
  const size_t group_count = (page_count + kPagesPerGroup - 1) / kPagesPerGroup;

  std::shared_ptr<GraphChanges> changes(new GraphChanges());
  if (from != nullptr) {
    changes->groups_ = from->groups_;
    changes->page_views_ = from->page_views_;
    changes->replaced_nodes_ = from->replaced_nodes_;
    changes->replaced_edges_ = from->replaced_edges_;
    changes->bytes_ = from->bytes_ - from->reservation_.bytes();
  }
  changes->groups_.resize(group_count);
  changes->page_views_.resize(page_count, nullptr);

  // The pages this change writes: each gets the lists of its old page that
  // `lists` leaves alone, and those of `lists`, in node order.
  struct Rewrite {
    size_t page;
    size_t first;  // of `lists`
    size_t last;
  };
  std::vector<Rewrite> rewrites;
  for (size_t i = 0; i < lists.size();) {
    const size_t page = lists[i].node >> page_shift;
    size_t j = i;
    while (j < lists.size() && (lists[j].node >> page_shift) == page) ++j;
    rewrites.push_back({page, i, j});
    i = j;
  }
  std::vector<std::shared_ptr<Page>> written;
  written.reserve(rewrites.size());
  uint64_t new_bytes = 0;
  for (const Rewrite& w : rewrites) {
    auto page = std::make_shared<Page>();
    page->list.assign(page_nodes, kernels::GraphOverlay::kBaseList);
    page->offsets.push_back(0);
    const Page* old = from != nullptr ? from->PageAt(w.page) : nullptr;
    const uint32_t first_node = static_cast<uint32_t>(w.page << page_shift);
    size_t next = w.first;
    for (uint32_t k = 0; k < page_nodes; ++k) {
      const uint32_t u = first_node + k;
      const uint32_t* targets = nullptr;
      const float* weights = nullptr;
      size_t begin = 0, end = 0;
      if (next < w.last && lists[next].node == u) {
        targets = lists[next].targets.data();
        weights = lists[next].weights.data();
        end = lists[next].targets.size();
        ++next;
      } else if (old != nullptr &&
                 old->list[k] != kernels::GraphOverlay::kBaseList) {
        targets = old->targets.data();
        weights = old->weights.data();
        begin = old->offsets[old->list[k]];
        end = old->offsets[old->list[k] + 1];
      } else {
        continue;
      }
      page->list[k] = static_cast<uint32_t>(page->offsets.size() - 1);
      page->targets.insert(page->targets.end(), targets + begin, targets + end);
      page->weights.insert(page->weights.end(), weights + begin, weights + end);
      page->offsets.push_back(static_cast<uint32_t>(page->targets.size()));
    }
    if (old != nullptr) {
      changes->replaced_nodes_ -= old->lists();
      changes->replaced_edges_ -= old->targets.size();
      changes->bytes_ -= old->reservation.bytes();
    }
    new_bytes += page->Bytes();
    written.push_back(std::move(page));
  }
  // The groups the rewritten pages are in, copied.
  std::vector<size_t> touched_groups;
  for (const Rewrite& w : rewrites) {
    const size_t g = w.page / kPagesPerGroup;
    if (touched_groups.empty() || touched_groups.back() != g) {
      touched_groups.push_back(g);
    }
  }
  const uint64_t table_bytes =
      page_count * sizeof(const kernels::GraphOverlay::Page*) +
      group_count * sizeof(std::shared_ptr<const PageGroup>) +
      touched_groups.size() * sizeof(PageGroup);
  ENGRAM_ASSIGN_OR_RETURN(
      Reservation reservation,
      budget.Reserve(new_bytes + table_bytes,
                     absl::StrCat(what, " (changed edge lists)")));

  std::vector<std::shared_ptr<PageGroup>> groups;
  groups.reserve(touched_groups.size());
  for (const size_t g : touched_groups) {
    const PageGroup* old = changes->groups_[g].get();
    groups.push_back(old != nullptr ? std::make_shared<PageGroup>(*old)
                                    : std::make_shared<PageGroup>());
  }
  size_t group = 0;
  for (size_t i = 0; i < rewrites.size(); ++i) {
    while (touched_groups[group] != rewrites[i].page / kPagesPerGroup) {
      ++group;
    }
    Page& page = *written[i];
    page.reservation = reservation.Split(page.Bytes());
    page.view.list = page.list.data();
    page.view.offsets = page.offsets.data();
    page.view.targets = page.targets.data();
    page.view.weights = page.weights.data();
    changes->replaced_nodes_ += page.lists();
    changes->replaced_edges_ += page.targets.size();
    changes->bytes_ += page.reservation.bytes();
    changes->page_views_[rewrites[i].page] = &page.view;
    groups[group]->pages[rewrites[i].page % kPagesPerGroup] =
        std::move(written[i]);
  }
  for (size_t i = 0; i < touched_groups.size(); ++i) {
    changes->groups_[touched_groups[i]] = std::move(groups[i]);
  }
  changes->reservation_ = std::move(reservation);
  changes->bytes_ += changes->reservation_.bytes();
  changes->overlay_.num_nodes = num_nodes;
  changes->overlay_.num_edges = num_edges;
  changes->overlay_.page_shift = page_shift;
  changes->overlay_.pages = absl::MakeConstSpan(changes->page_views_);
  changes->pending_changes_ = pending_changes;
  changes->edits_ = edits;
  return std::shared_ptr<const GraphChanges>(std::move(changes));
}

}  // namespace engram::collections
