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
          // One fused kernel when nobody differentiates this backward again;
          // else the same derivative from differentiable ops.
          const bool fused = !needs_grad(g, y);
          Tensor gz = g;
          switch (activation) {
            case Epilogue::None:
              break;
            case Epilogue::Relu:  // y > 0 exactly where x > 0
              gz = fused ? kernels::binary(BinaryOp::ReluGrad, g, y)
                         : mul(g, to(gt(y, 0.0), g.dtype()));
              break;
            case Epilogue::Tanh:
              gz = fused ? kernels::binary(BinaryOp::TanhGradFromOutput, g, y)
                         : mul(g, sub(1.0, square(y)));
              break;
            case Epilogue::Sigmoid:
              gz = fused ? kernels::binary(BinaryOp::SigmoidGradFromOutput, g, y)
                         : mul(g, mul(y, sub(1.0, y)));
              break;
            case Epilogue::Selu: {
              // selu' from the output: scale for y > 0, else y + scale * alpha
              constexpr double kScaleAlpha = 1.0507009873554804934 * 1.6732632423543772848;
              gz = fused ? kernels::binary(BinaryOp::SeluGradFromOutput, g, y)
                         : mul(g, where(gt(y, 0.0),
                                        scalar(1.0507009873554804934,
                                               {.dtype = y.dtype(), .device = y.device()}),
                                        add(y, kScaleAlpha)));
              break;
            }
          }
          Tensor gx = needs_input_grad(0) ? matmul(gz, weight) : Tensor();
          Tensor gw = needs_input_grad(1) ? matmul(transpose(gz, 0, 1), x2) : Tensor();
          Tensor gb = needs_input_grad(2) ? sum(gz, {0}) : Tensor();
          return {gx, gw, gb};
        },
        activation == Epilogue::None ? SaveOutput::No : SaveOutput::Yes);
  }
  return x.dim() == 2 ? out : reshape(out, out_shape.vec());
}

}  // namespace tide
