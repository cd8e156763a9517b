// RollingCounter, the sliding window behind GetStats' windowed figures:
// EngineMetrics (core/engine_metrics.h) feeds one beside each counter whose
// rate over the last minute GetStats reports.
//
// Thread-safety: see the class.
#ifndef ENGRAM_CORE_ROLLING_COUNTER_H_
#define ENGRAM_CORE_ROLLING_COUNTER_H_

#include <array>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace engram::core {

// Counts events over the last `kSlots` seconds in one-second slots, for the
// windowed figures of GetStats (rates per minute).
//
// Thread-safety: Add() and Sum() may be called concurrently (one mutex).
class RollingCounter {
 public:
  static constexpr int kSlots = 60;
  static constexpr absl::Duration kWindow = absl::Seconds(kSlots);

  void Add(absl::Time now, uint64_t n = 1) ABSL_LOCKS_EXCLUDED(mu_);
  // Events added in the slots of the last kSlots seconds up to `now`.
  uint64_t Sum(absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::array<int64_t, kSlots> second_ ABSL_GUARDED_BY(mu_) = {};
  std::array<uint64_t, kSlots> count_ ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace engram::core

#endif  // ENGRAM_CORE_ROLLING_COUNTER_H_
