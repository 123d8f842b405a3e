// Softmax through cuDNN (see softmax_cudnn.h).
//
// Tide's softmax primitive works on the last dim of a contiguous tensor, i.e.
// on `rows` rows of `cols` values. cuDNN sees that buffer as an NCHW tensor
// [rows, cols, 1, 1] and CUDNN_SOFTMAX_MODE_CHANNEL normalises over C for each
// N: the same rows, with no copy. CUDNN_SOFTMAX_ACCURATE subtracts the row
// maximum first (like Tide's kernel); CUDNN_SOFTMAX_LOG is log_softmax. The
// backward takes the forward output y, like Tide's primitive:
//   softmax:      dx = y * (dy - sum(dy * y))
//   log_softmax:  dx = dy - exp(y) * sum(dy)
#include "backends/cuda/softmax_cudnn.h"

#ifdef TIDE_HAVE_CUDNN

#include <cudnn.h>

#include <climits>
#include <mutex>

#include "backends/cuda/check.h"

namespace tide::cuda {

class CudnnSoftmax {
 public:
  explicit CudnnSoftmax(CUstream_st* stream) {
    TIDE_CUDNN_CHECK(cudnnCreate(&handle_));
    try {
      TIDE_CUDNN_CHECK(cudnnSetStream(handle_, stream));
    } catch (...) {
      cudnnDestroy(handle_);
      throw;
    }
  }
  ~CudnnSoftmax() { cudnnDestroy(handle_); }
  CudnnSoftmax(const CudnnSoftmax&) = delete;
  CudnnSoftmax& operator=(const CudnnSoftmax&) = delete;

  cudnnHandle_t handle() const { return handle_; }
  std::mutex mutex;
  bool warmed = false;

 private:
  cudnnHandle_t handle_ = nullptr;
};

void CudnnSoftmaxDeleter::operator()(CudnnSoftmax* state) const {
  delete state;
}

CudnnSoftmaxPtr create_cudnn_softmax(CUstream_st* stream) {
  return CudnnSoftmaxPtr(new CudnnSoftmax(stream));
}

namespace {

// The [rows, cols, 1, 1] NCHW descriptor of a contiguous row-major buffer
// (created per call: a host-side struct, no device work).
class RowsDescriptor {
 public:
  RowsDescriptor(int64_t rows, int64_t cols, DType dtype) {
    TIDE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_));
    const cudnnDataType_t type = dtype == DType::Float64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    const cudnnStatus_t status = cudnnSetTensor4dDescriptor(
        desc_, CUDNN_TENSOR_NCHW, type, static_cast<int>(rows), static_cast<int>(cols), 1, 1);
    if (status != CUDNN_STATUS_SUCCESS) {
      cudnnDestroyTensorDescriptor(desc_);
      fail_cudnn(status,
                 "cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, type, rows, cols, "
                 "1, 1)");
    }
  }
  ~RowsDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  RowsDescriptor(const RowsDescriptor&) = delete;
  RowsDescriptor& operator=(const RowsDescriptor&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

// cuDNN takes int dims, and its legacy tensors at most 2^31 - 1 elements.
bool fits(int64_t rows, int64_t cols) {
  return rows > 0 && cols > 0 && rows <= INT_MAX && cols <= INT_MAX && rows * cols <= INT_MAX;
}

cudnnSoftmaxAlgorithm_t algorithm(bool log) {
  return log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE;
}

// alpha = 1, beta = 0 (overwrite the output), in the scaling type cuDNN
// expects: double for double data, float otherwise.
struct Scaling {
  explicit Scaling(DType dtype) : f64(dtype == DType::Float64) {}
  const void* one() const { return f64 ? static_cast<const void*>(&one_d) : &one_f; }
  const void* zero() const { return f64 ? static_cast<const void*>(&zero_d) : &zero_f; }
  bool f64;
  float one_f = 1.f, zero_f = 0.f;
  double one_d = 1.0, zero_d = 0.0;
};

}  // namespace

void warm_cudnn_softmax(CudnnSoftmax* state, void* scratch, CUstream_st* stream) {
  if (state == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->warmed) return;
    state->warmed = true;
  }
  // Four regions of 64 bytes: x, y, dy, dx of a [1, 2] row (values are
  // whatever the scratch holds; only the kernels' loading matters).
  char* base = static_cast<char*>(scratch);
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (bool log : {false, true}) {
      ArrayView x{base, dtype, {1, 2}, {2, 1}};
      ArrayView y = x, dy = x, dx = x;
      y.data = base + 64;
      dy.data = base + 128;
      dx.data = base + 192;
      cudnn_softmax(state, y, x, 1, 2, log);
      cudnn_softmax_backward(state, dx, dy, y, 1, 2, log);
    }
  }
  TIDE_CUDA_CHECK(cudaStreamSynchronize(stream));
}

bool cudnn_softmax(CudnnSoftmax* state, const ArrayView& dst, const ArrayView& src, int64_t rows,
                   int64_t cols, bool log) {
  if (state == nullptr || !fits(rows, cols)) return false;
  const RowsDescriptor desc(rows, cols, src.dtype);
  const Scaling s(src.dtype);
  std::lock_guard<std::mutex> lock(state->mutex);
  TIDE_CUDNN_CHECK(cudnnSoftmaxForward(state->handle(), algorithm(log), CUDNN_SOFTMAX_MODE_CHANNEL,
                                       s.one(), desc.get(), src.data, s.zero(), desc.get(),
                                       dst.data));
  return true;
}

bool cudnn_softmax_backward(CudnnSoftmax* state, const ArrayView& grad_src,
                            const ArrayView& grad_dst, const ArrayView& dst, int64_t rows,
                            int64_t cols, bool log) {
  if (state == nullptr || !fits(rows, cols)) return false;
  const RowsDescriptor desc(rows, cols, dst.dtype);
  const Scaling s(dst.dtype);
  std::lock_guard<std::mutex> lock(state->mutex);
  TIDE_CUDNN_CHECK(cudnnSoftmaxBackward(state->handle(), algorithm(log), CUDNN_SOFTMAX_MODE_CHANNEL,
                                        s.one(), desc.get(), dst.data, desc.get(), grad_dst.data,
                                        s.zero(), desc.get(), grad_src.data));
  return true;
}

}  // namespace tide::cuda

#else  // built without cuDNN: the backend's own kernels do all the work

namespace tide::cuda {

class CudnnSoftmax {};

void CudnnSoftmaxDeleter::operator()(CudnnSoftmax* state) const {
  delete state;
}

CudnnSoftmaxPtr create_cudnn_softmax(CUstream_st*) {
  return nullptr;
}

void warm_cudnn_softmax(CudnnSoftmax*, void*, CUstream_st*) {}

bool cudnn_softmax(CudnnSoftmax*, const ArrayView&, const ArrayView&, int64_t, int64_t, bool) {
  return false;
}

bool cudnn_softmax_backward(CudnnSoftmax*, const ArrayView&, const ArrayView&, const ArrayView&,
                            int64_t, int64_t, bool) {
  return false;
}

}  // namespace tide::cuda

#endif  // TIDE_HAVE_CUDNN
