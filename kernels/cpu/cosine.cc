// Cosine similarity with Highway runtime dispatch: this file is compiled once
// per SIMD target by hwy/foreach_target.h, and the HWY_ONCE section at the end
// holds the target-independent driver (validation, work split, scoring).
#include "kernels/cpu/cosine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "kernels/cpu/topk.h"
#include "kernels/status_macros.h"

#ifndef ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_
#define ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_
namespace engram::kernels::cosine_internal {

// Query rows are copied with their stride rounded up to a multiple of this, so
// the SIMD loop can read a whole vector at the row's tail without bounds
// checks. It is a multiple of every x86, Arm and WASM float vector length.
constexpr size_t kQueryPadFloats = 64;

}  // namespace engram::kernels::cosine_internal
#endif  // ENGRAM_KERNELS_CPU_COSINE_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/cosine.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace engram::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

static_assert(HWY_LANES(float) <= cosine_internal::kQueryPadFloats,
              "query padding must cover one full vector");

// One vector step: adds t * q_j[i..i+N) to acc_j for the first kQ queries and,
// if kNorm, t * t to norm. Query rows are q_stride floats apart.
template <size_t kQ, bool kNorm, class D, class V>
HWY_INLINE void Step(D df, V t, const float* HWY_RESTRICT q, size_t q_stride,
                     size_t i, V& acc0, V& acc1, V& acc2, V& acc3, V& norm) {
  if constexpr (kNorm) norm = hn::MulAdd(t, t, norm);
  acc0 = hn::MulAdd(hn::LoadU(df, q + i), t, acc0);
  if constexpr (kQ > 1) {
    acc1 = hn::MulAdd(hn::LoadU(df, q + q_stride + i), t, acc1);
  }
  if constexpr (kQ > 2) {
    acc2 = hn::MulAdd(hn::LoadU(df, q + 2 * q_stride + i), t, acc2);
  }
  if constexpr (kQ > 3) {
    acc3 = hn::MulAdd(hn::LoadU(df, q + 3 * q_stride + i), t, acc3);
  }
}

// Dot products of one target row with kQ (1..4) queries, and the row's
// squared norm if kNorm. Every loaded target vector feeds all kQ products;
// two independent accumulator sets hide the multiply-add latency. `full`
// elements are read from `t` directly; if `tail` is non-null it holds the
// remaining elements zero-padded to one vector (the query rows are
// zero-padded to match).
template <size_t kQ, bool kNorm>
HWY_INLINE void DotRow(const float* HWY_RESTRICT q, size_t q_stride,
                       const float* HWY_RESTRICT t, size_t full,
                       const float* HWY_RESTRICT tail, float* HWY_RESTRICT dots,
                       size_t dots_stride, float* HWY_RESTRICT norm_sq) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, na = a0;
  auto b0 = a0, b1 = a0, b2 = a0, b3 = a0, nb = a0;
  size_t i = 0;
  for (; i + 2 * n <= full; i += 2 * n) {
    const auto t0 = hn::LoadU(df, t + i);
    const auto t1 = hn::LoadU(df, t + i + n);
    Step<kQ, kNorm>(df, t0, q, q_stride, i, a0, a1, a2, a3, na);
    Step<kQ, kNorm>(df, t1, q, q_stride, i + n, b0, b1, b2, b3, nb);
  }
  if (i < full) {
    Step<kQ, kNorm>(df, hn::LoadU(df, t + i), q, q_stride, i, a0, a1, a2, a3,
                    na);
    i += n;
  }
  if (tail != nullptr) {
    Step<kQ, kNorm>(df, hn::Load(df, tail), q, q_stride, i, b0, b1, b2, b3, nb);
  }
  dots[0] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0)));
  if constexpr (kQ > 1) {
    dots[dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a1, b1)));
  }
  if constexpr (kQ > 2) {
    dots[2 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a2, b2)));
  }
  if constexpr (kQ > 3) {
    dots[3 * dots_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a3, b3)));
  }
  if constexpr (kNorm) {
    *norm_sq = hn::GetLane(hn::SumOfLanes(df, hn::Add(na, nb)));
  }
}

template <bool kNorm>
HWY_INLINE void DotRowGroup(size_t group, const float* HWY_RESTRICT q,
                            size_t q_stride, const float* HWY_RESTRICT t,
                            size_t full, const float* HWY_RESTRICT tail,
                            float* HWY_RESTRICT dots, size_t dots_stride,
                            float* HWY_RESTRICT norm_sq) {
  switch (group) {
    case 1:
      return DotRow<1, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    case 2:
      return DotRow<2, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    case 3:
      return DotRow<3, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
    default:
      return DotRow<4, kNorm>(q, q_stride, t, full, tail, dots, dots_stride,
                              norm_sq);
  }
}

// For target rows [0, num_rows) of `targets` (d floats each, any alignment):
// dots[j * dots_stride + r] = <query j, row r> and norms_sq[r] = |row r|^2.
// Queries are num_queries >= 1 rows q_stride apart, zero-padded to q_stride,
// a multiple of kQueryPadFloats. Each target row is read from memory once: the
// first group of up to four queries computes the norm alongside, and later
// groups find the row in L1.
void DotsAndNorms(const float* HWY_RESTRICT queries, size_t num_queries,
                  size_t q_stride, const float* HWY_RESTRICT targets,
                  size_t num_rows, size_t d, float* HWY_RESTRICT dots,
                  size_t dots_stride, float* HWY_RESTRICT norms_sq) {
  const hn::ScalableTag<float> df;
  const size_t tail_len = d % hn::Lanes(df);
  const size_t full = d - tail_len;
  // Only the first tail_len entries are ever written, so the rest stays zero
  // and contributes nothing to the tail step.
  HWY_ALIGN float tail_buf[cosine_internal::kQueryPadFloats] = {};
  const float* tail = tail_len == 0 ? nullptr : tail_buf;
  const size_t first = std::min<size_t>(4, num_queries);
  for (size_t r = 0; r < num_rows; ++r) {
    const float* t = targets + r * d;
    if (tail_len != 0)
      std::memcpy(tail_buf, t + full, tail_len * sizeof(float));
    DotRowGroup<true>(first, queries, q_stride, t, full, tail, dots + r,
                      dots_stride, norms_sq + r);
    for (size_t j = first; j < num_queries; j += 4) {
      DotRowGroup<false>(std::min<size_t>(4, num_queries - j),
                         queries + j * q_stride, q_stride, t, full, tail,
                         dots + j * dots_stride + r, dots_stride, nullptr);
    }
  }
}

const char* SelectedTargetName() { return hwy::TargetName(HWY_TARGET); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace engram::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace engram::kernels {
namespace {

using cosine_internal::kQueryPadFloats;

HWY_EXPORT(DotsAndNorms);
HWY_EXPORT(SelectedTargetName);

// Target rows per call into the SIMD code: small enough that a block's scores
// (queries x kBlockRows) stay in cache for the top-k pass.
constexpr size_t kBlockRows = 128;
// The least target data (floats) worth handing to a task of its own.
constexpr size_t kMinTaskFloats = size_t{1} << 16;
// Tasks per pool thread, so that uneven progress still balances.
constexpr size_t kTasksPerThread = 4;
constexpr size_t kNoBadRow = std::numeric_limits<size_t>::max();

// Queries scaled by a power of two (exact, and cosine is scale invariant) so
// their largest element is in [0.5, 1): neither the dot products nor the
// query norm can then underflow or overflow on the query's account.
struct PreparedQueries {
  size_t rows = 0;
  size_t stride = 0;             // a multiple of kQueryPadFloats
  std::vector<float> values;     // rows x stride, zero-padded
  std::vector<double> inv_norm;  // 1 / |scaled query|; 0 for a zero query
};

// A squared norm below this may have lost terms to underflow (each lost term
// is below FLT_MIN, so at most d * FLT_MIN in all, i.e. at most one float
// epsilon of the threshold): such target rows are rescored in double.
float TinyNormSq(size_t d) {
  return static_cast<float>(static_cast<double>(d) *
                            std::numeric_limits<float>::min() /
                            std::numeric_limits<float>::epsilon());
}

// The error for a row whose squared norm is not finite in float32.
absl::Status NonFiniteRowError(const char* matrix, const float* row,
                               size_t cols, uint64_t reported_row) {
  for (size_t c = 0; c < cols; ++c) {
    if (!std::isfinite(row[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat(matrix, " row ", reported_row,
                       " contains a non-finite value at column ", c));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      matrix, " row ", reported_row, ": squared norm overflows float32"));
}

// Squared norm in double; the row is bad when it is not finite as a float32.
bool RowSquaredNormIsFinite(const float* row, size_t cols, double* norm_sq) {
  double sum = 0.0;
  for (size_t c = 0; c < cols; ++c) {
    sum += static_cast<double>(row[c]) * row[c];
  }
  *norm_sq = sum;
  return sum <= std::numeric_limits<float>::max();  // false for NaN, too
}

absl::Status CheckShapes(const MatrixView& queries, const MatrixView& targets) {
  if (queries.cols == 0 || queries.cols != targets.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("queries have ", queries.cols, " columns and targets ",
                     targets.cols, "; both must be equal and at least 1"));
  }
  if ((queries.rows > 0 && queries.data == nullptr) ||
      (targets.rows > 0 && targets.data == nullptr)) {
    return absl::InvalidArgumentError("matrix data is null");
  }
  return absl::OkStatus();
}

absl::Status CheckIndexRange(size_t num_targets, uint32_t index_offset) {
  if (static_cast<uint64_t>(index_offset) + num_targets >
      uint64_t{std::numeric_limits<uint32_t>::max()} + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("target indices from ", index_offset, " for ", num_targets,
                     " rows do not fit in 32 bits"));
  }
  return absl::OkStatus();
}

absl::Status PrepareQueries(const MatrixView& queries, PreparedQueries* out) {
  const size_t d = queries.cols;
  out->rows = queries.rows;
  out->stride = (d + kQueryPadFloats - 1) / kQueryPadFloats * kQueryPadFloats;
  out->values.assign(out->rows * out->stride, 0.0f);
  out->inv_norm.assign(out->rows, 0.0);
  for (size_t r = 0; r < queries.rows; ++r) {
    const float* row = queries.row(r);
    double unused_norm_sq;
    if (!RowSquaredNormIsFinite(row, d, &unused_norm_sq)) {
      return NonFiniteRowError("queries", row, d, r);
    }
    float max_abs = 0.0f;
    for (size_t c = 0; c < d; ++c)
      max_abs = std::max(max_abs, std::abs(row[c]));
    if (max_abs == 0.0f) continue;  // zero query: scores 0
    int exponent;
    std::frexp(max_abs, &exponent);
    float* scaled = out->values.data() + r * out->stride;
    double norm_sq = 0.0;
    for (size_t c = 0; c < d; ++c) {
      scaled[c] = std::ldexp(row[c], -exponent);
      norm_sq += static_cast<double>(scaled[c]) * scaled[c];
    }
    out->inv_norm[r] = 1.0 / std::sqrt(norm_sq);
  }
  return absl::OkStatus();
}

float ClampedScore(double dot, double inv_query_norm, double inv_target_norm) {
  if (inv_query_norm == 0.0 || inv_target_norm == 0.0) return 0.0f;
  return static_cast<float>(
      std::clamp(dot * inv_query_norm * inv_target_norm, -1.0, 1.0));
}

// Scores a target row whose float squared norm may have underflowed, entirely
// in double: scores[j * stride] for every query j.
void RescoreTinyRow(const PreparedQueries& pq, const float* t, size_t d,
                    float* scores, size_t stride) {
  double norm_sq = 0.0;
  for (size_t c = 0; c < d; ++c) norm_sq += static_cast<double>(t[c]) * t[c];
  const double inv_t = norm_sq > 0.0 ? 1.0 / std::sqrt(norm_sq) : 0.0;
  for (size_t j = 0; j < pq.rows; ++j) {
    const float* q = pq.values.data() + j * pq.stride;
    double dot = 0.0;
    for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
    scores[j * stride] = ClampedScore(dot, pq.inv_norm[j], inv_t);
  }
}

// Scores target rows [begin, end) into scores[j * stride + (r - begin)].
// `norms` has room for end - begin floats. Returns the first row (absolute
// within `targets`) whose squared norm is not finite, or kNoBadRow; rows from
// that one on are left unscored.
size_t ScoreBlock(const PreparedQueries& pq, const MatrixView& targets,
                  size_t begin, size_t end, float* scores, size_t stride,
                  float* norms) {
  const size_t d = targets.cols;
  auto& dots_and_norms = HWY_DYNAMIC_DISPATCH(DotsAndNorms);
  dots_and_norms(pq.values.data(), pq.rows, pq.stride, targets.row(begin),
                 end - begin, d, scores, stride, norms);
  const float tiny = TinyNormSq(d);
  for (size_t r = begin; r < end; ++r) {
    const size_t local = r - begin;
    const float norm_sq = norms[local];
    if (!(norm_sq <= std::numeric_limits<float>::max())) return r;
    if (norm_sq < tiny) {
      RescoreTinyRow(pq, targets.row(r), d, scores + local, stride);
      continue;
    }
    const double inv_t = 1.0 / std::sqrt(static_cast<double>(norm_sq));
    for (size_t j = 0; j < pq.rows; ++j) {
      float& s = scores[j * stride + local];
      s = ClampedScore(s, pq.inv_norm[j], inv_t);
    }
  }
  return kNoBadRow;
}

// How the target rows are split into tasks: task i covers rows
// [i * rows_per_task, min(n, (i + 1) * rows_per_task)).
struct TaskSplit {
  size_t num_tasks = 0;
  size_t rows_per_task = 0;
};

TaskSplit SplitTargets(size_t n, size_t d, ThreadPool* pool) {
  if (n == 0) return {};
  size_t tasks = 1;
  if (pool != nullptr) {
    const size_t min_rows = std::max<size_t>(1, kMinTaskFloats / d);
    const size_t max_tasks =
        kTasksPerThread * (static_cast<size_t>(pool->num_threads()) + 1);
    tasks = std::clamp<size_t>((n + min_rows - 1) / min_rows, 1, max_tasks);
  }
  const size_t rows = (n + tasks - 1) / tasks;
  return {(n + rows - 1) / rows, rows};
}

void RunTasks(ThreadPool* pool, size_t num_tasks,
              absl::FunctionRef<void(size_t)> fn) {
  if (pool == nullptr || num_tasks <= 1) {
    for (size_t i = 0; i < num_tasks; ++i) fn(i);
  } else {
    pool->ParallelFor(num_tasks, fn);
  }
}

// The lowest bad target row found by any task. A task skips blocks that lie
// past a bad row already found, since the call fails anyway.
class FirstBadRow {
 public:
  void Report(size_t row) {
    size_t seen = row_.load(std::memory_order_relaxed);
    while (row < seen &&
           !row_.compare_exchange_weak(seen, row, std::memory_order_relaxed)) {
    }
  }
  bool Before(size_t row) const {
    return row_.load(std::memory_order_relaxed) < row;
  }
  size_t get() const { return row_.load(std::memory_order_relaxed); }

 private:
  std::atomic<size_t> row_{kNoBadRow};
};

absl::Status BadTargetError(const MatrixView& targets, size_t row,
                            uint32_t index_offset) {
  return NonFiniteRowError("targets", targets.row(row), targets.cols,
                           static_cast<uint64_t>(index_offset) + row);
}

}  // namespace

absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, &pq));
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");

  const TaskSplit split = SplitTargets(targets.rows, targets.cols, pool);
  FirstBadRow bad;
  RunTasks(pool, split.num_tasks, [&](size_t task) {
    std::vector<float> norms(kBlockRows);
    const size_t end = std::min(targets.rows, (task + 1) * split.rows_per_task);
    for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
      if (bad.Before(b)) return;
      const size_t block_end = std::min(end, b + kBlockRows);
      const size_t bad_row = ScoreBlock(pq, targets, b, block_end, out + b,
                                        out_stride, norms.data());
      if (bad_row != kNoBadRow) {
        bad.Report(bad_row);
        return;
      }
    }
  });
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }
  return absl::OkStatus();
}

absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        uint32_t k, float min_score, uint32_t index_offset,
                        ThreadPool* pool, std::vector<TopKList>* out) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckIndexRange(targets.rows, index_offset));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  PreparedQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, &pq));
  const size_t num_q = queries.rows;
  if (num_q == 0 || targets.rows == 0) {
    out->assign(num_q, TopKList());
    return absl::OkStatus();
  }

  const size_t keep = std::min<size_t>(k, targets.rows);
  const TaskSplit split = SplitTargets(targets.rows, targets.cols, pool);
  // per_task[task][query]: that task's best `keep` for the query.
  std::vector<std::vector<TopKList>> per_task(split.num_tasks);
  FirstBadRow bad;
  RunTasks(pool, split.num_tasks, [&](size_t task) {
    std::vector<float> scores(num_q * kBlockRows);
    std::vector<float> norms(kBlockRows);
    std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
    const size_t end = std::min(targets.rows, (task + 1) * split.rows_per_task);
    for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
      if (bad.Before(b)) return;
      const size_t block_end = std::min(end, b + kBlockRows);
      const size_t bad_row = ScoreBlock(
          pq, targets, b, block_end, scores.data(), kBlockRows, norms.data());
      if (bad_row != kNoBadRow) {
        bad.Report(bad_row);
        return;
      }
      for (size_t j = 0; j < num_q; ++j) {
        const float* row_scores = scores.data() + j * kBlockRows;
        TopKSelector& selector = selectors[j];
        // Rows arrive in increasing index order, so a score merely equal to
        // the worst kept one loses the tie and can be skipped without a call.
        float floor = selector.worst_kept_score();
        for (size_t r = b; r < block_end; ++r) {
          const float s = row_scores[r - b];
          if (s < min_score || s <= floor) continue;
          selector.Push(static_cast<uint32_t>(index_offset + r), s);
          floor = selector.worst_kept_score();
        }
      }
    }
    std::vector<TopKList>& lists = per_task[task];
    lists.reserve(num_q);
    for (TopKSelector& selector : selectors) lists.push_back(selector.Take());
  });
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }

  out->assign(num_q, TopKList());
  std::vector<TopKList> candidates(split.num_tasks);
  for (size_t j = 0; j < num_q; ++j) {
    for (size_t task = 0; task < split.num_tasks; ++task) {
      candidates[task] = std::move(per_task[task][j]);
    }
    (*out)[j] = MergeTopK(candidates, keep);
  }
  return absl::OkStatus();
}

absl::Status CosineDenseReference(const MatrixView& queries,
                                  const MatrixView& targets, float* out,
                                  size_t out_stride, uint32_t index_offset) {
  ENGRAM_RETURN_IF_ERROR(CheckShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  const size_t d = queries.cols;
  std::vector<double> query_norm(queries.rows);
  for (size_t j = 0; j < queries.rows; ++j) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(queries.row(j), d, &norm_sq)) {
      return NonFiniteRowError("queries", queries.row(j), d, j);
    }
    query_norm[j] = std::sqrt(norm_sq);
  }
  std::vector<double> target_norm(targets.rows);
  for (size_t r = 0; r < targets.rows; ++r) {
    double norm_sq;
    if (!RowSquaredNormIsFinite(targets.row(r), d, &norm_sq)) {
      return BadTargetError(targets, r, index_offset);
    }
    target_norm[r] = std::sqrt(norm_sq);
  }
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  for (size_t j = 0; j < queries.rows; ++j) {
    const float* q = queries.row(j);
    for (size_t r = 0; r < targets.rows; ++r) {
      const float* t = targets.row(r);
      double dot = 0.0;
      for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * t[c];
      const double denom = query_norm[j] * target_norm[r];
      out[j * out_stride + r] =
          denom == 0.0 ? 0.0f
                       : static_cast<float>(std::clamp(dot / denom, -1.0, 1.0));
    }
  }
  return absl::OkStatus();
}

const char* CosineSimdTarget() {
  return HWY_DYNAMIC_DISPATCH(SelectedTargetName)();
}

}  // namespace engram::kernels
#endif  // HWY_ONCE
