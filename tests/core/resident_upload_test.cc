#include "core/resident_upload.h"

#include <memory>
#include <vector>

#include "core/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace engram::core {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kDim = 8;

class ResidentUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Engine::Options options;
    options.worker_threads = 1;
    auto engine =
        Engine::Create(options, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }
  collections::CollectionStore& store() {
    return engine_->resident().collections();
  }
  std::unique_ptr<collections::CollectionUpload> Begin(uint64_t rows) {
    collections::UploadOptions options;
    options.name = "docs";
    options.create = true;
    options.dimension = kDim;
    options.rows = rows;
    auto upload = store().BeginUpload(options);
    EXPECT_TRUE(upload.ok()) << upload.status();
    return upload.ok() ? *std::move(upload) : nullptr;
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(ResidentUploadTest, HeaderNeedsANameRowsAndMetadataOnlyOnCreate) {
  collections::UploadOptions options;
  options.name = "docs";
  options.create = true;
  options.rows = 1;
  options.metadata = {{"k", "v"}};
  EXPECT_TRUE(ValidateUploadHeader(options).ok());

  collections::UploadOptions nameless = options;
  nameless.name.clear();
  EXPECT_THAT(ValidateUploadHeader(nameless).message(),
              HasSubstr("header.name is required"));

  collections::UploadOptions empty = options;
  empty.rows = 0;
  EXPECT_THAT(ValidateUploadHeader(empty).message(),
              HasSubstr("header.total_rows must be >= 1"));

  collections::UploadOptions append = options;
  append.create = false;
  const absl::Status status = ValidateUploadHeader(append);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("header.metadata"));
}

TEST_F(ResidentUploadTest, AppendVectorsTakesWholeRowsOnly) {
  auto upload = Begin(3);
  ASSERT_NE(upload, nullptr);
  const std::vector<float> values = testing::RandomMatrix(3, kDim, 1);
  const absl::Status ragged =
      AppendVectors(*upload, absl::MakeConstSpan(values.data(), kDim + 1), {});
  EXPECT_EQ(ragged.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ragged.message(),
              HasSubstr("chunk.vectors has 9 values, expected a positive "
                        "multiple of the dimension 8"));
  EXPECT_FALSE(AppendVectors(*upload, {}, {}).ok());
  EXPECT_EQ(upload->rows_received(), 0u);

  ASSERT_TRUE(AppendVectors(*upload, values, {}).ok());
  EXPECT_EQ(upload->rows_received(), 3u);
  auto committed = CommitUpload(*upload);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ((*committed)->rows(), 3u);
}

TEST_F(ResidentUploadTest, ShortStreamIsRefusedAndStoresNothing) {
  auto upload = Begin(4);
  ASSERT_NE(upload, nullptr);
  const std::vector<float> values = testing::RandomMatrix(3, kDim, 2);
  ASSERT_TRUE(AppendVectors(*upload, values, {}).ok());
  auto committed = CommitUpload(*upload);
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(committed.status().message(),
              HasSubstr("header.total_rows: the stream ended after 3 of 4 "
                        "rows; nothing was stored"));
  EXPECT_EQ(store().Get("docs").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ResidentUploadTest, GraphChunkNeedsAWeightPerTarget) {
  collections::GraphPutOptions options;
  options.name = "g";
  options.num_nodes = 2;
  options.num_edges = 1;
  auto put = engine_->resident().graphs().BeginPut(options);
  ASSERT_TRUE(put.ok()) << put.status();
  const std::vector<uint32_t> offsets = {0, 1, 1};
  const std::vector<uint32_t> targets = {1};
  const std::vector<float> weights = {0.5f, 0.25f};
  const absl::Status mismatched =
      AppendGraphChunk(**put, offsets, targets, weights);
  EXPECT_EQ(mismatched.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatched.message(),
              HasSubstr("chunk.weights has 2 entries, expected one per "
                        "chunk.targets entry (1)"));

  ASSERT_TRUE(AppendGraphChunk(**put, offsets, {}, {}).ok());
  ASSERT_TRUE(AppendGraphChunk(**put, {}, targets,
                               absl::MakeConstSpan(weights).first(1))
                  .ok());
  auto graph = (*put)->Commit();
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ((*graph)->num_nodes(), 2u);
}

}  // namespace
}  // namespace engram::core
