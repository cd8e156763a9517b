#include "core/engine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/dispatch/testing/simulated_gpu_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"
#include "tests/testing/time_scale.h"

namespace engram::core {
namespace {

using ::engram::testing::Scaled;
using ::testing::HasSubstr;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Engine::Options options;
    options.worker_threads = 2;
    auto engine =
        Engine::Create(options, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, CreateRejectsNegativeThreadsAndMissingRegistry) {
  Engine::Options options;
  options.worker_threads = -1;
  EXPECT_FALSE(
      Engine::Create(options, std::make_shared<prometheus::Registry>()).ok());
  EXPECT_FALSE(Engine::Create(Engine::Options{}, nullptr).ok());
}

TEST_F(EngineTest, AnInjectedGpuBackendIsUsedAndItsFailuresRefuseCreate) {
  Engine::Options options;
  options.worker_threads = 1;
  options.gpu_backend = dispatch::testing::SimulatedGpuFactory(
      dispatch::testing::SimulatedGpuBackend::Options());
  auto with_gpu =
      Engine::Create(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(with_gpu.ok()) << with_gpu.status();
  EXPECT_TRUE((*with_gpu)->gpu_available());
  EXPECT_EQ((*with_gpu)->gpu_name(), "simulated-gpu");

  options.gpu_backend = [](kernels::ThreadPool*)
      -> absl::StatusOr<std::unique_ptr<dispatch::ComputeBackend>> {
    return nullptr;
  };
  auto empty =
      Engine::Create(options, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);

  options.gpu_backend = [](kernels::ThreadPool*)
      -> absl::StatusOr<std::unique_ptr<dispatch::ComputeBackend>> {
    return absl::UnavailableError("no such device");
  };
  auto failed =
      Engine::Create(options, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, CreateRejectsBatchingOptionsOutOfRangeNamingThem) {
  struct Case {
    void (*set)(ResidentOptions&);
    const char* name;
  };
  const Case cases[] = {
      {[](ResidentOptions& r) { r.batch_max_queries = 0; },
       "batch_max_queries"},
      {[](ResidentOptions& r) { r.batch_max_queries = 65537; },
       "batch_max_queries"},
      {[](ResidentOptions& r) { r.batch_max_delay = absl::Seconds(2); },
       "batch_max_delay"},
      {[](ResidentOptions& r) { r.batch_max_pending = 0; },
       "batch_max_pending"},
      {[](ResidentOptions& r) { r.batch_max_passes = 0; }, "batch_max_passes"},
      {[](ResidentOptions& r) { r.batch_max_passes = 1025; },
       "batch_max_passes"},
      {[](ResidentOptions& r) { r.batch_pass_linger = absl::Seconds(2); },
       "batch_pass_linger"},
      {[](ResidentOptions& r) { r.batch_pass_linger = -absl::Milliseconds(1); },
       "batch_pass_linger"},
  };
  for (const Case& c : cases) {
    Engine::Options options;
    options.worker_threads = 1;
    c.set(options.resident);
    auto engine =
        Engine::Create(options, std::make_shared<prometheus::Registry>());
    EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(engine.status().message(), HasSubstr(c.name));
  }
  Engine::Options options;
  options.worker_threads = 1;
  options.resident.batch_max_passes = 1024;
  EXPECT_TRUE(
      Engine::Create(options, std::make_shared<prometheus::Registry>()).ok());
}

TEST_F(EngineTest, CosineDenseMatchesReferenceAndReportsCpu) {
  const size_t q = 3, n = 41, d = 19;
  const auto queries = testing::RandomMatrix(q, d, 1);
  const auto targets = testing::RandomMatrix(n, d, 2);
  dispatch::CosineJob job;
  job.queries = {queries.data(), q, d};
  job.targets = {targets.data(), n, d};
  std::vector<float> scores(q * n);
  dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  ASSERT_TRUE(engine_->Cosine(job, &out).ok());
  const auto expected =
      testing::ReferenceCosine(queries.data(), q, targets.data(), n, d);
  for (size_t i = 0; i < q * n; ++i) {
    EXPECT_NEAR(scores[i], expected[i], 1e-5);
  }
  EXPECT_EQ(out.report.backend, dispatch::BackendKind::kCpu);
  EXPECT_FALSE(out.report.decided_by.empty());
  EXPECT_EQ(out.report.chunks, 1u);
}

TEST_F(EngineTest, CosineRejectsAScoreBufferOfTheWrongSize) {
  const std::vector<float> v = {1, 0};
  dispatch::CosineJob job;
  job.queries = {v.data(), 1, 2};
  job.targets = {v.data(), 1, 2};
  std::vector<float> scores(2);
  dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  EXPECT_EQ(engine_->Cosine(job, &out).code(), absl::StatusCode::kInternal);
}

TEST_F(EngineTest, CosineReportsNonFiniteTargetRow) {
  const std::vector<float> q = {1, 0};
  const std::vector<float> t = {1, 0, 0, NAN};
  dispatch::CosineJob job;
  job.queries = {q.data(), 1, 2};
  job.targets = {t.data(), 2, 2};
  std::vector<float> scores(2);
  dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  const absl::Status s = engine_->Cosine(job, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("targets row 1"));
}

TEST_F(EngineTest, GpuOnlyWithoutGpuIsUnavailable) {
  ASSERT_FALSE(engine_->gpu_available());
  const std::vector<float> v = {1};
  dispatch::CosineJob job;
  job.queries = {v.data(), 1, 1};
  job.targets = {v.data(), 1, 1};
  job.placement = dispatch::Placement::kGpuOnly;
  std::vector<float> scores(1);
  dispatch::CosineOutput out;
  out.scores = absl::MakeSpan(scores);
  EXPECT_EQ(engine_->Cosine(job, &out).code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineTest, SpreadTopKSkipsNodesNeverReached) {
  // 0 -> 1 only; nodes 2 and 3 are never reached.
  const std::vector<uint32_t> offsets = {0, 1, 1, 1, 1};
  const std::vector<uint32_t> targets = {1};
  const std::vector<float> weights = {1.0f};
  const std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}};
  dispatch::SpreadJob job;
  job.graph = {4, offsets, targets, weights};
  job.seeds = seeds;
  job.top_k = 3;
  dispatch::SpreadOutput out;
  ASSERT_TRUE(engine_->Spread(job, &out).ok());
  ASSERT_EQ(out.top.size(), 2u);
  EXPECT_EQ(out.top[0].index, 0u);
  EXPECT_EQ(out.top[1].index, 1u);
  EXPECT_EQ(out.result.activation.size(), 4u);
}

// Seeds outside seed_nodes are dropped and counted; results outside
// result_nodes are dropped: the same answer as spreading from the admitted
// seeds and masking the result by hand, on the CPU and on a GPU backend.
TEST_F(EngineTest, NodeFiltersApplyAroundTheSpreadOnEveryBackend) {
  const auto graph = engram::testing::RandomGraph(400, 5, 21);
  std::vector<kernels::SpreadSeed> seeds;
  for (uint32_t v = 0; v < 40; v += 3) seeds.push_back({v, 0.6f});
  std::vector<uint32_t> seed_nodes;
  for (uint32_t v = 0; v < 40; v += 2) seed_nodes.push_back(v);
  std::vector<uint32_t> result_nodes;
  for (uint32_t v = 399; v > 0; v -= 7) result_nodes.push_back(v);
  result_nodes.push_back(result_nodes.front());  // duplicates are harmless

  // By hand: the admitted seeds, then the mask.
  std::vector<kernels::SpreadSeed> admitted;
  uint32_t ignored = 0;
  for (const auto& s : seeds) {
    if (s.node % 2 == 0) {
      admitted.push_back(s);
    } else {
      ++ignored;
    }
  }
  dispatch::SpreadJob plain;
  plain.graph = graph.view();
  plain.seeds = admitted;
  plain.params.threshold = 0.001f;
  dispatch::SpreadOutput unfiltered;
  ASSERT_TRUE(engine_->Spread(plain, &unfiltered).ok());
  std::vector<float> expected(400, 0.0f);
  std::vector<kernels::ScoredIndex> reached;
  for (uint32_t v = 399; v > 0; v -= 7) {
    expected[v] = unfiltered.result.activation[v];
    if (expected[v] > 0) reached.push_back({v, expected[v]});
  }
  std::sort(reached.begin(), reached.end(), kernels::BetterThan);
  ASSERT_GE(reached.size(), 6u);

  Engine::Options options;
  options.worker_threads = 2;
  options.gpu_backend = dispatch::testing::SimulatedGpuFactory(
      dispatch::testing::SimulatedGpuBackend::Options());
  auto with_gpu =
      Engine::Create(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(with_gpu.ok());
  for (const auto placement :
       {dispatch::Placement::kCpuOnly, dispatch::Placement::kGpuOnly}) {
    dispatch::SpreadJob job = plain;
    job.seeds = seeds;
    job.seed_nodes = seed_nodes;
    job.result_nodes = result_nodes;
    job.placement = placement;
    dispatch::SpreadOutput dense;
    ASSERT_TRUE((*with_gpu)->Spread(job, &dense).ok());
    EXPECT_EQ(dense.seeds_ignored, ignored);
    EXPECT_EQ(dense.result.activation, expected);
    EXPECT_EQ(dense.report.backend, placement == dispatch::Placement::kCpuOnly
                                        ? dispatch::BackendKind::kCpu
                                        : dispatch::BackendKind::kGpu);
    job.top_k = 5;
    dispatch::SpreadOutput top;
    ASSERT_TRUE((*with_gpu)->Spread(job, &top).ok());
    EXPECT_EQ(top.top, std::vector<kernels::ScoredIndex>(reached.begin(),
                                                         reached.begin() + 5));
  }
}

TEST_F(EngineTest, NodeFiltersAreValidated) {
  const auto graph = engram::testing::RandomGraph(50, 3, 22);
  const std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}};
  const std::vector<uint32_t> bad = {3, 50};
  dispatch::SpreadJob job;
  job.graph = graph.view();
  job.seeds = seeds;
  job.result_nodes = bad;
  dispatch::SpreadOutput out;
  absl::Status status = engine_->Spread(job, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("result_nodes.nodes[1] is 50"));
  const std::vector<uint32_t> many(kMaxNodeFilterEntries + 1, 0);
  job.result_nodes = {};
  job.seed_nodes = many;
  status = engine_->Spread(job, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("seed_nodes.nodes has 1048577"));
}

TEST_F(EngineTest, SubmitRunsTasksOnWorkers) {
  absl::Mutex mu;
  int ran = 0;
  for (int i = 0; i < 10; ++i) {
    engine_->Submit([&] {
      absl::MutexLock lock(&mu);
      ++ran;
    });
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int* r) { return *r == 10; }, &ran));
  EXPECT_EQ(ran, 10);
}

// A resident search through the engine's batch executor, on the simulated
// GPU: each segment of the collection is read from its device copy.
TEST(EngineResidentTest, GpuSearchesReadEverySegmentsDeviceCopy) {
  Engine::Options options;
  options.worker_threads = 2;
  dispatch::testing::SimulatedGpuBackend* simulated_gpu = nullptr;
  options.gpu_backend = dispatch::testing::SimulatedGpuFactory(
      dispatch::testing::SimulatedGpuBackend::Options(), &simulated_gpu);
  auto created =
      Engine::Create(options, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(created.ok()) << created.status();
  Engine& engine = **created;
  constexpr uint32_t kDim = 24;
  const std::vector<float> rows = testing::RandomMatrix(300, kDim, 41);
  collections::CollectionStore& store = engine.resident().collections();
  ASSERT_TRUE(collections::testing::Upload(
                  store, "docs", kDim,
                  std::vector<float>(rows.begin(), rows.begin() + 200 * kDim))
                  .ok());
  auto collection = collections::testing::Upload(
      store, "docs", kDim,
      std::vector<float>(rows.begin() + 200 * kDim, rows.end()), {},
      /*create=*/false);
  ASSERT_TRUE(collection.ok()) << collection.status();
  ASSERT_TRUE(engine.WaitForResidency(Scaled(absl::Seconds(10))));
  EXPECT_EQ(engine.ResidencyOf((*collection)->uid()), "host+gpu");

  const std::vector<float> queries = testing::RandomMatrix(3, kDim, 42);
  auto batcher = engine.resident().BatcherFor("docs");
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  auto search = [&](dispatch::Placement placement) {
    collections::SearchRequest request;
    request.collection = *collection;
    request.queries = kernels::MatrixView{queries.data(), 3, kDim};
    request.top_k = 5;
    request.placement = placement;
    absl::Notification done;
    absl::StatusOr<collections::SearchResult> result;
    EXPECT_TRUE((*batcher)
                    ->Search(std::move(request),
                             [&](absl::StatusOr<collections::SearchResult> r) {
                               result = std::move(r);
                               done.Notify();
                             })
                    .ok());
    done.WaitForNotification();
    return result;
  };
  const uint64_t hits_before = simulated_gpu->stats().resident_hits;
  auto gpu = search(dispatch::Placement::kGpuOnly);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->report.backend, dispatch::BackendKind::kGpu);
  // One pass, two segments, each read from its copy.
  EXPECT_EQ(simulated_gpu->stats().resident_hits - hits_before, 2u);

  auto cpu = search(dispatch::Placement::kCpuOnly);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_EQ(gpu->top.size(), cpu->top.size());
  for (size_t q = 0; q < gpu->top.size(); ++q) {
    ASSERT_EQ(gpu->top[q].size(), 5u);
    for (size_t i = 0; i < gpu->top[q].size(); ++i) {
      EXPECT_EQ(gpu->top[q][i].row, cpu->top[q][i].row);
      EXPECT_NEAR(gpu->top[q][i].score, cpu->top[q][i].score, 1e-5);
    }
  }
}

}  // namespace
}  // namespace engram::core
