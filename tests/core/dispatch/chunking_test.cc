#include "core/dispatch/chunking.h"

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/dispatch/backend_errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::dispatch {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class ChunkingTest : public ::testing::Test {};

// Chunk function returning item indices, failing on the chunk starting at
// `fail_at` (when set).
auto Identity(size_t fail_at = std::numeric_limits<size_t>::max(),
              absl::Status error = absl::InternalError("device fault")) {
  return [fail_at, error](size_t begin,
                          size_t end) -> absl::StatusOr<std::vector<size_t>> {
    if (begin == fail_at) return error;
    std::vector<size_t> out;
    for (size_t i = begin; i < end; ++i) out.push_back(i);
    return out;
  };
}

TEST_F(ChunkingTest, RunChunksCoversTheRangeInOrder) {
  std::vector<std::pair<size_t, size_t>> ranges;
  std::vector<size_t> indices;
  ASSERT_TRUE(RunChunks(10, 4, [&](size_t index, size_t begin, size_t end) {
                indices.push_back(index);
                ranges.emplace_back(begin, end);
                return absl::OkStatus();
              }).ok());
  EXPECT_THAT(ranges, ElementsAre(Pair(0, 4), Pair(4, 8), Pair(8, 10)));
  EXPECT_THAT(indices, ElementsAre(0, 1, 2));
}

TEST_F(ChunkingTest, HandlesExtremeSizes) {
  int calls = 0;
  auto count = [&](size_t, size_t, size_t) {
    ++calls;
    return absl::OkStatus();
  };
  EXPECT_TRUE(RunChunks(0, 4, count).ok());
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(RunChunks(1, 1, count).ok());
  EXPECT_EQ(calls, 1);
  // A chunk size far above the total, even SIZE_MAX, is one chunk.
  EXPECT_TRUE(RunChunks(7, std::numeric_limits<size_t>::max(), count).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(RunChunks(5, 0, count).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ChunkingTest, ProcessInChunksReturnsEveryResultInOrder) {
  absl::StatusOr<std::vector<size_t>> all =
      ProcessInChunks<size_t>(10, 3, Identity());
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(*all, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
}

// The original panicked or silently dropped rows when one chunk failed.
TEST_F(ChunkingTest, PartialFailureKeepsFinishedChunksAndReportsTheIndex) {
  PartialChunkResults<size_t> partial;
  absl::StatusOr<std::vector<size_t>> all = ProcessInChunks<size_t>(
      10, 3, Identity(/*fail_at=*/6, absl::UnavailableError("lost device")),
      &partial);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(all.status().message(), HasSubstr("chunk 2 (items [6, 9))"));
  EXPECT_THAT(all.status().message(), HasSubstr("lost device"));
  EXPECT_EQ(FailedChunkIndex(all.status()), 2u);
  EXPECT_EQ(partial.failure.chunk_index, 2u);
  EXPECT_EQ(partial.failure.begin, 6u);
  EXPECT_EQ(partial.failure.end, 9u);
  EXPECT_EQ(partial.failure.error.message(), "lost device");
  EXPECT_THAT(partial.finished, ElementsAre(0, 1, 2, 3, 4, 5));
}

TEST_F(ChunkingTest, WrongSizeChunkResultIsAnErrorNotAPanic) {
  PartialChunkResults<int> partial;
  absl::StatusOr<std::vector<int>> all = ProcessInChunks<int>(
      8, 4,
      [](size_t begin, size_t end) -> absl::StatusOr<std::vector<int>> {
        // The second chunk comes back one short.
        return std::vector<int>(begin == 0 ? end - begin : end - begin - 1, 1);
      },
      &partial);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(all.status().message(), HasSubstr("3 results for 4 items"));
  EXPECT_EQ(FailedChunkIndex(all.status()), 1u);
  EXPECT_EQ(partial.finished.size(), 4u);
}

TEST_F(ChunkingTest, TooManyResultsIsAnErrorToo) {
  absl::StatusOr<std::vector<int>> all = ProcessInChunks<int>(
      2, 2, [](size_t begin, size_t end) -> absl::StatusOr<std::vector<int>> {
        return std::vector<int>(end - begin + 1, 0);
      });
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInternal);
}

TEST_F(ChunkingTest, ChunkErrorKeepsTheErrorsClass) {
  PartialChunkResults<size_t> partial;
  absl::StatusOr<std::vector<size_t>> oom = ProcessInChunks<size_t>(
      4, 2, Identity(2, DeviceOutOfMemoryError("cudaMalloc")), &partial);
  EXPECT_EQ(ClassifyBackendError(oom.status()),
            BackendErrorClass::kOutOfMemory);
  absl::StatusOr<std::vector<size_t>> sticky = ProcessInChunks<size_t>(
      4, 2, Identity(0, StickyDeviceError("illegal address")));
  EXPECT_EQ(ClassifyBackendError(sticky.status()), BackendErrorClass::kSticky);
  EXPECT_EQ(FailedChunkIndex(sticky.status()), 0u);
  EXPECT_FALSE(FailedChunkIndex(absl::InternalError("plain")).has_value());
}

TEST_F(ChunkingTest, CosineFootprintCountsInputsOutputsAndWorkspace) {
  // Q=10, N=100, d=8.
  JobFootprint dense = CosineFootprint(10, 100, 8, /*top_k=*/0);
  EXPECT_TRUE(dense.splittable);
  EXPECT_EQ(dense.items, 10u);
  EXPECT_EQ(dense.fixed_bytes, 100u * 9 * 4);         // targets and norms
  EXPECT_EQ(dense.per_item_bytes, 9u * 4 + 100 * 4);  // row, norm, scores
  JobFootprint top = CosineFootprint(10, 100, 8, /*top_k=*/5);
  EXPECT_EQ(top.per_item_bytes, dense.per_item_bytes + 5 * 8);
  EXPECT_EQ(top.TotalBytes(), top.fixed_bytes + 10 * top.per_item_bytes);
}

TEST_F(ChunkingTest, ResidentTargetsAreLeftOutOfTheCosineFootprint) {
  const JobFootprint staged = CosineFootprint(10, 100, 8, /*top_k=*/5);
  const JobFootprint resident =
      CosineFootprint(10, 100, 8, /*top_k=*/5, /*targets_resident=*/true);
  EXPECT_EQ(resident.fixed_bytes, 0u);
  EXPECT_EQ(resident.per_item_bytes, staged.per_item_bytes);
  EXPECT_EQ(resident.items, staged.items);
  CosineJob job;
  std::vector<float> q(10 * 8), t(100 * 8);
  job.queries = kernels::MatrixView{q.data(), 10, 8};
  job.targets = kernels::MatrixView{t.data(), 100, 8};
  job.top_k = 5;
  job.resident_targets = 7;
  // The job's field alone does not make its targets resident: the caller
  // says whether the device holds them.
  EXPECT_EQ(CosineFootprint(job).fixed_bytes, staged.fixed_bytes);
  EXPECT_EQ(CosineFootprint(job, true).fixed_bytes, 0u);
}

TEST_F(ChunkingTest, ResidentFootprintCountsRowsNormsAndTheRescoreList) {
  // 100 x 8 floats, 100 float64 inverse norms, a count and 100 row indices.
  EXPECT_EQ(ResidentFootprintBytes(100, 8), 100u * 8 * 4 + 100 * 8 + 101 * 4);
  EXPECT_EQ(ResidentFootprintBytes(uint64_t{1} << 62, uint64_t{1} << 10),
            std::numeric_limits<uint64_t>::max());
}

TEST_F(ChunkingTest, AMaskedCosineFootprintCountsTheAdmittedRowsAndTheMask) {
  CosineJob job;
  std::vector<float> q(10 * 8), t(100 * 8);
  job.queries = kernels::MatrixView{q.data(), 10, 8};
  job.targets = kernels::MatrixView{t.data(), 100, 8};
  // Rows 0, 3, 6, ...: 34 of 100.
  std::vector<uint64_t> words(2, 0);
  for (size_t r = 0; r < 100; r += 3) words[r / 64] |= uint64_t{1} << (r % 64);
  job.mask = kernels::RowMask{words.data(), 0, 100};
  ASSERT_EQ(job.scored_targets(), 34u);
  EXPECT_EQ(job.work(), 10u * 34 * 8);
  const JobFootprint admitted = CosineFootprint(10, 34, 8, /*top_k=*/0);
  const JobFootprint masked = CosineFootprint(job);
  EXPECT_EQ(masked.per_item_bytes, admitted.per_item_bytes);
  EXPECT_EQ(masked.fixed_bytes,
            admitted.fixed_bytes + RowMaskFootprintBytes(100, 34));
  // Two words and their counts, and 34 row indices.
  EXPECT_EQ(RowMaskFootprintBytes(100, 34), 2u * (8 + 4) + 34 * 4);
  EXPECT_EQ(CosineFootprint(job, /*targets_resident=*/true).fixed_bytes,
            RowMaskFootprintBytes(100, 34));
}

TEST_F(ChunkingTest, SpreadFootprintIsOneUnit) {
  std::vector<uint32_t> offsets = {0, 2, 3, 3};
  std::vector<uint32_t> targets = {1, 2, 2};
  std::vector<float> weights = {0.5f, 0.5f, 1.0f};
  std::vector<kernels::SpreadSeed> seeds = {{0, 1.0f}};
  SpreadJob job;
  job.graph = kernels::GraphView{3, offsets, targets, weights};
  job.seeds = seeds;
  JobFootprint f = SpreadFootprint(job);
  EXPECT_FALSE(f.splittable);
  EXPECT_EQ(f.items, 1u);
  EXPECT_EQ(f.TotalBytes(), 4u * 4 + 3 * 8 + 1 * 8 + 3 * 16);
  EXPECT_EQ(ItemsThatFit(f, f.TotalBytes()), 1u);
  EXPECT_EQ(ItemsThatFit(f, f.TotalBytes() - 1), 0u);
}

TEST_F(ChunkingTest, ItemsThatFitRespectsTheBudget) {
  JobFootprint f;
  f.fixed_bytes = 1000;
  f.per_item_bytes = 100;
  f.items = 50;
  EXPECT_EQ(ItemsThatFit(f, 999), 0u);
  EXPECT_EQ(ItemsThatFit(f, 1000), 0u);
  EXPECT_EQ(ItemsThatFit(f, 1099), 0u);
  EXPECT_EQ(ItemsThatFit(f, 1100), 1u);
  EXPECT_EQ(ItemsThatFit(f, 3050), 20u);
  EXPECT_EQ(ItemsThatFit(f, 1 << 30), 50u);  // never more than the job
}

TEST_F(ChunkingTest, FootprintArithmeticSaturatesInsteadOfWrapping) {
  const uint64_t big = uint64_t{1} << 40;
  JobFootprint f = CosineFootprint(big, big, big, 0);
  EXPECT_EQ(f.fixed_bytes, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.TotalBytes(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(ItemsThatFit(f, uint64_t{1} << 62), 0u);
}

}  // namespace
}  // namespace engram::dispatch
