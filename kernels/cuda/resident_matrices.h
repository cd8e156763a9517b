// Internal to kernels/cuda: the target matrices a GpuContext keeps on the
// device (GpuContext::UploadResident), their upload and the table of them
// that the context's calls look up.
#ifndef ENGRAM_KERNELS_CUDA_RESIDENT_MATRICES_H_
#define ENGRAM_KERNELS_CUDA_RESIDENT_MATRICES_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cuda/cosine_device.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/lane.h"
#include "kernels/gpu_device.h"
#include "kernels/types.h"

namespace engram::kernels::cuda {

// A target matrix kept on the device (GpuContext::UploadResident): the rows,
// each row's inverse norm and the list of rows to rescore in float64, found
// once at upload by the norm pass the many-query path runs on staged tiles.
// Shared by the context's table and the calls reading it; the last holder
// frees it, on the context's resident stream (a call lets go only after its
// lane's streams are idle, so no kernel still reads it).
struct ResidentMatrix {
  DeviceArray<float> values;     // rows x cols
  DeviceArray<double> inv_norm;  // rows
  DeviceArray<uint32_t> tiny;    // [0]: count; then up to `rows` indices
  size_t rows = 0;
  size_t cols = 0;

  uint64_t bytes() const {
    return values.bytes() + inv_norm.bytes() + tiny.bytes();
  }
  ResidentRows view() const {
    ResidentRows r;
    r.values = values.get();
    r.inv_norm = inv_norm.get();
    r.tiny.tiny_count = tiny.get();
    r.tiny.tiny_rows = tiny.get() + 1;
    r.rows = static_cast<uint32_t>(rows);
    return r;
  }
};

// Copies `rows` to new device memory and runs the norm pass over them. Once it
// has, the matrix's arrays are freed on `resident_stream`. INVALID_ARGUMENT
// names a row whose squared norm is not finite.
absl::Status UploadResidentOnLane(const LaneContext& ctx, Lane& lane,
                                  cudaStream_t resident_stream,
                                  const MatrixView& rows,
                                  std::shared_ptr<ResidentMatrix>* out);

// A context's resident matrices by key, and how often calls were served from
// one. Thread-safe.
class ResidentMatrices {
 public:
  // The resident matrix under `key` when it has the targets' shape, else
  // null (the call then copies its targets in).
  std::shared_ptr<const ResidentMatrix> Find(uint64_t key,
                                             const MatrixView& targets) const;
  bool Holds(uint64_t key) const;
  // ALREADY_EXISTS when `key` is held already; `matrix` is then freed.
  absl::Status Add(uint64_t key, std::shared_ptr<const ResidentMatrix> matrix);
  // Takes the matrix under `key` out of the table; NOT_FOUND when none is.
  absl::StatusOr<std::shared_ptr<const ResidentMatrix>> Remove(uint64_t key);
  // Counts a call served from a resident matrix.
  void NoteHit();
  GpuResidentStats Stats() const;
  // Lets go of every matrix; a call still reading one keeps it alive.
  void Clear();

 private:
  mutable absl::Mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<const ResidentMatrix>> matrices_
      ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Statistics only: relaxed.
  std::atomic<uint64_t> hits_{0};
};

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_RESIDENT_MATRICES_H_
