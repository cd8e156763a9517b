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

absl::StatusOr<float> ParseWeight(absl::string_view field, std::size_t line) {
  float weight = 0.0f;
  if (!absl::SimpleAtof(field, &weight)) {
    return LineError(line,
                     absl::StrCat("weight '", field, "' is not a number"));
  }
  // SimpleAtof accepts "nan" and "inf", and overflows to infinity.
  if (!std::isfinite(weight)) {
    return LineError(line, absl::StrCat("weight '", field, "' is not finite"));
  }
  return weight;
}

// The fields of each non-blank line of `text`, comments dropped, with the
// line's number.
template <typename PerLine>
absl::Status ForEachLine(absl::string_view text, PerLine per_line) {
  std::size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r\v\f"), absl::SkipEmpty());
    if (fields.empty()) continue;
    ENGRAM_RETURN_IF_ERROR(per_line(fields, line_number));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GraphUpdate> ParseGraphUpdate(absl::string_view text) {
  GraphUpdate update;
  ENGRAM_RETURN_IF_ERROR(ForEachLine(
      text,
      [&](const std::vector<absl::string_view>& fields,
          std::size_t line) -> absl::Status {
        const absl::string_view verb = fields[0];
        const std::size_t expected = verb == "add_nodes" ? 2
                                     : verb == "remove"  ? 3
                                                         : 4;
        if (verb != "add_nodes" && verb != "remove" && verb != "set" &&
            verb != "add") {
          return LineError(line,
                           absl::StrCat("unknown change '", verb,
                                        "': expected add_nodes, remove, set "
                                        "or add"));
        }
        if (fields.size() != expected) {
          return LineError(line,
                           absl::StrCat("'", verb, "' takes ", expected - 1,
                                        " fields, got ", fields.size() - 1));
        }
        if (verb == "add_nodes") {
          uint32_t count = 0;
          if (!absl::SimpleAtoi(fields[1], &count) ||
              !absl::ascii_isdigit(static_cast<unsigned char>(fields[1][0])) ||
              uint64_t{update.add_nodes} + count >
                  std::numeric_limits<uint32_t>::max()) {
            return LineError(line, absl::StrCat("add_nodes count '", fields[1],
                                                "' is not a 32-bit "
                                                "non-negative integer"));
          }
          update.add_nodes += count;
          return absl::OkStatus();
        }
        ENGRAM_ASSIGN_OR_RETURN(const uint32_t source,
                                ParseNodeId(fields[1], "source", line));
        ENGRAM_ASSIGN_OR_RETURN(const uint32_t target,
                                ParseNodeId(fields[2], "target", line));
        if (verb == "remove") {
          update.remove_edges.push_back({source, target});
          return absl::OkStatus();
        }
        ENGRAM_ASSIGN_OR_RETURN(const float weight,
                                ParseWeight(fields[3], line));
        (verb == "set" ? update.set_weights : update.add_edges)
            .push_back({source, target, weight});
        return absl::OkStatus();
      }));
  return update;
}

absl::StatusOr<GraphUpdate> ReadGraphUpdateFile(const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  absl::StatusOr<GraphUpdate> update = ParseGraphUpdate(text);
  if (!update.ok()) {
    return absl::Status(update.status().code(),
                        absl::StrCat(path, ": ", update.status().message()));
  }
  return update;
}

absl::StatusOr<std::vector<Edge>> ParseEdgeList(absl::string_view text) {
  std::vector<Edge> edges;
  ENGRAM_RETURN_IF_ERROR(ForEachLine(
      text,
      [&](const std::vector<absl::string_view>& fields,
          std::size_t line) -> absl::Status {
        if (fields.size() < 3) {
          static constexpr const char* kNames[] = {"source", "target",
                                                   "weight"};
          return LineError(
              line,
              absl::StrCat("missing field: expected 'source target weight', "
                           "no ",
                           kNames[fields.size()]));
        }
        if (fields.size() > 3) {
          return LineError(line, absl::StrCat("expected 3 fields 'source "
                                              "target weight', got ",
                                              fields.size()));
        }
        Edge edge;
        ENGRAM_ASSIGN_OR_RETURN(edge.source,
                                ParseNodeId(fields[0], "source", line));
        ENGRAM_ASSIGN_OR_RETURN(edge.target,
                                ParseNodeId(fields[1], "target", line));
        ENGRAM_ASSIGN_OR_RETURN(edge.weight, ParseWeight(fields[2], line));
        edges.push_back(edge);
        return absl::OkStatus();
      }));
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
