// The CPU cosine kernels' driver (kernels/cpu/cosine.h): Highway's dispatch
// tables over the per-target code of kernels/cpu/cosine-inl.h, the split of
// the targets into tasks, and dense scoring and top-k selection over them.
#include "kernels/cpu/cosine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cpu/cosine_prep.h"
#include "kernels/cpu/cosine_special_rows.h"
#include "kernels/cpu/topk.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/cosine-inl.h"
#include "hwy/aligned_allocator.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// The static target's pass; foreach_target.h compiled the others.
#include "kernels/cpu/cosine-inl.h"

namespace engram::kernels::cpu {
namespace {

using cosine_internal::BadTargetError;
using cosine_internal::CpuQueries;
using cosine_internal::PackPanelQueries;
using cosine_internal::PanelQueries;
using cosine_internal::PanelShape;
using cosine_internal::PrepareCpuQueries;
using cosine_internal::RescoreTinyRow;
using cosine_internal::ShiftedQueries;
using cosine_internal::ShiftQueries;
using cosine_internal::TinyNormSq;

HWY_EXPORT(DotsAndNorms);
HWY_EXPORT(RowNormsSq);
HWY_EXPORT(PanelGeometry);
HWY_EXPORT(PanelScores);
HWY_EXPORT(RowLanes);
HWY_EXPORT(FinishRowScores);
HWY_EXPORT(SelectedTargetName);

// Target rows per call into the row kernel: small enough that a block's
// scores (queries x kBlockRows) stay in cache for the top-k pass.
constexpr size_t kBlockRows = 128;
// Target bytes per panel tile: the tile is read from memory once (by the
// norm pass) and then from L2 by every query block, alongside a wide query
// block (Lanes * 2 * d floats), so both fit a 1 MiB L2 for d up to ~1500.
constexpr size_t kPanelTileBytes = size_t{128} << 10;
// From this many queries on, kAuto scores with the panel kernel: below it
// the row kernel's dot products are as fast and read the targets at the
// memory's pace. Measured by bench/cosine_benchmark.cc (BM_KernelCrossover,
// docs/performance.md): the crossover is near Q = 5 on a 2-core Zen 4. A
// 16-core Sapphire Rapids class Xeon put it near Q = 16, but that was
// before the panel kernel kept its accumulators in registers, which made
// it about twice as fast; 8 allows for the Xeon until it is measured again.
constexpr size_t kPanelMinQueries = 8;
// The least work (target floats times query groups of four) worth handing
// to a task of its own.
constexpr size_t kMinTaskFloats = size_t{1} << 16;
// Tasks per pool thread, so that uneven progress still balances.
constexpr size_t kTasksPerThread = 4;
constexpr size_t kNoBadRow = std::numeric_limits<size_t>::max();

PanelShape SelectedPanelShape() {
  PanelShape shape;
  HWY_DYNAMIC_DISPATCH(PanelGeometry)(&shape);
  return shape;
}

// Row kernel: scores target rows [begin, end) into scores[j * stride + (r -
// begin)]. `norms` has room for end - begin floats. Returns the first row
// (absolute within `targets`) whose squared norm is not finite, or
// kNoBadRow; rows from that one on are left unscored.
size_t ScoreBlock(const CpuQueries& pq, const ShiftedQueries& shifted,
                  const MatrixView& targets, size_t begin, size_t end,
                  float* scores, size_t stride, float* norms) {
  const size_t d = targets.cols;
  auto& dots_and_norms = HWY_DYNAMIC_DISPATCH(DotsAndNorms);
  dots_and_norms(pq.values.data(), pq.rows, pq.stride, shifted,
                 targets.row(begin), end - begin, d, scores, stride, norms);
  uint8_t special[kBlockRows];
  if (HWY_DYNAMIC_DISPATCH(FinishRowScores)(
          scores, stride, pq.rows, pq.inv_norm_f.data(), norms, end - begin,
          TinyNormSq(d), special) == 0) {
    return kNoBadRow;
  }
  for (size_t r = begin; r < end; ++r) {
    const size_t local = r - begin;
    if (!special[local]) continue;
    if (!(norms[local] <= std::numeric_limits<float>::max())) return r;
    RescoreTinyRow(pq, targets.row(r), d, 0, pq.rows, scores + local, stride);
  }
  return kNoBadRow;
}

// Panel kernel over target rows [begin, end): tile by tile, a norm pass
// (the tile's only read from memory, already in cache but for the first
// tile: the kernel calls of the tile before prefetched it) and then every
// query block against the tile, nr rows at a time. Each group of scores goes to
// consume(first_query, num_queries, first_row, num_rows, scores, width)
// with scores[j * width + i] for query first_query + i and row first_row +
// j. Returns the first bad row (see ScoreBlock), or kNoBadRow; `skip(row)`
// true abandons the run before a tile starting at `row`.
template <class Skip, class Consume>
size_t PanelRun(const CpuQueries& pq, const PanelQueries& panel,
                const MatrixView& targets, size_t begin, size_t end,
                const Skip& skip, const Consume& consume) {
  const size_t d = targets.cols;
  size_t tile_rows = std::max<size_t>(1, kPanelTileBytes / (d * sizeof(float)));
  // A whole number of kernel calls per tile for both block widths.
  const size_t step = std::lcm(panel.shape.nr_narrow, panel.shape.nr_wide);
  tile_rows = std::max(step, tile_rows / step * step);
  const size_t max_nr = panel.max_nr;
  std::vector<float> norms(tile_rows);
  // inv_t is read max_nr at a time, so it is padded with zeros past the tile.
  auto inv_t = hwy::AllocateAligned<float>(tile_rows + max_nr);
  std::vector<uint8_t> tiny_row(tile_rows);
  auto scores = hwy::AllocateAligned<float>(max_nr * panel.max_width);
  std::vector<float> padded;  // the last rows of a run, zero-filled to nr
  const float tiny = TinyNormSq(d);
  auto& row_norms_sq = HWY_DYNAMIC_DISPATCH(RowNormsSq);
  auto& panel_scores = HWY_DYNAMIC_DISPATCH(PanelScores);
  constexpr size_t kLineBytes = 64;

  for (size_t tile = begin; tile < end; tile += tile_rows) {
    if (skip(tile)) return kNoBadRow;
    const size_t tile_end = std::min(end, tile + tile_rows);
    const size_t rows = tile_end - tile;
    // The next tile's cache lines, shared out over this tile's kernel calls.
    // Each call asks for at most d lines, one per k; a tile that has a next
    // one is full and takes at least tile_rows / nr calls, so with nr <= 16
    // (the floats in a line) they cover the next tile.
    const size_t next_rows = std::min(end, tile_end + tile_rows) - tile_end;
    const auto next_begin = reinterpret_cast<uintptr_t>(targets.row(tile_end));
    const uintptr_t next = next_begin / kLineBytes * kLineBytes;
    const size_t next_lines =
        next_rows == 0
            ? 0
            : (next_begin + next_rows * d * sizeof(float) - 1) / kLineBytes -
                  next / kLineBytes + 1;
    size_t calls = 0;
    for (const PanelQueries::Block& block : panel.blocks) {
      calls += (rows + block.nr - 1) / block.nr;
    }
    const size_t lines_per_call = (next_lines + calls - 1) / calls;
    size_t prefetched = 0;
    row_norms_sq(targets.row(tile), rows, d, norms.data());
    bool any_tiny = false;
    for (size_t r = 0; r < rows; ++r) {
      const float norm_sq = norms[r];
      if (!(norm_sq <= std::numeric_limits<float>::max())) return tile + r;
      tiny_row[r] = norm_sq < tiny;
      any_tiny |= norm_sq < tiny;
      // A tiny row's scores are replaced by a float64 rescore below.
      inv_t[r] = tiny_row[r]
                     ? 0.0f
                     : static_cast<float>(
                           1.0 / std::sqrt(static_cast<double>(norm_sq)));
    }
    std::fill(inv_t.get() + rows, inv_t.get() + rows + max_nr, 0.0f);

    for (const PanelQueries::Block& block : panel.blocks) {
      for (size_t r = 0; r < rows; r += block.nr) {
        const size_t n = std::min(block.nr, rows - r);
        const float* t = targets.row(tile + r);
        if (n < block.nr) {
          padded.assign(block.nr * d, 0.0f);
          std::copy(t, t + n * d, padded.begin());
          t = padded.data();
        }
        const size_t lines = std::min(lines_per_call, next_lines - prefetched);
        panel_scores(
            block.wide, block.pack, d, t, d, block.inv_q, inv_t.get() + r,
            reinterpret_cast<const float*>(next + prefetched * kLineBytes),
            lines, scores.get());
        prefetched += lines;
        if (any_tiny) {
          for (size_t j = 0; j < n; ++j) {
            if (!tiny_row[r + j]) continue;
            RescoreTinyRow(pq, targets.row(tile + r + j), d, block.first,
                           block.count, scores.get() + j * block.width, 1);
          }
        }
        consume(block.first, block.count, tile + r, n,
                static_cast<const float*>(scores.get()), block.width);
      }
    }
  }
  return kNoBadRow;
}

CosineKernel Resolve(CosineKernel kernel, size_t num_queries) {
  if (kernel == CosineKernel::kAuto) {
    kernel = num_queries >= kPanelMinQueries ? CosineKernel::kPanel
                                             : CosineKernel::kRowDot;
  }
  if (kernel == CosineKernel::kPanel && SelectedPanelShape().lanes == 0) {
    kernel = CosineKernel::kRowDot;
  }
  return kernel;
}

// How the target rows are split into tasks: task i covers rows
// [i * rows_per_task, min(n, (i + 1) * rows_per_task)).
struct TaskSplit {
  size_t num_tasks = 0;
  size_t rows_per_task = 0;
};

TaskSplit SplitTargets(size_t n, size_t d, size_t num_queries,
                       ThreadPool* pool) {
  if (n == 0) return {};
  size_t tasks = 1;
  if (pool != nullptr) {
    // Work per row grows with the queries, one unit per group of four.
    const size_t row_work = d * ((num_queries + 3) / 4);
    const size_t min_rows = std::max<size_t>(1, kMinTaskFloats / row_work);
    const size_t max_tasks =
        kTasksPerThread * (static_cast<size_t>(pool->num_threads()) + 1);
    tasks = std::clamp<size_t>((n + min_rows - 1) / min_rows, 1, max_tasks);
  }
  const size_t rows = (n + tasks - 1) / tasks;
  return {(n + rows - 1) / rows, rows};
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

// Offers scores of consecutive rows (row first_row + r at scores[r *
// stride]) to a selector, skipping those that cannot enter it. Rows arrive
// in increasing index order, so a score merely equal to the worst kept one
// loses the tie and can be skipped without a call.
void OfferRows(const float* scores, size_t stride, size_t num_rows,
               size_t first_row, uint32_t index_offset, float min_score,
               TopKSelector* selector) {
  float floor = selector->worst_kept_score();
  for (size_t r = 0; r < num_rows; ++r) {
    const float s = scores[r * stride];
    if (s < min_score || s <= floor) continue;
    selector->Push(static_cast<uint32_t>(index_offset + first_row + r), s);
    floor = selector->worst_kept_score();
  }
}

}  // namespace

absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool, CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (out_stride < targets.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_stride ", out_stride, " is less than the ",
                     targets.rows, " target rows"));
  }
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  if (queries.rows == 0 || targets.rows == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");

  const size_t d = targets.cols;
  const TaskSplit split = SplitTargets(targets.rows, d, queries.rows, pool);
  FirstBadRow bad;
  if (Resolve(kernel, queries.rows) == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      const size_t begin = task * split.rows_per_task;
      const size_t end = std::min(targets.rows, begin + split.rows_per_task);
      const size_t bad_row = PanelRun(
          pq, panel, targets, begin, end,
          [&](size_t row) { return bad.Before(row); },
          [&](size_t first_query, size_t num_queries, size_t first_row,
              size_t num_rows, const float* scores, size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              float* dst = out + (first_query + i) * out_stride + first_row;
              for (size_t j = 0; j < num_rows; ++j) {
                dst[j] = scores[j * width + i];
              }
            }
          });
      if (bad_row != kNoBadRow) bad.Report(bad_row);
    });
  } else {
    hwy::AlignedFreeUniquePtr<float[]> storage;
    const ShiftedQueries shifted =
        ShiftQueries(pq, targets, HWY_DYNAMIC_DISPATCH(RowLanes)(), &storage);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<float> norms(kBlockRows);
      const size_t end =
          std::min(targets.rows, (task + 1) * split.rows_per_task);
      for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
        if (bad.Before(b)) return;
        const size_t block_end = std::min(end, b + kBlockRows);
        const size_t bad_row = ScoreBlock(pq, shifted, targets, b, block_end,
                                          out + b, out_stride, norms.data());
        if (bad_row != kNoBadRow) {
          bad.Report(bad_row);
          return;
        }
      }
    });
  }
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }
  return absl::OkStatus();
}

absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        uint32_t k, float min_score, uint32_t index_offset,
                        ThreadPool* pool, std::vector<TopKList>* out,
                        CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  const size_t num_q = queries.rows;
  if (num_q == 0 || targets.rows == 0) {
    out->assign(num_q, TopKList());
    return absl::OkStatus();
  }

  const size_t d = targets.cols;
  const size_t keep = std::min<size_t>(k, targets.rows);
  const TaskSplit split = SplitTargets(targets.rows, d, num_q, pool);
  // per_task[task][query]: that task's best `keep` for the query.
  std::vector<std::vector<TopKList>> per_task(split.num_tasks);
  FirstBadRow bad;
  auto take_lists = [&](size_t task, std::vector<TopKSelector>& selectors) {
    std::vector<TopKList>& lists = per_task[task];
    lists.reserve(num_q);
    for (TopKSelector& selector : selectors) lists.push_back(selector.Take());
  };
  if (Resolve(kernel, num_q) == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
      const size_t begin = task * split.rows_per_task;
      const size_t end = std::min(targets.rows, begin + split.rows_per_task);
      const size_t bad_row = PanelRun(
          pq, panel, targets, begin, end,
          [&](size_t row) { return bad.Before(row); },
          [&](size_t first_query, size_t num_queries, size_t first_row,
              size_t num_rows, const float* scores, size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              OfferRows(scores + i, width, num_rows, first_row, index_offset,
                        min_score, &selectors[first_query + i]);
            }
          });
      if (bad_row != kNoBadRow) {
        bad.Report(bad_row);
        return;
      }
      take_lists(task, selectors);
    });
  } else {
    hwy::AlignedFreeUniquePtr<float[]> storage;
    const ShiftedQueries shifted =
        ShiftQueries(pq, targets, HWY_DYNAMIC_DISPATCH(RowLanes)(), &storage);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<float> scores(num_q * kBlockRows);
      std::vector<float> norms(kBlockRows);
      std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
      const size_t end =
          std::min(targets.rows, (task + 1) * split.rows_per_task);
      for (size_t b = task * split.rows_per_task; b < end; b += kBlockRows) {
        if (bad.Before(b)) return;
        const size_t block_end = std::min(end, b + kBlockRows);
        const size_t bad_row =
            ScoreBlock(pq, shifted, targets, b, block_end, scores.data(),
                       kBlockRows, norms.data());
        if (bad_row != kNoBadRow) {
          bad.Report(bad_row);
          return;
        }
        for (size_t j = 0; j < num_q; ++j) {
          OfferRows(scores.data() + j * kBlockRows, 1, block_end - b, b,
                    index_offset, min_score, &selectors[j]);
        }
      }
      take_lists(task, selectors);
    });
  }
  if (bad.get() != kNoBadRow) {
    return BadTargetError(targets, bad.get(), index_offset);
  }

  // Merging is tasks x keep entries per query: with many queries and tasks
  // it is worth spreading over the pool too, a group of queries per task.
  out->assign(num_q, TopKList());
  const size_t per_merge = std::max<size_t>(
      1, kMinTaskFloats / std::max<size_t>(1, split.num_tasks * keep));
  RunKernelTasks(pool, (num_q + per_merge - 1) / per_merge, [&](size_t group) {
    std::vector<TopKList> candidates(split.num_tasks);
    const size_t end = std::min(num_q, (group + 1) * per_merge);
    for (size_t j = group * per_merge; j < end; ++j) {
      for (size_t task = 0; task < split.num_tasks; ++task) {
        candidates[task] = std::move(per_task[task][j]);
      }
      (*out)[j] = MergeTopK(candidates, keep);
    }
  });
  return absl::OkStatus();
}

CosineKernel CosineKernelFor(size_t num_queries) {
  return Resolve(CosineKernel::kAuto, num_queries);
}

const char* CosineKernelName(CosineKernel kernel) {
  switch (kernel) {
    case CosineKernel::kAuto:
      return "auto";
    case CosineKernel::kRowDot:
      return "row";
    case CosineKernel::kPanel:
      return "panel";
  }
  return "unknown";
}

const char* CosineSimdTarget() {
  return HWY_DYNAMIC_DISPATCH(SelectedTargetName)();
}

}  // namespace engram::kernels::cpu
