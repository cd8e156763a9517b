// Spreading activation on the CPU, with exactly the level-synchronous
// semantics of docs/api.md: activation is pushed along out-edges hop by hop,
// decayed by D(h), written only where it reaches theta(h), saturated at
// max_activation, and only the increase actually applied travels on.
//
// The result is deterministic: the same input gives bit-identical output
// whatever the pool's size.
//
// Thread-safety: reentrant; concurrent calls may share a pool.
#ifndef ENGRAM_KERNELS_CPU_SPREAD_H_
#define ENGRAM_KERNELS_CPU_SPREAD_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/types.h"

namespace engram::kernels {

// Requires a validated graph, seeds and params (core/validation.h). Replaces
// *out. `pool` may be nullptr (calling thread alone).
absl::Status Spread(const GraphView& graph, absl::Span<const SpreadSeed> seeds,
                    const SpreadParams& params, ThreadPool* pool,
                    SpreadResult* out);

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_CPU_SPREAD_H_
