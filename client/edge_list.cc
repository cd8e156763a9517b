#include "client/edge_list.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "client/file_io.h"

namespace engram::client {
namespace {

// The largest id whose count (id + 1) still fits a uint32 node count.
constexpr uint64_t kMaxNodeId = std::numeric_limits<uint32_t>::max() - 1;

absl::Status LineError(std::size_t line, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", reason));
}

absl::StatusOr<uint32_t> ParseNodeId(absl::string_view field,
                                     absl::string_view role, std::size_t line) {
  absl::string_view digits = field;
  const bool negative = absl::ConsumePrefix(&digits, "-");
  if (!negative) absl::ConsumePrefix(&digits, "+");
  // Digits only, so "1.0" and "1e3" are rejected rather than read as ids.
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return LineError(line,
                     absl::StrCat(role, " id '", field, "' is not an integer"));
  }
  if (negative && digits.find_first_not_of('0') != absl::string_view::npos) {
    return LineError(line, absl::StrCat(role, " id ", field, " is negative"));
  }
  uint64_t id = 0;
  if (!absl::SimpleAtoi(digits, &id) || id > kMaxNodeId) {
    return LineError(
        line, absl::StrCat(role, " id ", field, " is too large (at most ",
                           kMaxNodeId, ")"));
  }
  return static_cast<uint32_t>(id);
}

}  // namespace

absl::StatusOr<std::vector<Edge>> ParseEdgeList(absl::string_view text) {
  std::vector<Edge> edges;
  std::size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r\v\f"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() < 3) {
      static constexpr const char* kNames[] = {"source", "target", "weight"};
      return LineError(
          line_number,
          absl::StrCat("missing field: expected 'source target weight', no ",
                       kNames[fields.size()]));
    }
    if (fields.size() > 3) {
      return LineError(line_number,
                       absl::StrCat("expected 3 fields 'source target "
                                    "weight', got ",
                                    fields.size()));
    }
    Edge edge;
    ENGRAM_ASSIGN_OR_RETURN(edge.source,
                            ParseNodeId(fields[0], "source", line_number));
    ENGRAM_ASSIGN_OR_RETURN(edge.target,
                            ParseNodeId(fields[1], "target", line_number));
    if (!absl::SimpleAtof(fields[2], &edge.weight)) {
      return LineError(line_number, absl::StrCat("weight '", fields[2],
                                                 "' is not a number"));
    }
    // SimpleAtof accepts "nan" and "inf", and overflows to infinity.
    if (!std::isfinite(edge.weight)) {
      return LineError(line_number,
                       absl::StrCat("weight '", fields[2], "' is not finite"));
    }
    edges.push_back(edge);
  }
  return edges;
}

absl::StatusOr<std::vector<Edge>> ReadEdgeListFile(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  absl::StatusOr<std::vector<Edge>> edges = ParseEdgeList(text);
  if (!edges.ok()) {
    return absl::Status(edges.status().code(),
                        absl::StrCat(path, ": ", edges.status().message()));
  }
  return edges;
}

uint32_t NumNodesFor(absl::Span<const Edge> edges) {
  uint32_t num_nodes = 0;
  for (const Edge& e : edges) {
    num_nodes = std::max({num_nodes, e.source + 1, e.target + 1});
  }
  return num_nodes;
}

}  // namespace engram::client
