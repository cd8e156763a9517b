#include "client/cli/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace engram::client::cli {
namespace {

constexpr absl::Duration kInPlaceInterval = absl::Milliseconds(250);
constexpr absl::Duration kLinesInterval = absl::Seconds(1);

// 1234567 -> "1,234,567".
std::string WithThousands(uint64_t value) {
  std::string digits = absl::StrCat(value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// Items per second over `elapsed`; unset before any time has passed.
std::optional<double> Rate(uint64_t count, absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  if (seconds <= 0) return std::nullopt;
  return static_cast<double>(count) / seconds;
}

std::string FormatRate(double per_second, absl::string_view unit) {
  return absl::StrCat(WithThousands(static_cast<uint64_t>(
                          std::llround(std::max(per_second, 0.0)))),
                      " ", unit, "/s");
}

}  // namespace

ProgressStyle ChooseProgressStyle(bool quiet, bool forced,
                                  bool err_is_terminal) {
  if (quiet) return ProgressStyle::kOff;
  if (err_is_terminal) return ProgressStyle::kInPlace;
  return forced ? ProgressStyle::kLines : ProgressStyle::kOff;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  constexpr absl::string_view kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  std::size_t unit = 0;
  // Switch units at 1023.95 so that rounding never prints "1024.0 KiB".
  while (value >= 1023.95 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatClock(absl::Duration duration) {
  const int64_t total = std::max<int64_t>(0, absl::ToInt64Seconds(duration));
  const int64_t hours = total / 3600;
  const int64_t minutes = total / 60 % 60;
  const int64_t seconds = total % 60;
  if (hours > 0) {
    return absl::StrFormat("%d:%02d:%02d", hours, minutes, seconds);
  }
  return absl::StrFormat("%d:%02d", minutes, seconds);
}

std::string FormatProgress(const TransferProgress& progress,
                           absl::Duration elapsed, absl::string_view unit) {
  std::string text = FormatBytes(progress.bytes_sent);
  if (progress.total_bytes.has_value()) {
    absl::StrAppend(&text, " / ", FormatBytes(*progress.total_bytes));
  }
  if (std::optional<double> rate = Rate(progress.items_sent, elapsed)) {
    absl::StrAppend(&text, "  ", FormatRate(*rate, unit));
  }
  // Percentage and time left from bytes where their total is known: a
  // graph's row offsets carry bytes but no edges.
  uint64_t sent = progress.items_sent;
  std::optional<uint64_t> total = progress.total_items;
  if (progress.total_bytes.has_value()) {
    sent = progress.bytes_sent;
    total = progress.total_bytes;
  }
  if (!total.has_value()) return text;
  const uint64_t percent =
      *total == 0 ? 100
                  : std::min<uint64_t>(
                        100, static_cast<uint64_t>(100.0 * sent / *total));
  absl::StrAppend(&text, "  ", percent, "%");
  std::optional<double> rate = Rate(sent, elapsed);
  if (rate.has_value() && *rate > 0 && sent <= *total) {
    const double left = std::ceil(static_cast<double>(*total - sent) / *rate);
    absl::StrAppend(&text, "  ", FormatClock(absl::Seconds(left)), " left");
  }
  return text;
}

std::string FormatDone(const TransferProgress& progress, absl::Duration elapsed,
                       absl::string_view unit) {
  std::string text = absl::StrCat("done: ", FormatBytes(progress.bytes_sent),
                                  ", ", WithThousands(progress.items_sent), " ",
                                  unit, " in ", FormatClock(elapsed));
  if (std::optional<double> rate = Rate(progress.items_sent, elapsed)) {
    absl::StrAppend(&text, ", ", FormatRate(*rate, unit));
  }
  return text;
}

ProgressLine::ProgressLine(std::ostream& out, Options options)
    : out_(out),
      options_(std::move(options)),
      min_interval_(
          options_.min_interval > absl::ZeroDuration() ? options_.min_interval
          : options_.style == ProgressStyle::kLines    ? kLinesInterval
                                                       : kInPlaceInterval),
      start_(options_.clock()) {}

void ProgressLine::Update(const TransferProgress& progress) {
  if (options_.style == ProgressStyle::kOff || finished_) return;
  last_ = progress;
  const absl::Time now = options_.clock();
  if (shown_any_ && now - last_shown_ < min_interval_) return;
  shown_any_ = true;
  last_shown_ = now;
  Show(FormatProgress(progress, now - start_, options_.unit), false);
}

void ProgressLine::Finish(bool succeeded) {
  if (options_.style == ProgressStyle::kOff || finished_) return;
  finished_ = true;
  if (succeeded) {
    Show(FormatDone(last_, options_.clock() - start_, options_.unit), true);
  } else if (drawn_width_ > 0) {
    out_ << "\n";
    out_.flush();
  }
}

ProgressCallback ProgressLine::Callback() {
  if (options_.style == ProgressStyle::kOff) return nullptr;
  return [this](const TransferProgress& progress) { Update(progress); };
}

void ProgressLine::Show(const std::string& text, bool final) {
  if (options_.style == ProgressStyle::kLines) {
    out_ << text << "\n";
  } else {
    // Spaces over what is left of a longer line drawn before.
    const std::size_t pad =
        drawn_width_ > text.size() ? drawn_width_ - text.size() : 0;
    out_ << "\r" << text << std::string(pad, ' ');
    drawn_width_ = text.size();
    if (final) {
      out_ << "\n";
      drawn_width_ = 0;
    }
  }
  out_.flush();
}

}  // namespace engram::client::cli
