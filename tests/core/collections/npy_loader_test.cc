#include "core/collections/npy_loader.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/collections/checksum.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::MakeStore;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::WriteAll;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A .npy file as numpy.save writes it, with the header dict given.
std::string Npy(const std::string& dict, const std::vector<float>& values,
                int major = 1) {
  std::string header = dict;
  const size_t preamble = major == 1 ? 10 : 12;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  for (size_t i = 0; i < preamble - 8; ++i) {
    out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  }
  out += header;
  out.append(reinterpret_cast<const char*>(values.data()),
             values.size() * sizeof(float));
  return out;
}

std::string Dict(const std::string& shape, const std::string& descr = "<f4",
                 const std::string& order = "False") {
  return absl::StrCat("{'descr': '", descr, "', 'fortran_order': ", order,
                      ", 'shape': ", shape, ", }");
}

class NpyLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TestDir(); }

  std::string Write(const std::string& bytes) {
    const std::string path = dir_ + "/data.npy";
    WriteAll(path, bytes);
    return path;
  }

  absl::StatusOr<NpyLoadResult> Load(const std::string& path) {
    return LoadNpyCollection(path, "vecs", store_.get());
  }

  std::string dir_;
  std::vector<float> values_ = {1, 2, 3, 4, 5, 6};
  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  std::unique_ptr<CollectionStore> store_ = MakeStore(budget_);
};

TEST_F(NpyLoaderTest, ParsesTheHeader) {
  const std::string v1_bytes = Npy(Dict("(2, 3)"), values_);
  auto h = ParseNpyHeader(v1_bytes);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->rows, 2u);
  EXPECT_EQ(h->cols, 3u);
  EXPECT_EQ(h->data_offset, v1_bytes.size() - 6 * sizeof(float));
  EXPECT_EQ(h->data_offset % 64, 0u);
  const std::string v2_bytes = Npy(Dict("(2, 3)"), values_, 2);
  auto v2 = ParseNpyHeader(v2_bytes);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->data_offset, v2_bytes.size() - 6 * sizeof(float));
}

TEST_F(NpyLoaderTest, LoadsAFloat32MatrixUnverifiedWithoutASidecar) {
  auto loaded = Load(Write(Npy(Dict("(2, 3)"), values_)));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->sha256_verified);
  const Collection& c = *loaded->collection;
  EXPECT_EQ(c.name(), "vecs");
  EXPECT_EQ(c.rows(), 2u);
  EXPECT_EQ(c.dimension(), 3u);
  const kernels::MatrixView& m = c.segments()[0]->vectors();
  EXPECT_EQ(std::vector<float>(m.data, m.data + 6), values_);
  EXPECT_EQ(c.IdOf(1), 1u);
}

TEST_F(NpyLoaderTest, RefusesWhatIsNotAPlainFloat32Matrix) {
  struct Case {
    std::string dict;
    std::string what;
  };
  const Case cases[] = {
      {Dict("(2, 3)", "<f8"), "dtype '<f8'"},
      {Dict("(2, 3)", ">f4"), "dtype '>f4'"},
      {Dict("(2, 3)", "<f4", "True"), "fortran_order True"},
      {Dict("(6,)"), "has 1 dimensions"},
      {Dict("(1, 2, 3)"), "has 3 dimensions"},
      {Dict("(0, 3)"), "empty"},
      {"{'descr': '<f4'}", "missing key 'fortran_order'"},
  };
  for (const Case& c : cases) {
    auto loaded = Load(Write(Npy(c.dict, values_)));
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << c.dict;
    EXPECT_THAT(loaded.status().message(), HasSubstr(c.what));
    EXPECT_THAT(loaded.status().message(), HasSubstr("data.npy"));
  }
  auto magic = Load(Write("PK\x03\x04 not numpy"));
  EXPECT_EQ(magic.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(magic.status().message(), HasSubstr("magic"));
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(NpyLoaderTest, TruncatedFilesAreDataLoss) {
  const std::string whole = Npy(Dict("(2, 3)"), values_);
  for (size_t keep : {size_t{5}, size_t{9}, size_t{40}, whole.size() - 1}) {
    auto loaded = Load(Write(whole.substr(0, keep)));
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << keep;
    EXPECT_THAT(loaded.status().message(), HasSubstr("truncated"));
  }
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
}

TEST_F(NpyLoaderTest, AMatchingSidecarVerifiesTheFile) {
  const std::string bytes = Npy(Dict("(2, 3)"), values_);
  const std::string path = Write(bytes);
  Sha256 sha;
  sha.Update(bytes);
  WriteAll(path + ".sha256", absl::StrCat(sha.FinishHex(), "  data.npy\n"));
  auto loaded = Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->sha256_verified);
}

TEST_F(NpyLoaderTest, AMismatchingSidecarLoadsNothing) {
  std::string bytes = Npy(Dict("(2, 3)"), values_);
  const std::string path = Write(bytes);
  Sha256 sha;
  sha.Update(bytes);
  WriteAll(path + ".sha256", sha.FinishHex());
  bytes[bytes.size() - 1] ^= 0x7f;  // the last value becomes NaN
  WriteAll(path, bytes);
  auto loaded = Load(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(loaded.status().message(), HasSubstr("SHA-256 mismatch"));
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_EQ(budget_->reserved_bytes(), 0u);
  WriteAll(path + ".sha256", "not a digest");
  EXPECT_EQ(Load(path).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(NpyLoaderTest, NonFiniteValuesAreInvalidArgument) {
  std::vector<float> bad = values_;
  bad[4] = std::numeric_limits<float>::infinity();
  auto loaded = Load(Write(Npy(Dict("(2, 3)"), bad)));
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("row 1 contains a non-finite value at column 1"));
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(NpyLoaderTest, OverBudgetIsRefusedBeforeLoading) {
  auto budget = MakeBudget(10);
  auto store = MakeStore(budget);
  auto loaded =
      LoadNpyCollection(Write(Npy(Dict("(2, 3)"), values_)), "v", store.get());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(budget->reserved_bytes(), 0u);
}

TEST_F(NpyLoaderTest, LargeFilesStreamInSteps) {
  std::vector<float> big(3000 * 700);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 97);
  auto loaded = Load(Write(Npy(Dict("(3000, 700)"), big)));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const kernels::MatrixView& m = loaded->collection->segments()[0]->vectors();
  EXPECT_EQ(std::vector<float>(m.data, m.data + big.size()), big);
}

}  // namespace
}  // namespace engram::collections
