#include "tests/testing/random_data.h"

#include <random>

#include "absl/types/span.h"
#include "base/random_values.h"

namespace engram::testing {

std::vector<float> RandomMatrix(size_t rows, size_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> values(rows * cols);
  base::FillSymmetricUnit(rng, absl::MakeSpan(values));
  return values;
}

size_t OwnedRowMask::count() const {
  size_t n = 0;
  for (bool a : admitted) n += a ? 1 : 0;
  return n;
}

OwnedRowMask RowMaskOf(const std::vector<bool>& admitted, size_t offset) {
  OwnedRowMask owned;
  owned.admitted = admitted;
  owned.offset = offset;
  // One word more than the rows need: bits past them are set too.
  owned.words.assign((offset + admitted.size()) / 64 + 1, ~uint64_t{0});
  for (size_t r = 0; r < admitted.size(); ++r) {
    const size_t b = offset + r;
    if (!admitted[r]) owned.words[b / 64] &= ~(uint64_t{1} << (b % 64));
  }
  return owned;
}

OwnedRowMask RandomRowMask(size_t rows, double density, size_t offset,
                           uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution admit(density);
  std::vector<bool> admitted(rows);
  for (size_t r = 0; r < rows; ++r) admitted[r] = admit(rng);
  return RowMaskOf(admitted, offset);
}

RandomCsrGraph RandomGraph(uint32_t num_nodes, uint32_t avg_degree,
                           uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> degree(0, 2 * avg_degree);
  std::uniform_int_distribution<uint32_t> node(
      0, num_nodes == 0 ? 0 : num_nodes - 1);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  RandomCsrGraph g;
  g.num_nodes = num_nodes;
  g.row_offsets.reserve(static_cast<size_t>(num_nodes) + 1);
  g.row_offsets.push_back(0);
  for (uint32_t u = 0; u < num_nodes; ++u) {
    const uint32_t deg = degree(rng);
    for (uint32_t e = 0; e < deg; ++e) {
      g.targets.push_back(node(rng));
      // 1 - [0, 1) is (0, 1]; libstdc++ can round the draw up to 1, which
      // would make a zero-weight edge, so that one case is mapped to 1.
      const float w = 1.0f - unit(rng);
      g.weights.push_back(w > 0.0f ? w : 1.0f);
    }
    g.row_offsets.push_back(static_cast<uint32_t>(g.targets.size()));
  }
  return g;
}

}  // namespace engram::testing
