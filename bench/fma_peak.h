// The arithmetic roofline the panel kernel is held to: fp32 multiply-adds
// on independent register accumulators, nothing loaded or stored, with the
// same runtime SIMD dispatch as the kernels. The read roofline
// (bench/read_bandwidth.h) bounds memory-bound passes; this one bounds
// passes with many queries, which are compute-bound.
#ifndef ENGRAM_BENCH_FMA_PEAK_H_
#define ENGRAM_BENCH_FMA_PEAK_H_

#include <cstddef>

namespace engram::bench {

// Runs `iterations` rounds of kFmaChains vector multiply-adds on this
// thread and returns a value derived from every accumulator (so the work
// cannot be optimised away). *flops is set to the floating-point operations
// done: 2 per lane per multiply-add.
float FmaChains(size_t iterations, double* flops);

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_FMA_PEAK_H_
