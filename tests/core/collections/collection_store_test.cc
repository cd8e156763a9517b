#include "core/collections/collection_store.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "core/collections/resident_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/core/collections/test_util.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::MakeStore;
using ::engram::collections::testing::Upload;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class CollectionStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  std::unique_ptr<CollectionStore> store_ = MakeStore(budget_);
};

std::vector<float> Rows(size_t rows, size_t dim, float base = 1) {
  std::vector<float> v(rows * dim);
  for (size_t i = 0; i < v.size(); ++i) v[i] = base + static_cast<float>(i);
  return v;
}

// A journal whose Commit waits until the test lets it go, and records what
// it was told.
class GatedJournal final : public CollectionJournal {
 public:
  absl::StatusOr<std::string> WriteSegment(absl::string_view,
                                           const Segment&) override {
    return std::string("segment");
  }
  void DiscardSegment(const std::string&) override {}
  absl::Status Commit(const Collection& next, const std::string&) override {
    entered.Notify();
    release.WaitForNotification();
    committed_version = next.version();
    return absl::OkStatus();
  }
  absl::Status Delete(absl::string_view) override { return absl::OkStatus(); }

  absl::Notification entered;
  absl::Notification release;
  std::atomic<uint64_t> committed_version{0};
};

// While an empty create is being journaled its name is taken: an upload
// cannot create the same name and leave the journal with two collections
// under one name.
TEST(CollectionStoreJournalTest, ANameIsTakenWhileItsCreateIsJournaled) {
  GatedJournal journal;
  CollectionStore::Options options;
  options.budget = MakeBudget();
  options.journal = &journal;
  auto store = *CollectionStore::Create(options);
  std::thread create([&] {
    EXPECT_TRUE(store->CreateCollection({"docs", 4, {}}).ok());
  });
  journal.entered.WaitForNotification();
  UploadOptions upload;
  upload.name = "docs";
  upload.create = true;
  upload.dimension = 8;
  upload.rows = 1;
  EXPECT_TRUE(absl::IsAlreadyExists(store->BeginUpload(upload).status()));
  // Not visible until the journal has it.
  EXPECT_TRUE(absl::IsNotFound(store->Get("docs").status()));
  journal.release.Notify();
  create.join();
  EXPECT_EQ(journal.committed_version, 1u);
  EXPECT_EQ((*store->Get("docs"))->dimension(), 4u);
}

TEST_F(CollectionStoreTest, CreateRequiresABudget) {
  EXPECT_EQ(CollectionStore::Create({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CollectionStoreTest, CreatedCollectionIsEmptyAndDescribed) {
  auto c = store_->CreateCollection({"docs", 4, {{"owner", "search"}}});
  ASSERT_TRUE(c.ok()) << c.status();
  auto info = store_->Describe("docs");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->dimension, 4u);
  EXPECT_EQ(info->rows, 0u);
  EXPECT_EQ(info->bytes, 0u);
  EXPECT_EQ(info->residency, "host");
  EXPECT_EQ(info->load_state, "ready");
  EXPECT_EQ(info->metadata.at("owner"), "search");
  EXPECT_EQ(info->version, 1u);
}

TEST_F(CollectionStoreTest, ExistingNameIsAlreadyExists) {
  ASSERT_TRUE(store_->CreateCollection({"docs", 4, {}}).ok());
  EXPECT_EQ(store_->CreateCollection({"docs", 8, {}}).status().code(),
            absl::StatusCode::kAlreadyExists);
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 4;
  o.rows = 1;
  EXPECT_EQ(store_->BeginUpload(o).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(CollectionStoreTest, UnknownNameIsNotFound) {
  EXPECT_EQ(store_->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Describe("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("nope").code(), absl::StatusCode::kNotFound);
  UploadOptions o;
  o.name = "nope";
  o.rows = 1;
  EXPECT_EQ(store_->BeginUpload(o).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CollectionStoreTest, BadSpecsAreInvalidArgument) {
  EXPECT_EQ(store_->CreateCollection({"", 4, {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateCollection({"a/b", 4, {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateCollection({".hidden", 4, {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto zero = store_->CreateCollection({"x", 0, {}});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("dimension"));
  EXPECT_EQ(
      store_->CreateCollection({"x", kMaxDimension + 1, {}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  UploadOptions o;
  o.name = "x";
  o.create = true;
  o.dimension = 4;
  o.rows = 0;
  EXPECT_EQ(store_->BeginUpload(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CollectionStoreTest, CreatingUploadIsInvisibleUntilCommit) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 2;
  o.rows = 3;
  auto upload = store_->BeginUpload(o);
  ASSERT_TRUE(upload.ok()) << upload.status();
  const std::vector<float> v = Rows(3, 2);
  ASSERT_TRUE((*upload)->Append(kernels::MatrixView{v.data(), 2, 2}).ok());
  EXPECT_EQ(store_->Get("docs").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store_->List(), IsEmpty());
  // The name is reserved: nobody else can create it meanwhile.
  EXPECT_EQ(store_->CreateCollection({"docs", 2, {}}).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*upload)->Append(kernels::MatrixView{v.data() + 4, 1, 2}).ok());
  auto committed = (*upload)->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  auto got = store_->Get("docs");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)->rows(), 3u);
  EXPECT_EQ((*got)->segments().size(), 1u);
  const kernels::MatrixView& m = (*got)->segments()[0]->vectors();
  EXPECT_EQ(std::vector<float>(m.data, m.data + 6), v);
}

TEST_F(CollectionStoreTest, AbortLeavesNothingAndFreesTheBudget) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 4;
  o.rows = 100;
  auto upload = store_->BeginUpload(o);
  ASSERT_TRUE(upload.ok());
  EXPECT_EQ(budget_->reserved_bytes(), 100u * (4 * 4 + 4));
  (*upload)->Abort();
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  EXPECT_EQ(store_->Get("docs").status().code(), absl::StatusCode::kNotFound);
  // The name is free again.
  EXPECT_TRUE(store_->CreateCollection({"docs", 4, {}}).ok());
  EXPECT_EQ((*upload)->Commit().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CollectionStoreTest, DestructionWithoutCommitLeavesNothing) {
  {
    UploadOptions o;
    o.name = "docs";
    o.create = true;
    o.dimension = 2;
    o.rows = 2;
    auto upload = store_->BeginUpload(o);
    ASSERT_TRUE(upload.ok());
    const std::vector<float> v = Rows(2, 2);
    ASSERT_TRUE((*upload)->Append(kernels::MatrixView{v.data(), 2, 2}).ok());
  }
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_EQ(store_->Get("docs").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CollectionStoreTest, CommitWithMissingRowsCommitsNothing) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 2;
  o.rows = 5;
  auto upload = store_->BeginUpload(o);
  const std::vector<float> v = Rows(2, 2);
  ASSERT_TRUE((*upload)->Append(kernels::MatrixView{v.data(), 2, 2}).ok());
  auto committed = (*upload)->Commit();
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(committed.status().message(), HasSubstr("received 2 of the 5"));
  EXPECT_EQ(store_->Get("docs").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST_F(CollectionStoreTest, OverBudgetIsRefusedBeforeAnythingIsAllocated) {
  auto budget = MakeBudget(1000);
  auto store = MakeStore(budget);
  ASSERT_TRUE(Upload(*store, "small", 4, Rows(10, 4)).ok());  // 200 bytes
  const uint64_t before = budget->reserved_bytes();
  UploadOptions o;
  o.name = "big";
  o.create = true;
  o.dimension = 4;
  // Far more than any machine has: had it been allocated first, the
  // allocation itself would have failed or thrown.
  o.rows = uint64_t{1} << 31;
  auto refused = store->BeginUpload(o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("\"big\""));
  EXPECT_EQ(budget->reserved_bytes(), before);
  // Nothing reserved the name either.
  o.rows = 1;
  EXPECT_TRUE(store->BeginUpload(o).ok());
  // Appends are charged the same way.
  UploadOptions append;
  append.name = "small";
  append.rows = 100;
  EXPECT_EQ(store->BeginUpload(append).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(CollectionStoreTest, DimensionMismatchNamesTheField) {
  ASSERT_TRUE(Upload(*store_, "docs", 4, Rows(2, 4)).ok());
  UploadOptions o;
  o.name = "docs";
  o.dimension = 8;
  o.rows = 1;
  auto refused = store_->BeginUpload(o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("dimension (8) must equal the dimension of collection "
                        "\"docs\" (4)"));
  o.dimension = 0;  // inherit
  auto upload = store_->BeginUpload(o);
  ASSERT_TRUE(upload.ok());
  const std::vector<float> v = Rows(1, 3);
  const absl::Status wrong =
      (*upload)->Append(kernels::MatrixView{v.data(), 1, 3});
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.message(), HasSubstr("vectors.cols (3)"));
}

TEST_F(CollectionStoreTest, RefusedChunkLeavesTheUploadAsItWas) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 2;
  o.rows = 3;
  auto upload = store_->BeginUpload(o);
  std::vector<float> bad = {1, 2, 3, std::nanf("")};
  const absl::Status s =
      (*upload)->Append(kernels::MatrixView{bad.data(), 2, 2});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("vectors row 1 contains a non-finite value at column "
                        "1"));
  EXPECT_EQ((*upload)->rows_received(), 0u);
  const float huge = std::numeric_limits<float>::max();
  std::vector<float> overflow = {huge, huge};
  EXPECT_THAT(
      (*upload)->Append(kernels::MatrixView{overflow.data(), 1, 2}).message(),
      HasSubstr("squared norm overflows float32"));
  std::vector<float> too_many = Rows(4, 2);
  EXPECT_EQ(
      (*upload)->Append(kernels::MatrixView{too_many.data(), 4, 2}).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*upload)->Append(kernels::MatrixView{too_many.data(), 1, 2}, {7}).code(),
      absl::StatusCode::kInvalidArgument);  // ids without with_ids
  ASSERT_TRUE(
      (*upload)->Append(kernels::MatrixView{too_many.data(), 3, 2}).ok());
  EXPECT_TRUE((*upload)->Commit().ok());
}

TEST_F(CollectionStoreTest, AppendMakesANewVersionAndOldSnapshotsStay) {
  auto v1 = Upload(*store_, "docs", 2, Rows(2, 2));
  ASSERT_TRUE(v1.ok());
  auto v2 = Upload(*store_, "docs", 2, Rows(3, 2, 100), {}, /*create=*/false);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ((*v1)->rows(), 2u);
  EXPECT_EQ((*v2)->rows(), 5u);
  EXPECT_EQ((*v2)->version(), (*v1)->version() + 1);
  EXPECT_EQ((*v2)->uid(), (*v1)->uid());
  ASSERT_EQ((*v2)->segments().size(), 2u);
  // The old segment is shared, not copied.
  EXPECT_EQ((*v2)->segments()[0].get(), (*v1)->segments()[0].get());
  EXPECT_EQ((*v2)->segments()[1]->first_row(), 2u);
  EXPECT_EQ((*v2)->IdOf(4), 4u);
  EXPECT_EQ((*store_->Get("docs"))->rows(), 5u);
}

TEST_F(CollectionStoreTest, DeleteNeverInvalidatesAHeldSnapshot) {
  auto held = Upload(*store_, "docs", 2, Rows(4, 2));
  ASSERT_TRUE(held.ok());
  const uint64_t bytes = (*held)->bytes();
  ASSERT_TRUE(store_->Delete("docs").ok());
  EXPECT_EQ(store_->Get("docs").status().code(), absl::StatusCode::kNotFound);
  // Still readable, and still charged until the last reader lets go.
  EXPECT_EQ((*held)->segments()[0]->vectors().row(3)[1], 8.0f);
  EXPECT_EQ(budget_->reserved_bytes(), bytes);
  held->reset();
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST_F(CollectionStoreTest, AppendToADeletedCollectionCommitsNothing) {
  ASSERT_TRUE(Upload(*store_, "docs", 2, Rows(1, 2)).ok());
  UploadOptions o;
  o.name = "docs";
  o.rows = 1;
  auto upload = store_->BeginUpload(o);
  ASSERT_TRUE(upload.ok());
  EXPECT_EQ((*store_->Describe("docs")).load_state, "appending");
  const std::vector<float> v = Rows(1, 2);
  ASSERT_TRUE((*upload)->Append(kernels::MatrixView{v.data(), 1, 2}).ok());
  ASSERT_TRUE(store_->Delete("docs").ok());
  // A new collection under the same name is a different collection.
  ASSERT_TRUE(store_->CreateCollection({"docs", 2, {}}).ok());
  EXPECT_EQ((*upload)->Commit().status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store_->Get("docs"))->rows(), 0u);
  EXPECT_EQ((*store_->Describe("docs")).load_state, "ready");
}

TEST_F(CollectionStoreTest, IdsDefaultToRowIndexOrAreStored) {
  auto implicit = Upload(*store_, "a", 2, Rows(3, 2));
  ASSERT_TRUE(implicit.ok());
  EXPECT_FALSE((*implicit)->has_ids());
  EXPECT_EQ((*implicit)->IdOf(2), 2u);
  auto explicit_ids = Upload(*store_, "b", 2, Rows(3, 2), {70, 80, 90});
  ASSERT_TRUE(explicit_ids.ok());
  EXPECT_TRUE((*explicit_ids)->has_ids());
  EXPECT_EQ((*explicit_ids)->IdOf(0), 70u);
  EXPECT_EQ((*explicit_ids)->IdOf(2), 90u);
  EXPECT_EQ((*explicit_ids)->bytes(), 3u * (2 * 4 + 4 + 8));
  auto wrong_count = Upload(*store_, "c", 2, Rows(3, 2), {1, 2});
  EXPECT_EQ(wrong_count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_count.status().message(), HasSubstr("ids has 2 entries"));
}

TEST_F(CollectionStoreTest, NormsArePrecomputedAndRowsAligned) {
  auto c = Upload(*store_, "docs", 16, std::vector<float>(16 * 3, 0.5f));
  ASSERT_TRUE(c.ok());
  const Segment& s = *(*c)->segments()[0];
  ASSERT_EQ(s.norms().size(), 3u);
  EXPECT_FLOAT_EQ(s.norms()[2], 2.0f);  // sqrt(16 * 0.25)
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s.vectors().row(r)) % 64, 0u);
  }
}

TEST_F(CollectionStoreTest, StagedRowsAreReceivedOnlyOnceAllAreChecked) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 3;
  o.rows = 5;
  o.with_ids = true;
  auto upload = *store_->BeginUpload(o);
  const std::vector<float> first = Rows(2, 3);
  ASSERT_TRUE(
      upload->Append(kernels::MatrixView{first.data(), 2, 3}, {10, 11}).ok());
  auto staged = upload->StageRows(3);
  ASSERT_TRUE(staged.ok()) << staged.status();
  StagedRows& block = **staged;
  EXPECT_EQ(block.first_row(), 2u);
  EXPECT_EQ(block.rows(), 3u);
  ASSERT_NE(block.ids(), nullptr);
  const std::vector<float> rest = Rows(3, 3, 5);
  std::copy(rest.begin(), rest.end(), block.vectors());
  for (uint64_t r = 0; r < 3; ++r) block.ids()[r] = 12 + r;
  ASSERT_TRUE(block.Check(0, 2).ok());
  EXPECT_EQ(upload->Receive(block).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(upload->rows_received(), 2u);
  ASSERT_TRUE(block.Check(2, 3).ok());
  ASSERT_TRUE(upload->Receive(block).ok());
  EXPECT_EQ(upload->rows_received(), 5u);
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  // The same rows, ids and norms as one Append of all five.
  std::vector<float> all = first;
  all.insert(all.end(), rest.begin(), rest.end());
  auto appended = Upload(*store_, "copy", 3, all, {10, 11, 12, 13, 14});
  ASSERT_TRUE(appended.ok());
  const Segment& s = *(*committed)->segments()[0];
  const Segment& expected = *(*appended)->segments()[0];
  EXPECT_EQ(std::vector<float>(s.vectors().data, s.vectors().data + 15), all);
  EXPECT_THAT(s.ids(), ::testing::ElementsAreArray(expected.ids()));
  EXPECT_THAT(s.norms(), ::testing::ElementsAreArray(expected.norms()));
}

TEST_F(CollectionStoreTest, ARefusedStagedBlockLeavesNothingReceived) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 2;
  o.rows = 3;
  auto upload = *store_->BeginUpload(o);
  EXPECT_EQ(upload->StageRows(0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(upload->StageRows(4).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto staged = *upload->StageRows(3);
  EXPECT_EQ(staged->ids(), nullptr);
  const std::vector<float> bad = {1, 2, 3, std::nanf(""), 5, 6};
  std::copy(bad.begin(), bad.end(), staged->vectors());
  const absl::Status checked = staged->Check(0, 3);
  EXPECT_EQ(checked.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(checked.message(),
              HasSubstr("vectors row 1 contains a non-finite value at column "
                        "1"));
  EXPECT_EQ(upload->Receive(*staged).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(upload->rows_received(), 0u);
  EXPECT_EQ(staged->Check(2, 4).code(), absl::StatusCode::kInvalidArgument);
  // The upload goes on as if the block had never been staged.
  const std::vector<float> good = Rows(3, 2);
  ASSERT_TRUE(upload->Append(kernels::MatrixView{good.data(), 1, 2}).ok());
  // A block staged before that Append is no longer the next one.
  EXPECT_TRUE(staged->Check(0, 1).ok());
  EXPECT_EQ(upload->Receive(*staged).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(upload->Append(kernels::MatrixView{good.data() + 2, 2, 2}).ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ((*committed)->rows(), 3u);
  const float* v = (*committed)->segments()[0]->vectors().data;
  EXPECT_EQ(std::vector<float>(v, v + 6), good);
  EXPECT_EQ(upload->StageRows(1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CollectionUploadTest, AJournaledUploadTakesNoStagedRows) {
  // Records nothing: only whether the upload is journaled matters here.
  class NullJournal final : public CollectionJournal {
   public:
    absl::StatusOr<std::string> WriteSegment(absl::string_view,
                                             const Segment&) override {
      return std::string("segment");
    }
    void DiscardSegment(const std::string&) override {}
    absl::Status Commit(const Collection&, const std::string&) override {
      return absl::OkStatus();
    }
    absl::Status Delete(absl::string_view) override { return absl::OkStatus(); }
  } journal;
  CollectionStore::Options options;
  options.budget = MakeBudget();
  options.journal = &journal;
  auto store = *CollectionStore::Create(options);
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 2;
  o.rows = 1;
  auto journaled = *store->BeginUpload(o);
  EXPECT_EQ(journaled->StageRows(1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  o.name = "loaded";
  o.durable = false;  // as a load from a file that is its own copy
  auto loaded = *store->BeginUpload(o);
  EXPECT_TRUE(loaded->StageRows(1).ok());
  // Nor does it take blocks: their rows would never reach the journal.
  o.name = "blocks";
  o.durable = true;
  o.blocks = true;
  EXPECT_EQ(store->BeginUpload(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A `blocks` upload: each block is a segment of its own, staged (its own
// memory) or adopted (rows that stay where the caller keeps them).
class BlocksUploadTest : public CollectionStoreTest {
 protected:
  static constexpr uint32_t kDim = 16;  // one 64-byte line per row

  std::unique_ptr<CollectionUpload> Begin(uint64_t rows, bool with_ids) {
    UploadOptions o;
    o.name = "docs";
    o.create = true;
    o.dimension = kDim;
    o.rows = rows;
    o.with_ids = with_ids;
    o.durable = false;
    o.blocks = true;
    return *store_->BeginUpload(o);
  }

  // 64-byte aligned rows, kept alive by the returned handle.
  static std::shared_ptr<float> AlignedRows(const std::vector<float>& rows) {
    void* p = nullptr;
    EXPECT_EQ(posix_memalign(&p, 64, rows.size() * sizeof(float)), 0);
    std::memcpy(p, rows.data(), rows.size() * sizeof(float));
    return std::shared_ptr<float>(static_cast<float*>(p), std::free);
  }

  static absl::Status CheckAndReceive(CollectionUpload& upload,
                                      StagedRows& block) {
    if (absl::Status s = block.Check(0, block.rows()); !s.ok()) return s;
    return upload.Receive(block);
  }
};

TEST_F(BlocksUploadTest, AdoptedAndStagedBlocksBecomeSegmentsInRowOrder) {
  const std::vector<float> first = Rows(3, kDim, 1);
  const std::vector<float> second = Rows(2, kDim, 100);
  const std::vector<uint64_t> ids = {7, 8, 9};
  auto kept = AlignedRows(first);
  auto upload = Begin(5, /*with_ids=*/true);
  // Reserved at the start, allocated as the blocks come.
  const uint64_t reserved = budget_->reserved_bytes();
  EXPECT_EQ(reserved, 5 * (kDim * 4 + 4 + 8));
  auto adopted = upload->AdoptRows(3, kept.get(), ids.data(), kept);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ((*adopted)->vectors(), nullptr);
  ASSERT_TRUE(CheckAndReceive(*upload, **adopted).ok());
  auto staged = upload->StageRows(2);
  ASSERT_TRUE(staged.ok()) << staged.status();
  std::memcpy((*staged)->vectors(), second.data(), second.size() * 4);
  (*staged)->ids()[0] = 20;
  (*staged)->ids()[1] = 21;
  ASSERT_TRUE(CheckAndReceive(*upload, **staged).ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  const Collection& c = **committed;
  ASSERT_EQ(c.segments().size(), 2u);
  EXPECT_TRUE(c.segments()[0]->adopted());
  EXPECT_FALSE(c.segments()[1]->adopted());
  EXPECT_EQ(c.segments()[0]->vectors().data, kept.get());  // no copy
  EXPECT_EQ(c.segments()[1]->first_row(), 3u);
  EXPECT_EQ(c.segments()[1]->vectors().row(1)[0], 100.0f + kDim);
  EXPECT_THAT(
      std::vector<uint64_t>({c.IdOf(0), c.IdOf(2), c.IdOf(3), c.IdOf(4)}),
      ElementsAre(7, 9, 20, 21));
  double sum = 0;
  for (uint32_t i = 0; i < kDim; ++i) sum += double{first[i]} * first[i];
  EXPECT_FLOAT_EQ(c.segments()[0]->norms()[0], std::sqrt(sum));
  // The reservation is split among the segments, all of it.
  EXPECT_EQ(c.segments()[0]->bytes() + c.segments()[1]->bytes(), reserved);
  EXPECT_EQ(c.bytes(), reserved);
  EXPECT_EQ(budget_->reserved_bytes(), reserved);
  // The adopted rows stay alive with the segment, not with the caller.
  std::weak_ptr<float> watch = kept;
  kept.reset();
  EXPECT_FALSE(watch.expired());
  ASSERT_TRUE(store_->Delete("docs").ok());
  committed->reset();
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST_F(BlocksUploadTest, AdoptedRowsWithoutIdsGetTheirRowNumbers) {
  auto kept = AlignedRows(Rows(2, kDim));
  auto upload = Begin(2, /*with_ids=*/true);
  auto block = *upload->AdoptRows(2, kept.get(), nullptr, kept);
  ASSERT_TRUE(CheckAndReceive(*upload, *block).ok());
  auto c = *upload->Commit();
  EXPECT_EQ(c->IdOf(0), 0u);
  EXPECT_EQ(c->IdOf(1), 1u);
}

TEST_F(BlocksUploadTest, WhatCannotBeAdoptedIsRefusedByName) {
  auto kept = AlignedRows(Rows(4, kDim));
  const std::vector<uint64_t> ids = {1, 2, 3, 4};
  auto upload = Begin(4, /*with_ids=*/false);
  // Misaligned rows, ids the upload does not take, no owner, too many rows.
  auto misaligned = upload->AdoptRows(1, kept.get() + 1, nullptr, kept);
  EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(misaligned.status().message(), HasSubstr("64-byte aligned"));
  auto with_ids = upload->AdoptRows(4, kept.get(), ids.data(), kept);
  EXPECT_EQ(with_ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(with_ids.status().message(), HasSubstr("ids given"));
  EXPECT_EQ(upload->AdoptRows(4, kept.get(), nullptr, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(upload->AdoptRows(5, kept.get(), nullptr, kept).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A blocks upload takes no Append, and a plain one adopts nothing.
  const std::vector<float> row = Rows(1, kDim);
  EXPECT_EQ(upload->Append(kernels::MatrixView{row.data(), 1, kDim}).code(),
            absl::StatusCode::kFailedPrecondition);
  UploadOptions plain;
  plain.name = "plain";
  plain.create = true;
  plain.dimension = kDim;
  plain.rows = 1;
  auto other = *store_->BeginUpload(plain);
  EXPECT_EQ(other->AdoptRows(1, kept.get(), nullptr, kept).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(upload->rows_received(), 0u);
}

TEST_F(BlocksUploadTest, ABlockStagedAgainReplacesTheOneNeverReceived) {
  auto kept = AlignedRows(Rows(2, kDim));
  auto upload = Begin(2, /*with_ids=*/false);
  auto dropped = *upload->AdoptRows(2, kept.get(), nullptr, kept);
  ASSERT_TRUE(dropped->Check(0, 2).ok());
  auto again = *upload->StageRows(2);
  // The first block's storage went with it: it can no longer be received.
  EXPECT_EQ(upload->Receive(*dropped).code(),
            absl::StatusCode::kFailedPrecondition);
  const std::vector<float> rows = Rows(2, kDim, 50);
  std::memcpy(again->vectors(), rows.data(), rows.size() * 4);
  ASSERT_TRUE(CheckAndReceive(*upload, *again).ok());
  auto c = *upload->Commit();
  ASSERT_EQ(c->segments().size(), 1u);
  EXPECT_FALSE(c->segments()[0]->adopted());
  EXPECT_EQ(c->segments()[0]->vectors().row(0)[0], 50.0f);
}

TEST_F(BlocksUploadTest, AnAbortedBlocksUploadGivesEverythingBack) {
  auto kept = AlignedRows(Rows(2, kDim));
  std::weak_ptr<float> watch = kept;
  {
    auto upload = Begin(4, /*with_ids=*/false);
    auto block = *upload->AdoptRows(2, kept.get(), nullptr, kept);
    ASSERT_TRUE(CheckAndReceive(*upload, *block).ok());
    kept.reset();
    EXPECT_GT(budget_->reserved_bytes(), 0u);
    EXPECT_FALSE(upload->Commit().ok());  // two of four rows: nothing
  }
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(CollectionStoreTest, StagedRowsAreCheckedOnSeveralThreadsAtOnce) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 8;
  o.rows = 4000;
  auto upload = *store_->BeginUpload(o);
  auto staged = *upload->StageRows(4000);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<float> rows = Rows(1000, 8, static_cast<float>(t + 1));
      std::copy(rows.begin(), rows.end(), staged->vectors() + t * 8000);
      if (!staged->Check(t * 1000, (t + 1) * 1000).ok()) ++failures;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_TRUE(upload->Receive(*staged).ok());
  EXPECT_TRUE(upload->Commit().ok());
}

TEST_F(CollectionStoreTest, ListIsSortedByName) {
  ASSERT_TRUE(store_->CreateCollection({"b", 2, {}}).ok());
  ASSERT_TRUE(store_->CreateCollection({"a", 2, {}}).ok());
  std::vector<std::string> names;
  for (const auto& info : store_->List()) names.push_back(info.name);
  EXPECT_THAT(names, ElementsAre("a", "b"));
}

TEST_F(CollectionStoreTest, ConcurrentCreatingUploadsOfOneNameOneWins) {
  constexpr int kThreads = 8;
  std::atomic<int> ok{0}, exists{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto c = Upload(*store_, "docs", 4, Rows(8, 4));
      if (c.ok()) ++ok;
      if (absl::IsAlreadyExists(c.status())) ++exists;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exists.load(), kThreads - 1);
  EXPECT_EQ(budget_->reserved_bytes(), (*store_->Get("docs"))->bytes());
}

TEST_F(CollectionStoreTest, ConcurrentAppendsAllLand) {
  ASSERT_TRUE(store_->CreateCollection({"docs", 4, {}}).ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(Upload(*store_, "docs", 4, Rows(3, 4), {}, false).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto c = *store_->Get("docs");
  EXPECT_EQ(c->rows(), 8u * 10 * 3);
  uint64_t next = 0;
  for (const auto& s : c->segments()) {
    EXPECT_EQ(s->first_row(), next);
    next += s->rows();
  }
}

TEST_F(CollectionStoreTest, GaugesFollowTheVisibleCollections) {
  prometheus::Registry registry;
  ResidentMetrics metrics(registry);
  MemoryBudget::Options bo;
  bo.limit_bytes = 1 << 20;
  bo.metrics = &metrics;
  auto budget = *MemoryBudget::Create(bo);
  CollectionStore::Options so;
  so.budget = budget;
  so.metrics = &metrics;
  auto store = *CollectionStore::Create(so);
  ASSERT_TRUE(Upload(*store, "docs", 4, Rows(10, 4)).ok());
  auto value = [&](const std::string& name, const std::string& state = "") {
    for (const auto& family : registry.Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (state.empty() || m.label.at(0).value == state) {
          return m.gauge.value;
        }
      }
    }
    return -1.0;
  };
  EXPECT_EQ(value("engram_resident_collections"), 1);
  EXPECT_EQ(value("engram_resident_collection_bytes"), 200);
  EXPECT_EQ(value("engram_resident_memory_budget_bytes", "reserved"), 200);
  EXPECT_EQ(value("engram_resident_memory_budget_bytes", "limit"), 1 << 20);
  EXPECT_EQ(value("engram_resident_collection_tombstones"), 0);
  ASSERT_TRUE(Upload(*store, "keyed", 4, Rows(4, 4), {1, 2, 3, 4}).ok());
  ASSERT_TRUE(store->DeleteRows("keyed", {2, 3}, "", 0).ok());
  EXPECT_EQ(value("engram_resident_collection_tombstones"), 2);
  ASSERT_TRUE(store->Delete("keyed").ok());
  ASSERT_TRUE(store->Delete("docs").ok());
  EXPECT_EQ(value("engram_resident_collections"), 0);
  EXPECT_EQ(value("engram_resident_collection_tombstones"), 0);
  EXPECT_EQ(value("engram_resident_memory_budget_bytes", "reserved"), 0);
}

class RecordingObserver : public CollectionObserver {
 public:
  void OnCommitted(const std::shared_ptr<const Collection>& c) override {
    committed.push_back(c->version());
  }
  void OnDeleted(uint64_t uid, const std::string& name) override {
    deleted.push_back(name);
  }
  std::vector<uint64_t> committed;
  std::vector<std::string> deleted;
};

TEST_F(CollectionStoreTest, ObserverSeesCommitsAndDeletesForADeviceCache) {
  RecordingObserver observer;
  CollectionStore::Options so;
  so.budget = budget_;
  so.observer = &observer;
  auto store = *CollectionStore::Create(so);
  ASSERT_TRUE(Upload(*store, "docs", 2, Rows(1, 2)).ok());
  ASSERT_TRUE(Upload(*store, "docs", 2, Rows(1, 2), {}, false).ok());
  ASSERT_TRUE(store->Delete("docs").ok());
  EXPECT_THAT(observer.committed, ElementsAre(1, 2));
  EXPECT_THAT(observer.deleted, ElementsAre("docs"));
}

}  // namespace
}  // namespace engram::collections
