#include "kernels/cpu/cosine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "kernels/thread_pool.h"
#include "tests/testing/random_data.h"
#include "tests/testing/reference.h"

namespace engram::kernels::cpu {
namespace {

using ::testing::HasSubstr;

constexpr size_t kDims[] = {1,  2,  3,  4,  5,   6,   7,   8,    9,   10,
                            11, 12, 13, 14, 15,  16,  17,  18,   19,  20,
                            21, 22, 23, 24, 25,  26,  27,  28,   29,  30,
                            31, 32, 33, 64, 127, 384, 768, 1000, 4096};
constexpr size_t kQueryCounts[] = {1, 2, 3, 4, 5, 7, 16};

// float32 accumulation against a float64 reference: 1e-5 relative, with an
// absolute floor for scores near 0, where a relative bound is meaningless.
// (Measured errors are below a tenth of this for d up to 16384.)
double Tolerance(double ref) { return std::max(1e-5 * std::abs(ref), 1e-6); }

// Matrices copied one float past a 64-byte boundary, so no row starts on a
// vector boundary: the kernel must not assume alignment.
class Unaligned {
 public:
  explicit Unaligned(const std::vector<float>& values)
      : storage_(values.size() + 16) {
    std::copy(values.begin(), values.end(), storage_.begin() + 1);
  }
  const float* data() const { return storage_.data() + 1; }

 private:
  std::vector<float> storage_;
};

// Counts scores outside the tolerance and reports the first few.
void ExpectNearReference(const std::vector<float>& got, size_t stride,
                         const std::vector<double>& ref, size_t nq, size_t n,
                         size_t d) {
  int failures = 0;
  for (size_t j = 0; j < nq; ++j) {
    for (size_t i = 0; i < n; ++i) {
      const double want = ref[j * n + i];
      const float have = got[j * stride + i];
      if (!(std::abs(have - want) <= Tolerance(want))) {
        if (++failures <= 5) {
          ADD_FAILURE() << "query " << j << " target " << i << ": got " << have
                        << ", reference " << want << " (d=" << d << ")";
        }
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

std::vector<std::unique_ptr<ThreadPool>> Pools() {
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  for (int n : {1, 2, 4}) pools.push_back(std::make_unique<ThreadPool>(n));
  return pools;
}

class CosineTest : public ::testing::Test {
 protected:
  // Undo any forced SIMD target, so later tests use the CPU's best.
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

TEST_F(CosineTest, ReportsTheSelectedSimdTarget) {
  const std::string name = CosineSimdTarget();
  EXPECT_NE(name, "Unknown");
  const auto targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  // The dispatcher picks the best target this CPU supports, listed first.
  EXPECT_EQ(name, hwy::TargetName(targets.front()));
  std::string all;
  for (int64_t t : targets) all += std::string(hwy::TargetName(t)) + " ";
  std::printf("SIMD targets compiled and supported: %s; selected: %s\n",
              all.c_str(), name.c_str());
}

TEST_F(CosineTest, EveryCompiledTargetMatchesTheReference) {
  const auto targets = hwy::SupportedAndGeneratedTargets();
  ThreadPool pool(2);
  uint64_t seed = 1;
  for (size_t d : kDims) {
    for (size_t nq : kQueryCounts) {
      const size_t n = 37 + (d % 3) * 2;  // odd, and varies with d
      const auto q = testing::RandomMatrix(nq, d, ++seed);
      const auto t = testing::RandomMatrix(n, d, ++seed);
      const Unaligned uq(q), ut(t);
      const auto ref = testing::ReferenceCosine(q.data(), nq, t.data(), n, d);
      for (int64_t target : targets) {
        SCOPED_TRACE(::testing::Message() << hwy::TargetName(target) << " d="
                                          << d << " Q=" << nq << " N=" << n);
        hwy::SetSupportedTargetsForTest(target);
        ASSERT_STREQ(CosineSimdTarget(), hwy::TargetName(target));
        std::vector<float> out(nq * n, -7.0f);
        ASSERT_TRUE(CosineDense({uq.data(), nq, d}, {ut.data(), n, d},
                                out.data(), n, 0, &pool)
                        .ok());
        ExpectNearReference(out, n, ref, nq, n, d);
      }
    }
  }
}

TEST_F(CosineTest, EveryPoolSizeMatchesTheReferenceAndTheSerialResult) {
  struct Shape {
    size_t nq, n, d;
  };
  // Large enough N that the work splits into several tasks and several
  // blocks per task.
  const Shape shapes[] = {{1, 20001, 3},
                          {3, 1001, 384},
                          {5, 4099, 33},
                          {16, 257, 768},
                          {2, 301, 4096}};
  const auto pools = Pools();
  uint64_t seed = 1000;
  for (const Shape& s : shapes) {
    const auto q = testing::RandomMatrix(s.nq, s.d, ++seed);
    const auto t = testing::RandomMatrix(s.n, s.d, ++seed);
    const Unaligned ut(t);
    const auto ref =
        testing::ReferenceCosine(q.data(), s.nq, t.data(), s.n, s.d);
    std::vector<float> serial;
    for (const auto& pool : pools) {
      SCOPED_TRACE(::testing::Message()
                   << "pool=" << (pool ? pool->num_threads() : 0)
                   << " Q=" << s.nq << " N=" << s.n << " d=" << s.d);
      // A stride wider than N: the gap must be left alone.
      const size_t stride = s.n + 3;
      std::vector<float> out(s.nq * stride, -7.0f);
      ASSERT_TRUE(CosineDense({q.data(), s.nq, s.d}, {ut.data(), s.n, s.d},
                              out.data(), stride, 0, pool.get())
                      .ok());
      ExpectNearReference(out, stride, ref, s.nq, s.n, s.d);
      for (size_t j = 0; j < s.nq; ++j) {
        for (size_t i = s.n; i < stride; ++i) {
          ASSERT_EQ(out[j * stride + i], -7.0f) << "gap written";
        }
      }
      if (serial.empty()) {
        serial = out;
      } else {
        EXPECT_TRUE(out == serial) << "differs from the serial result";
      }
    }
  }
}

// Builds targets that are exact multiples, negations or orthogonal
// complements of the query, and a zero row.
TEST_F(CosineTest, SpecialVectorsScoreExactlyOrWithinRounding) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    for (size_t d : {size_t{1}, size_t{2}, size_t{3}, size_t{16}, size_t{17},
                     size_t{384}}) {
      SCOPED_TRACE(::testing::Message()
                   << hwy::TargetName(target) << " d=" << d);
      const auto q = testing::RandomMatrix(1, d, 40 + d);
      std::vector<float> t;
      auto add_row = [&](auto value_at) {
        for (size_t c = 0; c < d; ++c) t.push_back(value_at(c));
      };
      add_row([&](size_t c) { return q[c]; });          // identical: 1
      add_row([&](size_t c) { return -q[c]; });         // negated: -1
      add_row([&](size_t c) { return 4.0f * q[c]; });   // scaled: 1
      add_row([&](size_t) { return 0.0f; });            // zero: 0
      add_row([&](size_t c) { return -0.5f * q[c]; });  // scaled negated: -1
      const size_t n = t.size() / d;
      std::vector<float> out(n);
      ASSERT_TRUE(CosineDense({q.data(), 1, d}, {t.data(), n, d}, out.data(), n,
                              0, nullptr)
                      .ok());
      EXPECT_NEAR(out[0], 1.0f, 1e-6);
      EXPECT_NEAR(out[1], -1.0f, 1e-6);
      EXPECT_NEAR(out[2], 1.0f, 1e-6);
      EXPECT_EQ(out[3], 0.0f);
      EXPECT_NEAR(out[4], -1.0f, 1e-6);
      for (float s : out) {
        EXPECT_LE(s, 1.0f);
        EXPECT_GE(s, -1.0f);
      }
    }
  }
}

TEST_F(CosineTest, OrthogonalVectorsScoreZero) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    // Unit vectors: exactly 0. A rotated pair: 0 up to rounding.
    for (size_t d : {size_t{2}, size_t{19}, size_t{64}}) {
      std::vector<float> q(d, 0.0f), t(d, 0.0f);
      q[0] = 1.0f;
      t[d - 1] = 3.0f;
      std::vector<float> q2(d, 0.0f), t2(d, 0.0f);
      q2[0] = 0.37f;
      q2[1] = -0.91f;
      t2[0] = 0.91f;
      t2[1] = 0.37f;
      float out = -7.0f;
      ASSERT_TRUE(
          CosineDense({q.data(), 1, d}, {t.data(), 1, d}, &out, 1, 0, nullptr)
              .ok());
      EXPECT_EQ(out, 0.0f) << "d=" << d;
      ASSERT_TRUE(
          CosineDense({q2.data(), 1, d}, {t2.data(), 1, d}, &out, 1, 0, nullptr)
              .ok());
      EXPECT_NEAR(out, 0.0f, 1e-7) << "d=" << d;
    }
  }
}

TEST_F(CosineTest, ZeroQueryScoresZeroAgainstEveryTarget) {
  const size_t d = 21;
  std::vector<float> q = testing::RandomMatrix(3, d, 50);
  std::fill(q.begin() + d, q.begin() + 2 * d, 0.0f);  // query 1 is zero
  const auto t = testing::RandomMatrix(9, d, 51);
  std::vector<float> out(3 * 9, -7.0f);
  ASSERT_TRUE(
      CosineDense({q.data(), 3, d}, {t.data(), 9, d}, out.data(), 9, 0, nullptr)
          .ok());
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(out[9 + i], 0.0f);
    EXPECT_NE(out[i], 0.0f);
  }
}

TEST_F(CosineTest, ScoresStayWithinMinusOneAndOne) {
  // Near-parallel vectors, where the unclamped float ratio can overshoot.
  const size_t d = 300;
  const size_t n = 400;
  const auto base = testing::RandomMatrix(n, d, 60);
  std::vector<float> t(base);
  for (size_t r = 0; r < n; ++r) {
    for (size_t c = 0; c < d; ++c) t[r * d + c] *= (r % 2 == 0 ? 3.0f : -0.25f);
  }
  std::vector<float> out(n * n);
  ASSERT_TRUE(CosineDense({base.data(), n, d}, {t.data(), n, d}, out.data(), n,
                          0, nullptr)
                  .ok());
  for (size_t r = 0; r < n; ++r) {
    const float s = out[r * n + r];
    EXPECT_LE(s, 1.0f);
    EXPECT_GE(s, -1.0f);
    EXPECT_NEAR(std::abs(s), 1.0f, 1e-6);
  }
}

TEST_F(CosineTest, TinyAndHugeFiniteVectorsScoreLikeUnitVectors) {
  // Squared elements of 1e-25 underflow float32, and of 1e18 nearly overflow
  // it; cosine is scale invariant, so the scores must not change.
  const size_t d = 40;
  const size_t n = 12;
  const auto q = testing::RandomMatrix(2, d, 70);
  const auto t = testing::RandomMatrix(n, d, 71);
  const auto ref = testing::ReferenceCosine(q.data(), 2, t.data(), n, d);
  for (float q_scale : {1e-30f, 1e-25f, 1.0f, 1e18f}) {
    for (float t_scale : {1e-30f, 1e-20f, 1e-15f, 1.0f, 1e18f}) {
      SCOPED_TRACE(::testing::Message()
                   << "query scale " << q_scale << " target scale " << t_scale);
      std::vector<float> qs(q), ts(t);
      for (float& v : qs) v *= q_scale;
      for (float& v : ts) v *= t_scale;
      std::vector<float> out(2 * n);
      ASSERT_TRUE(CosineDense({qs.data(), 2, d}, {ts.data(), n, d}, out.data(),
                              n, 0, nullptr)
                      .ok());
      ExpectNearReference(out, n, ref, 2, n, d);
    }
  }
}

class CosineErrorTest : public ::testing::Test {
 protected:
  static constexpr size_t kD = 20;

  // Calls all three entry points and expects the same INVALID_ARGUMENT.
  static void ExpectError(const std::vector<float>& q, size_t nq,
                          const std::vector<float>& t, size_t n,
                          uint32_t index_offset, ThreadPool* pool,
                          const std::string& message) {
    const MatrixView queries{q.data(), nq, kD};
    const MatrixView targets{t.data(), n, kD};
    std::vector<float> out(nq * n);
    absl::Status status =
        CosineDense(queries, targets, out.data(), n, index_offset, pool);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), message) << "CosineDense";
    std::vector<TopKList> top;
    status = CosineTopK(queries, targets, 5, -1.0f, index_offset, pool, &top);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), message) << "CosineTopK";
    status =
        CosineDenseReference(queries, targets, out.data(), n, index_offset);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), message) << "CosineDenseReference";
  }
};

TEST_F(CosineErrorTest, NanInTargetsNamesRowAndColumn) {
  const auto q = testing::RandomMatrix(2, kD, 80);
  auto t = testing::RandomMatrix(40, kD, 81);
  t[17 * kD + 3] = std::numeric_limits<float>::quiet_NaN();
  ExpectError(q, 2, t, 40, 0, nullptr,
              "targets row 17 contains a non-finite value at column 3");
}

TEST_F(CosineErrorTest, TargetRowIsOffsetByIndexOffset) {
  const auto q = testing::RandomMatrix(2, kD, 82);
  auto t = testing::RandomMatrix(40, kD, 83);
  t[17 * kD + 3] = -std::numeric_limits<float>::infinity();
  ExpectError(q, 2, t, 40, 1000, nullptr,
              "targets row 1017 contains a non-finite value at column 3");
}

TEST_F(CosineErrorTest, InfInQueriesNamesRowAndColumn) {
  auto q = testing::RandomMatrix(3, kD, 84);
  q[2 * kD + 0] = std::numeric_limits<float>::infinity();
  auto t = testing::RandomMatrix(10, kD, 85);
  t[4 * kD] = std::numeric_limits<float>::quiet_NaN();  // queries come first
  ExpectError(q, 3, t, 10, 7, nullptr,
              "queries row 2 contains a non-finite value at column 0");
}

TEST_F(CosineErrorTest, OverflowingSquaredNormIsReported) {
  const auto q = testing::RandomMatrix(2, kD, 86);
  auto t = testing::RandomMatrix(30, kD, 87);
  for (size_t c = 0; c < kD; ++c) t[5 * kD + c] = 1e20f;  // finite, squares not
  ExpectError(q, 2, t, 30, 0, nullptr,
              "targets row 5: squared norm overflows float32");

  auto q2 = testing::RandomMatrix(2, kD, 88);
  q2[kD + 7] = 3e19f;  // one element is enough: 9e38 > FLT_MAX
  ExpectError(q2, 2, t, 30, 0, nullptr,
              "queries row 1: squared norm overflows float32");
}

TEST_F(CosineErrorTest, TheLowestBadRowIsReportedWhateverThePoolSize) {
  // The lowest bad row lies deep into the first task, while every later task
  // meets a bad row of its own in its first block and reports it sooner.
  const size_t n = 20000;
  const auto q = testing::RandomMatrix(2, kD, 89);
  auto t = testing::RandomMatrix(n, kD, 90);
  t[2800 * kD + 11] = std::numeric_limits<float>::infinity();
  for (size_t r = 2900; r < n; r += 100) {
    if (r % 200 == 0) {
      t[r * kD + 1] = std::numeric_limits<float>::quiet_NaN();
    } else {
      for (size_t c = 0; c < kD; ++c) t[r * kD + c] = 1e30f;
    }
  }
  for (const auto& pool : Pools()) {
    for (int repeat = 0; repeat < 5; ++repeat) {
      ExpectError(q, 2, t, n, 0, pool.get(),
                  "targets row 2800 contains a non-finite value at column 11");
    }
  }
}

TEST_F(CosineErrorTest, MismatchedShapesAreInvalidArgument) {
  const auto q = testing::RandomMatrix(2, 8, 91);
  const auto t = testing::RandomMatrix(3, 8, 92);
  std::vector<float> out(6);
  EXPECT_EQ(
      CosineDense({q.data(), 2, 8}, {t.data(), 4, 6}, out.data(), 4, 0, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      CosineDense({q.data(), 2, 0}, {t.data(), 3, 0}, out.data(), 3, 0, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  const absl::Status narrow = CosineDense({q.data(), 2, 8}, {t.data(), 3, 8},
                                          out.data(), 2, 0, nullptr);
  EXPECT_EQ(narrow.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(narrow.message()), HasSubstr("out_stride"));
}

TEST_F(CosineTest, DenseReferenceMatchesTheIndependentReference) {
  for (size_t d : {size_t{1}, size_t{17}, size_t{384}}) {
    const auto q = testing::RandomMatrix(4, d, 100 + d);
    auto t = testing::RandomMatrix(29, d, 200 + d);
    std::fill(t.begin() + 3 * d, t.begin() + 4 * d, 0.0f);  // a zero target
    const auto ref = testing::ReferenceCosine(q.data(), 4, t.data(), 29, d);
    std::vector<float> out(4 * 29);
    ASSERT_TRUE(CosineDenseReference({q.data(), 4, d}, {t.data(), 29, d},
                                     out.data(), 29, 0)
                    .ok());
    for (size_t i = 0; i < out.size(); ++i) {
      // Both are float64; only the final rounding to float32 differs.
      EXPECT_NEAR(out[i], ref[i], 1e-7) << "d=" << d << " entry " << i;
    }
    EXPECT_EQ(out[3], 0.0f);
  }
}

TEST_F(CosineTest, EmptyInputsSucceedWithoutWriting) {
  const auto q = testing::RandomMatrix(2, 5, 300);
  std::vector<float> out(4, -7.0f);
  EXPECT_TRUE(
      CosineDense({q.data(), 2, 5}, {q.data(), 0, 5}, out.data(), 0, 0, nullptr)
          .ok());
  EXPECT_TRUE(
      CosineDense({q.data(), 0, 5}, {q.data(), 2, 5}, out.data(), 2, 0, nullptr)
          .ok());
  EXPECT_EQ(out, std::vector<float>(4, -7.0f));
  std::vector<TopKList> top;
  ASSERT_TRUE(
      CosineTopK({q.data(), 2, 5}, {q.data(), 0, 5}, 3, -1.0f, 0, nullptr, &top)
          .ok());
  EXPECT_EQ(top.size(), 2u);
  EXPECT_TRUE(top[0].empty());
}

// Both inner kernels, forced, on every compiled SIMD target: query counts
// that fill one narrow or wide panel block, leave a partial block, or need
// several; dimensions with every tail length.
TEST_F(CosineTest, BothKernelsMatchTheReferenceOnEveryTarget) {
  const auto targets = hwy::SupportedAndGeneratedTargets();
  ThreadPool pool(2);
  uint64_t seed = 500;
  for (size_t d : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{8},
                   size_t{15}, size_t{16}, size_t{17}, size_t{31}, size_t{33},
                   size_t{127}, size_t{384}, size_t{1000}, size_t{4096}}) {
    for (size_t nq : {size_t{1}, size_t{4}, size_t{17}, size_t{40}}) {
      const size_t n = 29 + d % 7;  // not a multiple of any register tile
      const auto q = testing::RandomMatrix(nq, d, ++seed);
      const auto t = testing::RandomMatrix(n, d, ++seed);
      const Unaligned ut(t);
      const auto ref = testing::ReferenceCosine(q.data(), nq, t.data(), n, d);
      for (int64_t target : targets) {
        hwy::SetSupportedTargetsForTest(target);
        for (CosineKernel kernel :
             {CosineKernel::kRowDot, CosineKernel::kPanel}) {
          SCOPED_TRACE(::testing::Message() << hwy::TargetName(target) << " "
                                            << CosineKernelName(kernel) << " d="
                                            << d << " Q=" << nq << " N=" << n);
          std::vector<float> out(nq * n, -7.0f);
          ASSERT_TRUE(CosineDense({q.data(), nq, d}, {ut.data(), n, d},
                                  out.data(), n, 0, &pool, kernel)
                          .ok());
          ExpectNearReference(out, n, ref, nq, n, d);
        }
      }
    }
  }
}

TEST_F(CosineTest, AutoPicksThePanelKernelForManyQueries) {
  EXPECT_EQ(CosineKernelFor(1), CosineKernel::kRowDot);
  EXPECT_EQ(CosineKernelFor(128), CosineKernel::kPanel);
  EXPECT_STREQ(CosineKernelName(CosineKernel::kPanel), "panel");
}

// The panel kernel splits targets into tasks, cache tiles and register
// tiles, and pads the last register tile of a task: none of that may change
// a score, whatever the pool.
TEST_F(CosineTest, PanelKernelIsBitIdenticalWhateverThePoolSize) {
  struct Shape {
    size_t nq, n, d;
  };
  const Shape shapes[] = {{20, 3001, 96}, {33, 1999, 19}, {128, 700, 256}};
  const auto pools = Pools();
  uint64_t seed = 600;
  for (const Shape& s : shapes) {
    const auto q = testing::RandomMatrix(s.nq, s.d, ++seed);
    const auto t = testing::RandomMatrix(s.n, s.d, ++seed);
    const Unaligned ut(t);
    const auto ref =
        testing::ReferenceCosine(q.data(), s.nq, t.data(), s.n, s.d);
    std::vector<float> serial;
    for (const auto& pool : pools) {
      SCOPED_TRACE(::testing::Message()
                   << "pool=" << (pool ? pool->num_threads() : 0)
                   << " Q=" << s.nq << " N=" << s.n << " d=" << s.d);
      const size_t stride = s.n + 5;
      std::vector<float> out(s.nq * stride, -7.0f);
      ASSERT_TRUE(CosineDense({q.data(), s.nq, s.d}, {ut.data(), s.n, s.d},
                              out.data(), stride, 0, pool.get(),
                              CosineKernel::kPanel)
                      .ok());
      ExpectNearReference(out, stride, ref, s.nq, s.n, s.d);
      for (size_t j = 0; j < s.nq; ++j) {
        for (size_t i = s.n; i < stride; ++i) {
          ASSERT_EQ(out[j * stride + i], -7.0f) << "gap written";
        }
      }
      if (serial.empty()) {
        serial = out;
      } else {
        EXPECT_TRUE(out == serial) << "differs from the serial result";
      }
    }
  }
}

TEST_F(CosineTest, PanelKernelRescoresTinyTargetsAndZeroesZeroRows) {
  const size_t d = 40, n = 30, nq = 20;
  const auto q = testing::RandomMatrix(nq, d, 700);
  auto t = testing::RandomMatrix(n, d, 701);
  for (size_t c = 0; c < d; ++c) {
    t[3 * d + c] *= 1e-25f;  // squares underflow float32
    t[17 * d + c] = 0.0f;
  }
  const auto ref = testing::ReferenceCosine(q.data(), nq, t.data(), n, d);
  std::vector<float> out(nq * n);
  ASSERT_TRUE(CosineDense({q.data(), nq, d}, {t.data(), n, d}, out.data(), n, 0,
                          nullptr, CosineKernel::kPanel)
                  .ok());
  ExpectNearReference(out, n, ref, nq, n, d);
  for (size_t j = 0; j < nq; ++j) EXPECT_EQ(out[j * n + 17], 0.0f);
}

TEST_F(CosineErrorTest, PanelKernelReportsTheLowestBadRow) {
  const size_t n = 5000;
  const auto q = testing::RandomMatrix(24, kD, 710);
  auto t = testing::RandomMatrix(n, kD, 711);
  t[1234 * kD + 5] = std::numeric_limits<float>::quiet_NaN();
  t[4000 * kD + 1] = std::numeric_limits<float>::infinity();
  for (const auto& pool : Pools()) {
    std::vector<float> out(24 * n);
    const absl::Status status =
        CosineDense({q.data(), 24, kD}, {t.data(), n, kD}, out.data(), n, 0,
                    pool.get(), CosineKernel::kPanel);
    EXPECT_EQ(status.message(),
              "targets row 1234 contains a non-finite value at column 5");
    std::vector<TopKList> top;
    EXPECT_EQ(CosineTopK({q.data(), 24, kD}, {t.data(), n, kD}, 3, -1.0f, 0,
                         pool.get(), &top, CosineKernel::kPanel)
                  .message(),
              "targets row 1234 contains a non-finite value at column 5");
  }
}

// Targets whose products with the query are denormal: flushed or not, the
// score differs in its last bits, so the kernels fix the mode on every
// thread that runs them, the caller's included.
TEST_F(CosineTest, ResultsDoNotDependOnTheCallersDenormalMode) {
  const size_t d = 64, n = 300;
  std::vector<float> q(d, 0.75f);
  q[0] = 0.0f;
  std::vector<float> t(n * d, 0.0f);
  for (size_t r = 0; r < n; ++r) {
    t[r * d] = 1.0f;  // the norm: far from tiny
    for (size_t c = 1; c < d; ++c) t[r * d + c] = 1e-39f * (1 + r % 5);
  }
  for (CosineKernel kernel : {CosineKernel::kRowDot, CosineKernel::kPanel}) {
    SCOPED_TRACE(CosineKernelName(kernel));
    std::vector<float> flushed(n), kept(n);
    // 16 copies of the query so the panel kernel has a whole block.
    std::vector<float> queries;
    for (int i = 0; i < 16; ++i)
      queries.insert(queries.end(), q.begin(), q.end());
    std::vector<float> out(16 * n);
    {
      ScopedDenormalsDisabled flush;
      ASSERT_TRUE(CosineDense({queries.data(), 16, d}, {t.data(), n, d},
                              out.data(), n, 0, nullptr, kernel)
                      .ok());
      std::copy(out.begin(), out.begin() + n, flushed.begin());
    }
    ASSERT_TRUE(CosineDense({queries.data(), 16, d}, {t.data(), n, d},
                            out.data(), n, 0, nullptr, kernel)
                    .ok());
    std::copy(out.begin(), out.begin() + n, kept.begin());
    EXPECT_TRUE(flushed == kept);
  }
}

// The row kernel reads rows aligned, starting in the row before and ending
// in the row after: those lanes must not reach a score or a norm, whether
// they hold huge values or infinities.
TEST_F(CosineErrorTest, AlignedReadsDoNotTouchNeighbouringRows) {
  const size_t d = 64, n = 12;
  const auto q = testing::RandomMatrix(3, d, 720);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    auto t = testing::RandomMatrix(n, d, 721);
    t[6 * d] = 1e18f;
    t[6 * d + d - 1] = -1e18f;
    const auto ref = testing::ReferenceCosine(q.data(), 3, t.data(), n, d);
    const Unaligned ut(t);
    std::vector<float> out(3 * n);
    ASSERT_TRUE(CosineDense({q.data(), 3, d}, {ut.data(), n, d}, out.data(), n,
                            0, nullptr, CosineKernel::kRowDot)
                    .ok());
    ExpectNearReference(out, n, ref, 3, n, d);

    t[6 * d] = std::numeric_limits<float>::infinity();
    const Unaligned bad(t);
    EXPECT_EQ(CosineDense({q.data(), 3, d}, {bad.data(), n, d}, out.data(), n,
                          0, nullptr, CosineKernel::kRowDot)
                  .message(),
              "targets row 6 contains a non-finite value at column 0");
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace engram::kernels::cpu
