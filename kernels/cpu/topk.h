// Bounded top-k selection shared by the cosine and spreading kernels.
#ifndef ENGRAM_KERNELS_CPU_TOPK_H_
#define ENGRAM_KERNELS_CPU_TOPK_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/types/span.h"
#include "kernels/types.h"

namespace engram::kernels::cpu {

// Keeps the best k candidates seen so far (BetterThan order) in a bounded
// heap: O(log k) per accepted candidate and O(1) for a rejected one.
// Not thread-safe: one selector per thread.
class TopKSelector {
 public:
  explicit TopKSelector(size_t k);
  // Offers a candidate; kept only while it is among the best k.
  void Push(uint32_t index, float score);
  // The score a candidate must beat (or tie with a lower index) to enter;
  // -infinity while fewer than k are held.
  float worst_kept_score() const;
  // Moves out the kept candidates, best first; the selector is then empty.
  TopKList Take();

 private:
  size_t k_;
  std::vector<ScoredIndex> heap_;  // worst candidate at the front
};

// Merges lists (each best first) into the best k overall, best first.
TopKList MergeTopK(absl::Span<const TopKList> lists, size_t k);

// The best min(k, values.size()) entries of `values` with value >= min_value
// as (index, value), best first.
TopKList TopKOfDense(absl::Span<const float> values, size_t k, float min_value);

// The min_score to compare scores with. Scores are computed, and compared,
// with denormals flushed to zero (thread_pool.h), so a positive denormal
// min_score would read as 0 and let scores of 0 through. The smallest
// normal float passes exactly the scores the given value passes, since no
// score is denormal. Read from the bits: on a flushing thread a comparison
// would see 0.
inline float FlushSafeMinScore(float min_score) {
  uint32_t bits;
  std::memcpy(&bits, &min_score, sizeof(bits));
  // Sign and exponent 0, mantissa not: a positive denormal.
  const bool positive_denormal = (bits >> 23) == 0 && bits != 0;
  return positive_denormal ? std::numeric_limits<float>::min() : min_score;
}

}  // namespace engram::kernels::cpu

#endif  // ENGRAM_KERNELS_CPU_TOPK_H_
