// Top-k lists from device keys (kernels/cuda/topk_lists.h).
#include "kernels/cuda/topk_lists.h"

#include <algorithm>
#include <cstdint>
#include <functional>

#include "kernels/cuda/topk_kernels.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

TopKList DecodeTopKList(unsigned long long* keys, uint32_t count,
                        uint32_t index_offset) {
  std::sort(keys, keys + count, std::greater<unsigned long long>());
  TopKList list;
  list.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    ScoredIndex entry = DecodeTopKKey(keys[i]);
    entry.index += index_offset;
    list.push_back(entry);
  }
  return list;
}

}  // namespace engram::kernels::cuda
