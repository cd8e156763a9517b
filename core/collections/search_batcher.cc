#include "core/collections/search_batcher.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "kernels/cpu/cosine.h"
#include "kernels/cpu/topk.h"
#include "kernels/row_checks.h"
#include "kernels/row_mask.h"

namespace engram::collections {

absl::Status SearchSegments(const BatchPass& pass, const SegmentSearch& search,
                            std::vector<kernels::TopKList>* out) {
  const auto& segments = pass.collection->segments();
  out->assign(pass.queries.rows, kernels::TopKList());
  auto slice = [&](const Segment& segment) {
    return pass.mask.Rows(segment.first_row(),
                          segment.first_row() + segment.rows());
  };
  if (segments.size() == 1) {
    const kernels::RowMask mask = slice(*segments[0]);
    if (kernels::CountAdmitted(mask, 0, segments[0]->rows()) == 0) {
      return absl::OkStatus();
    }
    return search(pass.queries, *segments[0], mask, pass.top_k, pass.min_score,
                  out);
  }
  std::vector<std::vector<kernels::TopKList>> per_segment;
  for (const auto& segment : segments) {
    const kernels::RowMask mask = slice(*segment);
    // A segment the mask excludes whole is not searched at all.
    if (kernels::CountAdmitted(mask, 0, segment->rows()) == 0) continue;
    std::vector<kernels::TopKList> lists;
    ENGRAM_RETURN_IF_ERROR(search(pass.queries, *segment, mask, pass.top_k,
                                  pass.min_score, &lists));
    if (lists.size() != pass.queries.rows) {
      return absl::InternalError(absl::StrCat("segment search returned ",
                                              lists.size(), " lists for ",
                                              pass.queries.rows, " queries"));
    }
    const uint32_t offset = static_cast<uint32_t>(segment->first_row());
    for (auto& list : lists) {
      for (auto& hit : list) hit.index += offset;
    }
    per_segment.push_back(std::move(lists));
  }
  if (per_segment.empty()) return absl::OkStatus();
  std::vector<kernels::TopKList> lists(per_segment.size());
  for (size_t q = 0; q < pass.queries.rows; ++q) {
    for (size_t s = 0; s < per_segment.size(); ++s) {
      lists[s] = std::move(per_segment[s][q]);
    }
    (*out)[q] = kernels::cpu::MergeTopK(lists, pass.top_k);
  }
  return absl::OkStatus();
}

BatchExecutor MakeKernelExecutor(kernels::ThreadPool* pool) {
  return [pool](const BatchPass& pass, BatchPassOutput* out) {
    const absl::Time start = absl::Now();
    ENGRAM_RETURN_IF_ERROR(SearchSegments(
        pass,
        [pool](const kernels::MatrixView& queries, const Segment& segment,
               const kernels::RowMask& mask, uint32_t k,
               std::optional<float> min_score,
               std::vector<kernels::TopKList>* lists) {
          return kernels::cpu::CosineTopK(
              queries, segment.vectors(), mask, k,
              min_score.value_or(-std::numeric_limits<float>::infinity()), 0,
              pool, lists);
        },
        &out->top));
    out->report.backend = dispatch::BackendKind::kCpu;
    out->report.decided_by = "kernel_executor";
    out->report.chunks = 1;
    out->report.compute_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    return absl::OkStatus();
  };
}

// --- SearchBatcher ---

absl::Status SearchBatcher::ValidateOptions(const Options& options,
                                            const OptionNames& names) {
  auto bad = [](absl::string_view name, auto value, absl::string_view range) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is ", value, ", must be in ", range));
  };
  if (options.max_batch_queries < 1 || options.max_batch_queries > 65536) {
    return bad(names.max_batch_queries, options.max_batch_queries,
               "[1, 65536]");
  }
  if (options.max_queue_delay < absl::ZeroDuration() ||
      options.max_queue_delay > absl::Seconds(1)) {
    return bad(names.max_queue_delay,
               absl::FormatDuration(options.max_queue_delay), "[0, 1s]");
  }
  if (options.max_concurrent_passes < 1 ||
      options.max_concurrent_passes > 1024) {
    return bad(names.max_concurrent_passes, options.max_concurrent_passes,
               "[1, 1024]");
  }
  if (options.max_pending_requests < 1 ||
      options.max_pending_requests > (1u << 20)) {
    return bad(names.max_pending_requests, options.max_pending_requests,
               "[1, 1048576]");
  }
  if (options.max_pass_linger < absl::ZeroDuration() ||
      options.max_pass_linger > absl::Seconds(1)) {
    return bad(names.max_pass_linger,
               absl::FormatDuration(options.max_pass_linger), "[0, 1s]");
  }
  if (!(options.pass_linger_fraction >= 0.0 &&
        options.pass_linger_fraction <= 1.0)) {
    return bad("pass_linger_fraction", options.pass_linger_fraction, "[0, 1]");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SearchBatcher>> SearchBatcher::Create(
    const Options& options) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("search batcher: ", what));
  };
  if (!options.execute) return bad("an executor is required");
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return bad(status.message());
  }
  return std::unique_ptr<SearchBatcher>(new SearchBatcher(options));
}

SearchBatcher::SearchBatcher(const Options& options) : options_(options) {
  dispatcher_ = std::thread([this] { DispatchLoop(); });
}

SearchBatcher::~SearchBatcher() {
  std::vector<std::unique_ptr<Call>> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [key, queue] : queues_) {
      for (auto& call : queue.calls) abandoned.push_back(std::move(call));
    }
    queues_.clear();
    waiting_.clear();
    for (Batch& batch : ready_) {
      for (auto& call : batch) abandoned.push_back(std::move(call));
      --in_flight_;
    }
    ready_.clear();
    wake_.Signal();
  }
  for (auto& call : abandoned) {
    Complete(*call, absl::UnavailableError(
                        "the search batcher shut down before the call ran"));
  }
  {
    absl::MutexLock lock(&mu_);
    while (in_flight_ > 0) idle_.Wait(&mu_);
  }
  dispatcher_.join();
}

uint32_t SearchBatcher::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_;
}

absl::StatusOr<SearchTicket> SearchBatcher::Search(SearchRequest request,
                                                   SearchCallback done) {
  const Collection* collection = request.collection.get();
  if (collection == nullptr) {
    return absl::InvalidArgumentError("collection is required");
  }
  const kernels::MatrixView& q = request.queries;
  if (q.rows == 0 || q.data == nullptr) {
    return absl::InvalidArgumentError("queries must hold at least one row");
  }
  if (q.cols != collection->dimension()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries.cols (", q.cols, ") must equal the dimension of collection \"",
        collection->name(), "\" (", collection->dimension(), ")"));
  }
  if (request.top_k == 0) {
    return absl::InvalidArgumentError("top_k must be >= 1");
  }
  if (request.min_score.has_value() && !std::isfinite(*request.min_score)) {
    return absl::InvalidArgumentError("min_score must be finite");
  }
  // Both the pass and this call's cut compare on flushing threads.
  if (request.min_score.has_value()) {
    request.min_score = kernels::cpu::FlushSafeMinScore(*request.min_score);
  }
  // Rejects what the kernel would reject for the whole pass, so that one
  // caller's bad query can never fail the other callers batched with it.
  ENGRAM_RETURN_IF_ERROR(kernels::CheckFiniteRows("queries", q));

  auto call = std::make_unique<Call>();
  call->request = std::move(request);
  call->done = std::move(done);
  call->admitted = absl::Now();
  Batch alone;
  SearchTicket ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::UnavailableError("the search batcher is shutting down");
    }
    if (pending_ >= options_.max_pending_requests) {
      if (options_.metrics != nullptr) options_.metrics->OnQueueFull();
      return absl::ResourceExhaustedError(absl::StrCat(
          "search queue full: ", pending_, " calls pending, the limit is ",
          options_.max_pending_requests));
    }
    ++pending_;
    ticket = next_ticket_++;
    call->ticket = ticket;
    const Key key{collection, call->request.placement,
                  call->request.rows.get()};
    const uint64_t rows = q.rows;
    if (!batching()) {
      alone.push_back(std::move(call));
      ++in_flight_;
      if (!options_.run) {
        ready_.push_back(std::move(alone));
        wake_.Signal();
      }
    } else if (rows >= options_.max_batch_queries) {
      // A full batch by itself: it waits for a pass slot like any other.
      Batch batch;
      batch.push_back(std::move(call));
      ready_.push_back(std::move(batch));
      ++in_flight_;
      wake_.Signal();
    } else {
      auto it = queues_.find(key);
      if (it != queues_.end() &&
          it->second.queries + rows > options_.max_batch_queries) {
        FlushLocked(key);  // full: it goes now, this call starts the next
        it = queues_.end();
      }
      if (it == queues_.end()) {
        it = queues_.emplace(key, Queue()).first;
        it->second.oldest = call->admitted;
        wake_.Signal();  // a new deadline to wait for
      }
      it->second.calls.push_back(std::move(call));
      it->second.queries += rows;
      waiting_[ticket] = key;
      if (it->second.queries >= options_.max_batch_queries) {
        FlushLocked(key);
        wake_.Signal();
      }
    }
  }
  if (!alone.empty() && options_.run) Launch(std::move(alone), false);
  return ticket;
}

bool SearchBatcher::Cancel(SearchTicket ticket) {
  std::unique_ptr<Call> cancelled;
  {
    absl::MutexLock lock(&mu_);
    auto w = waiting_.find(ticket);
    if (w == waiting_.end()) return false;
    auto q = queues_.find(w->second);
    waiting_.erase(w);
    if (q == queues_.end()) return false;
    auto& calls = q->second.calls;
    for (auto it = calls.begin(); it != calls.end(); ++it) {
      if ((*it)->ticket != ticket) continue;
      cancelled = std::move(*it);
      calls.erase(it);
      break;
    }
    if (cancelled == nullptr) return false;
    q->second.queries -= cancelled->request.queries.rows;
    if (calls.empty()) {
      queues_.erase(q);
    } else {
      // The deadline follows the oldest call still waiting.
      absl::Time oldest = absl::InfiniteFuture();
      for (const auto& c : calls) oldest = std::min(oldest, c->admitted);
      q->second.oldest = oldest;
    }
  }
  if (options_.metrics != nullptr) options_.metrics->OnCancelled();
  Complete(*cancelled,
           absl::CancelledError("the search was cancelled while waiting"));
  return true;
}

void SearchBatcher::FlushLocked(const Key& key) {
  auto it = queues_.find(key);
  if (it == queues_.end()) return;
  for (const auto& call : it->second.calls) waiting_.erase(call->ticket);
  ready_.push_back(std::move(it->second.calls));
  ++in_flight_;
  queues_.erase(it);
}

void SearchBatcher::TakeDueLocked(absl::Time now, std::vector<Batch>* due,
                                  absl::Time* next) {
  *next = absl::InfiniteFuture();
  // Batching off: every ready call runs, one after the other, here.
  const uint32_t slots =
      batching() ? options_.max_concurrent_passes : ready_.size();
  // Queues whose delay is up, oldest first, flushed only while a slot would
  // take them: until then they stay cancellable and keep growing.
  std::vector<std::pair<absl::Time, Key>> expired;
  for (const auto& [key, queue] : queues_) {
    const absl::Time deadline =
        std::max(queue.oldest + options_.max_queue_delay, linger_until_);
    if (deadline <= now) {
      expired.emplace_back(queue.oldest, key);
    } else {
      *next = std::min(*next, deadline);
    }
  }
  std::sort(expired.begin(), expired.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t e = 0;
  while (running_ + due->size() < slots) {
    if (ready_.empty()) {
      if (e == expired.size()) break;
      FlushLocked(expired[e++].second);
    }
    due->push_back(std::move(ready_.front()));
    ready_.erase(ready_.begin());
  }
  if (batching()) running_ += due->size();
  // With every slot busy nothing is due before a pass ends, which signals
  // wake_.
  if (running_ >= slots) *next = absl::InfiniteFuture();
}

void SearchBatcher::DispatchLoop() {
  while (true) {
    std::vector<Batch> due;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_ && ready_.empty()) return;
        absl::Time next;
        TakeDueLocked(absl::Now(), &due, &next);
        if (!due.empty()) break;
        wake_.WaitWithDeadline(&mu_, next);
      }
    }
    for (Batch& batch : due) Launch(std::move(batch), batching());
  }
}

void SearchBatcher::Launch(Batch batch, bool slot) {
  if (!options_.run) {
    RunBatch(std::move(batch), slot);
    return;
  }
  // AnyInvocable holds the move-only batch; the runner owns the task.
  options_.run([this, slot, batch = std::move(batch)]() mutable {
    RunBatch(std::move(batch), slot);
  });
}

void SearchBatcher::RunBatch(Batch batch, bool slot) {
  const absl::Time start = absl::Now();
  const Collection& collection = *batch.front()->request.collection;
  uint64_t total = 0;
  uint32_t top_k = 0;
  bool all_have_min = true;
  float min_score = std::numeric_limits<float>::infinity();
  for (const auto& call : batch) {
    total += call->request.queries.rows;
    top_k = std::max(top_k, call->request.top_k);
    if (call->request.min_score.has_value()) {
      min_score = std::min(min_score, *call->request.min_score);
    } else {
      all_have_min = false;
    }
  }
  // One call is searched in place; several are concatenated so the pass
  // reads the collection once for all of them.
  std::vector<float> concatenated;
  BatchPass pass;
  pass.collection = &collection;
  pass.top_k = top_k;
  pass.placement = batch.front()->request.placement;
  if (batch.front()->request.rows != nullptr) {
    pass.mask = batch.front()->request.rows->mask();
  }
  if (all_have_min) pass.min_score = min_score;
  if (batch.size() == 1) {
    pass.queries = batch.front()->request.queries;
  } else {
    const size_t d = collection.dimension();
    concatenated.resize(total * d);
    size_t at = 0;
    for (const auto& call : batch) {
      const kernels::MatrixView& q = call->request.queries;
      std::memcpy(concatenated.data() + at * d, q.data,
                  q.rows * d * sizeof(float));
      at += q.rows;
    }
    pass.queries = kernels::MatrixView{concatenated.data(), total, d};
  }
  if (options_.metrics != nullptr) {
    options_.metrics->OnBatch(total, batch.size());
    for (const auto& call : batch) {
      options_.metrics->OnQueueDelay(
          absl::ToDoubleSeconds(start - call->admitted));
    }
  }

  BatchPassOutput output;
  absl::Status status = options_.execute(pass, &output);
  if (status.ok() && output.top.size() != total) {
    status = absl::InternalError(absl::StrCat("search executor returned ",
                                              output.top.size(), " lists for ",
                                              total, " queries"));
  }
  size_t offset = 0;
  for (auto& call : batch) {
    const SearchRequest& r = call->request;
    if (!status.ok()) {
      Complete(*call, status);
      continue;
    }
    SearchResult result;
    result.report = output.report;
    result.batch_queries = static_cast<uint32_t>(total);
    result.batch_requests = static_cast<uint32_t>(batch.size());
    result.queue_seconds = absl::ToDoubleSeconds(start - call->admitted);
    result.top.resize(r.queries.rows);
    for (size_t i = 0; i < r.queries.rows; ++i) {
      // The pass's list is the best top_k >= the caller's k with scores >=
      // the lowest min_score, best first; the caller's list is its prefix
      // of entries at or above its own min_score, cut at its own k.
      const kernels::TopKList& list = output.top[offset + i];
      std::vector<SearchHit>& hits = result.top[i];
      for (const kernels::ScoredIndex& e : list) {
        if (hits.size() >= r.top_k) break;
        if (r.min_score.has_value() && e.score < *r.min_score) break;
        hits.push_back(SearchHit{collection.IdOf(e.index), e.index, e.score});
      }
    }
    offset += r.queries.rows;
    Complete(*call, std::move(result));
  }
  // The calls hold their collection versions, and dropping the last
  // reference returns segments to the memory budget: that must happen
  // before in_flight_ drops below, after which the batcher, and the engine
  // that owns the budget, may be destroyed while this thread still runs.
  batch.clear();
  const absl::Time end = absl::Now();
  absl::MutexLock lock(&mu_);
  if (slot) {
    --running_;
    const absl::Duration linger =
        std::min(options_.max_pass_linger,
                 (end - start) * options_.pass_linger_fraction);
    linger_until_ = std::max(linger_until_, end + linger);
    wake_.Signal();  // a slot is free for the next batch
  }
  if (--in_flight_ == 0) idle_.SignalAll();
}

void SearchBatcher::Complete(Call& call, absl::StatusOr<SearchResult> result) {
  // The callback runs before the call stops counting as pending, so a
  // caller that waits for pending() == 0 has seen every callback.
  call.done(std::move(result));
  absl::MutexLock lock(&mu_);
  --pending_;
}

}  // namespace engram::collections
