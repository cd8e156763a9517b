#include "tests/server/load_harness.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "kernels/types.h"
#include "tests/server/metrics_text.h"
#include "tests/testing/random_data.h"

namespace engram::testing {
namespace {

namespace pb = ::engram::similarity::v1;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

void FillMatrix(size_t rows, size_t cols, const std::vector<float>& values,
                pb::Matrix* m) {
  m->set_rows(static_cast<uint32_t>(rows));
  m->set_cols(static_cast<uint32_t>(cols));
  m->mutable_values()->Add(values.begin(), values.end());
}

// A cosine case with its reference. `queries`/`targets` are row-major.
LoadCase CosineCase(std::string name, SizeClass size, size_t q, size_t n,
                    size_t d, const std::vector<float>& queries,
                    const std::vector<float>& targets, uint32_t top_k,
                    std::optional<float> min_score) {
  LoadCase c;
  c.name = std::move(name);
  c.method = LoadMethod::kBatchCosine;
  c.size = size;
  FillMatrix(q, d, queries, c.cosine.mutable_queries());
  FillMatrix(n, d, targets, c.cosine.mutable_targets());
  c.cosine.set_top_k(top_k);
  if (min_score.has_value()) c.cosine.set_min_score(*min_score);
  c.cosine.set_placement(pb::PLACEMENT_AUTO);
  c.num_queries = q;
  c.num_targets = n;
  c.cosine_reference = ReferenceCosine(queries.data(), q, targets.data(), n, d);
  c.payload_values = (q + n) * d;
  return c;
}

LoadCase RandomCosineCase(SizeClass size, size_t q, size_t n, size_t d,
                          uint32_t top_k, std::optional<float> min_score,
                          uint64_t seed) {
  return CosineCase(absl::StrCat("cosine_", SizeClassName(size), "_", q, "x", n,
                                 "x", d, top_k > 0 ? "_top" : "_dense",
                                 top_k > 0 ? absl::StrCat(top_k) : ""),
                    size, q, n, d, RandomMatrix(q, d, seed),
                    RandomMatrix(n, d, seed + 1), top_k, min_score);
}

void ParamsToProto(const kernels::SpreadParams& p, pb::SpreadParams* out) {
  out->set_max_hops(p.max_hops);
  switch (p.decay) {
    case kernels::DecayKind::kExponential:
      out->set_exponential_rate(p.decay_param);
      break;
    case kernels::DecayKind::kPowerLaw:
      out->set_power_law_exponent(p.decay_param);
      break;
    case kernels::DecayKind::kLinear:
      out->set_linear_slope(p.decay_param);
      break;
    case kernels::DecayKind::kConstant:
      out->set_constant_factor(p.decay_param);
      break;
  }
  out->set_threshold(p.threshold);
  out->mutable_hop_thresholds()->Add(p.hop_thresholds.begin(),
                                     p.hop_thresholds.end());
  out->set_max_activation(p.max_activation);
}

void GraphToProto(const RandomCsrGraph& g, pb::Graph* out) {
  out->set_num_nodes(g.num_nodes);
  out->mutable_row_offsets()->Add(g.row_offsets.begin(), g.row_offsets.end());
  out->mutable_targets()->Add(g.targets.begin(), g.targets.end());
  out->mutable_weights()->Add(g.weights.begin(), g.weights.end());
}

LoadCase SpreadCase(std::string name, SizeClass size, const RandomCsrGraph& g,
                    const std::vector<kernels::SpreadSeed>& seeds,
                    const kernels::SpreadParams& params, uint32_t top_k) {
  LoadCase c;
  c.name = std::move(name);
  c.method = LoadMethod::kSpread;
  c.size = size;
  GraphToProto(g, c.spread.mutable_graph());
  for (const kernels::SpreadSeed& s : seeds) {
    pb::Seed* seed = c.spread.add_seeds();
    seed->set_node(s.node);
    seed->set_activation(s.activation);
  }
  ParamsToProto(params, c.spread.mutable_params());
  c.spread.set_top_k(top_k);
  c.spread.set_placement(pb::PLACEMENT_AUTO);
  c.spread_reference = ReferenceSpread(g.view(), seeds, params);
  c.payload_values = g.row_offsets.size() + 2 * g.targets.size();
  return c;
}

std::vector<kernels::SpreadSeed> RandomSeeds(uint32_t num_nodes, size_t count,
                                             uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> node(0, num_nodes - 1);
  std::uniform_real_distribution<float> activation(0.1f, 1.0f);
  std::vector<kernels::SpreadSeed> seeds;
  for (size_t i = 0; i < count; ++i)
    seeds.push_back({node(rng), activation(rng)});
  seeds.push_back(seeds.front());  // a repeated seed adds up
  return seeds;
}

kernels::SpreadParams Params(kernels::DecayKind decay, float decay_param,
                             float threshold, uint32_t max_hops) {
  kernels::SpreadParams p;
  p.decay = decay;
  p.decay_param = decay_param;
  p.threshold = threshold;
  p.max_hops = max_hops;
  return p;
}

LoadCase RandomSpreadCase(SizeClass size, uint32_t nodes, uint32_t degree,
                          const kernels::SpreadParams& params, uint32_t top_k,
                          uint64_t seed) {
  const RandomCsrGraph g = RandomGraph(nodes, degree, seed);
  return SpreadCase(absl::StrCat("spread_", SizeClassName(size), "_", nodes,
                                 "n_deg", degree, top_k > 0 ? "_top" : "_dense",
                                 top_k > 0 ? absl::StrCat(top_k) : ""),
                    size, g, RandomSeeds(nodes, 5, seed + 1), params, top_k);
}

LoadCase Invalid(std::string name, LoadMethod method, absl::StatusCode code,
                 std::string message) {
  LoadCase c;
  c.name = absl::StrCat("invalid_", name);
  c.method = method;
  c.expected_code = code;
  c.expected_message = std::move(message);
  return c;
}

pb::BatchCosineRequest SmallCosine(size_t q, size_t n, size_t d) {
  pb::BatchCosineRequest r;
  FillMatrix(q, d, RandomMatrix(q, d, 7), r.mutable_queries());
  FillMatrix(n, d, RandomMatrix(n, d, 8), r.mutable_targets());
  return r;
}

// A 6-node chain with one seed: valid until a test breaks it.
pb::SpreadRequest SmallSpread() {
  pb::SpreadRequest r;
  pb::Graph* g = r.mutable_graph();
  g->set_num_nodes(6);
  for (uint32_t o : {0, 1, 2, 3, 4, 5, 5}) g->add_row_offsets(o);
  for (uint32_t t : {1, 2, 3, 4, 5}) g->add_targets(t);
  for (int i = 0; i < 5; ++i) g->add_weights(0.9f);
  pb::Seed* seed = r.add_seeds();
  seed->set_node(0);
  seed->set_activation(1.0f);
  return r;
}

bool Near(double got, double want) {
  return std::abs(got - want) <= kLoadTolerance * std::max(1.0, std::abs(want));
}

// The reference top list of a spreading result: nodes with activation > 0
// by activation descending, ties by lower id, at most k.
std::vector<std::pair<uint32_t, double>> ReferenceTopNodes(
    const std::vector<double>& activation, size_t k) {
  std::vector<std::pair<uint32_t, double>> nodes;
  for (size_t v = 0; v < activation.size(); ++v) {
    if (activation[v] > 0)
      nodes.push_back({static_cast<uint32_t>(v), activation[v]});
  }
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (nodes.size() > k) nodes.resize(k);
  return nodes;
}

// Compares one ranked list against the reference's: `score_of(index)` is
// the reference value of any index, for near-ties.
template <typename ScoreOf>
std::string CompareRanked(
    const std::string& what,
    const google::protobuf::RepeatedField<uint32_t>& got_index,
    const google::protobuf::RepeatedField<float>& got_score,
    const std::vector<std::pair<uint32_t, double>>& want, size_t universe,
    ScoreOf score_of) {
  if (got_index.size() != got_score.size()) {
    return absl::StrCat(what, ": ", got_index.size(), " indices but ",
                        got_score.size(), " scores");
  }
  if (static_cast<size_t>(got_index.size()) != want.size()) {
    return absl::StrCat(what, ": ", got_index.size(), " entries, expected ",
                        want.size());
  }
  std::vector<uint32_t> seen(got_index.begin(), got_index.end());
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    return absl::StrCat(what, ": an index appears twice");
  }
  for (size_t j = 0; j < want.size(); ++j) {
    const uint32_t index = got_index[static_cast<int>(j)];
    const float score = got_score[static_cast<int>(j)];
    if (index >= universe) {
      return absl::StrCat(what, " rank ", j, ": index ", index,
                          " out of range");
    }
    if (!Near(score, want[j].second)) {
      return absl::StrCat(what, " rank ", j, ": score ", score, ", expected ",
                          want[j].second);
    }
    if (index != want[j].first && !Near(score_of(index), want[j].second)) {
      return absl::StrCat(what, " rank ", j, ": index ", index, " (reference ",
                          score_of(index), "), expected ", want[j].first, " (",
                          want[j].second, ")");
    }
  }
  return "";
}

}  // namespace

std::vector<std::string> LoadLimitFlags() {
  return {absl::StrCat("--max_seeds=", kLoadMaxSeeds),
          absl::StrCat("--max_output_elements=", kLoadMaxOutputElements)};
}

const char* LoadMethodName(LoadMethod method) {
  return method == LoadMethod::kBatchCosine ? "BatchCosine" : "Spread";
}

const char* SizeClassName(SizeClass size) {
  switch (size) {
    case SizeClass::kTiny:
      return "tiny";
    case SizeClass::kSmall:
      return "small";
    case SizeClass::kMedium:
      return "medium";
    case SizeClass::kLarge:
      return "large";
  }
  return "?";
}

std::vector<LoadCase> MakeValidCases(uint64_t seed) {
  using kernels::DecayKind;
  std::vector<LoadCase> cases;
  // --- BatchCosine ---
  cases.push_back(RandomCosineCase(SizeClass::kTiny, 1, 3, 4, 0, {}, seed + 1));
  cases.push_back(RandomCosineCase(SizeClass::kTiny, 2, 5, 1, 3, {}, seed + 3));
  cases.push_back(RandomCosineCase(SizeClass::kTiny, 1, 1, 1, 1, {}, seed + 5));
  {
    // A zero query row and a zero target: their scores are 0.
    std::vector<float> q = RandomMatrix(3, 7, seed + 7);
    std::vector<float> t = RandomMatrix(4, 7, seed + 8);
    std::fill(q.begin() + 7, q.begin() + 14, 0.0f);
    std::fill(t.begin(), t.begin() + 7, 0.0f);
    cases.push_back(CosineCase("cosine_tiny_zero_rows", SizeClass::kTiny, 3, 4,
                               7, q, t, 0, {}));
  }
  cases.push_back(
      RandomCosineCase(SizeClass::kSmall, 4, 200, 32, 0, {}, seed + 11));
  cases.push_back(
      RandomCosineCase(SizeClass::kSmall, 8, 300, 48, 10, 0.1f, seed + 13));
  {
    // 20 distinct targets repeated 20 times: every score is tied 20 ways,
    // so the lower-index tie order decides each top-k list.
    const std::vector<float> distinct = RandomMatrix(20, 16, seed + 15);
    std::vector<float> t;
    for (int r = 0; r < 20; ++r)
      t.insert(t.end(), distinct.begin(), distinct.end());
    cases.push_back(CosineCase("cosine_small_ties_top30", SizeClass::kSmall, 3,
                               400, 16, RandomMatrix(3, 16, seed + 16), t, 30,
                               {}));
  }
  cases.push_back(
      RandomCosineCase(SizeClass::kMedium, 16, 2000, 128, 0, {}, seed + 17));
  cases.push_back(
      RandomCosineCase(SizeClass::kMedium, 32, 3000, 96, 20, {}, seed + 19));
  cases.push_back(
      RandomCosineCase(SizeClass::kLarge, 64, 4096, 64, 50, {}, seed + 21));
  cases.push_back(
      RandomCosineCase(SizeClass::kLarge, 128, 2048, 32, 0, {}, seed + 23));

  // --- Spread ---
  {
    // The worked example of docs/api.md: chain 0 -> 1 -> 2 -> 3.
    RandomCsrGraph chain;
    chain.num_nodes = 4;
    chain.row_offsets = {0, 1, 2, 3, 3};
    chain.targets = {1, 2, 3};
    chain.weights = {1.0f, 1.0f, 1.0f};
    cases.push_back(SpreadCase("spread_tiny_chain", SizeClass::kTiny, chain,
                               {{0, 1.0f}}, kernels::SpreadParams(), 0));
    RandomCsrGraph star;
    star.num_nodes = 6;
    star.row_offsets = {0, 5, 5, 5, 5, 5, 5};
    star.targets = {1, 2, 3, 4, 5};
    star.weights = {0.5f, 0.9f, 0.5f, 0.2f, 0.9f};
    cases.push_back(SpreadCase("spread_tiny_star_top3", SizeClass::kTiny, star,
                               {{0, 1.0f}}, kernels::SpreadParams(), 3));
  }
  cases.push_back(RandomSpreadCase(
      SizeClass::kSmall, 300, 4, Params(DecayKind::kPowerLaw, 1.5f, 0.005f, 5),
      0, seed + 31));
  cases.push_back(RandomSpreadCase(SizeClass::kSmall, 500, 3,
                                   Params(DecayKind::kLinear, 0.2f, 0.01f, 4),
                                   10, seed + 33));
  cases.push_back(RandomSpreadCase(
      SizeClass::kMedium, 5000, 6,
      Params(DecayKind::kExponential, 0.5f, 0.001f, 6), 0, seed + 35));
  {
    kernels::SpreadParams p = Params(DecayKind::kConstant, 0.4f, 0.01f, 8);
    p.hop_thresholds = {0.0f, 0.02f, 0.05f};
    cases.push_back(
        RandomSpreadCase(SizeClass::kMedium, 8000, 5, p, 25, seed + 37));
  }
  cases.push_back(RandomSpreadCase(
      SizeClass::kLarge, 30000, 6,
      Params(DecayKind::kExponential, 0.3f, 0.0001f, 8), 100, seed + 39));
  {
    // Saturating: many nodes reach the cap exactly, so the top list is
    // decided by the lower-id tie order.
    kernels::SpreadParams p = Params(DecayKind::kConstant, 0.9f, 0.0001f, 10);
    cases.push_back(
        RandomSpreadCase(SizeClass::kLarge, 20000, 6, p, 0, seed + 41));
    cases.push_back(
        RandomSpreadCase(SizeClass::kMedium, 4000, 12, p, 40, seed + 43));
  }
  return cases;
}

LoadCase RandomCosineLoadCase(size_t q, size_t n, size_t d, uint32_t top_k,
                              uint64_t seed) {
  return RandomCosineCase(SizeClass::kMedium, q, n, d, top_k, std::nullopt,
                          seed);
}

std::vector<LoadCase> MakeInvalidCases() {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const absl::StatusCode kTooLarge = absl::StatusCode::kResourceExhausted;
  std::vector<LoadCase> cases;
  {
    LoadCase c = Invalid("cosine_dimension_mismatch", LoadMethod::kBatchCosine,
                         kInvalid, "targets.cols");
    c.cosine = SmallCosine(2, 3, 8);
    c.cosine.mutable_targets()->set_cols(6);
    c.cosine.mutable_targets()->set_rows(4);  // 24 values: a 4 x 6 matrix
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("cosine_nan_target", LoadMethod::kBatchCosine,
                         kInvalid, "targets row 1");
    c.cosine = SmallCosine(2, 5, 4);
    c.cosine.mutable_targets()->set_values(6, kNaN);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("cosine_inf_query", LoadMethod::kBatchCosine, kInvalid,
                         "queries row 0");
    c.cosine = SmallCosine(1, 5, 4);
    c.cosine.mutable_queries()->set_values(2, -kInf);
    c.cosine.set_top_k(2);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("cosine_value_count", LoadMethod::kBatchCosine,
                         kInvalid, "queries.values");
    c.cosine = SmallCosine(2, 3, 4);
    c.cosine.mutable_queries()->mutable_values()->RemoveLast();
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("cosine_min_score_without_top_k",
                         LoadMethod::kBatchCosine, kInvalid, "min_score");
    c.cosine = SmallCosine(1, 3, 4);
    c.cosine.set_min_score(0.5f);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("cosine_unknown_placement", LoadMethod::kBatchCosine,
                         kInvalid, "placement");
    c.cosine = SmallCosine(1, 3, 4);
    c.cosine.set_placement(static_cast<pb::Placement>(42));
    cases.push_back(std::move(c));
  }
  {
    // (kLoadMaxOutputElements / 1000 + 1) x 1000 dense scores, from a payload
    // of a few thousand values.
    LoadCase c = Invalid("cosine_output_over_limit", LoadMethod::kBatchCosine,
                         kTooLarge, "over the limit");
    c.cosine = SmallCosine(kLoadMaxOutputElements / 1000 + 1, 1000, 1);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_decreasing_offsets", LoadMethod::kSpread,
                         kInvalid, "graph.row_offsets[3]");
    c.spread = SmallSpread();
    c.spread.mutable_graph()->set_row_offsets(3, 1);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_offsets_end", LoadMethod::kSpread, kInvalid,
                         "graph.row_offsets");
    c.spread = SmallSpread();
    c.spread.mutable_graph()->set_row_offsets(6, 4);
    c.spread.mutable_graph()->set_row_offsets(5, 4);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_seed_out_of_range", LoadMethod::kSpread,
                         kInvalid, "seeds[1].node");
    c.spread = SmallSpread();
    pb::Seed* seed = c.spread.add_seeds();
    seed->set_node(6);
    seed->set_activation(0.5f);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_target_out_of_range", LoadMethod::kSpread,
                         kInvalid, "graph.targets[2]");
    c.spread = SmallSpread();
    c.spread.mutable_graph()->set_targets(2, 1000);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_negative_weight", LoadMethod::kSpread,
                         kInvalid, "graph.weights[4]");
    c.spread = SmallSpread();
    c.spread.mutable_graph()->set_weights(4, -0.5f);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_nan_seed_activation", LoadMethod::kSpread,
                         kInvalid, "seeds[0].activation");
    c.spread = SmallSpread();
    c.spread.mutable_seeds(0)->set_activation(kNaN);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_max_hops_65", LoadMethod::kSpread, kInvalid,
                         "params.max_hops");
    c.spread = SmallSpread();
    c.spread.mutable_params()->set_max_hops(65);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_hop_thresholds_too_long", LoadMethod::kSpread,
                         kInvalid, "params.hop_thresholds");
    c.spread = SmallSpread();
    c.spread.mutable_params()->set_max_hops(2);
    for (float t : {0.1f, 0.1f, 0.1f})
      c.spread.mutable_params()->add_hop_thresholds(t);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_constant_decay_above_1", LoadMethod::kSpread,
                         kInvalid, "params.constant_factor");
    c.spread = SmallSpread();
    c.spread.mutable_params()->set_constant_factor(1.5f);
    cases.push_back(std::move(c));
  }
  {
    LoadCase c = Invalid("spread_seeds_over_limit", LoadMethod::kSpread,
                         kTooLarge, "over the limit");
    c.spread = SmallSpread();
    for (uint64_t i = 0; i < kLoadMaxSeeds; ++i) {
      pb::Seed* seed = c.spread.add_seeds();
      seed->set_node(static_cast<uint32_t>(i % 6));
      seed->set_activation(0.1f);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string CheckCosineResponse(const LoadCase& c,
                                const pb::BatchCosineResponse& r) {
  const size_t q = c.num_queries, n = c.num_targets;
  const uint32_t k = c.cosine.top_k();
  if (k == 0) {
    if (r.top_size() != 0) return "dense request answered with top lists";
    if (static_cast<size_t>(r.scores_size()) != q * n) {
      return absl::StrCat(r.scores_size(), " scores, expected ", q * n);
    }
    for (size_t i = 0; i < q * n; ++i) {
      if (!Near(r.scores(static_cast<int>(i)), c.cosine_reference[i])) {
        return absl::StrCat("score ", i, " is ", r.scores(static_cast<int>(i)),
                            ", expected ", c.cosine_reference[i]);
      }
    }
    return "";
  }
  if (r.scores_size() != 0) return "top-k request answered with dense scores";
  if (static_cast<size_t>(r.top_size()) != q) {
    return absl::StrCat(r.top_size(), " top lists, expected ", q);
  }
  const float min_score = c.cosine.has_min_score()
                              ? c.cosine.min_score()
                              : -std::numeric_limits<float>::infinity();
  const auto want = ReferenceTopK(c.cosine_reference, q, n, k, min_score);
  for (size_t i = 0; i < q; ++i) {
    std::vector<std::pair<uint32_t, double>> expected(want[i].begin(),
                                                      want[i].end());
    const double* row = c.cosine_reference.data() + i * n;
    const pb::TopK& top = r.top(static_cast<int>(i));
    std::string wrong =
        CompareRanked(absl::StrCat("query ", i), top.indices(), top.scores(),
                      expected, n, [row](uint32_t j) { return row[j]; });
    if (!wrong.empty()) return wrong;
  }
  return "";
}

std::string CheckSpreadResponse(const LoadCase& c,
                                const pb::SpreadResponse& r) {
  const ReferenceSpreadResult& ref = c.spread_reference;
  if (r.hops() != ref.hops) {
    return absl::StrCat("hops ", r.hops(), ", expected ", ref.hops);
  }
  if (r.edges_traversed() != ref.edges_traversed) {
    return absl::StrCat("edges_traversed ", r.edges_traversed(), ", expected ",
                        ref.edges_traversed);
  }
  const size_t nodes = ref.activation.size();
  if (c.spread.top_k() == 0) {
    if (r.top_nodes_size() != 0) return "dense request answered with top nodes";
    if (static_cast<size_t>(r.activation_size()) != nodes) {
      return absl::StrCat(r.activation_size(), " activations, expected ",
                          nodes);
    }
    for (size_t v = 0; v < nodes; ++v) {
      if (!Near(r.activation(static_cast<int>(v)), ref.activation[v])) {
        return absl::StrCat("node ", v, " activation ",
                            r.activation(static_cast<int>(v)), ", expected ",
                            ref.activation[v]);
      }
    }
    return "";
  }
  if (r.activation_size() != 0) return "top-k request answered densely";
  return CompareRanked("top nodes", r.top_nodes(), r.top_activation(),
                       ReferenceTopNodes(ref.activation, c.spread.top_k()),
                       nodes, [&ref](uint32_t v) { return ref.activation[v]; });
}

void OutcomeTally::Add(LoadMethod method, absl::StatusCode code) {
  absl::MutexLock lock(&mu_);
  ++counts_[{method, code}];
}

uint64_t OutcomeTally::Count(LoadMethod method, absl::StatusCode code) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find({method, code});
  return it == counts_.end() ? 0 : it->second;
}

uint64_t OutcomeTally::CountCode(absl::StatusCode code) const {
  return Count(LoadMethod::kBatchCosine, code) +
         Count(LoadMethod::kSpread, code);
}

uint64_t OutcomeTally::Total() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [key, count] : counts_) total += count;
  return total;
}

std::string OutcomeTally::ByCode() const {
  std::map<std::string, uint64_t> by_code;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, count] : counts_) {
      by_code[absl::StatusCodeToString(key.second)] += count;
    }
  }
  std::string out;
  for (const auto& [code, count] : by_code) {
    absl::StrAppend(&out, out.empty() ? "" : " ", code, "=", count);
  }
  return out;
}

std::string OutcomeTally::CompareWithServer(
    const std::string& metrics_text) const {
  std::string mismatches;
  for (LoadMethod method : {LoadMethod::kBatchCosine, LoadMethod::kSpread}) {
    for (int c = 0; c <= 16; ++c) {
      const auto code = static_cast<absl::StatusCode>(c);
      const std::string name = absl::StatusCodeToString(code);
      const uint64_t client = Count(method, code);
      const std::optional<double> server =
          SampleValue(metrics_text, "engram_requests_total",
                      {{"method", LoadMethodName(method)}, {"code", name}});
      if (!server.has_value() && client == 0) continue;
      if (!server.has_value() || static_cast<uint64_t>(*server) != client) {
        absl::StrAppend(&mismatches, LoadMethodName(method), " ", name,
                        ": client ", client, ", server ",
                        server.has_value() ? absl::StrCat(*server) : "absent",
                        "; ");
      }
    }
  }
  return mismatches;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t i = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(i, values.size() - 1)];
}

absl::StatusOr<uint64_t> ReadResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  if (!in) return absl::NotFoundError(absl::StrCat("no process ", pid));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    if (!absl::ConsumeSuffix(&rest, "kB")) break;
    uint64_t kib = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) break;
    return kib * 1024;
  }
  // A zombie has no VmRSS line.
  return absl::NotFoundError(absl::StrCat("no VmRSS for process ", pid));
}

RssSampler::RssSampler(pid_t pid, absl::Duration period)
    : pid_(pid), period_(period) {
  thread_ = std::thread([this] {
    const absl::Time start = absl::Now();
    absl::Time next = start;
    while (!stop_.load(std::memory_order_relaxed)) {
      absl::StatusOr<uint64_t> rss = ReadResidentBytes(pid_);
      if (!rss.ok()) return;
      {
        absl::MutexLock lock(&mu_);
        samples_.push_back({absl::ToDoubleSeconds(absl::Now() - start), *rss});
      }
      next += period_;
      // Short naps, so that Stop() is seen quickly.
      while (!stop_.load(std::memory_order_relaxed) && absl::Now() < next) {
        absl::SleepFor(std::min(absl::Milliseconds(20), next - absl::Now()));
      }
    }
  });
}

RssSampler::~RssSampler() { Stop(); }

void RssSampler::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

std::vector<RssSample> RssSampler::samples() const {
  absl::MutexLock lock(&mu_);
  return samples_;
}

absl::StatusOr<MemoryGrowth> SecondHalfGrowth(
    const std::vector<RssSample>& samples) {
  const size_t n = samples.size();
  if (n < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " RSS samples, too few to judge"));
  }
  auto median = [&samples](size_t begin, size_t end) {
    std::vector<uint64_t> window;
    for (size_t i = begin; i < end; ++i) window.push_back(samples[i].bytes);
    std::sort(window.begin(), window.end());
    return window[window.size() / 2];
  };
  MemoryGrowth g;
  g.samples = n;
  g.first = samples.front().bytes;
  g.last = samples.back().bytes;
  for (const RssSample& s : samples) g.peak = std::max(g.peak, s.bytes);
  g.midpoint_level = median(3 * n / 8, 5 * n / 8);
  g.end_level = median(3 * n / 4, n);
  g.growth = static_cast<int64_t>(g.end_level) -
             static_cast<int64_t>(g.midpoint_level);
  return g;
}

::testing::AssertionResult MemoryGrowthBelow(
    const std::vector<RssSample>& samples, uint64_t bound_bytes) {
  absl::StatusOr<MemoryGrowth> g = SecondHalfGrowth(samples);
  if (!g.ok()) return ::testing::AssertionFailure() << g.status();
  constexpr double kMiB = 1 << 20;
  const std::string figures = absl::StrCat(
      "RSS first ", g->first / kMiB, " MiB, level at the midpoint ",
      g->midpoint_level / kMiB, " MiB, level at the end ", g->end_level / kMiB,
      " MiB, last ", g->last / kMiB, " MiB, peak ", g->peak / kMiB,
      " MiB over ", g->samples, " samples: growth over the second half ",
      static_cast<double>(g->growth) / kMiB, " MiB, bound ", bound_bytes / kMiB,
      " MiB");
  if (g->growth >= static_cast<int64_t>(bound_bytes)) {
    return ::testing::AssertionFailure() << figures;
  }
  return ::testing::AssertionSuccess() << figures;
}

int EnvSeconds(const char* name, int fallback) {
  const char* value = std::getenv(name);
  int seconds = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &seconds) || seconds <= 0) {
    return fallback;
  }
  return seconds;
}

std::string WriteTempFile(const std::string& name, const std::string& text) {
  const char* tmp = std::getenv("TMPDIR");
  static std::atomic<int> counter{0};
  const std::string path =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/engram-load-", getpid(),
                   "-", counter.fetch_add(1), "-", name);
  std::ofstream(path) << text;
  return path;
}

}  // namespace engram::testing
