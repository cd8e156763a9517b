// Structured logging: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-26T20:00:00.123Z","level":"info","event":"listening",
//    "address":"0.0.0.0:50051"}
// so a log pipeline can filter on fields instead of parsing prose.
//
// Request context: the server opens a ScopedLogContext on the thread that
// runs a request, and every line written on that thread meanwhile carries
// the request's "request_id" (and "traceparent" when the caller sent one).
// The engine's own lines (dispatch decisions, fallbacks, OOMs, breaker
// transitions) are written on the request's thread, so they carry it too
// without core/ knowing anything about gRPC metadata.
//
// Rate limiting: LogLimited() passes each event name through its own token
// bucket, so a fault storm writes a bounded number of lines; the next line
// written for that event after some were dropped carries
// "suppressed":"<count dropped since the last line written>".
//
// Thread-safety: every function may be called from any thread; lines from
// concurrent callers never interleave. A ScopedLogContext belongs to the
// thread that created it.
#ifndef ENGRAM_CORE_LOGGING_H_
#define ENGRAM_CORE_LOGGING_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace engram::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" or "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

using LogField = std::pair<absl::string_view, std::string>;

// Writes one line if `level` is enabled, with the thread's request context:
// a JSON object whose keys keep the order written (ts, level, event, the
// context, then `fields`). Bytes that are not UTF-8 become U+FFFD, so every
// line parses whatever a field holds.
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields = {});

// As Log(), but at most as often as the process-wide rate limit allows for
// `event` (SetLogRateLimit). For events that a failing device can repeat at
// request rate: fallbacks, OOMs, breaker transitions.
void LogLimited(LogLevel level, absl::string_view event,
                std::initializer_list<LogField> fields = {});

// The request context of the lines the current thread writes while this
// object lives. Contexts nest; the inner one wins until it is destroyed.
// Empty strings are left out of the lines. Not copyable or movable: it must
// be destroyed on the thread that created it, in reverse order of creation.
class ScopedLogContext {
 public:
  ScopedLogContext(std::string request_id, std::string traceparent);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

  const std::string& request_id() const { return request_id_; }
  const std::string& traceparent() const { return traceparent_; }

 private:
  const std::string request_id_;
  const std::string traceparent_;
  const ScopedLogContext* const previous_;
};

// The current thread's request id, or empty outside any context.
std::string CurrentRequestId();

// True for a well-formed W3C trace context `traceparent` header value
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lower case, ids
// not all zero); only such values are logged.
bool IsValidTraceparent(absl::string_view value);

// A token bucket per key: each key may pass `burst` times at once and
// `per_second` times per second after that.
//
// Thread-safety: Admit() may be called concurrently (one mutex).
class LogRateLimiter {
 public:
  struct Options {
    double burst = 20;      // >= 1
    double per_second = 1;  // >= 0; 0: after the burst, never again
    // At most this many keys are tracked; further keys share one bucket, so
    // a caller passing unbounded keys cannot grow the map without bound.
    size_t max_keys = 256;
  };

  explicit LogRateLimiter(const Options& options);

  // Returns -1 when the line for `key` must be dropped at `now`; otherwise
  // the number of lines dropped for `key` since the last one admitted (0
  // normally).
  int64_t Admit(absl::string_view key, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  const Options& options() const { return options_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled_at = absl::InfinitePast();
    int64_t suppressed = 0;
  };

  const Options options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// Replaces the process-wide limiter LogLimited() uses. INVALID_ARGUMENT for
// burst < 1 or per_second < 0 (the limit in force is then kept). The default
// is 20 lines at once and 1 per second after that, per event.
absl::Status SetLogRateLimit(const LogRateLimiter::Options& options);

}  // namespace engram::core

#endif  // ENGRAM_CORE_LOGGING_H_
