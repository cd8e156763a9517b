#include "core/collections/search_batcher.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/collections/resident_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/cpu/topk.h"
#include "kernels/thread_pool.h"
#include "prometheus/registry.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/time_scale.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::MakeStore;
using ::engram::collections::testing::Upload;
using ::engram::testing::Scaled;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint32_t kDim = 16;

// Scores each query on its own in float64, so a query's list does not depend
// on which batch it ran in: any difference from the per-caller reference is
// a batching bug, not rounding.
std::vector<kernels::TopKList> ExactTopK(const BatchPass& pass) {
  std::vector<kernels::TopKList> out(pass.queries.rows);
  const float min = pass.min_score.value_or(-2.0f);
  for (size_t q = 0; q < pass.queries.rows; ++q) {
    kernels::cpu::TopKSelector selector(pass.top_k);
    for (const auto& segment : pass.collection->segments()) {
      const kernels::MatrixView& t = segment->vectors();
      for (size_t r = 0; r < t.rows; ++r) {
        double dot = 0, qq = 0, tt = 0;
        for (size_t c = 0; c < t.cols; ++c) {
          dot += double{pass.queries.row(q)[c]} * t.row(r)[c];
          qq += double{pass.queries.row(q)[c]} * pass.queries.row(q)[c];
          tt += double{t.row(r)[c]} * t.row(r)[c];
        }
        const float score = static_cast<float>(dot / std::sqrt(qq * tt));
        if (score >= min) {
          selector.Push(static_cast<uint32_t>(segment->first_row() + r), score);
        }
      }
    }
    out[q] = selector.Take();
  }
  return out;
}

// What one caller should get when searched alone.
std::vector<std::vector<SearchHit>> Reference(const SearchRequest& r) {
  BatchPass pass;
  pass.collection = r.collection.get();
  pass.queries = r.queries;
  pass.top_k = r.top_k;
  pass.min_score = r.min_score;
  std::vector<std::vector<SearchHit>> out;
  for (const auto& list : ExactTopK(pass)) {
    std::vector<SearchHit> hits;
    for (const auto& e : list) {
      hits.push_back({r.collection->IdOf(e.index), e.index, e.score});
    }
    out.push_back(std::move(hits));
  }
  return out;
}

bool SameHits(const std::vector<std::vector<SearchHit>>& a,
              const std::vector<std::vector<SearchHit>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t q = 0; q < a.size(); ++q) {
    if (a[q].size() != b[q].size()) return false;
    for (size_t i = 0; i < a[q].size(); ++i) {
      if (a[q][i].id != b[q][i].id || a[q][i].row != b[q][i].row ||
          a[q][i].score != b[q][i].score) {
        return false;
      }
    }
  }
  return true;
}

// Records every pass and can hold passes until released.
class RecordingExecutor {
 public:
  BatchExecutor AsExecutor() {
    return [this](const BatchPass& pass, BatchPassOutput* out) {
      {
        absl::MutexLock lock(&mu_);
        pass_queries_.push_back(pass.queries.rows);
        ++started_;
        mu_.Await(absl::Condition(
            +[](bool* open) { return *open; }, &open_));
      }
      if (!fail_.ok()) return fail_;
      out->top = ExactTopK(pass);
      out->report.backend = dispatch::BackendKind::kCpu;
      return absl::OkStatus();
    };
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void WaitStarted(int n) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (started_ >= n) return;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  std::vector<size_t> pass_queries() {
    absl::MutexLock lock(&mu_);
    return pass_queries_;
  }
  int started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  absl::Status fail_;

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> pass_queries_ ABSL_GUARDED_BY(mu_);
};

// Collects one call's outcome.
struct Outcome {
  absl::Notification done;
  absl::StatusOr<SearchResult> result = absl::UnknownError("not run");
  SearchCallback Callback() {
    return [this](absl::StatusOr<SearchResult> r) {
      result = std::move(r);
      done.Notify();
    };
  }
};

// A TaskRunner with a thread per task, so that passes can run side by side
// as on the engine's workers. Destroy it after the batcher (whose
// destructor waits for its passes).
class ThreadRunner {
 public:
  ~ThreadRunner() {
    absl::MutexLock lock(&mu_);
    for (std::thread& t : threads_) t.join();
  }
  TaskRunner AsRunner() {
    return [this](absl::AnyInvocable<void()> task) {
      absl::MutexLock lock(&mu_);
      threads_.emplace_back(std::move(task));
    };
  }

 private:
  absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// pending() drops just after a callback returns: wait for it.
bool WaitIdle(const SearchBatcher& batcher) {
  const absl::Time deadline = absl::Now() + Scaled(absl::Seconds(5));
  while (batcher.pending() > 0) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

class SearchBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<float> v = engram::testing::RandomMatrix(500, kDim, 5);
    std::vector<uint64_t> ids(300);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = 900000 + 7 * i;
    ASSERT_TRUE(Upload(*store_, "docs", kDim,
                       std::vector<float>(v.begin(), v.begin() + 300 * kDim),
                       ids)
                    .ok());
    // A second segment without ids: results cross segments.
    auto c = Upload(*store_, "docs", kDim,
                    std::vector<float>(v.begin() + 300 * kDim, v.end()), {},
                    /*create=*/false);
    ASSERT_TRUE(c.ok());
    collection_ = *c;
    queries_ = engram::testing::RandomMatrix(256, kDim, 6);
  }

  std::unique_ptr<SearchBatcher> Make(SearchBatcher::Options options) {
    if (!options.execute) options.execute = executor_.AsExecutor();
    auto b = SearchBatcher::Create(options);
    EXPECT_TRUE(b.ok()) << b.status();
    return *std::move(b);
  }

  SearchRequest Request(size_t first_query, size_t rows, uint32_t k,
                        std::optional<float> min_score = std::nullopt) {
    SearchRequest r;
    r.collection = collection_;
    r.queries =
        kernels::MatrixView{queries_.data() + first_query * kDim, rows, kDim};
    r.top_k = k;
    r.min_score = min_score;
    return r;
  }

  std::unique_ptr<CollectionStore> store_ = MakeStore(MakeBudget());
  std::shared_ptr<const Collection> collection_;
  std::vector<float> queries_;
  RecordingExecutor executor_;
};

TEST_F(SearchBatcherTest, CreateValidatesOptions) {
  SearchBatcher::Options o;
  EXPECT_EQ(SearchBatcher::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);  // no executor
  o.execute = executor_.AsExecutor();
  o.max_batch_queries = 0;
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_batch_queries = 8;
  o.max_queue_delay = absl::Seconds(2);
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_queue_delay = absl::Microseconds(200);
  o.max_pending_requests = 0;
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_pending_requests = 10;
  o.max_concurrent_passes = 0;
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_concurrent_passes = 1025;
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_concurrent_passes = 1;
  o.max_pass_linger = absl::Seconds(2);
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.max_pass_linger = absl::ZeroDuration();
  o.pass_linger_fraction = 1.5;
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.pass_linger_fraction = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(SearchBatcher::Create(o).ok());
  o.pass_linger_fraction = 0.0;
  EXPECT_TRUE(SearchBatcher::Create(o).ok());
}

TEST_F(SearchBatcherTest, RefusesBadCallsWithoutCallingBack) {
  auto batcher = Make({});
  bool called = false;
  auto never = [&](absl::StatusOr<SearchResult>) { called = true; };
  SearchRequest wrong_width = Request(0, 1, 5);
  wrong_width.queries.cols = kDim - 1;
  auto s = batcher->Search(wrong_width, never);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("queries.cols (15) must equal the dimension of "
                        "collection \"docs\" (16)"));
  EXPECT_EQ(batcher->Search(Request(0, 1, 0), never).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(batcher->Search(Request(0, 0, 5), never).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      batcher->Search(Request(0, 1, 5, std::nanf("")), never).status().code(),
      absl::StatusCode::kInvalidArgument);
  SearchRequest no_collection = Request(0, 1, 5);
  no_collection.collection = nullptr;
  EXPECT_EQ(batcher->Search(no_collection, never).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> bad(2 * kDim, 1.0f);
  bad[kDim + 3] = std::numeric_limits<float>::infinity();
  SearchRequest non_finite = Request(0, 1, 5);
  non_finite.queries = kernels::MatrixView{bad.data(), 2, kDim};
  auto nf = batcher->Search(non_finite, never);
  EXPECT_THAT(nf.status().message(),
              HasSubstr("queries row 1 contains a non-finite value at column "
                        "3"));
  EXPECT_FALSE(called);
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, EachOfManyConcurrentCallersGetsExactlyItsOwnResults) {
  kernels::ThreadPool pool(2);
  SearchBatcher::Options o;
  o.max_batch_queries = 32;
  o.max_queue_delay = absl::Milliseconds(2);
  o.run = [&pool](absl::AnyInvocable<void()> task) {
    pool.Schedule(std::move(task));
  };
  auto batcher = Make(o);
  constexpr int kCallers = 64;
  std::vector<SearchRequest> requests;
  for (int i = 0; i < kCallers; ++i) {
    // Different widths, k and thresholds, so a mix-up cannot go unseen.
    const size_t rows = 1 + i % 3;
    const uint32_t k = 1 + (i * 7) % 12;
    std::optional<float> min_score;
    if (i % 4 == 1) min_score = 0.1f * static_cast<float>(i % 5);
    requests.push_back(Request((i * 3) % 250, rows, k, min_score));
  }
  std::vector<Outcome> outcomes(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      ASSERT_TRUE(batcher->Search(requests[i], outcomes[i].Callback()).ok());
    });
  }
  for (auto& t : threads) t.join();
  size_t batched = 0;
  for (int i = 0; i < kCallers; ++i) {
    outcomes[i].done.WaitForNotification();
    ASSERT_TRUE(outcomes[i].result.ok()) << outcomes[i].result.status();
    EXPECT_TRUE(SameHits(outcomes[i].result->top, Reference(requests[i])))
        << "caller " << i;
    if (outcomes[i].result->batch_requests > 1) ++batched;
  }
  EXPECT_GT(batched, 0u);  // 64 concurrent callers did coalesce
  for (size_t q : executor_.pass_queries()) EXPECT_LE(q, 32u);
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, KernelExecutorAgreesWithTheReference) {
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  o.max_queue_delay = absl::Milliseconds(5);
  o.execute = MakeKernelExecutor(nullptr);
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(8);
  std::vector<SearchRequest> requests;
  for (int i = 0; i < 8; ++i) requests.push_back(Request(i * 4, 4, 5));
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(batcher->Search(requests[i], outcomes[i].Callback()).ok());
  }
  std::vector<float> all(collection_->rows() * kDim);
  size_t at = 0;
  for (const auto& s : collection_->segments()) {
    std::copy(s->vectors().data, s->vectors().data + s->rows() * kDim,
              all.begin() + at);
    at += s->rows() * kDim;
  }
  for (int i = 0; i < 8; ++i) {
    outcomes[i].done.WaitForNotification();
    ASSERT_TRUE(outcomes[i].result.ok()) << outcomes[i].result.status();
    const auto scores = engram::testing::ReferenceCosine(
        requests[i].queries.data, 4, all.data(), collection_->rows(), kDim);
    const auto ref = engram::testing::ReferenceTopK(
        scores, 4, collection_->rows(), 5, -2.0f);
    for (size_t q = 0; q < 4; ++q) {
      const auto& hits = outcomes[i].result->top[q];
      ASSERT_EQ(hits.size(), 5u);
      for (size_t j = 0; j < 5; ++j) {
        EXPECT_EQ(hits[j].row, ref[q][j].first);
        EXPECT_NEAR(hits[j].score, ref[q][j].second, 1e-5);
        EXPECT_EQ(hits[j].id, collection_->IdOf(hits[j].row));
      }
    }
  }
}

TEST_F(SearchBatcherTest, IdsAreTheStoredIds) {
  auto batcher = Make({});
  Outcome out;
  // Query = row 5 itself: its best hit is row 5, stored id 900035.
  std::vector<float> q(collection_->segments()[0]->vectors().row(5),
                       collection_->segments()[0]->vectors().row(5) + kDim);
  SearchRequest r = Request(0, 1, 1);
  r.queries = kernels::MatrixView{q.data(), 1, kDim};
  ASSERT_TRUE(batcher->Search(r, out.Callback()).ok());
  out.done.WaitForNotification();
  ASSERT_TRUE(out.result.ok());
  ASSERT_EQ(out.result->top[0].size(), 1u);
  EXPECT_EQ(out.result->top[0][0].row, 5u);
  EXPECT_EQ(out.result->top[0][0].id, 900035u);
}

TEST_F(SearchBatcherTest, AFullQueueRejectsAtOnce) {
  SearchBatcher::Options o;
  o.max_batch_queries = 4;
  o.max_pending_requests = 3;
  o.max_queue_delay = absl::ZeroDuration();
  prometheus::Registry registry;
  ResidentMetrics metrics(registry);
  o.metrics = &metrics;
  auto batcher = Make(o);
  executor_.Hold();
  std::vector<Outcome> outcomes(3);
  for (auto& out : outcomes) {
    ASSERT_TRUE(batcher->Search(Request(0, 1, 3), out.Callback()).ok());
  }
  const absl::Time start = absl::Now();
  Outcome rejected;
  auto full = batcher->Search(Request(0, 1, 3), rejected.Callback());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("queue full"));
  EXPECT_FALSE(rejected.done.HasBeenNotified());
  executor_.Release();
  for (auto& out : outcomes) {
    out.done.WaitForNotification();
    EXPECT_TRUE(out.result.ok());
  }
  // Room again once they completed.
  ASSERT_TRUE(WaitIdle(*batcher));
  Outcome later;
  EXPECT_TRUE(batcher->Search(Request(0, 1, 3), later.Callback()).ok());
  later.done.WaitForNotification();
  for (const auto& family : registry.Collect()) {
    if (family.name == "engram_search_rejected_total") {
      EXPECT_EQ(family.metric[0].counter.value, 1);
    }
  }
}

TEST_F(SearchBatcherTest, CancelledWaitingCallersAreRemovedBeforeExecution) {
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  // Six calls and three cancels must all happen before the batch flushes,
  // also on a sanitized build on a loaded machine (1 s is the most the
  // batcher accepts).
  o.max_queue_delay =
      std::min(Scaled(absl::Milliseconds(300)), absl::Seconds(1));
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(6);
  std::vector<SearchTicket> tickets;
  std::vector<SearchRequest> requests;
  for (int i = 0; i < 6; ++i) {
    requests.push_back(Request(i, 1 + i % 2, 4));
    auto t = batcher->Search(requests[i], outcomes[i].Callback());
    ASSERT_TRUE(t.ok());
    tickets.push_back(*t);
  }
  for (int i : {0, 3, 4}) {
    EXPECT_TRUE(batcher->Cancel(tickets[i]));
    // Delivered at once, on this thread.
    ASSERT_TRUE(outcomes[i].done.HasBeenNotified());
    EXPECT_EQ(outcomes[i].result.status().code(), absl::StatusCode::kCancelled);
    EXPECT_FALSE(batcher->Cancel(tickets[i]));  // only once
  }
  for (int i : {1, 2, 5}) {
    outcomes[i].done.WaitForNotification();
    ASSERT_TRUE(outcomes[i].result.ok());
    EXPECT_TRUE(SameHits(outcomes[i].result->top, Reference(requests[i])));
    EXPECT_EQ(outcomes[i].result->batch_requests, 3u);
  }
  // The pass held only the survivors' queries: 2 + 1 + 2.
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(5u));
  EXPECT_FALSE(batcher->Cancel(tickets[1]));  // completed
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, CancelAfterThePassStartedDeliversTheResult) {
  SearchBatcher::Options o;
  o.max_batch_queries = 1;
  auto batcher = Make(o);
  executor_.Hold();
  Outcome out;
  auto ticket = batcher->Search(Request(0, 1, 3), out.Callback());
  ASSERT_TRUE(ticket.ok());
  executor_.WaitStarted(1);
  EXPECT_FALSE(batcher->Cancel(*ticket));
  executor_.Release();
  out.done.WaitForNotification();
  EXPECT_TRUE(out.result.ok());
}

TEST_F(SearchBatcherTest, TheDelayBoundFlushesAPartialBatch) {
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  // Long enough that three calls join the batch before it flushes even on
  // a sanitized build under load.
  const absl::Duration delay =
      std::min(Scaled(absl::Milliseconds(400)), absl::Seconds(1));
  o.max_queue_delay = delay;
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(3);
  std::vector<SearchRequest> requests;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    requests.push_back(Request(0, 1, 3));
  }
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    ASSERT_TRUE(batcher->Search(requests[i], outcomes[i].Callback()).ok());
  }
  // The oldest call's delay is the bound that flushed the batch; calls that
  // joined later (later still on a slow, sanitized build) waited less.
  double oldest_wait = 0;
  for (auto& out : outcomes) {
    ASSERT_TRUE(
        out.done.WaitForNotificationWithTimeout(Scaled(absl::Seconds(5))));
    ASSERT_TRUE(out.result.ok());
    EXPECT_EQ(out.result->batch_requests, 3u);
    oldest_wait = std::max(oldest_wait, out.result->queue_seconds);
  }
  EXPECT_GE(oldest_wait, absl::ToDoubleSeconds(delay) - 0.01);
  EXPECT_GE(absl::Now() - start, delay - absl::Milliseconds(10));
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(3u));
}

TEST_F(SearchBatcherTest, AFullBatchGoesWithoutWaitingForTheDelay) {
  SearchBatcher::Options o;
  o.max_batch_queries = 4;
  o.max_queue_delay = absl::Seconds(1);
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(4);
  const absl::Time start = absl::Now();
  for (auto& out : outcomes) {
    ASSERT_TRUE(batcher->Search(Request(0, 1, 3), out.Callback()).ok());
  }
  for (auto& out : outcomes) out.done.WaitForNotification();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(4u));
}

TEST_F(SearchBatcherTest, BatchingOffExecutesEachCallAlone) {
  for (bool use_flag : {true, false}) {
    RecordingExecutor executor;
    SearchBatcher::Options o;
    o.execute = executor.AsExecutor();
    if (use_flag) {
      o.enabled = false;
    } else {
      o.max_batch_queries = 1;
    }
    o.max_queue_delay = absl::Milliseconds(100);
    auto batcher = Make(o);
    std::vector<Outcome> outcomes(5);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(
          batcher->Search(Request(i, 2, 3), outcomes[i].Callback()).ok());
    }
    for (auto& out : outcomes) {
      out.done.WaitForNotification();
      ASSERT_TRUE(out.result.ok());
      EXPECT_EQ(out.result->batch_requests, 1u);
    }
    EXPECT_THAT(executor.pass_queries(), ElementsAre(2u, 2u, 2u, 2u, 2u));
  }
}

TEST_F(SearchBatcherTest, CallsArrivingDuringAPassJoinTheNextPassNotTheirOwn) {
  ThreadRunner runner;
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  o.max_queue_delay = absl::ZeroDuration();
  o.run = runner.AsRunner();
  auto batcher = Make(o);
  executor_.Hold();
  std::vector<Outcome> outcomes(6);
  std::vector<SearchRequest> requests;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    requests.push_back(Request(i, 1 + i % 3, 4));
  }
  ASSERT_TRUE(batcher->Search(requests[0], outcomes[0].Callback()).ok());
  executor_.WaitStarted(1);
  for (size_t i = 1; i < outcomes.size(); ++i) {
    ASSERT_TRUE(batcher->Search(requests[i], outcomes[i].Callback()).ok());
  }
  // Their delay is long up, but the one slot is busy.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(executor_.started(), 1);
  executor_.Release();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    ASSERT_TRUE(outcomes[i].done.WaitForNotificationWithTimeout(
        Scaled(absl::Seconds(5))));
    ASSERT_TRUE(outcomes[i].result.ok()) << outcomes[i].result.status();
    EXPECT_TRUE(SameHits(outcomes[i].result->top, Reference(requests[i])));
    EXPECT_EQ(outcomes[i].result->batch_requests, i == 0 ? 1u : 5u);
  }
  // Queries 2 + 3 + 1 + 2 + 3 in the second pass.
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(1u, 11u));
  EXPECT_TRUE(WaitIdle(*batcher));
}

// Closed-loop callers: the caller a pass answers sends its next call a
// moment later. The batch that queued during the pass waits for it (the
// linger after a pass) instead of leaving alone and leaving the caller to
// a pass of its own.
TEST_F(SearchBatcherTest, ACallSentJustAfterAPassJoinsTheBatchThatWaitedForIt) {
  ThreadRunner runner;
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  o.max_queue_delay = absl::ZeroDuration();
  // The linger is the whole pass time, at least the 300 ms held below: far
  // more than the 20 ms the next call comes after, on any build.
  o.max_pass_linger = absl::Seconds(1);
  o.pass_linger_fraction = 1.0;
  o.run = runner.AsRunner();
  auto batcher = Make(o);
  executor_.Hold();
  std::vector<Outcome> outcomes(3);
  ASSERT_TRUE(batcher->Search(Request(0, 1, 3), outcomes[0].Callback()).ok());
  executor_.WaitStarted(1);
  ASSERT_TRUE(batcher->Search(Request(1, 1, 3), outcomes[1].Callback()).ok());
  absl::SleepFor(absl::Milliseconds(300));
  executor_.Release();
  ASSERT_TRUE(outcomes[0].done.WaitForNotificationWithTimeout(
      Scaled(absl::Seconds(5))));
  // Without the linger the waiting call's pass would have started by now.
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(batcher->Search(Request(2, 1, 3), outcomes[2].Callback()).ok());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    ASSERT_TRUE(outcomes[i].done.WaitForNotificationWithTimeout(
        Scaled(absl::Seconds(5))));
    ASSERT_TRUE(outcomes[i].result.ok()) << outcomes[i].result.status();
    EXPECT_EQ(outcomes[i].result->batch_requests, i == 0 ? 1u : 2u);
  }
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(1u, 2u));
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, MorePassSlotsRunThatManyPassesAtOnce) {
  ThreadRunner runner;
  SearchBatcher::Options o;
  o.max_batch_queries = 4;
  o.max_queue_delay = absl::ZeroDuration();
  o.max_concurrent_passes = 2;
  o.run = runner.AsRunner();
  auto batcher = Make(o);
  executor_.Hold();
  std::vector<Outcome> outcomes(4);
  ASSERT_TRUE(batcher->Search(Request(0, 1, 3), outcomes[0].Callback()).ok());
  executor_.WaitStarted(1);
  // A full batch also takes a slot: the second one.
  ASSERT_TRUE(batcher->Search(Request(0, 4, 3), outcomes[1].Callback()).ok());
  executor_.WaitStarted(2);
  ASSERT_TRUE(batcher->Search(Request(4, 1, 3), outcomes[2].Callback()).ok());
  ASSERT_TRUE(batcher->Search(Request(5, 1, 3), outcomes[3].Callback()).ok());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(executor_.started(), 2);
  executor_.Release();
  for (auto& out : outcomes) {
    ASSERT_TRUE(
        out.done.WaitForNotificationWithTimeout(Scaled(absl::Seconds(5))));
    ASSERT_TRUE(out.result.ok());
  }
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(1u, 4u, 2u));
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, CallsWaitingForAPassSlotCanBeCancelled) {
  ThreadRunner runner;
  SearchBatcher::Options o;
  o.max_queue_delay = absl::ZeroDuration();
  o.run = runner.AsRunner();
  auto batcher = Make(o);
  executor_.Hold();
  std::vector<Outcome> outcomes(3);
  std::vector<SearchTicket> tickets;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    auto t = batcher->Search(Request(i, 1, 3), outcomes[i].Callback());
    ASSERT_TRUE(t.ok());
    tickets.push_back(*t);
    if (i == 0) executor_.WaitStarted(1);
  }
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(batcher->Cancel(tickets[1]));
  ASSERT_TRUE(outcomes[1].done.HasBeenNotified());
  EXPECT_EQ(outcomes[1].result.status().code(), absl::StatusCode::kCancelled);
  executor_.Release();
  for (size_t i : {0, 2}) {
    ASSERT_TRUE(outcomes[i].done.WaitForNotificationWithTimeout(
        Scaled(absl::Seconds(5))));
    EXPECT_TRUE(outcomes[i].result.ok());
  }
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(1u, 1u));
  EXPECT_TRUE(WaitIdle(*batcher));
}

TEST_F(SearchBatcherTest, DifferentVersionsNeverShareAPass) {
  SearchBatcher::Options o;
  o.max_batch_queries = 64;
  o.max_queue_delay = absl::Milliseconds(30);
  auto batcher = Make(o);
  Outcome before, after;
  ASSERT_TRUE(batcher->Search(Request(0, 1, 3), before.Callback()).ok());
  auto v2 =
      Upload(*store_, "docs", kDim, std::vector<float>(kDim, 1.0f), {}, false);
  ASSERT_TRUE(v2.ok());
  SearchRequest r = Request(0, 1, 3);
  r.collection = *v2;
  ASSERT_TRUE(batcher->Search(r, after.Callback()).ok());
  before.done.WaitForNotification();
  after.done.WaitForNotification();
  EXPECT_EQ(before.result->batch_requests, 1u);
  EXPECT_EQ(after.result->batch_requests, 1u);
  EXPECT_THAT(executor_.pass_queries(), ElementsAre(1u, 1u));
}

TEST_F(SearchBatcherTest, AnExecutorErrorReachesEveryCallerOfThePass) {
  executor_.fail_ = absl::UnavailableError("gpu gone");
  SearchBatcher::Options o;
  o.max_batch_queries = 3;
  o.max_queue_delay = absl::Seconds(1);
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(3);
  for (auto& out : outcomes) {
    ASSERT_TRUE(batcher->Search(Request(0, 1, 3), out.Callback()).ok());
  }
  for (auto& out : outcomes) {
    out.done.WaitForNotification();
    EXPECT_EQ(out.result.status().code(), absl::StatusCode::kUnavailable);
  }
}

TEST_F(SearchBatcherTest, DestructionFailsWaitingCallsWithUnavailable) {
  Outcome out;
  {
    SearchBatcher::Options o;
    o.max_batch_queries = 64;
    o.max_queue_delay = absl::Seconds(1);
    auto batcher = Make(o);
    ASSERT_TRUE(batcher->Search(Request(0, 1, 3), out.Callback()).ok());
  }
  ASSERT_TRUE(out.done.HasBeenNotified());
  EXPECT_EQ(out.result.status().code(), absl::StatusCode::kUnavailable);
}

// What a call holds (its collection version, whose segments go back to the
// memory budget when released, and its callback) is released before the
// batcher's destructor returns, not by a pass thread that may still be
// running once the engine that owns the budget is gone.
TEST_F(SearchBatcherTest, ACallIsReleasedBeforeTheBatcherIsDestroyed) {
  // Sets the flag when the callback holding it is destroyed, late enough
  // that a release after the destructor returned would be seen.
  struct ReleaseProbe {
    std::atomic<bool>* released;
    ~ReleaseProbe() {
      absl::SleepFor(absl::Milliseconds(50));
      released->store(true);
    }
  };
  ThreadRunner runner;
  std::atomic<bool> released{false};
  absl::Notification answered;
  {
    SearchBatcher::Options o;
    o.max_queue_delay = absl::ZeroDuration();
    o.run = runner.AsRunner();
    auto batcher = Make(o);
    // Built in place: a temporary's destructor would set the flag.
    std::unique_ptr<ReleaseProbe> probe(new ReleaseProbe{&released});
    ASSERT_TRUE(batcher
                    ->Search(Request(0, 1, 3),
                             [probe = std::move(probe),
                              &answered](absl::StatusOr<SearchResult> result) {
                               EXPECT_TRUE(result.ok()) << result.status();
                               answered.Notify();
                             })
                    .ok());
    ASSERT_TRUE(
        answered.WaitForNotificationWithTimeout(Scaled(absl::Seconds(5))));
    EXPECT_FALSE(released.load());
  }
  EXPECT_TRUE(released.load());
}

TEST_F(SearchBatcherTest, RecordsBatchSizeAndQueueDelay) {
  prometheus::Registry registry;
  ResidentMetrics metrics(registry);
  SearchBatcher::Options o;
  o.max_batch_queries = 4;
  o.max_queue_delay = absl::Seconds(1);
  o.metrics = &metrics;
  auto batcher = Make(o);
  std::vector<Outcome> outcomes(2);
  ASSERT_TRUE(batcher->Search(Request(0, 3, 3), outcomes[0].Callback()).ok());
  ASSERT_TRUE(batcher->Search(Request(0, 1, 3), outcomes[1].Callback()).ok());
  for (auto& out : outcomes) out.done.WaitForNotification();
  double batches = -1, queries = -1, delays = -1;
  for (const auto& family : registry.Collect()) {
    if (family.name == "engram_search_batch_requests") {
      batches = family.metric[0].histogram.sample_count;
    }
    if (family.name == "engram_search_batch_queries") {
      queries = family.metric[0].histogram.sample_sum;
    }
    if (family.name == "engram_search_queue_delay_seconds") {
      delays = family.metric[0].histogram.sample_count;
    }
  }
  EXPECT_EQ(batches, 1);
  EXPECT_EQ(queries, 4);
  EXPECT_EQ(delays, 2);
}

TEST_F(SearchBatcherTest, SearchSegmentsMatchesASingleSegmentCollection) {
  // The same rows in one segment and in two must give the same lists.
  std::vector<float> all;
  for (const auto& s : collection_->segments()) {
    all.insert(all.end(), s->vectors().data,
               s->vectors().data + s->rows() * kDim);
  }
  auto single = Upload(*store_, "single", kDim, all);
  ASSERT_TRUE(single.ok());
  auto search = [](const kernels::MatrixView& q, const Segment& segment,
                   const kernels::RowMask& mask, uint32_t k,
                   std::optional<float> min,
                   std::vector<kernels::TopKList>* out) {
    return kernels::cpu::CosineTopK(q, segment.vectors(), mask, k,
                                    min.value_or(-2.0f), 0, nullptr, out,
                                    kernels::cpu::CosineKernel::kRowDot);
  };
  BatchPass a;
  a.collection = collection_.get();
  a.queries = kernels::MatrixView{queries_.data(), 10, kDim};
  a.top_k = 7;
  BatchPass b = a;
  b.collection = single->get();
  std::vector<kernels::TopKList> la, lb;
  ASSERT_TRUE(SearchSegments(a, search, &la).ok());
  ASSERT_TRUE(SearchSegments(b, search, &lb).ok());
  EXPECT_EQ(la, lb);

  // A mask over the whole collection is sliced at the segments' starts,
  // which are not on word boundaries: the same lists either way, holding
  // admitted rows only.
  const uint64_t rows = collection_->rows();
  std::vector<uint64_t> words((rows + 63) / 64);
  for (uint64_t r = 0; r < rows; ++r) {
    if (r % 3 == 1 || r % 7 == 0) words[r / 64] |= uint64_t{1} << (r % 64);
  }
  a.mask = kernels::RowMask{words.data(), 0, static_cast<size_t>(rows)};
  b.mask = a.mask;
  ASSERT_TRUE(SearchSegments(a, search, &la).ok());
  ASSERT_TRUE(SearchSegments(b, search, &lb).ok());
  EXPECT_EQ(la, lb);
  for (const auto& list : la) {
    ASSERT_FALSE(list.empty());
    for (const auto& hit : list) EXPECT_TRUE(a.mask.test(hit.index));
  }
  // A mask admitting nothing: empty lists, no segment searched.
  std::vector<uint64_t> none(words.size(), 0);
  a.mask = kernels::RowMask{none.data(), 0, static_cast<size_t>(rows)};
  ASSERT_TRUE(SearchSegments(a, search, &la).ok());
  for (const auto& list : la) EXPECT_TRUE(list.empty());
}

}  // namespace
}  // namespace engram::collections
