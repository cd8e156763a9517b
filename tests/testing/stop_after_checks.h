// An Interrupt for tests of stopping: OK for its first `allowed` checks,
// then `stop` at every later one, counting every check.
//
// Thread-safety: Check() may be called from several threads at once.
#ifndef ENGRAM_TESTS_TESTING_STOP_AFTER_CHECKS_H_
#define ENGRAM_TESTS_TESTING_STOP_AFTER_CHECKS_H_

#include <atomic>
#include <utility>

#include "absl/status/status.h"
#include "base/interrupt.h"

namespace engram::testing {

class StopAfterChecks final : public base::Interrupt {
 public:
  StopAfterChecks(int allowed, absl::Status stop)
      : allowed_(allowed), stop_(std::move(stop)) {}
  absl::Status Check() const override {
    return ++checks_ > allowed_ ? stop_ : absl::OkStatus();
  }
  int checks() const { return checks_; }

 private:
  const int allowed_;
  const absl::Status stop_;
  mutable std::atomic<int> checks_{0};
};

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_STOP_AFTER_CHECKS_H_
