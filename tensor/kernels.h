// Tensor-level compute without autograd: every function here allocates its
// result (or makes a view), applies NumPy broadcasting and type promotion,
// checks its arguments, and calls one backend primitive. None of them records
// a graph; the differentiable ops in autograd/ are built on top of these.
//
// Type promotion (see README): the result dtype of a binary op is the larger of
// the operands' dtypes in the order bool < int64 < float32 < float64, except
// that `div` of two integer/bool tensors gives float32 (true division), and
// comparisons and logical ops give bool.
#pragma once

#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace tide::kernels {

// --- broadcasting ---
// The NumPy broadcast of two shapes; `op` names the caller in the error.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// A stride-0 view of x with the given shape (x must broadcast to it).
Tensor expand(const Tensor& x, const Shape& shape);

// --- views (no copy) ---
// reshape returns a view when the strides allow it and a copy otherwise; view
// throws instead of copying. One size may be -1 (inferred).
Tensor reshape(const Tensor& x, std::vector<int64_t> shape);
Tensor view(const Tensor& x, std::vector<int64_t> shape);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
// Elements start, start + step, ... below end along dim (negative start/end count
// from the end; both are clamped like Python slices).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor squeeze(const Tensor& x);  // all size-1 dims
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
// Returns shape with the -1 entry inferred; checks the element count.
Shape infer_shape(std::vector<int64_t> shape, int64_t numel, const char* op);

// --- copies ---
Tensor contiguous(const Tensor& x);             // x itself if already contiguous
Tensor clone(const Tensor& x);                  // always a fresh contiguous copy
Tensor to_dtype(const Tensor& x, DType dtype);  // x itself if the dtype matches
Tensor to_device(const Tensor& x, Device device);
// In place: dst = src (broadcast to dst's shape, converted to dst's dtype).
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);

// --- elementwise ---
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0, double beta = 0);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 0, double beta = 0);
// A 0-d tensor holding `value` in dtype `like_dtype`-compatible form: a float
// scalar next to an integer tensor becomes float32, otherwise it takes the
// tensor's dtype (PyTorch's rule for Python numbers).
Tensor scalar_like(double value, const Tensor& like);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// --- reductions (dims empty = all dims) ---
Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim);
// Indices of the max (min) along dim.
Tensor arg_reduce(bool is_max, const Tensor& x, int64_t dim, bool keepdim);
Tensor cumsum(const Tensor& x, int64_t dim);
// The sorted, wrapped, de-duplicated dims (all dims when `dims` is empty).
std::vector<int> reduction_dims(const Tensor& x, const std::vector<int64_t>& dims, const char* op);
// x's shape with the reduced dims kept as size 1.
Shape keepdim_shape(const Shape& shape, const std::vector<int>& dims);

// --- linear algebra ---
// Batched matrix product of a[..., M, K] and b[..., K, N] with broadcast batch
// dims (both at least 2-D), plus an optional bias [N] and epilogue.
Tensor matmul_batched(const Tensor& a, const Tensor& b, const Tensor& bias = {},
                      Epilogue epilogue = Epilogue::None);
// The weight gradients of a Linear layer from grad_out [M, N] and its input
// [M, K], in one backend call: {grad_out^T @ input [N, K], the sum of
// grad_out over rows [N]} (the second undefined unless with_bias).
struct LinearWeightGrads {
  Tensor grad_weight, grad_bias;
};
LinearWeightGrads linear_weight_grad(const Tensor& grad_out, const Tensor& input, bool with_bias);

// --- normalisation ---
Tensor softmax(const Tensor& x, int64_t dim, bool log);
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, bool log);
struct LayerNormResult {
  Tensor y, mean, rstd;
};
// Normalises over the trailing `normalized_ndim` dims.
LayerNormResult layer_norm(const Tensor& x, int normalized_ndim, const Tensor& weight,
                           const Tensor& bias, double eps);
struct LayerNormGrads {
  Tensor grad_x, grad_weight, grad_bias;
};
LayerNormGrads layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& mean,
                                   const Tensor& rstd, int normalized_ndim, const Tensor& weight,
                                   bool need_weight_grads);

// --- indexing ---
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of `base` with src scattered-added at index along dim.
Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);

// Checks that all tensors share one device; `op` names the caller.
void check_same_device(const Tensor& a, const Tensor& b, const char* op);

}  // namespace tide::kernels
