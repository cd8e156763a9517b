// Plain value types the client helpers exchange: a dense float matrix as read
// from .npy files or generated at random, a weighted directed edge, a
// graph's update, and a spreading-activation seed. They carry no proto
// dependency so that file readers can be used without building requests.
#ifndef ENGRAM_CLIENT_TYPES_H_
#define ENGRAM_CLIENT_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace engram::client {

// Row-major: values[r * cols + c]. Owns its values; a plain value type.
struct FloatMatrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<float> values;
};

// One edge source -> target with the given weight.
struct Edge {
  uint32_t source = 0;
  uint32_t target = 0;
  float weight = 0.0f;
};

// An edge named by its endpoints (the edges source -> target, for a
// removal).
struct EdgeRef {
  uint32_t source = 0;
  uint32_t target = 0;
};

// The changes of one UpdateGraph, applied in this order: nodes added, edges
// removed, edges re-weighted, edges added (docs/api.md, "Changing a graph").
struct GraphUpdate {
  uint32_t add_nodes = 0;
  std::vector<EdgeRef> remove_edges;
  std::vector<Edge> set_weights;
  std::vector<Edge> add_edges;
};

// A node where spreading activation starts, with its initial activation.
struct SpreadSeed {
  uint32_t node = 0;
  float activation = 0.0f;
};

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_TYPES_H_
