// Structured logging: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-26T20:00:00.123Z","level":"info","event":"listening",
//    "address":"0.0.0.0:50051"}
// so a log pipeline can filter on fields instead of parsing prose.
//
// Thread-safety: every function may be called from any thread; lines from
// concurrent callers never interleave.
#ifndef ENGRAM_CORE_LOGGING_H_
#define ENGRAM_CORE_LOGGING_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace engram::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" or "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

using LogField = std::pair<absl::string_view, std::string>;

// Writes one line if `level` is enabled. Field values are JSON-escaped.
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields = {});

// JSON string escaping, exposed for tests.
std::string JsonEscape(absl::string_view s);

}  // namespace engram::core

#endif  // ENGRAM_CORE_LOGGING_H_
