// Fuzzes SearchCollection below gRPC: the input is a
// SearchCollectionRequest, run the way server/search_reactor.cc runs it
// (the name checked, the collection resolved at min_version, the placement
// and ValidateSearch checked, then the collection's SearchBatcher for
// top_k > 0 or core::ScoreEveryRow for top_k == 0) against collections made
// once at set-up: "rows" (a few rows with uploaded ids, in two segments),
// "one" (a single row, no ids) and "empty" (none). A request must be answered
// with well-formed results (scores in [-1, 1], lists best first within top_k
// and min_score, ids those of the rows, only rows its filter selects) or
// refused as the client's fault
// (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, NOT_FOUND; UNAVAILABLE for a
// version this process never has or for GPU-only without a GPU).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "core/collections/search_batcher.h"
#include "core/resident_search.h"
#include "engram/similarity/v1/similarity.pb.h"
#include "server/proto_conversion.h"
#include "server/upload_streams.h"
#include "tests/fuzz/fuzz_engine.h"

namespace {

namespace collections = ::engram::collections;
namespace v1 = ::engram::similarity::v1;
using CollectionPtr = std::shared_ptr<const collections::Collection>;

void Require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "search_collection invariant broken: %s\n", invariant);
    std::abort();
  }
}

// Uploads `chunks` (each rows x 4 values, with ids when `with_ids`) as one
// stream per chunk, the first creating `name`, as a client would.
void Upload(engram::core::Engine& engine, const char* name,
            const std::vector<std::vector<float>>& chunks, bool with_ids) {
  uint64_t next_id = 1000;
  for (size_t i = 0; i < chunks.size(); ++i) {
    engram::server::CollectionUploadStream stream(&engine);
    v1::UploadCollectionRequest header;
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_create(i == 0);
    header.mutable_header()->set_dimension(4);
    header.mutable_header()->set_total_rows(chunks[i].size() / 4);
    header.mutable_header()->set_with_ids(with_ids);
    v1::UploadCollectionRequest chunk;
    for (float v : chunks[i]) chunk.mutable_chunk()->add_vectors(v);
    for (size_t r = 0; with_ids && r < chunks[i].size() / 4; ++r) {
      chunk.mutable_chunk()->add_ids(next_id);
      next_id += 7;
    }
    v1::UploadCollectionResponse response;
    Require(stream.Process(header).ok() && stream.Process(chunk).ok() &&
                stream.Commit(&response).ok(),
            "set-up upload");
  }
}

engram::core::Engine& SetUp() {
  static engram::core::Engine* engine = [] {
    engram::core::Engine& e = engram::fuzz::FuzzEngine();
    // Opposite, parallel, orthogonal, zero and tiny rows; two segments.
    Upload(e, "rows",
           {{1, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
            {1e-20f, 1e-20f, 0, 0, 3, 4, 0, 0, 1, 0, 0, 0}},
           true);
    Upload(e, "one", {{0.5f, -0.5f, 0.5f, -0.5f}}, false);
    collections::CollectionSpec empty;
    empty.name = "empty";
    empty.dimension = 4;
    Require(e.resident().collections().CreateCollection(empty).ok(),
            "set-up create");
    return &e;
  }();
  return *engine;
}

bool Refused(const absl::Status& status, const v1::SearchCollectionRequest& r,
             const CollectionPtr& collection) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kNotFound:
      return true;
    case absl::StatusCode::kUnavailable:
      return r.placement() == v1::PLACEMENT_GPU_ONLY ||
             (collection == nullptr && r.min_version() > 0);
    default:
      return false;
  }
}

bool InRange(float score) { return score >= -1.0f && score <= 1.0f; }

// The checks of SearchReactor::Resolve, on the version WhenAtLeast gave.
using SelectionPtr = std::shared_ptr<const collections::RowSelection>;

absl::Status Resolve(engram::core::Engine& engine,
                     const v1::SearchCollectionRequest& request,
                     absl::StatusOr<CollectionPtr> current,
                     CollectionPtr* collection, SelectionPtr* rows) {
  if (absl::IsNotFound(current.status())) {
    current = engram::core::ResolveCollection(engine.resident(),
                                              request.collection());
  }
  if (!current.ok()) return current.status();
  *collection = *std::move(current);
  if (request.placement() != v1::PLACEMENT_AUTO &&
      request.placement() != v1::PLACEMENT_CPU_ONLY &&
      request.placement() != v1::PLACEMENT_GPU_ONLY) {
    return absl::InvalidArgumentError("placement has an unknown value");
  }
  engram::core::SearchShape shape;
  shape.query_rows = request.queries().rows();
  shape.query_cols = request.queries().cols();
  shape.query_values = static_cast<uint64_t>(request.queries().values_size());
  shape.top_k = request.top_k();
  shape.has_min_score = request.has_min_score();
  absl::StatusOr<std::optional<collections::RowFilter>> filter =
      engram::server::RowFilterFromProto(request);
  if (!filter.ok()) return filter.status();
  *rows = collections::SelectRows(**collection,
                                  filter->has_value() ? &**filter : nullptr);
  const uint64_t searched =
      *rows == nullptr ? (*collection)->rows() : (*rows)->passed;
  Require(searched <= (*collection)->rows(), "a selection is of the rows");
  return engram::core::ValidateSearch(**collection, searched, shape,
                                      engine.limits());
}

// top_k == 0: every score, as SearchReactor::AllScores.
void AllScores(engram::core::Engine& engine,
               const v1::SearchCollectionRequest& request,
               const collections::Collection& collection,
               const collections::RowSelection* rows,
               const engram::kernels::MatrixView& queries) {
  std::vector<float> scores(
      queries.rows * (rows == nullptr ? collection.rows() : rows->passed));
  engram::dispatch::ExecutionReport report;
  const absl::Status status = engram::core::ScoreEveryRow(
      engine, collection, rows, queries,
      engram::server::PlacementFromProto(request.placement()), nullptr,
      absl::MakeSpan(scores), &report);
  if (!status.ok()) {
    Require(status.code() == absl::StatusCode::kInvalidArgument ||
                status.code() == absl::StatusCode::kResourceExhausted ||
                (status.code() == absl::StatusCode::kUnavailable &&
                 request.placement() == v1::PLACEMENT_GPU_ONLY),
            "ScoreEveryRow refuses only the client's mistakes");
    return;
  }
  for (float s : scores) Require(InRange(s), "every score in [-1, 1]");
}

// top_k > 0: through the collection's batcher, as the reactor does.
void TopK(engram::core::Engine& engine,
          const v1::SearchCollectionRequest& request,
          const CollectionPtr& collection, const SelectionPtr& rows,
          const engram::kernels::MatrixView& queries) {
  auto batcher = engine.resident().BatcherFor(collection->name());
  Require(batcher.ok(), "a visible collection has a batcher");
  collections::SearchRequest search;
  search.collection = collection;
  search.queries = queries;
  search.top_k = request.top_k();
  if (request.has_min_score()) search.min_score = request.min_score();
  search.placement = engram::server::PlacementFromProto(request.placement());
  search.rows = rows;
  absl::Notification done;
  std::optional<absl::StatusOr<collections::SearchResult>> result;
  absl::StatusOr<collections::SearchTicket> ticket = (*batcher)->Search(
      std::move(search), [&](absl::StatusOr<collections::SearchResult> answer) {
        result = std::move(answer);
        done.Notify();
      });
  if (!ticket.ok()) {
    Require(ticket.status().code() == absl::StatusCode::kInvalidArgument ||
                ticket.status().code() == absl::StatusCode::kResourceExhausted,
            "the batcher refuses only the client's mistakes");
    return;
  }
  done.WaitForNotification();
  if (!result->ok()) {
    Require(
        result->status().code() == absl::StatusCode::kInvalidArgument ||
            result->status().code() == absl::StatusCode::kResourceExhausted ||
            (result->status().code() == absl::StatusCode::kUnavailable &&
             request.placement() == v1::PLACEMENT_GPU_ONLY),
        "a pass fails only for the client's mistakes");
    return;
  }
  v1::SearchCollectionResponse response;
  engram::server::SearchResultToProto(**result, &response);
  Require(response.results_size() == static_cast<int>(queries.rows),
          "one list per query");
  const uint64_t most = std::min<uint64_t>(request.top_k(), collection->rows());
  for (const auto& list : (*result)->top) {
    Require(list.size() <= most, "at most top_k hits, and no more than rows");
    for (size_t i = 0; i < list.size(); ++i) {
      const collections::SearchHit& hit = list[i];
      Require(InRange(hit.score), "every score in [-1, 1]");
      Require(hit.row < collection->rows(), "a hit is a row");
      Require(hit.id == collection->IdOf(hit.row), "a hit has the row's id");
      Require(rows == nullptr || rows->mask().test(hit.row),
              "a hit is a row the filter selects");
      if (request.has_min_score()) {
        Require(hit.score >= request.min_score(), "no hit below min_score");
      }
      if (i > 0) {
        Require(engram::kernels::BetterThan(
                    {list[i - 1].row, list[i - 1].score}, {hit.row, hit.score}),
                "hits best first");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::SearchCollectionRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  engram::core::Engine& engine = SetUp();
  if (!engram::core::ValidateRequiredName("collection", request.collection())
           .ok()) {
    return 0;
  }
  absl::Notification resolved;
  absl::StatusOr<CollectionPtr> current;
  engine.resident().WhenAtLeast(request.collection(), request.min_version(),
                                engine.resident().options().min_version_wait,
                                [&](absl::StatusOr<CollectionPtr> answer) {
                                  current = std::move(answer);
                                  resolved.Notify();
                                });
  resolved.WaitForNotification();
  CollectionPtr collection;
  SelectionPtr rows;
  const absl::Status status =
      Resolve(engine, request, std::move(current), &collection, &rows);
  if (!status.ok()) {
    Require(Refused(status, request, collection), "a client's error");
    return 0;
  }
  // Admission's estimate must not trip on any request that got this far.
  (void)engram::server::AdmissionCost(request, collection->rows(),
                                      engine.limits());
  engram::kernels::MatrixView queries;
  queries.data = request.queries().values().data();
  queries.rows = request.queries().rows();
  queries.cols = request.queries().cols();
  if (request.top_k() == 0) {
    AllScores(engine, request, *collection, rows.get(), queries);
  } else {
    TopK(engine, request, collection, rows, queries);
  }
  return 0;
}
