#include "core/logging.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace engram::core {
namespace {

// Relaxed: the level is a filter; a racing reader seeing the old value for
// a moment is harmless.
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

// The innermost context of this thread; contexts link to the one they hide.
thread_local const ScopedLogContext* t_context = nullptr;

// The limiter LogLimited() uses. Replaced whole by SetLogRateLimit(); a
// caller holds its own reference while it admits, so a replacement never
// frees a limiter in use.
absl::Mutex g_limiter_mu(absl::kConstInit);
std::shared_ptr<LogRateLimiter>& Limiter()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_limiter_mu) {
  static auto* limiter = new std::shared_ptr<LogRateLimiter>(
      std::make_shared<LogRateLimiter>(LogRateLimiter::Options{}));
  return *limiter;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void Write(LogLevel level, absl::string_view event,
           std::initializer_list<LogField> fields, int64_t suppressed) {
  // ordered_json keeps the keys in the order written, so every line reads
  // ts, level, event first.
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                absl::UTCTimeZone());
  line["level"] = LevelName(level);
  line["event"] = std::string(event);
  if (const ScopedLogContext* context = t_context; context != nullptr) {
    if (!context->request_id().empty()) {
      line["request_id"] = context->request_id();
    }
    if (!context->traceparent().empty()) {
      line["traceparent"] = context->traceparent();
    }
  }
  for (const LogField& field : fields) {
    line[std::string(field.first)] = field.second;
  }
  if (suppressed > 0) line["suppressed"] = absl::StrCat(suppressed);
  // A field may carry bytes from a request (a name, an error message);
  // `replace` turns what is not UTF-8 into U+FFFD instead of throwing.
  std::string text = line.dump(
      /*indent=*/-1, /*indent_char=*/' ',
      /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::replace);
  text += '\n';
  // One fwrite per line: stdio locks the stream, so lines do not interleave.
  std::fwrite(text.data(), 1, text.size(), stderr);
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError}) {
    if (lower == LevelName(level)) return level;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "log level '", name, "' is not one of debug, info, warning, error"));
}

void SetLogLevel(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  Write(level, event, fields, 0);
}

void LogLimited(LogLevel level, absl::string_view event,
                std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::shared_ptr<LogRateLimiter> limiter;
  {
    absl::MutexLock lock(&g_limiter_mu);
    limiter = Limiter();
  }
  const int64_t suppressed = limiter->Admit(event, absl::Now());
  if (suppressed < 0) return;
  Write(level, event, fields, suppressed);
}

absl::Status SetLogRateLimit(const LogRateLimiter::Options& options) {
  if (!(options.burst >= 1)) {
    return absl::InvalidArgumentError("log rate limit burst must be >= 1");
  }
  if (!(options.per_second >= 0)) {
    return absl::InvalidArgumentError("log rate limit per second must be >= 0");
  }
  if (options.max_keys < 1) {
    return absl::InvalidArgumentError("log rate limit max_keys must be >= 1");
  }
  auto limiter = std::make_shared<LogRateLimiter>(options);
  absl::MutexLock lock(&g_limiter_mu);
  Limiter() = std::move(limiter);
  return absl::OkStatus();
}

ScopedLogContext::ScopedLogContext(std::string request_id,
                                   std::string traceparent)
    : request_id_(std::move(request_id)),
      traceparent_(std::move(traceparent)),
      previous_(t_context) {
  t_context = this;
}

ScopedLogContext::~ScopedLogContext() { t_context = previous_; }

std::string CurrentRequestId() {
  return t_context == nullptr ? std::string() : t_context->request_id();
}

bool IsValidTraceparent(absl::string_view value) {
  // version "00" is the only one defined; its length is fixed.
  if (value.size() != 55 || value[2] != '-' || value[35] != '-' ||
      value[52] != '-') {
    return false;
  }
  const absl::string_view version = value.substr(0, 2);
  const absl::string_view trace_id = value.substr(3, 32);
  const absl::string_view parent_id = value.substr(36, 16);
  const absl::string_view flags = value.substr(53, 2);
  if (version != "00" || !IsLowerHex(trace_id) || !IsLowerHex(parent_id) ||
      !IsLowerHex(flags)) {
    return false;
  }
  return trace_id != std::string(32, '0') && parent_id != std::string(16, '0');
}

LogRateLimiter::LogRateLimiter(const Options& options) : options_(options) {}

int64_t LogRateLimiter::Admit(absl::string_view key, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    // The shared overflow bucket has a key no event name can have.
    const absl::string_view slot =
        buckets_.size() + 1 < options_.max_keys ? key : "\x01overflow";
    Bucket fresh;
    fresh.tokens = options_.burst;
    fresh.refilled_at = now;
    it = buckets_.try_emplace(slot, fresh).first;
  }
  Bucket& b = it->second;
  if (now > b.refilled_at) {
    b.tokens =
        std::min(options_.burst,
                 b.tokens + options_.per_second *
                                absl::ToDoubleSeconds(now - b.refilled_at));
    b.refilled_at = now;
  }
  if (b.tokens < 1) {
    ++b.suppressed;
    return -1;
  }
  b.tokens -= 1;
  const int64_t suppressed = b.suppressed;
  b.suppressed = 0;
  return suppressed;
}

}  // namespace engram::core
