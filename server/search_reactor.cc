// SearchCollection (collection_handlers.h): the reactor resolves the
// collection and checks the request (core/resident_search.h), is admitted
// with the search's byte cost, and hands the queries to the collection's
// SearchBatcher, or for top_k == 0 runs core::ScoreEveryRow on the
// workers. A cancellation of the call cancels it while it still waits for
// its pass.
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "core/collections/row_filter.h"
#include "core/collections/search_batcher.h"
#include "core/resident_search.h"
#include "server/call_scope.h"
#include "server/collection_handlers.h"
#include "server/proto_conversion.h"

namespace engram::server {

namespace v1 = ::engram::similarity::v1;

class CollectionHandlers::SearchReactor final {
 public:
  SearchReactor(CollectionHandlers* owner, UnaryCall* call,
                const v1::SearchCollectionRequest* request,
                v1::SearchCollectionResponse* response)
      : owner_(owner),
        call_(call),
        request_(request),
        response_(response),
        scope_(call->context(), Method::kSearchCollection, owner->admission_,
               owner->metrics_) {}

  // Runs on the gRPC thread that received the call. The call's on_done
  // (OnDone) runs only after Start() returned and the call was answered,
  // so `this` lives until then whatever the callbacks do meanwhile.
  void Start() {
    call_->SetOnCancel([this] { OnCancel(); });
    call_->SetOnDone([this] { OnDone(); });
    if (absl::Status name =
            core::ValidateRequiredName("collection", request_->collection());
        !name.ok()) {
      Answer(name);
      return;
    }
    // Without a min_version, or once this replica has it, on this thread;
    // otherwise on the waiting thread, which owns the call until then.
    core::ResidentData& resident = owner_->engine_->resident();
    {
      absl::MutexLock lock(&mu_);
      continuing_ = true;
    }
    resident.WhenAtLeast(
        request_->collection(), request_->min_version(),
        resident.options().min_version_wait,
        [this](absl::StatusOr<std::shared_ptr<const collections::Collection>>
                   current) {
          Continue(std::move(current));
          EndContinue();
        });
  }

  // Continue() on the waiting thread runs while the call may already be
  // answered (the batcher's callback) and done: whichever of it and OnDone
  // comes last deletes the reactor.
  void EndContinue() {
    {
      absl::MutexLock lock(&mu_);
      continuing_ = false;
      if (!done_) return;
    }
    delete this;
  }

  void Continue(
      absl::StatusOr<std::shared_ptr<const collections::Collection>> current) {
    if (absl::IsUnavailable(current.status())) {
      scope_.AddRetryPushback(kMinVersionRetryAfter);
    }
    const absl::Status resolved = Resolve(std::move(current));
    if (!resolved.ok()) {
      Answer(resolved);
      return;
    }
    if (absl::Status refused = scope_.Admit(AdmissionCost(
            *request_, collection_->rows(), owner_->engine_->limits()));
        !refused.ok()) {
      Answer(refused);
      return;
    }
    if (request_->top_k() == 0) {
      scope_.Queued();
      owner_->engine_->Submit([this] {
        scope_.Dequeued();
        const core::ScopedLogContext log_context = scope_.LogContext();
        absl::Status status = scope_.BeforeWork();
        if (status.ok()) status = scope_.AfterWork(AllScores());
        Answer(status);
      });
      return;
    }
    auto batcher = owner_->engine_->resident().BatcherFor(collection_->name());
    if (!batcher.ok()) {
      Answer(batcher.status());
      return;
    }
    batcher_ = *std::move(batcher);
    collections::SearchRequest search;
    search.collection = collection_;
    search.queries = queries_;
    search.top_k = request_->top_k();
    if (request_->has_min_score()) search.min_score = request_->min_score();
    search.placement = PlacementFromProto(request_->placement());
    search.rows = rows_;
    absl::StatusOr<collections::SearchTicket> ticket = batcher_->Search(
        std::move(search),
        [this](absl::StatusOr<collections::SearchResult> result) {
          Answer(scope_.AfterWork(Fill(std::move(result))));
        });
    if (!ticket.ok()) {
      // A full search queue is overload too: the same retry hint.
      if (ticket.status().code() == absl::StatusCode::kResourceExhausted) {
        scope_.MarkOverloaded();
      }
      Answer(ticket.status());
      return;
    }
    absl::MutexLock lock(&mu_);
    search_ticket_ = *ticket;
  }

  void OnCancel() {
    std::optional<collections::SearchTicket> ticket;
    {
      absl::MutexLock lock(&mu_);
      if (!answered_) ticket = search_ticket_;
    }
    // A call still waiting is removed from its queue and answered CANCELLED
    // here; one already in a pass finishes with it.
    if (ticket.has_value()) batcher_->Cancel(*ticket);
  }

  void OnDone() {
    scope_.Release();
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      if (continuing_) return;  // EndContinue deletes it
    }
    delete this;
  }

 private:
  // The collection's current version and the request checked against it;
  // the queries become a view over the request.
  absl::Status Resolve(
      absl::StatusOr<std::shared_ptr<const collections::Collection>> current) {
    if (absl::IsNotFound(current.status())) {
      // The request's wording of a missing name (or the collection, when
      // it arrived meanwhile).
      current = core::ResolveCollection(owner_->engine_->resident(),
                                        request_->collection());
    }
    ENGRAM_ASSIGN_OR_RETURN(collection_, std::move(current));
    if (request_->placement() != v1::PLACEMENT_AUTO &&
        request_->placement() != v1::PLACEMENT_CPU_ONLY &&
        request_->placement() != v1::PLACEMENT_GPU_ONLY) {
      return absl::InvalidArgumentError("placement has an unknown value");
    }
    const v1::Matrix& q = request_->queries();
    core::SearchShape shape;
    shape.query_rows = q.rows();
    shape.query_cols = q.cols();
    shape.query_values = static_cast<uint64_t>(q.values_size());
    shape.top_k = request_->top_k();
    shape.has_min_score = request_->has_min_score();
    ENGRAM_ASSIGN_OR_RETURN(std::optional<collections::RowFilter> filter,
                            RowFilterFromProto(*request_));
    rows_ = collections::SelectRows(*collection_,
                                    filter.has_value() ? &*filter : nullptr);
    const uint64_t searched =
        rows_ == nullptr ? collection_->rows() : rows_->passed;
    ENGRAM_RETURN_IF_ERROR(core::ValidateSearch(*collection_, searched, shape,
                                                owner_->engine_->limits()));
    response_->set_rows_searched(searched);
    queries_.data = q.values().data();
    queries_.rows = q.rows();
    queries_.cols = q.cols();
    return absl::OkStatus();
  }

  // top_k == 0: every score straight into the response, then every row's
  // id.
  absl::Status AllScores() {
    const uint64_t n = rows_ == nullptr ? collection_->rows() : rows_->passed;
    const int count = static_cast<int>(queries_.rows * n);
    response_->mutable_scores()->Reserve(count);
    float* scores = response_->mutable_scores()->AddNAlreadyReserved(count);
    dispatch::ExecutionReport report;
    ENGRAM_RETURN_IF_ERROR(core::ScoreEveryRow(
        *owner_->engine_, *collection_, rows_.get(), queries_,
        PlacementFromProto(request_->placement()), &scope_.interrupt(),
        absl::MakeSpan(scores, count), &report));
    response_->mutable_ids()->Reserve(static_cast<int>(n));
    const kernels::RowMask mask =
        rows_ == nullptr ? kernels::RowMask{} : rows_->mask();
    for (uint64_t row = 0; row < collection_->rows(); ++row) {
      if (mask.test(row)) response_->add_ids(collection_->IdOf(row));
    }
    ReportToProto(report, response_->mutable_report());
    response_->set_batch_queries(static_cast<uint32_t>(queries_.rows));
    response_->set_batch_requests(1);
    response_->set_collection_version(collection_->version());
    return absl::OkStatus();
  }

  absl::Status Fill(absl::StatusOr<collections::SearchResult> result) {
    ENGRAM_RETURN_IF_ERROR(result.status());
    SearchResultToProto(*result, response_);
    response_->set_collection_version(collection_->version());
    return absl::OkStatus();
  }

  // Answers the call, once. Nothing of `this` may be touched after
  // Answer(): OnDone may run and delete it at once.
  void Answer(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (answered_) return;
      answered_ = true;
    }
    call_->Answer(scope_.End(status, response_));
  }

  CollectionHandlers* const owner_;
  UnaryCall* const call_;
  const v1::SearchCollectionRequest* const request_;
  v1::SearchCollectionResponse* const response_;
  CallScope scope_;
  std::shared_ptr<const collections::Collection> collection_;
  // The rows the search may return; null: every row.
  std::shared_ptr<const collections::RowSelection> rows_;
  kernels::MatrixView queries_;
  std::shared_ptr<collections::SearchBatcher> batcher_;

  absl::Mutex mu_;
  std::optional<collections::SearchTicket> search_ticket_ ABSL_GUARDED_BY(mu_);
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  // Continue() still running, and OnDone() called (see EndContinue).
  bool continuing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

void CollectionHandlers::SearchCollection(
    UnaryCall* call, const v1::SearchCollectionRequest* request,
    v1::SearchCollectionResponse* response) {
  (new SearchReactor(this, call, request, response))->Start();
}

}  // namespace engram::server
