// The data directory's graphs: updates durable in the edit log and
// replicated through the catalog (data_dir.h), merges, and what a crash
// leaves behind.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/collections/data_dir.h"
#include "core/collections/graph_edit_log.h"
#include "core/collections/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/data_dir_stores.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/memory_catalog.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::ListDir;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::WriteAll;
using ::engram::testing::EdgeListGraph;
using ::engram::testing::FlattenGraph;
using ::engram::testing::GraphEditKind;
using ::engram::testing::MemoryCatalog;
using ::engram::testing::RandomCsrGraph;
using ::engram::testing::RandomGraphEdit;
using ::engram::testing::Scaled;
using ::testing::Contains;
using ::testing::HasSubstr;

// One process (or replica) over the directory, merging only when told.
struct Process : ::engram::collections::testing::DataDirStores {
  explicit Process(const std::string& path,
                   std::shared_ptr<Catalog> catalog = nullptr)
      : DataDirStores(path, std::move(catalog), 1 << 30, true,
                      /*background_merge=*/false) {}
};

void ExpectSameGraph(const RandomCsrGraph& got, const RandomCsrGraph& want) {
  EXPECT_EQ(got.num_nodes, want.num_nodes);
  EXPECT_EQ(got.row_offsets, want.row_offsets);
  EXPECT_EQ(got.targets, want.targets);
  EXPECT_EQ(got.weights, want.weights);
}

template <typename Done>
bool Eventually(Done done, absl::Duration bound = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + Scaled(bound);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

class DataDirGraphTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TestDir(); }

  // Applies `count` random updates of every kind to `name` in `store` and
  // to the reference; keys "k<i>" on every third.
  void Update(GraphStore& store, const std::string& name, int count) {
    for (int i = 0; i < count; ++i, ++step_) {
      const GraphEdit edit = RandomGraphEdit(
          *reference_, static_cast<GraphEditKind>(step_ % 5), 3, rng_);
      GraphUpdateOptions options;
      if (step_ % 3 == 0) options.idempotency_key = absl::StrCat("k", step_);
      auto result = store.Update(name, edit, options);
      ASSERT_TRUE(result.ok()) << result.status();
      reference_->Apply(edit);
    }
  }
  std::string GraphFile(const std::string& name) const {
    return absl::StrCat(path_, "/graphs/", name, ".graph");
  }
  std::string LogFile(const std::string& name) const {
    return absl::StrCat(path_, "/graphs/", name, ".edits");
  }

  std::string path_;
  const RandomCsrGraph graph_ = engram::testing::RandomGraph(400, 4, 11);
  std::unique_ptr<EdgeListGraph> reference_ =
      std::make_unique<EdgeListGraph>(graph_.view());
  std::mt19937_64 rng_{12};
  int step_ = 0;
};

TEST_F(DataDirGraphTest, UpdatesComeBackExactlyAfterARestart) {
  uint64_t version = 0;
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
    Update(*p.graphs, "links", 12);
    version = (*p.graphs->Get("links"))->version();
    EXPECT_THAT(ListDir(path_ + "/graphs"), Contains("links.edits"));
  }
  Process p(path_);
  const std::vector<LoadOutcome> outcomes = p.Load();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
  auto links = p.graphs->Get("links");
  ASSERT_TRUE(links.ok());
  EXPECT_EQ((*links)->version(), version);
  EXPECT_GT((*links)->pending_changes(), 0u);
  ExpectSameGraph(FlattenGraph(**links), reference_->ToCsr());
  // The keys came back: a resent update is answered, not applied.
  GraphUpdateOptions resent;
  resent.idempotency_key = "k9";
  auto replay = p.graphs->Update("links", GraphEdit{1, {}, {}, {}}, resent);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  // Updates go on from there and survive the next restart too.
  Update(*p.graphs, "links", 3);
  const uint64_t later = (*p.graphs->Get("links"))->version();
  EXPECT_GT(later, version);
  Process again(path_);
  again.Load();
  EXPECT_EQ((*again.graphs->Get("links"))->version(), later);
  ExpectSameGraph(FlattenGraph(**again.graphs->Get("links")),
                  reference_->ToCsr());
}

TEST_F(DataDirGraphTest, AMergeRewritesTheFileAndKeepsOnlyLaterUpdates) {
  Process p(path_);
  p.Load();
  ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
  Update(*p.graphs, "links", 8);
  const uint64_t merged_at = (*p.graphs->Get("links"))->version();
  ASSERT_TRUE(*p.graphs->Merge("links"));
  auto log = ReadGraphEditLog(LogFile("links"));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->header.base_version(), merged_at);
  EXPECT_TRUE(log->edits.empty());
  // The keys of the merged updates moved into the log's header.
  EXPECT_GT(log->header.committed_keys_size(), 0);
  Update(*p.graphs, "links", 2);
  log = ReadGraphEditLog(LogFile("links"));
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->edits.size(), 2u);
  EXPECT_THAT(ListDir(path_ + "/graphs"),
              ::testing::ElementsAre("links.edits", "links.graph"));

  Process again(path_);
  again.Load();
  auto links = again.graphs->Get("links");
  ASSERT_TRUE(links.ok());
  EXPECT_EQ((*links)->version(), (*p.graphs->Get("links"))->version());
  EXPECT_EQ((*links)->base_version(), merged_at);
  ExpectSameGraph(FlattenGraph(**links), reference_->ToCsr());
  GraphUpdateOptions resent;
  resent.idempotency_key = "k0";
  EXPECT_TRUE(again.graphs->Update("links", GraphEdit(), resent)->replayed);
}

// A crash after the merged file replaced the old one and before the log
// was rewritten: the old log's updates the file holds are skipped by
// version, and their keys kept.
TEST_F(DataDirGraphTest, AMergeCutShortBeforeItsLogLoadsTheSameGraph) {
  Process p(path_);
  p.Load();
  ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
  Update(*p.graphs, "links", 6);
  const std::string old_log = ReadAll(LogFile("links"));
  ASSERT_TRUE(*p.graphs->Merge("links"));
  Update(*p.graphs, "links", 0);
  WriteAll(LogFile("links"), old_log);

  Process again(path_);
  const std::vector<LoadOutcome> outcomes = again.Load();
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
  auto links = again.graphs->Get("links");
  EXPECT_EQ((*links)->version(), (*p.graphs->Get("links"))->version());
  ExpectSameGraph(FlattenGraph(**links), reference_->ToCsr());
  GraphUpdateOptions resent;
  resent.idempotency_key = "k3";
  EXPECT_TRUE(again.graphs->Update("links", GraphEdit(), resent)->replayed);
}

TEST_F(DataDirGraphTest, ATornAppendIsCutOffAtStartUp) {
  uint64_t version = 0;
  RandomCsrGraph before_torn;
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
    Update(*p.graphs, "links", 4);
    version = (*p.graphs->Get("links"))->version();
    before_torn = reference_->ToCsr();
  }
  // An append the crash stopped half-way: its length says more than is
  // there.
  std::string log = ReadAll(LogFile("links"));
  const size_t good = log.size();
  log += std::string("\x40\x00\x00\x00\x12\x34\x56\x78\x08\x01", 10);
  WriteAll(LogFile("links"), log);
  {
    Process p(path_);
    const std::vector<LoadOutcome> outcomes = p.Load();
    ASSERT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
    EXPECT_EQ((*p.graphs->Get("links"))->version(), version);
    ExpectSameGraph(FlattenGraph(**p.graphs->Get("links")), before_torn);
    EXPECT_EQ(p.dir->leftovers_removed(), 1u);
    EXPECT_EQ(ReadAll(LogFile("links")).size(), good);
    // A complete record whose bytes never all landed: zeros from the file
    // system's extension.
    Update(*p.graphs, "links", 1);
  }
  log = ReadAll(LogFile("links"));
  const std::string whole = log;
  log.replace(log.size() - 3, 3, std::string(3, '\0'));
  WriteAll(LogFile("links"), log);
  {
    Process p(path_);
    const std::vector<LoadOutcome> outcomes = p.Load();
    ASSERT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
    ExpectSameGraph(FlattenGraph(**p.graphs->Get("links")), before_torn);
  }
}

TEST_F(DataDirGraphTest, DamageBeforeTheLastUpdateIsDataLoss) {
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
    ASSERT_TRUE(p.graphs->Put("other", graph_.view()).ok());
    Update(*p.graphs, "links", 4);
  }
  auto log = ReadGraphEditLog(LogFile("links"));
  ASSERT_TRUE(log.ok());
  std::string bytes = ReadAll(LogFile("links"));
  // A byte inside the second update's payload.
  const size_t header_end = 8 + 8 + log->header.ByteSizeLong();
  const size_t second = header_end + 8 + log->edits[0].ByteSizeLong();
  bytes[second + 9] ^= 0x5a;
  WriteAll(LogFile("links"), bytes);
  Process p(path_);
  const std::vector<LoadOutcome> outcomes = p.Load();
  ASSERT_EQ(outcomes.size(), 2u);
  const LoadOutcome& links =
      outcomes[0].declaration.name == "links" ? outcomes[0] : outcomes[1];
  EXPECT_EQ(links.status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(links.status.message(), HasSubstr("links.edits"));
  EXPECT_EQ(p.graphs->Get("links").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(p.graphs->Get("other").ok());
  // Deleting it clears the name.
  ASSERT_TRUE(p.graphs->Delete("links").ok());
  EXPECT_THAT(ListDir(path_ + "/graphs"),
              ::testing::ElementsAre("other.graph"));
}

TEST_F(DataDirGraphTest, LeftoversOfDeletesAndMergesAreRemoved) {
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
    Update(*p.graphs, "links", 2);
  }
  WriteAll(path_ + "/graphs/gone.edits", "ENGRMGLG");
  WriteAll(path_ + "/graphs/links.0123456789abcdef.merging", "partial");
  Process p(path_);
  p.Load();
  EXPECT_EQ(p.dir->leftovers_removed(), 2u);
  EXPECT_THAT(ListDir(path_ + "/graphs"),
              ::testing::ElementsAre("links.edits", "links.graph"));
  // A delete takes the log with it, and a new put starts without one.
  ASSERT_TRUE(p.graphs->Delete("links").ok());
  EXPECT_THAT(ListDir(path_ + "/graphs"), ::testing::IsEmpty());
  ASSERT_TRUE(p.graphs->Put("links", graph_.view()).ok());
  Process again(path_);
  again.Load();
  EXPECT_EQ((*again.graphs->Get("links"))->num_edges(), graph_.targets.size());
}

TEST_F(DataDirGraphTest, AGraphOfAnOperatorsFileIsStoredWholeWhenUpdated) {
  const std::string file = path_ + "/operator.graph";
  {
    Process p(path_);
    p.Load();
    // Written by a store outside the data directory, then loaded as an
    // operator's file is: not journaled.
    auto outside = engram::collections::testing::MakeBudget();
    GraphStore::Options options;
    options.budget = outside;
    options.validate = [](const kernels::GraphView&) {
      return absl::OkStatus();
    };
    options.background_merge = false;
    auto store = *GraphStore::Create(options);
    ASSERT_TRUE(store->Put("links", graph_.view()).ok());
    ASSERT_TRUE(WriteGraphSnapshot(**store->Get("links"), file).ok());
    ASSERT_TRUE(LoadGraphSnapshot(file, "links", p.graphs.get()).ok());
    EXPECT_THAT(ListDir(path_ + "/graphs"), ::testing::IsEmpty());
    Update(*p.graphs, "links", 3);
  }
  Process p(path_);
  p.Load();
  ExpectSameGraph(FlattenGraph(**p.graphs->Get("links")), reference_->ToCsr());
}

// --- Shared mode ---

class DataDirSharedGraphTest : public DataDirGraphTest {
 protected:
  std::shared_ptr<Catalog> Client() { return catalog_->Connect(); }
  std::shared_ptr<MemoryCatalog> catalog_ = std::make_shared<MemoryCatalog>();
};

TEST_F(DataDirSharedGraphTest, UpdatesReachEveryReplicaWithoutAReload) {
  Process a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  ASSERT_TRUE(Eventually([&] { return b.graphs->Get("links").ok(); }));
  const uint64_t loaded_uid = (*b.graphs->Get("links"))->uid();
  Update(*a.graphs, "links", 10);
  const uint64_t version = (*a.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return b.graphs->GetAtLeast("links", version).ok(); }));
  const auto at_b = *b.graphs->Get("links");
  EXPECT_EQ(at_b->version(), version);
  ExpectSameGraph(FlattenGraph(*at_b), reference_->ToCsr());
  // Applied as updates to the graph it had: no load made a new one.
  EXPECT_EQ(at_b->uid(), loaded_uid);
  EXPECT_NE(at_b->overlay(), nullptr);
  // A key committed on A is known on B.
  GraphUpdateOptions resent;
  resent.idempotency_key = "k3";
  EXPECT_TRUE(b.graphs->Update("links", GraphEdit(), resent)->replayed);
}

TEST_F(DataDirSharedGraphTest, AReplicaBehindIsAbortedThenCatchesUp) {
  Process a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  b.Load();  // at the put, not following
  Update(*a.graphs, "links", 2);
  GraphEdit edit;
  edit.add_edges = {{0, 1, 0.5f}};
  auto stale = b.graphs->Update("links", edit, {});
  ASSERT_TRUE(absl::IsAborted(stale.status())) << stale.status();
  EXPECT_THAT(stale.status().message(), HasSubstr("another replica"));
  // Its update's file went with it: the put's file and A's two updates.
  EXPECT_EQ(ListDir(path_ + "/graphs").size(), 3u);
  ASSERT_TRUE(b.dir->Follow().ok());
  const uint64_t at_a = (*a.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return b.graphs->GetAtLeast("links", at_a).ok(); }));
  auto applied = b.graphs->Update("links", edit, {});
  ASSERT_TRUE(applied.ok()) << applied.status();
  reference_->Apply(edit);
  const uint64_t latest = applied->graph->version();
  ASSERT_TRUE(
      Eventually([&] { return a.graphs->GetAtLeast("links", latest).ok(); }));
  ExpectSameGraph(FlattenGraph(**a.graphs->Get("links")), reference_->ToCsr());
  ExpectSameGraph(FlattenGraph(**b.graphs->Get("links")), reference_->ToCsr());
}

TEST_F(DataDirSharedGraphTest, UpdatesFromBothReplicasConverge) {
  Process a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  for (int round = 0; round < 6; ++round) {
    Process& writer = round % 2 == 0 ? a : b;
    Process& reader = round % 2 == 0 ? b : a;
    ASSERT_TRUE(Eventually([&] {
      auto w = writer.graphs->Get("links");
      auto r = reader.graphs->Get("links");
      return w.ok() && r.ok() && (*w)->version() == (*r)->version();
    }));
    Update(*writer.graphs, "links", 3);
  }
  const uint64_t last = (*b.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return a.graphs->GetAtLeast("links", last).ok(); }));
  ExpectSameGraph(FlattenGraph(**a.graphs->Get("links")), reference_->ToCsr());
  ExpectSameGraph(FlattenGraph(**b.graphs->Get("links")), reference_->ToCsr());
}

TEST_F(DataDirSharedGraphTest, AMergeIsSharedAndKeepsTheVersion) {
  Process a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  Update(*a.graphs, "links", 6);
  const uint64_t version = (*a.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return b.graphs->GetAtLeast("links", version).ok(); }));
  const int64_t before = catalog_->revision();
  ASSERT_TRUE(*a.graphs->Merge("links"));
  EXPECT_GT(catalog_->revision(), before);  // the entry names the new file
  EXPECT_EQ((*a.graphs->Get("links"))->version(), version);
  // B already has that content: it keeps its graph, and once it has seen
  // the merge's entry its updates go on.
  const uint64_t b_uid = (*b.graphs->Get("links"))->uid();
  GraphEdit edit;
  edit.add_edges = {{1, 2, 0.5f}};
  uint64_t latest = 0;
  ASSERT_TRUE(Eventually([&] {
    auto applied = b.graphs->Update("links", edit, {});
    EXPECT_TRUE(applied.ok() || absl::IsAborted(applied.status()))
        << applied.status();
    if (!applied.ok()) return false;
    latest = applied->graph->version();
    return true;
  }));
  reference_->Apply(edit);
  EXPECT_EQ((*b.graphs->Get("links"))->uid(), b_uid);
  ASSERT_TRUE(
      Eventually([&] { return a.graphs->GetAtLeast("links", latest).ok(); }));
  ExpectSameGraph(FlattenGraph(**a.graphs->Get("links")), reference_->ToCsr());
  // A replica started now loads the merged file and the later updates.
  Process c(path_, Client());
  c.LoadAndFollow();
  auto at_c = c.graphs->Get("links");
  ASSERT_TRUE(at_c.ok()) << at_c.status();
  EXPECT_EQ((*at_c)->version(), latest);
  EXPECT_EQ((*at_c)->base_version(), version);
  ExpectSameGraph(FlattenGraph(**at_c), reference_->ToCsr());
  GraphUpdateOptions resent;
  resent.idempotency_key = "k0";
  EXPECT_TRUE(c.graphs->Update("links", GraphEdit(), resent)->replayed);
}

// Followers merge in their own memory only: the entry stays the writer's,
// so its next update is not refused for a merge it did not make.
TEST_F(DataDirSharedGraphTest, OnlyTheLastWriterSharesItsMerge) {
  Process a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  Update(*a.graphs, "links", 4);
  const uint64_t version = (*a.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return b.graphs->GetAtLeast("links", version).ok(); }));
  const int64_t before = catalog_->revision();
  ASSERT_TRUE(*b.graphs->Merge("links"));
  EXPECT_EQ((*b.graphs->Get("links"))->overlay(), nullptr);
  EXPECT_EQ(catalog_->revision(), before);
  // Nor did it write a graph file: the put's and the four updates'.
  EXPECT_EQ(ListDir(path_ + "/graphs").size(), 5u);
  Update(*a.graphs, "links", 1);
  const uint64_t latest = (*a.graphs->Get("links"))->version();
  ASSERT_TRUE(
      Eventually([&] { return b.graphs->GetAtLeast("links", latest).ok(); }));
  ExpectSameGraph(FlattenGraph(**b.graphs->Get("links")), reference_->ToCsr());
}

TEST_F(DataDirSharedGraphTest, ADeleteRemovesTheUpdatesFiles) {
  Process a(path_, Client());
  a.LoadAndFollow();
  ASSERT_TRUE(a.graphs->Put("links", graph_.view()).ok());
  Update(*a.graphs, "links", 3);
  EXPECT_EQ(ListDir(path_ + "/graphs").size(), 4u);  // the graph, 3 updates
  ASSERT_TRUE(a.graphs->Delete("links").ok());
  EXPECT_THAT(ListDir(path_ + "/graphs"), ::testing::IsEmpty());
}

}  // namespace
}  // namespace engram::collections
