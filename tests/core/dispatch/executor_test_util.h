// Helpers shared by the executor tests: a recording (and optionally
// misbehaving) backend decorator, a counting observer, job builders over
// seeded random data, and comparisons against the independent references of
// tests/testing.
#ifndef ENGRAM_TESTS_CORE_DISPATCH_EXECUTOR_TEST_UTIL_H_
#define ENGRAM_TESTS_CORE_DISPATCH_EXECUTOR_TEST_UTIL_H_

#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/executor_observer.h"
#include "core/dispatch/jobs.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::dispatch::testing {

// Forwards to `inner`, recording the query rows of every cosine call and
// the number of spreading calls. With drop_one_list set it returns one
// top-k list too few, like a buggy device kernel.
class RecordingBackend final : public ComputeBackend {
 public:
  explicit RecordingBackend(ComputeBackend* inner) : inner_(inner) {}

  absl::string_view name() const override { return inner_->name(); }
  BackendCapabilities Capabilities() const override {
    return inner_->Capabilities();
  }
  absl::Status Cosine(const CosineJob& job, CosineOutput* out) override {
    Clock* clock = nullptr;
    absl::Duration cost;
    {
      absl::MutexLock lock(&mu_);
      cosine_rows_.push_back(job.queries.rows);
      clock = clock_;
      cost = cost_;
    }
    if (clock != nullptr) clock->SleepFor(cost);
    MaybeThrow();
    absl::Status status = inner_->Cosine(job, out);
    if (status.ok() && drop_one_list_.load() && !out->top.empty()) {
      out->top.pop_back();
    }
    if (status.ok()) {
      absl::MutexLock lock(&mu_);
      rows_computed_ += job.queries.rows;
    }
    return status;
  }
  absl::Status Spread(const SpreadJob& job, SpreadOutput* out) override {
    spread_calls_.fetch_add(1);
    MaybeThrow();
    return inner_->Spread(job, out);
  }
  absl::StatusOr<DeviceMemoryInfo> QueryMemory() override {
    memory_queries_.fetch_add(1);
    return inner_->QueryMemory();
  }
  int memory_queries() const { return memory_queries_.load(); }

  void set_drop_one_list(bool drop) { drop_one_list_.store(drop); }
  // The next `calls` cosine or spreading calls throw std::bad_alloc, as a
  // backend whose host allocation fails does.
  void ThrowBadAllocOnNextCalls(int calls) { bad_allocs_.store(calls); }
  // Each cosine call then spends `cost` on `clock`, so that a backend
  // computing on the CPU takes measurable time under a ManualClock.
  void set_cost(Clock* clock, absl::Duration cost) {
    absl::MutexLock lock(&mu_);
    clock_ = clock;
    cost_ = cost;
  }
  std::vector<size_t> cosine_rows() const {
    absl::MutexLock lock(&mu_);
    return cosine_rows_;
  }
  // Query rows of the calls that succeeded.
  uint64_t rows_computed() const {
    absl::MutexLock lock(&mu_);
    return rows_computed_;
  }
  int spread_calls() const { return spread_calls_.load(); }

 private:
  void MaybeThrow() {
    if (bad_allocs_.fetch_sub(1) > 0) throw std::bad_alloc();
    bad_allocs_.store(0);
  }

  ComputeBackend* const inner_;
  std::atomic<bool> drop_one_list_{false};
  std::atomic<int> bad_allocs_{0};
  std::atomic<int> memory_queries_{0};
  mutable absl::Mutex mu_;
  Clock* clock_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Duration cost_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> cosine_rows_ ABSL_GUARDED_BY(mu_);
  uint64_t rows_computed_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> spread_calls_{0};
};

// Counts every event, keyed by a readable name ("oom", "fallback:gpu_oom",
// "decision:cosine:gpu:default", "chunk:gpu", ...).
class CountingObserver final : public ExecutorObserver {
 public:
  void OnDecision(Operation op, BackendKind backend, absl::string_view rule,
                  double decision_seconds) override {
    Add(absl::StrCat(
        "decision:", op == Operation::kCosine ? "cosine" : "spread", ":",
        Backend(backend), ":", rule));
  }
  void OnFallback(Operation, absl::string_view reason) override {
    Add(absl::StrCat("fallback:", reason));
  }
  void OnOom(Operation) override { Add("oom"); }
  void OnOomRetry(Operation) override { Add("oom_retry"); }
  void OnChunk(Operation, BackendKind backend) override {
    Add(absl::StrCat("chunk:", Backend(backend)));
  }
  void OnCompute(Operation, BackendKind backend, double,
                 uint64_t work_items) override {
    Add(absl::StrCat("compute:", Backend(backend)));
    absl::MutexLock lock(&mu_);
    work_items_[Backend(backend)] += work_items;
  }
  void OnBackendError(Operation, BackendKind backend,
                      const absl::Status&) override {
    Add(absl::StrCat("error:", Backend(backend)));
  }
  void OnBreakerTransition(const BreakerTransition& t) override {
    Add(absl::StrCat("breaker:", BreakerStateName(t.to)));
  }

  int count(const std::string& key) const {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }
  uint64_t work_items(const std::string& backend) const {
    absl::MutexLock lock(&mu_);
    auto it = work_items_.find(backend);
    return it == work_items_.end() ? 0 : it->second;
  }

 private:
  static const char* Backend(BackendKind kind) {
    switch (kind) {
      case BackendKind::kCpu:
        return "cpu";
      case BackendKind::kGpu:
        return "gpu";
      case BackendKind::kMixed:
        return "mixed";
      case BackendKind::kUnspecified:
        break;
    }
    return "none";
  }
  void Add(const std::string& key) {
    absl::MutexLock lock(&mu_);
    ++counts_[key];
  }

  mutable absl::Mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> work_items_ ABSL_GUARDED_BY(mu_);
};

// A cosine job over seeded random data, owning its data.
struct CosineCase {
  std::vector<float> queries;
  std::vector<float> targets;
  size_t q = 0;
  size_t n = 0;
  size_t d = 0;
  CosineJob job;

  CosineCase(size_t q_in, size_t n_in, size_t d_in, uint64_t seed,
             uint32_t top_k = 0)
      : queries(engram::testing::RandomMatrix(q_in, d_in, seed)),
        targets(engram::testing::RandomMatrix(n_in, d_in, seed + 1)),
        q(q_in),
        n(n_in),
        d(d_in) {
    job.queries = kernels::MatrixView{queries.data(), q, d};
    job.targets = kernels::MatrixView{targets.data(), n, d};
    job.top_k = top_k;
  }
  CosineCase(const CosineCase&) = delete;
  CosineCase& operator=(const CosineCase&) = delete;

  std::vector<double> Reference() const {
    return engram::testing::ReferenceCosine(queries.data(), q, targets.data(),
                                            n, d);
  }
};

inline constexpr double kScoreTolerance = 2e-5;

// Dense scores against the double-precision reference.
inline ::testing::AssertionResult ScoresMatch(absl::Span<const float> got,
                                              const std::vector<double>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << got.size() << " scores, expected " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= kScoreTolerance)) {
      return ::testing::AssertionFailure()
             << "score " << i << " is " << got[i] << ", expected " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// Top-k lists against the reference: same length, scores within tolerance,
// and the same index wherever the reference has no near-tie.
inline ::testing::AssertionResult TopKMatches(
    const std::vector<kernels::TopKList>& got, const std::vector<double>& ref,
    size_t q, size_t n, uint32_t k, float min_score) {
  const auto want = engram::testing::ReferenceTopK(ref, q, n, k, min_score);
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << got.size() << " lists, expected " << want.size();
  }
  for (size_t i = 0; i < q; ++i) {
    if (got[i].size() != want[i].size()) {
      return ::testing::AssertionFailure()
             << "query " << i << ": " << got[i].size() << " entries, expected "
             << want[i].size();
    }
    for (size_t j = 0; j < got[i].size(); ++j) {
      const float gs = got[i][j].score;
      const float ws = want[i][j].second;
      if (!(std::abs(gs - ws) <= kScoreTolerance)) {
        return ::testing::AssertionFailure()
               << "query " << i << " rank " << j << ": score " << gs
               << ", expected " << ws;
      }
      const double got_ref = ref[i * n + got[i][j].index];
      if (got[i][j].index != want[i][j].first &&
          !(std::abs(got_ref - ws) <= kScoreTolerance)) {
        return ::testing::AssertionFailure()
               << "query " << i << " rank " << j << ": index "
               << got[i][j].index << ", expected " << want[i][j].first;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace engram::dispatch::testing

#endif  // ENGRAM_TESTS_CORE_DISPATCH_EXECUTOR_TEST_UTIL_H_
