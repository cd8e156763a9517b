// Turning engram-cli's parsed options and input files into requests: the
// parsers of the flag values that end up in a request (placement, decay,
// seeds, thresholds, metadata, id lists, row filters) and the builders of
// the BatchCosine, Spread and SearchCollection requests. They read files but
// never touch the network, so every error here is bad usage or input
// (kExitUsage).
#ifndef ENGRAM_CLIENT_CLI_REQUEST_BUILDERS_H_
#define ENGRAM_CLIENT_CLI_REQUEST_BUILDERS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli/invocation.h"
#include "client/types.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::client::cli {

// "auto", "cpu" or "gpu".
absl::StatusOr<engram::similarity::v1::Placement> ParsePlacement(
    absl::string_view text);

// "exponential:R", "power_law:E", "linear:S" or "constant:F" into the decay
// oneof of `params`, which is left unchanged on error.
absl::Status ParseDecay(absl::string_view text,
                        engram::similarity::v1::SpreadParams* params);

// "node:activation,node:activation,...": at least one seed, node ids
// non-negative 32-bit integers, activations finite.
absl::StatusOr<std::vector<SpreadSeed>> ParseSeeds(absl::string_view text);

// "f1,f2,...": finite floats, at least one.
absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text);

// "n1,n2,...": node ids, non-negative 32-bit integers, at least one.
absl::StatusOr<std::vector<uint32_t>> ParseNodeList(absl::string_view text);

// "source:target,...", and "source:target:weight,..." (weights finite); at
// least one entry. `flag` names the list in errors.
absl::StatusOr<std::vector<EdgeRef>> ParseEdgeRefs(absl::string_view text,
                                                   absl::string_view flag);
absl::StatusOr<std::vector<Edge>> ParseWeightedEdges(absl::string_view text,
                                                     absl::string_view flag);

// The UpdateGraph request `graph update` sends: the changes of --edits
// (read first) and of --add_nodes, --remove_edges, --set_weights and
// --add_edges, with --idempotency_key and --expected_version.
// INVALID_ARGUMENT when no change is given or a list is malformed; file
// errors as ReadGraphUpdateFile reports them.
absl::StatusOr<engram::similarity::v1::UpdateGraphRequest>
BuildUpdateGraphRequest(const GraphOptions& options);

// The request `options` describe: reads the .npy files or generates the
// random data. INVALID_ARGUMENT for inconsistent flags or bad input; file
// errors as ReadNpyFile reports them.
absl::StatusOr<engram::similarity::v1::BatchCosineRequest> BuildCosineRequest(
    const CosineOptions& options);

// The Spread request `options` describe but for the graph, which the caller
// adds (a file, a resident graph's name, a generated graph): the seeds, the
// placement, only the parameters that were given, and the node allow-lists
// when given. INVALID_ARGUMENT for the first bad one, in that order.
absl::StatusOr<engram::similarity::v1::SpreadRequest>
BuildSpreadRequestWithoutGraph(const SpreadOptions& options);

// The CSR graph of the edge list file at `path`, over `num_nodes` nodes when
// given, else the largest node id + 1. File errors as ReadEdgeListFile
// reports them; INVALID_ARGUMENT, naming the file, for an edge whose source or
// target is not below the node count.
absl::StatusOr<engram::similarity::v1::Graph> ReadGraphFile(
    const std::string& path, std::optional<uint32_t> num_nodes);

// The request `options` describe: reads the edge list, builds the CSR graph
// (over --num_nodes nodes when given, else max id + 1) and sets only the
// parameters that were given.
absl::StatusOr<engram::similarity::v1::SpreadRequest> BuildSpreadRequest(
    const SpreadOptions& options);

// The SearchCollection request `collection search` (and bench
// --rpc=SearchCollection) sends: queries from options.queries_path or
// options.random ("Q,D"), options.top_k, min_score and placement.
absl::StatusOr<engram::similarity::v1::SearchCollectionRequest>
BuildSearchRequest(const std::string& collection, const CosineOptions& options);

// "key=value,key=value" (empty: none).
absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(
    absl::string_view text);

// "id,id,...": at least one id, each a non-negative 64-bit integer, in the
// order given. INVALID_ARGUMENT naming the first bad item.
absl::StatusOr<std::vector<uint64_t>> ParseIdList(absl::string_view text);

// The RowFilter of `--filter`: protobuf JSON, or "@PATH" for a file holding
// it. INVALID_ARGUMENT naming --filter (and the file) with the parser's
// reason, which names the field; file errors as ReadFileToString reports
// them, prefixed with --filter.
absl::StatusOr<engram::similarity::v1::RowFilter> ParseRowFilter(
    absl::string_view text);

}  // namespace engram::client::cli

#endif  // ENGRAM_CLIENT_CLI_REQUEST_BUILDERS_H_
