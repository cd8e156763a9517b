#include "core/resident_search.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/row_mask.h"

namespace engram::core {

absl::StatusOr<std::shared_ptr<const collections::Collection>>
ResolveCollection(ResidentData& resident, absl::string_view name) {
  ENGRAM_RETURN_IF_ERROR(ValidateRequiredName("collection", name));
  auto collection = resident.collections().Get(std::string(name));
  if (!collection.ok() &&
      collection.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("collection: no collection named '", name, "'"));
  }
  return collection;
}

uint64_t SearchOutputs(uint64_t queries, uint32_t top_k,
                       uint64_t collection_rows) {
  return top_k == 0 ? queries * collection_rows
                    : queries * std::min<uint64_t>(top_k, collection_rows);
}

absl::Status ValidateSearch(const collections::Collection& collection,
                            uint64_t searched, const SearchShape& shape,
                            const RequestLimits& limits) {
  ENGRAM_RETURN_IF_ERROR(ValidateMatrixShape(
      "queries", shape.query_rows, shape.query_cols, shape.query_values));
  if (shape.query_cols != collection.dimension()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries.cols is ", shape.query_cols, " but collection '",
        collection.name(), "' has dimension ", collection.dimension()));
  }
  if (shape.top_k == 0 && shape.has_min_score) {
    return absl::InvalidArgumentError(
        "min_score is only accepted with top_k > 0");
  }
  const uint64_t outputs =
      SearchOutputs(shape.query_rows, shape.top_k, searched);
  if (outputs > limits.max_output_elements) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "top_k: the response would carry ", outputs,
        " scores (Q = ", shape.query_rows, ", rows searched = ", searched,
        "), more than the limit of ", limits.max_output_elements,
        shape.top_k == 0 ? "; top_k = 0 is for small collections, "
                           "ask for top_k > 0"
                         : ""));
  }
  return absl::OkStatus();
}

absl::Status ScoreEveryRow(
    Engine& engine, const collections::Collection& collection,
    const collections::RowSelection* rows, const kernels::MatrixView& queries,
    dispatch::Placement placement, const base::Interrupt* interrupt,
    absl::Span<float> scores, dispatch::ExecutionReport* report) {
  const uint64_t q = queries.rows;
  const kernels::RowMask mask =
      rows == nullptr ? kernels::RowMask{} : rows->mask();
  const uint64_t n = rows == nullptr ? collection.rows() : rows->passed;
  if (scores.size() != q * n) {
    return absl::InternalError(absl::StrCat("ScoreEveryRow: ", scores.size(),
                                            " scores given for ", q * n));
  }
  // One segment is written in place; several go through a scratch buffer
  // because a segment's scores are strided within each query's row.
  const bool direct = collection.segments().size() == 1;
  double seconds = 0;
  std::vector<float> scratch;
  // The selected rows of the segments before this one: its column.
  uint64_t column = 0;
  for (const auto& segment : collection.segments()) {
    const kernels::RowMask slice =
        mask.Rows(segment->first_row(), segment->first_row() + segment->rows());
    const uint64_t m = kernels::CountAdmitted(slice, 0, segment->rows());
    if (m == 0) continue;
    dispatch::CosineJob job;
    job.queries = queries;
    job.targets = segment->vectors();
    job.mask = slice;
    job.resident_targets = segment->id();
    job.placement = placement;
    job.interrupt = interrupt;
    dispatch::CosineOutput out;
    if (direct) {
      out.scores = scores;
    } else {
      scratch.resize(q * m);
      out.scores = absl::MakeSpan(scratch);
    }
    ENGRAM_RETURN_IF_ERROR(engine.CosineResident(job, &out));
    if (!direct) {
      for (uint64_t i = 0; i < q; ++i) {
        std::copy(scratch.begin() + i * m, scratch.begin() + (i + 1) * m,
                  scores.begin() + i * n + column);
      }
    }
    column += m;
    seconds += out.report.compute_seconds;
    *report = out.report;
  }
  report->compute_seconds = seconds;
  return absl::OkStatus();
}

}  // namespace engram::core
