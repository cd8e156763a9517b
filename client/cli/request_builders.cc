#include "client/cli/request_builders.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "client/cli/output.h"
#include "client/edge_list.h"
#include "client/file_io.h"
#include "client/npy.h"
#include "client/proto_json.h"
#include "client/random_data.h"
#include "client/requests.h"

namespace engram::client::cli {
namespace {

namespace v1 = ::engram::similarity::v1;

absl::StatusOr<float> ParseFiniteFloat(absl::string_view text,
                                       absl::string_view what) {
  float value = 0.0f;
  if (!absl::SimpleAtof(text, &value)) {
    return UsageError(absl::StrCat(what, " '", text, "' is not a number"));
  }
  if (!std::isfinite(value)) {
    return UsageError(absl::StrCat(what, " '", text, "' is not finite"));
  }
  return value;
}

absl::Status RequireFinite(const std::optional<float>& value,
                           absl::string_view flag) {
  if (value.has_value() && !std::isfinite(*value)) {
    return UsageError(
        absl::StrCat("--", flag, " must be finite, got ", *value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Placement> ParsePlacement(absl::string_view text) {
  if (text == "auto") return v1::PLACEMENT_AUTO;
  if (text == "cpu") return v1::PLACEMENT_CPU_ONLY;
  if (text == "gpu") return v1::PLACEMENT_GPU_ONLY;
  return UsageError(
      absl::StrCat("placement '", text, "' is not one of auto, cpu, gpu"));
}

absl::Status ParseDecay(absl::string_view text, v1::SpreadParams* params) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(':', 1));
  if (parts.size() != 2) {
    return UsageError(absl::StrCat(
        "decay '", text,
        "': expected KIND:VALUE with KIND exponential, power_law, linear or "
        "constant"));
  }
  const absl::string_view kind = absl::StripAsciiWhitespace(parts[0]);
  ENGRAM_ASSIGN_OR_RETURN(
      const float value,
      ParseFiniteFloat(absl::StripAsciiWhitespace(parts[1]),
                       absl::StrCat("decay '", text, "': value")));
  if (kind == "exponential") {
    params->set_exponential_rate(value);
  } else if (kind == "power_law") {
    params->set_power_law_exponent(value);
  } else if (kind == "linear") {
    params->set_linear_slope(value);
  } else if (kind == "constant") {
    params->set_constant_factor(value);
  } else {
    return UsageError(absl::StrCat("decay '", text, "': unknown kind '", kind,
                                   "' (exponential, power_law, linear or "
                                   "constant)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SpreadSeed>> ParseSeeds(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("no seeds given: expected node:activation,...");
  }
  std::vector<SpreadSeed> seeds;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    if (parts.size() != 2) {
      return UsageError(
          absl::StrCat("seed '", item, "': expected node:activation"));
    }
    const absl::string_view node = absl::StripAsciiWhitespace(parts[0]);
    SpreadSeed seed;
    // SimpleAtoi into an unsigned type rejects a minus sign.
    if (node.empty() || !absl::ascii_isdigit(node[0]) ||
        !absl::SimpleAtoi(node, &seed.node)) {
      return UsageError(absl::StrCat("seed '", item, "': node '", node,
                                     "' is not a 32-bit non-negative "
                                     "integer"));
    }
    ENGRAM_ASSIGN_OR_RETURN(
        seed.activation,
        ParseFiniteFloat(absl::StripAsciiWhitespace(parts[1]),
                         absl::StrCat("seed '", item, "': activation")));
    seeds.push_back(seed);
  }
  return seeds;
}

namespace {

// A non-negative 32-bit integer, or INVALID_ARGUMENT naming `what`.
absl::StatusOr<uint32_t> ParseNode(absl::string_view text,
                                   absl::string_view what) {
  text = absl::StripAsciiWhitespace(text);
  uint32_t node = 0;
  // SimpleAtoi into an unsigned type rejects a minus sign.
  if (text.empty() || !absl::ascii_isdigit(text[0]) ||
      !absl::SimpleAtoi(text, &node)) {
    return UsageError(absl::StrCat(what, " '", text,
                                   "' is not a 32-bit non-negative integer"));
  }
  return node;
}

// The ':'-separated fields of each item of a comma-separated list, `fields`
// of them each; at least one item.
absl::StatusOr<std::vector<std::vector<absl::string_view>>> SplitItems(
    absl::string_view text, absl::string_view flag, size_t fields,
    absl::string_view form) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError(absl::StrCat("--", flag, " is empty: expected ", form));
  }
  std::vector<std::vector<absl::string_view>> items;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    if (parts.size() != fields) {
      return UsageError(
          absl::StrCat("--", flag, ": '", item, "': expected ", form));
    }
    items.push_back(std::move(parts));
  }
  return items;
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> ParseNodeList(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("empty list: expected comma-separated node ids");
  }
  std::vector<uint32_t> nodes;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    ENGRAM_ASSIGN_OR_RETURN(const uint32_t node, ParseNode(item, "node"));
    nodes.push_back(node);
  }
  return nodes;
}

absl::StatusOr<std::vector<EdgeRef>> ParseEdgeRefs(absl::string_view text,
                                                   absl::string_view flag) {
  ENGRAM_ASSIGN_OR_RETURN(const auto items,
                          SplitItems(text, flag, 2, "source:target,..."));
  std::vector<EdgeRef> edges;
  for (const auto& parts : items) {
    EdgeRef e;
    ENGRAM_ASSIGN_OR_RETURN(e.source, ParseNode(parts[0], "source"));
    ENGRAM_ASSIGN_OR_RETURN(e.target, ParseNode(parts[1], "target"));
    edges.push_back(e);
  }
  return edges;
}

absl::StatusOr<std::vector<Edge>> ParseWeightedEdges(absl::string_view text,
                                                     absl::string_view flag) {
  ENGRAM_ASSIGN_OR_RETURN(
      const auto items, SplitItems(text, flag, 3, "source:target:weight,..."));
  std::vector<Edge> edges;
  for (const auto& parts : items) {
    Edge e;
    ENGRAM_ASSIGN_OR_RETURN(e.source, ParseNode(parts[0], "source"));
    ENGRAM_ASSIGN_OR_RETURN(e.target, ParseNode(parts[1], "target"));
    ENGRAM_ASSIGN_OR_RETURN(
        e.weight, ParseFiniteFloat(absl::StripAsciiWhitespace(parts[2]),
                                   absl::StrCat("--", flag, ": weight")));
    edges.push_back(e);
  }
  return edges;
}

absl::StatusOr<v1::UpdateGraphRequest> BuildUpdateGraphRequest(
    const GraphOptions& options) {
  GraphUpdate update;
  if (!options.edits_path.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(update, ReadGraphUpdateFile(options.edits_path));
  }
  if (uint64_t{update.add_nodes} + options.add_nodes >
      std::numeric_limits<uint32_t>::max()) {
    return UsageError("--add_nodes and --edits add more than 2^32 - 1 nodes");
  }
  update.add_nodes += options.add_nodes;
  if (!options.remove_edges.empty()) {
    ENGRAM_ASSIGN_OR_RETURN(
        const auto edges, ParseEdgeRefs(options.remove_edges, "remove_edges"));
    update.remove_edges.insert(update.remove_edges.end(), edges.begin(),
                               edges.end());
  }
  for (const auto& [text, flag, out] :
       {std::tuple{&options.set_weights, "set_weights", &update.set_weights},
        std::tuple{&options.add_edges, "add_edges", &update.add_edges}}) {
    if (text->empty()) continue;
    ENGRAM_ASSIGN_OR_RETURN(const auto edges, ParseWeightedEdges(*text, flag));
    out->insert(out->end(), edges.begin(), edges.end());
  }
  if (update.add_nodes == 0 && update.remove_edges.empty() &&
      update.set_weights.empty() && update.add_edges.empty()) {
    return UsageError(
        "graph update needs a change: --edits, --add_nodes, --remove_edges, "
        "--set_weights or --add_edges");
  }
  return MakeUpdateGraphRequest(options.name, update, options.idempotency_key,
                                options.expected_version);
}

absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("empty list: expected comma-separated numbers");
  }
  std::vector<float> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    ENGRAM_ASSIGN_OR_RETURN(
        const float value,
        ParseFiniteFloat(absl::StripAsciiWhitespace(item), "list item"));
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<v1::BatchCosineRequest> BuildCosineRequest(
    const CosineOptions& options) {
  const bool has_files =
      !options.queries_path.empty() || !options.targets_path.empty();
  const bool has_random = !options.random.empty();
  if (has_files && has_random) {
    return UsageError(
        "give either --queries and --targets, or --random, not both");
  }
  if (!has_files && !has_random) {
    return UsageError(
        "give --queries and --targets (.npy files), or --random=Q,N,D");
  }
  if (has_files &&
      (options.queries_path.empty() || options.targets_path.empty())) {
    return UsageError("--queries and --targets must be given together");
  }
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.min_score, "min_score"));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));

  FloatMatrix queries, targets;
  if (has_random) {
    ENGRAM_ASSIGN_OR_RETURN(const RandomShape shape,
                            ParseRandomShape(options.random));
    RandomCosineData data = MakeRandomCosineData(shape, options.seed);
    queries = std::move(data.queries);
    targets = std::move(data.targets);
  } else {
    ENGRAM_ASSIGN_OR_RETURN(queries, ReadNpyFile(options.queries_path));
    ENGRAM_ASSIGN_OR_RETURN(targets, ReadNpyFile(options.targets_path));
  }
  ENGRAM_ASSIGN_OR_RETURN(v1::Matrix query_matrix, MakeMatrix(queries));
  ENGRAM_ASSIGN_OR_RETURN(v1::Matrix target_matrix, MakeMatrix(targets));
  return MakeCosineRequest(std::move(query_matrix), std::move(target_matrix),
                           options.top_k, options.min_score, placement);
}

namespace {

// The SpreadParams `options` give (only those given are set).
absl::StatusOr<v1::SpreadParams> BuildSpreadParams(
    const SpreadOptions& options) {
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.threshold, "threshold"));
  ENGRAM_RETURN_IF_ERROR(
      RequireFinite(options.max_activation, "max_activation"));

  v1::SpreadParams params;
  if (options.max_hops.has_value()) params.set_max_hops(*options.max_hops);
  if (!options.decay.empty()) {
    ENGRAM_RETURN_IF_ERROR(ParseDecay(options.decay, &params));
  }
  if (options.threshold.has_value()) params.set_threshold(*options.threshold);
  if (!options.hop_thresholds.empty()) {
    absl::StatusOr<std::vector<float>> thresholds =
        ParseFloatList(options.hop_thresholds);
    if (!thresholds.ok()) {
      return UsageError(
          absl::StrCat("--hop_thresholds: ", thresholds.status().message()));
    }
    params.mutable_hop_thresholds()->Assign(thresholds->begin(),
                                            thresholds->end());
  }
  if (options.max_activation.has_value()) {
    params.set_max_activation(*options.max_activation);
  }
  return params;
}

}  // namespace

absl::StatusOr<v1::SpreadRequest> BuildSpreadRequestWithoutGraph(
    const SpreadOptions& options) {
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<SpreadSeed> seeds,
                          ParseSeeds(options.seeds));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));
  ENGRAM_ASSIGN_OR_RETURN(v1::SpreadParams params, BuildSpreadParams(options));
  v1::SpreadRequest request = MakeSpreadRequest(
      v1::Graph(), seeds, std::move(params), options.top_k, placement);
  request.clear_graph();
  // Only a filter given is sent: an absent one admits every node.
  for (const auto& [text, flag, filter] :
       {std::tuple{&options.seed_nodes, "seed_nodes",
                   &v1::SpreadRequest::mutable_seed_nodes},
        std::tuple{&options.result_nodes, "result_nodes",
                   &v1::SpreadRequest::mutable_result_nodes}}) {
    if (text->empty()) continue;
    absl::StatusOr<std::vector<uint32_t>> nodes = ParseNodeList(*text);
    if (!nodes.ok()) {
      return UsageError(
          absl::StrCat("--", flag, ": ", nodes.status().message()));
    }
    (request.*filter)()->mutable_nodes()->Assign(nodes->begin(), nodes->end());
  }
  return request;
}

absl::StatusOr<v1::Graph> ReadGraphFile(const std::string& path,
                                        std::optional<uint32_t> num_nodes) {
  ENGRAM_ASSIGN_OR_RETURN(const std::vector<Edge> edges,
                          ReadEdgeListFile(path));
  absl::StatusOr<v1::Graph> graph =
      MakeGraph(num_nodes.value_or(NumNodesFor(edges)), edges);
  if (!graph.ok()) {
    return UsageError(absl::StrCat(path, ": ", graph.status().message()));
  }
  return graph;
}

absl::StatusOr<v1::SpreadRequest> BuildSpreadRequest(
    const SpreadOptions& options) {
  if (options.graph_path.empty() && options.graph_name.empty()) {
    return UsageError(
        "--graph is required (an edge list file), or --graph_name (a "
        "resident graph)");
  }
  if (!options.graph_path.empty() && !options.graph_name.empty()) {
    return UsageError("give --graph or --graph_name, not both");
  }
  if (options.min_version != 0 && options.graph_name.empty()) {
    return UsageError("--min_version applies to --graph_name only");
  }
  if (options.seeds.empty()) {
    return UsageError("--seeds is required (node:activation,...)");
  }
  ENGRAM_ASSIGN_OR_RETURN(v1::SpreadRequest request,
                          BuildSpreadRequestWithoutGraph(options));
  if (!options.graph_name.empty()) {
    request.set_graph_name(options.graph_name);
    request.set_min_version(options.min_version);
    return request;
  }

  ENGRAM_ASSIGN_OR_RETURN(*request.mutable_graph(),
                          ReadGraphFile(options.graph_path, options.num_nodes));
  return request;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(
    absl::string_view text) {
  std::map<std::string, std::string> metadata;
  if (absl::StripAsciiWhitespace(text).empty()) return metadata;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const absl::string_view key =
        absl::StripAsciiWhitespace(parts.empty() ? "" : parts[0]);
    if (parts.size() != 2 || key.empty()) {
      return UsageError(
          absl::StrCat("metadata '", item, "': expected key=value"));
    }
    metadata[std::string(key)] = std::string(parts[1]);
  }
  return metadata;
}

absl::StatusOr<v1::SearchCollectionRequest> BuildSearchRequest(
    const std::string& collection, const CosineOptions& options) {
  if (collection.empty()) {
    return UsageError("the collection to search is required");
  }
  if (options.queries_path.empty() == options.random.empty()) {
    return UsageError(
        "give exactly one of --queries (a .npy file) and --random=Q,D");
  }
  if (!options.targets_path.empty()) {
    return UsageError("--targets is not used: the targets are resident");
  }
  ENGRAM_RETURN_IF_ERROR(RequireFinite(options.min_score, "min_score"));
  ENGRAM_ASSIGN_OR_RETURN(const v1::Placement placement,
                          ParsePlacement(options.placement));
  FloatMatrix queries;
  if (!options.random.empty()) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(options.random, ',');
    size_t q = 0, d = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &q) ||
        !absl::SimpleAtoi(parts[1], &d) || q == 0 || d == 0 ||
        q * d > kMaxRandomValues) {
      return UsageError(absl::StrCat(
          "--random '", options.random,
          "': expected Q,D (queries and dimension, both >= 1) for a search"));
    }
    std::mt19937_64 rng(options.seed);
    queries = RandomMatrix(q, d, rng);
  } else {
    ENGRAM_ASSIGN_OR_RETURN(queries, ReadNpyFile(options.queries_path));
  }
  v1::SearchCollectionRequest request;
  request.set_collection(collection);
  ENGRAM_ASSIGN_OR_RETURN(*request.mutable_queries(), MakeMatrix(queries));
  request.set_top_k(options.top_k);
  if (options.min_score.has_value()) request.set_min_score(*options.min_score);
  request.set_placement(placement);
  return request;
}

absl::StatusOr<std::vector<uint64_t>> ParseIdList(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError("no ids given: expected id,id,...");
  }
  std::vector<uint64_t> ids;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    uint64_t id = 0;
    // SimpleAtoi into an unsigned type rejects a minus sign but not a plus.
    if (item.empty() || !absl::ascii_isdigit(item[0]) ||
        !absl::SimpleAtoi(item, &id)) {
      return UsageError(
          absl::StrCat("id '", item, "' is not a non-negative 64-bit integer"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<v1::RowFilter> ParseRowFilter(absl::string_view text) {
  std::string json(text);
  std::string source = "--filter";
  if (absl::ConsumePrefix(&text, "@")) {
    if (text.empty()) return UsageError("--filter @: no file named after @");
    source = absl::StrCat("--filter ", text);
    absl::StatusOr<std::string> contents = ReadFileToString(std::string(text));
    if (!contents.ok()) {
      return absl::Status(
          contents.status().code(),
          absl::StrCat("--filter: ", contents.status().message()));
    }
    json = *std::move(contents);
  }
  v1::RowFilter filter;
  const absl::Status parsed = ParseProtoJson(json, &filter);
  if (!parsed.ok()) {
    return UsageError(absl::StrCat(source, ": ", parsed.message()));
  }
  return filter;
}

}  // namespace engram::client::cli
