// Backend-neutral data types shared by the CPU and CUDA kernels and the core.
//
// Views borrow memory owned by the caller (typically the parsed request); they
// are cheap to copy and never free anything.
#ifndef ENGRAM_KERNELS_TYPES_H_
#define ENGRAM_KERNELS_TYPES_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace engram::kernels {

// A dense row-major matrix of float32: element (r, c) is data[r * cols + c].
struct MatrixView {
  const float* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;

  const float* row(size_t r) const { return data + r * cols; }
  // Rows [begin, end) as a view of their own (no copy).
  MatrixView Rows(size_t begin, size_t end) const {
    return MatrixView{data + begin * cols, end - begin, cols};
  }
};

// Which rows of a target matrix take part in a search: row r does when bit
// (offset + r) of `words` is set (bit b is bit b % 64 of words[b / 64]).
// Bits past the rows the mask covers are never read. A mask with null
// `words` admits every row; `rows` is then unused. Kernels given a mask
// score and return only admitted rows, indices still numbered among all
// rows, and skip runs of excluded rows without reading them.
struct RowMask {
  const uint64_t* words = nullptr;
  size_t offset = 0;  // bit of row 0, so a mask can be sliced like a matrix
  size_t rows = 0;

  bool all() const { return words == nullptr; }
  bool test(size_t r) const {
    const size_t b = offset + r;
    return words == nullptr || ((words[b >> 6] >> (b & 63)) & 1) != 0;
  }
  // Rows [begin, end) as a mask of their own.
  RowMask Rows(size_t begin, size_t end) const {
    return words == nullptr ? RowMask{}
                            : RowMask{words, offset + begin, end - begin};
  }
};

// One entry of a top-k list: an index (target row or graph node) and its score.
struct ScoredIndex {
  uint32_t index = 0;
  float score = 0.0f;

  friend bool operator==(const ScoredIndex& a, const ScoredIndex& b) {
    return a.index == b.index && a.score == b.score;
  }
};

// Best-first: higher score first, ties by lower index. This is the order of
// every top-k list the service returns.
inline bool BetterThan(const ScoredIndex& a, const ScoredIndex& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.index < b.index;
}

// A top-k list, best first (see BetterThan).
using TopKList = std::vector<ScoredIndex>;

// A directed graph in CSR form: node u's out-edges are the entries
// [row_offsets[u], row_offsets[u + 1]) of targets and weights.
struct GraphView {
  uint32_t num_nodes = 0;
  absl::Span<const uint32_t> row_offsets;  // num_nodes + 1 entries
  absl::Span<const uint32_t> targets;      // one per edge
  absl::Span<const float> weights;         // one per edge

  size_t num_edges() const { return targets.size(); }
  uint32_t out_degree(uint32_t u) const {
    return row_offsets[u + 1] - row_offsets[u];
  }
};

struct SpreadSeed {
  uint32_t node = 0;
  float activation = 0.0f;
};

enum class DecayKind { kExponential, kPowerLaw, kLinear, kConstant };

// Spreading parameters with the API's defaults (docs/api.md). Validation of
// ranges lives in core/validation.h; kernels assume valid parameters.
struct SpreadParams {
  uint32_t max_hops = 4;
  DecayKind decay = DecayKind::kExponential;
  float decay_param = 0.7f;  // rate, exponent, slope or factor by `decay`
  float threshold = 0.01f;
  std::vector<float> hop_thresholds;  // index h-1 overrides `threshold`
  float max_activation = 1.0f;

  // D(h), the decay applied to what travels on hop h (h >= 1).
  double Decay(uint32_t h) const {
    const double p = decay_param;
    switch (decay) {
      case DecayKind::kExponential:
        return std::exp(-p * h);
      case DecayKind::kPowerLaw:
        return std::pow(static_cast<double>(h) + 1.0, -p);
      case DecayKind::kLinear:
        return std::max(0.0, 1.0 - p * h);
      case DecayKind::kConstant:
        return p;
    }
    return 0.0;
  }
  // theta(h): the threshold in force on hop h (h >= 1).
  float Threshold(uint32_t h) const {
    return h >= 1 && h <= hop_thresholds.size() ? hop_thresholds[h - 1]
                                                : threshold;
  }
};

struct SpreadResult {
  std::vector<float> activation;  // one per node
  uint32_t hops = 0;              // last hop that changed an activation
  uint64_t edges_traversed = 0;
};

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_TYPES_H_
