// The host side of the CPU cosine kernels (kernels/cpu/cosine_prep.h).
#include "kernels/cpu/cosine_prep.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "hwy/aligned_allocator.h"
#include "kernels/query_preparation.h"
#include "kernels/types.h"

namespace engram::kernels::cpu::cosine_internal {

absl::Status PrepareCpuQueries(const MatrixView& queries, CpuQueries* out) {
  ENGRAM_RETURN_IF_ERROR(PrepareQueries(queries, kQueryPadFloats, out));
  out->inv_norm_f.assign(out->inv_norm.begin(), out->inv_norm.end());
  return absl::OkStatus();
}

void PackPanelQueries(const CpuQueries& pq, size_t d, PanelShape shape,
                      PanelQueries* out) {
  out->shape = shape;
  const size_t lanes = shape.lanes;
  size_t total_width = 0;
  for (size_t first = 0; first < pq.rows;) {
    PanelQueries::Block block;
    block.first = first;
    block.wide = pq.rows - first > lanes;
    block.width = block.wide ? 2 * lanes : lanes;
    block.nr = block.wide ? shape.nr_wide : shape.nr_narrow;
    block.count = std::min(block.width, pq.rows - first);
    out->blocks.push_back(block);
    out->max_width = std::max(out->max_width, block.width);
    out->max_nr = std::max(out->max_nr, block.nr);
    total_width += block.width;
    first += block.count;
  }
  out->pack = hwy::AllocateAligned<float>(total_width * d);
  out->inv_q = hwy::AllocateAligned<float>(total_width);
  float* pack = out->pack.get();
  float* inv_q = out->inv_q.get();
  for (PanelQueries::Block& block : out->blocks) {
    block.pack = pack;
    block.inv_q = inv_q;
    for (size_t i = 0; i < block.width; ++i) {
      const bool real = i < block.count;
      const float* q = pq.values.data() + (block.first + i) * pq.stride;
      inv_q[i] = real ? static_cast<float>(pq.inv_norm[block.first + i]) : 0.0f;
      for (size_t k = 0; k < d; ++k) {
        pack[k * block.width + i] = real ? q[k] : 0.0f;
      }
    }
    pack += block.width * d;
    inv_q += block.width;
  }
}

ShiftedQueries ShiftQueries(const CpuQueries& pq, const MatrixView& targets,
                            size_t lanes,
                            hwy::AlignedFreeUniquePtr<float[]>* storage) {
  const size_t d = targets.cols;
  const auto address = reinterpret_cast<uintptr_t>(targets.data);
  if (lanes <= 1 || d % lanes != 0 || address % sizeof(float) != 0) return {};
  ShiftedQueries shifted;
  shifted.shift = (address / sizeof(float)) % lanes;
  shifted.vectors = (shifted.shift + d + lanes - 1) / lanes;
  shifted.stride = shifted.vectors * lanes;
  shifted.view_begin = targets.data;
  shifted.view_end = targets.data + targets.rows * d;
  *storage = hwy::AllocateAligned<float>(pq.rows * shifted.stride);
  float* values = storage->get();
  std::fill(values, values + pq.rows * shifted.stride, 0.0f);
  for (size_t j = 0; j < pq.rows; ++j) {
    std::copy(pq.values.data() + j * pq.stride,
              pq.values.data() + j * pq.stride + d,
              values + j * shifted.stride + shifted.shift);
  }
  shifted.values = values;
  return shifted;
}

}  // namespace engram::kernels::cpu::cosine_internal
