// Softmax and log-softmax through cuDNN (cudnnSoftmaxForward/Backward, the
// legacy calls cuDNN 9 still supports), used by the CUDA backend when Tide is
// built with TIDE_WITH_CUDNN. Without cuDNN every function here reports "not
// handled" and the backend runs its own kernels (normalization.cu).
//
// This header includes no cuDNN header, so the rest of the backend compiles
// the same with and without cuDNN.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.h"

struct CUstream_st;

namespace tide::cuda {

// The cuDNN handle, bound to the backend's stream. One per backend; calls
// are serialised by a mutex inside (a cuDNN handle is not thread-safe).
class CudnnSoftmax;
struct CudnnSoftmaxDeleter {
  void operator()(CudnnSoftmax* state) const;
};
using CudnnSoftmaxPtr = std::unique_ptr<CudnnSoftmax, CudnnSoftmaxDeleter>;

// Creates the handle on `stream`; null when Tide is built without cuDNN.
// Throws tide::Error (naming the cuDNN call) when cuDNN fails to start.
CudnnSoftmaxPtr create_cudnn_softmax(CUstream_st* stream);

// Runs each softmax variant once on a few bytes of `scratch` (device memory of
// at least 256 bytes) and waits for the stream, so that cuDNN loads its
// kernels before a graph capture begins. Does nothing the second time.
void warm_cudnn_softmax(CudnnSoftmax* state, void* scratch, CUstream_st* stream);

// Softmax over each row of a contiguous [rows, cols] float32 or float64
// tensor. False (nothing done) when state is null or the sizes exceed cuDNN's
// int dims.
bool cudnn_softmax(CudnnSoftmax* state, const ArrayView& dst, const ArrayView& src, int64_t rows,
                   int64_t cols, bool log);
bool cudnn_softmax_backward(CudnnSoftmax* state, const ArrayView& grad_src,
                            const ArrayView& grad_dst, const ArrayView& dst, int64_t rows,
                            int64_t cols, bool log);

}  // namespace tide::cuda
