// Error checks for CUDA runtime, cuBLASLt and cuDNN calls (host code only). A failing
// call throws tide::Error naming the call, the status and its description:
//   TIDE_CUDA_CHECK(cudaMalloc(&p, n));
//   -> "CUDA call cudaMalloc(&p, n) failed: cudaErrorMemoryAllocation (out of memory)"
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#ifdef TIDE_HAVE_CUDNN  // built with TIDE_WITH_CUDNN
#include <cudnn.h>
#endif

#include "backends/types.h"

namespace tide::cuda {

[[noreturn]] inline void fail_cuda(cudaError_t status, const char* call) {
  fail("CUDA call {} failed: {} ({})", call, cudaGetErrorName(status), cudaGetErrorString(status));
}

[[noreturn]] inline void fail_cublas(cublasStatus_t status, const char* call) {
  fail("cuBLASLt call {} failed: {} ({})", call, cublasLtGetStatusName(status),
       cublasLtGetStatusString(status));
}

#ifdef TIDE_HAVE_CUDNN
[[noreturn]] inline void fail_cudnn(cudnnStatus_t status, const char* call) {
  fail("cuDNN call {} failed: {} ({})", call, static_cast<int>(status),
       cudnnGetErrorString(status));
}
#endif

}  // namespace tide::cuda

#define TIDE_CUDA_CHECK(call)                            \
  do {                                                   \
    const cudaError_t tide_cuda_status_ = (call);        \
    if (tide_cuda_status_ != cudaSuccess) [[unlikely]]   \
      ::tide::cuda::fail_cuda(tide_cuda_status_, #call); \
  } while (0)

#define TIDE_CUBLAS_CHECK(call)                                    \
  do {                                                             \
    const cublasStatus_t tide_cublas_status_ = (call);             \
    if (tide_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]] \
      ::tide::cuda::fail_cublas(tide_cublas_status_, #call);       \
  } while (0)

// After a kernel launch: reports a bad launch configuration (or an earlier
// asynchronous error) at the op that launched, naming it.
#define TIDE_CUDA_CHECK_LAUNCH(op_name)                                                         \
  do {                                                                                          \
    const cudaError_t tide_cuda_status_ = cudaGetLastError();                                   \
    if (tide_cuda_status_ != cudaSuccess) [[unlikely]]                                          \
      ::tide::fail("{}: CUDA kernel launch failed: {} ({})", op_name,                           \
                   cudaGetErrorName(tide_cuda_status_), cudaGetErrorString(tide_cuda_status_)); \
  } while (0)

#ifdef TIDE_HAVE_CUDNN
#define TIDE_CUDNN_CHECK(call)                                   \
  do {                                                           \
    const cudnnStatus_t tide_cudnn_status_ = (call);             \
    if (tide_cudnn_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]] \
      ::tide::cuda::fail_cudnn(tide_cudnn_status_, #call);       \
  } while (0)
#endif
