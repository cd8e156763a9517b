#include "core/collections/names.h"

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace engram::collections {

absl::Status ValidateName(absl::string_view field, absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not be empty"));
  }
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", name.size(),
                                                   " characters, at most ",
                                                   kMaxNameLength, " allowed"));
  }
  if (name.front() == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", name, "\" must not start with '.'"));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", absl::CEscape(name), "\" has a character other than ",
          "[A-Za-z0-9._-] at position ", i));
    }
  }
  return absl::OkStatus();
}

uint64_t NewResidentId() {
  // Relaxed: only uniqueness matters, and fetch_add guarantees it.
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace engram::collections
