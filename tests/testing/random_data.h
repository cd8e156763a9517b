// Seeded random inputs for tests and benchmarks: the same seed gives the same
// data on every run, so a failure can be reproduced. The functions are pure
// and safe to call from any thread.
#ifndef ENGRAM_TESTS_TESTING_RANDOM_DATA_H_
#define ENGRAM_TESTS_TESTING_RANDOM_DATA_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/types.h"

namespace engram::testing {

// rows x cols floats, row-major, uniform on [-1, 1): the draws of
// std::mt19937_64 through base/random_values.h, as the client's --random data.
std::vector<float> RandomMatrix(size_t rows, size_t cols, uint64_t seed);

// A row mask (kernels::RowMask) that owns its words. Row r is admitted when
// admitted[r]; its bit is bit offset + r. Every bit outside the rows (before
// the offset, past the last row) is set, so a reader that strays there
// counts rows that are not there. mask() borrows the words, so the owner
// must outlive it.
struct OwnedRowMask {
  std::vector<bool> admitted;
  size_t offset = 0;
  std::vector<uint64_t> words;

  kernels::RowMask mask() const {
    return kernels::RowMask{words.data(), offset, admitted.size()};
  }
  size_t count() const;  // admitted rows
};

// The mask of the given rows, their bits from `offset` on.
OwnedRowMask RowMaskOf(const std::vector<bool>& admitted, size_t offset);

// Each of `rows` rows admitted with probability `density`, independently.
OwnedRowMask RandomRowMask(size_t rows, double density, size_t offset,
                           uint64_t seed);

// A directed graph in CSR form that owns its arrays; view() borrows them, so
// the graph must outlive the view.
struct RandomCsrGraph {
  uint32_t num_nodes = 0;
  std::vector<uint32_t> row_offsets;  // num_nodes + 1 entries
  std::vector<uint32_t> targets;
  std::vector<float> weights;  // in (0, 1]

  kernels::GraphView view() const {
    return kernels::GraphView{num_nodes, row_offsets, targets, weights};
  }
};

// Out-degrees uniform in [0, 2 * avg_degree], targets uniform over all nodes
// (self-loops and repeated edges included, as the API allows), weights
// uniform in (0, 1]. Requires num_nodes >= 1 when avg_degree > 0.
RandomCsrGraph RandomGraph(uint32_t num_nodes, uint32_t avg_degree,
                           uint64_t seed);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_RANDOM_DATA_H_
