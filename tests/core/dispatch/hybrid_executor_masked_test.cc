// HybridExecutor with row-masked cosine jobs (jobs.h CosineJob::mask): on
// the CPU, on the simulated device, split into chunks, and after a device
// error sends the rest to the CPU, a masked job gives the reference result
// over the admitted rows.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/cpu_backend.h"
#include "core/dispatch/hybrid_executor.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/dispatch/executor_test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::dispatch {
namespace {

using ::engram::dispatch::testing::CosineCase;
using ::engram::dispatch::testing::CountingObserver;
using ::engram::dispatch::testing::RecordingBackend;
using ::engram::dispatch::testing::ScoresMatch;
using ::engram::dispatch::testing::TopKMatches;
using ::testing::ElementsAre;

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr float kNoMinScore = -std::numeric_limits<float>::infinity();

// A cosine case with a random row mask, and its reference over the
// admitted rows alone.
struct MaskedCase {
  CosineCase c;
  engram::testing::OwnedRowMask owned;
  std::vector<float> kept;  // the admitted target rows
  size_t m = 0;

  MaskedCase(size_t q, size_t n, size_t d, uint64_t seed, double density,
             size_t offset, uint32_t top_k = 0)
      : c(q, n, d, seed, top_k),
        owned(engram::testing::RandomRowMask(n, density, offset, seed + 7)),
        kept(engram::testing::KeptRows(c.targets.data(), n, d, owned.admitted)),
        m(owned.count()) {
    c.job.mask = owned.mask();
  }

  std::vector<double> Reference() const {
    return engram::testing::ReferenceCosine(c.queries.data(), c.q, kept.data(),
                                            m, c.d);
  }

  // Lists of target rows as lists of admitted-row positions, so that they
  // compare with Reference(); an index that is not an admitted row fails.
  ::testing::AssertionResult ToPositions(
      std::vector<kernels::TopKList>* lists) const {
    std::vector<uint32_t> position(owned.admitted.size(), UINT32_MAX);
    uint32_t next = 0;
    for (size_t r = 0; r < owned.admitted.size(); ++r) {
      if (owned.admitted[r]) position[r] = next++;
    }
    for (kernels::TopKList& list : *lists) {
      for (kernels::ScoredIndex& entry : list) {
        if (entry.index >= position.size() ||
            position[entry.index] == UINT32_MAX) {
          return ::testing::AssertionFailure()
                 << "row " << entry.index << " is not admitted";
        }
        entry.index = position[entry.index];
      }
    }
    return ::testing::AssertionSuccess();
  }
};

class HybridExecutorMaskedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu_inner_ = *CpuBackend::Create({});
    dispatch::testing::SimulatedGpuBackend::Options gpu;
    gpu.clock = &clock_;
    gpu.launch_overhead = absl::Microseconds(10);
    gpu.seconds_per_unit = 1e-12;
    gpu.memory_bytes = kGiB;
    gpu_inner_ = *dispatch::testing::SimulatedGpuBackend::Create(gpu);
    cpu_ = std::make_unique<RecordingBackend>(cpu_inner_.get());
    gpu_ = std::make_unique<RecordingBackend>(gpu_inner_.get());
  }

  HybridExecutor& Make(uint64_t max_chunk_queries = 1024) {
    HybridConfig config;
    config.min_gpu_work_cosine = 1000;
    config.probe_enabled = false;
    config.min_chunk_queries = 1;
    config.max_chunk_queries = max_chunk_queries;
    config.memory.refresh_interval = absl::ZeroDuration();
    store_ = *ConfigStore::Create(config);
    HybridExecutor::Options options;
    options.cpu = cpu_.get();
    options.gpu = gpu_.get();
    options.config = store_.get();
    options.observer = &observer_;
    options.clock = &clock_;
    auto executor = HybridExecutor::Create(options);
    EXPECT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    return *executor_;
  }

  // Runs the case dense: Q x M scores.
  absl::Status Dense(MaskedCase& mc, Placement placement, CosineOutput* out,
                     std::vector<float>* scores) {
    scores->assign(mc.c.q * mc.m, std::nanf(""));
    out->scores = absl::MakeSpan(*scores);
    mc.c.job.placement = placement;
    return executor_->Cosine(mc.c.job, out);
  }

  ManualClock clock_;
  std::unique_ptr<CpuBackend> cpu_inner_;
  std::unique_ptr<dispatch::testing::SimulatedGpuBackend> gpu_inner_;
  std::unique_ptr<RecordingBackend> cpu_;
  std::unique_ptr<RecordingBackend> gpu_;
  std::unique_ptr<ConfigStore> store_;
  CountingObserver observer_;
  std::unique_ptr<HybridExecutor> executor_;
};

TEST_F(HybridExecutorMaskedTest, TheCpuScoresOnlyTheAdmittedRows) {
  Make();
  MaskedCase dense(6, 300, 24, 1, 0.3, 13);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(dense, Placement::kCpuOnly, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kCpu);
  EXPECT_TRUE(ScoresMatch(scores, dense.Reference()));
  // Work counts the rows computed: Q x M.
  EXPECT_EQ(observer_.work_items("cpu"), 6u * dense.m);

  MaskedCase top(6, 300, 24, 2, 0.3, 70, /*top_k=*/5);
  top.c.job.placement = Placement::kCpuOnly;
  ASSERT_TRUE(executor_->Cosine(top.c.job, &out).ok());
  ASSERT_TRUE(top.ToPositions(&out.top));
  EXPECT_TRUE(
      TopKMatches(out.top, top.Reference(), top.c.q, top.m, 5, kNoMinScore));
}

TEST_F(HybridExecutorMaskedTest, TheSimulatedDeviceScoresOnlyTheAdmittedRows) {
  Make();
  MaskedCase dense(8, 400, 16, 3, 0.5, 1);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(dense, Placement::kGpuOnly, &out, &scores).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  EXPECT_TRUE(ScoresMatch(scores, dense.Reference()));
  EXPECT_EQ(observer_.work_items("gpu"), 8u * dense.m);

  MaskedCase top(8, 400, 16, 4, 0.05, 64, /*top_k=*/30);
  top.c.job.placement = Placement::kGpuOnly;
  top.c.job.min_score = 0.05f;
  ASSERT_TRUE(executor_->Cosine(top.c.job, &out).ok());
  EXPECT_EQ(out.report.backend, BackendKind::kGpu);
  ASSERT_TRUE(top.ToPositions(&out.top));
  EXPECT_TRUE(TopKMatches(out.top, top.Reference(), top.c.q, top.m, 30, 0.05f));
}

// The executor splits the queries: every chunk scores the same admitted
// rows and writes its queries' M scores at their place in the Q x M output.
TEST_F(HybridExecutorMaskedTest, ChunksCarryTheWholeMask) {
  Make(/*max_chunk_queries=*/7);
  MaskedCase dense(50, 200, 8, 5, 0.4, 33);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(dense, Placement::kGpuOnly, &out, &scores).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(7, 7, 7, 7, 7, 7, 7, 1));
  EXPECT_EQ(out.report.chunks, 8u);
  EXPECT_TRUE(ScoresMatch(scores, dense.Reference()));

  MaskedCase top(50, 200, 8, 6, 0.4, 100, /*top_k=*/3);
  top.c.job.placement = Placement::kGpuOnly;
  ASSERT_TRUE(executor_->Cosine(top.c.job, &out).ok());
  EXPECT_EQ(out.report.chunks, 8u);
  ASSERT_TRUE(top.ToPositions(&out.top));
  EXPECT_TRUE(
      TopKMatches(out.top, top.Reference(), top.c.q, top.m, 3, kNoMinScore));
}

TEST_F(HybridExecutorMaskedTest, TheCpuFallbackAfterADeviceErrorKeepsTheMask) {
  Make(/*max_chunk_queries=*/16);
  MaskedCase dense(48, 256, 16, 7, 0.25, 5);
  gpu_inner_->FailNextCalls(1, absl::InternalError("launch failed"),
                            /*after=*/1);
  CosineOutput out;
  std::vector<float> scores;
  ASSERT_TRUE(Dense(dense, Placement::kAuto, &out, &scores).ok());
  EXPECT_THAT(gpu_->cosine_rows(), ElementsAre(16, 16));
  EXPECT_THAT(cpu_->cosine_rows(), ElementsAre(16, 16));
  EXPECT_EQ(out.report.backend, BackendKind::kMixed);
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  EXPECT_TRUE(ScoresMatch(scores, dense.Reference()));

  MaskedCase top(48, 256, 16, 8, 0.25, 90, /*top_k=*/4);
  gpu_inner_->FailNextCalls(1, absl::InternalError("launch failed"),
                            /*after=*/2);
  ASSERT_TRUE(executor_->Cosine(top.c.job, &out).ok());
  EXPECT_EQ(out.report.fallback_reason, "gpu_error");
  ASSERT_TRUE(top.ToPositions(&out.top));
  EXPECT_TRUE(
      TopKMatches(out.top, top.Reference(), top.c.q, top.m, 4, kNoMinScore));
}

TEST_F(HybridExecutorMaskedTest, NonFiniteExcludedRowsAreNoError) {
  Make();
  MaskedCase mc(4, 128, 8, 9, 0.5, 0, /*top_k=*/2);
  for (size_t r = 0; r < mc.c.n; ++r) {
    if (!mc.owned.admitted[r]) {
      mc.c.targets[r * mc.c.d] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  for (Placement placement : {Placement::kCpuOnly, Placement::kGpuOnly}) {
    mc.c.job.placement = placement;
    CosineOutput out;
    ASSERT_TRUE(executor_->Cosine(mc.c.job, &out).ok());
    ASSERT_TRUE(mc.ToPositions(&out.top));
    EXPECT_TRUE(
        TopKMatches(out.top, mc.Reference(), mc.c.q, mc.m, 2, kNoMinScore));
  }
}

TEST_F(HybridExecutorMaskedTest, AMaskThatAdmitsNothingGivesEmptyResults) {
  Make();
  CosineCase c(3, 50, 8, 10, /*top_k=*/4);
  const engram::testing::OwnedRowMask none =
      engram::testing::RowMaskOf(std::vector<bool>(50, false), 3);
  c.job.mask = none.mask();
  CosineOutput out;
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
  EXPECT_EQ(out.top, std::vector<kernels::TopKList>(3));
  c.job.top_k = 0;
  out.scores = {};
  ASSERT_TRUE(executor_->Cosine(c.job, &out).ok());
}

TEST_F(HybridExecutorMaskedTest, BadMasksAndScoreBuffersAreRefused) {
  Make();
  CosineCase c(3, 50, 8, 11);
  const engram::testing::OwnedRowMask short_mask =
      engram::testing::RowMaskOf(std::vector<bool>(49, true), 0);
  c.job.mask = short_mask.mask();
  CosineOutput out;
  std::vector<float> scores(3 * 49);
  out.scores = absl::MakeSpan(scores);
  EXPECT_EQ(executor_->Cosine(c.job, &out).code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<bool> half(50);
  for (size_t r = 0; r < 50; r += 2) half[r] = true;
  const engram::testing::OwnedRowMask owned =
      engram::testing::RowMaskOf(half, 0);
  c.job.mask = owned.mask();
  scores.assign(3 * 50, 0.0f);  // Q*N: a masked job writes Q*M
  out.scores = absl::MakeSpan(scores);
  EXPECT_EQ(executor_->Cosine(c.job, &out).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(cpu_->cosine_rows().empty());
  EXPECT_TRUE(gpu_->cosine_rows().empty());
}

}  // namespace
}  // namespace engram::dispatch
