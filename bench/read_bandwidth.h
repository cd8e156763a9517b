// The memory roofline the kernels are held to: a STREAM-like read kernel
// (every byte read once, nothing written, enough independent SIMD
// accumulators to keep the loads in flight), with the same runtime SIMD
// dispatch as the kernels.
#ifndef ENGRAM_BENCH_READ_BANDWIDTH_H_
#define ENGRAM_BENCH_READ_BANDWIDTH_H_

#include <cstddef>

#include "kernels/thread_pool.h"

namespace engram::bench {

// The sum of `n` floats (returned so the reads cannot be optimised away),
// split into `tasks` contiguous parts over `pool` (nullptr: this thread).
float SumFloats(const float* data, size_t n, size_t tasks,
                kernels::ThreadPool* pool);

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_READ_BANDWIDTH_H_
