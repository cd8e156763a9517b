#include "base/key_value_text.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace engram::base {

absl::Status KeyValueLineError(absl::string_view what, int line,
                               absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " line ", line, ": ", message));
}

absl::StatusOr<std::vector<KeyValueLine>> LexKeyValueText(
    absl::string_view text, absl::string_view what) {
  std::vector<KeyValueLine> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    KeyValueLine out;
    out.number = number;
    if (absl::ConsumePrefix(&line, "[")) {
      if (!absl::ConsumeSuffix(&line, "]")) {
        return KeyValueLineError(what, number, "unclosed '['");
      }
      line = absl::StripAsciiWhitespace(line);
      const size_t space =
          std::find_if(line.begin(), line.end(), absl::ascii_isspace) -
          line.begin();
      out.is_section = true;
      out.section = std::string(line.substr(0, space));
      if (space < line.size()) {
        out.args = std::string(absl::StripAsciiWhitespace(line.substr(space)));
      }
      lines.push_back(std::move(out));
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return KeyValueLineError(what, number, "expected key = value");
    }
    const absl::string_view key =
        absl::StripAsciiWhitespace(line.substr(0, eq));
    const absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(eq + 1));
    if (key.empty()) {
      return KeyValueLineError(what, number, "expected key = value, no key");
    }
    if (value.empty()) {
      return KeyValueLineError(what, number,
                               absl::StrCat(key, " has no value"));
    }
    out.key = std::string(key);
    out.value = std::string(value);
    lines.push_back(std::move(out));
  }
  return lines;
}

}  // namespace engram::base
