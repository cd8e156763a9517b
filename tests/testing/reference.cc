#include "tests/testing/reference.h"

#include <algorithm>
#include <cmath>

namespace engram::testing {
namespace {

double Dot(const float* a, const float* b, size_t d) {
  double sum = 0.0;
  for (size_t i = 0; i < d; ++i) {
    sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  }
  return sum;
}

double DecayAt(const kernels::SpreadParams& params, uint32_t hop) {
  const double p = params.decay_param;
  const double h = hop;
  switch (params.decay) {
    case kernels::DecayKind::kExponential:
      return std::exp(-p * h);
    case kernels::DecayKind::kPowerLaw:
      return std::pow(h + 1.0, -p);
    case kernels::DecayKind::kLinear:
      return std::max(0.0, 1.0 - p * h);
    case kernels::DecayKind::kConstant:
      return p;
  }
  return 0.0;
}

double ThresholdAt(const kernels::SpreadParams& params, uint32_t hop) {
  if (hop - 1 < params.hop_thresholds.size()) {
    return params.hop_thresholds[hop - 1];
  }
  return params.threshold;
}

}  // namespace

std::vector<float> KeptRows(const float* m, size_t rows, size_t d,
                            const std::vector<bool>& keep) {
  std::vector<float> kept;
  for (size_t r = 0; r < rows; ++r) {
    if (keep[r]) kept.insert(kept.end(), m + r * d, m + (r + 1) * d);
  }
  return kept;
}

std::vector<double> ReferenceCosine(const float* q, size_t num_queries,
                                    const float* t, size_t num_targets,
                                    size_t d) {
  std::vector<double> scores(num_queries * num_targets, 0.0);
  for (size_t i = 0; i < num_queries; ++i) {
    const float* qi = q + i * d;
    const double qn = std::sqrt(Dot(qi, qi, d));
    for (size_t j = 0; j < num_targets; ++j) {
      const float* tj = t + j * d;
      const double tn = std::sqrt(Dot(tj, tj, d));
      if (qn == 0.0 || tn == 0.0) continue;
      scores[i * num_targets + j] =
          std::clamp(Dot(qi, tj, d) / (qn * tn), -1.0, 1.0);
    }
  }
  return scores;
}

std::vector<std::vector<std::pair<uint32_t, float>>> ReferenceTopK(
    const std::vector<double>& scores, size_t num_queries, size_t num_targets,
    size_t k, float min_score) {
  std::vector<std::vector<std::pair<uint32_t, float>>> out(num_queries);
  for (size_t i = 0; i < num_queries; ++i) {
    std::vector<std::pair<uint32_t, float>>& list = out[i];
    for (size_t j = 0; j < num_targets; ++j) {
      const float s = static_cast<float>(scores[i * num_targets + j]);
      if (s >= min_score) list.emplace_back(static_cast<uint32_t>(j), s);
    }
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      if (a.second != b.second) return a.second > b.second;
      return a.first < b.first;
    });
    if (list.size() > k) list.resize(k);
  }
  return out;
}

ReferenceSpreadResult ReferenceSpread(
    const kernels::GraphView& graph,
    absl::Span<const kernels::SpreadSeed> seeds,
    const kernels::SpreadParams& params) {
  const uint32_t n = graph.num_nodes;
  const double cap = params.max_activation;
  ReferenceSpreadResult result;
  std::vector<double>& act = result.activation;
  act.assign(n, 0.0);
  std::vector<double> delta(n, 0.0);
  for (const kernels::SpreadSeed& seed : seeds) {
    act[seed.node] = std::min(cap, act[seed.node] + seed.activation);
    delta[seed.node] = act[seed.node];
  }
  std::vector<double> in(n);
  std::vector<double> next_delta(n);
  for (uint32_t h = 1; h <= params.max_hops; ++h) {
    bool any_delta = false;
    for (uint32_t v = 0; v < n; ++v) any_delta = any_delta || delta[v] > 0.0;
    if (!any_delta) break;

    const double d = DecayAt(params, h);
    const double theta = ThresholdAt(params, h);
    std::fill(in.begin(), in.end(), 0.0);
    for (uint32_t u = 0; u < n; ++u) {
      if (!(delta[u] > 0.0)) continue;
      for (uint32_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1];
           ++e) {
        ++result.edges_traversed;
        in[graph.targets[e]] += delta[u] * graph.weights[e] * d;
      }
    }
    std::fill(next_delta.begin(), next_delta.end(), 0.0);
    for (uint32_t v = 0; v < n; ++v) {
      if (!(in[v] > 0.0)) continue;
      const double updated = std::min(cap, act[v] + in[v]);
      if (updated >= theta) {
        next_delta[v] = updated - act[v] >= theta ? updated - act[v] : 0.0;
        if (updated != act[v]) result.hops = h;
        act[v] = updated;
      }
    }
    delta.swap(next_delta);
  }
  return result;
}

}  // namespace engram::testing
