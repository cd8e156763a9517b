// Translation between the API messages and the engine's job types. Views
// point into the request message, which must outlive the job: no vector is
// copied on the way in.
#ifndef ENGRAM_SERVER_PROTO_CONVERSION_H_
#define ENGRAM_SERVER_PROTO_CONVERSION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/collections/collection_store.h"
#include "core/collections/graph_store.h"
#include "core/collections/row_filter.h"
#include "core/collections/row_labels.h"
#include "core/collections/search_batcher.h"
#include "core/dispatch/jobs.h"
#include "core/engine_stats.h"
#include "core/validation.h"
#include "engram/similarity/v1/similarity.pb.h"

namespace engram::server {

namespace pb = ::engram::similarity::v1;

// Checks the matrix shapes (ValidateMatrixShape) and returns views over the
// request. The engine validates the rest.
absl::StatusOr<dispatch::CosineJob> CosineJobFromProto(
    const pb::BatchCosineRequest& request);

// Returns a job viewing the request's graph; seeds are converted into
// *seed_storage, which must outlive the job. Optional parameters absent from
// the request take the API defaults.
absl::StatusOr<dispatch::SpreadJob> SpreadJobFromProto(
    const pb::SpreadRequest& request,
    std::vector<kernels::SpreadSeed>* seed_storage);

// What admitting the call costs (server/admission.h), in bytes: its payload
// plus the response it can produce, estimated from the message before any
// validation, and capped by `limits` so that a malformed header cannot make
// one call look larger than the largest valid one.
uint64_t AdmissionCost(const pb::BatchCosineRequest& request,
                       const core::RequestLimits& limits);
uint64_t AdmissionCost(const pb::SpreadRequest& request,
                       const core::RequestLimits& limits);
// A search costs its queries and the lists (an id, a row and a score per
// entry) or the scores it can produce against `collection_rows` rows.
uint64_t AdmissionCost(const pb::SearchCollectionRequest& request,
                       uint64_t collection_rows,
                       const core::RequestLimits& limits);

collections::Metadata MetadataFromProto(
    const google::protobuf::Map<std::string, std::string>& map);
// `residency` is Engine::ResidencyOf(info.uid): the store knows only its
// host copy.
void CollectionInfoToProto(const collections::CollectionInfo& info,
                           const std::string& residency,
                           pb::CollectionInfo* out);
// A row's labels; INVALID_ARGUMENT naming `field` for a tag without a
// value (the limits are the store's: ValidateRowLabels).
absl::StatusOr<collections::RowLabels> RowLabelsFromProto(
    const pb::RowLabels& in, const std::string& field);
// The labels of a chunk or call, named labels[first_row + i] in errors.
absl::StatusOr<std::vector<collections::RowLabels>> RowLabelsFromProto(
    const google::protobuf::RepeatedPtrField<pb::RowLabels>& in,
    uint64_t first_row);
// A search's filter, validated (collections::ValidateRowFilter, and a
// predicate with no condition set); nullopt when the request has none or
// an empty one.
absl::StatusOr<std::optional<collections::RowFilter>> RowFilterFromProto(
    const pb::SearchCollectionRequest& request);

void GraphInfoToProto(const collections::GraphInfo& info, pb::GraphInfo* out);

// The lists of an UpdateGraph request, copied (the store checks them).
collections::GraphEdit GraphEditFromProto(
    const pb::UpdateGraphRequest& request);
// What an update committed: the graph version, the counts, the first
// not-found pairs and whether it was a replay.
void GraphUpdateToProto(const collections::GraphUpdateResult& result,
                        pb::UpdateGraphResponse* out);
// A batched search's lists and pass statistics; the caller adds what the
// batcher does not know (the collection version).
void SearchResultToProto(const collections::SearchResult& result,
                         pb::SearchCollectionResponse* out);

void ReportToProto(const dispatch::ExecutionReport& report,
                   pb::ExecutionReport* out);

// Fills the engine's part of GetStats: backends, operations, fallbacks,
// speedups, breaker, GPU memory and the last GPU error.
void EngineStatsToProto(const core::EngineStats& stats,
                        pb::GetStatsResponse* out);

dispatch::Placement PlacementFromProto(pb::Placement placement);
pb::Backend BackendToProto(dispatch::BackendKind backend);

}  // namespace engram::server

#endif  // ENGRAM_SERVER_PROTO_CONVERSION_H_
