// Allocate, broadcast, promote, check, then call one backend primitive.
#include "tensor/kernels.h"

#include <algorithm>

namespace tide::kernels {

namespace {

Backend& backend_of(const Tensor& t) {
  return backend_for(t.device());
}

Tensor empty_like(const Tensor& like, const Shape& shape, DType dtype) {
  return empty(shape, {.dtype = dtype, .device = like.device()});
}

void check_defined(const Tensor& t, const char* op) {
  TIDE_CHECK(t.defined(), "{}: got an undefined tensor", op);
}

}  // namespace

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  TIDE_CHECK(a.device() == b.device(), "{}: tensors are on different devices ({} and {})", op,
             a.device(), b.device());
}

// ---------------------------------------------------------------------------
// Copies
// ---------------------------------------------------------------------------

Tensor contiguous(const Tensor& x) {
  return x.is_contiguous() ? x : clone(x);
}

Tensor clone(const Tensor& x) {
  Tensor out = empty_like(x, x.shape(), x.dtype());
  backend_of(x).copy(out.view(), x.view());
  return out;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty_like(x, x.shape(), dtype);
  backend_of(x).copy(out.view(), x.view());
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  // Through a contiguous host buffer: one of the two sides is always the host.
  Tensor src = contiguous(x);
  Tensor out = empty(x.shape(), {.dtype = x.dtype(), .device = device});
  size_t nbytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
  if (nbytes == 0) return out;
  if (src.device().is_cpu()) {
    backend_for(device).copy_from_host(out.raw_data(), src.raw_data(), nbytes);
  } else if (device.is_cpu()) {
    backend_of(src).copy_to_host(out.raw_data(), src.raw_data(), nbytes);
  } else {
    Tensor host = to_device(src, Device::cpu());
    backend_for(device).copy_from_host(out.raw_data(), host.raw_data(), nbytes);
  }
  return out;
}

void copy_(const Tensor& dst, const Tensor& src) {
  check_defined(dst, "copy_");
  check_defined(src, "copy_");
  check_same_device(dst, src, "copy_");
  Tensor source = expand(src, broadcast_shapes(dst.shape(), src.shape(), "copy_"));
  TIDE_CHECK(source.shape() == dst.shape(), "copy_: cannot copy {} into {}", src.describe(),
             dst.describe());
  // Copying from an overlapping region of the same storage must read first.
  if (src.storage() == dst.storage()) source = clone(source);
  backend_of(dst).copy(dst.view(), source.view());
  dst.storage()->bump_version();
}

void fill_(const Tensor& dst, double value) {
  check_defined(dst, "fill_");
  backend_of(dst).fill(dst.view(), value);
  dst.storage()->bump_version();
}

// ---------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------

Tensor unary(UnaryOp op, const Tensor& x, double alpha, double beta) {
  check_defined(x, op_name(op));
  DType dtype = x.dtype();
  bool integer_ok = op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign ||
                    op == UnaryOp::Square || op == UnaryOp::Clamp || op == UnaryOp::Relu;
  TIDE_CHECK(!(x.dtype() == DType::Bool && (op == UnaryOp::Neg || op == UnaryOp::Sign)),
             "{}: not defined for bool tensors ({}); use logical_not", op_name(op), x.describe());
  if (op == UnaryOp::LogicalNot) {
    dtype = DType::Bool;
  } else if (!is_floating(dtype) && !(integer_ok && dtype == DType::Int64)) {
    // Integer inputs of floating-point math are computed in float32 (PyTorch).
    dtype = DType::Float32;
  }
  Tensor src = to_dtype(x, dtype);
  Tensor out = empty_like(x, x.shape(), dtype);
  backend_of(x).unary(op, out.view(), src.view(), alpha, beta);
  return out;
}

Tensor scalar_like(double value, const Tensor& like) {
  DType dtype = like.dtype();
  bool integral_value = value == static_cast<double>(static_cast<int64_t>(value));
  if (!is_floating(dtype) && !integral_value) dtype = DType::Float32;
  if (dtype == DType::Bool && value != 0 && value != 1) dtype = DType::Int64;
  Tensor out = empty({}, {.dtype = dtype, .device = like.device()});
  backend_of(like).fill(out.view(), value);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha, double beta) {
  const char* name = op_name(op);
  check_defined(a, name);
  check_defined(b, name);
  check_same_device(a, b, name);
  DType compute = promote_types(a.dtype(), b.dtype());
  if (op == BinaryOp::Div && !is_floating(compute)) compute = DType::Float32;
  if (op >= BinaryOp::ReluGrad) {
    TIDE_CHECK(is_floating(compute), "{}: needs floating-point inputs, got {} and {}", name,
               a.dtype(), b.dtype());
  }
  DType out_dtype = produces_bool(op) ? DType::Bool : compute;
  // The common case first: same shape, same dtype, no broadcasting work.
  if (a.shape() == b.shape()) {
    Tensor out = empty_like(a, a.shape(), out_dtype);
    backend_of(a).binary(op, out.view(), to_dtype(a, compute).view(), to_dtype(b, compute).view(),
                         alpha, beta);
    return out;
  }
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty_like(a, shape, out_dtype);
  backend_of(a).binary(op, out.view(), expand(to_dtype(a, compute), shape).view(),
                       expand(to_dtype(b, compute), shape).view(), alpha, beta);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device(cond, a, "where");
  check_same_device(a, b, "where");
  TIDE_CHECK(cond.dtype() == DType::Bool, "where: condition must be bool, got {}", cond.describe());
  DType dtype = promote_types(a.dtype(), b.dtype());
  Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty_like(a, shape, dtype);
  backend_of(a).where(out.view(), expand(cond, shape).view(),
                      expand(to_dtype(a, dtype), shape).view(),
                      expand(to_dtype(b, dtype), shape).view());
  return out;
}

// ---------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------

std::vector<int> reduction_dims(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int i = 0; i < x.dim(); ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, x.dim(), op));
  std::sort(out.begin(), out.end());
  TIDE_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(),
             "{}: dim list [{}] repeats a dim", op, fmt::join(dims, ", "));
  if (x.dim() == 0) out.clear();
  return out;
}

Shape keepdim_shape(const Shape& shape, const std::vector<int>& dims) {
  Shape out = shape;
  for (int d : dims) out[d] = 1;
  return out;
}

static Shape drop_dims(const Shape& shape, const std::vector<int>& dims) {
  Shape out;
  for (int i = 0, j = 0; i < shape.size(); ++i) {
    if (j < static_cast<int>(dims.size()) && dims[j] == i) {
      ++j;
      continue;
    }
    out.push_back(shape[i]);
  }
  return out;
}

Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  const char* name = op_name(op);
  check_defined(x, name);
  std::vector<int> rdims = reduction_dims(x, dims, name);
  if (op == ReduceOp::Max || op == ReduceOp::Min) {
    for (int d : rdims)
      TIDE_CHECK(x.shape()[d] > 0, "{}: cannot reduce over dim {} of size 0 in {}", name, d,
                 x.describe());
  }
  // Sums of bool count in int64 (PyTorch).
  DType dtype = x.dtype() == DType::Bool && (op == ReduceOp::Sum || op == ReduceOp::Prod)
                    ? DType::Int64
                    : x.dtype();
  Tensor src = to_dtype(x, dtype);
  Shape kept = keepdim_shape(x.shape(), rdims);
  Tensor out = empty_like(x, kept, dtype);
  backend_of(x).reduce(op, out.view(), src.view());
  if (keepdim) return out;
  Shape dropped = drop_dims(x.shape(), rdims);
  return make_view(out, dropped, contiguous_strides(dropped), 0);
}

Tensor arg_reduce(bool is_max, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = is_max ? "argmax" : "argmin";
  check_defined(x, name);
  int d = wrap_dim(dim, x.dim(), name);
  if (x.dim() == 0) {  // the only element is the extremum
    Tensor zero = empty_like(x, {}, DType::Int64);
    fill_(zero, 0);
    return zero;
  }
  TIDE_CHECK(x.shape()[d] > 0, "{}: cannot reduce over dim {} of size 0 in {}", name, d,
             x.describe());
  Shape kept = x.shape();
  kept[d] = 1;
  Tensor out = empty_like(x, kept, DType::Int64);
  backend_of(x).arg_reduce(is_max, out.view(), x.view(), d);
  return keepdim ? out : squeeze(out, d);
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  check_defined(x, "cumsum");
  int d = wrap_dim(dim, x.dim(), "cumsum");
  DType dtype = x.dtype() == DType::Bool ? DType::Int64 : x.dtype();
  Tensor src = to_dtype(x, dtype);
  Tensor out = empty_like(x, x.shape(), dtype);
  if (x.dim() == 0) {
    backend_of(x).copy(out.view(), src.view());
    return out;
  }
  backend_of(x).cumsum(out.view(), src.view(), d);
  return out;
}

// ---------------------------------------------------------------------------
// Linear algebra
// ---------------------------------------------------------------------------

Tensor matmul_batched(const Tensor& a, const Tensor& b, const Tensor& bias, Epilogue epilogue) {
  check_defined(a, "matmul");
  check_defined(b, "matmul");
  check_same_device(a, b, "matmul");
  TIDE_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected inputs of rank >= 2, got {} and {}",
             a.describe(), b.describe());
  TIDE_CHECK(a.dtype() == b.dtype() && is_floating(a.dtype()),
             "matmul: expected floating-point inputs of one dtype, got {} and {}", a.describe(),
             b.describe());
  int64_t m = a.size(-2), k = a.size(-1), k2 = b.size(-2), n = b.size(-1);
  TIDE_CHECK(k == k2, "matmul: inner dimensions differ: {} @ {} ({} vs {})", a.describe(),
             b.describe(), k, k2);
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b, "matmul (batch dims)");
  Shape shape_a = batch, shape_b = batch, shape_out = batch;
  shape_a.push_back(m), shape_a.push_back(k);
  shape_b.push_back(k), shape_b.push_back(n);
  shape_out.push_back(m), shape_out.push_back(n);
  ArrayView bias_view;
  Tensor bias_c;
  if (bias.defined()) {
    TIDE_CHECK(bias.dim() == 1 && bias.size(0) == n && bias.dtype() == a.dtype(),
               "matmul: bias must be {}[{}], got {}", a.dtype(), n, bias.describe());
    check_same_device(a, bias, "matmul");
    bias_c = contiguous(bias);
    bias_view = bias_c.view();
  }
  Tensor out = empty_like(a, shape_out, a.dtype());
  backend_of(a).matmul(out.view(), expand(a, shape_a).view(), expand(b, shape_b).view(), bias_view,
                       epilogue);
  return out;
}

// The Linear weight gradients through the backend's linear_weight_grad.
LinearWeightGrads linear_weight_grad(const Tensor& grad_out, const Tensor& input, bool with_bias) {
  check_defined(grad_out, "linear_weight_grad");
  check_defined(input, "linear_weight_grad");
  check_same_device(grad_out, input, "linear_weight_grad");
  TIDE_CHECK(grad_out.dim() == 2 && input.dim() == 2 && grad_out.size(0) == input.size(0),
             "linear_weight_grad: expected grad_out [M, N] and input [M, K], got {} and {}",
             grad_out.describe(), input.describe());
  TIDE_CHECK(grad_out.dtype() == input.dtype() && is_floating(input.dtype()),
             "linear_weight_grad: expected floating-point inputs of one dtype, got {} and {}",
             grad_out.describe(), input.describe());
  LinearWeightGrads grads;
  grads.grad_weight = empty_like(input, {grad_out.size(1), input.size(1)}, input.dtype());
  ArrayView bias_view;
  if (with_bias) {
    grads.grad_bias = empty_like(input, {grad_out.size(1)}, input.dtype());
    bias_view = grads.grad_bias.view();
  }
  backend_of(input).linear_weight_grad(grads.grad_weight.view(), bias_view, grad_out.view(),
                                       input.view());
  return grads;
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

// Softmax over `dim`: move dim last and make it contiguous, run, move back.
Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_defined(x, name);
  TIDE_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", name,
             x.describe());
  if (x.dim() == 0) return reshape(softmax(reshape(x, {1}), 0, log), {});
  int d = wrap_dim(dim, x.dim(), name);
  Tensor moved = contiguous(transpose(x, d, -1));
  Tensor out = empty_like(x, moved.shape(), x.dtype());
  backend_of(x).softmax(out.view(), moved.view(), log);
  return d == x.dim() - 1 ? out : contiguous(transpose(out, d, -1));
}

Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  TIDE_CHECK(grad.shape() == y.shape() && grad.dtype() == y.dtype(),
             "{}: gradient {} does not match output {}", name, grad.describe(), y.describe());
  if (y.dim() == 0)
    return reshape(softmax_backward(reshape(grad, {1}), reshape(y, {1}), 0, log), {});
  int d = wrap_dim(dim, y.dim(), name);
  Tensor g = contiguous(transpose(grad, d, -1));
  Tensor out = contiguous(transpose(y, d, -1));
  Tensor grad_src = empty_like(y, g.shape(), y.dtype());
  backend_of(y).softmax_backward(grad_src.view(), g.view(), out.view(), log);
  return d == y.dim() - 1 ? grad_src : contiguous(transpose(grad_src, d, -1));
}

// Layer norm views x as [R, C] where C is the product of the normalised dims.
static std::pair<int64_t, int64_t> rows_cols(const Tensor& x, int normalized_ndim, const char* op) {
  TIDE_CHECK(normalized_ndim >= 1 && normalized_ndim <= x.dim(),
             "{}: cannot normalise the last {} dims of {}", op, normalized_ndim, x.describe());
  int64_t cols = 1;
  for (int i = x.dim() - normalized_ndim; i < x.dim(); ++i) cols *= x.shape()[i];
  int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  return {rows, cols};
}

static ArrayView optional_view(const Tensor& t, int64_t cols, const Tensor& x, const char* what) {
  if (!t.defined()) return {};
  TIDE_CHECK(t.numel() == cols && t.dtype() == x.dtype(),
             "layer_norm: {} must have {} elements of dtype {}, got {}", what, cols, x.dtype(),
             t.describe());
  check_same_device(t, x, "layer_norm");
  ArrayView v = contiguous(t).view();
  v.shape = {cols};
  v.strides = {1};
  return v;
}

LayerNormResult layer_norm(const Tensor& x, int normalized_ndim, const Tensor& weight,
                           const Tensor& bias, double eps) {
  check_defined(x, "layer_norm");
  TIDE_CHECK(is_floating(x.dtype()), "layer_norm: expected a floating-point tensor, got {}",
             x.describe());
  auto [rows, cols] = rows_cols(x, normalized_ndim, "layer_norm");
  Tensor xc = contiguous(x);
  // Keep the contiguous weight/bias alive while the views are used.
  Tensor wc = weight.defined() ? contiguous(weight) : Tensor();
  Tensor bc = bias.defined() ? contiguous(bias) : Tensor();
  LayerNormResult r{empty_like(x, x.shape(), x.dtype()), empty_like(x, {rows}, x.dtype()),
                    empty_like(x, {rows}, x.dtype())};
  ArrayView xv = xc.view(), yv = r.y.view();
  xv.shape = yv.shape = {rows, cols};
  xv.strides = yv.strides = {cols, 1};
  backend_of(x).layer_norm(yv, r.mean.view(), r.rstd.view(), xv,
                           optional_view(wc, cols, x, "weight"), optional_view(bc, cols, x, "bias"),
                           eps);
  return r;
}

LayerNormGrads layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& mean,
                                   const Tensor& rstd, int normalized_ndim, const Tensor& weight,
                                   bool need_weight_grads) {
  auto [rows, cols] = rows_cols(x, normalized_ndim, "layer_norm_backward");
  TIDE_CHECK(grad.shape() == x.shape() && grad.dtype() == x.dtype(),
             "layer_norm_backward: gradient {} does not match input {}", grad.describe(),
             x.describe());
  Tensor xc = contiguous(x), gc = contiguous(grad);
  Tensor wc = weight.defined() ? contiguous(weight) : Tensor();
  LayerNormGrads g;
  g.grad_x = empty_like(x, x.shape(), x.dtype());
  ArrayView gw, gb;
  if (need_weight_grads) {
    g.grad_weight = empty_like(x, {cols}, x.dtype());
    g.grad_bias = empty_like(x, {cols}, x.dtype());
    gw = g.grad_weight.view();
    gb = g.grad_bias.view();
  }
  ArrayView xv = xc.view(), gv = gc.view(), gxv = g.grad_x.view();
  xv.shape = gv.shape = gxv.shape = {rows, cols};
  xv.strides = gv.strides = gxv.strides = {cols, 1};
  backend_of(x).layer_norm_backward(gxv, gw, gb, gv, xv, mean.view(), rstd.view(),
                                    optional_view(wc, cols, x, "weight"));
  if (need_weight_grads && weight.defined()) {
    g.grad_weight = reshape(g.grad_weight, weight.shape().vec());
    g.grad_bias = reshape(g.grad_bias, weight.shape().vec());
  }
  return g;
}

// ---------------------------------------------------------------------------
// Indexing
// ---------------------------------------------------------------------------

static void check_index(const Tensor& index, const char* op) {
  check_defined(index, op);
  TIDE_CHECK(index.dtype() == DType::Int64, "{}: index must be int64, got {}", op,
             index.describe());
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index(index, "index_select");
  check_same_device(x, index, "index_select");
  TIDE_CHECK(index.dim() <= 1, "index_select: index must be 0-d or 1-d, got {}", index.describe());
  Tensor src = x.dim() == 0 ? reshape(x, {1}) : x;
  int d = wrap_dim(dim, src.dim(), "index_select");
  Shape shape = src.shape();
  shape[d] = index.numel();
  Tensor out = empty_like(x, shape, x.dtype());
  Tensor idx = reshape(index, {index.numel()});
  backend_of(x).index_select(out.view(), src.view(), d, idx.view());
  return x.dim() == 0 ? reshape(out, {}) : out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index(index, "gather");
  check_same_device(x, index, "gather");
  int d = wrap_dim(dim, x.dim(), "gather");
  TIDE_CHECK(index.dim() == x.dim(), "gather: index {} must have the rank of input {}",
             index.describe(), x.describe());
  for (int i = 0; i < x.dim(); ++i)
    TIDE_CHECK(i == d || index.shape()[i] <= x.shape()[i],
               "gather: index {} is larger than input {} in dim {}", index.describe(), x.describe(),
               i);
  Tensor out = empty_like(x, index.shape(), x.dtype());
  backend_of(x).gather(out.view(), x.view(), d, index.view());
  return out;
}

Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src) {
  check_index(index, "scatter_add");
  check_same_device(base, index, "scatter_add");
  check_same_device(base, src, "scatter_add");
  int d = wrap_dim(dim, base.dim(), "scatter_add");
  TIDE_CHECK(index.shape() == src.shape(),
             "scatter_add: index {} and src {} must have the same shape", index.describe(),
             src.describe());
  TIDE_CHECK(index.dim() == base.dim(), "scatter_add: index {} must have the rank of input {}",
             index.describe(), base.describe());
  for (int i = 0; i < base.dim(); ++i)
    TIDE_CHECK(i == d || index.shape()[i] <= base.shape()[i],
               "scatter_add: index {} is larger than input {} in dim {}", index.describe(),
               base.describe(), i);
  Tensor out = clone(base);
  backend_of(base).scatter_add(out.view(), d, index.view(), to_dtype(src, base.dtype()).view());
  return out;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  TIDE_CHECK(!tensors.empty(), "cat: expected at least one tensor");
  const Tensor& first = tensors[0];
  TIDE_CHECK(first.dim() > 0, "cat: zero-dimensional tensor {} cannot be concatenated",
             first.describe());
  int d = wrap_dim(dim, first.dim(), "cat");
  DType dtype = first.dtype();
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_same_device(first, t, "cat");
    TIDE_CHECK(t.dim() == first.dim(), "cat: tensor {} is {} but tensor 0 is {}", i, t.describe(),
               first.describe());
    for (int j = 0; j < t.dim(); ++j)
      TIDE_CHECK(j == d || t.shape()[j] == first.shape()[j],
                 "cat: tensor {} is {} but tensor 0 is {} (they may differ only in dim {})", i,
                 t.describe(), first.describe(), d);
    dtype = promote_types(dtype, t.dtype());
    shape[d] += t.shape()[d];
  }
  Tensor out = empty_like(first, shape, dtype);
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    Tensor part = narrow(out, d, start, t.shape()[d]);
    backend_of(out).copy(part.view(), t.view());
    start += t.shape()[d];
  }
  return out;
}

}  // namespace tide::kernels
