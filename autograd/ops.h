// The differentiable ops: Tide's user-facing tensor API.
//
// Each op is defined in exactly one place, forward and backward together, in
// one of the autograd/ops_*.cpp files (named after the sections below). Its
// backward is written with these same differentiable ops, so gradients of
// gradients work (create_graph). Ops that only compose other ops need no
// backward of their own.
#pragma once

#include <optional>
#include <vector>

#include "autograd/autograd.h"
#include "autograd/node.h"
#include "tensor/creation.h"

namespace tide {

using Dims = std::vector<int64_t>;

// ===========================================================================
// ops_elementwise.cpp: unary math, activations, binary arithmetic
// ===========================================================================
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);  // gradient 0
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
enum class GeluApproximation { None, Tanh };
Tensor gelu(const Tensor& x, GeluApproximation approximate = GeluApproximation::None);
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor selu(const Tensor& x);
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
Tensor pow(const Tensor& x, double exponent);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient split evenly on ties
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
// Scalars mix with tensors (PyTorch's promotion for Python numbers).
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor sub(double a, const Tensor& b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor div(double a, const Tensor& b);

// Comparisons and logic: bool results, no gradient.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor logical_not(const Tensor& x);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
// cond ? a : b, broadcasting all three.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, double b);
Tensor where(const Tensor& cond, double a, const Tensor& b);

// The activation derivatives as differentiable ops (used by the backward of
// the activations, so their second derivatives come for free).
Tensor relu_grad(const Tensor& grad, const Tensor& x);
Tensor silu_grad(const Tensor& grad, const Tensor& x);
Tensor gelu_grad(const Tensor& grad, const Tensor& x, GeluApproximation approximate);
Tensor elu_grad(const Tensor& grad, const Tensor& x, double alpha);
Tensor selu_grad(const Tensor& grad, const Tensor& x);
Tensor softplus_grad(const Tensor& grad, const Tensor& x, double beta, double threshold);
// grad * f'(z) for a matmul epilogue f, from its output y = f(z) (linear's
// backward; forward-mode passes). grad may have extra leading dims over y.
Tensor epilogue_grad(Epilogue activation, const Tensor& grad, const Tensor& y);

// ===========================================================================
// ops_shape.cpp: views, copies, joins and indexing
// ===========================================================================
Tensor reshape(const Tensor& x, Dims shape);  // view when possible, else copy
Tensor view(const Tensor& x, Dims shape);     // throws if a view is impossible
Tensor permute(const Tensor& x, const Dims& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Dims& shape);  // -1 keeps a size
Tensor broadcast_to(const Tensor& x, const Dims& shape);
Tensor squeeze(const Tensor& x);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to(const Tensor& x, DType dtype);
Tensor to(const Tensor& x, Device device);
// Sums `x` down to `shape` (the reverse of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views of consecutive pieces along dim: of split_size each (the last may be
// shorter), or of the given sizes (which must sum to the dim's size).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const Dims& sizes, int64_t dim = 0);
// Pieces of ceil(n / chunks) (PyTorch), so there may be fewer than `chunks`.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// Elements where mask is true, flattened (masked_select), or x with those
// elements replaced (masked_fill). The bool mask broadcasts: to x's shape for
// masked_fill, together with x for masked_select.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor masked_select(const Tensor& x, const Tensor& mask);

// ===========================================================================
// ops_reduce.cpp: reductions (empty dims = all dims) and scans
// ===========================================================================
Tensor sum(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor prod(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
struct ValuesIndices {
  Tensor values, indices;
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// Variance with Bessel-style `correction` (1 = unbiased, 0 = population).
Tensor var(const Tensor& x, const Dims& dims = {}, double correction = 1, bool keepdim = false);
Tensor std(const Tensor& x, const Dims& dims = {}, double correction = 1, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim = false);
// The p-norm over dims (p = 2 by default; p = inf is the max-abs norm).
Tensor norm(const Tensor& x, double p = 2, const Dims& dims = {}, bool keepdim = false);
Tensor cumsum(const Tensor& x, int64_t dim);

// ===========================================================================
// ops_linalg.cpp: matrix products
// ===========================================================================
// numpy.matmul semantics: 1-D operands are promoted to matrices and the added
// dim removed afterwards; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out], optionally followed by a fused
// activation (an Epilogue whose derivative is recoverable from the output).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              Epilogue activation = Epilogue::None);

// ===========================================================================
// ops_nn.cpp: normalisation
// ===========================================================================
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the trailing normalized_shape.size() dims.
Tensor layer_norm(const Tensor& x, const Dims& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

// ===========================================================================
// Operators
// ===========================================================================
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
inline Tensor operator+(double a, const Tensor& b) {
  return add(b, a);
}
inline Tensor operator-(const Tensor& a, double b) {
  return sub(a, b);
}
inline Tensor operator-(double a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
inline Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}
inline Tensor operator/(const Tensor& a, double b) {
  return div(a, b);
}
inline Tensor operator/(double a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator==(const Tensor& a, const Tensor& b) {
  return eq(a, b);
}
inline Tensor operator!=(const Tensor& a, const Tensor& b) {
  return ne(a, b);
}
inline Tensor operator<(const Tensor& a, const Tensor& b) {
  return lt(a, b);
}
inline Tensor operator<=(const Tensor& a, const Tensor& b) {
  return le(a, b);
}
inline Tensor operator>(const Tensor& a, const Tensor& b) {
  return gt(a, b);
}
inline Tensor operator>=(const Tensor& a, const Tensor& b) {
  return ge(a, b);
}
inline Tensor operator<(const Tensor& a, double b) {
  return lt(a, b);
}
inline Tensor operator<=(const Tensor& a, double b) {
  return le(a, b);
}
inline Tensor operator>(const Tensor& a, double b) {
  return gt(a, b);
}
inline Tensor operator>=(const Tensor& a, double b) {
  return ge(a, b);
}

// ===========================================================================
// In-place updates (for optimizers and initialisers). They refuse tensors that
// take part in autograd (as destination or source) while grad mode is on, and
// bump the storage version so that a backward reading an overwritten saved
// tensor throws.
// ===========================================================================
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);
void zero_(const Tensor& dst);
void add_(const Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha * src
void mul_(const Tensor& dst, double value);

}  // namespace tide
