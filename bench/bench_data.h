// Deterministic benchmark inputs shared by the C++ benchmarks and the peer
// scripts: the same call gives the same data in every program and run, and
// make_bench_data writes it as .npy so that the Python peers (numpy, FAISS,
// scipy) time exactly the data our kernels are timed on.
#ifndef ENGRAM_BENCH_BENCH_DATA_H_
#define ENGRAM_BENCH_BENCH_DATA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/types.h"

namespace engram::bench {

// rows x cols floats, row-major, uniform on [-1, 1) from a counter-based
// generator (element i of stream `seed` depends on nothing else), so a large
// matrix is generated in parallel and any prefix of rows is the same matrix
// as a smaller call with the same seed and cols.
std::vector<float> BenchMatrix(size_t rows, size_t cols, uint64_t seed);

// A graph in CSR form that owns its arrays.
struct CsrGraph {
  uint32_t num_nodes = 0;
  std::vector<uint32_t> row_offsets;
  std::vector<uint32_t> targets;
  std::vector<float> weights;

  kernels::GraphView view() const {
    return kernels::GraphView{num_nodes, row_offsets, targets, weights};
  }
};

// An R-MAT graph (Chakrabarti et al. 2004) of 2^scale nodes and
// avg_degree * 2^scale edges with the Graph500 quadrant probabilities
// (0.57, 0.19, 0.19, 0.05): skewed degrees and a few hubs, as in real
// association graphs. Node ids are scrambled by a fixed permutation so that
// hubs are not clustered at low ids; duplicate edges and self-loops are kept
// (the API allows them).
enum class RmatWeights {
  kUniform,        // uniform on (0, 1]
  kFanNormalized,  // uniform on (0, 1] divided by the source's out-degree:
                   // a node's activation is shared among its associations,
                   // as in ACT-R's fan effect
};
CsrGraph RmatGraph(int scale, int avg_degree, uint64_t seed,
                   RmatWeights weights = RmatWeights::kUniform);

// Writes a C-order .npy file: a rows x cols float32 matrix, or a vector of
// float32 or uint32.
absl::Status WriteNpyMatrix(const std::string& path, const float* data,
                            size_t rows, size_t cols);
absl::Status WriteNpyVector(const std::string& path, const float* data,
                            size_t size);
absl::Status WriteNpyVector(const std::string& path, const uint32_t* data,
                            size_t size);

}  // namespace engram::bench

#endif  // ENGRAM_BENCH_BENCH_DATA_H_
