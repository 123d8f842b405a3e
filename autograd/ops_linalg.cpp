// Matrix products. matmul reduces every numpy.matmul case to one batched
// product of rank >= 2 operands, whose backward is two more batched products.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {
using Grads = std::vector<Tensor>;

// The batched product of a[..., M, K] and b[..., K, N] (both rank >= 2).
Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::matmul_batched(a, b);
  if (needs_grad(a, b)) {
    record("matmul", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      // dA = dY B^T, dB = A^T dY, summed over broadcast batch dims.
      Tensor ga, gb;
      if (needs_input_grad(0)) ga = sum_to(batched_matmul(g, transpose(b, -1, -2)), a.shape());
      if (needs_input_grad(1)) gb = sum_to(batched_matmul(transpose(a, -1, -2), g), b.shape());
      return {ga, gb};
    });
  }
  return out;
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  TIDE_CHECK(a.defined() && b.defined() && a.dim() >= 1 && b.dim() >= 1,
             "matmul: both operands need at least one dimension, got {} and {}", a.describe(),
             b.describe());
  bool a_vector = a.dim() == 1, b_vector = b.dim() == 1;
  Tensor a2 = a_vector ? unsqueeze(a, 0) : a;   // [K] -> [1, K]
  Tensor b2 = b_vector ? unsqueeze(b, -1) : b;  // [K] -> [K, 1]
  TIDE_CHECK(a2.size(-1) == b2.size(-2), "matmul: inner dimensions differ: {} @ {} ({} vs {})",
             a.describe(), b.describe(), a2.size(-1), b2.size(-2));
  Tensor out = batched_matmul(a2, b2);
  if (b_vector) out = squeeze(out, -1);
  if (a_vector) out = squeeze(out, a_vector && b_vector ? -1 : -2);
  return out;
}

Tensor epilogue_grad(Epilogue activation, const Tensor& grad, const Tensor& y) {
  // One fused kernel when nobody differentiates this again; else the same
  // derivative from differentiable ops (so linear's double backward works).
  const bool fused = !needs_grad(grad, y);
  switch (activation) {
    case Epilogue::None:
      return grad;
    case Epilogue::Relu:  // y > 0 exactly where the input is > 0
      return fused ? kernels::binary(BinaryOp::ReluGrad, grad, y)
                   : mul(grad, to(gt(y, 0.0), grad.dtype()));
    case Epilogue::Tanh:
      return fused ? kernels::binary(BinaryOp::TanhGradFromOutput, grad, y)
                   : mul(grad, sub(1.0, square(y)));
    case Epilogue::Sigmoid:
      return fused ? kernels::binary(BinaryOp::SigmoidGradFromOutput, grad, y)
                   : mul(grad, mul(y, sub(1.0, y)));
    case Epilogue::Selu: {
      // selu' from the output: scale for y > 0, else y + scale * alpha
      constexpr double kScale = 1.0507009873554804934;
      constexpr double kScaleAlpha = kScale * 1.6732632423543772848;
      return fused ? kernels::binary(BinaryOp::SeluGradFromOutput, grad, y)
                   : mul(grad, where(gt(y, 0.0),
                                     scalar(kScale, {.dtype = y.dtype(), .device = y.device()}),
                                     add(y, kScaleAlpha)));
    }
  }
  fail("epilogue_grad: unknown epilogue {}", static_cast<int>(activation));
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Epilogue activation) {
  TIDE_CHECK(weight.defined() && weight.dim() == 2,
             "linear: weight must be a matrix [out, in], got {}", weight.describe());
  TIDE_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == weight.size(1),
             "linear: input {} does not match weight {} (expected last dim {})", x.describe(),
             weight.describe(), weight.size(1));
  TIDE_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
             "linear: bias {} does not match weight {} (expected [{}])", bias.describe(),
             weight.describe(), weight.size(0));
  // Work on the 2-D view [rows, in]; the fused kernel adds bias and activation.
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = weight.size(0);
  Tensor x2 = x.dim() == 2 ? x : reshape(x, {-1, x.size(-1)});
  Tensor wt = transpose(weight, 0, 1);
  Tensor out = kernels::matmul_batched(x2, wt, bias, activation);
  if (needs_grad(x2, weight, bias)) {
    record(
        "linear", {x2, weight, bias}, out,
        [x2, weight, bias, activation](const Tensor& g, const Tensor& y) -> Grads {
          // First undo the activation using its output y, then the affine map.
          Tensor gz = epilogue_grad(activation, g, y);
          Tensor gx = needs_input_grad(0) ? matmul(gz, weight) : Tensor();
          // dW and db from one backend call (cuBLASLt's BGRADB epilogue) when
          // both are wanted and nobody differentiates them again.
          if (needs_input_grad(1) && needs_input_grad(2) && !needs_grad(gz, x2)) {
            auto [gw, gb] = kernels::linear_weight_grad(gz, x2, /*with_bias=*/true);
            return {gx, gw, gb};
          }
          Tensor gw = needs_input_grad(1) ? matmul(transpose(gz, 0, 1), x2) : Tensor();
          Tensor gb = needs_input_grad(2) ? sum(gz, {0}) : Tensor();
          return {gx, gw, gb};
        },
        activation == Epilogue::None ? SaveOutput::No : SaveOutput::Yes);
  }
  return x.dim() == 2 ? out : reshape(out, out_shape.vec());
}

}  // namespace tide
