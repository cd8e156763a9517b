// Row labels: the tags and numeric attributes a collection row carries, and
// SegmentLabels, one segment's labels held so that a filter finds the rows
// it selects without reading every row's labels (row_filter.h).
//
// A tag is a key with a text or an integer value ("kind" = "episode",
// "user" = 42); a key may carry several values on one row. An attribute is
// a named finite double (a timestamp). Text and integer values never equal
// each other: "42" and 42 are different tags.
//
// SegmentLabels keeps a dictionary of the distinct tags of its segment and,
// per tag, the sorted rows carrying it (a posting list), so that a tag
// match costs the rows it selects; attributes are columns (NaN where a row
// has none), so that a range costs one sequential pass over 8 bytes a row.
// Each row's own tags are kept too (as dictionary indices), so that the
// labels can be written back out row by row (storage, compaction).
//
// Thread-safety: SegmentLabels is immutable after Build and safe to share;
// the functions are reentrant.
#ifndef ENGRAM_CORE_COLLECTIONS_ROW_LABELS_H_
#define ENGRAM_CORE_COLLECTIONS_ROW_LABELS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace engram::collections {

// Per row, bounded so that labels stay a small fraction of a row's bytes.
inline constexpr size_t kMaxTagsPerRow = 16;
inline constexpr size_t kMaxAttributesPerRow = 8;
inline constexpr size_t kMaxLabelNameBytes = 64;
inline constexpr size_t kMaxTagTextBytes = 256;

struct TagValue {
  bool is_integer = false;
  std::string text;     // when !is_integer
  int64_t integer = 0;  // when is_integer

  static TagValue Text(std::string text) {
    TagValue v;
    v.text = std::move(text);
    return v;
  }
  static TagValue Integer(int64_t integer) {
    TagValue v;
    v.is_integer = true;
    v.integer = integer;
    return v;
  }
  friend bool operator==(const TagValue& a, const TagValue& b) {
    return a.is_integer == b.is_integer &&
           (a.is_integer ? a.integer == b.integer : a.text == b.text);
  }
  template <typename H>
  friend H AbslHashValue(H h, const TagValue& v) {
    return v.is_integer ? H::combine(std::move(h), true, v.integer)
                        : H::combine(std::move(h), false, v.text);
  }
};

struct Tag {
  std::string key;
  TagValue value;
  friend bool operator==(const Tag& a, const Tag& b) {
    return a.key == b.key && a.value == b.value;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Tag& t) {
    return H::combine(std::move(h), t.key, t.value);
  }
};

// One row's labels. Attributes by name (sorted, so equal labels compare
// equal however they were given).
struct RowLabels {
  std::vector<Tag> tags;
  std::map<std::string, double> attributes;

  bool empty() const { return tags.empty() && attributes.empty(); }
  friend bool operator==(const RowLabels& a, const RowLabels& b) {
    return a.tags == b.tags && a.attributes == b.attributes;
  }
};

// INVALID_ARGUMENT naming `field` (e.g. "labels[3]") for more than the
// per-row limits, an empty or too long name, a too long text value, or a
// non-finite attribute. Duplicate tags are allowed (they count once).
absl::Status ValidateRowLabels(absl::string_view field,
                               const RowLabels& labels);

// The labels of one segment's rows. Immutable.
class SegmentLabels {
 public:
  // `rows` labels, one per row of the segment (they are validated first:
  // INVALID_ARGUMENT naming "labels[i]", i counted from `first_index`).
  static absl::StatusOr<std::shared_ptr<const SegmentLabels>> Build(
      absl::Span<const RowLabels> rows, uint64_t first_index = 0);

  uint64_t rows() const { return rows_; }
  // The rows carrying `tag`, ascending; empty when none does.
  absl::Span<const uint32_t> RowsWith(const Tag& tag) const;
  // Every distinct tag with `key`, as dictionary indices (for a match on
  // any value of a key).
  absl::Span<const uint32_t> TagsWithKey(absl::string_view key) const;
  // The rows carrying dictionary tag `index`, ascending.
  absl::Span<const uint32_t> RowsOfTag(uint32_t index) const;
  // Attribute `name` of every row (NaN where a row has none), or null when
  // no row of the segment has it.
  const double* Column(absl::string_view name) const;
  // Row `row`'s labels as given (duplicate tags once, in first-seen order).
  RowLabels LabelsOf(uint64_t row) const;
  // Host bytes held (for the memory budget).
  uint64_t bytes() const { return bytes_; }

 private:
  SegmentLabels() = default;

  uint64_t rows_ = 0;
  std::vector<Tag> tags_;  // the dictionary
  absl::flat_hash_map<Tag, uint32_t> tag_index_;
  absl::flat_hash_map<std::string, std::vector<uint32_t>> key_tags_;
  std::vector<std::vector<uint32_t>> postings_;  // by dictionary index
  // Row r's tags: row_tags_[row_tag_offsets_[r] .. row_tag_offsets_[r+1]).
  std::vector<uint32_t> row_tag_offsets_;
  std::vector<uint32_t> row_tags_;
  std::map<std::string, std::vector<double>, std::less<>> columns_;
  uint64_t bytes_ = 0;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_ROW_LABELS_H_
