// The range checks the dispatch components' Options::Validate() share, so
// every option's error reads the same way, and so a struct that embeds the
// Options (HybridConfig, hybrid_config.h) can have the errors name the
// options by its own keys without restating a single range.
#ifndef ENGRAM_CORE_DISPATCH_OPTION_CHECK_H_
#define ENGRAM_CORE_DISPATCH_OPTION_CHECK_H_

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace engram::dispatch {

// Spells an option in an error message, given its member name in the
// component's Options.
using OptionNamer = absl::FunctionRef<std::string(absl::string_view member)>;

// Durations' ranges top out here, about 115 days: longer is a mistake
// (minutes typed as seconds), and it keeps every wait and back-off product
// far from absl::Duration's infinities.
inline constexpr double kMaxOptionSeconds = 1e7;

// INVALID_ARGUMENT "<name> = <value> is outside [<lo>, <hi>]" unless
// lo <= value <= hi.
absl::Status CheckIntRange(absl::string_view name, uint64_t value, uint64_t lo,
                           uint64_t hi);

// The same for a number, the range (lo, hi] when `lo_open`; NaN and the
// infinities are always outside.
absl::Status CheckRealRange(absl::string_view name, double value, double lo,
                            bool lo_open, double hi);

// The same for a duration, written in seconds ("0.25s").
absl::Status CheckDurationRange(absl::string_view name, absl::Duration value,
                                absl::Duration lo, bool lo_open,
                                absl::Duration hi);

// INVALID_ARGUMENT "<name> must be <= <bound_name>" unless ok: the check
// between two options.
absl::Status CheckOrder(bool ok, absl::string_view name,
                        absl::string_view bound_name);

// The shortest decimal that reads back (absl::SimpleAtod) as exactly `v`.
std::string FormatShortestDouble(double v);

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_OPTION_CHECK_H_
