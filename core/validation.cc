#include "core/validation.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/graph_overlay.h"
#include "kernels/row_mask.h"

namespace engram::core {
namespace {

constexpr uint32_t kMaxHops = 64;

absl::Status Invalid(absl::string_view field, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", reason));
}

bool FiniteNonNegative(float v) { return std::isfinite(v) && v >= 0.0f; }

const char* DecayFieldName(kernels::DecayKind kind) {
  switch (kind) {
    case kernels::DecayKind::kExponential:
      return "params.exponential_rate";
    case kernels::DecayKind::kPowerLaw:
      return "params.power_law_exponent";
    case kernels::DecayKind::kLinear:
      return "params.linear_slope";
    case kernels::DecayKind::kConstant:
      return "params.constant_factor";
  }
  return "params.decay";
}

}  // namespace

absl::Status ValidateRequiredName(absl::string_view field,
                                  absl::string_view name) {
  if (name.empty()) return Invalid(field, "is required");
  return absl::OkStatus();
}

absl::Status ValidateLimits(const RequestLimits& limits) {
  const struct {
    const char* name;
    uint64_t value;
    uint64_t ceiling;
  } checks[] = {
      {"max_input_elements", limits.max_input_elements, kMaxInputElementsLimit},
      {"max_output_elements", limits.max_output_elements,
       kMaxOutputElementsLimit},
      {"max_nodes", limits.max_nodes, kMaxNodesLimit},
      {"max_edges", limits.max_edges, kMaxEdgesLimit},
      {"max_seeds", limits.max_seeds, kMaxSeedsLimit},
  };
  for (const auto& check : checks) {
    if (check.value == 0 || check.value > check.ceiling) {
      return absl::InvalidArgumentError(absl::StrCat(
          check.name, " is ", check.value, "; it must be in [1, ",
          check.ceiling, "] (what one request or response can carry)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMatrixShape(absl::string_view field, uint64_t rows,
                                 uint64_t cols, uint64_t num_values) {
  if (rows == 0) return Invalid(absl::StrCat(field, ".rows"), "must be >= 1");
  if (cols == 0) return Invalid(absl::StrCat(field, ".cols"), "must be >= 1");
  // rows and cols are uint32 on the wire, so the product fits in 64 bits.
  if (num_values != rows * cols) {
    return Invalid(
        absl::StrCat(field, ".values"),
        absl::StrCat("has ", num_values, " values, expected rows * ",
                     "cols = ", rows, " * ", cols, " = ", rows * cols));
  }
  return absl::OkStatus();
}

absl::Status ValidateCosineJob(const dispatch::CosineJob& job,
                               const RequestLimits& limits) {
  const uint64_t q = job.queries.rows, n = job.targets.rows;
  const uint64_t d = job.queries.cols;
  if (q == 0 || d == 0 || job.queries.data == nullptr) {
    return Invalid("queries", "must hold at least one row and one column");
  }
  if (n == 0 || job.targets.cols == 0 || job.targets.data == nullptr) {
    return Invalid("targets", "must hold at least one row and one column");
  }
  if (job.targets.cols != d) {
    return Invalid("targets.cols",
                   absl::StrCat("(", job.targets.cols,
                                ") must equal queries.cols (", d, ")"));
  }
  const uint64_t inputs = (q + n) * d;
  if (inputs > limits.max_input_elements) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "queries and targets hold ", inputs, " values, over the limit of ",
        limits.max_input_elements, " per request"));
  }
  if (!kernels::CheckRowMask(job.mask, n).ok()) {
    return Invalid("mask", absl::StrCat("covers ", job.mask.rows,
                                        " rows; the targets have ", n));
  }
  // Only admitted rows are scored and returned.
  const uint64_t scored = job.scored_targets();
  const uint64_t per_query =
      job.top_k == 0 ? scored : std::min<uint64_t>(job.top_k, scored);
  if (q * per_query > limits.max_output_elements) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the response would hold ", q * per_query,
        " scores, over the limit of ", limits.max_output_elements,
        job.top_k == 0 ? "; ask for top_k instead of all scores" : ""));
  }
  if (job.min_score.has_value()) {
    if (job.top_k == 0) {
      return Invalid("min_score", "is only allowed with top_k > 0");
    }
    if (!std::isfinite(*job.min_score)) {
      return Invalid("min_score", "must be finite");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSpreadParams(const kernels::SpreadParams& params) {
  if (params.max_hops > kMaxHops) {
    return Invalid("params.max_hops",
                   absl::StrCat("is ", params.max_hops, ", at most ", kMaxHops,
                                " allowed"));
  }
  const float p = params.decay_param;
  const char* decay_field = DecayFieldName(params.decay);
  if (!FiniteNonNegative(p)) {
    return Invalid(decay_field, "must be finite and >= 0");
  }
  if (params.decay == kernels::DecayKind::kConstant && p > 1.0f) {
    return Invalid(decay_field, "must be in [0, 1]");
  }
  if (!FiniteNonNegative(params.threshold)) {
    return Invalid("params.threshold", "must be finite and >= 0");
  }
  if (params.hop_thresholds.size() > params.max_hops) {
    return Invalid(
        "params.hop_thresholds",
        absl::StrCat("has ", params.hop_thresholds.size(),
                     " entries, more than max_hops (", params.max_hops, ")"));
  }
  for (size_t i = 0; i < params.hop_thresholds.size(); ++i) {
    if (!FiniteNonNegative(params.hop_thresholds[i])) {
      return Invalid(absl::StrCat("params.hop_thresholds[", i, "]"),
                     "must be finite and >= 0");
    }
  }
  if (!std::isfinite(params.max_activation) || params.max_activation <= 0) {
    return Invalid("params.max_activation", "must be finite and > 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateGraphSize(uint64_t num_nodes, uint64_t num_edges,
                               const RequestLimits& limits) {
  if (num_nodes > limits.max_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph.num_nodes is ", num_nodes, ", over the limit of ",
                     limits.max_nodes));
  }
  if (num_edges > limits.max_edges) {
    return absl::ResourceExhaustedError(
        absl::StrCat("graph has ", num_edges, " edges, over the limit of ",
                     limits.max_edges));
  }
  return absl::OkStatus();
}

absl::Status ValidateIdempotencyKey(absl::string_view field,
                                    absl::string_view key) {
  if (key.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", key.size(), " characters, at most 128 allowed"));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] < 0x21 || key[i] > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat(field,
                       " has a character other than printable ASCII at "
                       "position ",
                       i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSpreadJob(const dispatch::SpreadJob& job,
                               const RequestLimits& limits) {
  const kernels::GraphView& g = job.graph;
  if (job.num_nodes() == 0) return Invalid("graph.num_nodes", "must be >= 1");
  ENGRAM_RETURN_IF_ERROR(
      ValidateGraphSize(job.num_nodes(), job.num_edges(), limits));
  if (job.seeds.size() > limits.max_seeds) {
    return absl::ResourceExhaustedError(
        absl::StrCat("seeds has ", job.seeds.size(),
                     " entries, over the limit of ", limits.max_seeds));
  }
  if (g.row_offsets.size() != uint64_t{g.num_nodes} + 1) {
    return Invalid("graph.row_offsets",
                   absl::StrCat("has ", g.row_offsets.size(),
                                " entries, expected num_nodes + 1 = ",
                                uint64_t{g.num_nodes} + 1));
  }
  if (g.row_offsets[0] != 0) {
    return Invalid("graph.row_offsets[0]",
                   absl::StrCat("is ", g.row_offsets[0], ", must be 0"));
  }
  for (size_t u = 1; u < g.row_offsets.size(); ++u) {
    if (g.row_offsets[u] < g.row_offsets[u - 1]) {
      return Invalid(
          absl::StrCat("graph.row_offsets[", u, "]"),
          absl::StrCat("is ", g.row_offsets[u],
                       ", less than the previous entry ", g.row_offsets[u - 1],
                       " (offsets must be non-decreasing)"));
    }
  }
  if (g.row_offsets.back() != g.targets.size()) {
    return Invalid(
        "graph.row_offsets",
        absl::StrCat("ends at ", g.row_offsets.back(),
                     ", expected the edge count ", g.targets.size()));
  }
  if (g.weights.size() != g.targets.size()) {
    return Invalid("graph.weights",
                   absl::StrCat("has ", g.weights.size(),
                                " entries, expected one per edge (",
                                g.targets.size(), ")"));
  }
  for (size_t e = 0; e < g.targets.size(); ++e) {
    if (g.targets[e] >= g.num_nodes) {
      return Invalid(absl::StrCat("graph.targets[", e, "]"),
                     absl::StrCat("is ", g.targets[e],
                                  ", not below num_nodes (", g.num_nodes, ")"));
    }
    if (!FiniteNonNegative(g.weights[e])) {
      return Invalid(absl::StrCat("graph.weights[", e, "]"),
                     "must be finite and >= 0");
    }
  }
  if (job.overlay != nullptr) {
    ENGRAM_RETURN_IF_ERROR(kernels::CheckOverlayShape(g, *job.overlay));
  }
  for (size_t i = 0; i < job.seeds.size(); ++i) {
    if (job.seeds[i].node >= job.num_nodes()) {
      return Invalid(
          absl::StrCat("seeds[", i, "].node"),
          absl::StrCat("is ", job.seeds[i].node,
                       ", not below graph.num_nodes (", job.num_nodes(), ")"));
    }
    if (!FiniteNonNegative(job.seeds[i].activation)) {
      return Invalid(absl::StrCat("seeds[", i, "].activation"),
                     "must be finite and >= 0");
    }
  }
  for (const auto& [field, nodes] :
       {std::pair<const char*, absl::Span<const uint32_t>>{"seed_nodes",
                                                           job.seed_nodes},
        {"result_nodes", job.result_nodes}}) {
    if (nodes.size() > kMaxNodeFilterEntries) {
      return Invalid(absl::StrCat(field, ".nodes"),
                     absl::StrCat("has ", nodes.size(), " entries, at most ",
                                  kMaxNodeFilterEntries));
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] >= job.num_nodes()) {
        return Invalid(
            absl::StrCat(field, ".nodes[", i, "]"),
            absl::StrCat("is ", nodes[i], ", not below graph.num_nodes (",
                         job.num_nodes(), ")"));
      }
    }
  }
  return ValidateSpreadParams(job.params);
}

}  // namespace engram::core
