// Tests of GpuContext's resident matrices on a real GPU (ctest label gpu):
// scores and top-k read from a resident copy equal the staged path's (the
// fused kernel's bit for bit, cuBLAS's within 1e-5), tiny and zero rows
// included; bad rows and out-of-memory refused at upload with the context
// usable; eviction while other threads read. Every test skips, saying why,
// without a GPU.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/dispatch/chunking.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cosine.h"
#include "kernels/gpu_device.h"
#include "tests/testing/random_data.h"

namespace engram::kernels {
namespace {

using ::testing::HasSubstr;

constexpr float kNoMin = -std::numeric_limits<float>::infinity();

class GpuResidentTest : public ::testing::Test {
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

// Random rows with a few the float32 norm pass must hand to the float64
// rescore: a zero row and rows whose squared norm underflows.
std::vector<float> TargetsWithTinyRows(size_t n, size_t d, uint64_t seed) {
  std::vector<float> t = testing::RandomMatrix(n, d, seed);
  for (size_t c = 0; c < d; ++c) t[3 * d + c] = 0.0f;
  for (size_t r : {size_t{7}, n / 2, n - 1}) {
    for (size_t c = 0; c < d; ++c) t[r * d + c] *= 1e-22f;
  }
  return t;
}

void ExpectSameLists(const std::vector<TopKList>& a,
                     const std::vector<TopKList>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t j = 0; j < a.size(); ++j) {
    ASSERT_EQ(a[j].size(), b[j].size()) << "query " << j;
    for (size_t i = 0; i < a[j].size(); ++i) {
      EXPECT_EQ(a[j][i].index, b[j][i].index) << "query " << j << " rank " << i;
      EXPECT_EQ(a[j][i].score, b[j][i].score) << "query " << j << " rank " << i;
    }
  }
}

// The fused kernel (few queries) reads the resident rows exactly as it reads
// a staged tile: dense scores and top-k lists are the staged path's to the
// bit, for vector (d % 4 == 0) and scalar loads, with tiny and zero rows.
TEST_F(GpuResidentTest, FusedResidentScoresEqualTheStagedPathBitForBit) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  uint64_t key = 0;
  for (size_t d : {size_t{7}, size_t{768}}) {
    for (size_t q : {size_t{1}, size_t{5}, size_t{16}}) {
      SCOPED_TRACE(absl::StrCat("d ", d, ", q ", q));
      const size_t n = 3000;
      const std::vector<float> queries = testing::RandomMatrix(q, d, 1 + q);
      const std::vector<float> targets = TargetsWithTinyRows(n, d, 2 + d);
      const MatrixView qv{queries.data(), q, d};
      const MatrixView tv{targets.data(), n, d};
      ++key;
      ASSERT_TRUE(gpu->UploadResident(key, tv).ok());
      ASSERT_TRUE(gpu->HoldsResident(key));
      const uint64_t hits = gpu->ResidentStats().hits;

      std::vector<float> staged(q * n), resident(q * n);
      ASSERT_TRUE(gpu->CosineDense(qv, tv, staged.data(), n, 0).ok());
      ASSERT_TRUE(gpu->CosineDense(qv, tv, resident.data(), n, 0, key).ok());
      EXPECT_EQ(resident, staged);
      // A wider output row, as the executor never asks but the contract
      // allows.
      std::vector<float> wide(q * (n + 3), -7.0f);
      ASSERT_TRUE(gpu->CosineDense(qv, tv, wide.data(), n + 3, 0, key).ok());
      for (size_t j = 0; j < q; ++j) {
        for (size_t r = 0; r < n; ++r) {
          ASSERT_EQ(wide[j * (n + 3) + r], staged[j * n + r]);
        }
        EXPECT_EQ(wide[j * (n + 3) + n], -7.0f);
      }

      std::vector<TopKList> staged_top, resident_top;
      ASSERT_TRUE(gpu->CosineTopK(qv, tv, 10, kNoMin, 100, &staged_top).ok());
      ASSERT_TRUE(
          gpu->CosineTopK(qv, tv, 10, kNoMin, 100, &resident_top, key).ok());
      ExpectSameLists(resident_top, staged_top);
      EXPECT_EQ(gpu->ResidentStats().hits, hits + 3);

      // The tiny rows were rescored, as on the CPU.
      std::vector<float> cpu(q * n);
      ASSERT_TRUE(
          kernels::cpu::CosineDense(qv, tv, cpu.data(), n, 0, nullptr).ok());
      for (size_t j = 0; j < q; ++j) {
        for (size_t r : {size_t{3}, size_t{7}, n / 2, n - 1}) {
          EXPECT_NEAR(resident[j * n + r], cpu[j * n + r], 1e-5)
              << "query " << j << " row " << r;
        }
      }
    }
  }
}

// The many-query path skips the norm pass (the norms were computed at
// upload) and scores all rows in one GEMM: within 1e-5 of the staged path,
// the same top-k entries as the CPU.
TEST_F(GpuResidentTest, CublasResidentScoresMatchTheStagedPathAndTheCpu) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  if (!gpu->has_cublas()) {
    GTEST_SKIP() << "cuBLAS not loaded: " << gpu->cublas_status();
  }
  const size_t q = 40, n = 5000, d = 96;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 11);
  const std::vector<float> targets = TargetsWithTinyRows(n, d, 12);
  const MatrixView qv{queries.data(), q, d};
  const MatrixView tv{targets.data(), n, d};
  ASSERT_TRUE(gpu->UploadResident(5, tv).ok());
  std::vector<float> staged(q * n), resident(q * n), cpu(q * n);
  ASSERT_TRUE(gpu->CosineDense(qv, tv, staged.data(), n, 0).ok());
  ASSERT_TRUE(gpu->CosineDense(qv, tv, resident.data(), n, 0, 5).ok());
  ASSERT_TRUE(
      kernels::cpu::CosineDense(qv, tv, cpu.data(), n, 0, nullptr).ok());
  for (size_t i = 0; i < staged.size(); ++i) {
    ASSERT_NEAR(resident[i], staged[i], 1e-5) << "entry " << i;
    ASSERT_NEAR(resident[i], cpu[i], 1e-5) << "entry " << i;
  }
  std::vector<TopKList> gpu_top, cpu_top;
  ASSERT_TRUE(gpu->CosineTopK(qv, tv, 8, 0.0f, 0, &gpu_top, 5).ok());
  ASSERT_TRUE(
      kernels::cpu::CosineTopK(qv, tv, 8, 0.0f, 0, nullptr, &cpu_top).ok());
  ASSERT_EQ(gpu_top.size(), cpu_top.size());
  for (size_t j = 0; j < q; ++j) {
    ASSERT_EQ(gpu_top[j].size(), cpu_top[j].size()) << "query " << j;
    for (size_t i = 0; i < gpu_top[j].size(); ++i) {
      EXPECT_NEAR(gpu_top[j][i].score, cpu_top[j][i].score, 1e-5);
      if (gpu_top[j][i].index != cpu_top[j][i].index) {
        EXPECT_NEAR(cpu[j * n + gpu_top[j][i].index],
                    cpu[j * n + cpu_top[j][i].index], 2e-5);
      }
    }
  }
}

TEST_F(GpuResidentTest, UploadAccountsItsBytesAndEvictGivesThemBack) {
  GpuContext::Options options;
  options.memory_limit_bytes = uint64_t{256} << 20;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  const size_t n = 20000, d = 128;
  const std::vector<float> targets = testing::RandomMatrix(n, d, 3);
  const MatrixView tv{targets.data(), n, d};
  ASSERT_TRUE(gpu->UploadResident(1, tv).ok());
  const GpuResidentStats stats = gpu->ResidentStats();
  EXPECT_EQ(stats.matrices, 1u);
  // What the manager budgets with is what the context allocates.
  EXPECT_EQ(stats.bytes, dispatch::ResidentFootprintBytes(n, d));
  auto memory = gpu->QueryMemory();
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_LE(memory->free_bytes + stats.bytes, memory->total_bytes);
  EXPECT_EQ(gpu->UploadResident(1, tv).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(gpu->UploadResident(0, tv).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(gpu->EvictResident(1).ok());
  EXPECT_EQ(gpu->EvictResident(1).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(gpu->HoldsResident(1));
  EXPECT_EQ(gpu->ResidentStats().bytes, 0u);
  // An evicted key is simply staged.
  const std::vector<float> queries = testing::RandomMatrix(2, d, 4);
  std::vector<TopKList> top;
  ASSERT_TRUE(gpu->CosineTopK(MatrixView{queries.data(), 2, d}, tv, 3, kNoMin,
                              0, &top, 1)
                  .ok());
  EXPECT_EQ(gpu->ResidentStats().hits, 0u);
}

TEST_F(GpuResidentTest, NonFiniteRowsAreRefusedWithTheCpuMessage) {
  auto gpu = Make();
  ASSERT_NE(gpu, nullptr);
  const size_t n = 100, d = 8;
  std::vector<float> targets = testing::RandomMatrix(n, d, 5);
  targets[40 * d + 3] = 1e30f;  // squared norm overflows float32
  targets[70 * d + 1] = std::numeric_limits<float>::infinity();
  const MatrixView tv{targets.data(), n, d};
  const absl::Status status = gpu->UploadResident(9, tv);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::vector<float> query = testing::RandomMatrix(1, d, 6);
  std::vector<float> scores(n);
  const absl::Status cpu = kernels::cpu::CosineDense(
      MatrixView{query.data(), 1, d}, tv, scores.data(), n, 0, nullptr);
  EXPECT_EQ(status.message(), cpu.message());
  EXPECT_THAT(status.message(), HasSubstr("targets"));
  EXPECT_FALSE(gpu->HoldsResident(9));
  EXPECT_EQ(gpu->ResidentStats().bytes, 0u);
}

TEST_F(GpuResidentTest, OutOfMemoryAtUploadLeavesTheContextUsable) {
  GpuContext::Options options;
  options.memory_limit_bytes = uint64_t{32} << 20;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  const size_t d = 64;
  const std::vector<float> big = testing::RandomMatrix(200000, d, 7);  // 51 MB
  const absl::Status status =
      gpu->UploadResident(1, MatrixView{big.data(), 200000, d});
  EXPECT_EQ(GpuErrorKindOf(status), GpuErrorKind::kOutOfMemory) << status;
  EXPECT_FALSE(gpu->HoldsResident(1));
  // Twice, then a matrix that fits, on the same thread and context.
  EXPECT_EQ(
      GpuErrorKindOf(gpu->UploadResident(1, MatrixView{big.data(), 200000, d})),
      GpuErrorKind::kOutOfMemory);
  const MatrixView small{big.data(), 20000, d};
  const absl::Status fits = gpu->UploadResident(2, small);
  ASSERT_TRUE(fits.ok()) << fits;
  const std::vector<float> queries = testing::RandomMatrix(3, d, 8);
  std::vector<TopKList> staged, resident;
  ASSERT_TRUE(gpu->CosineTopK(MatrixView{queries.data(), 3, d}, small, 5,
                              kNoMin, 0, &staged)
                  .ok());
  ASSERT_TRUE(gpu->CosineTopK(MatrixView{queries.data(), 3, d}, small, 5,
                              kNoMin, 0, &resident, 2)
                  .ok());
  ExpectSameLists(resident, staged);
}

// Readers hold the matrix they started with; evicting and re-uploading it
// meanwhile never changes a result.
TEST_F(GpuResidentTest, EvictionWhileOtherThreadsReadIsSafe) {
  GpuContext::Options options;
  options.max_streams = 3;
  auto gpu = Make(options);
  ASSERT_NE(gpu, nullptr);
  const size_t q = 4, n = 20000, d = 64;
  const std::vector<float> queries = testing::RandomMatrix(q, d, 9);
  const std::vector<float> targets = testing::RandomMatrix(n, d, 10);
  const MatrixView qv{queries.data(), q, d};
  const MatrixView tv{targets.data(), n, d};
  ASSERT_TRUE(gpu->UploadResident(3, tv).ok());
  std::vector<TopKList> want;
  ASSERT_TRUE(gpu->CosineTopK(qv, tv, 5, kNoMin, 0, &want).ok());
  std::vector<std::thread> readers;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        std::vector<TopKList> got;
        const absl::Status s = gpu->CosineTopK(qv, tv, 5, kNoMin, 0, &got, 3);
        if (!s.ok() || got.size() != want.size()) {
          ++bad[t];
          continue;
        }
        for (size_t j = 0; j < q; ++j) {
          if (got[j].size() != want[j].size()) {
            ++bad[t];
            continue;
          }
          for (size_t r = 0; r < want[j].size(); ++r) {
            if (got[j][r].index != want[j][r].index ||
                got[j][r].score != want[j][r].score) {
              ++bad[t];
            }
          }
        }
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    (void)gpu->EvictResident(3);
    ASSERT_TRUE(gpu->UploadResident(3, tv).ok());
  }
  for (auto& reader : readers) reader.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[t], 0) << "reader " << t;
}

}  // namespace
}  // namespace engram::kernels
