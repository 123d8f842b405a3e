// Elementwise ops: each forward calls one kernel, and its backward (right
// beside it) is written with differentiable ops, so it can be differentiated
// again.
#include <cmath>

#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {

using Grads = std::vector<Tensor>;

// The gradient of a broadcast, type-promoted input: sum over the broadcast
// dims and cast back to the input's dtype.
Tensor unbroadcast(const Tensor& grad, const Tensor& input) {
  Tensor g = sum_to(grad, input.shape());
  return g.dtype() == input.dtype() ? g : to(g, input.dtype());
}

// A unary op whose backward needs its input x.
template <typename Backward>
Tensor unary_op(UnaryOp op, const Tensor& x, double alpha, double beta, Backward backward) {
  Tensor out = kernels::unary(op, x, alpha, beta);
  if (needs_grad(x)) {
    record(op_name(op), {x}, out,
           [x, backward](const Tensor& g, const Tensor&) -> Grads { return {backward(g, x)}; });
  }
  return out;
}

// A unary op whose backward needs only its output y (saved, not x).
template <typename Backward>
Tensor unary_op_from_output(UnaryOp op, const Tensor& x, Backward backward) {
  Tensor out = kernels::unary(op, x);
  if (needs_grad(x)) {
    record(
        op_name(op), {x}, out,
        [backward](const Tensor& g, const Tensor& y) -> Grads { return {backward(g, y)}; },
        SaveOutput::Yes);
  }
  return out;
}

Tensor number(double value, const Tensor& like) {
  return kernels::scalar_like(value, like);
}

}  // namespace

// ---------------------------------------------------------------------------
// Unary math
// ---------------------------------------------------------------------------

Tensor neg(const Tensor& x) {
  return unary_op(UnaryOp::Neg, x, 0, 0, [](const Tensor& g, const Tensor&) { return neg(g); });
}

Tensor abs(const Tensor& x) {
  return unary_op(UnaryOp::Abs, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return mul(g, sign(x)); });
}

Tensor sign(const Tensor& x) {
  return unary_op(UnaryOp::Sign, x, 0, 0,
                  [](const Tensor& g, const Tensor&) { return zeros_like(g); });
}

Tensor exp(const Tensor& x) {
  return unary_op_from_output(UnaryOp::Exp, x,
                              [](const Tensor& g, const Tensor& y) { return mul(g, y); });
}

Tensor log(const Tensor& x) {
  return unary_op(UnaryOp::Log, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return div(g, x); });
}

Tensor log1p(const Tensor& x) {
  return unary_op(UnaryOp::Log1p, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return div(g, add(x, 1.0)); });
}

Tensor expm1(const Tensor& x) {
  // d/dx (e^x - 1) = y + 1
  return unary_op_from_output(UnaryOp::Expm1, x,
                              [](const Tensor& g, const Tensor& y) { return mul(g, add(y, 1.0)); });
}

Tensor sqrt(const Tensor& x) {
  return unary_op_from_output(UnaryOp::Sqrt, x,
                              [](const Tensor& g, const Tensor& y) { return div(g, mul(y, 2.0)); });
}

Tensor rsqrt(const Tensor& x) {
  // d/dx x^(-1/2) = -y^3 / 2
  return unary_op_from_output(UnaryOp::Rsqrt, x, [](const Tensor& g, const Tensor& y) {
    return mul(g, mul(pow(y, 3.0), -0.5));
  });
}

Tensor square(const Tensor& x) {
  return unary_op(UnaryOp::Square, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return mul(g, mul(x, 2.0)); });
}

Tensor reciprocal(const Tensor& x) {
  return unary_op_from_output(UnaryOp::Reciprocal, x, [](const Tensor& g, const Tensor& y) {
    return neg(mul(g, square(y)));
  });
}

Tensor sin(const Tensor& x) {
  return unary_op(UnaryOp::Sin, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return mul(g, cos(x)); });
}

Tensor cos(const Tensor& x) {
  return unary_op(UnaryOp::Cos, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return neg(mul(g, sin(x))); });
}

Tensor tanh(const Tensor& x) {
  return unary_op_from_output(UnaryOp::Tanh, x, [](const Tensor& g, const Tensor& y) {
    // Fused g * (1 - y^2) when nobody differentiates it again.
    if (!needs_grad(g, y)) return kernels::binary(BinaryOp::TanhGradFromOutput, g, y);
    return mul(g, sub(1.0, square(y)));
  });
}

Tensor sigmoid(const Tensor& x) {
  return unary_op_from_output(UnaryOp::Sigmoid, x, [](const Tensor& g, const Tensor& y) {
    if (!needs_grad(g, y)) return kernels::binary(BinaryOp::SigmoidGradFromOutput, g, y);
    return mul(g, mul(y, sub(1.0, y)));
  });
}

Tensor erf(const Tensor& x) {
  // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
  return unary_op(UnaryOp::Erf, x, 0, 0, [](const Tensor& g, const Tensor& x) {
    return mul(g, mul(exp(neg(square(x))), 2.0 / std::sqrt(M_PI)));
  });
}

Tensor pow(const Tensor& x, double exponent) {
  return unary_op(UnaryOp::PowScalar, x, exponent, 0, [exponent](const Tensor& g, const Tensor& x) {
    if (exponent == 0) return zeros_like(g);
    return mul(g, mul(pow(x, exponent - 1), exponent));
  });
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  double lo = min.value_or(-INFINITY), hi = max.value_or(INFINITY);
  TIDE_CHECK(min || max, "clamp: at least one of min and max must be given");
  return unary_op(UnaryOp::Clamp, x, lo, hi, [lo, hi](const Tensor& g, const Tensor& x) {
    // Gradient passes where x is inside [lo, hi] (PyTorch includes the bounds).
    Tensor inside = logical_and(ge(x, lo), le(x, hi));
    return where(inside, g, 0.0);
  });
}

// ---------------------------------------------------------------------------
// Activations: forward kernel, fused derivative kernel, and the derivative's
// own derivative composed from ops (needed only for second order).
// ---------------------------------------------------------------------------

Tensor relu(const Tensor& x) {
  return unary_op(UnaryOp::Relu, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return relu_grad(g, x); });
}

Tensor relu_grad(const Tensor& grad, const Tensor& x) {
  Tensor out = kernels::binary(BinaryOp::ReluGrad, grad, x);
  if (needs_grad(grad, x)) {
    // Linear in grad; the derivative in x is zero almost everywhere.
    record("relu_grad", {grad, x}, out, [grad, x](const Tensor& gg, const Tensor&) -> Grads {
      return {unbroadcast(relu_grad(gg, x), grad), Tensor()};
    });
  }
  return out;
}

Tensor silu(const Tensor& x) {
  return unary_op(UnaryOp::Silu, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return silu_grad(g, x); });
}

Tensor silu_grad(const Tensor& grad, const Tensor& x) {
  Tensor out = kernels::binary(BinaryOp::SiluGrad, grad, x);
  if (needs_grad(grad, x)) {
    record("silu_grad", {grad, x}, out, [grad, x](const Tensor& gg, const Tensor&) -> Grads {
      // silu'(x) = s (1 + x (1 - s)); silu''(x) = s (1 - s) (2 + x (1 - 2 s))
      Tensor s = sigmoid(x);
      Tensor second = mul(mul(s, sub(1.0, s)), add(mul(x, sub(1.0, mul(s, 2.0))), 2.0));
      return {unbroadcast(silu_grad(gg, x), grad), unbroadcast(mul(mul(gg, grad), second), x)};
    });
  }
  return out;
}

Tensor gelu(const Tensor& x, GeluApproximation approximate) {
  UnaryOp op = approximate == GeluApproximation::Tanh ? UnaryOp::GeluTanh : UnaryOp::GeluErf;
  return unary_op(op, x, 0, 0, [approximate](const Tensor& g, const Tensor& x) {
    return gelu_grad(g, x, approximate);
  });
}

Tensor gelu_grad(const Tensor& grad, const Tensor& x, GeluApproximation approximate) {
  bool tanh_form = approximate == GeluApproximation::Tanh;
  Tensor out = kernels::binary(tanh_form ? BinaryOp::GeluTanhGrad : BinaryOp::GeluErfGrad, grad, x);
  if (needs_grad(grad, x)) {
    record(tanh_form ? "gelu_tanh_grad" : "gelu_grad", {grad, x}, out,
           [grad, x, approximate, tanh_form](const Tensor& gg, const Tensor&) -> Grads {
             Tensor second;
             if (!tanh_form) {
               // gelu'(x) = Phi(x) + x phi(x); gelu''(x) = phi(x) (2 - x^2)
               Tensor phi = mul(exp(mul(square(x), -0.5)), 1.0 / std::sqrt(2 * M_PI));
               second = mul(phi, sub(2.0, square(x)));
             } else {
               // u = k (x + c x^3), t = tanh(u):
               // f' = 0.5 (1 + t) + 0.5 x (1 - t^2) u'
               // f'' = (1 - t^2) (u' + 0.5 x u'' - x t u'^2)
               const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
               Tensor u = mul(add(x, mul(pow(x, 3.0), c)), k);
               Tensor du = mul(add(mul(square(x), 3 * c), 1.0), k);
               Tensor ddu = mul(x, 6 * c * k);
               Tensor th = tanh(u);
               Tensor sech2 = sub(1.0, square(th));
               second =
                   mul(sech2, sub(add(du, mul(mul(x, ddu), 0.5)), mul(mul(x, th), square(du))));
             }
             return {unbroadcast(gelu_grad(gg, x, approximate), grad),
                     unbroadcast(mul(mul(gg, grad), second), x)};
           });
  }
  return out;
}

Tensor elu(const Tensor& x, double alpha) {
  return unary_op(UnaryOp::Elu, x, alpha, 0,
                  [alpha](const Tensor& g, const Tensor& x) { return elu_grad(g, x, alpha); });
}

Tensor elu_grad(const Tensor& grad, const Tensor& x, double alpha) {
  Tensor out = kernels::binary(BinaryOp::EluGrad, grad, x, alpha);
  if (needs_grad(grad, x)) {
    record("elu_grad", {grad, x}, out, [grad, x, alpha](const Tensor& gg, const Tensor&) -> Grads {
      // elu''(x) = alpha e^x for x <= 0, else 0
      Tensor second = where(gt(x, 0.0), 0.0, mul(exp(x), alpha));
      return {unbroadcast(elu_grad(gg, x, alpha), grad),
              unbroadcast(mul(mul(gg, grad), second), x)};
    });
  }
  return out;
}

static constexpr double kSeluScale = 1.0507009873554804934193349852946;
static constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

Tensor selu(const Tensor& x) {
  return unary_op(UnaryOp::Selu, x, 0, 0,
                  [](const Tensor& g, const Tensor& x) { return selu_grad(g, x); });
}

Tensor selu_grad(const Tensor& grad, const Tensor& x) {
  Tensor out = kernels::binary(BinaryOp::SeluGrad, grad, x);
  if (needs_grad(grad, x)) {
    record("selu_grad", {grad, x}, out, [grad, x](const Tensor& gg, const Tensor&) -> Grads {
      Tensor second = where(gt(x, 0.0), 0.0, mul(exp(x), kSeluScale * kSeluAlpha));
      return {unbroadcast(selu_grad(gg, x), grad), unbroadcast(mul(mul(gg, grad), second), x)};
    });
  }
  return out;
}

Tensor softplus(const Tensor& x, double beta, double threshold) {
  return unary_op(UnaryOp::Softplus, x, beta, threshold,
                  [beta, threshold](const Tensor& g, const Tensor& x) {
                    return softplus_grad(g, x, beta, threshold);
                  });
}

Tensor softplus_grad(const Tensor& grad, const Tensor& x, double beta, double threshold) {
  Tensor out = kernels::binary(BinaryOp::SoftplusGrad, grad, x, beta, threshold);
  if (needs_grad(grad, x)) {
    record("softplus_grad", {grad, x}, out,
           [grad, x, beta, threshold](const Tensor& gg, const Tensor&) -> Grads {
             // d/dx sigmoid(beta x) = beta s (1 - s), zero above the threshold
             Tensor s = sigmoid(mul(x, beta));
             Tensor second =
                 where(gt(mul(x, beta), threshold), 0.0, mul(mul(s, sub(1.0, s)), beta));
             return {unbroadcast(softplus_grad(gg, x, beta, threshold), grad),
                     unbroadcast(mul(mul(gg, grad), second), x)};
           });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Binary arithmetic
// ---------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Add, a, b);
  if (needs_grad(a, b)) {
    record("add", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      return {needs_input_grad(0) ? unbroadcast(g, a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(g, b) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Sub, a, b);
  if (needs_grad(a, b)) {
    record("sub", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      return {needs_input_grad(0) ? unbroadcast(g, a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(neg(g), b) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Mul, a, b);
  if (needs_grad(a, b)) {
    record("mul", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      return {needs_input_grad(0) ? unbroadcast(mul(g, b), a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(mul(g, a), b) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Div, a, b);
  if (needs_grad(a, b)) {
    record("div", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      Tensor ga = div(g, b);
      return {needs_input_grad(0) ? unbroadcast(ga, a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(neg(mul(ga, div(a, b))), b) : Tensor()};
    });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Maximum, a, b);
  if (needs_grad(a, b)) {
    record("maximum", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      // Ties split the gradient evenly (PyTorch).
      Tensor share = add(to(gt(a, b), g.dtype()), mul(to(eq(a, b), g.dtype()), 0.5));
      return {needs_input_grad(0) ? unbroadcast(mul(g, share), a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(mul(g, sub(1.0, share)), b) : Tensor()};
    });
  }
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Minimum, a, b);
  if (needs_grad(a, b)) {
    record("minimum", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      Tensor share = add(to(lt(a, b), g.dtype()), mul(to(eq(a, b), g.dtype()), 0.5));
      return {needs_input_grad(0) ? unbroadcast(mul(g, share), a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(mul(g, sub(1.0, share)), b) : Tensor()};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::binary(BinaryOp::Pow, a, b);
  if (needs_grad(a, b)) {
    record("pow", {a, b}, out, [a, b](const Tensor& g, const Tensor&) -> Grads {
      // d/da a^b = b a^(b-1); d/db a^b = a^b log(a), taken as 0 where a == 0
      Tensor ga, gb;
      if (a.requires_grad()) ga = unbroadcast(mul(g, mul(b, pow(a, sub(b, 1.0)))), a);
      if (b.requires_grad()) {
        Tensor safe_log = where(eq(a, 0.0), 0.0, log(where(eq(a, 0.0), 1.0, a)));
        gb = unbroadcast(mul(g, mul(pow(a, b), safe_log)), b);
      }
      return {ga, gb};
    });
  }
  return out;
}

Tensor add(const Tensor& a, double b) {
  return add(a, number(b, a));
}
Tensor sub(const Tensor& a, double b) {
  return sub(a, number(b, a));
}
Tensor sub(double a, const Tensor& b) {
  return sub(number(a, b), b);
}
Tensor mul(const Tensor& a, double b) {
  return mul(a, number(b, a));
}
Tensor div(const Tensor& a, double b) {
  return div(a, number(b, a));
}
Tensor div(double a, const Tensor& b) {
  return div(number(a, b), b);
}

// ---------------------------------------------------------------------------
// Comparisons, logic and selection
// ---------------------------------------------------------------------------

Tensor eq(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Eq, a, b);
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Ne, a, b);
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Lt, a, b);
}
Tensor le(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Le, a, b);
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Gt, a, b);
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::Ge, a, b);
}
Tensor eq(const Tensor& a, double b) {
  return eq(a, number(b, a));
}
Tensor ne(const Tensor& a, double b) {
  return ne(a, number(b, a));
}
Tensor lt(const Tensor& a, double b) {
  return lt(a, number(b, a));
}
Tensor le(const Tensor& a, double b) {
  return le(a, number(b, a));
}
Tensor gt(const Tensor& a, double b) {
  return gt(a, number(b, a));
}
Tensor ge(const Tensor& a, double b) {
  return ge(a, number(b, a));
}
Tensor logical_not(const Tensor& x) {
  return kernels::unary(UnaryOp::LogicalNot, kernels::to_dtype(x, DType::Bool));
}
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::LogicalAnd, kernels::to_dtype(a, DType::Bool),
                         kernels::to_dtype(b, DType::Bool));
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return kernels::binary(BinaryOp::LogicalOr, kernels::to_dtype(a, DType::Bool),
                         kernels::to_dtype(b, DType::Bool));
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = kernels::where(cond, a, b);
  if (needs_grad(a, b)) {
    record("where", {a, b}, out, [cond, a, b](const Tensor& g, const Tensor&) -> Grads {
      Tensor zero = zeros({}, {.dtype = g.dtype(), .device = g.device()});
      return {needs_input_grad(0) ? unbroadcast(where(cond, g, zero), a) : Tensor(),
              needs_input_grad(1) ? unbroadcast(where(cond, zero, g), b) : Tensor()};
    });
  }
  return out;
}
Tensor where(const Tensor& cond, const Tensor& a, double b) {
  return where(cond, a, number(b, a));
}
Tensor where(const Tensor& cond, double a, const Tensor& b) {
  return where(cond, number(a, b), b);
}

}  // namespace tide
