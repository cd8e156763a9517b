// Seeded random values that are the same on every machine and standard
// library: the one bits-to-float mapping behind every generator of test,
// demo and benchmark data (the client's --random data, the tests' matrices,
// the benchmarks' inputs), so a seed names the same numbers everywhere.
// std::uniform_real_distribution is not used: its algorithm differs between
// standard libraries. std::mt19937_64's output is fixed by the standard.
//
// Thread-safety: the functions are pure; an engine belongs to one thread.
#ifndef ENGRAM_BASE_RANDOM_VALUES_H_
#define ENGRAM_BASE_RANDOM_VALUES_H_

#include <cstdint>
#include <random>

#include "absl/types/span.h"

namespace engram::base {

// Uniform on [-1, 1) from the top 24 bits k of `bits`: (k - 2^23) / 2^23,
// exact in float.
inline float SymmetricUnit(uint64_t bits) {
  const int64_t k = static_cast<int64_t>(bits >> 40);
  return static_cast<float>(k - (int64_t{1} << 23)) * 0x1p-23f;
}

// Fills `out` with the next values of `engine`, one draw each.
inline void FillSymmetricUnit(std::mt19937_64& engine, absl::Span<float> out) {
  for (float& value : out) value = SymmetricUnit(engine());
}

// SplitMix64's output function: a bijective mix of a 64-bit counter, for
// generators that compute value i directly (in parallel) instead of drawing
// a stream.
inline uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace engram::base

#endif  // ENGRAM_BASE_RANDOM_VALUES_H_
