#include "core/rolling_counter.h"

#include <cstddef>

namespace engram::core {

void RollingCounter::Add(absl::Time now, uint64_t n) {
  const int64_t second = absl::ToUnixSeconds(now);
  const size_t slot =
      static_cast<size_t>(((second % kSlots) + kSlots) % kSlots);
  absl::MutexLock lock(&mu_);
  if (second_[slot] != second) {
    second_[slot] = second;
    count_[slot] = 0;
  }
  count_[slot] += n;
}

uint64_t RollingCounter::Sum(absl::Time now) const {
  const int64_t second = absl::ToUnixSeconds(now);
  uint64_t sum = 0;
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < kSlots; ++i) {
    if (second_[i] > second - kSlots && second_[i] <= second) sum += count_[i];
  }
  return sum;
}

}  // namespace engram::core
