// Reductions and scans.
//
// sum, prod, amax/amin, max/min along a dim and cumsum call a kernel and record
// a backward written in differentiable ops. mean, var, std, logsumexp and norm
// are composed from those, so their gradients (of every order) come for free;
// the one helper with a backward of its own is root_safe (s^(1/p) with a
// gradient of 0 at s = 0), which gives std and norm PyTorch's gradient at 0.
//
// Every op takes `dims` with PyTorch's conventions: empty = all dims, negative
// dims count from the end, repeated dims are an error, and keepdim keeps the
// reduced dims as size 1.
#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {

using Grads = std::vector<Tensor>;

// The sorted, wrapped reduced dims; throws naming `op` for bad or repeated dims.
std::vector<int> checked_dims(const Tensor& x, const Dims& dims, const char* op) {
  TIDE_CHECK(x.defined(), "{}: got an undefined tensor", op);
  return kernels::reduction_dims(x, dims, op);
}

Dims to_dims(const std::vector<int>& dims) {
  return Dims(dims.begin(), dims.end());
}

// How many elements each output element reduces over.
int64_t reduced_count(const Tensor& x, const std::vector<int>& dims) {
  int64_t n = 1;
  for (int d : dims) n *= x.shape()[d];
  return n;
}

// x's shape without the reduced dims (the keepdim = false result shape).
Shape dropped_shape(const Shape& shape, const std::vector<int>& dims) {
  Shape out;
  for (int i = 0; i < shape.size(); ++i)
    if (!std::binary_search(dims.begin(), dims.end(), i)) out.push_back(shape[i]);
  return out;
}

void check_floating(const Tensor& x, const char* op) {
  TIDE_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", op,
             x.describe());
}

// max and min have no identity element, so they cannot reduce an empty dim.
void check_not_empty(const Tensor& x, const std::vector<int>& dims, const char* op) {
  for (int d : dims)
    TIDE_CHECK(x.shape()[d] > 0, "{}: cannot reduce over dim {} of size 0 in {}", op, d,
               x.describe());
}

// s^(1/p) for s >= 0, with the gradient taken as 0 where s == 0 (where the true
// one is infinite or undefined). Norms and std use it, so that the norm of a
// zero vector has gradient 0, as in PyTorch.
Tensor root_safe(const Tensor& s, double p) {
  Tensor out =
      p == 2 ? kernels::unary(UnaryOp::Sqrt, s) : kernels::unary(UnaryOp::PowScalar, s, 1.0 / p);
  if (needs_grad(s)) {
    record(
        "root", {s}, out,
        [s, p](const Tensor& g, const Tensor& y) -> Grads {
          // d/ds s^(1/p) = s^(1/p) / (p s) = y / (p s)
          Tensor at_zero = eq(s, 0.0);
          Tensor safe_s = where(at_zero, 1.0, s);
          return {where(at_zero, 0.0, div(mul(g, y), mul(safe_s, p)))};
        },
        SaveOutput::Yes);
  }
  return out;
}

// d prod / d x_i is the product of the other elements of x_i's slice:
//   - no zero in the slice: y / x_i;
//   - exactly one zero, x_z: P / x_i * x_z for i != z (a zero, but written with
//     x_z so that its derivative in x_z is right), and P for i = z, where P is
//     the product of the non-zero elements;
//   - two or more zeros: 0 (first order only).
// g and y have the keepdim shape.
Tensor prod_backward(const Tensor& g, const Tensor& x, const Tensor& y, const Dims& dims) {
  Tensor is_zero = eq(x, 0.0);
  Tensor zeros_in_slice = kernels::reduce(ReduceOp::Sum, is_zero, dims, /*keepdim=*/true);
  Tensor x_or_one = where(is_zero, 1.0, x);
  Tensor no_zero_case = div(y, x_or_one);
  Tensor nonzero_product = prod(x_or_one, dims, /*keepdim=*/true);
  Tensor the_zero = sum(where(is_zero, x, 0.0), dims, /*keepdim=*/true);
  Tensor one_zero_case =
      where(is_zero, nonzero_product, mul(div(nonzero_product, x_or_one), the_zero));
  Tensor others = where(eq(zeros_in_slice, 0.0), no_zero_case,
                        where(eq(zeros_in_slice, 1.0), one_zero_case, 0.0));
  return mul(g, others);
}

// amax / amin, and max / min over all elements: `op` names the caller.
Tensor extremum(bool is_max, const Tensor& x, const Dims& dims, bool keepdim, const char* op) {
  std::vector<int> rdims = checked_dims(x, dims, op);
  check_not_empty(x, rdims, op);
  Tensor out = kernels::reduce(is_max ? ReduceOp::Max : ReduceOp::Min, x, dims, keepdim);
  if (needs_grad(x)) {
    Shape kept = kernels::keepdim_shape(x.shape(), rdims);
    Dims rd = to_dims(rdims);
    record(
        op, {x}, out,
        [x, kept, rd](const Tensor& g, const Tensor& y) -> Grads {
          // The gradient is split evenly between the elements equal to the
          // extremum (PyTorch's amax). The mask is constant, so this is linear in g.
          Tensor hits = to(eq(x, kernels::reshape(y, kept.vec())), g.dtype());
          Tensor share = div(hits, sum(hits, rd, /*keepdim=*/true));
          return {mul(reshape(g, kept.vec()), share)};
        },
        SaveOutput::Yes);
  }
  return out;
}

// max / min along one dim: the values, and the index of each (first on ties).
ValuesIndices extremum_along(bool is_max, const Tensor& x, int64_t dim, bool keepdim) {
  const char* op = is_max ? "max" : "min";
  TIDE_CHECK(x.defined(), "{}: got an undefined tensor", op);
  int d = wrap_dim(dim, x.dim(), op);
  if (x.dim() == 0) {  // a scalar is its own extremum
    return {clone(x), kernels::arg_reduce(is_max, x, 0, keepdim)};
  }
  check_not_empty(x, {d}, op);
  Tensor indices = kernels::arg_reduce(is_max, x, d, /*keepdim=*/true);
  // Reading the values at the indices keeps the two consistent (also for NaN).
  Tensor values = kernels::gather(x, d, indices);
  if (needs_grad(x)) {
    Shape in = x.shape();
    DType dtype = x.dtype();
    record(op, {x}, values, [in, dtype, d, indices](const Tensor& g, const Tensor&) -> Grads {
      // Only the selected element receives the gradient; scatter_add is
      // differentiable in g (its backward is a gather), so this is too.
      Tensor base = zeros(in, {.dtype = dtype, .device = g.device()});
      return {scatter_add(base, d, indices, g)};
    });
  }
  if (keepdim) return {values, indices};
  Shape dropped = dropped_shape(x.shape(), {d});
  return {reshape(values, dropped.vec()), kernels::reshape(indices, dropped.vec())};
}

// sum_{j >= i} g_j along dim d: the cumsum of the reversed gradient, reversed.
Tensor reverse_cumsum(const Tensor& g, int d) {
  if (g.dim() == 0) return g;
  Tensor reversed = arange(static_cast<double>(g.size(d) - 1), -1, -1,
                           {.dtype = DType::Int64, .device = g.device()});
  return index_select(cumsum(index_select(g, d, reversed), d), d, reversed);
}

}  // namespace

// ---------------------------------------------------------------------------
// Sums and products
// ---------------------------------------------------------------------------

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim) {
  Tensor out = kernels::reduce(ReduceOp::Sum, x, dims, keepdim);
  if (needs_grad(x)) {
    std::vector<int> rdims = kernels::reduction_dims(x, dims, "sum");
    Shape kept = kernels::keepdim_shape(x.shape(), rdims);
    Shape in = x.shape();
    // Every element of a slice contributes once: broadcast the gradient back.
    record("sum", {x}, out, [kept, in](const Tensor& g, const Tensor&) -> Grads {
      return {expand(reshape(g, kept.vec()), in.vec())};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const Dims& dims, bool keepdim) {
  std::vector<int> rdims = checked_dims(x, dims, "mean");
  check_floating(x, "mean");
  // An empty reduction computes 0 / 0 = NaN, like PyTorch.
  return div(sum(x, dims, keepdim), static_cast<double>(reduced_count(x, rdims)));
}

Tensor prod(const Tensor& x, const Dims& dims, bool keepdim) {
  std::vector<int> rdims = checked_dims(x, dims, "prod");
  Tensor out = kernels::reduce(ReduceOp::Prod, x, dims, keepdim);
  if (needs_grad(x)) {
    Shape kept = kernels::keepdim_shape(x.shape(), rdims);
    Dims rd = to_dims(rdims);
    record(
        "prod", {x}, out,
        [x, kept, rd](const Tensor& g, const Tensor& y) -> Grads {
          return {prod_backward(reshape(g, kept.vec()), x, reshape(y, kept.vec()), rd)};
        },
        SaveOutput::Yes);
  }
  return out;
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  Tensor out = kernels::cumsum(x, dim);
  if (needs_grad(x)) {
    int d = wrap_dim(dim, x.dim(), "cumsum");
    // y_j = sum_{i <= j} x_i, so dL/dx_i = sum_{j >= i} g_j.
    record("cumsum", {x}, out,
           [d](const Tensor& g, const Tensor&) -> Grads { return {reverse_cumsum(g, d)}; });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Extrema
// ---------------------------------------------------------------------------

Tensor amax(const Tensor& x, const Dims& dims, bool keepdim) {
  return extremum(true, x, dims, keepdim, "amax");
}

Tensor amin(const Tensor& x, const Dims& dims, bool keepdim) {
  return extremum(false, x, dims, keepdim, "amin");
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_along(true, x, dim, keepdim);
}

ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_along(false, x, dim, keepdim);
}

Tensor max(const Tensor& x) {
  return extremum(true, x, {}, false, "max");
}

Tensor min(const Tensor& x) {
  return extremum(false, x, {}, false, "min");
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return kernels::arg_reduce(true, x, dim, keepdim);
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return kernels::arg_reduce(false, x, dim, keepdim);
}

// ---------------------------------------------------------------------------
// Statistics, composed from the ops above
// ---------------------------------------------------------------------------

Tensor var(const Tensor& x, const Dims& dims, double correction, bool keepdim) {
  std::vector<int> rdims = checked_dims(x, dims, "var");
  check_floating(x, "var");
  Tensor centered = sub(x, mean(x, dims, /*keepdim=*/true));
  // Like PyTorch, a correction >= n divides by 0 (inf, or NaN for 0 / 0).
  double divisor = std::max(0.0, static_cast<double>(reduced_count(x, rdims)) - correction);
  return div(sum(square(centered), dims, keepdim), divisor);
}

Tensor std(const Tensor& x, const Dims& dims, double correction, bool keepdim) {
  checked_dims(x, dims, "std");
  check_floating(x, "std");
  return root_safe(var(x, dims, correction, keepdim), 2);
}

Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim) {
  std::vector<int> rdims = checked_dims(x, dims, "logsumexp");
  Tensor xf = is_floating(x.dtype()) ? x : to(x, DType::Float32);
  Shape kept = kernels::keepdim_shape(x.shape(), rdims);
  // log sum exp(x) = m + log sum exp(x - m) with m the (constant) max, so exp
  // cannot overflow. An infinite m (a slice of -inf, or a +inf element) is
  // replaced by 0, so that inf - inf never makes a NaN: a slice of -inf then
  // gives log(0) = -inf, and one with +inf gives +inf, as they should.
  Tensor shift = zeros(kept, {.dtype = xf.dtype(), .device = xf.device()});
  if (xf.numel() > 0) {
    Tensor m = kernels::reduce(ReduceOp::Max, xf, dims, /*keepdim=*/true);
    Tensor finite = kernels::binary(BinaryOp::Lt, kernels::unary(UnaryOp::Abs, m),
                                    kernels::scalar_like(INFINITY, m));
    shift = kernels::where(finite, m, shift);
  }
  Tensor out = add(log(sum(exp(sub(xf, shift)), dims, /*keepdim=*/true)), shift);
  return keepdim ? out : reshape(out, dropped_shape(x.shape(), rdims).vec());
}

Tensor norm(const Tensor& x, double p, const Dims& dims, bool keepdim) {
  checked_dims(x, dims, "norm");
  check_floating(x, "norm");
  if (p == 2) return root_safe(sum(square(x), dims, keepdim), 2);
  if (p == 1) return sum(abs(x), dims, keepdim);
  if (std::isinf(p)) return extremum(p > 0, abs(x), dims, keepdim, "norm");
  // The "0-norm" counts the non-zero elements; it is piecewise constant.
  if (p == 0) return sum(to(ne(x, 0.0), x.dtype()), dims, keepdim);
  return root_safe(sum(pow(abs(x), p), dims, keepdim), p);
}

}  // namespace tide
