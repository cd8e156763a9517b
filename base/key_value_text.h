// The lexer of the service's `key = value` text files (the hybrid config,
// core/dispatch/hybrid_config.h, and the resident declarations,
// core/collections/declarations.h), so that both read comments, sections and
// malformed lines the same way and name lines alike in their errors. What the
// sections and keys mean is the parsers' business, not this file's.
//
// The syntax: `#` starts a comment that runs to the end of the line; blank
// lines are ignored; surrounding whitespace is not significant. Every other
// line is either a section header `[NAME ARGS]` or a `key = value` pair (the
// first `=` splits it, so a value may contain `=`).
#ifndef ENGRAM_BASE_KEY_VALUE_TEXT_H_
#define ENGRAM_BASE_KEY_VALUE_TEXT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace engram::base {

// One meaningful line of a key-value text.
struct KeyValueLine {
  int number = 0;  // 1-based, counting every line of the text
  bool is_section = false;
  // A section header `[NAME ARGS]`: NAME is its first word and ARGS the rest,
  // both stripped; either may be empty (`[]`, `[profile]`) for the parser to
  // judge.
  std::string section;
  std::string args;
  // A pair: both stripped and never empty.
  std::string key;
  std::string value;
};

// The meaningful lines of `text` in order, or INVALID_ARGUMENT
// "<what> line N: ..." for the first line that is neither a section header
// nor a pair: an unclosed '[', a line without '=', a pair without a key or
// without a value.
absl::StatusOr<std::vector<KeyValueLine>> LexKeyValueText(
    absl::string_view text, absl::string_view what);

// INVALID_ARGUMENT "<what> line <line>: <message>": the form the lexer's own
// errors take, for the parsers' errors about a line to read the same.
absl::Status KeyValueLineError(absl::string_view what, int line,
                               absl::string_view message);

}  // namespace engram::base

#endif  // ENGRAM_BASE_KEY_VALUE_TEXT_H_
