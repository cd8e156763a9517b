#include "core/collections/row_index.h"

#include <algorithm>
#include <utility>

#include "core/collections/collection_store.h"

namespace engram::collections {
namespace {

// The delta is folded once it holds more than this share of the base, and
// at least this many ids: small collections never pay for a fold.
constexpr size_t kFoldDivisor = 8;
constexpr size_t kMinFold = 4096;

}  // namespace

std::shared_ptr<const RowIndex> RowIndex::Build(const Collection& collection) {
  auto single = std::make_shared<absl::flat_hash_map<uint64_t, uint64_t>>();
  auto multi = std::make_shared<absl::flat_hash_map<uint64_t, Rows>>();
  single->reserve(collection.live_rows());
  for (const auto& segment : collection.segments()) {
    for (uint64_t i = 0; i < segment->rows(); ++i) {
      const uint64_t row = segment->first_row() + i;
      if (!collection.IsLive(row)) continue;
      const uint64_t id = segment->IdOf(i);
      auto [it, added] = single->try_emplace(id, row);
      if (added) continue;
      Rows& rows = (*multi)[id];
      if (rows.empty()) rows.push_back(it->second);
      rows.push_back(row);
    }
  }
  for (const auto& [id, rows] : *multi) single->erase(id);
  std::shared_ptr<RowIndex> index(new RowIndex());
  index->single_ = std::move(single);
  index->multi_ = std::move(multi);
  return index;
}

RowIndex::Rows RowIndex::Find(uint64_t id) const {
  if (delta_ != nullptr) {
    if (auto it = delta_->find(id); it != delta_->end()) return it->second;
  }
  if (auto it = single_->find(id); it != single_->end()) {
    return Rows{it->second};
  }
  if (auto it = multi_->find(id); it != multi_->end()) return it->second;
  return {};
}

std::shared_ptr<const RowIndex> RowIndex::With(const Changes& changes) const {
  std::shared_ptr<RowIndex> next(new RowIndex());
  auto delta = delta_ == nullptr ? std::make_shared<Changes>()
                                 : std::make_shared<Changes>(*delta_);
  for (const auto& [id, rows] : changes) (*delta)[id] = rows;
  const size_t base = single_->size() + multi_->size();
  if (delta->size() <= std::max(kMinFold, base / kFoldDivisor)) {
    next->single_ = single_;
    next->multi_ = multi_;
    next->delta_ = std::move(delta);
    return next;
  }
  auto single =
      std::make_shared<absl::flat_hash_map<uint64_t, uint64_t>>(*single_);
  auto multi = std::make_shared<absl::flat_hash_map<uint64_t, Rows>>(*multi_);
  for (const auto& [id, rows] : *delta) {
    single->erase(id);
    multi->erase(id);
    if (rows.size() == 1) {
      (*single)[id] = rows.front();
    } else if (rows.size() > 1) {
      (*multi)[id] = rows;
    }
  }
  next->single_ = std::move(single);
  next->multi_ = std::move(multi);
  return next;
}

}  // namespace engram::collections
