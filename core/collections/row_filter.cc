#include "core/collections/row_filter.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace engram::collections {
namespace {

absl::Status Invalid(const std::string& field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckLabelName(const std::string& field, const std::string& name) {
  if (name.empty() || name.size() > kMaxLabelNameBytes) {
    return Invalid(field, absl::StrCat("must be 1 to ", kMaxLabelNameBytes,
                                       " bytes, got ", name.size()));
  }
  return absl::OkStatus();
}

struct Budget {
  size_t nodes = 0;
  size_t values = 0;
};

absl::Status ValidatePredicate(const Predicate& p, const std::string& field,
                               size_t depth, Budget* budget) {
  if (++budget->nodes > kMaxPredicateNodes) {
    return Invalid(field, absl::StrCat("the predicate has more than ",
                                       kMaxPredicateNodes, " nodes"));
  }
  if (depth > kMaxPredicateDepth) {
    return Invalid(field, absl::StrCat("the predicate is nested deeper than ",
                                       kMaxPredicateDepth, " levels"));
  }
  switch (p.kind) {
    case Predicate::Kind::kTag: {
      ENGRAM_RETURN_IF_ERROR(CheckLabelName(field + ".tag.key", p.key));
      budget->values += p.values.size();
      if (budget->values > kMaxPredicateValues) {
        return Invalid(field + ".tag.values",
                       absl::StrCat("the predicate has more than ",
                                    kMaxPredicateValues, " values in all"));
      }
      for (size_t i = 0; i < p.values.size(); ++i) {
        if (!p.values[i].is_integer &&
            p.values[i].text.size() > kMaxTagTextBytes) {
          return Invalid(
              absl::StrCat(field, ".tag.values[", i, "]"),
              absl::StrCat("text values are at most ", kMaxTagTextBytes,
                           " bytes, got ", p.values[i].text.size()));
        }
      }
      return absl::OkStatus();
    }
    case Predicate::Kind::kRange: {
      const std::string where = field + ".range";
      ENGRAM_RETURN_IF_ERROR(CheckLabelName(where + ".name", p.name));
      if (!p.min.has_value() && !p.max.has_value()) {
        return Invalid(where, "give min, max or both");
      }
      if ((p.min.has_value() && std::isnan(*p.min)) ||
          (p.max.has_value() && std::isnan(*p.max))) {
        return Invalid(where, "a bound is NaN");
      }
      if (p.min.has_value() && p.max.has_value() && *p.min > *p.max) {
        return Invalid(where,
                       absl::StrCat("min (", *p.min, ") is greater than max (",
                                    *p.max, ")"));
      }
      return absl::OkStatus();
    }
    case Predicate::Kind::kAll:
    case Predicate::Kind::kAny: {
      const std::string list =
          field + (p.kind == Predicate::Kind::kAll ? ".all" : ".any");
      for (size_t i = 0; i < p.children.size(); ++i) {
        ENGRAM_RETURN_IF_ERROR(ValidatePredicate(
            p.children[i], absl::StrCat(list, ".predicates[", i, "]"),
            depth + 1, budget));
      }
      return absl::OkStatus();
    }
    case Predicate::Kind::kNot:
      if (p.children.size() != 1) {
        return Invalid(field + ".not", "must hold one predicate");
      }
      return ValidatePredicate(p.children[0], field + ".not", depth + 1,
                               budget);
  }
  return Invalid(field, "unknown predicate kind");
}

using Words = std::vector<uint64_t>;

void SetBit(Words& w, uint64_t row) {
  w[row >> 6] |= uint64_t{1} << (row & 63);
}

// Clears the bits past `rows` in the last word, which a complement sets.
void ClearTail(Words& w, uint64_t rows) {
  if (rows % 64 != 0 && !w.empty()) {
    w.back() &= (uint64_t{1} << (rows % 64)) - 1;
  }
}

uint64_t CountSet(const Words& w) {
  uint64_t count = 0;
  for (uint64_t word : w)
    count += static_cast<uint64_t>(__builtin_popcountll(word));
  return count;
}

bool InRange(const Predicate& p, double v) {
  if (std::isnan(v)) return false;
  if (p.min.has_value() && (p.min_exclusive ? !(v > *p.min) : !(v >= *p.min))) {
    return false;
  }
  if (p.max.has_value() && (p.max_exclusive ? !(v < *p.max) : !(v <= *p.max))) {
    return false;
  }
  return true;
}

Words Evaluate(const Collection& c, const Predicate& p) {
  const uint64_t rows = c.rows();
  const size_t n = (rows + 63) / 64;
  switch (p.kind) {
    case Predicate::Kind::kTag: {
      Words w(n, 0);
      for (const auto& segment : c.segments()) {
        const SegmentLabels* labels = segment->labels();
        if (labels == nullptr) continue;
        const uint64_t base = segment->first_row();
        auto mark = [&](absl::Span<const uint32_t> posting) {
          for (uint32_t r : posting) SetBit(w, base + r);
        };
        if (p.values.empty()) {
          for (uint32_t tag : labels->TagsWithKey(p.key)) {
            mark(labels->RowsOfTag(tag));
          }
        } else {
          Tag tag;
          tag.key = p.key;
          for (const TagValue& value : p.values) {
            tag.value = value;
            mark(labels->RowsWith(tag));
          }
        }
      }
      return w;
    }
    case Predicate::Kind::kRange: {
      Words w(n, 0);
      for (const auto& segment : c.segments()) {
        const SegmentLabels* labels = segment->labels();
        const double* column =
            labels == nullptr ? nullptr : labels->Column(p.name);
        if (column == nullptr) continue;
        const uint64_t base = segment->first_row();
        for (uint64_t r = 0; r < segment->rows(); ++r) {
          if (InRange(p, column[r])) SetBit(w, base + r);
        }
      }
      return w;
    }
    case Predicate::Kind::kAll: {
      Words w(n, ~uint64_t{0});
      ClearTail(w, rows);
      for (const Predicate& child : p.children) {
        const Words x = Evaluate(c, child);
        for (size_t i = 0; i < n; ++i) w[i] &= x[i];
      }
      return w;
    }
    case Predicate::Kind::kAny: {
      Words w(n, 0);
      for (const Predicate& child : p.children) {
        const Words x = Evaluate(c, child);
        for (size_t i = 0; i < n; ++i) w[i] |= x[i];
      }
      return w;
    }
    case Predicate::Kind::kNot: {
      Words w = Evaluate(c, p.children[0]);
      for (uint64_t& word : w) word = ~word;
      ClearTail(w, rows);
      return w;
    }
  }
  return Words(n, 0);
}

}  // namespace

absl::Status ValidateRowFilter(const RowFilter& filter) {
  if (filter.allow_ids.size() > kMaxFilterIds) {
    return Invalid("filter.allow_ids",
                   absl::StrCat("has ", filter.allow_ids.size(),
                                " ids, at most ", kMaxFilterIds, " allowed"));
  }
  if (filter.deny_ids.size() > kMaxFilterIds) {
    return Invalid("filter.deny_ids",
                   absl::StrCat("has ", filter.deny_ids.size(),
                                " ids, at most ", kMaxFilterIds, " allowed"));
  }
  if (filter.where.has_value()) {
    Budget budget;
    ENGRAM_RETURN_IF_ERROR(
        ValidatePredicate(*filter.where, "filter.where", 1, &budget));
  }
  return absl::OkStatus();
}

std::shared_ptr<const RowSelection> SelectRows(const Collection& collection,
                                               const RowFilter* filter) {
  if (filter == nullptr || filter->empty()) return collection.LiveRows();
  const uint64_t rows = collection.rows();
  const size_t n = (rows + 63) / 64;
  auto selection = std::make_shared<RowSelection>();
  selection->rows = rows;
  if (filter->where.has_value()) {
    selection->words = Evaluate(collection, *filter->where);
  } else {
    selection->words.assign(n, ~uint64_t{0});
    ClearTail(selection->words, rows);
  }
  Words& w = selection->words;
  const absl::Span<const uint64_t> dead = collection.dead_words();
  for (size_t i = 0; i < dead.size() && i < n; ++i) w[i] &= ~dead[i];
  if (!filter->allow_ids.empty()) {
    Words allowed(n, 0);
    for (uint64_t id : filter->allow_ids) {
      for (uint64_t row : collection.RowsOf(id)) SetBit(allowed, row);
    }
    for (size_t i = 0; i < n; ++i) w[i] &= allowed[i];
  }
  for (uint64_t id : filter->deny_ids) {
    for (uint64_t row : collection.RowsOf(id)) {
      w[row >> 6] &= ~(uint64_t{1} << (row & 63));
    }
  }
  selection->passed = CountSet(w);
  return selection;
}

}  // namespace engram::collections
