// Splitting a job into chunks that fit device memory, and running chunks so
// that a failure is reported, never a crash and never a silent gap.
//
// A job's footprint counts every byte a device needs for it: inputs, outputs
// and workspace. Cosine jobs split by query (the targets are the fixed part);
// spreading jobs do not split.
//
// RunChunks and ProcessInChunks stop at the first failing chunk and report
// its index, its item range and its error, together with the results of the
// chunks finished before it, which are never recomputed. A chunk that returns
// the wrong number of results is such a failure (INTERNAL).
//
// Thread-safety: everything here is a pure function of its arguments; the
// chunk functions run on the calling thread, one after another.
#ifndef ENGRAM_CORE_DISPATCH_CHUNKING_H_
#define ENGRAM_CORE_DISPATCH_CHUNKING_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/dispatch/jobs.h"

namespace engram::dispatch {

// The device memory a job needs: fixed_bytes + per_item_bytes per item of a
// chunk. Arithmetic saturates at UINT64_MAX rather than wrapping.
struct JobFootprint {
  uint64_t fixed_bytes = 0;     // needed whatever the chunk (e.g. targets)
  uint64_t per_item_bytes = 0;  // inputs, outputs and workspace per item
  uint64_t items = 0;           // items in the whole job
  bool splittable = true;       // false: the job runs as one unit

  uint64_t BytesFor(uint64_t chunk_items) const;
  uint64_t TotalBytes() const { return BytesFor(items); }
};

// Per query: its row (d floats) and norm; the output row (N scores) when
// top_k == 0, else the N-score workspace plus k (index, score) pairs. Fixed:
// the targets (N x d floats) and their norms, unless `targets_resident`: a
// device copy made ahead of use (CosineJob::resident_targets) is already in
// the device's used memory, so a job reading it needs no room for it. With
// a row mask, N is the M admitted rows (only they are copied in and
// scored), and the mask on the device is fixed bytes too
// (RowMaskFootprintBytes).
JobFootprint CosineFootprint(const CosineJob& job,
                             bool targets_resident = false);
JobFootprint CosineFootprint(uint64_t queries, uint64_t targets, uint64_t dim,
                             uint32_t top_k, bool targets_resident = false);

// Device bytes of the row mask of a job over N targets admitting M: its
// words and a count per word (n / 64 of each), and the M admitted row
// indices they expand to.
uint64_t RowMaskFootprintBytes(uint64_t targets, uint64_t admitted);

// Device bytes of a resident copy of N x d targets
// (ComputeBackend::UploadResident): the rows, one float64 inverse norm per
// row, and the list of rows to rescore in float64 (a count and up to N
// uint32 row indices). The CUDA backend allocates exactly this; the
// simulated one charges it; the residency manager budgets with it.
uint64_t ResidentFootprintBytes(uint64_t rows, uint64_t dim);
// One unit: the CSR graph, the seeds, and three activation vectors (current,
// frontier, next hop) plus a frontier list.
JobFootprint SpreadFootprint(const SpreadJob& job);

// The most items of `footprint` whose chunk fits in `budget_bytes`, at most
// footprint.items; 0 when not even one item (or, for an unsplittable job,
// the whole job) fits.
uint64_t ItemsThatFit(const JobFootprint& footprint, uint64_t budget_bytes);

// Where a chunked run stopped.
struct ChunkFailure {
  size_t chunk_index = 0;
  size_t begin = 0;  // first item of the failed chunk
  size_t end = 0;    // one past its last item
  absl::Status error;
};

// The results of the chunks that finished before the failure, in order.
template <typename R>
struct PartialChunkResults {
  ChunkFailure failure;
  std::vector<R> finished;
};

// The chunk index a RunChunks/ProcessInChunks error carries, if any.
std::optional<size_t> FailedChunkIndex(const absl::Status& status);

// Wraps a chunk's error: same code, message prefixed with the chunk and its
// items, the chunk index attached as a payload (FailedChunkIndex).
absl::Status ChunkError(const ChunkFailure& failure);

// Calls fn(chunk_index, begin, end) for consecutive ranges of at most
// `chunk_size` items covering [0, total). Stops at the first error, returns
// it wrapped by ChunkError and, when `failure` is not null, describes it
// there. INVALID_ARGUMENT for chunk_size == 0 with total > 0.
absl::Status RunChunks(
    size_t total, size_t chunk_size,
    absl::FunctionRef<absl::Status(size_t, size_t, size_t)> fn,
    ChunkFailure* failure = nullptr);

// Like RunChunks, for chunk functions that return their results:
// fn(begin, end) -> absl::StatusOr<std::vector<R>> with exactly end - begin
// results. Returns all results in order, or the first failure (a wrong result
// count is INTERNAL) with the finished chunks' results in `partial`.
template <typename R, typename Fn>
absl::StatusOr<std::vector<R>> ProcessInChunks(
    size_t total, size_t chunk_size, Fn&& fn,
    PartialChunkResults<R>* partial = nullptr) {
  std::vector<R> results;
  results.reserve(total);
  ChunkFailure failure;
  absl::Status status = RunChunks(
      total, chunk_size,
      [&](size_t, size_t begin, size_t end) -> absl::Status {
        absl::StatusOr<std::vector<R>> chunk = fn(begin, end);
        if (!chunk.ok()) return chunk.status();
        if (chunk->size() != end - begin) {
          return absl::InternalError(
              absl::StrCat("chunk returned ", chunk->size(), " results for ",
                           end - begin, " items"));
        }
        for (R& r : *chunk) results.push_back(std::move(r));
        return absl::OkStatus();
      },
      &failure);
  if (!status.ok()) {
    if (partial != nullptr) {
      partial->failure = std::move(failure);
      partial->finished = std::move(results);
    }
    return status;
  }
  return results;
}

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CHUNKING_H_
