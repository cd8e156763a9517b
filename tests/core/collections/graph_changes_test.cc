#include "core/collections/graph_changes.h"

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/graph_overlay.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/graph_edits.h"
#include "tests/testing/random_data.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Node u's list in `base` changed by `changes`, as (target, weight) pairs.
std::vector<std::pair<uint32_t, float>> ListOf(const kernels::GraphView& base,
                                               const GraphChanges& changes,
                                               uint32_t u) {
  const kernels::NodeEdges e = kernels::EdgesOf(base, changes.overlay(), u);
  std::vector<std::pair<uint32_t, float>> list;
  for (uint32_t i = e.begin; i < e.end; ++i) {
    list.push_back({e.targets[i], e.weights[i]});
  }
  return list;
}

// 0 -> 1 (0.5), 0 -> 2 (0.25), 0 -> 1 (0.75), 1 -> 2 (1), 2 -> 0 (0.125).
struct Small {
  std::vector<uint32_t> offsets = {0, 3, 4, 5};
  std::vector<uint32_t> targets = {1, 2, 1, 2, 0};
  std::vector<float> weights = {0.5f, 0.25f, 0.75f, 1.0f, 0.125f};
  kernels::GraphView view() const {
    return kernels::GraphView{3, offsets, targets, weights};
  }
};

class GraphChangesTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::shared_ptr<const GraphChanges>> Apply(
      const GraphChanges* current, const GraphEdit& edit,
      GraphEditCounts* counts) {
    return GraphChanges::Apply(small_.view(), current, edit, *budget_,
                               "graph \"g\"", counts);
  }

  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  Small small_;
};

TEST_F(GraphChangesTest, AppliesNodesThenRemovesThenWeightsThenAdds) {
  GraphEdit edit;
  edit.add_nodes = 2;  // nodes 3 and 4
  // Removes every 0 -> 1, though the same pair is re-weighted and added.
  edit.remove_edges = {{0, 1}};
  // 0 -> 1 is gone by now: not found. 0 -> 2 gets the later weight.
  edit.set_weights = {{0, 1, 0.9f}, {0, 2, 0.3f}, {0, 2, 0.35f}};
  // Appended after the source's edges, in request order; ids may name the
  // nodes this edit adds.
  edit.add_edges = {{4, 0, 1.0f}, {0, 1, 0.6f}, {0, 4, 0.7f}};
  GraphEditCounts counts;
  auto changes = Apply(nullptr, edit, &counts);
  ASSERT_TRUE(changes.ok()) << changes.status();
  const GraphChanges& c = **changes;
  EXPECT_EQ(c.num_nodes(), 5u);
  EXPECT_EQ(c.num_edges(), 5u - 2 + 3);
  using P = std::pair<uint32_t, float>;
  EXPECT_THAT(ListOf(small_.view(), c, 0),
              ElementsAre(P{2, 0.35f}, P{1, 0.6f}, P{4, 0.7f}));
  EXPECT_THAT(ListOf(small_.view(), c, 1), ElementsAre(P{2, 1.0f}));
  EXPECT_THAT(ListOf(small_.view(), c, 3), ElementsAre());
  EXPECT_THAT(ListOf(small_.view(), c, 4), ElementsAre(P{0, 1.0f}));
  EXPECT_EQ(counts.edges_removed, 2u);
  EXPECT_EQ(counts.edges_reweighted, 1u);
  EXPECT_EQ(counts.edges_added, 3u);
  EXPECT_EQ(counts.not_found, 1u);
  EXPECT_THAT(counts.not_found_edges, ElementsAre(GraphEdgeRef{0, 1}));
  EXPECT_EQ(c.pending_changes(), 6u);
  // Nodes 0 and 4 have lists of their own; 1 and 2 keep the base's.
  EXPECT_EQ(c.replaced_nodes(), 2u);
  EXPECT_EQ(c.replaced_edges(), 4u);
}

TEST_F(GraphChangesTest, NotFoundPairsAreListedInRequestOrderUpTo1024) {
  GraphEdit edit;
  for (uint32_t i = 0; i < 1500; ++i) {
    edit.remove_edges.push_back({1, 1});       // 1 -> 1: never held
    edit.set_weights.push_back({2, 2, 0.5f});  // 2 -> 2: never held
  }
  edit.remove_edges[3] = {2, 0};  // held: not listed
  GraphEditCounts counts;
  ASSERT_TRUE(Apply(nullptr, edit, &counts).ok());
  EXPECT_EQ(counts.not_found, 2999u);
  ASSERT_EQ(counts.not_found_edges.size(), kMaxListedNotFound);
  EXPECT_EQ(counts.not_found_edges[0], (GraphEdgeRef{1, 1}));
  EXPECT_EQ(counts.not_found_edges[1023], (GraphEdgeRef{1, 1}));
  EXPECT_EQ(counts.edges_removed, 1u);
}

TEST_F(GraphChangesTest, AnEditCopiesOnlyThePagesItTouches) {
  // 4096 nodes: pages of 64 nodes.
  const auto g = engram::testing::RandomGraph(4096, 3, 5);
  GraphEdit first;
  first.add_edges = {{10, 1, 1.0f}, {4000, 2, 1.0f}};
  GraphEditCounts counts;
  auto one =
      GraphChanges::Apply(g.view(), nullptr, first, *budget_, "g", &counts);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)->overlay().page_shift, 6u);
  GraphEdit second;
  second.add_edges = {{20, 3, 1.0f}};
  auto two =
      GraphChanges::Apply(g.view(), one->get(), second, *budget_, "g", &counts);
  ASSERT_TRUE(two.ok());
  const auto& a = (*one)->overlay().pages;
  const auto& b = (*two)->overlay().pages;
  ASSERT_EQ(a.size(), 64u);
  EXPECT_NE(a[0], b[0]);                  // rewritten: node 20 is on page 0
  EXPECT_EQ(a[4000 >> 6], b[4000 >> 6]);  // shared
  EXPECT_EQ(b[1], nullptr);               // never touched
  // The first version still reads as it did.
  EXPECT_EQ(kernels::EdgesOf(g.view(), (*one)->overlay(), 20).end -
                kernels::EdgesOf(g.view(), (*one)->overlay(), 20).begin,
            g.view().out_degree(20));
  EXPECT_EQ(ListOf(g.view(), **two, 10).back(),
            (std::pair<uint32_t, float>{1, 1.0f}));
}

// Nodes added past the last page of the page table, with edges of their
// own, by an edit to a graph that already has changes.
TEST_F(GraphChangesTest, NodesAddedOnANewPageGetTheirEdges) {
  GraphEdit first;
  first.add_edges = {{0, 1, 1.0f}};
  GraphEditCounts counts;
  auto one = Apply(nullptr, first, &counts);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ((*one)->overlay().pages.size(), 1u);  // 64 nodes a page
  GraphEdit second;
  second.add_nodes = 200;
  second.add_edges = {{150, 2, 0.5f}, {202, 150, 0.25f}};
  second.remove_edges = {{201, 0}};
  auto two = Apply(one->get(), second, &counts);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->overlay().pages.size(), 4u);
  using P = std::pair<uint32_t, float>;
  EXPECT_THAT(ListOf(small_.view(), **two, 150), ElementsAre(P{2, 0.5f}));
  EXPECT_THAT(ListOf(small_.view(), **two, 202), ElementsAre(P{150, 0.25f}));
  EXPECT_THAT(ListOf(small_.view(), **two, 201), ElementsAre());
  EXPECT_EQ(counts.not_found, 1u);
}

TEST_F(GraphChangesTest, PagesAreReservedFromTheBudget) {
  auto tight = MakeBudget(64);
  GraphEdit edit;
  edit.add_edges = {{0, 1, 1.0f}};
  GraphEditCounts counts;
  auto changes = GraphChanges::Apply(small_.view(), nullptr, edit, *tight,
                                     "graph \"g\"", &counts);
  EXPECT_EQ(changes.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(changes.status().message(), HasSubstr("graph \"g\""));
  EXPECT_EQ(tight->reserved_bytes(), 0u);
  {
    auto fits = Apply(nullptr, edit, &counts);
    ASSERT_TRUE(fits.ok());
    EXPECT_EQ(budget_->reserved_bytes(), (*fits)->bytes());
  }
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST(ValidateGraphEditTest, NamesTheFieldAndTheIndex) {
  GraphEdit edit;
  edit.add_nodes = 1;
  edit.add_edges = {{0, 3, 1.0f}, {0, 4, 1.0f}};
  auto status = ValidateGraphEdit(edit, 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("add_edges[1].target is 4"));

  edit = GraphEdit();
  edit.remove_edges = {{0, 1}, {7, 1}};
  EXPECT_THAT(ValidateGraphEdit(edit, 3).message(),
              HasSubstr("remove_edges[1].source is 7"));

  for (const float bad : {-1.0f, std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()}) {
    edit = GraphEdit();
    edit.set_weights = {{0, 1, 0.5f}, {1, 2, bad}};
    status = ValidateGraphEdit(edit, 3);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("set_weights[1].weight"));
  }

  edit = GraphEdit();
  edit.add_edges.assign(kMaxGraphEditEntries + 1, {0, 0, 1.0f});
  EXPECT_THAT(ValidateGraphEdit(edit, 3).message(),
              HasSubstr("add_edges has 1048577 entries, at most 1048576"));

  edit = GraphEdit();
  edit.add_nodes = 0xffffffffu;
  EXPECT_EQ(ValidateGraphEdit(edit, 3).code(),
            absl::StatusCode::kResourceExhausted);
  edit.add_nodes = 2;
  EXPECT_TRUE(ValidateGraphEdit(edit, 3).ok());
}

// Random edits of every kind, one after another, each applied to the
// version before: every node's list is the reference's.
TEST_F(GraphChangesTest, RandomEditsGiveTheReferenceLists) {
  std::mt19937_64 rng(31);
  const auto g = engram::testing::RandomGraph(700, 4, 30);
  engram::testing::EdgeListGraph reference(g.view());
  std::shared_ptr<const GraphChanges> changes;
  for (int step = 0; step < 60; ++step) {
    const auto kind = static_cast<engram::testing::GraphEditKind>(step % 5);
    const GraphEdit edit =
        engram::testing::RandomGraphEdit(reference, kind, 1 + step % 7, rng);
    GraphEditCounts counts;
    auto next = GraphChanges::Apply(g.view(), changes.get(), edit, *budget_,
                                    "g", &counts);
    ASSERT_TRUE(next.ok()) << next.status();
    changes = *std::move(next);
    const GraphEditCounts expected = reference.Apply(edit);
    SCOPED_TRACE(step);
    EXPECT_EQ(counts.edges_removed, expected.edges_removed);
    EXPECT_EQ(counts.edges_reweighted, expected.edges_reweighted);
    EXPECT_EQ(counts.edges_added, expected.edges_added);
    EXPECT_EQ(counts.not_found, expected.not_found);
    EXPECT_EQ(counts.not_found_edges, expected.not_found_edges);
    ASSERT_EQ(changes->num_nodes(), reference.num_nodes());
    EXPECT_EQ(changes->num_edges(), reference.num_edges());
    for (uint32_t u = 0; u < reference.num_nodes(); ++u) {
      ASSERT_EQ(ListOf(g.view(), *changes, u), reference.edges(u))
          << "node " << u;
    }
  }
}

}  // namespace
}  // namespace engram::collections
