// The GPU as the rest of the service sees it: discovery, error kinds and a
// compute context that runs the cosine and spreading kernels from host memory.
// This is the seam between the CPU-only build and the CUDA backend.
//
// Every declaration here is implemented by kernels/cuda/ when the CUDA backend
// is built and by kernels/cuda/gpu_device_none.cc otherwise (no device is ever
// found, GpuContext::Create is UNAVAILABLE), so a caller uses the GPU the same
// way in both builds and needs no #ifdef. Nothing here needs nvcc or the CUDA
// headers.
#ifndef ENGRAM_KERNELS_GPU_DEVICE_H_
#define ENGRAM_KERNELS_GPU_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/interrupt.h"
#include "kernels/types.h"

namespace engram::kernels {

class ThreadPool;

struct GpuDeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  uint64_t total_memory_bytes = 0;
  int multiprocessors = 0;
  int memory_bus_width_bits = 0;
  int memory_clock_khz = 0;  // peak; 0 when unknown

  // The device memory's peak bandwidth in bytes/s (double data rate), from
  // its clock and bus width; 0 when either is unknown.
  double PeakMemoryBandwidth() const {
    return 2.0 * memory_clock_khz * 1e3 * (memory_bus_width_bits / 8.0);
  }
};

// True when this binary contains the CUDA backend.
bool BuiltWithCuda();

// The visible GPUs. UNAVAILABLE (with the reason: built without CUDA, no
// driver, no device) when there is none; never aborts.
absl::StatusOr<std::vector<GpuDeviceInfo>> ListGpuDevices();

// What a failed GPU call means for its caller. Errors from this seam carry
// their kind (GpuErrorKindOf), so that a caller can react without knowing
// CUDA's error codes:
//   kOutOfMemory  RESOURCE_EXHAUSTED: device (or pinned host) memory ran out;
//                 a smaller job may fit, the device is fine.
//   kSticky       INTERNAL: the CUDA context is corrupt (illegal address,
//                 launch failure, uncorrectable ECC, ...); every later call in
//                 this process fails too.
//   kOther        UNAVAILABLE: any other device or driver failure.
// INVALID_ARGUMENT errors (bad input, reported like the CPU kernels do) have
// kind kNone: they are the caller's, not the device's.
enum class GpuErrorKind { kNone, kOutOfMemory, kSticky, kOther };

inline constexpr absl::string_view kGpuErrorKindPayload =
    "type.engram.dev/gpu-error-kind";

// A status of the kind's code carrying the kind. kNone gives OK.
inline absl::Status GpuError(GpuErrorKind kind, absl::string_view message) {
  absl::Status status;
  switch (kind) {
    case GpuErrorKind::kNone:
      return absl::OkStatus();
    case GpuErrorKind::kOutOfMemory:
      status = absl::ResourceExhaustedError(message);
      status.SetPayload(kGpuErrorKindPayload, absl::Cord("out_of_memory"));
      break;
    case GpuErrorKind::kSticky:
      status = absl::InternalError(message);
      status.SetPayload(kGpuErrorKindPayload, absl::Cord("sticky"));
      break;
    case GpuErrorKind::kOther:
      status = absl::UnavailableError(message);
      status.SetPayload(kGpuErrorKindPayload, absl::Cord("other"));
      break;
  }
  return status;
}

// The kind a status from this seam carries; kNone for OK and for a status
// without one.
inline GpuErrorKind GpuErrorKindOf(const absl::Status& status) {
  if (status.ok()) return GpuErrorKind::kNone;
  const auto kind = status.GetPayload(kGpuErrorKindPayload);
  if (!kind.has_value()) return GpuErrorKind::kNone;
  if (*kind == "out_of_memory") return GpuErrorKind::kOutOfMemory;
  if (*kind == "sticky") return GpuErrorKind::kSticky;
  return GpuErrorKind::kOther;
}

struct GpuMemoryInfo {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};

// What GpuContext holds resident (UploadResident), and how often it served.
struct GpuResidentStats {
  uint64_t matrices = 0;  // held now
  uint64_t bytes = 0;     // their device memory
  uint64_t hits = 0;      // cosine calls that read one, since creation
};

// One GPU set up for computing: the kernels of kernels/cuda/ with the device
// memory, streams and pinned staging buffers they run with.
//
// Each call runs on a lane of its own: a pair of CUDA streams (copies, and
// compute), pinned host staging buffers and a cuBLAS handle, created on
// demand up to Options::max_streams and reused by later calls, so concurrent
// calls overlap on the device and no call pays for pinned allocation or
// cudaMalloc once the lanes are warm. Device memory comes from a
// stream-ordered memory pool that keeps what it has allocated. Host inputs
// are copied through the staging buffers in tiles: while tile k is computed,
// tile k+1 is copied in and tile k-1's results are copied out.
//
// Results match the CPU kernels (kernels/cpu/): the same error contract and
// messages (non-finite rows, malformed graphs), cosine scores within 1e-5 of
// the CPU's (float32 dot products summed in another order; everything after
// the dot product is in float64 as on the CPU), top-k lists of the same
// entries in the same order (ties by the lower index), and spreading results
// bit for bit (same float64 additions in the same order), so hops and
// edges_traversed are identical.
//
// Resident matrices: UploadResident() keeps a copy of a target
// matrix in device memory under a caller's key, with each row's norm
// computed once, there; a cosine call naming the key reads it instead of
// copying its targets in (the host targets it is given must be the same
// rows). The copies come from the context's memory pool, so they count
// against memory_limit_bytes and QueryMemory() reports them as used.
//
// Errors: INVALID_ARGUMENT for bad input; otherwise a GpuError() of the kind
// that tells the caller what to do. After a sticky error every call fails
// at once with it.
//
// Thread-safety: all methods may be called concurrently from any thread.
class GpuContext {
 public:
  struct Options {
    int device_ordinal = 0;
    // Per pinned staging buffer; a lane holds four (two for input tiles, two
    // for output tiles), grown when one row or one query's scores would not
    // fit. >= 64 KiB.
    size_t staging_bytes = size_t{8} << 20;
    int max_streams = 4;  // lanes, >= 1: calls beyond wait for a free one
    // Allow TF32 tensor cores in the many-query (cuBLAS) path: about 10x the
    // throughput, scores to about 1e-3. Off: full float32.
    bool allow_tf32 = false;
    // Calls with at least this many queries use the cuBLAS SGEMM path (when
    // libcublas is found at run time); fewer use the fused one-pass kernel.
    // >= 1.
    uint32_t gemm_min_queries = 17;
    // The most device memory the context's pool may hold; 0: no cap beyond
    // the device's own memory. Past it, calls fail as out of memory.
    uint64_t memory_limit_bytes = 0;
    // Spreading pushes from a frontier whose out-edges are at most this
    // fraction of all edges and pulls (every node sums its in-edges) above
    // it. [0, 1]: 0 always pulls, 1 always pushes.
    double spread_push_max_fraction = 1.0 / 16;
    // Borrowed, may be null: threads for the host-side staging copies.
    ThreadPool* copy_pool = nullptr;
  };

  // INVALID_ARGUMENT for an option out of range; UNAVAILABLE when the build
  // has no CUDA backend, there is no such device, or this build's kernels
  // cannot run on it (compute capability).
  static absl::StatusOr<std::unique_ptr<GpuContext>> Create(
      const Options& options);
  ~GpuContext();
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  const GpuDeviceInfo& device() const;
  // Whether libcublas was found (the many-query path needs it; without it
  // every call uses the fused kernel), and why not.
  bool has_cublas() const;
  std::string cublas_status() const;

  // The contracts of kernels/cpu/cosine.h's CosineDense and CosineTopK.
  // When `resident_key` names a resident matrix of the targets' shape, the
  // targets are read from it (and only checked, not copied, on the host);
  // otherwise (0, unknown, or evicted meanwhile) they are copied in. Scores
  // agree within the same 1e-5 either way (the fused kernel's bit for bit).
  absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                           float* out, size_t out_stride, uint32_t index_offset,
                           uint64_t resident_key = 0);
  absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                          uint32_t k, float min_score, uint32_t index_offset,
                          std::vector<TopKList>* out,
                          uint64_t resident_key = 0);

  // The masked forms, as kernels/cpu/cosine.h defines them: only the rows
  // `mask` admits are read and scored; dense scores are compacted (the j-th
  // admitted row's at column j, out_stride >= the admitted rows), top-k
  // lists hold admitted rows with their indices among all targets, and a
  // non-finite value in an excluded row is no error. Copied targets: the
  // host gathers the admitted rows into the staging tiles, so only they
  // cross PCIe. Resident targets: the mask goes to the device (its words,
  // rows / 8 bytes, and a count per word), which expands it to the admitted
  // row indices and gathers those rows a tile at a time for the scoring
  // kernels. Either way excluded rows never reach the top-k selection.
  // Scores agree with the CPU's masked scores within 1e-5, as unmasked.
  absl::Status CosineDense(const MatrixView& queries, const MatrixView& targets,
                           const RowMask& mask, float* out, size_t out_stride,
                           uint32_t index_offset, uint64_t resident_key = 0);
  absl::Status CosineTopK(const MatrixView& queries, const MatrixView& targets,
                          const RowMask& mask, uint32_t k, float min_score,
                          uint32_t index_offset, std::vector<TopKList>* out,
                          uint64_t resident_key = 0);

  // Copies `rows` (N x d, 1 <= N, d < 2^31) to the device under `key`
  // (!= 0) and computes each row's norm there. Blocks until done; `rows`
  // need only live for the call. INVALID_ARGUMENT for a zero key, empty or
  // oversized rows, or a row whose squared norm is not finite (the CPU
  // kernels' message, naming "targets"); ALREADY_EXISTS when `key` is held;
  // device errors by kind (out of memory: the pool is trimmed and the
  // context stays usable). On error nothing is held under `key`.
  absl::Status UploadResident(uint64_t key, const MatrixView& rows);
  // Drops the matrix under `key`; calls reading it finish first, and its
  // memory returns to the pool after them. NOT_FOUND when none. Works after
  // a sticky error too (the memory is then the driver's to reclaim).
  absl::Status EvictResident(uint64_t key);
  bool HoldsResident(uint64_t key) const;
  GpuResidentStats ResidentStats() const;

  // The contract of kernels/cpu/spread.h's Spread, the whole graph checked
  // on the device first. With top_k > 0 the best top_k nodes with activation
  // > 0 are selected on the device into *top (ties by the lower node) and
  // out->activation is left empty, so only top_k results cross PCIe; with
  // top_k == 0, *top (which may be null) is left alone. `interrupt` (may be
  // null) is checked before each hop, as the CPU kernel does: a stop is
  // returned as it is (base/interrupt.h).
  absl::Status Spread(const GraphView& graph,
                      absl::Span<const SpreadSeed> seeds,
                      const SpreadParams& params, uint32_t top_k,
                      SpreadResult* out, TopKList* top,
                      const base::Interrupt* interrupt = nullptr);

  // The device's free and total memory (cudaMemGetInfo); memory the pool
  // keeps but is not using counts as free.
  absl::StatusOr<GpuMemoryInfo> QueryMemory();

 private:
  struct Impl;
  explicit GpuContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace engram::kernels

#endif  // ENGRAM_KERNELS_GPU_DEVICE_H_
