// The engine's side of a SearchCollection call that is not the batcher:
// finding the collection, the checks a search must pass before it is
// admitted, and the top_k == 0 path (every score, segment by segment),
// which bypasses the batcher. The gRPC layer only translates the message
// into these arguments and the results back.
//
// Messages name the API field (as in similarity.proto), like validation.h.
//
// Thread-safety: the functions may be called concurrently; the engine and
// its stores are thread-safe, and a collection version is immutable.
#ifndef ENGRAM_CORE_RESIDENT_SEARCH_H_
#define ENGRAM_CORE_RESIDENT_SEARCH_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "core/collections/collection_store.h"
#include "core/collections/row_selection.h"
#include "core/dispatch/jobs.h"
#include "core/engine.h"
#include "core/resident_data.h"
#include "core/validation.h"

namespace engram::core {

// The current version of collection `name`: INVALID_ARGUMENT when the name
// is empty, NOT_FOUND naming it when there is none. The caller holds the
// version for as long as its search uses it.
absl::StatusOr<std::shared_ptr<const collections::Collection>>
ResolveCollection(ResidentData& resident, absl::string_view name);

// Scores a search of `queries` rows can produce against `collection_rows`
// rows: Q * N for top_k == 0, else Q * min(top_k, N).
uint64_t SearchOutputs(uint64_t queries, uint32_t top_k,
                       uint64_t collection_rows);

// What a search brings and asks for, as the message carries it (before a
// view is made of the queries).
struct SearchShape {
  uint64_t query_rows = 0;
  uint64_t query_cols = 0;
  uint64_t query_values = 0;
  uint32_t top_k = 0;
  bool has_min_score = false;
};

// Checks a search of `collection` over `searched` of its rows (those its
// filter and tombstones leave): the queries' shape and dimension,
// min_score only with top_k > 0 (INVALID_ARGUMENT), and the response's size
// against limits.max_output_elements (RESOURCE_EXHAUSTED).
absl::Status ValidateSearch(const collections::Collection& collection,
                            uint64_t searched, const SearchShape& shape,
                            const RequestLimits& limits);

// top_k == 0: writes every score of `queries` (validated by ValidateSearch)
// against the rows of `collection` that `rows` selects (null: every row)
// into `scores` (Q * the rows selected, row-major by query, in row order),
// one Engine::CosineResident per segment with a row selected, stopping
// between chunks when `interrupt` (may be null) says so. `report` gets the
// last segment's report with the compute time of all of them. Errors are
// the engine's; on error `scores` is partly written.
absl::Status ScoreEveryRow(
    Engine& engine, const collections::Collection& collection,
    const collections::RowSelection* rows, const kernels::MatrixView& queries,
    dispatch::Placement placement, const base::Interrupt* interrupt,
    absl::Span<float> scores, dispatch::ExecutionReport* report);

}  // namespace engram::core

#endif  // ENGRAM_CORE_RESIDENT_SEARCH_H_
