// Spreading activation on the CPU, with exactly the level-synchronous
// semantics of docs/api.md: activation is pushed along out-edges hop by hop,
// decayed by D(h), written only where it reaches theta(h), saturated at
// max_activation, and only the increase actually applied travels on.
//
// Each hop is one of three kinds, chosen hop by hop by a cost model measured
// in bench/spread_benchmark.cc:
// - sparse push, while few nodes are active: the frontier's out-edges add
//   into their targets, serially; cost in proportion to the edges pushed;
// - dense push, for a large frontier on few threads: every part scans the
//   frontier's edges and adds those into its own destination range, then
//   sweeps its range; parallel, no sorting, nothing built;
// - pull, for a large frontier on many threads: every node sums its
//   in-edges, destination ranges in parallel; the in-edge lists are built
//   once per call, when first needed.
//
// The result is deterministic: the same input gives bit-identical output
// whatever the pool's size and whichever hop kinds run, because every kind
// sums each node's terms in exactly the sparse push's order (by source node,
// then edge).
// The computation runs with denormals flushed to zero on every thread, the
// mode of the pool's workers, so no result depends on the thread it was
// computed on.
//
// Thread-safety: reentrant; concurrent calls may share a pool.
#ifndef ENGRAM_KERNELS_CPU_SPREAD_H_
#define ENGRAM_KERNELS_CPU_SPREAD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "kernels/graph_overlay.h"
#include "kernels/thread_pool.h"
#include "kernels/types.h"

namespace engram::kernels::cpu {

// Which hop kinds a call may run. kAuto chooses per hop by cost; the others
// force one (sparse push, dense push, pull), for tests and benchmarks. A
// malformed graph (a target out of range, decreasing offsets) fails exactly
// as the sparse push would have it, whatever the mode: dense hops hand such
// a hop to the sparse push.
enum class SpreadMode { kAuto, kPush, kDensePush, kPull };

// How a call's hops ran, for tests and benchmarks.
struct SpreadStats {
  uint32_t push_hops = 0;  // sparse
  uint32_t dense_push_hops = 0;
  uint32_t pull_hops = 0;
};

// Requires a validated graph, seeds and params (core/validation.h). Replaces
// *out, and *stats when not null. `pool` may be nullptr (calling thread
// alone). `interrupt` (optional) is checked before every hop; when it says
// stop, the call returns its status and *out is unspecified.
absl::Status Spread(const GraphView& graph, absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* pool,
                    SpreadResult* out, SpreadMode mode = SpreadMode::kAuto,
                    SpreadStats* stats = nullptr,
                    const base::Interrupt* interrupt = nullptr);

// Spread over `base` changed by `overlay` (kernels/graph_overlay.h), reading
// each node's list through the overlay: the result is bit-identical to
// Spread over the same graph as one compact CSR (CopyOverlaidGraph), on
// every mode and pool. Pull hops build the in-edge lists per call, as for a
// CSR. The overlay's lists are trusted; its shape and the seeds are
// checked (INVALID_ARGUMENT).
absl::Status Spread(const GraphView& base, const GraphOverlay& overlay,
                    absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* pool,
                    SpreadResult* out, SpreadMode mode = SpreadMode::kAuto,
                    SpreadStats* stats = nullptr,
                    const base::Interrupt* interrupt = nullptr);

}  // namespace engram::kernels::cpu

#endif  // ENGRAM_KERNELS_CPU_SPREAD_H_
