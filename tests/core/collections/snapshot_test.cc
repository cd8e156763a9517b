#include "core/collections/snapshot.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
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
  const kernels::GraphView& v = (*loaded)->view();
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

}  // namespace
}  // namespace engram::collections
