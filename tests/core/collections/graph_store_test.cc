#include "core/collections/graph_store.h"

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/collections/collection_store.h"
#include "core/dispatch/jobs.h"
#include "core/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/spread.h"
#include "kernels/graph_overlay.h"
#include "kernels/thread_pool.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

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
    const core::RequestLimits& limits = {}, bool background_merge = false) {
  GraphStore::Options options;
  options.budget = std::move(budget);
  options.validate = RequestValidator(limits);
  options.validate_size = [limits](uint64_t nodes, uint64_t edges) {
    return core::ValidateGraphSize(nodes, edges, limits);
  };
  options.background_merge = background_merge;
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
  EXPECT_EQ(std::vector<uint32_t>((*got)->base().targets.begin(),
                                  (*got)->base().targets.end()),
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
  EXPECT_EQ((*held)->base().row_offsets.back(), graph_.targets.size());
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
  absl::StatusOr<uint64_t> CommitEdit(const Graph& previous, const Graph& next,
                                      const GraphEdit& /*edit*/,
                                      absl::string_view key) override {
    seen_versions.push_back(next.version());
    edit_keys.push_back(std::string(key));
    previous_versions.push_back(previous.version());
    return next_revision += 10;
  }
  absl::StatusOr<std::string> WriteMerge(const Graph& merged) override {
    return absl::StrCat("merge-", merged.version());
  }
  absl::Status CommitMerge(const Graph& /*merged*/, const Graph& /*current*/,
                           const std::string& handle) override {
    merges.push_back(handle);
    return absl::OkStatus();
  }
  void DiscardMerge(const std::string& handle) override {
    discarded.push_back(handle);
  }
  uint64_t next_revision = 500;
  std::vector<uint64_t> seen_versions;
  std::vector<uint64_t> previous_versions;
  std::vector<std::string> edit_keys;
  std::vector<std::string> merges;
  std::vector<std::string> discarded;
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

// --- Updates ---

GraphEdit AddEdge(uint32_t source, uint32_t target, float weight = 1.0f) {
  GraphEdit edit;
  edit.add_edges = {{source, target, weight}};
  return edit;
}

engram::testing::RandomCsrGraph Flatten(const Graph& g) {
  return engram::testing::FlattenGraph(g);
}

void ExpectSameGraph(const engram::testing::RandomCsrGraph& got,
                     const engram::testing::RandomCsrGraph& expected) {
  EXPECT_EQ(got.num_nodes, expected.num_nodes);
  EXPECT_EQ(got.row_offsets, expected.row_offsets);
  EXPECT_EQ(got.targets, expected.targets);
  EXPECT_EQ(got.weights, expected.weights);
}

kernels::SpreadResult SpreadOver(const Graph& g,
                                 const std::vector<kernels::SpreadSeed>& seeds,
                                 const kernels::SpreadParams& params,
                                 kernels::ThreadPool* pool,
                                 kernels::cpu::SpreadMode mode) {
  kernels::SpreadResult result;
  const absl::Status status =
      g.overlay() != nullptr
          ? kernels::cpu::Spread(g.base(), *g.overlay(), seeds, params, pool,
                                 &result, mode)
          : kernels::cpu::Spread(g.base(), seeds, params, pool, &result, mode);
  EXPECT_TRUE(status.ok()) << status;
  return result;
}

TEST_F(GraphStoreTest, AnUpdateIsOneNewVersionAboveEveryEarlierWrite) {
  auto put = store_->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok());
  auto other = store_->Put("other", graph_.view());
  ASSERT_TRUE(other.ok());
  GraphEdit edit = AddEdge(3, 4, 0.5f);
  edit.add_nodes = 2;
  edit.add_edges.push_back({50, 51, 0.25f});
  auto updated = store_->Update("kg", edit, {});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_FALSE(updated->replayed);
  const Graph& next = *updated->graph;
  EXPECT_GT(next.version(), (*other)->version());
  EXPECT_EQ(next.num_nodes(), 52u);
  EXPECT_EQ(next.num_edges(), graph_.targets.size() + 2);
  EXPECT_EQ(next.pending_changes(), 2u);
  EXPECT_EQ(next.uid(), (*put)->uid());
  EXPECT_EQ(updated->counts.edges_added, 2u);
  // The version held before is untouched; the name now gives the new one.
  EXPECT_EQ((*put)->num_edges(), graph_.targets.size());
  EXPECT_EQ((*put)->overlay(), nullptr);
  EXPECT_EQ((*store_->Get("kg"))->version(), next.version());
  auto info = store_->Describe("kg");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->version, next.version());
  EXPECT_EQ(info->num_nodes, 52u);
  EXPECT_EQ(info->pending_changes, 2u);
  EXPECT_GT(info->bytes, (*put)->bytes());
  // A put after it is numbered after it too.
  auto later = store_->Put("later", graph_.view());
  ASSERT_TRUE(later.ok());
  EXPECT_GT((*later)->version(), next.version());
}

TEST_F(GraphStoreTest, AFailedUpdateChangesNothing) {
  EXPECT_EQ(store_->Update("kg", AddEdge(0, 1), {}).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->MarkLost("gone", absl::DataLossError("bad")).ok());
  EXPECT_EQ(store_->Update("gone", AddEdge(0, 1), {}).status().code(),
            absl::StatusCode::kDataLoss);
  auto put = store_->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok());
  auto bad = store_->Update("kg", AddEdge(0, 50), {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("add_edges[0].target is 50"));
  GraphUpdateOptions stale;
  stale.expected_version = (*put)->version() + 1;
  auto aborted = store_->Update("kg", AddEdge(0, 1), stale);
  EXPECT_EQ(aborted.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(aborted.status().message(), HasSubstr("expected_version"));
  EXPECT_EQ((*store_->Get("kg"))->version(), (*put)->version());
  EXPECT_EQ((*store_->Get("kg"))->overlay(), nullptr);
  stale.expected_version = (*put)->version();
  EXPECT_TRUE(store_->Update("kg", AddEdge(0, 1), stale).ok());
}

TEST_F(GraphStoreTest, AnUpdateOverTheSizeLimitsIsResourceExhausted) {
  core::RequestLimits limits;
  limits.max_nodes = 51;
  limits.max_edges = graph_.targets.size() + 1;
  auto store = MakeGraphStore(budget_, limits);
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  GraphEdit two_nodes;
  two_nodes.add_nodes = 2;
  auto nodes = store->Update("kg", two_nodes, {});
  EXPECT_EQ(nodes.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(nodes.status().message(), HasSubstr("graph.num_nodes is 52"));
  ASSERT_TRUE(store->Update("kg", AddEdge(1, 2), {}).ok());
  EXPECT_EQ(store->Update("kg", AddEdge(1, 2), {}).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Removing one makes room again.
  GraphEdit swap = AddEdge(1, 3);
  swap.remove_edges = {{1, 2}};
  EXPECT_TRUE(store->Update("kg", swap, {}).ok());
}

TEST_F(GraphStoreTest, AnUpdateThatChangesNothingCommitsNothing) {
  auto put = store_->Put("kg", graph_.view());
  ASSERT_TRUE(put.ok());
  GraphEdit edit;
  edit.remove_edges = {{0, 0}, {1, 1}};
  // Make sure neither pair is held.
  engram::testing::EdgeListGraph reference(graph_.view());
  reference.Apply(GraphEdit());
  for (const auto& [v, w] : reference.edges(0)) ASSERT_NE(v, 0u);
  for (const auto& [v, w] : reference.edges(1)) ASSERT_NE(v, 1u);
  auto result = store_->Update("kg", edit, {});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->graph->version(), (*put)->version());
  EXPECT_EQ(result->counts.not_found, 2u);
  EXPECT_EQ(result->graph.get(), put->get());
}

TEST_F(GraphStoreTest, AKeyedUpdateIsAppliedOnce) {
  ASSERT_TRUE(store_->Put("kg", graph_.view()).ok());
  GraphUpdateOptions keyed;
  keyed.idempotency_key = "first";
  auto once = store_->Update("kg", AddEdge(0, 1), keyed);
  ASSERT_TRUE(once.ok());
  auto again = store_->Update("kg", AddEdge(0, 1), keyed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->graph->version(), once->graph->version());
  EXPECT_EQ(again->graph->num_edges(), once->graph->num_edges());
  // A replay answers even where the update would now be refused.
  keyed.expected_version = 1;
  EXPECT_TRUE(store_->Update("kg", AddEdge(0, 1), keyed)->replayed);
  // The graph remembers its last 64 keys.
  for (int i = 0; i < 64; ++i) {
    GraphUpdateOptions other;
    other.idempotency_key = absl::StrCat("k", i);
    ASSERT_TRUE(store_->Update("kg", AddEdge(0, 2), other).ok());
  }
  auto graph = store_->Get("kg");
  EXPECT_EQ((*graph)->committed_keys().size(), kMaxCommittedKeys);
  EXPECT_FALSE((*graph)->Committed("first"));
  EXPECT_TRUE((*graph)->Committed("k63"));
  keyed.expected_version = 0;
  auto forgotten = store_->Update("kg", AddEdge(0, 1), keyed);
  ASSERT_TRUE(forgotten.ok());
  EXPECT_FALSE(forgotten->replayed);
}

TEST_F(GraphStoreTest, TheJournalNumbersUpdates) {
  NumberingJournal journal;
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.journal = &journal;
  options.background_merge = false;
  auto store = *GraphStore::Create(options);
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  GraphUpdateOptions keyed;
  keyed.idempotency_key = "k";
  auto updated = store->Update("kg", AddEdge(0, 1), keyed);
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->graph->version(), 520u);
  EXPECT_THAT(journal.previous_versions, ElementsAre(510u));
  EXPECT_THAT(journal.edit_keys, ElementsAre("k"));
  EXPECT_EQ(updated->graph->committed_keys().back().version, 520u);
  // An update applied from elsewhere carries its version and is not
  // journaled again.
  GraphUpdateOptions restored;
  restored.version = 600;
  auto applied = store->Update("kg", AddEdge(0, 2), restored);
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->graph->version(), 600u);
  EXPECT_EQ(journal.edit_keys.size(), 1u);
  restored.version = 600;
  EXPECT_EQ(store->Update("kg", AddEdge(0, 2), restored).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A merge is journaled and keeps the version.
  auto merged = store->Merge("kg");
  ASSERT_TRUE(merged.ok());
  EXPECT_TRUE(*merged);
  EXPECT_THAT(journal.merges, ElementsAre("merge-600"));
  EXPECT_EQ((*store->Get("kg"))->version(), 600u);
}

TEST_F(GraphStoreTest, AMergeCompactsTheGraphAndKeepsItsVersion) {
  ASSERT_TRUE(store_->Put("kg", graph_.view()).ok());
  EXPECT_FALSE(*store_->Merge("kg"));  // nothing to merge
  std::mt19937_64 rng(3);
  engram::testing::EdgeListGraph reference(graph_.view());
  for (int i = 0; i < 10; ++i) {
    const GraphEdit edit = engram::testing::RandomGraphEdit(
        reference, engram::testing::GraphEditKind::kMixed, 3, rng);
    reference.Apply(edit);
    ASSERT_TRUE(store_->Update("kg", edit, {}).ok());
  }
  const std::shared_ptr<const Graph> before = *store_->Get("kg");
  ASSERT_NE(before->overlay(), nullptr);
  const uint64_t reserved = budget_->reserved_bytes();
  ASSERT_TRUE(*store_->Merge("kg"));
  const std::shared_ptr<const Graph> after = *store_->Get("kg");
  EXPECT_EQ(after->overlay(), nullptr);
  EXPECT_EQ(after->version(), before->version());
  EXPECT_EQ(after->base_version(), before->version());
  EXPECT_EQ(after->pending_changes(), 0u);
  EXPECT_EQ(after->committed_keys().size(), before->committed_keys().size());
  EXPECT_EQ(store_->Describe("kg")->pending_changes, 0u);
  ExpectSameGraph(Flatten(*after), reference.ToCsr());
  ExpectSameGraph(Flatten(*before), reference.ToCsr());
  EXPECT_EQ(store_->merges_completed(), 1u);
  // The old version's memory goes back when its last reader lets go.
  EXPECT_GT(budget_->reserved_bytes(), reserved);
}

// A journal whose WriteMerge waits for the test, so that updates land
// while a merge runs.
class PausingJournal : public NumberingJournal {
 public:
  absl::StatusOr<std::string> WriteMerge(const Graph& merged) override {
    // Pauses the first merge only.
    if (!writing.HasBeenNotified()) writing.Notify();
    resume.WaitForNotification();
    return NumberingJournal::WriteMerge(merged);
  }
  absl::Notification writing;
  absl::Notification resume;
};

TEST_F(GraphStoreTest, UpdatesMadeWhileAMergeRunsAreCarriedOver) {
  PausingJournal journal;
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.journal = &journal;
  options.background_merge = false;
  auto store = *GraphStore::Create(options);
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  std::mt19937_64 rng(4);
  engram::testing::EdgeListGraph reference(graph_.view());
  auto update = [&] {
    const GraphEdit edit = engram::testing::RandomGraphEdit(
        reference, engram::testing::GraphEditKind::kMixed, 4, rng);
    reference.Apply(edit);
    auto result = store->Update("kg", edit, {});
    ASSERT_TRUE(result.ok()) << result.status();
  };
  for (int i = 0; i < 5; ++i) update();
  const uint64_t merged_version = (*store->Get("kg"))->version();
  absl::StatusOr<bool> merged;
  std::thread merge([&] { merged = store->Merge("kg"); });
  journal.writing.WaitForNotification();
  for (int i = 0; i < 3; ++i) update();
  const uint64_t latest = (*store->Get("kg"))->version();
  journal.resume.Notify();
  merge.join();
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE(*merged);
  const std::shared_ptr<const Graph> now = *store->Get("kg");
  EXPECT_EQ(now->version(), latest);
  EXPECT_EQ(now->base_version(), merged_version);
  ASSERT_NE(now->overlay(), nullptr);  // the three later updates
  EXPECT_GT(now->pending_changes(), 0u);
  ExpectSameGraph(Flatten(*now), reference.ToCsr());
  // Updates go on over the new CSR, and the next merge folds them in.
  update();
  ExpectSameGraph(Flatten(**store->Get("kg")), reference.ToCsr());
  ASSERT_TRUE(*store->Merge("kg"));
  EXPECT_EQ((*store->Get("kg"))->overlay(), nullptr);
  ExpectSameGraph(Flatten(**store->Get("kg")), reference.ToCsr());
}

TEST_F(GraphStoreTest, ADeleteDuringAMergeWins) {
  PausingJournal journal;
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.journal = &journal;
  options.background_merge = false;
  auto store = *GraphStore::Create(options);
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  ASSERT_TRUE(store->Update("kg", AddEdge(0, 1), {}).ok());
  absl::StatusOr<bool> merged;
  std::thread merge([&] { merged = store->Merge("kg"); });
  journal.writing.WaitForNotification();
  ASSERT_TRUE(store->Delete("kg").ok());
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  journal.resume.Notify();
  merge.join();
  ASSERT_TRUE(merged.ok());
  EXPECT_FALSE(*merged);
  EXPECT_THAT(journal.discarded, ElementsAre(::testing::StartsWith("merge-")));
  EXPECT_EQ((*store->Get("kg"))->num_edges(), graph_.targets.size());
}

TEST_F(GraphStoreTest, TheMergeThreadMergesOnceTheChangesPassTheShare) {
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.merge_share = 0.05;
  auto store = *GraphStore::Create(options);
  const auto graph = engram::testing::RandomGraph(2000, 4, 8);
  ASSERT_TRUE(store->Put("kg", graph.view()).ok());
  engram::testing::EdgeListGraph reference(graph.view());
  // One update touching a few nodes stays below 5% of ~10000 edges+nodes.
  ASSERT_TRUE(store->Update("kg", AddEdge(0, 1), {}).ok());
  reference.Apply(AddEdge(0, 1));
  EXPECT_EQ(store->merges_completed(), 0u);
  std::mt19937_64 rng(9);
  for (int i = 0; i < 40; ++i) {
    const GraphEdit edit = engram::testing::RandomGraphEdit(
        reference, engram::testing::GraphEditKind::kAdd, 10, rng);
    reference.Apply(edit);
    ASSERT_TRUE(store->Update("kg", edit, {}).ok());
  }
  const absl::Time deadline =
      absl::Now() + engram::testing::Scaled(absl::Seconds(20));
  while (store->merges_completed() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GE(store->merges_completed(), 1u);
  ExpectSameGraph(Flatten(**store->Get("kg")), reference.ToCsr());
  EXPECT_THAT(GraphStore::Create([&] {
                GraphStore::Options bad = options;
                bad.merge_share = 0;
                return bad;
              }())
                  .status()
                  .message(),
              HasSubstr("merge_share"));
}

TEST_F(GraphStoreTest, TheMergeThreadMergesAfterMaxUpdates) {
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.merge_share = 1.0;
  options.merge_max_updates = 5;
  auto store = *GraphStore::Create(options);
  ASSERT_TRUE(store->Put("kg", graph_.view()).ok());
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(store->Update("kg", AddEdge(i, 1), {}).ok());
  }
  EXPECT_EQ((*store->Get("kg"))->overlay()->num_nodes, 50u);
  ASSERT_TRUE(store->Update("kg", AddEdge(9, 1), {}).ok());
  const absl::Time deadline =
      absl::Now() + engram::testing::Scaled(absl::Seconds(20));
  while (store->merges_completed() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(store->merges_completed(), 1u);
  EXPECT_EQ((*store->Get("kg"))->overlay(), nullptr);
  options.merge_max_updates = 0;
  EXPECT_EQ(GraphStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::vector<std::unique_ptr<kernels::ThreadPool>> Pools() {
  std::vector<std::unique_ptr<kernels::ThreadPool>> pools;
  pools.push_back(nullptr);
  for (int n : {1, 3})
    pools.push_back(std::make_unique<kernels::ThreadPool>(n));
  return pools;
}

std::vector<kernels::SpreadSeed> Seeds(uint32_t num_nodes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> node(0, num_nodes - 1);
  std::vector<kernels::SpreadSeed> seeds;
  for (int i = 0; i < 8; ++i) seeds.push_back({node(rng), 0.3f + 0.05f * i});
  return seeds;
}

// After random sequences of every kind of update, spreading over the
// stored graph gives the bits of spreading over the graph built from
// scratch, on every hop kind and pool, before and after a merge.
TEST_F(GraphStoreTest, RandomUpdatesSpreadAsTheGraphBuiltFromScratch) {
  const auto pools = Pools();
  kernels::SpreadParams params;
  params.max_hops = 6;
  params.decay_param = 0.3f;
  params.threshold = 0.0005f;
  using Kind = engram::testing::GraphEditKind;
  const std::vector<std::vector<Kind>> sequences = {
      {Kind::kAddNodes, Kind::kAdd, Kind::kAdd},
      {Kind::kRemove, Kind::kRemove, Kind::kReweight},
      {Kind::kReweight, Kind::kAdd, Kind::kRemove},
      {Kind::kMixed, Kind::kMixed, Kind::kMixed, Kind::kMixed}};
  uint64_t seed = 40;
  for (size_t s = 0; s < sequences.size(); ++s) {
    SCOPED_TRACE(::testing::Message() << "sequence " << s);
    const auto graph = engram::testing::RandomGraph(3000, 5, ++seed);
    const std::string name = absl::StrCat("g", s);
    ASSERT_TRUE(store_->Put(name, graph.view()).ok());
    engram::testing::EdgeListGraph reference(graph.view());
    std::mt19937_64 rng(++seed);
    for (int round = 0; round < 3; ++round) {
      for (const Kind kind : sequences[s]) {
        const GraphEdit edit = engram::testing::RandomGraphEdit(
            reference, kind, 1 + rng() % 200, rng);
        reference.Apply(edit);
        ASSERT_TRUE(store_->Update(name, edit, {}).ok());
      }
      const auto expected_graph = reference.ToCsr();
      const auto seeds = Seeds(reference.num_nodes(), ++seed);
      kernels::SpreadResult expected;
      ASSERT_TRUE(kernels::cpu::Spread(expected_graph.view(), seeds, params,
                                       nullptr, &expected,
                                       kernels::cpu::SpreadMode::kPush)
                      .ok());
      for (const bool merge : {false, true}) {
        if (merge) {
          ASSERT_TRUE(store_->Merge(name).ok());
        }
        const std::shared_ptr<const Graph> g = *store_->Get(name);
        EXPECT_EQ(g->overlay() == nullptr, merge);
        ExpectSameGraph(Flatten(*g), expected_graph);
        for (const auto& pool : pools) {
          for (const auto mode : {kernels::cpu::SpreadMode::kPush,
                                  kernels::cpu::SpreadMode::kDensePush,
                                  kernels::cpu::SpreadMode::kPull,
                                  kernels::cpu::SpreadMode::kAuto}) {
            SCOPED_TRACE(::testing::Message()
                         << "round " << round << " merged " << merge << " mode "
                         << static_cast<int>(mode) << " threads "
                         << (pool ? pool->num_threads() : 0));
            const kernels::SpreadResult r =
                SpreadOver(*g, seeds, params, pool.get(), mode);
            EXPECT_TRUE(r.activation == expected.activation);
            EXPECT_EQ(r.hops, expected.hops);
            EXPECT_EQ(r.edges_traversed, expected.edges_traversed);
          }
        }
      }
    }
  }
}

// Spreads running while updates and background merges publish new
// versions: each sees exactly one version, whole.
TEST_F(GraphStoreTest, ConcurrentSpreadsSeeOneVersionEach) {
  GraphStore::Options options;
  options.budget = budget_;
  options.validate = RequestValidator();
  options.merge_share = 0.01;
  auto store = *GraphStore::Create(options);
  const auto graph = engram::testing::RandomGraph(1500, 4, 60);
  auto put = store->Put("kg", graph.view());
  ASSERT_TRUE(put.ok());
  const uint64_t first = (*put)->version();
  kernels::SpreadParams params;
  params.threshold = 0.001f;
  const auto seeds = Seeds(1500, 61);

  // Every version's expected result, computed before any is published.
  std::mt19937_64 rng(62);
  engram::testing::EdgeListGraph reference(graph.view());
  std::vector<GraphEdit> edits;
  std::vector<std::vector<float>> expected;
  auto expect_now = [&] {
    kernels::SpreadResult r;
    const auto csr = reference.ToCsr();
    ASSERT_TRUE(
        kernels::cpu::Spread(csr.view(), seeds, params, nullptr, &r).ok());
    expected.push_back(r.activation);
  };
  expect_now();
  for (int i = 0; i < 60; ++i) {
    edits.push_back(engram::testing::RandomGraphEdit(
        reference, engram::testing::GraphEditKind::kMixed, 20, rng));
    reference.Apply(edits.back());
    expect_now();
  }

  std::atomic<bool> done{false};
  std::atomic<int> spreads{0};
  std::atomic<int> mismatches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      kernels::ThreadPool pool(t);
      while (!done.load(std::memory_order_acquire)) {
        const std::shared_ptr<const Graph> g = *store->Get("kg");
        const kernels::SpreadResult r =
            SpreadOver(*g, seeds, params, t == 0 ? nullptr : &pool,
                       kernels::cpu::SpreadMode::kAuto);
        const uint64_t step = g->version() - first;
        if (step >= expected.size() || r.activation != expected[step]) {
          mismatches.fetch_add(1, std::memory_order_relaxed);
        }
        spreads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (const GraphEdit& edit : edits) {
    ASSERT_TRUE(store->Update("kg", edit, {}).ok());
    absl::SleepFor(absl::Microseconds(200));
  }
  while (spreads.load() < 30) absl::SleepFor(absl::Milliseconds(1));
  done.store(true, std::memory_order_release);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GE(store->merges_completed(), 1u);
  EXPECT_EQ((*store->Get("kg"))->version(), first + edits.size());
}

}  // namespace
}  // namespace engram::collections
