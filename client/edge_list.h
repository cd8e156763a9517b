// Parsing of text edge lists, the graph input of `engram-cli spread --graph`.
//
// One edge per line: `source target weight`, fields separated by tabs or
// spaces (any mix, any number). Node ids are non-negative integers below
// 2^32 - 1, so that max id + 1 still fits the API's node count; the weight is
// a finite decimal number. '#' starts a comment running to the end of the
// line; blank lines are skipped; CRLF line ends are accepted. Whether weights
// are in range is left to the server. All functions are thread-safe.
#ifndef ENGRAM_CLIENT_EDGE_LIST_H_
#define ENGRAM_CLIENT_EDGE_LIST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/types.h"

namespace engram::client {

// The edges of `text` in input order. Returns INVALID_ARGUMENT for the first
// bad line, as "line N: <reason>" (N counts from 1): missing fields, extra
// fields, a non-integer, negative or too large node id, a non-numeric or
// non-finite weight.
absl::StatusOr<std::vector<Edge>> ParseEdgeList(absl::string_view text);

// ParseEdgeList of the file at `path`; errors are prefixed with the path
// ("graph.tsv: line 3: ..."). A missing file gives NOT_FOUND.
absl::StatusOr<std::vector<Edge>> ReadEdgeListFile(const std::string& path);

// The changes of a graph update file (`engram-cli graph update --edits`),
// with the edge list's lexical rules: one change per line,
//   add_nodes COUNT
//   remove SOURCE TARGET
//   set SOURCE TARGET WEIGHT
//   add SOURCE TARGET WEIGHT
// in any order (the server applies them in its own: nodes, removes, weights,
// adds); add_nodes lines add up. INVALID_ARGUMENT for the first bad line,
// as "line N: <reason>".
absl::StatusOr<GraphUpdate> ParseGraphUpdate(absl::string_view text);

// ParseGraphUpdate of the file at `path`; errors are prefixed with the
// path. A missing file gives NOT_FOUND.
absl::StatusOr<GraphUpdate> ReadGraphUpdateFile(const std::string& path);

// The smallest node count that covers every id in `edges`: max id + 1, or 0
// without edges.
uint32_t NumNodesFor(absl::Span<const Edge> edges);

}  // namespace engram::client

#endif  // ENGRAM_CLIENT_EDGE_LIST_H_
