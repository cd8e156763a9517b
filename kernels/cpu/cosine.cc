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

#include "base/status_macros.h"
#include "kernels/cosine_shape.h"
#include "kernels/cpu/cosine_prep.h"
#include "kernels/cpu/cosine_special_rows.h"
#include "kernels/cpu/topk.h"
#include "kernels/row_mask.h"

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
HWY_EXPORT(DotsAndNormsOfRows);
HWY_EXPORT(RowNormsSq);
HWY_EXPORT(PanelGeometry);
HWY_EXPORT(PanelScores);
HWY_EXPORT(PanelScoresOfRows);
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

// A masked panel call scores a window of rows where it lies, excluded rows
// and all, when at least this share of its rows is admitted. A window
// scored in place costs 1 / share of the contiguous pass per admitted row;
// gathered rows cost 1.2x (64 queries) to 1.7x (16 queries) on the machines
// measured (docs/performance.md), each row's first lines waiting on memory
// that the contiguous pass streams.
constexpr double kInPlaceShare = 0.8;
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

// Row kernel, after the dot products of a block: turns the dots of `count`
// rows into scores in place and rescores the tiny rows; row i of the block
// is row row_of(i) of `targets`. Returns the first row (in `targets`) of the
// block whose squared norm is not finite, or kNoBadRow; the block's rows
// from that one on are left unscored.
template <class RowOf>
size_t FinishBlock(const CpuQueries& pq, const MatrixView& targets,
                   const RowOf& row_of, size_t count, float* scores,
                   size_t stride, const float* norms) {
  const size_t d = targets.cols;
  uint8_t special[kBlockRows];
  if (HWY_DYNAMIC_DISPATCH(FinishRowScores)(scores, stride, pq.rows,
                                            pq.inv_norm_f.data(), norms, count,
                                            TinyNormSq(d), special) == 0) {
    return kNoBadRow;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!special[i]) continue;
    const size_t r = row_of(i);
    if (!(norms[i] <= std::numeric_limits<float>::max())) return r;
    RescoreTinyRow(pq, targets.row(r), d, 0, pq.rows, scores + i, stride);
  }
  return kNoBadRow;
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
  return FinishBlock(
      pq, targets, [begin](size_t i) { return begin + i; }, end - begin, scores,
      stride, norms);
}

// ScoreBlock over gathered rows: row i of the block is rows[i] of `targets`
// (increasing, count <= kBlockRows), scored into scores[j * stride + i];
// rows[count, count + ahead) follow and are only prefetched. Each row's
// scores are the ones ScoreBlock gives it, bit for bit.
size_t ScoreRows(const CpuQueries& pq, const ShiftedQueries& shifted,
                 const MatrixView& targets, const uint32_t* rows, size_t count,
                 size_t ahead, float* scores, size_t stride, float* norms) {
  HWY_DYNAMIC_DISPATCH(DotsAndNormsOfRows)
  (pq.values.data(), pq.rows, pq.stride, shifted, targets.data, rows, count,
   ahead, targets.cols, scores, stride, norms);
  return FinishBlock(
      pq, targets, [rows](size_t i) { return size_t{rows[i]}; }, count, scores,
      stride, norms);
}

// The panel kernel's work on one tile of target rows, with the buffers it
// reuses from tile to tile; one per task.
class PanelTiles {
 public:
  PanelTiles(const CpuQueries& pq, const PanelQueries& panel, size_t d)
      : pq_(pq), panel_(panel), d_(d) {
    tile_rows_ = std::max<size_t>(1, kPanelTileBytes / (d * sizeof(float)));
    // A whole number of kernel calls per tile for both block widths.
    const size_t step = std::lcm(panel.shape.nr_narrow, panel.shape.nr_wide);
    tile_rows_ = std::max(step, tile_rows_ / step * step);
    norms_.resize(tile_rows_);
    // inv_t is read max_nr at a time, so it is padded with zeros past the
    // tile.
    inv_t_ = hwy::AllocateAligned<float>(tile_rows_ + panel.max_nr);
    tiny_row_.resize(tile_rows_);
    scores_ = hwy::AllocateAligned<float>(panel.max_nr * panel.max_width);
  }

  size_t tile_rows() const { return tile_rows_; }

  // The cache lines to ask for while a tile is scored: `lines` of them,
  // from `next` on or, with `listed`, at listed[0, lines).
  struct Prefetch {
    uintptr_t next = 0;
    const float* const* listed = nullptr;
    size_t lines = 0;
  };

  // Scores the `rows` (<= tile_rows()) rows of d floats at `t`: a norm pass,
  // then every query block against them, nr rows at a time. Each group of
  // scores goes to consume(first_query, num_queries, first, num, scores,
  // width) with scores[j * width + i] for query first_query + i and row
  // first + j of the tile. The lines of `prefetch` are shared out over the
  // kernel calls. Returns the first row of the tile whose squared norm is
  // not finite (nothing is consumed then), or kNoBadRow.
  template <class Consume>
  size_t Score(const float* t, size_t rows, const Prefetch& prefetch,
               const Consume& consume) {
    return Run(
        t, [&](size_t r) { return t + r * d_; }, rows, prefetch, consume);
  }

  // Score for rows that lie anywhere: row r of the tile at rows[r].
  template <class Consume>
  size_t ScoreRows(const float* const* rows, size_t count,
                   const Prefetch& prefetch, const Consume& consume) {
    return Run(
        nullptr, [&](size_t r) { return rows[r]; }, count, prefetch, consume);
  }

 private:
  // Score over the rows row_at(r), r < rows; `t` is where they lie when
  // they are contiguous, else null. Each row's scores are the same bits
  // either way: the kernels see the same values in the same order.
  template <class RowAt, class Consume>
  size_t Run(const float* t, const RowAt& row_at, size_t rows,
             const Prefetch& prefetch, const Consume& consume) {
    constexpr size_t kLineBytes = 64;
    const size_t d = d_;
    const size_t next_lines = prefetch.lines;
    size_t calls = 0;
    for (const PanelQueries::Block& block : panel_.blocks) {
      calls += (rows + block.nr - 1) / block.nr;
    }
    const size_t lines_per_call = (next_lines + calls - 1) / calls;
    size_t prefetched = 0;
    auto& row_norms_sq = HWY_DYNAMIC_DISPATCH(RowNormsSq);
    if (t != nullptr) {
      row_norms_sq(t, rows, d, norms_.data());
    } else {
      for (size_t r = 0; r < rows; ++r)
        row_norms_sq(row_at(r), 1, d, &norms_[r]);
    }
    const float tiny = TinyNormSq(d);
    bool any_tiny = false;
    for (size_t r = 0; r < rows; ++r) {
      const float norm_sq = norms_[r];
      if (!(norm_sq <= std::numeric_limits<float>::max())) return r;
      tiny_row_[r] = norm_sq < tiny;
      any_tiny |= norm_sq < tiny;
      // A tiny row's scores are replaced by a float64 rescore below.
      inv_t_[r] = tiny_row_[r]
                      ? 0.0f
                      : static_cast<float>(
                            1.0 / std::sqrt(static_cast<double>(norm_sq)));
    }
    std::fill(inv_t_.get() + rows, inv_t_.get() + rows + panel_.max_nr, 0.0f);

    auto& panel_scores = HWY_DYNAMIC_DISPATCH(PanelScores);
    auto& panel_scores_of_rows = HWY_DYNAMIC_DISPATCH(PanelScoresOfRows);
    for (const PanelQueries::Block& block : panel_.blocks) {
      for (size_t r = 0; r < rows; r += block.nr) {
        const size_t n = std::min(block.nr, rows - r);
        const size_t lines = std::min(lines_per_call, next_lines - prefetched);
        const float* run = reinterpret_cast<const float*>(
            prefetch.next + prefetched * kLineBytes);
        if (t != nullptr && prefetch.listed == nullptr && n == block.nr) {
          panel_scores(block.wide, block.pack, d, t + r * d, d, block.inv_q,
                       inv_t_.get() + r, run, lines, scores_.get());
        } else {
          // Past the tile's end the group repeats its first row, a finite
          // one (the norm pass has checked it): inv_t is zero there and
          // those scores are dropped.
          const float* group[cosine_internal::PanelShape::kMaxRows];
          for (size_t j = 0; j < block.nr; ++j) {
            group[j] = row_at(r + (j < n ? j : 0));
          }
          panel_scores_of_rows(
              block.wide, block.pack, d, group, block.inv_q, inv_t_.get() + r,
              prefetch.listed == nullptr ? nullptr
                                         : prefetch.listed + prefetched,
              lines, run, lines, scores_.get());
        }
        prefetched += lines;
        if (any_tiny) {
          for (size_t j = 0; j < n; ++j) {
            if (!tiny_row_[r + j]) continue;
            RescoreTinyRow(pq_, row_at(r + j), d, block.first, block.count,
                           scores_.get() + j * block.width, 1);
          }
        }
        consume(block.first, block.count, r, n,
                static_cast<const float*>(scores_.get()), block.width);
      }
    }
    return kNoBadRow;
  }

  const CpuQueries& pq_;
  const PanelQueries& panel_;
  const size_t d_;
  size_t tile_rows_ = 0;
  std::vector<float> norms_;
  hwy::AlignedFreeUniquePtr<float[]> inv_t_;
  std::vector<uint8_t> tiny_row_;
  hwy::AlignedFreeUniquePtr<float[]> scores_;
};

// Panel kernel over target rows [begin, end): tile by tile, a norm pass
// (the tile's only read from memory, already in cache but for the first
// tile: the kernel calls of the tile before prefetched it) and then every
// query block against the tile, nr rows at a time. Each group of scores goes
// to consume(first_query, num_queries, first_row, num_rows, scores, width)
// with scores[j * width + i] for query first_query + i and row first_row +
// j. Returns the first bad row (see ScoreBlock), or kNoBadRow; `skip(row)`
// true abandons the run before a tile starting at `row`.
template <class Skip, class Consume>
size_t PanelRun(const CpuQueries& pq, const PanelQueries& panel,
                const MatrixView& targets, size_t begin, size_t end,
                const Skip& skip, const Consume& consume) {
  const size_t d = targets.cols;
  PanelTiles tiles(pq, panel, d);
  const size_t tile_rows = tiles.tile_rows();
  constexpr size_t kLineBytes = 64;

  for (size_t tile = begin; tile < end; tile += tile_rows) {
    if (skip(tile)) return kNoBadRow;
    const size_t tile_end = std::min(end, tile + tile_rows);
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
    const size_t bad = tiles.Score(
        targets.row(tile), tile_end - tile, {next, nullptr, next_lines},
        [&](size_t first_query, size_t num_queries, size_t first,
            size_t num_rows, const float* scores, size_t width) {
          consume(first_query, num_queries, tile + first, num_rows, scores,
                  width);
        });
    if (bad != kNoBadRow) return tile + bad;
  }
  return kNoBadRow;
}

// The admitted rows of [begin, end) in batches of at most `batch`, in
// order: fn(rows, count, ahead) gets a batch in rows[0, count) and the
// admitted rows after it, as far as they are known, in rows[count, count +
// ahead) (at most `lookahead` of them). `buffer` holds batch + lookahead
// entries. Stops early when fn returns false.
template <class Fn>
void ForEachAdmittedBatch(const RowMask& mask, size_t begin, size_t end,
                          size_t batch, size_t lookahead, uint32_t* buffer,
                          const Fn& fn) {
  const size_t capacity = batch + lookahead;
  size_t filled = 0;
  size_t pos = begin;
  const auto fill = [&] {
    pos = WalkAdmitted(mask, pos, end, [&](size_t r) {
      buffer[filled++] = static_cast<uint32_t>(r);
      return filled < capacity;
    });
  };
  fill();
  while (filled > 0) {
    const size_t count = std::min(batch, filled);
    if (!fn(static_cast<const uint32_t*>(buffer), count, filled - count)) {
      return;
    }
    std::copy(buffer + count, buffer + filled, buffer);
    filled -= count;
    fill();
  }
}

// PanelRun over the admitted rows of [begin, end), a window of tile_rows()
// rows at a time. A window that admits at least kInPlaceShare of its rows
// is scored where it lies, as PanelRun scores a tile, and the scores of
// its excluded rows are dropped: reading a few rows too many costs less
// than gathering the rest. The admitted rows of sparser windows are
// gathered a tile's worth at a time and scored where they lie (the kernel
// reads a group's rows through their addresses, so the tile is whole
// however sparse the mask); while one such tile is scored, the kernel
// calls ask for the rows of the next, line by line. Scores do not depend on
// where a row is read from, so either way they are PanelRun's bit for bit.
// Each group of scores goes to consume(first_query, num_queries, rows,
// first, num_rows, scores, width): the group's rows are rows[0, num_rows)
// of `targets`, increasing, and the task's admitted rows first to first +
// num_rows - 1. Groups arrive in row order for each query. Returns the
// first bad admitted row, or kNoBadRow; `skip(row)` true abandons the run
// before a tile whose first row is `row`.
template <class Skip, class Consume>
size_t MaskedPanelRun(const CpuQueries& pq, const PanelQueries& panel,
                      const MatrixView& targets, const RowMask& mask,
                      size_t begin, size_t end, const Skip& skip,
                      const Consume& consume) {
  constexpr uintptr_t kLineBytes = 64;
  const size_t d = targets.cols;
  const size_t row_bytes = d * sizeof(float);
  PanelTiles tiles(pq, panel, d);
  const size_t tile_rows = tiles.tile_rows();
  std::vector<const float*> gathered(tile_rows);
  // Gathered rows wait a tile: `pending` (a full tile, or empty) is scored
  // once `next` has filled up behind it, so that next's lines can be asked
  // for meanwhile.
  std::vector<uint32_t> pending, next;
  pending.reserve(tile_rows);
  next.reserve(tile_rows);
  std::vector<uint32_t> window;  // the admitted rows of a window
  window.reserve(tile_rows);
  std::vector<const float*> lines;
  lines.reserve(tile_rows * (row_bytes / kLineBytes + 2));
  // A group's admitted rows and their scores, for a window scored in place.
  std::vector<uint32_t> kept(panel.max_nr);
  auto kept_scores =
      hwy::AllocateAligned<float>(panel.max_nr * panel.max_width);
  size_t done = 0;  // admitted rows scored before this tile
  size_t bad_row = kNoBadRow;

  const auto list_lines = [&](const std::vector<uint32_t>& rows) {
    lines.clear();
    for (const uint32_t r : rows) {
      const auto first = reinterpret_cast<uintptr_t>(targets.row(r));
      for (uintptr_t line = first / kLineBytes * kLineBytes;
           line < first + row_bytes; line += kLineBytes) {
        lines.push_back(reinterpret_cast<const float*>(line));
      }
    }
  };
  // Scores rows[0, count) where they lie, asking for `prefetch` meanwhile.
  const auto score_gathered = [&](const uint32_t* rows, size_t count,
                                  const PanelTiles::Prefetch& prefetch) {
    for (size_t i = 0; i < count; ++i) gathered[i] = targets.row(rows[i]);
    const size_t bad = tiles.ScoreRows(
        gathered.data(), count, prefetch,
        [&](size_t first_query, size_t num_queries, size_t first,
            size_t num_rows, const float* scores, size_t width) {
          consume(first_query, num_queries, rows + first, done + first,
                  num_rows, scores, width);
        });
    if (bad != kNoBadRow) {
      bad_row = rows[bad];
      return false;
    }
    done += count;
    return true;
  };
  // Scores `rows`, then empties it.
  const auto score_batch = [&](std::vector<uint32_t>& rows,
                               const PanelTiles::Prefetch& prefetch) {
    if (rows.empty()) return true;
    if (skip(rows[0])) return false;
    const bool ok = score_gathered(rows.data(), rows.size(), prefetch);
    rows.clear();
    return ok;
  };
  // Scores every gathered row, asking for `then` while the last batch is.
  const auto flush = [&](const PanelTiles::Prefetch& then) {
    if (next.empty()) return score_batch(pending, then);
    list_lines(next);
    return score_batch(pending, {0, lines.data(), lines.size()}) &&
           score_batch(next, then);
  };
  // Scores window [w, w + n), whose admitted rows are `window`, in place.
  const auto score_in_place = [&](size_t w, size_t n,
                                  const PanelTiles::Prefetch& prefetch) {
    const size_t bad = tiles.Score(
        targets.row(w), n, prefetch,
        [&](size_t first_query, size_t num_queries, size_t first,
            size_t num_rows, const float* scores, size_t width) {
          const auto from = std::lower_bound(window.begin(), window.end(),
                                             static_cast<uint32_t>(w + first));
          size_t m = 0;
          for (auto it = from; it != window.end() && *it < w + first + num_rows;
               ++it) {
            kept[m] = *it;
            std::copy(scores + (*it - w - first) * width,
                      scores + (*it - w - first + 1) * width,
                      kept_scores.get() + m * width);
            ++m;
          }
          if (m == 0) return;
          consume(first_query, num_queries, kept.data(),
                  done + static_cast<size_t>(from - window.begin()), m,
                  kept_scores.get(), width);
        });
    if (bad == kNoBadRow) {
      done += window.size();
      return true;
    }
    // The norm pass stops at the window's first bad row, admitted or not,
    // and nothing has been consumed: an excluded bad row must not fail the
    // call, so the window's admitted rows are gathered instead.
    if (std::binary_search(window.begin(), window.end(),
                           static_cast<uint32_t>(w + bad))) {
      bad_row = w + bad;
      return false;
    }
    return score_gathered(window.data(), window.size(), {});
  };

  bool stopped = false;  // by a bad row, or by skip()
  for (size_t w = begin; w < end && !stopped; w += tile_rows) {
    const size_t n = std::min(tile_rows, end - w);
    window.clear();
    AppendAdmittedRows(mask, w, w + n, &window);
    if (window.empty()) continue;
    if (window.size() >= kInPlaceShare * n) {
      // The window's lines are asked for while the rows before it are
      // scored, and those of the window after it while it is.
      const uintptr_t here = reinterpret_cast<uintptr_t>(targets.row(w));
      const size_t after = std::min(tile_rows, end - (w + n));
      stopped =
          !flush({here, nullptr, n * row_bytes / kLineBytes}) || skip(w) ||
          !score_in_place(
              w, n,
              {here + n * row_bytes, nullptr, after * row_bytes / kLineBytes});
      continue;
    }
    for (size_t i = 0; i < window.size() && !stopped; ++i) {
      next.push_back(window[i]);
      if (next.size() == tile_rows) {
        list_lines(next);
        stopped = !score_batch(pending, {0, lines.data(), lines.size()});
        std::swap(pending, next);
      }
    }
  }
  if (!stopped) flush({});
  return bad_row;
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

// OfferRows for gathered rows: the score at scores[i * stride] is row
// rows[i]'s, the rows increasing.
void OfferGatheredRows(const float* scores, size_t stride, const uint32_t* rows,
                       size_t num_rows, uint32_t index_offset, float min_score,
                       TopKSelector* selector) {
  float floor = selector->worst_kept_score();
  for (size_t i = 0; i < num_rows; ++i) {
    const float s = scores[i * stride];
    if (s < min_score || s <= floor) continue;
    selector->Push(index_offset + rows[i], s);
    floor = selector->worst_kept_score();
  }
}

// How a masked call splits the target rows into tasks of about equal
// numbers of admitted rows, however they are spread: task i covers rows
// [bounds[i], bounds[i + 1]), in which the admitted rows numbered
// [i * per_task, min(admitted, (i + 1) * per_task)) among all lie.
struct MaskedSplit {
  size_t num_tasks = 0;
  size_t per_task = 0;
  std::vector<size_t> bounds;
};

MaskedSplit SplitAdmitted(const RowMask& mask, size_t n, size_t admitted,
                          size_t d, size_t num_queries, ThreadPool* pool) {
  const TaskSplit split = SplitTargets(admitted, d, num_queries, pool);
  MaskedSplit out;
  out.num_tasks = split.num_tasks;
  out.per_task = split.rows_per_task;
  out.bounds.reserve(split.num_tasks + 1);
  out.bounds.push_back(0);
  for (size_t i = 1; i < split.num_tasks; ++i) {
    out.bounds.push_back(
        SkipAdmitted(mask, out.bounds.back(), n, out.per_task));
  }
  out.bounds.push_back(n);
  return out;
}

// CosineDense over the admitted rows, admitted < targets.rows: every task
// gathers its share of them, a block (row kernel) or a tile (panel kernel)
// at a time, and scores the batch where the unmasked call would.
void MaskedDense(const CpuQueries& pq, const MatrixView& targets,
                 const RowMask& mask, size_t admitted, float* out,
                 size_t out_stride, ThreadPool* pool, CosineKernel kernel,
                 FirstBadRow* bad) {
  const size_t d = targets.cols;
  const MaskedSplit split =
      SplitAdmitted(mask, targets.rows, admitted, d, pq.rows, pool);
  const auto skip = [&](size_t row) { return bad->Before(row); };
  if (kernel == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      float* base = out + task * split.per_task;
      const size_t bad_row = MaskedPanelRun(
          pq, panel, targets, mask, split.bounds[task], split.bounds[task + 1],
          skip,
          [&](size_t first_query, size_t num_queries, const uint32_t*,
              size_t first, size_t num_rows, const float* scores,
              size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              float* dst = base + (first_query + i) * out_stride + first;
              for (size_t j = 0; j < num_rows; ++j) {
                dst[j] = scores[j * width + i];
              }
            }
          });
      if (bad_row != kNoBadRow) bad->Report(bad_row);
    });
    return;
  }
  hwy::AlignedFreeUniquePtr<float[]> storage;
  const ShiftedQueries shifted =
      ShiftQueries(pq, targets, HWY_DYNAMIC_DISPATCH(RowLanes)(), &storage);
  const size_t lookahead = cosine_internal::GatheredRowsAhead(d);
  RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
    std::vector<float> norms(kBlockRows);
    std::vector<uint32_t> rows(kBlockRows + lookahead);
    float* dst = out + task * split.per_task;
    ForEachAdmittedBatch(
        mask, split.bounds[task], split.bounds[task + 1], kBlockRows, lookahead,
        rows.data(), [&](const uint32_t* batch, size_t count, size_t ahead) {
          if (skip(batch[0])) return false;
          const size_t bad_row =
              ScoreRows(pq, shifted, targets, batch, count, ahead, dst,
                        out_stride, norms.data());
          if (bad_row != kNoBadRow) {
            bad->Report(bad_row);
            return false;
          }
          dst += count;
          return true;
        });
  });
}

// The top-k of each task's admitted rows (see MaskedDense) into
// per_task[task][query]; tasks that meet a bad row report it and leave
// their lists empty.
void MaskedTopK(const CpuQueries& pq, const MatrixView& targets,
                const RowMask& mask, size_t admitted, size_t keep,
                float min_score, uint32_t index_offset, ThreadPool* pool,
                CosineKernel kernel, FirstBadRow* bad,
                std::vector<std::vector<TopKList>>* per_task) {
  const size_t d = targets.cols;
  const size_t num_q = pq.rows;
  const MaskedSplit split =
      SplitAdmitted(mask, targets.rows, admitted, d, num_q, pool);
  per_task->assign(split.num_tasks, {});
  const auto skip = [&](size_t row) { return bad->Before(row); };
  const auto take_lists = [&](size_t task,
                              std::vector<TopKSelector>& selectors) {
    std::vector<TopKList>& lists = (*per_task)[task];
    lists.reserve(num_q);
    for (TopKSelector& selector : selectors) lists.push_back(selector.Take());
  };
  if (kernel == CosineKernel::kPanel) {
    PanelQueries panel;
    PackPanelQueries(pq, d, SelectedPanelShape(), &panel);
    RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
      std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
      const size_t bad_row = MaskedPanelRun(
          pq, panel, targets, mask, split.bounds[task], split.bounds[task + 1],
          skip,
          [&](size_t first_query, size_t num_queries, const uint32_t* rows,
              size_t, size_t num_rows, const float* scores, size_t width) {
            for (size_t i = 0; i < num_queries; ++i) {
              OfferGatheredRows(scores + i, width, rows, num_rows, index_offset,
                                min_score, &selectors[first_query + i]);
            }
          });
      if (bad_row != kNoBadRow) {
        bad->Report(bad_row);
        return;
      }
      take_lists(task, selectors);
    });
    return;
  }
  hwy::AlignedFreeUniquePtr<float[]> storage;
  const ShiftedQueries shifted =
      ShiftQueries(pq, targets, HWY_DYNAMIC_DISPATCH(RowLanes)(), &storage);
  const size_t lookahead = cosine_internal::GatheredRowsAhead(d);
  RunKernelTasks(pool, split.num_tasks, [&](size_t task) {
    std::vector<float> scores(num_q * kBlockRows);
    std::vector<float> norms(kBlockRows);
    std::vector<uint32_t> rows(kBlockRows + lookahead);
    std::vector<TopKSelector> selectors(num_q, TopKSelector(keep));
    bool failed = false;
    ForEachAdmittedBatch(
        mask, split.bounds[task], split.bounds[task + 1], kBlockRows, lookahead,
        rows.data(), [&](const uint32_t* batch, size_t count, size_t ahead) {
          if (skip(batch[0])) {
            failed = true;
            return false;
          }
          const size_t bad_row =
              ScoreRows(pq, shifted, targets, batch, count, ahead,
                        scores.data(), kBlockRows, norms.data());
          if (bad_row != kNoBadRow) {
            bad->Report(bad_row);
            failed = true;
            return false;
          }
          for (size_t j = 0; j < num_q; ++j) {
            OfferGatheredRows(scores.data() + j * kBlockRows, 1, batch, count,
                              index_offset, min_score, &selectors[j]);
          }
          return true;
        });
    if (!failed) take_lists(task, selectors);
  });
}

}  // namespace

absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         float* out, size_t out_stride, uint32_t index_offset,
                         ThreadPool* pool, CosineKernel kernel) {
  return CosineDense(queries, targets, RowMask{}, out, out_stride, index_offset,
                     pool, kernel);
}

absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                         const RowMask& mask, float* out, size_t out_stride,
                         uint32_t index_offset, ThreadPool* pool,
                         CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  ENGRAM_RETURN_IF_ERROR(CheckRowMask(mask, targets.rows));
  const size_t admitted = CountAdmitted(mask, 0, targets.rows);
  ENGRAM_RETURN_IF_ERROR(
      CheckCosineOutStride(out_stride, admitted, !mask.all()));
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  if (queries.rows == 0 || admitted == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out is null");

  const size_t d = targets.cols;
  kernel = Resolve(kernel, queries.rows);
  FirstBadRow bad;
  if (admitted < targets.rows) {
    MaskedDense(pq, targets, mask, admitted, out, out_stride, pool, kernel,
                &bad);
  } else if (kernel == CosineKernel::kPanel) {
    const TaskSplit split = SplitTargets(targets.rows, d, queries.rows, pool);
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
    const TaskSplit split = SplitTargets(targets.rows, d, queries.rows, pool);
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
  return CosineTopK(queries, targets, RowMask{}, k, min_score, index_offset,
                    pool, out, kernel);
}

absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                        const RowMask& mask, uint32_t k, float min_score,
                        uint32_t index_offset, ThreadPool* pool,
                        std::vector<TopKList>* out, CosineKernel kernel) {
  ENGRAM_RETURN_IF_ERROR(CheckCosineShapes(queries, targets));
  ENGRAM_RETURN_IF_ERROR(CheckCosineIndexRange(targets.rows, index_offset));
  ENGRAM_RETURN_IF_ERROR(CheckRowMask(mask, targets.rows));
  if (k == 0) return absl::InvalidArgumentError("k must be at least 1");
  if (out == nullptr) return absl::InvalidArgumentError("out is null");
  CpuQueries pq;
  ENGRAM_RETURN_IF_ERROR(PrepareCpuQueries(queries, &pq));
  const size_t num_q = queries.rows;
  const size_t admitted = num_q == 0 ? 0 : CountAdmitted(mask, 0, targets.rows);
  if (admitted == 0) {
    out->assign(num_q, TopKList());
    return absl::OkStatus();
  }

  const size_t d = targets.cols;
  const size_t keep = std::min<size_t>(k, admitted);
  kernel = Resolve(kernel, num_q);
  // per_task[task][query]: that task's best `keep` for the query.
  std::vector<std::vector<TopKList>> per_task;
  FirstBadRow bad;
  auto take_lists = [&](size_t task, std::vector<TopKSelector>& selectors) {
    std::vector<TopKList>& lists = per_task[task];
    lists.reserve(num_q);
    for (TopKSelector& selector : selectors) lists.push_back(selector.Take());
  };
  if (admitted < targets.rows) {
    MaskedTopK(pq, targets, mask, admitted, keep, min_score, index_offset, pool,
               kernel, &bad, &per_task);
  } else if (kernel == CosineKernel::kPanel) {
    const TaskSplit split = SplitTargets(targets.rows, d, num_q, pool);
    per_task.resize(split.num_tasks);
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
    const TaskSplit split = SplitTargets(targets.rows, d, num_q, pool);
    per_task.resize(split.num_tasks);
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
  const size_t num_tasks = per_task.size();
  out->assign(num_q, TopKList());
  const size_t per_merge = std::max<size_t>(
      1, kMinTaskFloats / std::max<size_t>(1, num_tasks * keep));
  RunKernelTasks(pool, (num_q + per_merge - 1) / per_merge, [&](size_t group) {
    std::vector<TopKList> candidates(num_tasks);
    const size_t end = std::min(num_q, (group + 1) * per_merge);
    for (size_t j = group * per_merge; j < end; ++j) {
      for (size_t task = 0; task < num_tasks; ++task) {
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
