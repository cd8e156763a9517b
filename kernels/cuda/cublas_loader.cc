#include "kernels/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/gpu_device.h"

namespace engram::kernels::cuda {
namespace {

// cuBLAS reports a failed launch or copy as EXECUTION_FAILED (and others);
// the CUDA error beneath tells whether the context is lost, so it wins when
// it is sticky.
absl::Status CublasCallStatus(cublasStatus_t status, const char* call,
                              decltype(&cublasGetStatusName) status_name) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const cudaError_t beneath = cudaPeekAtLastError();
  if (ClassifyCudaError(beneath) == GpuErrorKind::kSticky) {
    return CudaCallStatus(beneath, call);
  }
  const std::string message = absl::StrCat(
      call, ": ", status_name != nullptr ? status_name(status) : "cuBLAS error",
      " (", static_cast<int>(status), ")");
  return GpuError(status == CUBLAS_STATUS_ALLOC_FAILED
                      ? GpuErrorKind::kOutOfMemory
                      : GpuErrorKind::kOther,
                  message);
}

template <typename Fn>
bool Resolve(void* library, const char* symbol, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  return *fn != nullptr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cublas>> Cublas::Load() {
  const std::string name = absl::StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    return absl::NotFoundError(absl::StrCat(
        "cannot load ", name, ": ", why != nullptr ? why : "unknown error"));
  }
  auto cublas = std::unique_ptr<Cublas>(new Cublas());
  const bool resolved =
      Resolve(library, "cublasCreate_v2", &cublas->create_) &&
      Resolve(library, "cublasDestroy_v2", &cublas->destroy_) &&
      Resolve(library, "cublasSetStream_v2", &cublas->set_stream_) &&
      Resolve(library, "cublasSetMathMode", &cublas->set_math_mode_) &&
      Resolve(library, "cublasSgemm_v2", &cublas->sgemm_) &&
      Resolve(library, "cublasGetStatusName", &cublas->status_name_) &&
      Resolve(library, "cublasGetVersion_v2", &cublas->get_version_);
  if (!resolved) {
    const char* why = dlerror();
    return absl::NotFoundError(
        absl::StrCat(name, " lacks a symbol: ", why != nullptr ? why : "?"));
  }
  // The version query needs no handle (a null one is allowed).
  int version = 0;
  cublas->get_version_(nullptr, &version);
  cublas->description_ =
      absl::StrCat(name, " (cuBLAS ", version / 10000, ".",
                   (version / 100) % 100, ".", version % 100, ")");
  return cublas;
}

absl::StatusOr<cublasHandle_t> Cublas::CreateHandle(cudaStream_t stream,
                                                    bool allow_tf32) const {
  cublasHandle_t handle = nullptr;
  absl::Status status =
      CublasCallStatus(create_(&handle), "cublasCreate", status_name_);
  if (!status.ok()) return status;
  status = CublasCallStatus(set_stream_(handle, stream), "cublasSetStream",
                            status_name_);
  if (status.ok()) {
    status = CublasCallStatus(
        set_math_mode_(handle, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                          : CUBLAS_DEFAULT_MATH),
        "cublasSetMathMode", status_name_);
  }
  if (!status.ok()) {
    destroy_(handle);
    return status;
  }
  return handle;
}

void Cublas::DestroyHandle(cublasHandle_t handle) const {
  if (handle != nullptr) destroy_(handle);
}

absl::Status Cublas::RowDots(cublasHandle_t handle, int m, int n, int k,
                             const float* a, int lda, const float* b, int ldb,
                             float* scores, int ldc) const {
  // Column-major, cuBLAS's view: A is k x m (lda), B is k x n (ldb), and
  // C = A^T B is m x n with leading dimension ldc, which is the row-major
  // n x m score matrix the caller wants.
  const float one = 1.0f;
  const float zero = 0.0f;
  return CublasCallStatus(sgemm_(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k,
                                 &one, a, lda, b, ldb, &zero, scores, ldc),
                          "cublasSgemm", status_name_);
}

}  // namespace engram::kernels::cuda
