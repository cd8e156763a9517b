#include "core/collections/memory_budget.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace engram::collections {

Reservation::Reservation(Reservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Reservation::~Reservation() { Release(); }

void Reservation::Release() {
  if (budget_ != nullptr && bytes_ > 0) budget_->Give(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

Reservation Reservation::Split(uint64_t bytes) {
  const uint64_t taken = std::min(bytes, bytes_);
  bytes_ -= taken;
  return Reservation(budget_, taken);
}

absl::StatusOr<std::shared_ptr<MemoryBudget>> MemoryBudget::Create(
    const Options& options) {
  if (options.limit_bytes == 0) {
    return absl::InvalidArgumentError(
        "memory budget: limit_bytes must be >= 1");
  }
  std::shared_ptr<MemoryBudget> budget(new MemoryBudget(options));
  if (options.metrics != nullptr) {
    options.metrics->SetBudget(options.limit_bytes, 0);
  }
  return budget;
}

absl::StatusOr<Reservation> MemoryBudget::Reserve(uint64_t bytes,
                                                  absl::string_view what) {
  {
    absl::MutexLock lock(&mu_);
    const uint64_t free = options_.limit_bytes - reserved_;
    if (bytes <= free) {
      reserved_ += bytes;
      // Set under the lock so that the gauge never goes back in time when
      // two reservations race.
      if (options_.metrics != nullptr) {
        options_.metrics->SetBudget(options_.limit_bytes, reserved_);
      }
      return Reservation(this, bytes);
    }
  }
  if (options_.metrics != nullptr) options_.metrics->OnBudgetRefusal();
  const uint64_t reserved = reserved_bytes();
  return absl::ResourceExhaustedError(
      absl::StrCat(what, " needs ", bytes, " bytes of resident memory; ",
                   options_.limit_bytes - reserved, " of the budget's ",
                   options_.limit_bytes, " bytes are free"));
}

uint64_t MemoryBudget::reserved_bytes() const {
  absl::MutexLock lock(&mu_);
  return reserved_;
}

void MemoryBudget::Give(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  reserved_ -= bytes;
  if (options_.metrics != nullptr) {
    options_.metrics->SetBudget(options_.limit_bytes, reserved_);
  }
}

}  // namespace engram::collections
