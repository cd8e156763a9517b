// Independent scalar references for the kernels, in float64 and written as
// plainly as possible: they share no code with kernels/ beyond its data types,
// so a bug in a kernel cannot hide by being repeated here. The functions are
// pure and safe to call from any thread; inputs are assumed valid.
#ifndef ENGRAM_TESTS_TESTING_REFERENCE_H_
#define ENGRAM_TESTS_TESTING_REFERENCE_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "kernels/types.h"

namespace engram::testing {

// Q x N cosine scores (row-major by query) of the Q x d queries `q` against
// the N x d targets `t`: dot / (|q| |t|) clamped to [-1, 1], 0 when either
// norm is 0. Inputs must be finite.
std::vector<double> ReferenceCosine(const float* q, size_t num_queries,
                                    const float* t, size_t num_targets,
                                    size_t d);

// The rows of the rows x d matrix `m` for which keep[r], in order: what a
// masked kernel call must agree with once the excluded rows are dropped.
std::vector<float> KeptRows(const float* m, size_t rows, size_t d,
                            const std::vector<bool>& keep);

// For each of the Q queries, the best min(k, N) (index, score) pairs among
// scores[q * N + i] with float(score) >= min_score, by a full sort: higher
// score first, ties by lower index. Scores are rounded to float first, as the
// service reports them.
std::vector<std::vector<std::pair<uint32_t, float>>> ReferenceTopK(
    const std::vector<double>& scores, size_t num_queries, size_t num_targets,
    size_t k, float min_score);

struct ReferenceSpreadResult {
  std::vector<double> activation;  // one per node
  uint32_t hops = 0;
  uint64_t edges_traversed = 0;
};

// Dense float64 spreading activation with the level-synchronous semantics of
// docs/api.md; every hop scans every node and edge. D(h) and theta(h) are
// computed here from params' fields, not with SpreadParams' own helpers.
ReferenceSpreadResult ReferenceSpread(
    const kernels::GraphView& graph,
    absl::Span<const kernels::SpreadSeed> seeds,
    const kernels::SpreadParams& params);

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_TESTING_REFERENCE_H_
