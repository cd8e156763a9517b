// RowIndex: which live rows of a collection version hold each stored id, so
// that UpsertRows, DeleteRows and id filters find rows without a scan.
//
// A version's index is a shared base map plus a small delta of the ids
// changed since the base was built: a version made by a mutation copies
// its predecessor's delta and adds its own changes, which costs the delta,
// not the collection. Once the delta passes a share of the base it is
// folded into a new base (a copy of the whole map), so the copying stays
// amortised at a few entries per change. Uploads may repeat an id, so an
// id may map to several rows; such ids are kept apart from the common
// single-row ones.
//
// Thread-safety: immutable after construction and safe to share.
#ifndef ENGRAM_CORE_COLLECTIONS_ROW_INDEX_H_
#define ENGRAM_CORE_COLLECTIONS_ROW_INDEX_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace engram::collections {

class Collection;

class RowIndex {
 public:
  using Rows = std::vector<uint64_t>;
  using Changes = absl::flat_hash_map<uint64_t, Rows>;

  // The index of `collection`'s live rows: O(rows).
  static std::shared_ptr<const RowIndex> Build(const Collection& collection);

  // The live rows holding `id`, ascending.
  Rows Find(uint64_t id) const;

  // This index with `changes` applied: each id maps to its rows now (empty:
  // none).
  std::shared_ptr<const RowIndex> With(const Changes& changes) const;

  // Entries in the delta, for tests of the folding.
  size_t delta_size() const { return delta_ == nullptr ? 0 : delta_->size(); }

 private:
  RowIndex() = default;

  // Ids with one row, and ids with several.
  std::shared_ptr<const absl::flat_hash_map<uint64_t, uint64_t>> single_;
  std::shared_ptr<const absl::flat_hash_map<uint64_t, Rows>> multi_;
  std::shared_ptr<const Changes> delta_;
};

}  // namespace engram::collections

#endif  // ENGRAM_CORE_COLLECTIONS_ROW_INDEX_H_
