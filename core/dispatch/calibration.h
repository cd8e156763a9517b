// Start-up calibration: a short sweep of cosine and spreading sizes on the
// CPU and the GPU backend that measures where the GPU starts to win, so that
// min_gpu_work_* and the dispatch cost models (cost_model.h) come from
// measurements rather than guesses. The cosine sweep covers the shapes where
// a device loses and where it wins: few and many queries, all scores and
// top-k, and targets copied in for each call or resident on the device
// (when the GPU keeps resident copies). Each timed call is recorded in the
// model with the bytes it moves, so the GPU's transfer rate is fitted too.
//
// RunCalibration() runs each size `warmup_calls` times untimed, then
// `repetitions` times timed, on each backend with seeded random data, takes
// the median of the timed runs, optionally seeds a PerformanceModel with it
// (the dispatch policy's predictions), and returns the crossover table.
// FormatCrossoverTable() renders it for people; FormatCrossoverProfile()
// renders it as a [profile] section for the config file (hybrid_config.h).
//
// Why the warm-up: a backend's first call, and its first call at each new
// shape, pays one-time costs that no later request pays: for the CUDA
// backend the lane's streams and pinned staging buffers, the memory pool's
// growth to the shape's footprint, and for many queries the cuBLAS handle
// (~90 ms on an H200). Timed, they can make the GPU look slower than the CPU
// at every size: the cold sweep on an H200 put it at 0.008-0.79x the CPU's
// speed (docs/gpu.md). The median keeps a single hiccup (another tenant, a
// page fault) out of the estimate, and the model is seeded with the median
// rather than the raw timings because it averages its samples.
//
// Thread-safety: RunCalibration may run concurrently with requests on the
// same backends; it blocks its caller for the whole sweep.
#ifndef ENGRAM_CORE_DISPATCH_CALIBRATION_H_
#define ENGRAM_CORE_DISPATCH_CALIBRATION_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dispatch/clock.h"
#include "core/dispatch/compute_backend.h"
#include "core/dispatch/cost_model.h"
#include "core/dispatch/jobs.h"
#include "core/dispatch/performance_model.h"

namespace engram::dispatch {

struct CalibrationOptions {
  uint32_t cosine_dim = 128;                               // >= 1
  uint32_t cosine_targets = 4096;                          // >= 1
  std::vector<uint32_t> cosine_queries = {1, 8, 64, 512};  // each >= 1
  // Each query count is measured for every top_k here (0: all scores) ...
  std::vector<uint32_t> cosine_top_k = {0, 10};  // each <= cosine_targets
  // ... and, when the GPU keeps resident copies, with the targets resident
  // on it too (the GPU side only: the CPU reads the same host rows).
  bool cosine_resident = true;
  std::vector<uint32_t> spread_nodes = {1000, 10000, 100000};  // each >= 1
  uint32_t spread_degree = 8;  // out-edges per node, >= 1
  uint32_t spread_hops = 3;    // [1, 64]
  // [0, 10]: untimed calls of each size on each backend before its timed
  // repetitions; neither timed nor recorded in the model.
  uint32_t warmup_calls = 1;
  uint32_t repetitions = 3;  // [1, 100]; the median is reported
  uint64_t seed = 42;
};

struct CrossoverRow {
  Operation op = Operation::kCosine;
  uint64_t work = 0;         // Q*N*d, or edges x hops
  std::string shape;         // e.g. "Q=64 N=4096 d=128"
  double cpu_seconds = 0.0;  // median
  // Median; NaN when there is no GPU or the GPU failed at this size.
  double gpu_seconds = 0.0;
};

struct CrossoverTable {
  std::string cpu_name;
  std::string gpu_name;    // empty without a GPU
  std::string gpu_device;  // the GPU's device_name, for the profile header
  std::vector<CrossoverRow> rows;  // by operation, then work
  // The smallest measured work from which the GPU was faster at every
  // larger measured size; nullopt without GPU measurements; kNeverGpu when
  // the GPU never won.
  std::optional<uint64_t> cosine_min_gpu_work;
  std::optional<uint64_t> spread_min_gpu_work;
  // GPU calls that failed during the sweep, warm-up calls included.
  uint32_t gpu_errors = 0;
};

// The min_gpu_work that keeps an operation on the CPU (the config maximum).
inline constexpr uint64_t kNeverGpu = uint64_t{1} << 62;

// INVALID_ARGUMENT for options out of range; a CPU failure (warm-up calls
// included) is returned as is. GPU failures are counted and leave NaN in
// their rows when no timed call succeeded. `gpu` may be null; `clock`
// (borrowed; nullptr: Clock::Real()) times the calls; `seed_model`
// (borrowed, may be null) receives, per size and backend, the median once
// per successful timed call (so a bucket gets as many samples as were
// measured, all at the robust value).
absl::StatusOr<CrossoverTable> RunCalibration(ComputeBackend& cpu,
                                              ComputeBackend* gpu,
                                              const CalibrationOptions& options,
                                              Clock* clock,
                                              PerformanceModel* seed_model);

// What a calibration measured, kept so that a restart starts from it
// rather than from guesses (HybridExecutor::Calibrate and UseCalibration;
// the server stores it in its data directory).
struct StoredCalibration {
  // The GPU it was measured on (its device name); empty without a GPU. A
  // calibration is only used on the device it was measured on.
  std::string gpu_device;
  // [operation][backend]: cosine, spread x cpu, gpu. The cost models fitted
  // to the sweep's calls.
  std::array<std::array<CostFit, 2>, 2> fits;
  // Per operation, the smallest work at which the GPU beat the CPU in the
  // sweep (any shape); none when it never did or was not measured.
  std::optional<uint64_t> cosine_min_gpu_work;
  std::optional<uint64_t> spread_min_gpu_work;
};

// The smallest measured work at which the GPU was faster, or none.
std::optional<uint64_t> SmallestGpuWin(const CrossoverTable& table,
                                       Operation op);

// A text file of `key = value` lines (format 1, read by the project's lexer,
// base/key_value_text.h), the fits at full precision; no gpu_device line
// means no GPU:
//   format = 1
//   gpu_device = NVIDIA H100 80GB HBM3
//   cosine_min_gpu_work = 16777216
//   cosine.gpu = FIXED PER_BYTE PER_UNIT SAMPLES MIN_WORK MAX_WORK ERROR
std::string FormatStoredCalibration(const StoredCalibration& calibration);
// INVALID_ARGUMENT naming the line for anything it does not read.
absl::StatusOr<StoredCalibration> ParseStoredCalibration(
    absl::string_view text);

// A fixed-width table: operation, shape, work, CPU and GPU milliseconds,
// speedup, then the crossover per operation.
std::string FormatCrossoverTable(const CrossoverTable& table);

// "[profile <gpu_device>]" followed by min_gpu_work_cosine / _spread lines;
// empty when there were no GPU measurements. Where the GPU never won, the
// line is one more than the largest measured work (with a comment saying
// so), not kNeverGpu: the sweep measured nothing larger.
std::string FormatCrossoverProfile(const CrossoverTable& table);

}  // namespace engram::dispatch

#endif  // ENGRAM_CORE_DISPATCH_CALIBRATION_H_
