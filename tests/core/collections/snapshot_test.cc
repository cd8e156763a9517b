#include "core/collections/snapshot.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"
#include "tests/testing/random_data.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::ListDir;
using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::MakeStore;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::Upload;
using ::engram::collections::testing::WriteAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::unique_ptr<GraphStore> MakeGraphStore(std::shared_ptr<MemoryBudget> b) {
  GraphStore::Options options;
  options.budget = std::move(b);
  options.validate = [](const kernels::GraphView& g) {
    dispatch::SpreadJob job;
    job.graph = g;
    return core::ValidateSpreadJob(job, core::RequestLimits());
  };
  return *GraphStore::Create(options);
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    values_ = engram::testing::RandomMatrix(37, 24, 11);
    ids_.resize(37);
    for (size_t i = 0; i < ids_.size(); ++i) ids_[i] = 1000 + 3 * i;
    UploadOptions o;
    o.name = "docs";
    o.create = true;
    o.dimension = 24;
    o.metadata = {{"model", "e5"}, {"lang", "en"}};
    o.rows = 30;
    o.with_ids = true;
    auto upload = *source_->BeginUpload(o);
    ASSERT_TRUE(upload
                    ->Append(kernels::MatrixView{values_.data(), 30, 24},
                             absl::MakeConstSpan(ids_.data(), 30))
                    .ok());
    ASSERT_TRUE(upload->Commit().ok());
    // A second segment without ids: the file materialises its row ids.
    UploadOptions more;
    more.name = "docs";
    more.rows = 7;
    auto append = *source_->BeginUpload(more);
    ASSERT_TRUE(
        append->Append(kernels::MatrixView{values_.data() + 30 * 24, 7, 24})
            .ok());
    collection_ = *append->Commit();
    path_ = dir_ + "/docs.engc";
    ASSERT_TRUE(WriteCollectionSnapshot(*collection_, path_).ok());
  }

  // Expects `path` to be refused with `code` and a message containing
  // `what`, leaving nothing visible and nothing reserved.
  void ExpectRefused(const std::string& path, absl::StatusCode code,
                     const std::string& what) {
    auto budget = MakeBudget();
    auto store = MakeStore(budget);
    auto loaded = LoadCollectionSnapshot(path, "", store.get());
    EXPECT_EQ(loaded.status().code(), code) << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(path));
    EXPECT_THAT(loaded.status().message(), HasSubstr(what));
    EXPECT_THAT(store->List(), IsEmpty());
    EXPECT_EQ(budget->reserved_bytes(), 0u);
  }

  std::string dir_;
  std::string path_;
  std::vector<float> values_;
  std::vector<uint64_t> ids_;
  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  std::unique_ptr<CollectionStore> source_ = MakeStore(budget_);
  std::shared_ptr<const Collection> collection_;
};

TEST_F(SnapshotTest, CollectionRoundTrip) {
  auto store = MakeStore(MakeBudget());
  auto loaded = LoadCollectionSnapshot(path_, "", store.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Collection& c = **loaded;
  EXPECT_EQ(c.name(), "docs");
  EXPECT_EQ(c.dimension(), 24u);
  EXPECT_EQ(c.rows(), 37u);
  EXPECT_EQ(c.metadata(), collection_->metadata());
  EXPECT_EQ(c.source(), path_);
  ASSERT_EQ(c.segments().size(), 1u);  // one file, one block
  const kernels::MatrixView& m = c.segments()[0]->vectors();
  EXPECT_EQ(std::vector<float>(m.data, m.data + 37 * 24), values_);
  for (uint64_t r = 0; r < 37; ++r) {
    EXPECT_EQ(c.IdOf(r), collection_->IdOf(r)) << r;
  }
  EXPECT_EQ(c.IdOf(0), 1000u);
  EXPECT_EQ(c.IdOf(36), 36u);
  for (uint64_t r = 0; r < 37; ++r) {
    EXPECT_FLOAT_EQ(
        c.segments()[0]->norms()[r],
        collection_->segments()[r < 30 ? 0 : 1]->norms()[r < 30 ? r : r - 30]);
  }
}

TEST_F(SnapshotTest, LoadsUnderTheDeclaredName) {
  auto store = MakeStore(MakeBudget());
  auto loaded = LoadCollectionSnapshot(path_, "renamed", store.get());
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(store->Get("renamed").ok());
  EXPECT_EQ(
      LoadCollectionSnapshot(path_, "renamed", store.get()).status().code(),
      absl::StatusCode::kAlreadyExists);
}

TEST_F(SnapshotTest, AtomicWriteLeavesOnlyTheTargetBehind) {
  EXPECT_THAT(ListDir(dir_), ElementsAre("docs.engc"));
  // Overwriting is atomic too and still leaves no temporary file.
  ASSERT_TRUE(WriteCollectionSnapshot(*collection_, path_).ok());
  EXPECT_THAT(ListDir(dir_), ElementsAre("docs.engc"));
}

TEST_F(SnapshotTest, FailedWriteLeavesTheOldFileAndNoTemporary) {
  const std::string before = ReadAll(path_);
  const absl::Status failed =
      WriteFileAtomically(path_, [](FileSink& sink) -> absl::Status {
        EXPECT_TRUE(sink.Write("partial").ok());
        return absl::InternalError("writer failed");
      });
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(ListDir(dir_), ElementsAre("docs.engc"));
  EXPECT_EQ(ReadAll(path_), before);
  EXPECT_FALSE(WriteFileAtomically(dir_ + "/missing/x", [](FileSink&) {
                 return absl::OkStatus();
               }).ok());
}

TEST_F(SnapshotTest, ACorruptPayloadByteNeverLoads) {
  std::string bytes = ReadAll(path_);
  bytes[bytes.size() - 5] ^= 0x01;  // a low mantissa bit: still finite
  WriteAll(path_, bytes);
  ExpectRefused(path_, absl::StatusCode::kDataLoss,
                "payload checksum mismatch");
}

TEST_F(SnapshotTest, ACorruptionThatMakesANaNIsStillReportedAsDataLoss) {
  std::string bytes = ReadAll(path_);
  // The high bytes of the first vector value: exponent all ones -> NaN.
  const size_t first_value = kSnapshotHeaderBytes + 4 + 0 + 37 * 8 +
                             /*metadata*/ (4 + 4 + 4 + 2 + 4 + 5 + 4 + 2);
  bytes[first_value + 3] = 0x7f;
  bytes[first_value + 2] = static_cast<char>(0xff);
  WriteAll(path_, bytes);
  ExpectRefused(path_, absl::StatusCode::kDataLoss,
                "payload checksum mismatch");
}

TEST_F(SnapshotTest, ACorruptHeaderByteNeverLoads) {
  std::string bytes = ReadAll(path_);
  bytes[40] ^= 0x04;  // the dimension
  WriteAll(path_, bytes);
  ExpectRefused(path_, absl::StatusCode::kDataLoss, "header checksum");
}

TEST_F(SnapshotTest, ATruncatedFileNeverLoads) {
  const std::string bytes = ReadAll(path_);
  WriteAll(path_, bytes.substr(0, bytes.size() - 1));
  ExpectRefused(path_, absl::StatusCode::kDataLoss, "truncated");
  WriteAll(path_, bytes.substr(0, 20));
  ExpectRefused(path_, absl::StatusCode::kDataLoss, "truncated");
  WriteAll(path_, bytes + "x");
  ExpectRefused(path_, absl::StatusCode::kDataLoss, "bytes after");
}

TEST_F(SnapshotTest, WrongMagicIsInvalidArgument) {
  std::string bytes = ReadAll(path_);
  bytes[0] = 'X';
  WriteAll(path_, bytes);
  ExpectRefused(path_, absl::StatusCode::kInvalidArgument, "wrong magic");
  WriteAll(path_, "");
  ExpectRefused(path_, absl::StatusCode::kDataLoss, "truncated");
}

TEST_F(SnapshotTest, AGraphSnapshotIsNotACollection) {
  auto graphs = MakeGraphStore(MakeBudget());
  auto g = engram::testing::RandomGraph(5, 2, 3);
  auto put = graphs->Put("kg", g.view());
  ASSERT_TRUE(put.ok());
  const std::string graph_path = dir_ + "/kg.engg";
  ASSERT_TRUE(WriteGraphSnapshot(**put, graph_path).ok());
  ExpectRefused(graph_path, absl::StatusCode::kInvalidArgument, "wrong magic");
}

TEST_F(SnapshotTest, MissingFileIsNotFound) {
  ExpectRefused(dir_ + "/none.engc", absl::StatusCode::kNotFound, "none.engc");
}

TEST_F(SnapshotTest, OverBudgetIsRefusedBeforeThePayloadIsRead) {
  auto budget = MakeBudget(1000);
  auto store = MakeStore(budget);
  auto loaded = LoadCollectionSnapshot(path_, "", store.get());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(store->List(), IsEmpty());
  EXPECT_EQ(budget->reserved_bytes(), 0u);
}

TEST_F(SnapshotTest, GraphRoundTripAndCorruption) {
  auto graphs = MakeGraphStore(MakeBudget());
  auto g = engram::testing::RandomGraph(300, 5, 9);
  auto put = graphs->Put("kg", g.view());
  ASSERT_TRUE(put.ok());
  const std::string path = dir_ + "/kg.engg";
  ASSERT_TRUE(WriteGraphSnapshot(**put, path).ok());
  EXPECT_THAT(ListDir(dir_), ElementsAre("docs.engc", "kg.engg"));

  auto other = MakeGraphStore(MakeBudget());
  auto loaded = LoadGraphSnapshot(path, "copy", other.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const kernels::GraphView& v = (*loaded)->base();
  EXPECT_EQ(v.num_nodes, 300u);
  EXPECT_EQ(std::vector<uint32_t>(v.row_offsets.begin(), v.row_offsets.end()),
            g.row_offsets);
  EXPECT_EQ(std::vector<uint32_t>(v.targets.begin(), v.targets.end()),
            g.targets);
  EXPECT_EQ(std::vector<float>(v.weights.begin(), v.weights.end()), g.weights);
  EXPECT_EQ((*loaded)->source(), path);

  std::string bytes = ReadAll(path);
  bytes[bytes.size() / 2] ^= 0x20;
  WriteAll(path, bytes);
  auto corrupt = LoadGraphSnapshot(path, "bad", other.get());
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(other->Get("bad").status().code(), absl::StatusCode::kNotFound);
  WriteAll(path, bytes.substr(0, 100));
  EXPECT_EQ(LoadGraphSnapshot(path, "bad", other.get()).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(LoadGraphSnapshot(path_, "bad", other.get()).status().code(),
            absl::StatusCode::kInvalidArgument);  // a collection file
}

TEST_F(SnapshotTest, AGraphFileKeepsItsVersion) {
  auto graphs = MakeGraphStore(MakeBudget());
  auto g = engram::testing::RandomGraph(20, 3, 4);
  ASSERT_TRUE(graphs->Put("first", g.view()).ok());
  auto put = graphs->Put("kg", g.view());
  ASSERT_TRUE(put.ok());
  ASSERT_EQ((*put)->version(), 2u);
  const std::string path = dir_ + "/kg.engg";
  ASSERT_TRUE(WriteGraphSnapshot(**put, path).ok());

  auto other = MakeGraphStore(MakeBudget());
  auto kept = LoadGraphSnapshot(path, "kept", other.get());
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ((*kept)->version(), 2u);
  // A version given by the caller (the catalog's) wins over the file's.
  auto given = LoadGraphSnapshot(path, "given", other.get(), 77);
  ASSERT_TRUE(given.ok());
  EXPECT_EQ((*given)->version(), 77u);

  // A file from before graphs had versions holds 0 there: the graph gets
  // the store's next version.
  std::string bytes = ReadAll(path);
  std::memset(&bytes[56], 0, 4);
  const uint32_t header_crc = Crc32c(bytes.data(), 60);
  std::memcpy(&bytes[60], &header_crc, 4);  // little-endian host
  WriteAll(path, bytes);
  auto unversioned = LoadGraphSnapshot(path, "old", other.get());
  ASSERT_TRUE(unversioned.ok()) << unversioned.status();
  EXPECT_EQ((*unversioned)->version(), 78u);
}

// Loads split into many pieces on several threads: 1000 rows x 24 in
// pieces of 10 rows (and 120 ids), on 4 threads.
class SnapshotSplitLoadTest : public SnapshotTest {
 protected:
  static constexpr uint64_t kRows = 1000;
  static constexpr uint32_t kDim = 24;

  void SetUp() override {
    SnapshotTest::SetUp();
    previous_ = internal::SetSnapshotLoadSplitForTesting(
        SnapshotLoadSplit{10 * kDim * sizeof(float), 4});
    rows_ = engram::testing::RandomMatrix(kRows, kDim, 21);
    for (uint64_t i = 0; i < kRows; ++i) row_ids_.push_back(5000 + 7 * i);
    auto with_ids = Upload(*source_, "with_ids", kDim, rows_, row_ids_);
    auto no_ids = Upload(*source_, "no_ids", kDim, rows_);
    ASSERT_TRUE(with_ids.ok() && no_ids.ok());
    with_ids_ = *with_ids;
    no_ids_ = *no_ids;
    ASSERT_TRUE(WriteCollectionSnapshot(*with_ids_, WithIdsPath()).ok());
    ASSERT_TRUE(WriteCollectionSnapshot(*no_ids_, NoIdsPath()).ok());
  }

  void TearDown() override {
    internal::SetSnapshotLoadSplitForTesting(previous_);
  }

  std::string WithIdsPath() const { return dir_ + "/with_ids.engc"; }
  std::string NoIdsPath() const { return dir_ + "/no_ids.engc"; }
  // Where row `row`'s vector starts in with_ids.engc: header, name, ids.
  static size_t VectorOffset(uint64_t row) {
    return kSnapshotHeaderBytes + 8 + kRows * 8 + row * kDim * sizeof(float);
  }

  // Recomputes both checksums of a snapshot file, so that edited values
  // reach the stores' checks.
  static void Reseal(std::string* bytes) {
    char* p = bytes->data();
    StoreLittleEndian<uint32_t>(
        p + 24,
        Crc32c(p + kSnapshotHeaderBytes, bytes->size() - kSnapshotHeaderBytes));
    StoreLittleEndian<uint32_t>(p + 60, Crc32c(p, 60));
  }

  static void SetValue(std::string* bytes, uint64_t row, uint32_t col,
                       float value) {
    std::memcpy(bytes->data() + VectorOffset(row) + col * sizeof(float), &value,
                sizeof(float));
  }

  // Expects `loaded` to hold exactly the rows, ids and norms of `source`.
  static void ExpectSameRows(const Collection& loaded,
                             const Collection& source) {
    ASSERT_EQ(loaded.rows(), kRows);
    ASSERT_EQ(loaded.segments().size(), 1u);
    const Segment& got = *loaded.segments()[0];
    const Segment& want = *source.segments()[0];
    EXPECT_EQ(std::memcmp(got.vectors().data, want.vectors().data,
                          kRows * kDim * sizeof(float)),
              0);
    EXPECT_EQ(loaded.has_ids(), source.has_ids());
    EXPECT_THAT(got.ids(), ::testing::ElementsAreArray(want.ids()));
    EXPECT_THAT(got.norms(), ::testing::ElementsAreArray(want.norms()));
  }

  SnapshotLoadSplit previous_;
  std::vector<float> rows_;
  std::vector<uint64_t> row_ids_;
  std::shared_ptr<const Collection> with_ids_;
  std::shared_ptr<const Collection> no_ids_;
};

TEST_F(SnapshotSplitLoadTest, ManyPiecesOnSeveralThreadsYieldTheUploadedRows) {
  for (const auto& [path, source] : {std::make_pair(WithIdsPath(), with_ids_),
                                     std::make_pair(NoIdsPath(), no_ids_)}) {
    SCOPED_TRACE(path);
    auto budget = MakeBudget();
    auto store = MakeStore(budget);
    auto loaded = LoadCollectionSnapshot(path, "", store.get());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ExpectSameRows(**loaded, *source);
    EXPECT_EQ((*loaded)->bytes(), source->bytes());
    EXPECT_EQ(budget->reserved_bytes(), source->bytes());
  }
}

TEST_F(SnapshotSplitLoadTest, AFileSmallerThanOnePieceLoads) {
  for (const SnapshotLoadSplit& split :
       {SnapshotLoadSplit{uint64_t{1} << 20, 4}, SnapshotLoadSplit{}}) {
    internal::SetSnapshotLoadSplitForTesting(split);
    for (const auto& [path, source] : {std::make_pair(WithIdsPath(), with_ids_),
                                       std::make_pair(NoIdsPath(), no_ids_)}) {
      SCOPED_TRACE(path);
      auto store = MakeStore(MakeBudget());
      auto loaded = LoadCollectionSnapshot(path, "", store.get());
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      ExpectSameRows(**loaded, *source);
    }
  }
}

TEST_F(SnapshotSplitLoadTest, ACorruptByteInAnyPieceIsDataLoss) {
  const std::string bytes = ReadAll(WithIdsPath());
  const size_t first_id = kSnapshotHeaderBytes + 8;
  for (size_t at : {first_id, first_id + kRows * 8 / 2, VectorOffset(0),
                    VectorOffset(kRows / 2) + 5, bytes.size() - 1}) {
    SCOPED_TRACE(at);
    std::string corrupt = bytes;
    corrupt[at] ^= 0x01;
    WriteAll(WithIdsPath(), corrupt);
    ExpectRefused(WithIdsPath(), absl::StatusCode::kDataLoss,
                  "payload checksum mismatch");
  }
}

TEST_F(SnapshotSplitLoadTest, ACorruptionThatMakesANaNIsStillDataLoss) {
  std::string bytes = ReadAll(WithIdsPath());
  SetValue(&bytes, 537, 5, std::numeric_limits<float>::quiet_NaN());
  WriteAll(WithIdsPath(), bytes);
  ExpectRefused(WithIdsPath(), absl::StatusCode::kDataLoss,
                "payload checksum mismatch");
}

TEST_F(SnapshotSplitLoadTest, ANonFiniteValueInAMiddlePieceNamesItsRow) {
  std::string bytes = ReadAll(WithIdsPath());
  SetValue(&bytes, 537, 5, std::numeric_limits<float>::quiet_NaN());
  // A later bad row, likely checked first by another thread, is not the one
  // reported.
  SetValue(&bytes, 901, 0, std::numeric_limits<float>::infinity());
  Reseal(&bytes);
  WriteAll(WithIdsPath(), bytes);
  for (int run = 0; run < 5; ++run) {
    ExpectRefused(WithIdsPath(), absl::StatusCode::kInvalidArgument,
                  "vectors row 537 contains a non-finite value at column 5");
  }
}

TEST_F(SnapshotSplitLoadTest, SegmentFilesRestoreIntoOneUpload) {
  // As the data directory restores a collection: one upload, one file per
  // segment; a segment without ids gets its row numbers.
  const std::string first = dir_ + "/first.engc";
  const std::string second = dir_ + "/second.engc";
  auto first_crc =
      WriteSegmentSnapshot("docs", *with_ids_->segments()[0], first);
  auto second_crc =
      WriteSegmentSnapshot("docs", *no_ids_->segments()[0], second);
  ASSERT_TRUE(first_crc.ok() && second_crc.ok());
  auto store = MakeStore(MakeBudget());
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = kDim;
  o.rows = 2 * kRows;
  o.with_ids = true;
  o.durable = false;
  auto upload = *store->BeginUpload(o);
  ASSERT_TRUE(AppendSegmentSnapshot(first, {kRows, true, *first_crc}, 0,
                                    upload.get(), true)
                  .ok());
  // A manifest that disagrees with the file receives nothing.
  EXPECT_EQ(AppendSegmentSnapshot(second, {kRows, true, *second_crc}, kRows,
                                  upload.get(), true)
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(upload->rows_received(), kRows);
  ASSERT_TRUE(AppendSegmentSnapshot(second, {kRows, false, *second_crc}, kRows,
                                    upload.get(), true)
                  .ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  const Collection& c = **committed;
  ASSERT_EQ(c.rows(), 2 * kRows);
  const float* v = c.segments()[0]->vectors().data;
  EXPECT_EQ(std::vector<float>(v, v + kRows * kDim), rows_);
  EXPECT_EQ(std::vector<float>(v + kRows * kDim, v + 2 * kRows * kDim), rows_);
  for (uint64_t r = 0; r < kRows; ++r) {
    EXPECT_EQ(c.IdOf(r), row_ids_[r]);
    EXPECT_EQ(c.IdOf(kRows + r), kRows + r);
    EXPECT_EQ(c.segments()[0]->norms()[r], c.segments()[0]->norms()[kRows + r]);
  }
}

TEST_F(SnapshotSplitLoadTest, ACorruptSegmentFileLeavesTheUploadAsItWas) {
  const std::string path = dir_ + "/segment.engc";
  auto crc = WriteSegmentSnapshot("docs", *no_ids_->segments()[0], path);
  ASSERT_TRUE(crc.ok());
  std::string bytes = ReadAll(path);
  bytes[bytes.size() / 2] ^= 0x10;
  WriteAll(path, bytes);
  auto store = MakeStore(MakeBudget());
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = kDim;
  o.rows = kRows;
  auto upload = *store->BeginUpload(o);
  const absl::Status status =
      AppendSegmentSnapshot(path, {kRows, false, *crc}, 0, upload.get(), false);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_EQ(upload->rows_received(), 0u);
}

// A data directory's segment files put their vectors at a 64-byte file
// offset (and their ids at an 8-byte one), whatever the name and row count,
// so that they can be mapped and searched in place.
TEST_F(SnapshotSplitLoadTest, SegmentFilesAlignTheirRowsForMapping) {
  for (size_t name_bytes : {1, 2, 7, 8, 55, 56, 57, 64, 100}) {
    for (uint64_t rows : {1, 3, 8, 1000}) {
      for (bool with_ids : {false, true}) {
        const std::string name(name_bytes, 'n');
        const SegmentFileLayout layout =
            LayOutSegmentFile(name, rows, kDim, with_ids);
        SCOPED_TRACE(absl::StrCat(name_bytes, " ", rows, " ", with_ids));
        EXPECT_EQ(layout.vectors_offset % 64, 0u);
        EXPECT_EQ(layout.ids_offset % 8, 0u);
        EXPECT_EQ(layout.vectors_offset - layout.ids_offset,
                  with_ids ? rows * 8 : 0);
        EXPECT_LT(layout.metadata_bytes, 8u + 64u);
      }
    }
  }
  // The whole-segment writer lays the file out as the streaming one does.
  const std::string path = dir_ + "/segment.engc";
  for (const auto& source : {with_ids_, no_ids_}) {
    const Segment& segment = *source->segments()[0];
    const bool with_ids = !segment.ids().empty();
    ASSERT_TRUE(WriteSegmentSnapshot("docs", segment, path).ok());
    const std::string bytes = ReadAll(path);
    const SegmentFileLayout layout =
        LayOutSegmentFile("docs", kRows, kDim, with_ids);
    ASSERT_EQ(bytes.size(), layout.file_bytes);
    EXPECT_EQ(std::memcmp(bytes.data() + layout.vectors_offset,
                          segment.vectors().data, kRows * kDim * 4),
              0);
    if (with_ids) {
      EXPECT_EQ(std::memcmp(bytes.data() + layout.ids_offset,
                            segment.ids().data(), kRows * 8),
                0);
    }
    // Loaded as a snapshot, the alignment entry is no metadata.
    auto store = MakeStore(MakeBudget());
    auto loaded = LoadCollectionSnapshot(path, "", store.get());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_THAT((*loaded)->metadata(), IsEmpty());
    ExpectSameRows(**loaded, *source);
  }
}

// A `blocks` upload as the data directory makes for a restore.
std::unique_ptr<CollectionUpload> BlocksUpload(CollectionStore& store,
                                               uint64_t rows) {
  UploadOptions o;
  o.name = "docs";
  o.create = true;
  o.dimension = 24;
  o.rows = rows;
  o.with_ids = true;
  o.durable = false;
  o.blocks = true;
  return *store.BeginUpload(o);
}

TEST_F(SnapshotSplitLoadTest, MappedSegmentFilesKeepTheirRowsInPlace) {
  const std::string first = dir_ + "/first.engc";
  const std::string second = dir_ + "/second.engc";
  auto first_crc =
      WriteSegmentSnapshot("docs", *with_ids_->segments()[0], first);
  auto second_crc =
      WriteSegmentSnapshot("docs", *no_ids_->segments()[0], second);
  ASSERT_TRUE(first_crc.ok() && second_crc.ok());
  auto budget = MakeBudget();
  auto store = MakeStore(budget);
  auto upload = BlocksUpload(*store, 2 * kRows);
  ASSERT_TRUE(AppendSegmentSnapshot(first, {kRows, true, *first_crc}, 0,
                                    upload.get(), true, /*map=*/true)
                  .ok());
  ASSERT_TRUE(AppendSegmentSnapshot(second, {kRows, false, *second_crc}, kRows,
                                    upload.get(), true, /*map=*/true)
                  .ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  const Collection& c = **committed;
  ASSERT_EQ(c.rows(), 2 * kRows);
  ASSERT_THAT(c.segments(), ::testing::SizeIs(2));
  for (const auto& segment : c.segments()) {
    EXPECT_TRUE(segment->adopted());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(segment->vectors().data) % 64, 0u);
  }
  // The files can go (a delete removes them): the mappings keep the rows.
  ASSERT_EQ(std::remove(first.c_str()), 0);
  ASSERT_EQ(std::remove(second.c_str()), 0);
  for (int s = 0; s < 2; ++s) {
    const Segment& got = *c.segments()[s];
    const Segment& want = *(s == 0 ? with_ids_ : no_ids_)->segments()[0];
    EXPECT_EQ(std::memcmp(got.vectors().data, want.vectors().data,
                          kRows * kDim * sizeof(float)),
              0);
    EXPECT_THAT(got.norms(), ::testing::ElementsAreArray(want.norms()));
  }
  for (uint64_t r = 0; r < kRows; ++r) {
    EXPECT_EQ(c.IdOf(r), row_ids_[r]);
    EXPECT_EQ(c.IdOf(kRows + r), kRows + r);
  }
  EXPECT_TRUE(c.has_ids());
  // The mapped rows count against the budget as read ones do.
  EXPECT_EQ(c.bytes(), with_ids_->bytes() + no_ids_->bytes() + kRows * 8);
  EXPECT_EQ(budget->reserved_bytes(), c.bytes());
  ASSERT_TRUE(store->Delete("docs").ok());
  committed->reset();
  EXPECT_EQ(budget->reserved_bytes(), 0u);
}

TEST_F(SnapshotSplitLoadTest, AMappedFileThatFailsItsChecksLeavesNothing) {
  const std::string path = dir_ + "/segment.engc";
  auto crc = WriteSegmentSnapshot("docs", *with_ids_->segments()[0], path);
  ASSERT_TRUE(crc.ok());
  const std::string bytes = ReadAll(path);
  const SegmentFileLayout layout = LayOutSegmentFile("docs", kRows, kDim, true);
  // A flipped bit in the ids or the vectors, and a NaN with the checksums
  // made to match: DATA_LOSS, then the bad row named.
  std::string bad_id = bytes, bad_vector = bytes, nan = bytes;
  bad_id[layout.ids_offset + 17] ^= 0x04;
  bad_vector[layout.vectors_offset + 4 * (537 * kDim + 5)] ^= 0x10;
  const float value = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&nan[layout.vectors_offset + 4 * (537 * kDim + 5)], &value, 4);
  Reseal(&nan);
  const uint32_t nan_crc = LoadLittleEndian<uint32_t>(nan.data() + 24);
  for (const auto& [contents, code, what, expected_crc] :
       {std::make_tuple(bad_id, absl::StatusCode::kDataLoss,
                        std::string("payload checksum mismatch"), *crc),
        std::make_tuple(bad_vector, absl::StatusCode::kDataLoss,
                        std::string("payload checksum mismatch"), *crc),
        std::make_tuple(nan, absl::StatusCode::kInvalidArgument,
                        std::string("vectors row 537 contains a non-finite"),
                        nan_crc)}) {
    SCOPED_TRACE(what);
    WriteAll(path, contents);
    auto budget = MakeBudget();
    auto store = MakeStore(budget);
    auto upload = BlocksUpload(*store, kRows);
    const absl::Status status = AppendSegmentSnapshot(
        path, {kRows, true, expected_crc}, 0, upload.get(), true, /*map=*/true);
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_THAT(status.message(), HasSubstr(path));
    EXPECT_THAT(status.message(), HasSubstr(what));
    EXPECT_EQ(upload->rows_received(), 0u);
    EXPECT_FALSE(upload->Commit().ok());
    EXPECT_THAT(store->List(), IsEmpty());
    EXPECT_EQ(budget->reserved_bytes(), 0u);
  }
}

TEST_F(SnapshotSplitLoadTest, AFileWhoseRowsAreNotAlignedIsReadInstead) {
  // A whole-collection snapshot has no alignment entry: its vectors start
  // 8 bytes past a 64-byte offset here. Asked to map it, the loader reads
  // it into memory of the upload's own, with the same rows.
  auto store = MakeStore(MakeBudget());
  auto upload = BlocksUpload(*store, kRows);
  auto file = FileReader::Open(WithIdsPath());
  ASSERT_TRUE(file.ok());
  const uint32_t crc =
      LoadLittleEndian<uint32_t>(ReadAll(WithIdsPath()).data() + 24);
  ASSERT_NE(VectorOffset(0) % 64, 0u);
  ASSERT_TRUE(AppendSegmentSnapshot(WithIdsPath(), {kRows, true, crc}, 0,
                                    upload.get(), true, /*map=*/true)
                  .ok());
  auto committed = upload->Commit();
  ASSERT_TRUE(committed.ok()) << committed.status();
  ASSERT_THAT((*committed)->segments(), ::testing::SizeIs(1));
  EXPECT_FALSE((*committed)->segments()[0]->adopted());
  ExpectSameRows(**committed, *with_ids_);
}

}  // namespace
}  // namespace engram::collections
