#include "core/collections/row_labels.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace engram::collections {
namespace {

absl::Status CheckName(absl::string_view field, absl::string_view what,
                       absl::string_view name) {
  if (name.empty() || name.size() > kMaxLabelNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", what, " names must be 1 to ",
                     kMaxLabelNameBytes, " bytes, got ", name.size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRowLabels(absl::string_view field,
                               const RowLabels& labels) {
  if (labels.tags.size() > kMaxTagsPerRow) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".tags has ", labels.tags.size(), " tags, at most ",
                     kMaxTagsPerRow, " allowed"));
  }
  if (labels.attributes.size() > kMaxAttributesPerRow) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".attributes has ", labels.attributes.size(),
        " attributes, at most ", kMaxAttributesPerRow, " allowed"));
  }
  for (size_t i = 0; i < labels.tags.size(); ++i) {
    const Tag& tag = labels.tags[i];
    const std::string where = absl::StrCat(field, ".tags[", i, "]");
    if (absl::Status s = CheckName(where, "tag", tag.key); !s.ok()) return s;
    if (!tag.value.is_integer && tag.value.text.size() > kMaxTagTextBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": text values are at most ", kMaxTagTextBytes,
                       " bytes, got ", tag.value.text.size()));
    }
  }
  for (const auto& [name, value] : labels.attributes) {
    const std::string where =
        absl::StrCat(field, ".attributes[\"", name, "\"]");
    if (absl::Status s = CheckName(where, "attribute", name); !s.ok()) {
      return s;
    }
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is ", value, ", must be finite"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const SegmentLabels>> SegmentLabels::Build(
    absl::Span<const RowLabels> rows, uint64_t first_index) {
  std::shared_ptr<SegmentLabels> out(new SegmentLabels());
  out->rows_ = rows.size();
  out->row_tag_offsets_.reserve(rows.size() + 1);
  out->row_tag_offsets_.push_back(0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const RowLabels& labels = rows[r];
    if (absl::Status s = ValidateRowLabels(
            absl::StrCat("labels[", first_index + r, "]"), labels);
        !s.ok()) {
      return s;
    }
    for (const Tag& tag : labels.tags) {
      auto [it, added] = out->tag_index_.try_emplace(
          tag, static_cast<uint32_t>(out->tags_.size()));
      if (added) {
        out->tags_.push_back(tag);
        out->postings_.emplace_back();
        out->key_tags_[tag.key].push_back(it->second);
      }
      std::vector<uint32_t>& posting = out->postings_[it->second];
      // A tag repeated on one row counts once.
      if (!posting.empty() && posting.back() == r) continue;
      posting.push_back(static_cast<uint32_t>(r));
      out->row_tags_.push_back(it->second);
    }
    out->row_tag_offsets_.push_back(
        static_cast<uint32_t>(out->row_tags_.size()));
    for (const auto& [name, value] : labels.attributes) {
      auto it = out->columns_.find(name);
      if (it == out->columns_.end()) {
        it = out->columns_
                 .emplace(name, std::vector<double>(
                                    rows.size(),
                                    std::numeric_limits<double>::quiet_NaN()))
                 .first;
      }
      it->second[r] = value;
    }
  }
  uint64_t bytes = sizeof(SegmentLabels) +
                   out->row_tag_offsets_.size() * sizeof(uint32_t) +
                   out->row_tags_.size() * 2 * sizeof(uint32_t);
  for (const Tag& tag : out->tags_) {
    bytes += sizeof(Tag) + tag.key.size() + tag.value.text.size() + 64;
  }
  for (const auto& [name, column] : out->columns_) {
    bytes += name.size() + column.size() * sizeof(double);
  }
  out->bytes_ = bytes;
  return std::shared_ptr<const SegmentLabels>(std::move(out));
}

absl::Span<const uint32_t> SegmentLabels::RowsWith(const Tag& tag) const {
  auto it = tag_index_.find(tag);
  if (it == tag_index_.end()) return {};
  return postings_[it->second];
}

absl::Span<const uint32_t> SegmentLabels::TagsWithKey(
    absl::string_view key) const {
  auto it = key_tags_.find(key);
  if (it == key_tags_.end()) return {};
  return it->second;
}

absl::Span<const uint32_t> SegmentLabels::RowsOfTag(uint32_t index) const {
  return postings_[index];
}

const double* SegmentLabels::Column(absl::string_view name) const {
  auto it = columns_.find(name);
  return it == columns_.end() ? nullptr : it->second.data();
}

RowLabels SegmentLabels::LabelsOf(uint64_t row) const {
  RowLabels labels;
  for (uint32_t i = row_tag_offsets_[row]; i < row_tag_offsets_[row + 1]; ++i) {
    labels.tags.push_back(tags_[row_tags_[i]]);
  }
  for (const auto& [name, column] : columns_) {
    if (!std::isnan(column[row])) labels.attributes[name] = column[row];
  }
  return labels;
}

}  // namespace engram::collections
