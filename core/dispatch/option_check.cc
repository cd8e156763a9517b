#include "core/dispatch/option_check.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace engram::dispatch {
namespace {

absl::Status Outside(absl::string_view name, absl::string_view value,
                     bool lo_open, absl::string_view lo, absl::string_view hi) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, " = ", value, " is outside ", lo_open ? "(" : "[", lo,
                   ", ", hi, "]"));
}

std::string Seconds(absl::Duration d) {
  return absl::StrCat(FormatShortestDouble(absl::ToDoubleSeconds(d)), "s");
}

}  // namespace

std::string FormatShortestDouble(double v) {
  for (int precision = 6; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

absl::Status CheckIntRange(absl::string_view name, uint64_t value, uint64_t lo,
                           uint64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return Outside(name, absl::StrCat(value), false, absl::StrCat(lo),
                 absl::StrCat(hi));
}

absl::Status CheckRealRange(absl::string_view name, double value, double lo,
                            bool lo_open, double hi) {
  const bool above_lo = lo_open ? value > lo : value >= lo;
  if (std::isfinite(value) && above_lo && value <= hi) {
    return absl::OkStatus();
  }
  return Outside(name, FormatShortestDouble(value), lo_open,
                 FormatShortestDouble(lo), FormatShortestDouble(hi));
}

absl::Status CheckDurationRange(absl::string_view name, absl::Duration value,
                                absl::Duration lo, bool lo_open,
                                absl::Duration hi) {
  const bool above_lo = lo_open ? value > lo : value >= lo;
  if (above_lo && value <= hi) return absl::OkStatus();
  return Outside(name, Seconds(value), lo_open, Seconds(lo), Seconds(hi));
}

absl::Status CheckOrder(bool ok, absl::string_view name,
                        absl::string_view bound_name) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must be <= ", bound_name));
}

}  // namespace engram::dispatch
