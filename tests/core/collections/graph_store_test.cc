#include "core/collections/graph_store.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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

TEST_F(GraphStoreTest, EveryPutGetsALargerVersionThanAnyBefore) {
  auto a = store_->Put("a", graph_.view());
  auto b = store_->Put("b", graph_.view());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT((*a)->version(), 0u);
  EXPECT_GT((*b)->version(), (*a)->version());
  ASSERT_TRUE(store_->Delete("a").ok());
  auto again = store_->Put("a", graph_.view());
  ASSERT_TRUE(again.ok());
  // The successor of a deleted graph is told apart from it.
  EXPECT_GT((*again)->version(), (*b)->version());
  EXPECT_EQ(store_->Describe("a")->version, (*again)->version());
  EXPECT_THAT(
      store_->List(),
      ElementsAre(::testing::Field(&GraphInfo::version, (*again)->version()),
                  ::testing::Field(&GraphInfo::version, (*b)->version())));
}

TEST_F(GraphStoreTest, AGivenVersionIsKeptAndLaterPutsCountPastIt) {
  GraphPutOptions options;
  options.name = "loaded";
  options.num_nodes = 50;
  options.num_edges = graph_.targets.size();
  options.version = 1000;
  auto upload = store_->BeginPut(options);
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->AppendRowOffsets(graph_.row_offsets).ok());
  ASSERT_TRUE((*upload)->AppendEdges(graph_.targets, graph_.weights).ok());
  auto loaded = (*upload)->Commit();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->version(), 1000u);
  auto next = store_->Put("next", graph_.view());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)->version(), 1001u);
}

TEST_F(GraphStoreTest, GetAtLeastNamesBothVersionsWhileBehind) {
  auto put = store_->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok());
  const uint64_t v = (*put)->version();
  auto at = store_->GetAtLeast("kg", v);
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->get(), put->get());
  EXPECT_TRUE(store_->GetAtLeast("kg", 0).ok());
  auto behind = store_->GetAtLeast("kg", v + 5);
  EXPECT_EQ(behind.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      behind.status().message(),
      HasSubstr(absl::StrCat("at version ", v,
                             " on this replica, min_version is ", v + 5)));
  auto absent = store_->GetAtLeast("other", 1);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(absent.status().message(), HasSubstr("on this replica"));
  ASSERT_TRUE(store_->MarkLost("gone", absl::DataLossError("bad file")).ok());
  EXPECT_EQ(store_->GetAtLeast("gone", 1).status().code(),
            absl::StatusCode::kDataLoss);
}

// A journal that stores nothing and numbers commits itself, as the shared
// catalog does with its revisions.
class NumberingJournal : public GraphJournal {
 public:
  absl::StatusOr<uint64_t> Commit(const Graph& graph) override {
    seen_versions.push_back(graph.version());
    return next_revision += 10;
  }
  absl::Status Delete(absl::string_view /*name*/) override {
    return absl::OkStatus();
  }
  uint64_t next_revision = 500;
  std::vector<uint64_t> seen_versions;
};

TEST_F(GraphStoreTest, TheJournalsVersionIsTheOnePublished) {
  NumberingJournal journal;
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.journal = &journal;
  auto store = *GraphStore::Create(options);
  auto put = store->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok());
  EXPECT_EQ((*put)->version(), 510u);
  EXPECT_EQ(store->Describe("kg")->version, 510u);
  // The store's own numbering continues past what the journal chose.
  auto next = store->Put("other", graph_.view());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*next)->version(), 520u);
  EXPECT_THAT(journal.seen_versions, ElementsAre(1u, 511u));
}

}  // namespace
}  // namespace engram::collections
