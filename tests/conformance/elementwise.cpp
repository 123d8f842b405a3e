// Conformance of the elementwise primitives: unary (every UnaryOp), binary
// (every BinaryOp, with every broadcasting class), where, and their gradients.
//
// The forward runs through kernels::unary/binary so that every op of the
// backend lists is reached (a few, like Affine, have no public op of their
// own); the backward through the differentiable op that uses it.
#include <cmath>
#include <numbers>

#include "conformance.h"

namespace tide::conformance {
namespace {

// --- tolerances (documented in README "Conformance suite") ------------------------
// Elementwise math on exactly the same inputs: float32 allows ~170 ulp (1e-5
// relative) plus 1e-6 absolute near zero, room for any accurate vectorised
// exp/log/erf (oneDNN, CUDA's libdevice) while a wrong formula (e.g. the tanh
// GELU for the erf one, 1e-3 apart) fails. float64 allows 1e-12 relative: a
// float64 path that computes in float32 (1e-7) fails.
constexpr Tols kElementwise{{1e-6, 1e-5}, {1e-13, 1e-12}};
// Gradients compose two or three such operations.
constexpr Tols kElementwiseGrad{{4e-6, 4e-5}, {4e-13, 4e-12}};
constexpr Tols kExactTols{kExact, kExact};

// The shapes every elementwise case runs on: scalar, empty, one element, odd
// sizes, rank 4, a size-1 dim, and more than 64k elements.
const std::vector<Shape>& elementwise_shapes() {
  static const std::vector<Shape> shapes = {{},     {0},      {1},       {7},          {4, 0, 3},
                                            {3, 5}, {33, 17}, {5, 1, 9}, {2, 3, 4, 5}, {263, 269}};
  return shapes;
}
// Gradients run on a few shapes per layout (large ones only contiguous).
bool backward_shape(const Shape& s, Layout layout) {
  if (is_large(s)) return layout == Layout::Contiguous;
  return s.numel() > 0 && s.numel() <= 600;
}

// --- unary -------------------------------------------------------------------------

constexpr double kSeluLambda = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

double sigmoid_ref(double x) {
  return 1 / (1 + std::exp(-x));
}

struct UnaryCase {
  UnaryOp op;
  double alpha = 0, beta = 0;
  Domain domain;
  bool takes_int64 = false;
  // The public differentiable op (for the backward); empty when there is none.
  std::function<Tensor(const Tensor&)> differentiable;
  // The float64 closed form (independent of Tide) for the CPU check.
  std::function<double(double)> closed_form;
};

std::vector<UnaryCase> unary_cases() {
  static_assert(kNumUnaryOps == 27, "add the new unary op to the conformance table");
  const Domain positive{0.05, 5};
  const double a = 1.3;                     // elu alpha
  const double beta = 1.5, thresh = 10;     // softplus
  const double lo = -0.5, hi = 0.7;         // clamp
  const double scale = 2.5, shift = -1.25;  // affine
  auto gelu_tanh = [](double x) {
    const double c = std::sqrt(2 / std::numbers::pi);
    return 0.5 * x * (1 + std::tanh(c * (x + 0.044715 * x * x * x)));
  };
  return {
      {UnaryOp::Neg,
       0,
       0,
       {},
       true,
       [](const Tensor& x) { return neg(x); },
       [](double x) { return -x; }},
      {UnaryOp::Abs,
       0,
       0,
       {},
       true,
       [](const Tensor& x) { return abs(x); },
       [](double x) { return std::abs(x); }},
      {UnaryOp::Sign,
       0,
       0,
       {},
       true,
       [](const Tensor& x) { return sign(x); },
       [](double x) { return double((x > 0) - (x < 0)); }},
      {UnaryOp::Square,
       0,
       0,
       {},
       true,
       [](const Tensor& x) { return square(x); },
       [](double x) { return x * x; }},
      {UnaryOp::Exp,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return exp(x); },
       [](double x) { return std::exp(x); }},
      {UnaryOp::Log, 0, 0, positive, false, [](const Tensor& x) { return log(x); },
       [](double x) { return std::log(x); }},
      {UnaryOp::Log1p,
       0,
       0,
       {-0.9, 5},
       false,
       [](const Tensor& x) { return log1p(x); },
       [](double x) { return std::log1p(x); }},
      {UnaryOp::Expm1,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return expm1(x); },
       [](double x) { return std::expm1(x); }},
      {UnaryOp::Sqrt, 0, 0, positive, false, [](const Tensor& x) { return sqrt(x); },
       [](double x) { return std::sqrt(x); }},
      {UnaryOp::Rsqrt, 0, 0, positive, false, [](const Tensor& x) { return rsqrt(x); },
       [](double x) { return 1 / std::sqrt(x); }},
      {UnaryOp::Reciprocal,
       0,
       0,
       {-3, 3, 0.25},
       false,
       [](const Tensor& x) { return reciprocal(x); },
       [](double x) { return 1 / x; }},
      {UnaryOp::Sin,
       0,
       0,
       {-5, 5},
       false,
       [](const Tensor& x) { return sin(x); },
       [](double x) { return std::sin(x); }},
      {UnaryOp::Cos,
       0,
       0,
       {-5, 5},
       false,
       [](const Tensor& x) { return cos(x); },
       [](double x) { return std::cos(x); }},
      {UnaryOp::Tanh,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return tanh(x); },
       [](double x) { return std::tanh(x); }},
      {UnaryOp::Sigmoid,
       0,
       0,
       {-6, 6},
       false,
       [](const Tensor& x) { return sigmoid(x); },
       sigmoid_ref},
      {UnaryOp::Erf,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return erf(x); },
       [](double x) { return std::erf(x); }},
      {UnaryOp::Relu,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return relu(x); },
       [](double x) { return x > 0 ? x : 0.0; }},
      {UnaryOp::Silu,
       0,
       0,
       {-6, 6},
       false,
       [](const Tensor& x) { return silu(x); },
       [](double x) { return x * sigmoid_ref(x); }},
      {UnaryOp::GeluErf,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::numbers::sqrt2)); }},
      {UnaryOp::GeluTanh,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return gelu(x, GeluApproximation::Tanh); },
       gelu_tanh},
      {UnaryOp::Elu,
       a,
       0,
       {},
       false,
       [a](const Tensor& x) { return elu(x, a); },
       [a](double x) { return x > 0 ? x : a * std::expm1(x); }},
      {UnaryOp::Selu,
       0,
       0,
       {},
       false,
       [](const Tensor& x) { return selu(x); },
       [](double x) { return kSeluLambda * (x > 0 ? x : kSeluAlpha * std::expm1(x)); }},
      // beta * x crosses the threshold inside the domain: both branches run.
      {UnaryOp::Softplus,
       beta,
       thresh,
       {-9, 9},
       false,
       [=](const Tensor& x) { return softplus(x, beta, thresh); },
       [=](double x) { return beta * x > thresh ? x : std::log1p(std::exp(beta * x)) / beta; }},
      {UnaryOp::PowScalar, 2.5, 0, positive, false, [](const Tensor& x) { return pow(x, 2.5); },
       [](double x) { return std::pow(x, 2.5); }},
      {UnaryOp::Clamp,
       lo,
       hi,
       {},
       false,
       [=](const Tensor& x) { return clamp(x, lo, hi); },
       [=](double x) { return std::min(std::max(x, lo), hi); }},
      {UnaryOp::Affine,
       scale,
       shift,
       {},
       false,
       nullptr,
       [=](double x) { return scale * x + shift; }},
      {UnaryOp::LogicalNot,
       0,
       0,
       {0, 1, 0, true},
       false,
       nullptr,
       [](double x) { return x == 0 ? 1.0 : 0.0; }},
  };
}

TEST_CASE("conformance: unary ops", "[elementwise][unary]") {
  Generator gen(101);
  for (const UnaryCase& c : unary_cases()) {
    const bool logical = c.op == UnaryOp::LogicalNot;
    std::vector<DType> dtypes = logical ? std::vector<DType>{DType::Bool} : float_dtypes();
    if (c.takes_int64) dtypes.push_back(DType::Int64);
    for (const Shape& shape : elementwise_shapes()) {
      for (Layout layout : all_layouts()) {
        if (!layout_applies(layout, shape) || !run_layout(shape, layout)) continue;
        const Tensor values = random_values(shape, c.domain, gen, layout);
        const Tensor ints = random_values(shape, {-20, 20, 0, true}, gen, layout);
        for (DType dtype : dtypes) {
          const bool integral = dtype == DType::Int64;
          Check check{
              .op = op_name(c.op),
              .tol = dtype == DType::Bool || integral ? kExact : kElementwise.for_dtype(dtype),
              .result_dtype = dtype,
              .backward = false};
          const Tensor reference = run_case(
              [&](const std::vector<Tensor>& in) {
                return kernels::unary(c.op, in[0], c.alpha, c.beta);
              },
              {{integral ? ints : values, layout}}, dtype, check);
          if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
            std::vector<double> loop = host_values(values);
            for (double& v : loop) v = c.closed_form(v);
            check_against_loop(check.op, reference, loop, {1e-14, 1e-12});
          }
          if (c.differentiable && is_floating(dtype) && backward_shape(shape, layout)) {
            Check grad_check{.op = std::string(op_name(c.op)) + " (differentiable op)",
                             .tol = kElementwise.for_dtype(dtype),
                             .result_dtype = dtype,
                             .backward = true,
                             .backward_tol = kElementwiseGrad.for_dtype(dtype)};
            run_case([&](const std::vector<Tensor>& in) { return c.differentiable(in[0]); },
                     {{values, layout}}, dtype, grad_check);
          }
        }
      }
    }
  }
}

// --- binary ------------------------------------------------------------------------

enum class Result { Same, Bool };

struct BinaryCase {
  BinaryOp op;
  double alpha = 0, beta = 0;
  Domain a_domain, b_domain;
  std::vector<DType> dtypes;
  Result result = Result::Same;
  std::function<Tensor(const Tensor&, const Tensor&)> differentiable;
  std::function<double(double, double)> closed_form;
};

std::vector<BinaryCase> binary_cases() {
  static_assert(kNumBinaryOps == 25, "add the new binary op to the conformance table");
  const std::vector<DType> floats = {DType::Float32, DType::Float64};
  const std::vector<DType> numbers = {DType::Float32, DType::Float64, DType::Int64};
  const std::vector<DType> all = {DType::Float32, DType::Float64, DType::Int64, DType::Bool};
  const Domain any{}, nonzero{-3, 3, 0.25}, ties{-2, 2, 0, true}, bits{0, 1, 0, true};
  const double a = 1.3, beta = 1.5, thresh = 10;
  auto cmp = [&](BinaryOp op, std::function<double(double, double)> ref) {
    return BinaryCase{op, 0, 0, ties, ties, all, Result::Bool, nullptr, std::move(ref)};
  };
  auto sig = [](double x) { return sigmoid_ref(x); };
  auto gelu_d = [](double x) {
    const double phi = std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi);
    return 0.5 * (1 + std::erf(x / std::numbers::sqrt2)) + x * phi;
  };
  auto gelu_tanh_d = [](double x) {
    const double c = std::sqrt(2 / std::numbers::pi);
    const double inner = c * (x + 0.044715 * x * x * x);
    const double t = std::tanh(inner);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
  };
  return {
      {BinaryOp::Add, 0, 0, any, any, numbers, Result::Same,
       [](const Tensor& x, const Tensor& y) { return add(x, y); },
       [](double x, double y) { return x + y; }},
      {BinaryOp::Sub, 0, 0, any, any, numbers, Result::Same,
       [](const Tensor& x, const Tensor& y) { return sub(x, y); },
       [](double x, double y) { return x - y; }},
      {BinaryOp::Mul, 0, 0, any, any, numbers, Result::Same,
       [](const Tensor& x, const Tensor& y) { return mul(x, y); },
       [](double x, double y) { return x * y; }},
      {BinaryOp::Div, 0, 0, any, nonzero, floats, Result::Same,
       [](const Tensor& x, const Tensor& y) { return div(x, y); },
       [](double x, double y) { return x / y; }},
      {BinaryOp::Maximum, 0, 0, any, any, numbers, Result::Same,
       [](const Tensor& x, const Tensor& y) { return maximum(x, y); },
       [](double x, double y) { return std::max(x, y); }},
      {BinaryOp::Minimum, 0, 0, any, any, numbers, Result::Same,
       [](const Tensor& x, const Tensor& y) { return minimum(x, y); },
       [](double x, double y) { return std::min(x, y); }},
      {BinaryOp::Pow,
       0,
       0,
       {0.1, 3},
       {-2, 2},
       floats,
       Result::Same,
       [](const Tensor& x, const Tensor& y) { return pow(x, y); },
       [](double x, double y) { return std::pow(x, y); }},
      cmp(BinaryOp::Eq, [](double x, double y) { return double(x == y); }),
      cmp(BinaryOp::Ne, [](double x, double y) { return double(x != y); }),
      cmp(BinaryOp::Lt, [](double x, double y) { return double(x < y); }),
      cmp(BinaryOp::Le, [](double x, double y) { return double(x <= y); }),
      cmp(BinaryOp::Gt, [](double x, double y) { return double(x > y); }),
      cmp(BinaryOp::Ge, [](double x, double y) { return double(x >= y); }),
      {BinaryOp::LogicalAnd,
       0,
       0,
       bits,
       bits,
       {DType::Bool},
       Result::Bool,
       nullptr,
       [](double x, double y) { return double(x != 0 && y != 0); }},
      {BinaryOp::LogicalOr,
       0,
       0,
       bits,
       bits,
       {DType::Bool},
       Result::Bool,
       nullptr,
       [](double x, double y) { return double(x != 0 || y != 0); }},
      // The activation derivatives: a is the incoming gradient g, b is x.
      {BinaryOp::ReluGrad, 0, 0, any, any, floats, Result::Same,
       [](const Tensor& g, const Tensor& x) { return relu_grad(g, x); },
       [](double g, double x) { return x > 0 ? g : 0.0; }},
      {BinaryOp::SiluGrad,
       0,
       0,
       any,
       {-6, 6},
       floats,
       Result::Same,
       [](const Tensor& g, const Tensor& x) { return silu_grad(g, x); },
       [=](double g, double x) { return g * sig(x) * (1 + x * (1 - sig(x))); }},
      {BinaryOp::GeluErfGrad, 0, 0, any, any, floats, Result::Same,
       [](const Tensor& g, const Tensor& x) { return gelu_grad(g, x, GeluApproximation::None); },
       [=](double g, double x) { return g * gelu_d(x); }},
      {BinaryOp::GeluTanhGrad, 0, 0, any, any, floats, Result::Same,
       [](const Tensor& g, const Tensor& x) { return gelu_grad(g, x, GeluApproximation::Tanh); },
       [=](double g, double x) { return g * gelu_tanh_d(x); }},
      {BinaryOp::EluGrad, a, 0, any, any, floats, Result::Same,
       [a](const Tensor& g, const Tensor& x) { return elu_grad(g, x, a); },
       [a](double g, double x) { return x > 0 ? g : g * a * std::exp(x); }},
      {BinaryOp::SeluGrad, 0, 0, any, any, floats, Result::Same,
       [](const Tensor& g, const Tensor& x) { return selu_grad(g, x); },
       [](double g, double x) {
         return g * kSeluLambda * (x > 0 ? 1.0 : kSeluAlpha * std::exp(x));
       }},
      {BinaryOp::SoftplusGrad,
       beta,
       thresh,
       any,
       {-9, 9},
       floats,
       Result::Same,
       [=](const Tensor& g, const Tensor& x) { return softplus_grad(g, x, beta, thresh); },
       [=](double g, double x) { return beta * x > thresh ? g : g * sigmoid_ref(beta * x); }},
      // b is the forward output y.
      {BinaryOp::SigmoidGradFromOutput,
       0,
       0,
       any,
       {0.01, 0.99},
       floats,
       Result::Same,
       nullptr,
       [](double g, double y) { return g * y * (1 - y); }},
      {BinaryOp::TanhGradFromOutput,
       0,
       0,
       any,
       {-0.99, 0.99},
       floats,
       Result::Same,
       nullptr,
       [](double g, double y) { return g * (1 - y * y); }},
      // b is y = selu(x) > -lambda * alpha = -1.7581.
      {BinaryOp::SeluGradFromOutput,
       0,
       0,
       any,
       {-1.75, 3},
       floats,
       Result::Same,
       nullptr,
       [](double g, double y) { return g * (y > 0 ? kSeluLambda : y + kSeluLambda * kSeluAlpha); }},
  };
}

// Pairs of shapes, one per broadcasting class.
const std::vector<std::pair<Shape, Shape>>& binary_shapes() {
  static const std::vector<std::pair<Shape, Shape>> pairs = {
      {{}, {}},             // 0-d with 0-d
      {{0}, {0}},           // empty
      {{1}, {1}},           // one element
      {{7}, {7}},           // odd size, same shape
      {{3, 5}, {3, 5}},     // same shape, 2-D
      {{}, {4, 3}},         // scalar with a tensor
      {{4, 3}, {3}},        // a row against a matrix
      {{4, 1}, {1, 5}},     // outer: both sides broadcast
      {{3, 1, 5}, {4, 1}},  // rank mismatch, both broadcast
      {{0, 3}, {1, 3}},     // broadcast into an empty result
      {{2, 3, 4, 5}, {3, 1, 5}},
      {{263, 269}, {263, 269}},  // > 64k elements
      {{263, 269}, {269}},       // > 64k elements, broadcast row
      {{263, 1}, {1, 269}},      // > 64k elements, outer
  };
  return pairs;
}

DType binary_result(const BinaryCase& c, DType in) {
  if (c.result == Result::Bool) return DType::Bool;
  return in;
}

TEST_CASE("conformance: binary ops with broadcasting", "[elementwise][binary]") {
  Generator gen(202);
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [a_shape, b_shape] : binary_shapes()) {
      for (Layout layout : all_layouts()) {
        const Layout la = layout_applies(layout, a_shape) ? layout : Layout::Contiguous;
        const Layout lb = layout_applies(layout, b_shape) ? layout : Layout::Contiguous;
        if (layout != Layout::Contiguous && la == Layout::Contiguous && lb == Layout::Contiguous)
          continue;  // nothing new
        if (!run_layout(kernels::broadcast_shapes(a_shape, b_shape, "conformance"), layout))
          continue;
        const Tensor a = random_values(a_shape, c.a_domain, gen, la);
        const Tensor b = random_values(b_shape, c.b_domain, gen, lb);
        // int64 arithmetic on integers (divisors kept positive); bool on bits.
        const Tensor ai = random_values(a_shape, {-20, 20, 0, true}, gen, la);
        const Tensor bi = random_values(b_shape, {1, 9, 0, true}, gen, lb);
        const Tensor abits = random_values(a_shape, {0, 1, 0, true}, gen, la);
        const Tensor bbits = random_values(b_shape, {0, 1, 0, true}, gen, lb);
        for (DType dtype : c.dtypes) {
          const bool integral = dtype == DType::Int64 && c.result != Result::Bool;
          const bool exact = !is_floating(dtype) || c.result == Result::Bool;
          Check check{.op = op_name(c.op),
                      .tol = exact ? kExact : kElementwise.for_dtype(dtype),
                      .result_dtype = binary_result(c, dtype)};
          const Tensor& x = dtype == DType::Bool ? abits : integral ? ai : a;
          const Tensor& y = dtype == DType::Bool ? bbits : integral ? bi : b;
          const Tensor reference = run_case(
              [&](const std::vector<Tensor>& in) {
                return kernels::binary(c.op, in[0], in[1], c.alpha, c.beta);
              },
              {{x, la}, {y, lb}}, dtype, check);
          if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
            const Shape out = kernels::broadcast_shapes(a_shape, b_shape, "conformance");
            const std::vector<double> av = host_values(contiguous(expand(x, out.vec())));
            const std::vector<double> bv = host_values(contiguous(expand(y, out.vec())));
            std::vector<double> loop(av.size());
            for (size_t i = 0; i < av.size(); ++i) loop[i] = c.closed_form(av[i], bv[i]);
            check_against_loop(check.op, reference, loop, {1e-14, 1e-12});
          }
          const Shape out = kernels::broadcast_shapes(a_shape, b_shape, "conformance");
          if (c.differentiable && is_floating(dtype) && backward_shape(out, layout)) {
            Check grad_check{.op = std::string(op_name(c.op)) + " (differentiable op)",
                             .tol = kElementwise.for_dtype(dtype),
                             .result_dtype = dtype,
                             .backward = true,
                             .backward_tol = kElementwiseGrad.for_dtype(dtype)};
            run_case([&](const std::vector<Tensor>& in) { return c.differentiable(in[0], in[1]); },
                     {{a, la}, {b, lb}}, dtype, grad_check);
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: integer division is true division in float32", "[elementwise][binary]") {
  Generator gen(203);
  for (const auto& [a_shape, b_shape] : binary_shapes()) {
    const Tensor a = random_values(a_shape, {-20, 20, 0, true}, gen);
    const Tensor b = random_values(b_shape, {1, 9, 0, true}, gen);
    run_case([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {{a}, {b}},
             DType::Int64, {.op = "div", .tol = kElementwise.f32, .result_dtype = DType::Float32});
  }
}

// --- where -------------------------------------------------------------------------

TEST_CASE("conformance: where with broadcasting", "[elementwise][where]") {
  struct Shapes {
    Shape cond, a, b;
  };
  const std::vector<Shapes> cases = {
      {{}, {}, {}},          {{0}, {0}, {0}},          {{1}, {1}, {1}},
      {{7}, {7}, {7}},       {{4, 1}, {1, 5}, {}},     {{33, 17}, {17}, {33, 1}},
      {{0, 3}, {1, 3}, {3}}, {{2, 1, 4}, {3, 1}, {4}}, {{263, 269}, {263, 269}, {269}},
  };
  Generator gen(301);
  for (const Shapes& s : cases) {
    for (Layout layout : all_layouts()) {
      const Layout lc = layout_applies(layout, s.cond) ? layout : Layout::Contiguous;
      const Layout la = layout_applies(layout, s.a) ? layout : Layout::Contiguous;
      const Layout lb = layout_applies(layout, s.b) ? layout : Layout::Contiguous;
      if (layout != Layout::Contiguous && lc == la && la == lb && lb == Layout::Contiguous)
        continue;
      if (!run_layout(
              kernels::broadcast_shapes(kernels::broadcast_shapes(s.cond, s.a, "conformance"), s.b,
                                        "conformance"),
              layout))
        continue;
      const Tensor cond = to(random_values(s.cond, {0, 1, 0, true}, gen, lc), DType::Bool);
      for (DType dtype : {DType::Float32, DType::Float64, DType::Int64, DType::Bool}) {
        // Values the dtype holds exactly: reals, integers or bits.
        const Domain domain = dtype == DType::Bool    ? Domain{0, 1, 0, true}
                              : dtype == DType::Int64 ? Domain{-20, 20, 0, true}
                                                      : Domain{};
        const Tensor a = random_values(s.a, domain, gen, la);
        const Tensor b = random_values(s.b, domain, gen, lb);
        const Shape out = kernels::broadcast_shapes(
            kernels::broadcast_shapes(s.cond, s.a, "conformance"), s.b, "conformance");
        // A selection is exact; its gradient sums over broadcast dims.
        Check check{.op = "where",
                    .tol = kExact,
                    .result_dtype = dtype,
                    .backward = backward_shape(out, layout),
                    .backward_tol = kElementwiseGrad.for_dtype(dtype)};
        run_case([](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); },
                 {{cond, lc, false, false}, {a, la}, {b, lb}}, dtype, check);
      }
    }
  }
}

}  // namespace
}  // namespace tide::conformance
