// Normalisation: softmax, log_softmax and layer_norm.
//
// Each forward is one fused kernel. Each backward has two forms: the fused
// backward kernel, used when nobody will differentiate the gradient again
// (the usual training step), and the same formula written in differentiable
// ops, used when a graph of the backward is being built (create_graph), so
// that second derivatives work. Tests check that the two agree.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {

using Grads = std::vector<Tensor>;

Tensor softmax_op(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  Tensor out = kernels::softmax(x, dim, log);
  if (needs_grad(x)) {
    record(
        name, {x}, out,
        [dim, log](const Tensor& g, const Tensor& y) -> Grads {
          if (!needs_grad(g, y)) return {kernels::softmax_backward(g, y, dim, log)};
          // softmax:     dx = y * (g - sum(g * y))
          // log_softmax: dx = g - exp(y) * sum(g)      (exp(y) is the softmax)
          if (log) return {sub(g, mul(exp(y), sum(g, {dim}, /*keepdim=*/true)))};
          return {mul(y, sub(g, sum(mul(g, y), {dim}, /*keepdim=*/true)))};
        },
        SaveOutput::Yes);
  }
  return out;
}

bool wants_grad(const Tensor& t) {
  return t.defined() && t.requires_grad();
}

// The layer-norm gradients written in differentiable ops. Mean and rstd are
// recomputed from x (not taken from the forward kernel) so that their own
// dependence on x is part of the graph.
Grads layer_norm_backward_composed(const Tensor& g, const Tensor& x, const Tensor& weight,
                                   const Tensor& bias, int normalized_ndim, double eps) {
  Dims dims;
  for (int i = x.dim() - normalized_ndim; i < x.dim(); ++i) dims.push_back(i);
  Tensor centered = sub(x, mean(x, dims, /*keepdim=*/true));
  Tensor rstd = rsqrt(add(mean(square(centered), dims, /*keepdim=*/true), eps));
  Tensor xhat = mul(centered, rstd);
  Tensor gx, gw, gb;
  if (wants_grad(x)) {
    // With gh = dL/dxhat = g * weight, and means taken over the normalised dims:
    // dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
    Tensor gh = weight.defined() ? mul(g, weight) : g;
    Tensor projected = mul(xhat, mean(mul(gh, xhat), dims, /*keepdim=*/true));
    gx = mul(rstd, sub(sub(gh, mean(gh, dims, /*keepdim=*/true)), projected));
  }
  if (wants_grad(weight)) gw = sum_to(mul(g, xhat), weight.shape());
  if (wants_grad(bias)) gb = sum_to(g, bias.shape());
  return {gx, gw, gb};
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_op(x, dim, false);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_op(x, dim, true);
}

Tensor layer_norm(const Tensor& x, const Dims& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  TIDE_CHECK(x.defined(), "layer_norm: got an undefined tensor");
  int nd = static_cast<int>(normalized_shape.size());
  bool matches = nd >= 1 && nd <= x.dim();
  for (int i = 0; matches && i < nd; ++i)
    matches = x.shape()[x.dim() - nd + i] == normalized_shape[i];
  TIDE_CHECK(matches, "layer_norm: normalized_shape [{}] does not match the trailing dims of {}",
             fmt::join(normalized_shape, ", "), x.describe());
  Shape expected(normalized_shape);
  TIDE_CHECK(!weight.defined() || weight.shape() == expected,
             "layer_norm: weight {} must have the normalized_shape {}", weight.describe(),
             expected);
  TIDE_CHECK(!bias.defined() || bias.shape() == expected,
             "layer_norm: bias {} must have the normalized_shape {}", bias.describe(), expected);

  kernels::LayerNormResult r = kernels::layer_norm(x, nd, weight, bias, eps);
  if (needs_grad(x, weight, bias)) {
    Tensor saved_mean = r.mean, saved_rstd = r.rstd;
    record("layer_norm", {x, weight, bias}, r.y,
           [x, weight, bias, saved_mean, saved_rstd, nd, eps](const Tensor& g,
                                                              const Tensor&) -> Grads {
             if (needs_grad(g, x, weight, bias))
               return layer_norm_backward_composed(g, x, weight, bias, nd, eps);
             bool affine_grads = wants_grad(weight) || wants_grad(bias);
             kernels::LayerNormGrads k = kernels::layer_norm_backward(g, x, saved_mean, saved_rstd,
                                                                      nd, weight, affine_grads);
             Tensor gx = wants_grad(x) ? k.grad_x : Tensor();
             Tensor gw = wants_grad(weight) ? kernels::reshape(k.grad_weight, weight.shape().vec())
                                            : Tensor();
             Tensor gb =
                 wants_grad(bias) ? kernels::reshape(k.grad_bias, bias.shape().vec()) : Tensor();
             return {gx, gw, gb};
           });
  }
  return r.y;
}

}  // namespace tide
