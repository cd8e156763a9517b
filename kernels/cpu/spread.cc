#include "kernels/cpu/spread.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/graph_overlay.h"
#include "kernels/large_buffer.h"
#include "kernels/spread_shape.h"

namespace engram::kernels::cpu {
namespace {

// A node whose increase travels on the next hop, and that increase.
struct FrontierEntry {
  uint32_t node;
  double delta;
};

// Relative costs per edge, in units of a pull hop's, of a sparse push hop
// (scattered read-modify-writes plus sorting the touched nodes), of a dense
// push hop's scan (repeated by every part) and scatter (split between the
// parts), and of building the in-edge lists. Measured on R-MAT graphs of
// 2^16 and 2^20 nodes by bench/spread_benchmark.cc (docs/performance.md):
// per edge about 1.1-9 ns pull, 9-26 ns sparse push, 1.4-10 ns dense push
// and 10 ns build, one thread; only their ratios matter.
constexpr double kSparsePushCostPerEdge = 3.0;
constexpr double kDenseScanCostPerEdge = 0.3;
constexpr double kDenseScatterCostPerEdge = 1.0;
constexpr double kPullCostPerEdge = 1.0;
constexpr double kBuildCostPerEdge = 5.0;
// Destination nodes per pull task at least, so that a task outweighs its
// scheduling.
constexpr size_t kMinPullNodesPerTask = 4096;
// Pull tasks per thread, so that hubs (R-MAT's in-degrees are skewed) do not
// leave one thread working alone.
constexpr size_t kPullTasksPerThread = 8;

int Threads(const ThreadPool* pool) {
  return pool == nullptr ? 1 : pool->num_threads() + 1;
}

// The first node of part `part` of `parts` equal contiguous ranges of [0, n).
uint32_t PartBegin(size_t part, size_t parts, uint32_t n) {
  return static_cast<uint32_t>(uint64_t{n} * part / parts);
}

// How the hop kinds read a graph: a compact CSR directly, or a base CSR
// through an overlay (kernels/graph_overlay.h). Both give each node's list
// as a span of edges, so every kind is written once and the CSR reader
// compiles to the same loads as indexing the arrays.
class CsrReader {
 public:
  explicit CsrReader(const GraphView& graph) : graph_(graph) {}
  uint32_t num_nodes() const { return graph_.num_nodes; }
  size_t num_edges() const { return graph_.num_edges(); }
  NodeEdges Edges(uint32_t u) const {
    return {graph_.targets.data(), graph_.weights.data(), graph_.row_offsets[u],
            graph_.row_offsets[u + 1]};
  }

 private:
  const GraphView& graph_;
};

class OverlayReader {
 public:
  OverlayReader(const GraphView& base, const GraphOverlay& overlay)
      : base_(base), overlay_(overlay) {}
  uint32_t num_nodes() const { return overlay_.num_nodes; }
  size_t num_edges() const { return static_cast<size_t>(overlay_.num_edges); }
  NodeEdges Edges(uint32_t u) const { return EdgesOf(base_, overlay_, u); }

 private:
  const GraphView& base_;
  const GraphOverlay& overlay_;
};

// The graph's in-edges: node v's are entries [offsets[v], offsets[v + 1]) of
// sources and weights, in increasing out-edge index, i.e. by source node and
// then by the edge's place in the source's list. Summing a node's input in
// this order adds exactly the terms a push adds, in the push's order, so a
// pull hop and a push hop give bit-identical results.
struct InEdges {
  std::vector<uint32_t> offsets;
  LargeBuffer<uint32_t> sources;
  LargeBuffer<float> weights;
};

// Destination nodes per bucket of the in-edge build: a bucket's share of
// the in-edge arrays (about 16 edges of 8 bytes per node at typical degrees)
// then stays in L2 while it is filled.
constexpr uint32_t kBuildBucketNodes = 2048;

// One edge on its way into the in-edge lists.
struct StagedEdge {
  uint32_t target;
  uint32_t source;
  float weight;
};

// Builds the in-edges as a two-pass radix sort by target, stable in edge
// order, so that every write lands in a cache-sized region: first each chunk
// of sources appends its edges to per-bucket runs of a staging array (one
// sequential stream per bucket), then each bucket of destinations lays its
// runs out into the final lists. Chunks and buckets run in parallel; the
// result is the same whatever the pool. Returns false, building nothing
// usable, for a graph with a decreasing offset or a target out of range:
// such a graph is only ever pushed, so its errors are the push's (which
// report only what the frontier reaches).
template <typename Reader>
bool BuildInEdges(const Reader& graph, ThreadPool* pool, InEdges* in) {
  const uint32_t n = graph.num_nodes();
  const size_t m = graph.num_edges();
  for (uint32_t u = 0; u < n; ++u) {
    const NodeEdges edges = graph.Edges(u);
    if (edges.begin > edges.end) return false;
  }
  const size_t buckets =
      (static_cast<size_t>(n) + kBuildBucketNodes - 1) / kBuildBucketNodes;
  const size_t chunks = 4 * static_cast<size_t>(Threads(pool));
  // counts[c * buckets + b]: edges of source chunk c into bucket b; then the
  // staging position where chunk c's run of bucket b starts.
  std::vector<size_t> counts(chunks * buckets, 0);
  std::atomic<bool> targets_ok{true};
  RunKernelTasks(pool, chunks, [&](size_t c) {
    size_t* count = counts.data() + c * buckets;
    const uint32_t last = PartBegin(c + 1, chunks, n);
    for (uint32_t u = PartBegin(c, chunks, n); u < last; ++u) {
      const NodeEdges edges = graph.Edges(u);
      for (uint32_t e = edges.begin; e < edges.end; ++e) {
        const uint32_t v = edges.targets[e];
        if (v >= n) {
          targets_ok.store(false, std::memory_order_relaxed);
          return;
        }
        ++count[v / kBuildBucketNodes];
      }
    }
  });
  if (!targets_ok.load(std::memory_order_relaxed)) return false;
  std::vector<size_t> bucket_start(buckets + 1, 0);
  size_t position = 0;
  for (size_t b = 0; b < buckets; ++b) {
    bucket_start[b] = position;
    for (size_t c = 0; c < chunks; ++c) {
      const size_t count = counts[c * buckets + b];
      counts[c * buckets + b] = position;
      position += count;
    }
  }
  bucket_start[buckets] = position;

  LargeBuffer<StagedEdge> staged(m);
  RunKernelTasks(pool, chunks, [&](size_t c) {
    size_t* cursor = counts.data() + c * buckets;
    const uint32_t last = PartBegin(c + 1, chunks, n);
    for (uint32_t u = PartBegin(c, chunks, n); u < last; ++u) {
      const NodeEdges edges = graph.Edges(u);
      for (uint32_t e = edges.begin; e < edges.end; ++e) {
        const uint32_t v = edges.targets[e];
        staged[cursor[v / kBuildBucketNodes]++] = {v, u, edges.weights[e]};
      }
    }
  });

  in->offsets.resize(static_cast<size_t>(n) + 1);
  in->sources = LargeBuffer<uint32_t>(m);
  in->weights = LargeBuffer<float>(m);
  RunKernelTasks(pool, buckets, [&](size_t b) {
    const uint32_t lo = static_cast<uint32_t>(b * kBuildBucketNodes);
    const uint32_t hi = std::min<uint32_t>(n, lo + kBuildBucketNodes);
    const StagedEdge* first = staged.data() + bucket_start[b];
    const StagedEdge* last = staged.data() + bucket_start[b + 1];
    // In-degrees of this bucket's nodes, then their offsets (each bucket
    // writes only its own nodes' entries).
    std::vector<uint32_t> cursor(hi - lo, 0);
    for (const StagedEdge* s = first; s != last; ++s) ++cursor[s->target - lo];
    uint32_t pos = static_cast<uint32_t>(bucket_start[b]);
    for (uint32_t v = lo; v < hi; ++v) {
      const uint32_t degree = cursor[v - lo];
      in->offsets[v] = pos;
      cursor[v - lo] = pos;
      pos += degree;
    }
    for (const StagedEdge* s = first; s != last; ++s) {
      const uint32_t at = cursor[s->target - lo]++;
      in->sources[at] = s->source;
      in->weights[at] = s->weight;
    }
  });
  in->offsets[n] = static_cast<uint32_t>(m);
  return true;
}

// Applies input `in` to node v (docs/api.md): written when it reaches theta,
// saturated at cap; the increase travels on (appended to `next`) when it
// reaches theta too. Returns whether act[v] changed.
inline bool Apply(uint32_t v, double in, double cap, double theta, double* act,
                  std::vector<FrontierEntry>* next) {
  if (!(in > 0.0)) return false;
  const double old = act[v];
  const double updated = std::min(cap, old + in);
  if (!(updated >= theta)) return false;
  const double increase = updated - old;
  if (increase >= theta && increase > 0.0) next->push_back({v, increase});
  act[v] = updated;
  return updated != old;
}

// The state of one call: activations, the frontier (ascending node order)
// and the scratch of both hop kinds. `Reader` is CsrReader or OverlayReader.
template <typename Reader>
class Spreader {
 public:
  Spreader(const Reader& graph, const SpreadParams& params, ThreadPool* pool,
           SpreadMode mode)
      : graph_(graph),
        params_(params),
        pool_(pool),
        mode_(mode),
        act_(graph.num_nodes(), 0.0) {}

  void Seed(absl::Span<const SpreadSeed> seeds) {
    const double cap = params_.max_activation;
    for (const SpreadSeed& seed : seeds) {
      act_[seed.node] = std::min(cap, act_[seed.node] + seed.activation);
    }
    std::vector<uint32_t> nodes;
    nodes.reserve(seeds.size());
    for (const SpreadSeed& seed : seeds) nodes.push_back(seed.node);
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    frontier_.reserve(nodes.size());
    for (uint32_t s : nodes) {
      if (act_[s] > 0.0) frontier_.push_back({s, act_[s]});
    }
  }

  absl::Status Run(const base::Interrupt* interrupt, SpreadResult* out) {
    uint32_t hops = 0;
    uint64_t edges_traversed = 0;
    for (uint32_t h = 1; h <= params_.max_hops && !frontier_.empty(); ++h) {
      ENGRAM_RETURN_IF_ERROR(base::CheckInterrupt(interrupt));
      const double decay = params_.Decay(h);
      const double theta = params_.Threshold(h);
      bool changed = false;
      switch (ChooseHop(h)) {
        case HopKind::kSparsePush:
          ++stats_.push_hops;
          ENGRAM_RETURN_IF_ERROR(
              SparsePushHop(decay, theta, &edges_traversed, &changed));
          break;
        case HopKind::kDensePush:
          ++stats_.dense_push_hops;
          ENGRAM_RETURN_IF_ERROR(DensePushHop(decay, theta, &changed));
          edges_traversed += frontier_edges_;
          break;
        case HopKind::kPull:
          ++stats_.pull_hops;
          changed = PullHop(decay, theta);
          edges_traversed += frontier_edges_;
          break;
      }
      if (changed) hops = h;
      std::swap(frontier_, next_);
    }
    out->activation.assign(act_.begin(), act_.end());
    out->hops = hops;
    out->edges_traversed = edges_traversed;
    return absl::OkStatus();
  }

  const SpreadStats& stats() const { return stats_; }

 private:
  enum class HopKind { kSparsePush, kDensePush, kPull };

  // The kind of hop `hop` runs; sets frontier_edges_ (the frontier's
  // out-degree sum) and, for a pull, builds the in-edges if needed. Every
  // kind gives the same bits, so the choice (which depends on the pool) is
  // only about speed. A frontier node with decreasing offsets is left to
  // the sparse push, which reports it.
  HopKind ChooseHop(uint32_t hop) {
    if (mode_ == SpreadMode::kPush) return HopKind::kSparsePush;
    uint64_t sum = 0;
    for (const FrontierEntry& f : frontier_) {
      const NodeEdges edges = graph_.Edges(f.node);
      if (edges.begin > edges.end) return HopKind::kSparsePush;
      sum += edges.end - edges.begin;
    }
    frontier_edges_ = sum;
    HopKind kind = HopKind::kPull;
    if (mode_ == SpreadMode::kDensePush) {
      kind = HopKind::kDensePush;
    } else if (mode_ == SpreadMode::kAuto) {
      const double threads = Threads(pool_);
      const double f = static_cast<double>(sum);
      const double m = static_cast<double>(graph_.num_edges());
      const double n = graph_.num_nodes();
      const double sparse = f * kSparsePushCostPerEdge;
      const double dense = f * kDenseScanCostPerEdge +
                           (f * kDenseScatterCostPerEdge + n) / threads;
      double pull = (m * kPullCostPerEdge + n) / threads;
      if (!in_built_) {
        // A frontier this large tends to stay large, so the build is
        // shared by the hops left.
        const double hops_left = params_.max_hops - hop + 1;
        pull += m * kBuildCostPerEdge / threads / hops_left;
      }
      if (graph_unpullable_) pull = std::numeric_limits<double>::infinity();
      if (sparse <= dense && sparse <= pull) return HopKind::kSparsePush;
      kind = dense <= pull ? HopKind::kDensePush : HopKind::kPull;
    }
    if (kind == HopKind::kPull && !in_built_) {
      if (graph_unpullable_ || !BuildInEdges(graph_, pool_, &in_)) {
        graph_unpullable_ = true;
        in_ = InEdges();
        return mode_ == SpreadMode::kAuto ? HopKind::kDensePush
                                          : HopKind::kSparsePush;
      }
      in_built_ = true;
    }
    return kind;
  }

  // The parts a dense pass splits the nodes into.
  size_t DenseParts() const {
    return std::clamp<size_t>(
        graph_.num_nodes() / kMinPullNodesPerTask, 1,
        kPullTasksPerThread * static_cast<size_t>(Threads(pool_)));
  }

  // Concatenates the parts' next frontiers, each in node order, in part
  // order.
  void GatherNext() {
    next_.clear();
    for (const std::vector<FrontierEntry>& next : part_next_) {
      next_.insert(next_.end(), next.begin(), next.end());
    }
  }

  // Dense push: every part scans all the frontier's edges, in the sparse
  // push's order, and adds only those into its own destination range, so
  // each node's input is the same sum as the sparse push's; then it sweeps
  // its range in node order instead of sorting touched nodes. The scan is
  // repeated per part, so there is one part per thread.
  absl::Status DensePushHop(double decay, double theta, bool* changed) {
    const uint32_t n = graph_.num_nodes();
    if (input_.empty()) {
      input_.assign(n, 0.0);
      is_touched_.assign(n, 0);
    }
    const size_t parts = static_cast<size_t>(Threads(pool_));
    part_next_.resize(parts);
    std::vector<uint8_t> part_changed(parts, 0);
    std::atomic<bool> bad_edge{false};
    const double cap = params_.max_activation;
    RunKernelTasks(pool_, parts, [&](size_t part) {
      const uint32_t lo = PartBegin(part, parts, n);
      const uint32_t span = PartBegin(part + 1, parts, n) - lo;
      double* input = input_.data();
      for (const FrontierEntry& f : frontier_) {
        const NodeEdges edges = graph_.Edges(f.node);
        for (uint32_t e = edges.begin; e < edges.end; ++e) {
          const uint32_t v = edges.targets[e];
          if (v - lo >= span) {
            if (v >= n) {
              bad_edge.store(true, std::memory_order_relaxed);
              return;
            }
            continue;
          }
          input[v] += f.delta * static_cast<double>(edges.weights[e]) * decay;
        }
      }
      // Filled locally: the parts' vectors sit side by side, and growing
      // them in place would bounce their shared cache line between threads.
      std::vector<FrontierEntry> next;
      next.swap(part_next_[part]);
      next.clear();
      bool part_changed_any = false;
      for (uint32_t v = lo; v < lo + span; ++v) {
        const double in = input[v];
        if (in == 0.0) continue;
        input[v] = 0.0;
        part_changed_any |= Apply(v, in, cap, theta, act_.data(), &next);
      }
      next.swap(part_next_[part]);
      part_changed[part] = part_changed_any;
    });
    if (bad_edge.load(std::memory_order_relaxed)) {
      // Some parts stopped half way: clear what they added, and let the
      // sparse push find and report the first bad edge.
      std::fill(input_.begin(), input_.end(), 0.0);
      next_.clear();
      bool unused = false;
      uint64_t unused_edges = 0;
      return SparsePushHop(decay, theta, &unused_edges, &unused);
    }
    GatherNext();
    *changed = std::any_of(part_changed.begin(), part_changed.end(),
                           [](uint8_t c) { return c != 0; });
    return absl::OkStatus();
  }

  // Sparse push: the frontier's out-edges add into `input_`, serially, in
  // (source node, edge) order, which fixes the order of floating-point
  // additions. Only entries listed in `touched_` are ever non-zero in
  // `input_` or set in `is_touched_`, and they are reset after the hop, so a
  // hop costs time in proportion to the edges it pushes along, not to the
  // graph's size.
  absl::Status SparsePushHop(double decay, double theta,
                             uint64_t* edges_traversed, bool* changed) {
    const uint32_t n = graph_.num_nodes();
    if (input_.empty()) {
      input_.assign(n, 0.0);
      is_touched_.assign(n, 0);
    }
    touched_.clear();
    for (const FrontierEntry& f : frontier_) {
      const NodeEdges edges = graph_.Edges(f.node);
      if (edges.begin > edges.end) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph.row_offsets decreases at node ", f.node));
      }
      *edges_traversed += edges.end - edges.begin;
      for (uint32_t e = edges.begin; e < edges.end; ++e) {
        const uint32_t v = edges.targets[e];
        if (v >= n) {
          return absl::InvalidArgumentError(
              absl::StrCat("graph.targets[", e, "] = ", v,
                           " is out of range for ", n, " nodes"));
        }
        if (!is_touched_[v]) {
          is_touched_[v] = 1;
          touched_.push_back(v);
        }
        input_[v] += f.delta * static_cast<double>(edges.weights[e]) * decay;
      }
    }
    std::sort(touched_.begin(), touched_.end());
    next_.clear();
    const double cap = params_.max_activation;
    for (uint32_t v : touched_) {
      const double in = input_[v];
      input_[v] = 0.0;
      is_touched_[v] = 0;
      *changed |= Apply(v, in, cap, theta, act_.data(), &next_);
    }
    return absl::OkStatus();
  }

  // Dense pull: every node sums its in-edges' terms (zero from sources off
  // the frontier, which leaves a sum unchanged), destination ranges in
  // parallel; each range's next frontier is in node order, and the ranges
  // are concatenated in order.
  bool PullHop(double decay, double theta) {
    const uint32_t n = graph_.num_nodes();
    if (delta_.empty()) delta_.assign(n, 0.0);
    for (const FrontierEntry& f : frontier_) delta_[f.node] = f.delta;
    const size_t parts = DenseParts();
    part_next_.resize(parts);
    std::vector<uint8_t> part_changed(parts, 0);
    const double cap = params_.max_activation;
    RunKernelTasks(pool_, parts, [&](size_t part) {
      const uint32_t lo = PartBegin(part, parts, n);
      const uint32_t hi = PartBegin(part + 1, parts, n);
      std::vector<FrontierEntry> next;  // local: see DensePushHop
      next.swap(part_next_[part]);
      next.clear();
      const uint32_t* offsets = in_.offsets.data();
      const uint32_t* sources = in_.sources.data();
      const float* weights = in_.weights.data();
      const double* delta = delta_.data();
      bool changed = false;
      for (uint32_t v = lo; v < hi; ++v) {
        double in = 0.0;
        for (uint32_t i = offsets[v]; i < offsets[v + 1]; ++i) {
          in += delta[sources[i]] * static_cast<double>(weights[i]) * decay;
        }
        changed |= Apply(v, in, cap, theta, act_.data(), &next);
      }
      next.swap(part_next_[part]);
      part_changed[part] = changed;
    });
    for (const FrontierEntry& f : frontier_) delta_[f.node] = 0.0;
    GatherNext();
    return std::any_of(part_changed.begin(), part_changed.end(),
                       [](uint8_t c) { return c != 0; });
  }

  const Reader& graph_;
  const SpreadParams& params_;
  ThreadPool* const pool_;
  const SpreadMode mode_;
  std::vector<double> act_;
  std::vector<FrontierEntry> frontier_;
  std::vector<FrontierEntry> next_;
  // Push scratch.
  std::vector<double> input_;
  std::vector<uint8_t> is_touched_;
  std::vector<uint32_t> touched_;
  // Pull scratch: the frontier's deltas by node, zero elsewhere.
  std::vector<double> delta_;
  std::vector<std::vector<FrontierEntry>> part_next_;
  InEdges in_;
  uint64_t frontier_edges_ = 0;
  bool in_built_ = false;
  bool graph_unpullable_ = false;
  SpreadStats stats_;
};

template <typename Reader>
absl::Status RunSpreader(const Reader& graph,
                         absl::Span<const SpreadSeed> seeds,
                         const SpreadParams& params, ThreadPool* pool,
                         SpreadResult* out, SpreadMode mode, SpreadStats* stats,
                         const base::Interrupt* interrupt) {
  // The serial parts run on the calling thread: the same floating-point
  // mode as the pool's workers keeps the result independent of the thread.
  ScopedDenormalsDisabled flush;
  Spreader<Reader> spreader(graph, params, pool, mode);
  spreader.Seed(seeds);
  ENGRAM_RETURN_IF_ERROR(spreader.Run(interrupt, out));
  if (stats != nullptr) *stats = spreader.stats();
  return absl::OkStatus();
}

}  // namespace

absl::Status Spread(const GraphView& graph, absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* pool,
                    SpreadResult* out, SpreadMode mode, SpreadStats* stats,
                    const base::Interrupt* interrupt) {
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  ENGRAM_RETURN_IF_ERROR(CheckSpreadShape(graph, seeds));
  return RunSpreader(CsrReader(graph), seeds, params, pool, out, mode, stats,
                     interrupt);
}

absl::Status Spread(const GraphView& base, const GraphOverlay& overlay,
                    absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* pool,
                    SpreadResult* out, SpreadMode mode, SpreadStats* stats,
                    const base::Interrupt* interrupt) {
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  ENGRAM_RETURN_IF_ERROR(CheckOverlayShape(base, overlay));
  ENGRAM_RETURN_IF_ERROR(CheckSeedNodes(seeds, overlay.num_nodes));
  return RunSpreader(OverlayReader(base, overlay), seeds, params, pool, out,
                     mode, stats, interrupt);
}

}  // namespace engram::kernels::cpu
