#include "core/collections/declarations.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/collections/snapshot.h"
#include "core/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/collections/test_util.h"

namespace engram::collections {
namespace {

using ::engram::collections::testing::MakeBudget;
using ::engram::collections::testing::MakeStore;
using ::engram::collections::testing::ReadAll;
using ::engram::collections::testing::TestDir;
using ::engram::collections::testing::Upload;
using ::engram::collections::testing::WriteAll;
using ::testing::HasSubstr;

TEST(DeclarationsTest, ParsesSectionsAndKeys) {
  auto d = ParseDeclarations(R"(
# resident data
[collection products]
path = /data/products.npy   # verified by its sidecar
[graph kg]
path = kg.engg
format = snapshot

[collection faq]
format = auto
path = faq.engc
)");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 3u);
  EXPECT_EQ((*d)[0].kind, ResidentKind::kCollection);
  EXPECT_EQ((*d)[0].name, "products");
  EXPECT_EQ((*d)[0].path, "/data/products.npy");
  EXPECT_EQ((*d)[0].format, FileFormat::kAuto);
  EXPECT_EQ((*d)[0].line, 3);
  EXPECT_EQ((*d)[1].kind, ResidentKind::kGraph);
  EXPECT_EQ((*d)[1].format, FileFormat::kSnapshot);
  EXPECT_EQ((*d)[2].path, "faq.engc");
  EXPECT_TRUE(ParseDeclarations("# nothing\n\n").ok());
}

TEST(DeclarationsTest, MistakesAreInvalidArgumentNamingTheLine) {
  struct Case {
    const char* text;
    const char* what;
  };
  const Case cases[] = {
      {"path = x", "line 1: path is outside"},
      {"[collection a]\npath = x\ncolour = red", "line 3: unknown key"},
      {"[collection a]\npath = x\npath = y", "line 3: path is set twice"},
      {"[collection a]\n[collection b]\npath = x",
       "line 2: the section of "
       "line 1 has no path"},
      {"[collection a]\nformat = npy", "line 1: the section has no path"},
      {"[collection a]\npath = x\n[collection a]\npath = y",
       "line 3: collection \"a\" is declared twice"},
      {"[table a]\npath = x", "line 1: sections are written"},
      {"[collection a/b]\npath = x", "line 1: NAME"},
      {"[collection a]\npath = x\nformat = csv", "line 3: format must be"},
      {"[collection a\npath = x", "line 1: unclosed"},
      {"[collection a]\npath", "line 2: expected key = value"},
      {"[collection a]\npath = ", "line 2: path has no value"},
  };
  for (const Case& c : cases) {
    auto d = ParseDeclarations(c.text);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(d.status().message(), HasSubstr(c.what)) << c.text;
  }
  // The same name may be a collection and a graph.
  EXPECT_TRUE(
      ParseDeclarations("[collection a]\npath = x\n[graph a]\npath = y").ok());
}

class LoadDeclaredTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    auto source = MakeStore(MakeBudget());
    auto c = Upload(*source, "docs", 4, std::vector<float>(40, 0.25f));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(WriteCollectionSnapshot(**c, dir_ + "/good.engc").ok());
    std::string bytes = ReadAll(dir_ + "/good.engc");
    bytes[bytes.size() - 3] ^= 0x01;
    WriteAll(dir_ + "/corrupt.engc", bytes);

    GraphStore::Options go;
    go.budget = budget_;
    go.validate = [](const kernels::GraphView& g) {
      dispatch::SpreadJob job;
      job.graph = g;
      return core::ValidateSpreadJob(job, core::RequestLimits());
    };
    graphs_ = *GraphStore::Create(go);
    std::vector<uint32_t> offsets = {0, 1, 1};
    std::vector<uint32_t> targets = {1};
    std::vector<float> weights = {0.5f};
    auto g =
        graphs_->Put("tmp", kernels::GraphView{2, offsets, targets, weights});
    ASSERT_TRUE(g.ok());
    ASSERT_TRUE(WriteGraphSnapshot(**g, dir_ + "/kg.engg").ok());
    ASSERT_TRUE(graphs_->Delete("tmp").ok());
  }

  std::string dir_;
  std::shared_ptr<MemoryBudget> budget_ = MakeBudget();
  std::unique_ptr<CollectionStore> collections_ = MakeStore(budget_);
  std::unique_ptr<GraphStore> graphs_;
};

TEST_F(LoadDeclaredTest, LoadsEveryGoodEntryAndReportsEachBadOne) {
  WriteAll(dir_ + "/resident.conf", R"(
[collection good]
path = good.engc
[collection corrupt]
path = corrupt.engc
[collection missing]
path = missing.npy
[graph kg]
path = kg.engg
[collection wrongkind]
path = kg.engg
)");
  auto declarations = LoadDeclarationsFile(dir_ + "/resident.conf");
  ASSERT_TRUE(declarations.ok()) << declarations.status();
  EXPECT_EQ((*declarations)[0].path, dir_ + "/good.engc");

  const std::vector<LoadOutcome> outcomes =
      LoadDeclared(*declarations, collections_.get(), graphs_.get());
  ASSERT_EQ(outcomes.size(), 5u);
  EXPECT_TRUE(outcomes[0].status.ok()) << outcomes[0].status;
  EXPECT_EQ(outcomes[0].format, FileFormat::kSnapshot);
  EXPECT_EQ(outcomes[0].verified_by, "crc32c");
  EXPECT_EQ(outcomes[0].rows, 10u);
  EXPECT_GT(outcomes[0].bytes, 0u);

  EXPECT_EQ(outcomes[1].status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(outcomes[1].status.message(), HasSubstr("corrupt.engc"));
  EXPECT_EQ(outcomes[2].status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(outcomes[2].status.message(), HasSubstr("missing.npy"));
  EXPECT_TRUE(outcomes[3].status.ok()) << outcomes[3].status;
  EXPECT_EQ(outcomes[3].rows, 2u);
  EXPECT_EQ(outcomes[4].status.code(), absl::StatusCode::kInvalidArgument);

  // Only the good entries are visible.
  ASSERT_EQ(collections_->List().size(), 1u);
  EXPECT_EQ(collections_->List()[0].name, "good");
  EXPECT_EQ(collections_->List()[0].source, dir_ + "/good.engc");
  EXPECT_TRUE(graphs_->Get("kg").ok());
}

TEST_F(LoadDeclaredTest, AGraphWithoutAGraphStoreFailsOnlyItself) {
  auto d = ParseDeclarations("[graph kg]\npath = " + dir_ +
                             "/kg.engg\n[collection c]\npath = " + dir_ +
                             "/good.engc");
  ASSERT_TRUE(d.ok());
  auto outcomes = LoadDeclared(*d, collections_.get(), nullptr);
  EXPECT_EQ(outcomes[0].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(outcomes[1].status.ok());
}

TEST_F(LoadDeclaredTest, MissingDeclarationsFileIsNotFound) {
  EXPECT_EQ(LoadDeclarationsFile(dir_ + "/none.conf").status().code(),
            absl::StatusCode::kNotFound);
  WriteAll(dir_ + "/bad.conf", "[collection a]\n");
  auto bad = LoadDeclarationsFile(dir_ + "/bad.conf");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("bad.conf"));
}

}  // namespace
}  // namespace engram::collections
