// Row filters: which rows of a collection version a search may return, as
// SearchCollection's `filter` states it (docs/api.md, "Labels and
// filters"), evaluated into a bitmap over the version's rows that the
// kernels apply as a kernels::RowMask.
//
// A filter is an id allow-list, an id deny-list and a predicate over row
// labels (tags equal to one of some values, or carrying a key; attribute
// ranges; and, or, not). Every condition given must hold, and only live
// rows (not deleted or replaced) ever pass. Evaluation costs the rows the
// tag matches select plus a few word operations per predicate node over
// the version's rows (N / 64 words): posting lists and attribute columns
// (row_labels.h) are read, never a row's vector.
//
// Thread-safety: the functions are reentrant; a Collection is immutable.
#ifndef ENGRAM_CORE_COLLECTIONS_ROW_FILTER_H_
#define ENGRAM_CORE_COLLECTIONS_ROW_FILTER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/collections/collection_store.h"
#include "core/collections/row_labels.h"
#include "core/collections/row_selection.h"
#include "kernels/types.h"

namespace engram::collections {

// Limits of one filter, so that evaluating it stays cheap next to the
// search it restricts.
inline constexpr size_t kMaxFilterIds = size_t{1} << 20;  // per list
inline constexpr size_t kMaxPredicateNodes = 64;
inline constexpr size_t kMaxPredicateDepth = 8;
inline constexpr size_t kMaxPredicateValues = 4096;

struct Predicate {
  enum class Kind { kTag, kRange, kAll, kAny, kNot };
  Kind kind = Kind::kAll;
  // kTag: the row has tag `key` with one of `values` (none: any value).
  std::string key;
  std::vector<TagValue> values;
  // kRange: attribute `name` within the bounds given; a row without the
  // attribute does not match.
  std::string name;
  std::optional<double> min;
  std::optional<double> max;
  bool min_exclusive = false;
  bool max_exclusive = false;
  // kAll (and; empty: true), kAny (or; empty: false), kNot (one child).
  std::vector<Predicate> children;
};

struct RowFilter {
  std::vector<uint64_t> allow_ids;  // non-empty: only rows with these ids
  std::vector<uint64_t> deny_ids;
  std::optional<Predicate> where;

  bool empty() const {
    return allow_ids.empty() && deny_ids.empty() && !where.has_value();
  }
};

// INVALID_ARGUMENT naming the field as the API does ("filter.where.all.
// predicates[2].range") for: a list over kMaxFilterIds, more than
// kMaxPredicateNodes nodes or deeper than kMaxPredicateDepth, more than
// kMaxPredicateValues values in all, an empty or too long tag key or
// attribute name, a too long text value, a range without bounds, with a
// NaN bound or with min > max, a `not` without exactly one predicate.
absl::Status ValidateRowFilter(const RowFilter& filter);

// The live rows of `collection` that pass `filter` (null: every live row).
// Null when every row passes (no filter and no dead row), so that the
// unmasked kernels run; without a filter, the version's own cached
// selection (Collection::LiveRows), which calls on one version share.
// `filter` must have passed ValidateRowFilter.
std::shared_ptr<const RowSelection> SelectRows(const Collection& collection,
                                               const RowFilter* filter);

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_ROW_FILTER_H_
