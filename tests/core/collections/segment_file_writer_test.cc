#include "core/collections/segment_file_writer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/collections/atomic_file.h"
#include "core/collections/checksum.h"
#include "core/collections/little_endian.h"
#include "core/collections/snapshot.h"
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
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kDim = 24;

class SegmentFileWriterTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    with_ids_ = GetParam();
    values_ = engram::testing::RandomMatrix(kRows, kDim, 7);
    if (with_ids_) {
      for (uint64_t r = 0; r < kRows; ++r) ids_.push_back(1000 + 3 * r);
    }
  }

  SegmentFileWriter::Options Options(const std::string& file) const {
    SegmentFileWriter::Options options;
    options.path = dir_ + "/" + file;
    options.name = "docs";
    options.rows = kRows;
    options.dimension = kDim;
    options.with_ids = with_ids_;
    return options;
  }

  // Rows [first, first + n) as the writer takes them.
  absl::Status WriteRows(SegmentFileWriter& writer, uint64_t first,
                         uint64_t n) {
    return writer.Write(first, values_.data() + first * kDim,
                        with_ids_ ? ids_.data() + first : nullptr, n);
  }

  // The rows in uneven pieces, as the chunks of a stream arrive.
  absl::Status WriteAll(SegmentFileWriter& writer) {
    uint64_t first = 0;
    for (uint64_t n : {1, 50, 7, 200}) {
      if (absl::Status s = WriteRows(writer, first, n); !s.ok()) return s;
      first += n;
    }
    return WriteRows(writer, first, kRows - first);
  }

  static constexpr uint64_t kRows = 333;
  std::string dir_;
  bool with_ids_ = false;
  std::vector<float> values_;
  std::vector<uint64_t> ids_;
};

INSTANTIATE_TEST_SUITE_P(WithAndWithoutIds, SegmentFileWriterTest,
                         ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "WithIds" : "WithoutIds";
                         });

// The streamed file is byte for byte the file the whole segment makes when
// written at commit, so loading and the manifests need no second format.
TEST_P(SegmentFileWriterTest, AStreamedFileEqualsTheOneWrittenWhole) {
  auto store = MakeStore(MakeBudget());
  auto collection = Upload(*store, "docs", kDim, values_, ids_);
  ASSERT_TRUE(collection.ok()) << collection.status();
  auto whole = WriteSegmentSnapshot("docs", *(*collection)->segments()[0],
                                    dir_ + "/whole.seg");
  ASSERT_TRUE(whole.ok()) << whole.status();

  auto writer = SegmentFileWriter::Create(Options("streamed.seg"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteAll(**writer).ok());
  auto crc = (*writer)->Finish();
  ASSERT_TRUE(crc.ok()) << crc.status();
  EXPECT_EQ(*crc, *whole);
  EXPECT_EQ(ReadAll(dir_ + "/streamed.seg"), ReadAll(dir_ + "/whole.seg"));
}

TEST_P(SegmentFileWriterTest, TheHeaderHoldsTheCrc32cOfThePayload) {
  auto writer = SegmentFileWriter::Create(Options("docs.seg"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteAll(**writer).ok());
  auto crc = (*writer)->Finish();
  ASSERT_TRUE(crc.ok()) << crc.status();

  const std::string bytes = ReadAll(dir_ + "/docs.seg");
  ASSERT_EQ(bytes.size(),
            LayOutSegmentFile("docs", kRows, kDim, with_ids_).file_bytes);
  // Computed the plain way: one pass over the payload as it lies in the
  // file, which is the name, the metadata (one entry: the empty key, then
  // the zeros that put the vectors at a 64-byte offset), the ids (when
  // any), then the vectors.
  const std::string payload = bytes.substr(kSnapshotHeaderBytes);
  const size_t ids_bytes = ids_.size() * sizeof(uint64_t);
  const size_t zeros =
      (64 - (kSnapshotHeaderBytes + 4 + 8 + ids_bytes) % 64) % 64;
  std::string expected = "docs";
  expected.append(4, '\0');  // key length 0
  const uint32_t value_length = static_cast<uint32_t>(zeros);
  expected.append(reinterpret_cast<const char*>(&value_length), 4);
  expected.append(zeros, '\0');
  EXPECT_EQ((kSnapshotHeaderBytes + expected.size() + ids_bytes) % 64, 0u);
  expected.append(reinterpret_cast<const char*>(ids_.data()),
                  ids_.size() * sizeof(uint64_t));
  expected.append(reinterpret_cast<const char*>(values_.data()),
                  values_.size() * sizeof(float));
  EXPECT_EQ(payload, expected);
  EXPECT_EQ(LoadLittleEndian<uint32_t>(bytes.data() + 24),
            Crc32c(payload.data(), payload.size()));
  EXPECT_EQ(*crc, Crc32c(payload.data(), payload.size()));
}

TEST_P(SegmentFileWriterTest, TheFileAppearsUnderItsNameOnlyWhenFinished) {
  auto writer = SegmentFileWriter::Create(Options("docs.seg"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteRows(**writer, 0, 100).ok());
  const std::vector<std::string> during = ListDir(dir_);
  ASSERT_THAT(during, SizeIs(1));
  // What a crash now would leave: a leftover start-up removes.
  EXPECT_TRUE(IsAtomicWriteLeftover(during[0])) << during[0];
  ASSERT_TRUE(WriteRows(**writer, 100, kRows - 100).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_THAT(ListDir(dir_), ElementsAre("docs.seg"));
}

TEST_P(SegmentFileWriterTest, AnUnfinishedWriterRemovesItsFile) {
  {
    auto writer = SegmentFileWriter::Create(Options("docs.seg"));
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE(WriteRows(**writer, 0, 100).ok());
  }
  EXPECT_THAT(ListDir(dir_), IsEmpty());
}

TEST_P(SegmentFileWriterTest, FinishRefusesAFileMissingRows) {
  auto writer = SegmentFileWriter::Create(Options("docs.seg"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteRows(**writer, 0, kRows - 1).ok());
  const absl::Status finished = (*writer)->Finish().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(finished)) << finished;
  EXPECT_THAT(ListDir(dir_), IsEmpty());
}

TEST_P(SegmentFileWriterTest, RowsOutOfOrderAreRefused) {
  auto writer = SegmentFileWriter::Create(Options("docs.seg"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(WriteRows(**writer, 0, 10).ok());
  EXPECT_TRUE(absl::IsInternal(WriteRows(**writer, 20, 10)));
  EXPECT_TRUE(absl::IsInternal(WriteRows(**writer, 10, kRows)));
}

TEST(SegmentFileWriterCreateTest, AnUnwritableFolderIsRefusedAtOnce) {
  SegmentFileWriter::Options options;
  options.path = TestDir() + "/missing/docs.seg";
  options.name = "docs";
  options.rows = 4;
  options.dimension = kDim;
  const absl::Status created = SegmentFileWriter::Create(options).status();
  EXPECT_TRUE(absl::IsNotFound(created)) << created;
  EXPECT_THAT(created.message(), ::testing::HasSubstr("missing"));
}

}  // namespace
}  // namespace engram::collections
