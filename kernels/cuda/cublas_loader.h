// cuBLAS, loaded at run time for the many-query cosine path.
//
// libcublas is not linked: with libcublasLt it is about 600 MB, CUDA ships it
// only as a shared library, and a binary that needs it at load time needs it
// installed wherever it runs, GPU or not. The backend instead dlopen()s
// libcublas.so.<major> (the runtime container image and the CUDA toolkit
// provide it) when a GpuContext is created; without it the context works
// and every call uses the fused kernel.
//
// This header needs the CUDA headers but not nvcc.
#ifndef ENGRAM_KERNELS_CUDA_CUBLAS_LOADER_H_
#define ENGRAM_KERNELS_CUDA_CUBLAS_LOADER_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace engram::kernels::cuda {

// The cuBLAS entry points the backend uses. The library stays loaded for the
// life of the process (unloading it under live handles is not safe).
// Thread-safety: the functions are cuBLAS's own: one handle per stream, used
// by one thread at a time.
class Cublas {
 public:
  // NOT_FOUND naming the library and dlerror() when it, or one of the
  // symbols, is missing.
  static absl::StatusOr<std::unique_ptr<Cublas>> Load();

  // A handle whose work goes to `stream`, in full float32 unless allow_tf32.
  // Errors as CublasCallStatus.
  absl::StatusOr<cublasHandle_t> CreateHandle(cudaStream_t stream,
                                              bool allow_tf32) const;
  void DestroyHandle(cublasHandle_t handle) const;

  // Row-major scores[j * ldc + r] = dot(a row r, b row j) for r < m, j < n,
  // both matrices k floats wide with row strides lda and ldb: one SGEMM.
  absl::Status RowDots(cublasHandle_t handle, int m, int n, int k,
                       const float* a, int lda, const float* b, int ldb,
                       float* scores, int ldc) const;

  // What was loaded, e.g. "libcublas.so.13 (cuBLAS 13.0.0)".
  const std::string& description() const { return description_; }

 private:
  Cublas() = default;

  std::string description_;
  decltype(&cublasCreate_v2) create_ = nullptr;
  decltype(&cublasDestroy_v2) destroy_ = nullptr;
  decltype(&cublasSetStream_v2) set_stream_ = nullptr;
  decltype(&cublasSetMathMode) set_math_mode_ = nullptr;
  decltype(&cublasSgemm_v2) sgemm_ = nullptr;
  decltype(&cublasGetStatusName) status_name_ = nullptr;
  decltype(&cublasGetVersion_v2) get_version_ = nullptr;
};

}  // namespace engram::kernels::cuda

#endif  // ENGRAM_KERNELS_CUDA_CUBLAS_LOADER_H_
