// GpuContext's masked cosine calls on a real GPU (ctest label gpu), against
// the CPU kernels' masked results (kernels/cpu/cosine.h): copied targets
// (gathered on the host) and resident ones (the mask expanded and the rows
// gathered on the device), the fused kernel and cuBLAS, one tile and many.
// Every test skips, saying why, without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/gpu_device.h"
#include "kernels/types.h"
#include "tests/testing/random_data.h"

namespace engram::kernels {
namespace {

constexpr float kNoMin = -std::numeric_limits<float>::infinity();

// float32 dot products summed in another order than the CPU's.
bool Near(float a, float b) {
  return std::abs(a - b) <= std::max(1e-5f * std::abs(b), 1e-6f);
}

class GpuMaskedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = ListGpuDevices();
    if (devices.ok()) return;
    // scripts/gpu-check.sh sets it: on the GPU machine a skip is a failure.
    if (std::getenv("ENGRAM_REQUIRE_GPU") != nullptr) {
      FAIL() << "ENGRAM_REQUIRE_GPU is set but there is no GPU: "
             << devices.status().message();
    }
    GTEST_SKIP() << "no GPU: " << devices.status().message();
  }

  static std::unique_ptr<GpuContext> Make(
      const GpuContext::Options& options = GpuContext::Options()) {
    auto context = GpuContext::Create(options);
    EXPECT_TRUE(context.ok()) << context.status();
    return context.ok() ? *std::move(context) : nullptr;
  }
};

std::vector<testing::OwnedRowMask> Masks(size_t n, uint64_t seed) {
  std::vector<testing::OwnedRowMask> masks;
  masks.push_back(testing::RowMaskOf(std::vector<bool>(n, true), 3));
  std::vector<bool> alternate(n);
  for (size_t r = 1; r < n; r += 2) alternate[r] = true;
  masks.push_back(testing::RowMaskOf(alternate, 64));
  for (double density : {0.01, 0.2, 0.7}) {
    masks.push_back(testing::RandomRowMask(n, density, 37, ++seed));
  }
  return masks;
}

// Dense: the GPU's compacted scores against the CPU's, Q x M.
void ExpectDenseNear(const std::vector<float>& gpu,
                     const std::vector<float>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  int failures = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (!Near(gpu[i], cpu[i]) && ++failures <= 5) {
      ADD_FAILURE() << "score " << i << ": GPU " << gpu[i] << ", CPU "
                    << cpu[i];
    }
  }
  EXPECT_EQ(failures, 0);
}

// Top-k: the same lengths, scores within rounding rank by rank, and each
// GPU entry an admitted row whose CPU score (dense, compacted) it matches;
// where scores tie within rounding the two may order rows differently.
void ExpectTopKNear(const std::vector<TopKList>& gpu,
                    const std::vector<TopKList>& cpu,
                    const std::vector<float>& cpu_dense,
                    const testing::OwnedRowMask& owned, uint32_t index_offset) {
  std::vector<int64_t> column(owned.admitted.size(), -1);
  int64_t next = 0;
  for (size_t r = 0; r < owned.admitted.size(); ++r) {
    if (owned.admitted[r]) column[r] = next++;
  }
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t j = 0; j < gpu.size(); ++j) {
    ASSERT_EQ(gpu[j].size(), cpu[j].size()) << "query " << j;
    for (size_t i = 0; i < gpu[j].size(); ++i) {
      EXPECT_TRUE(Near(gpu[j][i].score, cpu[j][i].score))
          << "query " << j << " rank " << i;
      const uint32_t row = gpu[j][i].index - index_offset;
      ASSERT_LT(row, column.size());
      ASSERT_GE(column[row], 0) << "row " << row << " is not admitted";
      EXPECT_TRUE(Near(gpu[j][i].score,
                       cpu_dense[j * static_cast<size_t>(next) + column[row]]))
          << "query " << j << " row " << row;
    }
  }
}

// Runs every mask through `gpu` (resident under `key` when non-zero) and
// the CPU, dense and top-k, and compares.
void CompareWithTheCpu(GpuContext& gpu, const std::vector<float>& q, size_t nq,
                       const std::vector<float>& t, size_t n, size_t d,
                       uint64_t key, uint64_t seed) {
  const MatrixView queries{q.data(), nq, d};
  const MatrixView targets{t.data(), n, d};
  for (const testing::OwnedRowMask& owned : Masks(n, seed)) {
    const size_t m = owned.count();
    SCOPED_TRACE(absl::StrCat("Q=", nq, " N=", n, " d=", d, " ", m,
                              " admitted, offset ", owned.offset,
                              key != 0 ? " resident" : " copied"));
    std::vector<float> cpu_dense(nq * m), gpu_dense(nq * m, std::nanf(""));
    ASSERT_TRUE(cpu::CosineDense(queries, targets, owned.mask(),
                                 cpu_dense.data(), m, 0, nullptr)
                    .ok());
    const absl::Status dense = gpu.CosineDense(queries, targets, owned.mask(),
                                               gpu_dense.data(), m, 0, key);
    ASSERT_TRUE(dense.ok()) << dense;
    ExpectDenseNear(gpu_dense, cpu_dense);
    for (uint32_t k : {1u, 10u, static_cast<uint32_t>(n + 1)}) {
      std::vector<TopKList> cpu_top, gpu_top;
      ASSERT_TRUE(cpu::CosineTopK(queries, targets, owned.mask(), k, kNoMin,
                                  100, nullptr, &cpu_top)
                      .ok());
      const absl::Status top = gpu.CosineTopK(queries, targets, owned.mask(), k,
                                              kNoMin, 100, &gpu_top, key);
      ASSERT_TRUE(top.ok()) << top;
      ExpectTopKNear(gpu_top, cpu_top, cpu_dense, owned, 100);
    }
  }
}

TEST_F(GpuMaskedTest, CopiedTargetsMatchTheCpuMaskedResult) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  uint64_t seed = 1;
  // Q = 3 takes the fused kernel, Q = 40 cuBLAS when it loaded; d = 33 the
  // scalar loads.
  for (size_t nq : {size_t{3}, size_t{40}}) {
    for (size_t d : {size_t{64}, size_t{33}}) {
      const auto q = testing::RandomMatrix(nq, d, ++seed);
      const auto t = testing::RandomMatrix(2000, d, ++seed);
      CompareWithTheCpu(*gpu, q, nq, t, 2000, d, 0, ++seed);
    }
  }
}

TEST_F(GpuMaskedTest, ResidentTargetsMatchTheCpuMaskedResult) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  uint64_t seed = 50;
  uint64_t key = 0;
  for (size_t nq : {size_t{3}, size_t{40}}) {
    for (size_t d : {size_t{64}, size_t{33}}) {
      const auto q = testing::RandomMatrix(nq, d, ++seed);
      auto t = testing::RandomMatrix(2000, d, ++seed);
      // A zero row and a tiny one, for the float64 rescore of a gathered
      // tile.
      for (size_t c = 0; c < d; ++c) {
        t[5 * d + c] = 0.0f;
        t[11 * d + c] *= 1e-22f;
      }
      ASSERT_TRUE(
          gpu->UploadResident(++key, MatrixView{t.data(), 2000, d}).ok());
      const uint64_t hits = gpu->ResidentStats().hits;
      CompareWithTheCpu(*gpu, q, nq, t, 2000, d, key, ++seed);
      EXPECT_GT(gpu->ResidentStats().hits, hits) << "the copy was not read";
    }
  }
}

// Staging for a few rows at a time: many tiles, each gathered, on both
// paths.
TEST_F(GpuMaskedTest, ManySmallTilesGiveTheSameResult) {
  GpuContext::Options options;
  options.staging_bytes = size_t{64} << 10;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  const size_t n = 5000, d = 256;
  const auto q = testing::RandomMatrix(5, d, 80);
  const auto t = testing::RandomMatrix(n, d, 81);
  CompareWithTheCpu(*gpu, q, 5, t, n, d, 0, 82);
  ASSERT_TRUE(gpu->UploadResident(9, MatrixView{t.data(), n, d}).ok());
  CompareWithTheCpu(*gpu, q, 5, t, n, d, 9, 83);
}

TEST_F(GpuMaskedTest, ExcludedRowsAreNotReadAndAdmittedBadRowsAreReported) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const size_t n = 600, d = 20;
  const auto q = testing::RandomMatrix(3, d, 90);
  auto t = testing::RandomMatrix(n, d, 91);
  const testing::OwnedRowMask owned = testing::RandomRowMask(n, 0.5, 7, 92);
  const size_t m = owned.count();
  std::vector<float> clean_scores(3 * m), dirty_scores(3 * m);
  ASSERT_TRUE(gpu->CosineDense({q.data(), 3, d}, {t.data(), n, d}, owned.mask(),
                               clean_scores.data(), m, 0)
                  .ok());
  size_t first_admitted = n;
  for (size_t r = 0; r < n; ++r) {
    if (!owned.admitted[r]) {
      t[r * d + 2] = std::numeric_limits<float>::quiet_NaN();
    } else if (first_admitted == n) {
      first_admitted = r;
    }
  }
  ASSERT_TRUE(gpu->CosineDense({q.data(), 3, d}, {t.data(), n, d}, owned.mask(),
                               dirty_scores.data(), m, 0)
                  .ok());
  EXPECT_EQ(dirty_scores, clean_scores);

  // Now an admitted row is bad too: the CPU's error, the same row.
  t[(first_admitted + 0) * d + 4] = std::numeric_limits<float>::infinity();
  std::vector<TopKList> top;
  const absl::Status gpu_status = gpu->CosineTopK(
      {q.data(), 3, d}, {t.data(), n, d}, owned.mask(), 5, kNoMin, 1000, &top);
  const absl::Status cpu_status =
      cpu::CosineTopK({q.data(), 3, d}, {t.data(), n, d}, owned.mask(), 5,
                      kNoMin, 1000, nullptr, &top);
  EXPECT_EQ(gpu_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_status.message(), cpu_status.message());
}

TEST_F(GpuMaskedTest, AMaskThatAdmitsNoRowGivesEmptyResults) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const size_t n = 100, d = 8;
  const auto q = testing::RandomMatrix(2, d, 95);
  const auto t = testing::RandomMatrix(n, d, 96);
  const testing::OwnedRowMask none =
      testing::RowMaskOf(std::vector<bool>(n, false), 0);
  std::vector<TopKList> top;
  ASSERT_TRUE(gpu->CosineTopK({q.data(), 2, d}, {t.data(), n, d}, none.mask(),
                              3, kNoMin, 0, &top)
                  .ok());
  EXPECT_EQ(top, std::vector<TopKList>(2));
  float untouched = 7.0f;
  ASSERT_TRUE(gpu->CosineDense({q.data(), 2, d}, {t.data(), n, d}, none.mask(),
                               &untouched, 0, 0)
                  .ok());
  EXPECT_EQ(untouched, 7.0f);
}

}  // namespace
}  // namespace engram::kernels
