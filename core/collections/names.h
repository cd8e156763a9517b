// Names of resident collections and graphs, shared by both stores, the
// snapshot files and the start-up declarations so a name that one accepts
// the others accept too.
//
// Thread-safety: all functions are pure.
#ifndef ENGRAM_CORE_COLLECTIONS_NAMES_H_
#define ENGRAM_CORE_COLLECTIONS_NAMES_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace engram::collections {

// Names are restricted to what is safe as a metric label, a log field and a
// file name component, so no caller has to escape them.
inline constexpr size_t kMaxNameLength = 128;

// OK when `name` is 1..kMaxNameLength characters from [A-Za-z0-9._-] and
// does not start with '.'; INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateName(absl::string_view field, absl::string_view name);

// A process-wide unique, never reused, non-zero identity for a collection, a
// graph or a segment of rows. A device cache keys its copies by it: a name
// can be deleted and created again, an identity cannot.
uint64_t NewResidentId();

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_NAMES_H_
