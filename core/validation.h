// Request validation: every rule that turns bad input into a clear status
// before any work or large allocation happens.
//
// Messages name the API field (as in similarity.proto) and the reason, e.g.
// "queries.values has 5 values, expected rows * cols = 6". Codes:
// INVALID_ARGUMENT for malformed input, RESOURCE_EXHAUSTED for input over the
// configured size limits. Non-finite vector values are detected by the cosine
// kernels during the computation (kernels/cpu/cosine.h), not here, so the
// request's vectors are read once.
//
// Thread-safety: all functions are pure.
#ifndef ENGRAM_CORE_VALIDATION_H_
#define ENGRAM_CORE_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/jobs.h"

namespace engram::core {

// Size limits, checked before anything proportional to the request is
// allocated. Defaults fit the default 256 MiB gRPC message size.
struct RequestLimits {
  // Query plus target values of one BatchCosine request.
  uint64_t max_input_elements = uint64_t{64} << 20;
  // Scores one BatchCosine response may carry: Q*N, or Q*min(k, N) (N the
  // admitted rows of a masked job).
  uint64_t max_output_elements = uint64_t{64} << 20;
  uint64_t max_nodes = uint64_t{16} << 20;
  uint64_t max_edges = uint64_t{64} << 20;
  uint64_t max_seeds = uint64_t{1} << 20;
};

// An empty name is INVALID_ARGUMENT naming `field` ("name",
// "header.name", ...); the stores check the rest of a name's rules with the
// same wording.
absl::Status ValidateRequiredName(absl::string_view field,
                                  absl::string_view name);

// The largest value each limit may be set to: what one protobuf message
// and the uint32 CSR indices can carry (a repeated field holds at most
// 2^31 - 1 entries, a message at most 2 GiB), so that every size computed
// from a request that passed the limits fits the types it is stored in.
inline constexpr uint64_t kMaxInputElementsLimit = uint64_t{1} << 29;
inline constexpr uint64_t kMaxOutputElementsLimit = uint64_t{1} << 28;
inline constexpr uint64_t kMaxNodesLimit = uint64_t{1} << 30;
inline constexpr uint64_t kMaxEdgesLimit = 0xffffffffu;
inline constexpr uint64_t kMaxSeedsLimit = uint64_t{1} << 30;

// The most ids a spread's node allow-list (seed_nodes, result_nodes) may
// hold.
inline constexpr size_t kMaxNodeFilterEntries = size_t{1} << 20;

// Rejects limits that are zero or above their ceiling (INVALID_ARGUMENT
// naming the limit and its allowed range).
absl::Status ValidateLimits(const RequestLimits& limits);

// Checks one Matrix message before a view is made of it: rows >= 1,
// cols >= 1, num_values == rows * cols. `field` is "queries" or "targets".
absl::Status ValidateMatrixShape(absl::string_view field, uint64_t rows,
                                 uint64_t cols, uint64_t num_values);

// Checks a cosine job whose matrices passed ValidateMatrixShape: equal
// dimensions, a row mask that covers the targets, size limits (the output
// counting admitted rows only), min_score.
absl::Status ValidateCosineJob(const dispatch::CosineJob& job,
                               const RequestLimits& limits);

// Checks the whole spreading job: graph structure (offsets, targets,
// weights), seeds, node allow-lists (at most kMaxNodeFilterEntries ids,
// each a node), parameter ranges and size limits. O(nodes + edges). With
// an overlay (a resident graph's changes, which its store validated as
// they were made), the sizes and seeds are those of the changed graph and
// the structure checked is the base's.
absl::Status ValidateSpreadJob(const dispatch::SpreadJob& job,
                               const RequestLimits& limits);

// The max_nodes and max_edges limits of a graph of that size
// (RESOURCE_EXHAUSTED naming graph.num_nodes or the edge count): what a
// put's graph and an updated one must stay within.
absl::Status ValidateGraphSize(uint64_t num_nodes, uint64_t num_edges,
                               const RequestLimits& limits);

// An optional idempotency key (empty passes): at most 128 characters, each
// printable ASCII (INVALID_ARGUMENT naming `field`).
absl::Status ValidateIdempotencyKey(absl::string_view field,
                                    absl::string_view key);

// Parameter ranges alone (also used for configured defaults).
absl::Status ValidateSpreadParams(const kernels::SpreadParams& params);

}  // namespace engram::core

#endif  // ENGRAM_CORE_VALIDATION_H_
