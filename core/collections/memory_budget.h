// MemoryBudget: the host memory limit of resident data, shared by the
// collection and graph stores. Memory is reserved before it is allocated, so
// an upload over the limit is refused (RESOURCE_EXHAUSTED) before a single
// byte of it exists, and the stores never hold more than the limit however
// uploads interleave.
//
// A Reservation is the right to hold some bytes; it gives them back when
// destroyed. The stores tie each reservation to the storage it pays for
// (a staged upload, then the committed data), so bytes return to the budget
// exactly when the last reader lets go of the data, not when a name is
// deleted while a search still reads it.
//
// Thread-safety: MemoryBudget's methods may be called concurrently (one
// mutex, held only for the arithmetic). A Reservation is owned by one thread
// at a time, like any movable value.
#ifndef ENGRAM_CORE_COLLECTIONS_MEMORY_BUDGET_H_
#define ENGRAM_CORE_COLLECTIONS_MEMORY_BUDGET_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/collections/resident_metrics.h"

namespace engram::collections {

class MemoryBudget;

// Bytes held against a MemoryBudget until destruction (or Release()).
// Move-only. The budget must outlive it; the stores guarantee that by
// holding the budget through a shared_ptr.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation();

  uint64_t bytes() const { return bytes_; }
  // Gives the bytes back now.
  void Release();
  // Moves min(bytes, this->bytes()) of the held bytes into a reservation of
  // their own, so that one reservation can pay for several pieces of
  // storage freed at different times.
  Reservation Split(uint64_t bytes);

 private:
  friend class MemoryBudget;
  Reservation(MemoryBudget* budget, uint64_t bytes)
      : budget_(budget), bytes_(bytes) {}

  MemoryBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

class MemoryBudget {
 public:
  struct Options {
    // The most bytes resident data may hold on the host; >= 1.
    uint64_t limit_bytes = uint64_t{8} << 30;
    // Receives the budget gauges; borrowed, may be null.
    ResidentMetrics* metrics = nullptr;
  };

  // INVALID_ARGUMENT when limit_bytes is 0.
  static absl::StatusOr<std::shared_ptr<MemoryBudget>> Create(
      const Options& options);

  // Reserves `bytes` (0 is allowed and always succeeds) or returns
  // RESOURCE_EXHAUSTED naming `what`, the bytes asked for, the bytes free and
  // the limit. Nothing is reserved on error.
  absl::StatusOr<Reservation> Reserve(uint64_t bytes, absl::string_view what)
      ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t limit_bytes() const { return options_.limit_bytes; }
  uint64_t reserved_bytes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class Reservation;
  explicit MemoryBudget(const Options& options) : options_(options) {}
  void Give(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_MEMORY_BUDGET_H_
