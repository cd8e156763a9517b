#include "client/row_labels_file.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "client/file_io.h"
#include "client/proto_json.h"

namespace engram::client {

namespace v1 = ::engram::similarity::v1;

absl::StatusOr<std::vector<v1::RowLabels>> ParseRowLabelsJsonLines(
    absl::string_view text) {
  std::vector<v1::RowLabels> rows;
  if (text.empty()) return rows;
  // A line end ends a row; it does not start another one.
  absl::ConsumeSuffix(&text, "\n");
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    v1::RowLabels& labels = rows.emplace_back();
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const absl::Status parsed = ParseProtoJson(line, &labels);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", parsed.message()));
    }
  }
  return rows;
}

absl::StatusOr<std::vector<v1::RowLabels>> ReadRowLabelsFile(
    const std::string& path) {
  ENGRAM_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  absl::StatusOr<std::vector<v1::RowLabels>> rows =
      ParseRowLabelsJsonLines(text);
  if (!rows.ok()) {
    return absl::Status(rows.status().code(),
                        absl::StrCat(path, ": ", rows.status().message()));
  }
  return rows;
}

}  // namespace engram::client
