// The data directory's shared mode: several replicas (each its own stores
// and DataDir) on one folder and one catalog, here an in-process catalog
// with etcd's semantics.
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/data_dir.h"
#include "core/collections/little_endian.h"
#include "core/collections/snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/data_dir_stores.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/memory_catalog.h"
#include "tests/testing/random_data.h"
#include "tests/testing/time_scale.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::IdsOf;
using ::engram::collections::testing::ListDir;
using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::RowsOf;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::Upload;
using ::engram::collections::testing::WriteAll;
using ::engram::testing::MemoryCatalog;
using ::engram::testing::Scaled;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kDim = 8;

// One replica: its own stores over the shared folder and catalog.
using Replica = ::engram::collections::testing::DataDirStores;

// Waits until `done` holds, polling; false after the (scaled) bound.
template <typename Done>
bool Eventually(Done done, absl::Duration bound = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + Scaled(bound);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

kernels::GraphView Chain(const std::vector<uint32_t>& offsets,
                         const std::vector<uint32_t>& targets,
                         const std::vector<float>& weights) {
  kernels::GraphView g;
  g.num_nodes = static_cast<uint32_t>(offsets.size() - 1);
  g.row_offsets = offsets;
  g.targets = targets;
  g.weights = weights;
  return g;
}

class DataDirSharedTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = TestDir(); }
  std::shared_ptr<Catalog> Client() { return catalog_->Connect(); }

  std::string path_;
  std::shared_ptr<MemoryCatalog> catalog_ = std::make_shared<MemoryCatalog>();
};

TEST_F(DataDirSharedTest, WhatOneReplicaCommitsEveryReplicaServes) {
  Replica a(path_, Client()), b(path_, Client()), c(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  c.LoadAndFollow();
  const std::vector<float> first = engram::testing::RandomMatrix(5, kDim, 1);
  const std::vector<float> second = engram::testing::RandomMatrix(3, kDim, 2);
  ASSERT_TRUE(
      Upload(*a.collections, "docs", kDim, first, {1, 2, 3, 4, 5}).ok());
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim, second, {}, false).ok());
  ASSERT_TRUE(a.collections->CreateCollection({"empty", 4, {{"m", "x"}}}).ok());

  const auto at_a = *a.collections->Get("docs");
  EXPECT_EQ(at_a->version(), 2u);
  for (Replica* r : {&b, &c}) {
    const auto docs = r->At("docs", 2);
    ASSERT_NE(docs, nullptr);
    EXPECT_EQ(docs->version(), 2u);
    EXPECT_EQ(RowsOf(*docs), RowsOf(*at_a));
    EXPECT_EQ(IdsOf(*docs), IdsOf(*at_a));
    const auto empty = r->At("empty", 1);
    ASSERT_NE(empty, nullptr);
    EXPECT_EQ(empty->dimension(), 4u);
    EXPECT_EQ(empty->metadata().at("m"), "x");
  }
  // Only the new segment was read at B: its first version is still there.
  EXPECT_THAT((*b.collections->Get("docs"))->segments(), SizeIs(2));
}

TEST_F(DataDirSharedTest, AReplicaBehindTheCatalogCannotCommit) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(2, kDim, 1))
                  .ok());
  b.Load();  // B has version 1 and does not follow
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(2, kDim, 2), {}, false)
                  .ok());
  const auto stale =
      Upload(*b.collections, "docs", kDim,
             engram::testing::RandomMatrix(2, kDim, 3), {}, false);
  ASSERT_TRUE(absl::IsAborted(stale.status())) << stale.status();
  EXPECT_THAT(stale.status().message(), HasSubstr("another replica"));
  // A create of a name another replica made first: ALREADY_EXISTS.
  ASSERT_TRUE(a.collections->CreateCollection({"made_at_a", kDim, {}}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      b.collections->CreateCollection({"made_at_a", kDim, {}}).status()));

  // Once B follows, it catches up and its append becomes version 3.
  ASSERT_TRUE(b.dir->Follow().ok());
  ASSERT_NE(b.At("docs", 2), nullptr);
  const auto appended =
      Upload(*b.collections, "docs", kDim,
             engram::testing::RandomMatrix(2, kDim, 3), {}, false);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ((*appended)->version(), 3u);
  const auto at_a = a.At("docs", 3);
  ASSERT_NE(at_a, nullptr);
  EXPECT_EQ(at_a->rows(), 6u);
  EXPECT_EQ(RowsOf(*at_a), RowsOf(**appended));
}

TEST_F(DataDirSharedTest, RacingAppendsOnTwoReplicasLoseNoRow) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.collections->CreateCollection({"docs", kDim, {}}).ok());
  ASSERT_NE(b.At("docs", 1), nullptr);
  constexpr int kAppends = 20;
  std::atomic<int> aborted{0};
  auto writer = [&](Replica* r, uint64_t first_id) {
    for (int i = 0; i < kAppends; ++i) {
      const std::vector<uint64_t> ids = {first_id + 2 * i,
                                         first_id + 2 * i + 1};
      while (true) {
        auto done = Upload(*r->collections, "docs", kDim,
                           engram::testing::RandomMatrix(2, kDim, first_id + i),
                           ids, false);
        if (done.ok()) break;
        ASSERT_TRUE(absl::IsAborted(done.status())) << done.status();
        ++aborted;
        // Retried once this replica has caught up with the newer version.
        const uint64_t seen = (*r->collections->Get("docs"))->version();
        r->collections->GetAtLeast("docs", seen + 1, absl::Milliseconds(50))
            .IgnoreError();
      }
    }
  };
  std::thread ta(writer, &a, 1000), tb(writer, &b, 2000);
  ta.join();
  tb.join();
  const uint64_t final_version = 1 + 2 * kAppends;
  for (Replica* r : {&a, &b}) {
    const auto docs = r->At("docs", final_version);
    ASSERT_NE(docs, nullptr);
    EXPECT_EQ(docs->rows(), 4u * kAppends);
    std::vector<uint64_t> ids = IdsOf(*docs);
    std::sort(ids.begin(), ids.end());
    std::vector<uint64_t> expected;
    for (uint64_t base : {1000, 2000}) {
      for (uint64_t i = 0; i < 2 * kAppends; ++i) expected.push_back(base + i);
    }
    EXPECT_EQ(ids, expected);
  }
  EXPECT_EQ(RowsOf(*a.At("docs", final_version)),
            RowsOf(*b.At("docs", final_version)));
}

TEST_F(DataDirSharedTest, ADeleteOnOneReplicaEvictsEverywhere) {
  Replica a(path_, Client()), b(path_, Client()), c(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  c.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(4, kDim, 1))
                  .ok());
  ASSERT_NE(c.At("docs", 1), nullptr);
  ASSERT_NE(b.At("docs", 1), nullptr);
  ASSERT_TRUE(c.collections->Delete("docs").ok());
  for (Replica* r : {&a, &b}) {
    EXPECT_TRUE(Eventually([&] {
      return absl::IsNotFound(r->collections->Get("docs").status());
    }));
  }
  EXPECT_THAT(ListDir(path_ + "/segments"), IsEmpty());
  // Re-created under the same name elsewhere: a new collection everywhere.
  ASSERT_TRUE(Upload(*b.collections, "docs", kDim,
                     engram::testing::RandomMatrix(1, kDim, 9))
                  .ok());
  EXPECT_EQ(a.At("docs", 1)->rows(), 1u);
}

TEST_F(DataDirSharedTest, GraphsAreSharedDeletedAndReplaced) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  auto first = a.graphs->Put("links", Chain({0, 1, 1}, {1}, {0.5f}));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(Eventually([&] { return b.graphs->Get("links").ok(); }));
  // The version is the catalog's revision of the put, on both replicas.
  const uint64_t v1 = (*first)->version();
  EXPECT_EQ((*b.graphs->Get("links"))->version(), v1);
  EXPECT_TRUE(b.graphs->GetAtLeast("links", v1).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      b.graphs->Put("links", Chain({0, 1, 1}, {1}, {0.5f})).status()));
  ASSERT_TRUE(b.graphs->Delete("links").ok());
  ASSERT_TRUE(Eventually(
      [&] { return absl::IsNotFound(a.graphs->Get("links").status()); }));
  auto second =
      b.graphs->Put("links", Chain({0, 1, 2, 2}, {1, 2}, {0.25f, 1.0f}));
  ASSERT_TRUE(second.ok());
  const uint64_t v2 = (*second)->version();
  EXPECT_GT(v2, v1);
  ASSERT_TRUE(
      Eventually([&] { return a.graphs->GetAtLeast("links", v2).ok(); }));
  auto replaced = a.graphs->Get("links");
  ASSERT_TRUE(replaced.ok());
  EXPECT_EQ((*replaced)->num_nodes(), 3u);
  EXPECT_EQ((*replaced)->version(), v2);
  EXPECT_THAT(ListDir(path_ + "/graphs"), SizeIs(1));
}

TEST_F(DataDirSharedTest, AnUnreachableCatalogRefusesWritesAndKeepsServing) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  const std::vector<float> rows = engram::testing::RandomMatrix(3, kDim, 1);
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim, rows).ok());
  ASSERT_NE(b.At("docs", 1), nullptr);

  catalog_->SetReachable(false);
  const auto refused = Upload(*a.collections, "docs", kDim, rows, {}, false);
  ASSERT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("catalog"));
  EXPECT_TRUE(absl::IsUnavailable(
      b.collections->CreateCollection({"new", kDim, {}}).status()));
  // Reads keep answering with what is loaded.
  EXPECT_EQ((*a.collections->Get("docs"))->version(), 1u);
  EXPECT_EQ((*b.collections->Get("docs"))->version(), 1u);
  EXPECT_TRUE(
      Eventually([&] { return !b.dir->catalog()->Health().connected; }));

  catalog_->SetReachable(true);
  const auto appended = Upload(*a.collections, "docs", kDim, rows, {}, false);
  ASSERT_TRUE(appended.ok()) << appended.status();
  ASSERT_TRUE(b.collections->CreateCollection({"new", kDim, {}}).ok());
  EXPECT_EQ(b.At("docs", 2)->rows(), 6u);
  EXPECT_NE(a.At("new", 1), nullptr);
  EXPECT_TRUE(b.dir->catalog()->Health().connected);
}

TEST_F(DataDirSharedTest, AWatchThatFellBehindACompactionResyncs) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "kept", kDim,
                     engram::testing::RandomMatrix(2, kDim, 1))
                  .ok());
  ASSERT_TRUE(Upload(*a.collections, "dropped", kDim,
                     engram::testing::RandomMatrix(2, kDim, 2))
                  .ok());
  b.Load();
  ASSERT_TRUE(b.collections->Get("dropped").ok());
  // While B does not follow: an append, a delete, a create; then the
  // history B would need is compacted away.
  ASSERT_TRUE(Upload(*a.collections, "kept", kDim,
                     engram::testing::RandomMatrix(2, kDim, 3), {}, false)
                  .ok());
  ASSERT_TRUE(a.collections->Delete("dropped").ok());
  ASSERT_TRUE(a.collections->CreateCollection({"added", kDim, {}}).ok());
  catalog_->Compact(catalog_->revision());
  ASSERT_TRUE(b.dir->Follow().ok());
  EXPECT_EQ(b.At("kept", 2)->rows(), 4u);
  EXPECT_NE(b.At("added", 1), nullptr);
  EXPECT_TRUE(Eventually([&] {
    return absl::IsNotFound(b.collections->Get("dropped").status());
  }));
}

TEST_F(DataDirSharedTest, ANewReplicaLoadsEverythingFromTheCatalog) {
  const std::vector<float> rows = engram::testing::RandomMatrix(4, kDim, 1);
  uint64_t graph_version = 0;
  {
    Replica a(path_, Client());
    a.LoadAndFollow();
    ASSERT_TRUE(Upload(*a.collections, "docs", kDim, rows).ok());
    ASSERT_TRUE(Upload(*a.collections, "docs", kDim, rows, {}, false).ok());
    auto put = a.graphs->Put("links", Chain({0, 1, 1}, {1}, {0.5f}));
    ASSERT_TRUE(put.ok());
    graph_version = (*put)->version();
  }
  Replica fresh(path_, Client());
  const std::vector<LoadOutcome> outcomes = fresh.Load();
  ASSERT_THAT(outcomes, SizeIs(2));
  for (const LoadOutcome& o : outcomes) EXPECT_TRUE(o.status.ok()) << o.status;
  const auto docs = *fresh.collections->Get("docs");
  EXPECT_EQ(docs->version(), 2u);
  EXPECT_EQ(docs->rows(), 8u);
  ASSERT_TRUE(fresh.graphs->Get("links").ok());
  EXPECT_EQ((*fresh.graphs->Get("links"))->version(), graph_version);
  // No manifest files: the catalog is the commit point.
  EXPECT_THAT(ListDir(path_ + "/collections"), IsEmpty());
}

TEST_F(DataDirSharedTest, AVersionThatDoesNotFitLeavesTheOldOneServedBehind) {
  Replica a(path_, Client());
  Replica small(path_, Client(), /*budget_bytes=*/64 << 10);
  a.LoadAndFollow();
  small.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(4, kDim, 1))
                  .ok());
  ASSERT_NE(small.At("docs", 1), nullptr);
  // 4096 rows x 8 floats: 128 KiB, over the small replica's budget.
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(4096, kDim, 2), {}, false)
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    auto info = small.collections->Describe("docs");
    return info.ok() && info->load_state == "behind";
  }));
  const CollectionInfo info = *small.collections->Describe("docs");
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.rows, 4u);
  EXPECT_THAT(info.error, HasSubstr("budget"));
  const auto waited =
      small.collections->GetAtLeast("docs", 2, absl::Milliseconds(20));
  EXPECT_TRUE(absl::IsUnavailable(waited.status())) << waited.status();
  EXPECT_THAT(waited.status().message(), HasSubstr("min_version is 2"));
}

TEST_F(DataDirSharedTest, KeyedUploadsAreRememberedAcrossReplicas) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  b.LoadAndFollow();
  ASSERT_TRUE(a.collections->CreateCollection({"docs", kDim, {}}).ok());
  UploadOptions o;
  o.name = "docs";
  o.rows = 1;
  o.idempotency_key = "k1";
  auto upload = *a.collections->BeginUpload(o);
  const std::vector<float> row = engram::testing::RandomMatrix(1, kDim, 1);
  ASSERT_TRUE(upload->Append(kernels::MatrixView{row.data(), 1, kDim}).ok());
  ASSERT_TRUE(upload->Commit().ok());
  // The resend lands on B: it finds the key once it has the version.
  ASSERT_NE(b.At("docs", 2), nullptr);
  EXPECT_NE(b.collections->FindCommitted("docs", "k1"), nullptr);
}

// Sets the modification time of every file in `dir` `age` into the past.
void Age(const std::string& dir, absl::Duration age) {
  for (const std::string& file : ListDir(dir)) {
    const std::string path = dir + "/" + file;
    const timespec then = absl::ToTimespec(absl::Now() - age);
    const timespec times[2] = {then, then};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
  }
}

TEST_F(DataDirSharedTest, OnlyOldFilesNoEntryNamesAreRemovedAtStartUp) {
  {
    Replica a(path_, Client());
    a.LoadAndFollow();
    ASSERT_TRUE(Upload(*a.collections, "kept", kDim,
                       engram::testing::RandomMatrix(2, kDim, 1))
                    .ok());
  }
  // Files of writes that never committed: one old, one as young as a write
  // another replica may be making now.
  WriteAll(path_ + "/segments/old.0000000000000001.seg", "x");
  Age(path_ + "/segments", absl::Hours(2));
  WriteAll(path_ + "/segments/young.0000000000000002.seg", "x");
  Replica b(path_, Client());
  b.Load();
  const std::vector<std::string> left = ListDir(path_ + "/segments");
  EXPECT_THAT(left, SizeIs(2));
  EXPECT_THAT(left, ::testing::Contains(HasSubstr("young")));
  EXPECT_THAT(left, ::testing::Contains(HasSubstr("kept")));
  EXPECT_EQ(b.dir->leftovers_removed(), 1u);
}

// Another replica starting while an upload streams its rows keeps the
// upload's file, which is young, and removes an old one a crash left.
TEST_F(DataDirSharedTest, AnUploadUnderWayKeepsItsFileWhenAReplicaStarts) {
  Replica a(path_, Client());
  WriteAll(path_ + "/segments/.docs.0000000000000003.seg.tmp-1-1", "x");
  Age(path_ + "/segments", absl::Hours(2));
  a.LoadAndFollow();
  EXPECT_EQ(a.dir->leftovers_removed(), 1u);
  ASSERT_TRUE(a.collections->CreateCollection({"docs", kDim, {}}).ok());
  const std::vector<float> rows = engram::testing::RandomMatrix(6, kDim, 4);
  UploadOptions o;
  o.name = "docs";
  o.rows = 6;
  auto upload = *a.collections->BeginUpload(o);
  ASSERT_TRUE(upload->Append(kernels::MatrixView{rows.data(), 3, kDim}).ok());
  ASSERT_THAT(ListDir(path_ + "/segments"), SizeIs(1));

  Replica b(path_, Client());
  b.LoadAndFollow();
  EXPECT_EQ(b.dir->leftovers_removed(), 0u);
  ASSERT_TRUE(
      upload->Append(kernels::MatrixView{rows.data() + 3 * kDim, 3, kDim})
          .ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  const auto at_b = b.At("docs", 2);
  ASSERT_NE(at_b, nullptr);
  EXPECT_EQ(RowsOf(*at_b), rows);
}

// Wraps a catalog and checks, at every commit, that each segment file the
// manifest names is complete under its own name, checksum and all.
class CheckingCatalog final : public Catalog {
 public:
  CheckingCatalog(std::shared_ptr<Catalog> inner, std::string segments)
      : inner_(std::move(inner)), segments_(std::move(segments)) {}

  absl::StatusOr<CatalogSnapshot> List() override { return inner_->List(); }
  absl::StatusOr<int64_t> PutIf(absl::string_view key, absl::string_view value,
                                int64_t expected_revision) override {
    if (absl::StartsWith(key, "collections/")) Check(value);
    return inner_->PutIf(key, value, expected_revision);
  }
  absl::StatusOr<int64_t> DeleteIf(absl::string_view key,
                                   int64_t expected_revision) override {
    return inner_->DeleteIf(key, expected_revision);
  }
  absl::Status Watch(int64_t after_revision, CatalogWatcher* watcher) override {
    return inner_->Watch(after_revision, watcher);
  }
  void StopWatch() override { inner_->StopWatch(); }
  CatalogHealth Health() const override { return inner_->Health(); }
  std::string Describe() const override { return inner_->Describe(); }

  std::atomic<int> checked{0};

 private:
  void Check(absl::string_view value) {
    auto manifest = DecodeManifest("put", value);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    for (const storage::SegmentRef& ref : manifest->segments()) {
      const std::string bytes = ReadAll(segments_ + "/" + ref.file());
      ASSERT_GT(bytes.size(), kSnapshotHeaderBytes) << ref.file();
      const uint32_t crc = Crc32c(bytes.data() + kSnapshotHeaderBytes,
                                  bytes.size() - kSnapshotHeaderBytes);
      EXPECT_EQ(LoadLittleEndian<uint32_t>(bytes.data() + 24), crc);
      EXPECT_EQ(ref.payload_crc32c(), crc) << ref.file();
      ++checked;
    }
  }

  const std::shared_ptr<Catalog> inner_;
  const std::string segments_;
};

TEST_F(DataDirSharedTest, ASegmentIsCompleteBeforeTheCatalogNamesIt) {
  auto checking =
      std::make_shared<CheckingCatalog>(Client(), path_ + "/segments");
  Replica a(path_, checking);
  a.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(300, kDim, 5))
                  .ok());
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(200, kDim, 6), {}, false)
                  .ok());
  // The create's segment, then both at the append.
  EXPECT_EQ(checking->checked.load(), 3);
}

// A streamed append that loses the catalog's compare-and-swap to another
// replica removes its file, as one written at commit did.
TEST_F(DataDirSharedTest, AnUploadThatLosesTheRaceLeavesNoFile) {
  Replica a(path_, Client()), b(path_, Client());
  a.LoadAndFollow();
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(2, kDim, 1))
                  .ok());
  b.Load();  // B has version 1 and does not follow
  ASSERT_TRUE(Upload(*a.collections, "docs", kDim,
                     engram::testing::RandomMatrix(2, kDim, 2), {}, false)
                  .ok());
  const std::vector<std::string> before = ListDir(path_ + "/segments");
  ASSERT_THAT(before, SizeIs(2));
  const auto stale =
      Upload(*b.collections, "docs", kDim,
             engram::testing::RandomMatrix(2, kDim, 3), {}, false);
  ASSERT_TRUE(absl::IsAborted(stale.status())) << stale.status();
  EXPECT_EQ(ListDir(path_ + "/segments"), before);
}

TEST_F(DataDirSharedTest, AFolderWrittenWithoutACatalogKeepsItsSegments) {
  {
    auto dir = *DataDir::Open(path_);
    CollectionStore::Options c;
    c.budget = MakeBudget();
    c.journal = dir.get();
    auto store = *CollectionStore::Create(c);
    ASSERT_TRUE(Upload(*store, "embedded", kDim,
                       engram::testing::RandomMatrix(2, kDim, 1))
                    .ok());
  }
  Age(path_ + "/segments", absl::Hours(2));
  Replica shared(path_, Client());
  EXPECT_THAT(shared.Load(), IsEmpty());
  EXPECT_THAT(ListDir(path_ + "/segments"), SizeIs(1));
}

}  // namespace
}  // namespace engram::collections
