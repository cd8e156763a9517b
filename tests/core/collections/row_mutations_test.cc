// Rows changed by id (UpsertRows, DeleteRows), their tombstones, compaction,
// labels and filters, checked against a model of the rows that should
// exist: in one store, through the data directory across restarts, and on
// a second replica following the shared catalog.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "core/collections/collection_store.h"
#include "core/collections/data_dir.h"
#include "core/collections/row_filter.h"
#include "core/collections/row_index.h"
#include "core/collections/row_labels.h"
#include "core/collections/search_batcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "tests/core/collections/data_dir_stores.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/memory_catalog.h"
#include "tests/testing/random_data.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::TestDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint32_t kDim = 8;
using Process = ::engram::collections::testing::DataDirStores;

struct ModelRow {
  std::vector<float> vector;
  RowLabels labels;
};
// What a collection should hold: its live rows by id.
using Model = std::map<uint64_t, ModelRow>;

RowLabels RandomLabels(std::mt19937_64& rng) {
  RowLabels labels;
  static const char* kKinds[] = {"episode", "concept", "fact"};
  if (rng() % 4 != 0) {
    labels.tags.push_back({"kind", TagValue::Text(kKinds[rng() % 3])});
  }
  if (rng() % 3 != 0) {
    labels.tags.push_back(
        {"user", TagValue::Integer(static_cast<int64_t>(rng() % 10))});
  }
  if (rng() % 5 == 0) labels.tags.push_back({"pinned", TagValue::Text("")});
  if (rng() % 4 != 0) {
    labels.attributes["t"] = static_cast<double>(rng() % 1000) / 10.0;
  }
  return labels;
}

std::vector<float> RandomRow(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> row(kDim);
  for (float& v : row) v = value(rng);
  return row;
}

// The live rows of `c` by id, with their vectors and labels.
Model Contents(const Collection& c) {
  Model out;
  for (const auto& segment : c.segments()) {
    for (uint64_t i = 0; i < segment->rows(); ++i) {
      if (!c.IsLive(segment->first_row() + i)) continue;
      ModelRow row;
      const float* v = segment->vectors().row(i);
      row.vector.assign(v, v + kDim);
      if (segment->labels() != nullptr) {
        row.labels = segment->labels()->LabelsOf(i);
      }
      const uint64_t id = segment->IdOf(i);
      EXPECT_EQ(out.count(id), 0u) << "id " << id << " is live twice";
      out[id] = std::move(row);
    }
  }
  return out;
}

void ExpectMatches(const Collection& c, const Model& model) {
  EXPECT_EQ(c.live_rows(), model.size());
  const Model contents = Contents(c);
  ASSERT_EQ(contents.size(), model.size());
  for (const auto& [id, row] : model) {
    auto it = contents.find(id);
    ASSERT_NE(it, contents.end()) << "id " << id << " is missing";
    EXPECT_EQ(it->second.vector, row.vector) << "id " << id;
    EXPECT_EQ(it->second.labels, row.labels) << "id " << id;
    EXPECT_EQ(c.RowsOf(id).size(), 1u) << "id " << id;
  }
}

// A random predicate over the labels RandomLabels makes.
Predicate RandomPredicate(std::mt19937_64& rng, int depth) {
  Predicate p;
  const int pick =
      depth >= 3 ? static_cast<int>(rng() % 2) : static_cast<int>(rng() % 5);
  switch (pick) {
    case 0:
      p.kind = Predicate::Kind::kTag;
      if (rng() % 2 == 0) {
        p.key = "kind";
        p.values.push_back(TagValue::Text(rng() % 2 ? "episode" : "fact"));
      } else if (rng() % 2 == 0) {
        p.key = "user";
        for (int i = 0; i < 3; ++i) {
          p.values.push_back(
              TagValue::Integer(static_cast<int64_t>(rng() % 10)));
        }
      } else {
        p.key = rng() % 2 ? "pinned" : "kind";  // any value
      }
      break;
    case 1:
      p.kind = Predicate::Kind::kRange;
      p.name = "t";
      if (rng() % 3 != 0) p.min = static_cast<double>(rng() % 500) / 10.0;
      if (!p.min.has_value() || rng() % 2 == 0) {
        p.max = p.min.value_or(0) + static_cast<double>(rng() % 500) / 10.0;
      }
      p.min_exclusive = rng() % 2 == 0;
      p.max_exclusive = rng() % 2 == 0;
      break;
    case 2:
    case 3: {
      p.kind = pick == 2 ? Predicate::Kind::kAll : Predicate::Kind::kAny;
      const int n = static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        p.children.push_back(RandomPredicate(rng, depth + 1));
      }
      break;
    }
    default:
      p.kind = Predicate::Kind::kNot;
      p.children.push_back(RandomPredicate(rng, depth + 1));
  }
  return p;
}

bool Holds(const Predicate& p, const RowLabels& labels) {
  switch (p.kind) {
    case Predicate::Kind::kTag:
      for (const Tag& tag : labels.tags) {
        if (tag.key != p.key) continue;
        if (p.values.empty()) return true;
        for (const TagValue& v : p.values) {
          if (tag.value == v) return true;
        }
      }
      return false;
    case Predicate::Kind::kRange: {
      auto it = labels.attributes.find(p.name);
      if (it == labels.attributes.end()) return false;
      const double v = it->second;
      if (p.min && (p.min_exclusive ? v <= *p.min : v < *p.min)) return false;
      if (p.max && (p.max_exclusive ? v >= *p.max : v > *p.max)) return false;
      return true;
    }
    case Predicate::Kind::kAll:
      for (const Predicate& c : p.children) {
        if (!Holds(c, labels)) return false;
      }
      return true;
    case Predicate::Kind::kAny:
      for (const Predicate& c : p.children) {
        if (Holds(c, labels)) return true;
      }
      return false;
    case Predicate::Kind::kNot:
      return !Holds(p.children[0], labels);
  }
  return false;
}

// The ids `filter` selects, by brute force over the model and through
// SelectRows over the collection.
std::set<uint64_t> Expected(const Model& model, const RowFilter& filter) {
  std::set<uint64_t> out;
  const std::set<uint64_t> allow(filter.allow_ids.begin(),
                                 filter.allow_ids.end());
  const std::set<uint64_t> deny(filter.deny_ids.begin(), filter.deny_ids.end());
  for (const auto& [id, row] : model) {
    if (!allow.empty() && allow.count(id) == 0) continue;
    if (deny.count(id) > 0) continue;
    if (filter.where && !Holds(*filter.where, row.labels)) continue;
    out.insert(id);
  }
  return out;
}

std::set<uint64_t> Selected(const Collection& c, const RowFilter& filter) {
  std::set<uint64_t> out;
  const std::shared_ptr<const RowSelection> s = SelectRows(c, &filter);
  if (s == nullptr) {
    for (uint64_t r = 0; r < c.rows(); ++r) out.insert(c.IdOf(r));
    return out;
  }
  EXPECT_EQ(s->rows, c.rows());
  uint64_t passed = 0;
  for (uint64_t r = 0; r < c.rows(); ++r) {
    if (s->mask().test(r)) {
      out.insert(c.IdOf(r));
      ++passed;
    }
  }
  EXPECT_EQ(s->passed, passed);
  return out;
}

void ExpectFiltersMatch(const Collection& c, const Model& model,
                        std::mt19937_64& rng, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    RowFilter filter;
    if (rng() % 3 == 0) filter.where = RandomPredicate(rng, 1);
    if (rng() % 4 == 0) {
      for (int j = 0; j < 20; ++j) filter.allow_ids.push_back(rng() % 300);
    }
    if (rng() % 4 == 0) {
      for (int j = 0; j < 20; ++j) filter.deny_ids.push_back(rng() % 300);
    }
    if (!filter.where && rng() % 2 == 0) filter.where = RandomPredicate(rng, 1);
    ASSERT_TRUE(ValidateRowFilter(filter).ok());
    EXPECT_EQ(Selected(c, filter), Expected(model, filter)) << "round " << i;
  }
}

// Applies random upserts and deletes to `store` and `model` alike.
class Mutator {
 public:
  Mutator(CollectionStore* store, Model* model, uint64_t seed)
      : store_(store), model_(model), rng_(seed) {}

  void Upsert(int rows) {
    std::vector<float> values;
    std::vector<uint64_t> ids;
    std::vector<RowLabels> labels;
    std::set<uint64_t> used;
    while (static_cast<int>(ids.size()) < rows) {
      const uint64_t id = rng_() % 300;
      if (!used.insert(id).second) continue;
      ids.push_back(id);
      const std::vector<float> row = RandomRow(rng_);
      values.insert(values.end(), row.begin(), row.end());
      labels.push_back(RandomLabels(rng_));
    }
    UploadOptions o;
    o.name = "docs";
    o.rows = ids.size();
    o.with_ids = true;
    o.replace_ids = true;
    auto upload = store_->BeginUpload(o);
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE(
        (*upload)
            ->Append(kernels::MatrixView{values.data(), ids.size(), kDim}, ids,
                     labels)
            .ok());
    uint64_t held = 0;
    for (uint64_t id : ids) held += model_->count(id);
    auto committed = (*upload)->Commit();
    ASSERT_TRUE(committed.ok()) << committed.status();
    EXPECT_EQ((*upload)->replaced(), held);
    for (size_t i = 0; i < ids.size(); ++i) {
      (*model_)[ids[i]] =
          ModelRow{std::vector<float>(values.begin() + i * kDim,
                                      values.begin() + (i + 1) * kDim),
                   labels[i]};
    }
  }

  void Delete(int count) {
    std::vector<uint64_t> ids;
    for (int i = 0; i < count; ++i) ids.push_back(rng_() % 300);
    std::set<uint64_t> distinct(ids.begin(), ids.end());
    uint64_t held = 0;
    std::vector<uint64_t> missing;
    std::set<uint64_t> seen;
    for (uint64_t id : ids) {
      if (!seen.insert(id).second) continue;
      if (model_->count(id) > 0) {
        ++held;
      } else {
        missing.push_back(id);
      }
    }
    const uint64_t before = (*store_->Get("docs"))->version();
    auto result = store_->DeleteRows("docs", ids, "", 0);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->deleted, held);
    EXPECT_EQ(result->not_found, missing);
    // A background compaction may commit between `before` and the delete.
    if (held > 0) {
      EXPECT_GT(result->collection->version(), before);
    } else {
      EXPECT_GE(result->collection->version(), before);
    }
    for (uint64_t id : distinct) model_->erase(id);
  }

  void Random(int ops) {
    for (int i = 0; i < ops; ++i) {
      if (rng_() % 3 == 0) {
        Delete(1 + static_cast<int>(rng_() % 12));
      } else {
        Upsert(1 + static_cast<int>(rng_() % 10));
      }
    }
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  CollectionStore* const store_;
  Model* const model_;
  std::mt19937_64 rng_;
};

std::unique_ptr<CollectionStore> StoreWithoutCompaction() {
  CollectionStore::Options options;
  options.budget = MakeBudget();
  options.compact_in_background = false;
  return *CollectionStore::Create(options);
}

TEST(RowMutationsTest, UpsertReplacesHeldIdsAndAppendsNewOnes) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(store->CreateCollection({"docs", kDim, {}}).ok());
  Model model;
  Mutator m(store.get(), &model, 1);
  m.Upsert(5);
  m.Upsert(5);
  auto c = *store->Get("docs");
  EXPECT_EQ(c->version(), 3u);
  ExpectMatches(*c, model);
  EXPECT_EQ(c->rows(), 10u);
  EXPECT_EQ(c->dead_rows(), 10u - model.size());
}

TEST(RowMutationsTest, RandomUpsertsAndDeletesLeaveExactlyTheModelsRows) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(store->CreateCollection({"docs", kDim, {}}).ok());
  Model model;
  Mutator m(store.get(), &model, 7);
  for (int round = 0; round < 6; ++round) {
    m.Random(25);
    auto c = *store->Get("docs");
    ExpectMatches(*c, model);
    ExpectFiltersMatch(*c, model, m.rng(), 20);
  }
  // Compaction keeps the rows, their ids and labels, and drops the dead.
  auto before = *store->Get("docs");
  ASSERT_GT(before->dead_rows(), 0u);
  auto compacted = store->Compact("docs");
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  EXPECT_EQ((*compacted)->version(), before->version() + 1);
  EXPECT_TRUE((*compacted)->rewritten());
  EXPECT_EQ((*compacted)->dead_rows(), 0u);
  EXPECT_EQ((*compacted)->rows(), model.size());
  ExpectMatches(**compacted, model);
  ExpectFiltersMatch(**compacted, model, m.rng(), 20);
  // The version a search held is untouched.
  EXPECT_GT(before->dead_rows(), 0u);
  ExpectMatches(*before, model);
  // And mutations go on from the compacted version.
  m.Random(20);
  ExpectMatches(**store->Get("docs"), model);
}

TEST(RowMutationsTest, RowsChangeOnlyByIdInCollectionsWhoseRowsAllHaveIds) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(testing::Upload(*store, "plain", kDim,
                              engram::testing::RandomMatrix(3, kDim, 1))
                  .ok());
  auto deleted = store->DeleteRows("plain", {1}, "", 0);
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(deleted.status().message(), HasSubstr("without ids"));
  UploadOptions o;
  o.name = "plain";
  o.rows = 1;
  o.with_ids = true;
  o.replace_ids = true;
  EXPECT_EQ(store->BeginUpload(o).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RowMutationsTest, AnUpsertRefusesAnIdTwiceInOneCall) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(store->CreateCollection({"docs", kDim, {}}).ok());
  UploadOptions o;
  o.name = "docs";
  o.rows = 2;
  o.with_ids = true;
  o.replace_ids = true;
  auto upload = *store->BeginUpload(o);
  const std::vector<float> values = engram::testing::RandomMatrix(2, kDim, 3);
  const std::vector<uint64_t> ids = {4, 4};
  absl::Status s =
      upload->Append(kernels::MatrixView{values.data(), 2, kDim}, ids);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("ids[1] repeats id 4"));
}

TEST(RowMutationsTest, ExpectedVersionAndIdempotencyKeysGuardDeletes) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(testing::Upload(*store, "docs", kDim,
                              engram::testing::RandomMatrix(3, kDim, 1),
                              {10, 11, 12})
                  .ok());
  EXPECT_EQ(store->DeleteRows("docs", {10}, "", 7).status().code(),
            absl::StatusCode::kAborted);
  auto first = store->DeleteRows("docs", {10, 99, 99}, "k1", 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->deleted, 1u);
  EXPECT_THAT(first->not_found, ElementsAre(99u));
  EXPECT_EQ(first->collection->version(), 2u);
  auto again = store->DeleteRows("docs", {11}, "k1", 0);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->deleted, 0u);
  EXPECT_EQ((*store->Get("docs"))->live_rows(), 2u);
  // Nothing held: nothing committed.
  auto none = store->DeleteRows("docs", {500}, "", 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->collection->version(), 2u);
  EXPECT_EQ(store->DeleteRows("docs", {}, "", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->DeleteRows("nope", {1}, "", 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RowMutationsTest, DuplicateUploadedIdsAreAllReplacedAndDeleted) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(testing::Upload(*store, "docs", kDim,
                              engram::testing::RandomMatrix(3, kDim, 1),
                              {5, 5, 6})
                  .ok());
  EXPECT_EQ((*store->Get("docs"))->RowsOf(5).size(), 2u);
  auto result = store->DeleteRows("docs", {5}, "", 0);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->deleted, 2u);
  EXPECT_THAT(result->collection->RowsOf(5), IsEmpty());
  EXPECT_THAT(result->collection->RowsOf(6), ElementsAre(2u));
}

TEST(RowMutationsTest, TheBackgroundCompactsPastTheDeadShare) {
  CollectionStore::Options options;
  options.budget = MakeBudget();
  options.compact_dead_share = 0.25;
  options.compact_min_dead_rows = 1;
  auto store = *CollectionStore::Create(options);
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 40; ++i) ids.push_back(i);
  ASSERT_TRUE(testing::Upload(*store, "docs", kDim,
                              engram::testing::RandomMatrix(40, kDim, 1), ids)
                  .ok());
  ASSERT_TRUE(store->DeleteRows("docs", {0, 1, 2, 3, 4}, "", 0).ok());
  store->WaitForCompactions();
  EXPECT_EQ(store->compactions(), 0u);  // 5 of 40: under the share
  ASSERT_TRUE(store->DeleteRows("docs", {5, 6, 7, 8, 9}, "", 0).ok());
  store->WaitForCompactions();
  EXPECT_EQ(store->compactions(), 1u);
  EXPECT_TRUE(store->last_compaction_error().ok());
  auto c = *store->Get("docs");
  EXPECT_EQ(c->dead_rows(), 0u);
  EXPECT_EQ(c->rows(), 30u);
  EXPECT_EQ(c->version(), 4u);
  EXPECT_EQ(c->IdOf(0), 10u);
}

TEST(RowMutationsTest, FiltersAreValidatedNamingTheField) {
  RowFilter filter;
  Predicate range;
  range.kind = Predicate::Kind::kRange;
  range.name = "t";
  Predicate all;
  all.kind = Predicate::Kind::kAll;
  all.children.push_back(range);
  filter.where = all;
  absl::Status s = ValidateRowFilter(filter);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("filter.where.all.predicates[0].range"));
  range.min = 5;
  range.max = 1;
  filter.where->children[0] = range;
  EXPECT_THAT(ValidateRowFilter(filter).message(), HasSubstr("greater than"));
  Predicate deep;
  deep.kind = Predicate::Kind::kTag;
  deep.key = "k";
  for (int i = 0; i < 9; ++i) {
    Predicate wrap;
    wrap.kind = Predicate::Kind::kNot;
    wrap.children.push_back(deep);
    deep = wrap;
  }
  filter.where = deep;
  EXPECT_THAT(ValidateRowFilter(filter).message(), HasSubstr("deeper"));
  Predicate tag;
  tag.kind = Predicate::Kind::kTag;
  tag.key = std::string(kMaxLabelNameBytes + 1, 'k');
  filter.where = tag;
  EXPECT_THAT(ValidateRowFilter(filter).message(),
              HasSubstr("filter.where.tag.key"));
}

TEST(RowMutationsTest, LabelsAreValidatedNamingTheRow) {
  auto store = StoreWithoutCompaction();
  ASSERT_TRUE(store->CreateCollection({"docs", kDim, {}}).ok());
  UploadOptions o;
  o.name = "docs";
  o.rows = 2;
  auto upload = *store->BeginUpload(o);
  std::vector<RowLabels> labels(2);
  labels[1].attributes["t"] = NAN;
  const std::vector<float> values = engram::testing::RandomMatrix(2, kDim, 3);
  absl::Status s =
      upload->Append(kernels::MatrixView{values.data(), 2, kDim}, {}, labels);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("labels[1].attributes"));
  labels[1] = RowLabels();
  for (int i = 0; i < 17; ++i) {
    labels[1].tags.push_back({"k", TagValue::Integer(i)});
  }
  s = upload->Append(kernels::MatrixView{values.data(), 2, kDim}, {}, labels);
  EXPECT_THAT(s.message(), HasSubstr("labels[1].tags has 17 tags"));
}

// The best kTop live rows of `c` for `queries`, by id, computed by the
// unmasked kernel over a copy of exactly those rows (in row order, so that
// ties break alike): what a masked search of `c` must answer, bit for bit.
constexpr uint32_t kTop = 5;
std::vector<std::vector<std::pair<uint64_t, float>>> ExpectedTop(
    const Collection& c, const std::vector<float>& queries,
    const RowSelection* rows) {
  std::vector<float> live;
  std::vector<uint64_t> ids;
  for (uint64_t r = 0; r < c.rows(); ++r) {
    if (rows != nullptr && !rows->mask().test(r)) continue;
    const Segment* segment = nullptr;
    for (const auto& s : c.segments()) {
      if (r >= s->first_row() && r < s->first_row() + s->rows()) {
        segment = s.get();
      }
    }
    const float* v = segment->vectors().row(r - segment->first_row());
    live.insert(live.end(), v, v + kDim);
    ids.push_back(c.IdOf(r));
  }
  std::vector<kernels::TopKList> lists;
  const size_t q = queries.size() / kDim;
  EXPECT_TRUE(kernels::cpu::CosineTopK(
                  kernels::MatrixView{queries.data(), q, kDim},
                  kernels::MatrixView{live.data(), ids.size(), kDim}, kTop,
                  -2.0f, 0, nullptr, &lists)
                  .ok());
  std::vector<std::vector<std::pair<uint64_t, float>>> out(q);
  for (size_t i = 0; i < q; ++i) {
    for (const auto& hit : lists[i]) {
      out[i].emplace_back(ids[hit.index], hit.score);
    }
  }
  return out;
}

TEST(RowMutationsTest, ConcurrentSearchesEachSeeExactlyOneVersion) {
  CollectionStore::Options options;
  options.budget = MakeBudget();
  options.compact_dead_share = 0.2;
  options.compact_min_dead_rows = 1;
  auto store = *CollectionStore::Create(options);
  ASSERT_TRUE(store->CreateCollection({"docs", kDim, {}}).ok());
  Model model;
  Mutator writer(store.get(), &model, 31);
  writer.Upsert(10);
  std::atomic<bool> stop{false};
  std::atomic<int> searches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      const BatchExecutor execute = MakeKernelExecutor(nullptr);
      while (!stop.load(std::memory_order_relaxed)) {
        const std::shared_ptr<const Collection> c = *store->Get("docs");
        std::vector<float> queries(2 * kDim);
        for (float& v : queries) v = static_cast<float>(rng() % 200) - 100.0f;
        RowFilter filter;
        if (t == 1) filter.where = RandomPredicate(rng, 2);
        std::shared_ptr<const RowSelection> rows = SelectRows(*c, &filter);
        BatchPass pass;
        pass.collection = c.get();
        pass.queries = kernels::MatrixView{queries.data(), 2, kDim};
        pass.top_k = kTop;
        if (rows != nullptr) pass.mask = rows->mask();
        BatchPassOutput out;
        ASSERT_TRUE(execute(pass, &out).ok());
        const auto expected = ExpectedTop(*c, queries, rows.get());
        ASSERT_EQ(out.top.size(), expected.size());
        for (size_t i = 0; i < expected.size(); ++i) {
          ASSERT_EQ(out.top[i].size(), expected[i].size());
          for (size_t j = 0; j < expected[i].size(); ++j) {
            EXPECT_EQ(c->IdOf(out.top[i][j].index), expected[i][j].first);
            EXPECT_EQ(out.top[i][j].score, expected[i][j].second);
          }
        }
        searches.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  writer.Random(400);
  // Let the readers overlap the last changes and a compaction.
  while (searches.load() < 30) absl::SleepFor(absl::Milliseconds(1));
  stop = true;
  for (std::thread& t : readers) t.join();
  store->WaitForCompactions();
  EXPECT_GT(store->compactions(), 0u);
  ExpectMatches(**store->Get("docs"), model);
}

TEST(RowIndexTest, TheDeltaFoldsIntoTheBaseAndKeepsEveryId) {
  auto store = StoreWithoutCompaction();
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 100; ++i) ids.push_back(1000 + i);
  ASSERT_TRUE(testing::Upload(*store, "docs", kDim,
                              engram::testing::RandomMatrix(100, kDim, 1), ids)
                  .ok());
  auto c = *store->Get("docs");
  auto index = RowIndex::Build(*c);
  RowIndex::Changes changes;
  for (uint64_t i = 0; i < 5000; ++i) changes[20000 + i] = {i};
  auto big = index->With(changes);
  EXPECT_EQ(big->delta_size(), 0u);  // folded
  EXPECT_THAT(big->Find(24999), ElementsAre(4999u));
  EXPECT_THAT(big->Find(1042), ElementsAre(42u));
  RowIndex::Changes one;
  one[1042] = {};
  auto small = big->With(one);
  EXPECT_EQ(small->delta_size(), 1u);
  EXPECT_THAT(small->Find(1042), IsEmpty());
  EXPECT_THAT(big->Find(1042), ElementsAre(42u));
}

class RowMutationsDataDirTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TestDir(); }
  std::string path_;
};

TEST_F(RowMutationsDataDirTest, ChangesCompactionAndLabelsSurviveRestarts) {
  Model model;
  uint64_t version = 0;
  {
    Process p(path_);
    p.Load();
    ASSERT_TRUE(p.collections->CreateCollection({"docs", kDim, {}}).ok());
    Mutator m(p.collections.get(), &model, 11);
    // Enough deletes to fold the listed dead rows into a file.
    m.Random(120);
    version = (*p.collections->Get("docs"))->version();
  }
  {
    Process p(path_);
    p.Load();
    auto c = *p.collections->Get("docs");
    EXPECT_EQ(c->version(), version);
    ExpectMatches(*c, model);
    std::mt19937_64 rng(3);
    ExpectFiltersMatch(*c, model, rng, 20);
    Mutator m(p.collections.get(), &model, 12);
    m.Random(30);
    auto compacted = p.collections->Compact("docs");
    ASSERT_TRUE(compacted.ok()) << compacted.status();
    version = (*compacted)->version();
    m.Random(10);
    version = (*p.collections->Get("docs"))->version();
  }
  Process p(path_);
  p.Load();
  auto c = *p.collections->Get("docs");
  EXPECT_EQ(c->version(), version);
  ExpectMatches(*c, model);
  std::mt19937_64 rng(4);
  ExpectFiltersMatch(*c, model, rng, 20);
  // The compaction's superseded files are gone.
  size_t segment_files = 0;
  for (const std::string& file : testing::ListDir(path_ + "/segments")) {
    segment_files += absl::EndsWith(file, ".seg");
  }
  EXPECT_EQ(segment_files, c->segments().size());
}

TEST_F(RowMutationsDataDirTest, ASecondReplicaServesTheSameRows) {
  auto catalog = std::make_shared<engram::testing::MemoryCatalog>();
  Process a(path_, catalog->Connect()), b(path_, catalog->Connect());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.collections->CreateCollection({"docs", kDim, {}}).ok());
  Model model;
  Mutator m(a.collections.get(), &model, 21);
  for (int round = 0; round < 3; ++round) {
    m.Random(40);
    const uint64_t version = (*a.collections->Get("docs"))->version();
    auto at_b = b.At("docs", version);
    ASSERT_NE(at_b, nullptr);
    EXPECT_EQ(at_b->version(), version);
    ExpectMatches(*at_b, model);
  }
  auto compacted = a.collections->Compact("docs");
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  auto at_b = b.At("docs", (*compacted)->version());
  ASSERT_NE(at_b, nullptr);
  EXPECT_EQ(at_b->dead_rows(), 0u);
  ExpectMatches(*at_b, model);
  // B writes next, from the compacted version.
  Mutator mb(b.collections.get(), &model, 22);
  mb.Random(10);
  const uint64_t version = (*b.collections->Get("docs"))->version();
  auto at_a = a.At("docs", version);
  ASSERT_NE(at_a, nullptr);
  ExpectMatches(*at_a, model);
}

}  // namespace
}  // namespace engram::collections
