// The engine's view of a request: what to compute (a job), where the result
// goes (an output), and how it was computed (an ExecutionReport).
//
// Jobs borrow the request's memory through views; the caller keeps the request
// alive until the engine call returns. These types mirror the API in
// proto/engram/similarity/v1/similarity.proto without depending on it.
#ifndef ENGRAM_CORE_DISPATCH_JOBS_H_
#define ENGRAM_CORE_DISPATCH_JOBS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "base/interrupt.h"
#include "kernels/graph_overlay.h"
#include "kernels/row_mask.h"
#include "kernels/types.h"

namespace engram::dispatch {

enum class Operation { kCosine, kSpread };
const char* OperationName(Operation op);  // "cosine", "spread"

enum class Placement { kAuto, kCpuOnly, kGpuOnly };

enum class BackendKind { kUnspecified, kCpu, kGpu, kMixed };
const char* BackendName(BackendKind kind);  // "cpu", "gpu", "mixed", ...

// How a result was computed; travels into the response and the metrics.
struct ExecutionReport {
  BackendKind backend = BackendKind::kUnspecified;
  std::string decided_by;       // the dispatch rule that chose the backend
  std::string fallback_reason;  // empty when none
  uint32_t chunks = 0;
  double compute_seconds = 0.0;
};

struct CosineJob {
  kernels::MatrixView queries;  // Q x d
  kernels::MatrixView targets;  // N x d
  uint32_t top_k = 0;           // 0: all Q*M scores (see mask)
  std::optional<float> min_score;
  Placement placement = Placement::kAuto;
  // Optional; borrowed. Checked before every chunk: once it says stop, no
  // further chunk starts and the call returns its status.
  const base::Interrupt* interrupt = nullptr;
  // Optional identity of `targets` on a device: the id of the
  // resident collection segment they are (collections::Segment::id()), 0 for
  // none. A GPU backend holding a resident copy under this key with the
  // targets' shape reads it instead of copying the targets in, and the
  // executor leaves the targets out of the job's device footprint; a backend
  // without one (or the CPU) uses `targets`, which must always be the same
  // rows (the host copy stays authoritative).
  uint64_t resident_targets = 0;
  // Which target rows take part (a filter, deleted rows): row r does when
  // the mask admits it (kernels/types.h RowMask); by default every row
  // does. A mask must cover exactly targets.rows rows. Only the M admitted
  // rows are scored, as kernels/cpu/cosine.h describes for the CPU and
  // kernels/gpu_device.h for the GPU: top-k lists hold admitted rows only,
  // indices still numbered among all N targets; dense scores are compacted,
  // the j-th admitted row's at column j of each query's M. Excluded rows are
  // never read (a non-finite value there is no error). The executor splits
  // jobs by query, so each chunk carries the whole mask; a caller that
  // splits the targets slices the mask with them (RowMask::Rows).
  kernels::RowMask mask;

  // M: the target rows the mask admits (N without a mask), counted a mask
  // word at a time.
  uint64_t scored_targets() const {
    return kernels::CountAdmitted(mask, 0, targets.rows);
  }

  // Q*M*d: the unit the dispatch policy and the metrics count work in; only
  // admitted rows are computed.
  uint64_t work() const {
    return static_cast<uint64_t>(queries.rows) * scored_targets() *
           queries.cols;
  }
};

struct CosineOutput {
  // When top_k == 0: Q*M floats supplied by the caller (for example the
  // response's own repeated field), filled row-major by query; M is the
  // job's scored_targets(), N without a mask.
  absl::Span<float> scores;
  // When top_k > 0: one list per query, best first.
  std::vector<kernels::TopKList> top;
  ExecutionReport report;
};

struct SpreadJob {
  kernels::GraphView graph;
  // Optional; borrowed: the changes made to `graph` since it was built (a
  // resident graph updated edge by edge, kernels/graph_overlay.h); the job
  // spreads over `graph` changed by them. null: `graph` is the whole graph.
  const kernels::GraphOverlay* overlay = nullptr;
  absl::Span<const kernels::SpreadSeed> seeds;
  kernels::SpreadParams params;
  uint32_t top_k = 0;  // 0: dense activation of every node
  Placement placement = Placement::kAuto;
  // Optional; borrowed. Checked before the call and, on the CPU, before
  // every hop.
  const base::Interrupt* interrupt = nullptr;
  // Optional node allow-lists (SpreadRequest.seed_nodes, result_nodes);
  // empty admits every node. Applied by core::Engine::Spread around the
  // executor (core/spread_filters.h): backends never see them.
  absl::Span<const uint32_t> seed_nodes;
  absl::Span<const uint32_t> result_nodes;

  // The graph spread over, changes included.
  uint32_t num_nodes() const {
    return overlay != nullptr ? overlay->num_nodes : graph.num_nodes;
  }
  uint64_t num_edges() const {
    return overlay != nullptr ? overlay->num_edges : graph.num_edges();
  }

  // edges x hops: the unit the dispatch policy counts work in.
  uint64_t work() const {
    return num_edges() * (params.max_hops == 0 ? 1 : params.max_hops);
  }
};

struct SpreadOutput {
  kernels::SpreadResult result;  // activation holds every node
  kernels::TopKList top;         // when top_k > 0, best first
  ExecutionReport report;
  uint32_t seeds_ignored = 0;  // seeds outside SpreadJob::seed_nodes
};

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_JOBS_H_
