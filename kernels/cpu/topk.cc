#include "kernels/cpu/topk.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace engram::kernels::cpu {
namespace {

// Reserving k up front would let a huge requested k allocate memory the
// candidates never fill; beyond this the vector grows as candidates arrive.
constexpr size_t kMaxReserve = 4096;

}  // namespace

TopKSelector::TopKSelector(size_t k) : k_(k) {
  heap_.reserve(std::min(k_, kMaxReserve));
}

void TopKSelector::Push(uint32_t index, float score) {
  const ScoredIndex candidate{index, score};
  if (heap_.size() < k_) {
    heap_.push_back(candidate);
    // With BetterThan as the "less" of a max-heap, the front is the worst.
    std::push_heap(heap_.begin(), heap_.end(), BetterThan);
    return;
  }
  // The common case once the heap is full: one comparison, no heap work.
  if (k_ == 0 || !BetterThan(candidate, heap_.front())) return;
  std::pop_heap(heap_.begin(), heap_.end(), BetterThan);
  heap_.back() = candidate;
  std::push_heap(heap_.begin(), heap_.end(), BetterThan);
}

float TopKSelector::worst_kept_score() const {
  if (k_ == 0 || heap_.size() < k_) {
    return -std::numeric_limits<float>::infinity();
  }
  return heap_.front().score;
}

TopKList TopKSelector::Take() {
  std::sort_heap(heap_.begin(), heap_.end(), BetterThan);
  TopKList out = std::move(heap_);
  heap_ = {};
  heap_.reserve(std::min(k_, kMaxReserve));
  return out;
}

TopKList MergeTopK(absl::Span<const TopKList> lists, size_t k) {
  size_t total = 0;
  for (const TopKList& list : lists) total += list.size();
  TopKList merged;
  merged.reserve(total);
  for (const TopKList& list : lists) {
    // Each list is sorted best first, so only its first k can matter.
    const size_t take = std::min(k, list.size());
    merged.insert(merged.end(), list.begin(), list.begin() + take);
  }
  if (merged.size() > k) {
    std::nth_element(merged.begin(), merged.begin() + k, merged.end(),
                     BetterThan);
    merged.resize(k);
  }
  std::sort(merged.begin(), merged.end(), BetterThan);
  return merged;
}

TopKList TopKOfDense(absl::Span<const float> values, size_t k,
                     float min_value) {
  TopKSelector selector(std::min(k, values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] >= min_value) {
      selector.Push(static_cast<uint32_t>(i), values[i]);
    }
  }
  return selector.Take();
}

}  // namespace engram::kernels::cpu
