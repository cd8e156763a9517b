#include "core/collections/graph_store.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/collections/collection_store.h"
#include "core/dispatch/jobs.h"
#include "core/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The production binding: the request path's own graph validation.
GraphValidator RequestValidator(const core::RequestLimits& limits = {}) {
  return [limits](const kernels::GraphView& g) {
    dispatch::SpreadJob job;
    job.graph = g;
    return core::ValidateSpreadJob(job, limits);
  };
}

std::unique_ptr<GraphStore> MakeGraphStore(
    std::shared_ptr<MemoryBudget> budget,
    const core::RequestLimits& limits = {}) {
  GraphStore::Options options;
  options.budget = std::move(budget);
  options.validate = RequestValidator(limits);
  return *GraphStore::Create(options);
}

class GraphStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  std::unique_ptr<GraphStore> store_ = MakeGraphStore(budget_);
  engram::testing::RandomCsrGraph graph_ =
      engram::testing::RandomGraph(50, 4, 7);
};

TEST_F(GraphStoreTest, CreateRequiresBudgetAndValidator) {
  GraphStore::Options options;
  options.validate = RequestValidator();
  EXPECT_EQ(GraphStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.budget = budget_;
  options.validate = nullptr;
  EXPECT_EQ(GraphStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(GraphStoreTest, PutGetDescribeListDelete) {
  auto put = store_->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok()) << put.status();
  auto got = store_->Get("kg");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)->num_nodes(), 50u);
  EXPECT_EQ(std::vector<uint32_t>((*got)->view().targets.begin(),
                                  (*got)->view().targets.end()),
            graph_.targets);
  auto info = store_->Describe("kg");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->num_edges, graph_.targets.size());
  EXPECT_EQ(info->bytes, 51u * 4 + graph_.targets.size() * 8);
  EXPECT_EQ(info->residency, "host");
  EXPECT_EQ(store_->List().size(), 1u);
  ASSERT_TRUE(store_->Delete("kg").ok());
  EXPECT_EQ(store_->Get("kg").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Describe("kg").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("kg").code(), absl::StatusCode::kNotFound);
}

TEST_F(GraphStoreTest, ExistingNameIsAlreadyExists) {
  ASSERT_TRUE(store_->Put("kg", graph_.view()).ok());
  EXPECT_EQ(store_->Put("kg", graph_.view()).status().code(),
            absl::StatusCode::kAlreadyExists);
  // Also while another put of the name is staged.
  auto staged = store_->BeginPut({"other", 3, 0, ""});
  ASSERT_TRUE(staged.ok());
  EXPECT_EQ(store_->BeginPut({"other", 3, 0, ""}).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(GraphStoreTest, InvalidGraphIsRefusedByTheRequestValidation) {
  std::vector<uint32_t> offsets = {0, 1, 2};
  std::vector<uint32_t> targets = {1, 5};  // 5 >= num_nodes
  std::vector<float> weights = {0.5f, 0.5f};
  auto put =
      store_->Put("bad", kernels::GraphView{2, offsets, targets, weights});
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(put.status().message(), HasSubstr("graph.targets[1]"));
  EXPECT_EQ(store_->Get("bad").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  targets[1] = 0;
  weights[0] = -1;
  EXPECT_THAT(
      store_->Put("bad", kernels::GraphView{2, offsets, targets, weights})
          .status()
          .message(),
      HasSubstr("graph.weights[0]"));
  weights[0] = 1;
  offsets = {0, 2, 1};
  EXPECT_THAT(
      store_->Put("bad", kernels::GraphView{2, offsets, targets, weights})
          .status()
          .message(),
      HasSubstr("graph.row_offsets[2]"));
}

TEST_F(GraphStoreTest, RequestLimitsApply) {
  core::RequestLimits limits;
  limits.max_nodes = 10;
  auto store = MakeGraphStore(budget_, limits);
  EXPECT_EQ(store->Put("kg", graph_.view()).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(GraphStoreTest, IncompletePutCommitsNothing) {
  auto upload = store_->BeginPut({"kg", 2, 2, ""});
  ASSERT_TRUE(upload.ok());
  const std::vector<uint32_t> offsets = {0, 1, 2};
  ASSERT_TRUE((*upload)->AppendRowOffsets(offsets).ok());
  const std::vector<uint32_t> t = {1};
  const std::vector<float> w = {1};
  ASSERT_TRUE((*upload)->AppendEdges(t, w).ok());
  auto committed = (*upload)->Commit();
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(committed.status().message(), HasSubstr("1 of 2 edges"));
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST_F(GraphStoreTest, ChunksBeyondTheDeclaredCountsAreRefused) {
  auto upload = store_->BeginPut({"kg", 1, 1, ""});
  const std::vector<uint32_t> offsets = {0, 1, 1};
  EXPECT_EQ((*upload)->AppendRowOffsets(offsets).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<uint32_t> t = {0, 0};
  const std::vector<float> w = {1};
  EXPECT_THAT((*upload)->AppendEdges(t, w).message(),
              HasSubstr("graph.weights has 1 entries"));
}

TEST_F(GraphStoreTest, AbortAndDestructionLeaveNothing) {
  {
    auto upload = store_->BeginPut({"kg", 10, 100, ""});
    ASSERT_TRUE(upload.ok());
    EXPECT_GT(budget_->reserved_bytes(), 0u);
  }
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  auto upload = store_->BeginPut({"kg", 10, 100, ""});
  (*upload)->Abort();
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  EXPECT_TRUE(store_->Put("kg", graph_.view()).ok());
}

TEST_F(GraphStoreTest, BudgetIsSharedWithCollections) {
  auto budget = MakeBudget(1000);
  auto graphs = MakeGraphStore(budget);
  auto collections = testing::MakeStore(budget);
  ASSERT_TRUE(collections->BeginUpload({"v", true, 4, {}, 40, false, ""})
                  .ok());  // 800 bytes, released at once
  auto held = collections->BeginUpload({"v", true, 4, {}, 40, false, ""});
  ASSERT_TRUE(held.ok());
  auto refused = graphs->BeginPut({"kg", 10, 100, ""});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(budget->reserved_bytes(), 800u);
}

TEST_F(GraphStoreTest, DeleteNeverInvalidatesAHeldGraph) {
  auto held = store_->Put("kg", graph_.view());
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(store_->Delete("kg").ok());
  EXPECT_EQ((*held)->view().row_offsets.back(), graph_.targets.size());
  EXPECT_GT(budget_->reserved_bytes(), 0u);
  held->reset();
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

}  // namespace
}  // namespace engram::collections
