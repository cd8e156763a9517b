// Fuzzes the graph validator with raw arrays, not protobuf: the first bytes
// pick num_nodes and the array lengths, the rest fill offsets, targets and
// weights. Whatever the validator accepts, the CPU kernel must run on
// without reading out of bounds (ASan) and with identical results twice.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/validation.h"
#include "kernels/cpu/spread.h"
#include "tests/fuzz/fuzz_engine.h"

namespace {

template <typename T>
std::vector<T> Take(const uint8_t*& data, size_t& size, size_t count) {
  std::vector<T> out(count);
  const size_t bytes = std::min(size, count * sizeof(T));
  if (bytes > 0) std::memcpy(out.data(), data, bytes);
  data += bytes;
  size -= bytes;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t num_nodes = data[0] % 64;
  const size_t offsets = data[1] % 66;
  const size_t edges = data[2] % 128;
  // Usually one weight per edge; sometimes one too few or too many.
  const size_t weights =
      edges + (data[3] % 3) > 0 ? edges + (data[3] % 3) - 1 : 0;
  data += 4;
  size -= 4;
  auto row_offsets = Take<uint32_t>(data, size, offsets);
  auto targets = Take<uint32_t>(data, size, edges);
  auto weight_values = Take<float>(data, size, weights);
  auto seed_bytes = Take<uint32_t>(data, size, 2);

  std::vector<engram::kernels::SpreadSeed> seeds = {{seed_bytes[0] % 80, 1.0f},
                                                    {seed_bytes[1] % 80, 0.5f}};
  engram::dispatch::SpreadJob job;
  job.graph = {num_nodes, row_offsets, targets, weight_values};
  job.seeds = seeds;
  job.params.threshold = 0.0f;
  if (!engram::core::ValidateSpreadJob(job, engram::fuzz::TinyLimits()).ok()) {
    return 0;
  }
  engram::kernels::SpreadResult first, second;
  if (!engram::kernels::cpu::Spread(job.graph, job.seeds, job.params, nullptr,
                                    &first)
           .ok() ||
      !engram::kernels::cpu::Spread(job.graph, job.seeds, job.params, nullptr,
                                    &second)
           .ok()) {
    std::abort();  // validated input must compute
  }
  if (first.activation != second.activation || first.hops != second.hops ||
      first.edges_traversed != second.edges_traversed) {
    std::abort();  // deterministic
  }
  return 0;
}
