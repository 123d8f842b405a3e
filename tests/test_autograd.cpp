// The reverse-mode engine (autograd/engine.cpp, autograd/node.h): backward and
// grad, accumulation, retain_graph, grad mode, detach, higher-order gradients
// through create_graph, graph shapes (diamonds, deep chains), and the checks
// the engine makes (gradient shapes, in-place modification, freed graphs).
// Expected values are closed-form derivatives computed in the test.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "tensor/kernels.h"
#include "tide.h"

using tide::DType;
using tide::Shape;
using tide::Tensor;

namespace {

Tensor leaf(const std::vector<double>& values, const Shape& shape) {
  return tide::from_vector(values, shape, {.dtype = DType::Float64, .requires_grad = true});
}
Tensor leaf(const std::vector<double>& values) {
  return leaf(values, {static_cast<int64_t>(values.size())});
}
Tensor constant(const std::vector<double>& values) {
  return tide::from_vector(values, {static_cast<int64_t>(values.size())});
}

std::vector<double> values_of(const Tensor& t) {
  return t.to_vector<double>();
}

void require_close(const Tensor& actual, const std::vector<double>& expected, double tol = 1e-12) {
  REQUIRE(actual.defined());
  std::vector<double> got = values_of(actual);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", expected " << expected[i]);
    REQUIRE(std::abs(got[i] - expected[i]) <= tol * (1 + std::abs(expected[i])));
  }
}

// out = x (a copy) with a hand-written backward: the smallest custom op.
Tensor custom_op(const Tensor& x, tide::BackwardFn backward) {
  Tensor out = tide::kernels::clone(x);
  if (tide::needs_grad(x)) tide::record("custom_op", {x}, out, std::move(backward));
  return out;
}

}  // namespace

// ===========================================================================
// backward()
// ===========================================================================

TEST_CASE("autograd: backward of a scalar", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, -2.0, 3.0});
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  REQUIRE(y.dim() == 0);
  backward(y);
  require_close(x.grad(), {2.0, -4.0, 6.0});
  CHECK(x.grad().dtype() == DType::Float64);
  CHECK_FALSE(x.grad().requires_grad());  // plain data without create_graph
  // A one-element tensor of rank 1 counts as a scalar too.
  Tensor z = leaf({2.0});
  backward(mul(z, z));
  require_close(z.grad(), {4.0});
}

TEST_CASE("autograd: backward of a non-scalar needs a gradient", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  Tensor y = mul(x, x);
  REQUIRE_THROWS_AS(backward(y), tide::Error);
  REQUIRE_THROWS_WITH(backward(y), Catch::Contains("not a scalar") && Catch::Contains("[2]"));
  // With an explicit gradient: x.grad = g * 2x.
  backward(y, constant({10.0, -1.0}));
  require_close(x.grad(), {20.0, -4.0});
}

TEST_CASE("autograd: backward checks the gradient and the output", "[autograd][errors]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  Tensor y = mul(x, 3.0);
  REQUIRE_THROWS_AS(backward(y, constant({1.0, 2.0, 3.0})), tide::Error);
  REQUIRE_THROWS_WITH(backward(y, constant({1.0, 2.0, 3.0})), Catch::Contains("does not match") &&
                                                                  Catch::Contains("[3]") &&
                                                                  Catch::Contains("[2]"));
  REQUIRE_THROWS_WITH(backward(y, zeros({2})),  // float32 gradient for a float64 output
                      Catch::Contains("float32") && Catch::Contains("float64"));
  Tensor plain = constant({1.0});
  REQUIRE_THROWS_AS(backward(plain), tide::Error);
  REQUIRE_THROWS_WITH(backward(plain), Catch::Contains("does not require grad"));
}

TEST_CASE("autograd: gradients accumulate into leaves across backward calls", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  backward(sum(mul(x, x)));    // 2x
  backward(sum(mul(x, 3.0)));  // 3
  require_close(x.grad(), {5.0, 7.0});
  // set_grad resets it (as an optimizer's zero_grad would).
  x.set_grad(Tensor());
  CHECK_FALSE(x.grad().defined());
  backward(sum(tide::exp(x)));
  require_close(x.grad(), {std::exp(1.0), std::exp(2.0)});
}

TEST_CASE("autograd: retain_graph allows a second backward", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({0.5, -1.0});
  Tensor y = sum(tide::sin(x));
  backward(y, {}, /*retain_graph=*/true);
  backward(y);
  require_close(x.grad(), {2 * std::cos(0.5), 2 * std::cos(-1.0)});
  // Without retain_graph the graph is freed and a second pass is refused.
  Tensor z = sum(tide::sin(mul(x, x)));
  backward(z);
  REQUIRE_THROWS_AS(backward(z), tide::Error);
  REQUIRE_THROWS_WITH(backward(z), Catch::Contains("freed") && Catch::Contains("retain_graph"));
}

TEST_CASE("autograd: multiple outputs in one backward", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  Tensor a = sum(mul(x, x));  // 2x
  Tensor b = mul(x, 4.0);     // 4 * g
  backward({a, b}, {Tensor(), constant({1.0, 0.5})});
  require_close(x.grad(), {2.0 + 4.0, 4.0 + 2.0});
}

// ===========================================================================
// Grad mode and detach
// ===========================================================================

TEST_CASE("autograd: no-grad guard records nothing", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  REQUIRE(GradMode::is_enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(GradMode::is_enabled());
    Tensor y = mul(tide::exp(x), 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    require_close(y, {2 * std::exp(1.0), 2 * std::exp(2.0)});
    {
      NoGradGuard nested;
      CHECK_FALSE(GradMode::is_enabled());
    }
    CHECK_FALSE(GradMode::is_enabled());  // the nested guard restores "off"
    GradModeGuard enable(true);
    CHECK(mul(x, 2.0).requires_grad());
  }
  CHECK(GradMode::is_enabled());
  CHECK(mul(x, 2.0).requires_grad());
}

TEST_CASE("autograd: detach shares data but not history", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  Tensor h = mul(x, 3.0);
  Tensor d = detach(h);
  CHECK_FALSE(d.requires_grad());
  CHECK(d.grad_fn() == nullptr);
  CHECK(d.storage() == h.storage());
  // No gradient flows through the detached factor: d/dx (x * stop(3x)) = 3x.
  backward(sum(mul(x, d)));
  require_close(x.grad(), {3.0, 6.0});
  // Writes through the detached alias are visible in the original.
  tide::kernels::fill_(d, 0.0);
  require_close(h, {0.0, 0.0});
}

TEST_CASE("autograd: only floating-point tensors can require grad", "[autograd][errors]") {
  using namespace tide;
  Tensor i = tide::tensor({int64_t(1), int64_t(2)});
  REQUIRE_THROWS_AS(i.set_requires_grad(true), tide::Error);
  REQUIRE_THROWS_WITH(i.set_requires_grad(true),
                      Catch::Contains("set_requires_grad") && Catch::Contains("int64"));
  Tensor b = gt(constant({1.0}), 0.0);
  REQUIRE_THROWS_WITH(b.set_requires_grad(true), Catch::Contains("bool"));
  REQUIRE_THROWS_AS(zeros({2}, {.dtype = DType::Int64, .requires_grad = true}), tide::Error);
  // Turning it off on a leaf is fine; on a non-leaf it is refused.
  Tensor x = leaf({1.0});
  x.set_requires_grad(false);
  CHECK_FALSE(x.requires_grad());
  x.set_requires_grad(true);
  Tensor y = mul(x, 2.0);
  REQUIRE_THROWS_WITH(y.set_requires_grad(false), Catch::Contains("non-leaf"));
}

// ===========================================================================
// grad(): the functional API
// ===========================================================================

TEST_CASE("autograd: grad returns gradients without touching .grad", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0}), w = leaf({3.0, -1.0});
  Tensor y = sum(mul(mul(x, x), w));  // dy/dx = 2 x w, dy/dw = x^2
  std::vector<Tensor> g = grad({y}, {x, w});
  REQUIRE(g.size() == 2);
  require_close(g[0], {6.0, -4.0});
  require_close(g[1], {1.0, 4.0});
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  // Only the requested inputs: gradients for w alone.
  Tensor y2 = sum(mul(mul(x, x), w));
  std::vector<Tensor> gw = grad({y2}, {w});
  require_close(gw[0], {1.0, 4.0});
}

TEST_CASE("autograd: grad and unused inputs", "[autograd][errors]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0}), unused = leaf({5.0});
  Tensor y = sum(mul(x, 2.0));
  REQUIRE_THROWS_AS(grad({y}, {x, unused}, {}, {.retain_graph = true}), tide::Error);
  REQUIRE_THROWS_WITH(grad({y}, {x, unused}, {}, {.retain_graph = true}),
                      Catch::Contains("input 1") && Catch::Contains("allow_unused"));
  std::vector<Tensor> g = grad({y}, {x, unused}, {}, {.allow_unused = true});
  require_close(g[0], {2.0, 2.0});
  CHECK_FALSE(g[1].defined());
  // Inputs must require grad.
  Tensor plain = constant({1.0});
  Tensor y3 = sum(mul(x, 2.0));
  REQUIRE_THROWS_WITH(grad({y3}, {plain}), Catch::Contains("does not require grad"));
}

TEST_CASE("autograd: grad of a non-leaf intermediate", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, -2.0});
  Tensor h = tide::exp(x);    // non-leaf
  Tensor y = sum(mul(h, h));  // dy/dh = 2h, dy/dx = 2 h^2
  std::vector<Tensor> g = grad({y}, {h, x}, {}, {.retain_graph = true});
  require_close(g[0], {2 * std::exp(1.0), 2 * std::exp(-2.0)});
  require_close(g[1], {2 * std::exp(2.0), 2 * std::exp(-4.0)});
  // backward() fills leaves only, not intermediates.
  backward(y);
  CHECK_FALSE(h.grad().defined());
  require_close(x.grad(), {2 * std::exp(2.0), 2 * std::exp(-4.0)});
  // The gradient of an output with respect to itself is the seed.
  Tensor z = mul(x, 2.0);
  require_close(grad({z}, {z}, {constant({3.0, 4.0})})[0], {3.0, 4.0});
}

// ===========================================================================
// Higher-order gradients (create_graph)
// ===========================================================================

TEST_CASE("autograd: second derivative of x^3 is 6x", "[autograd][higher-order]") {
  using namespace tide;
  std::vector<double> xs = {-1.5, 0.5, 2.0};
  for (int form = 0; form < 2; ++form) {
    INFO((form == 0 ? "pow(x, 3)" : "x * x * x"));
    Tensor x = leaf(xs);
    Tensor y = form == 0 ? tide::pow(x, 3.0) : mul(mul(x, x), x);
    Tensor dy = grad({sum(y)}, {x}, {}, {.create_graph = true})[0];
    require_close(dy, {3 * 2.25, 3 * 0.25, 3 * 4.0});
    REQUIRE(dy.requires_grad());
    Tensor d2y = grad({sum(dy)}, {x})[0];
    require_close(d2y, {6 * -1.5, 6 * 0.5, 6 * 2.0});
  }
}

TEST_CASE("autograd: Hessian-vector product matches the closed form", "[autograd][higher-order]") {
  using namespace tide;
  // f(x) = (x.x)^2 + sum(sin x): grad = 4 (x.x) x + cos x,
  // H v = 4 (x.x) v + 8 x (x.v) - sin(x) * v.
  std::vector<double> xs = {0.3, -0.7, 1.1}, vs = {1.0, 2.0, -0.5};
  Tensor x = leaf(xs);
  Tensor s = sum(mul(x, x));
  Tensor f = add(mul(s, s), sum(tide::sin(x)));
  Tensor g = grad({f}, {x}, {}, {.create_graph = true})[0];
  double ss = 0, xv = 0;
  for (int i = 0; i < 3; ++i) ss += xs[i] * xs[i], xv += xs[i] * vs[i];
  std::vector<double> expected_g, expected_hv;
  for (int i = 0; i < 3; ++i) {
    expected_g.push_back(4 * ss * xs[i] + std::cos(xs[i]));
    expected_hv.push_back(4 * ss * vs[i] + 8 * xs[i] * xv - std::sin(xs[i]) * vs[i]);
  }
  require_close(g, expected_g);
  Tensor hv = grad({sum(mul(g, constant(vs)))}, {x})[0];
  require_close(hv, expected_hv);
  // The same through backward(create_graph): x.grad keeps its graph.
  Tensor x2 = leaf(xs);
  Tensor s2 = sum(mul(x2, x2));
  backward(add(mul(s2, s2), sum(tide::sin(x2))), {}, false, /*create_graph=*/true);
  Tensor g2 = x2.grad();
  REQUIRE(g2.requires_grad());
  Tensor hv2 = grad({sum(mul(g2, constant(vs)))}, {x2})[0];
  require_close(hv2, expected_hv);
  // x2.grad's graph leads back to x2 (a reference cycle, as in PyTorch):
  // clearing the gradient frees both, which LeakSanitizer checks.
  x2.set_grad(Tensor());
}

TEST_CASE("autograd: third derivative of sin is -cos", "[autograd][higher-order]") {
  using namespace tide;
  std::vector<double> xs = {-2.0, 0.0, 0.4, 3.0};
  Tensor x = leaf(xs);
  Tensor d1 = grad({sum(tide::sin(x))}, {x}, {}, {.create_graph = true})[0];
  Tensor d2 = grad({sum(d1)}, {x}, {}, {.create_graph = true})[0];
  Tensor d3 = grad({sum(d2)}, {x})[0];
  std::vector<double> cos_x, minus_sin_x, minus_cos_x;
  for (double v : xs) {
    cos_x.push_back(std::cos(v));
    minus_sin_x.push_back(-std::sin(v));
    minus_cos_x.push_back(-std::cos(v));
  }
  require_close(d1, cos_x);
  require_close(d2, minus_sin_x);
  require_close(d3, minus_cos_x);
}

// ===========================================================================
// Graph shapes
// ===========================================================================

TEST_CASE("autograd: a tensor used twice sums both contributions", "[autograd]") {
  using namespace tide;
  // Diamond: x -> h -> (exp h, sin h) -> z. dz/dx = (exp h + cos h) * 2x.
  std::vector<double> xs = {0.5, -1.0};
  Tensor x = leaf(xs);
  Tensor h = mul(x, x);
  Tensor z = sum(add(tide::exp(h), tide::sin(h)));
  backward(z);
  std::vector<double> expected;
  for (double v : xs) expected.push_back((std::exp(v * v) + std::cos(v * v)) * 2 * v);
  require_close(x.grad(), expected);
  // The simplest diamond: a leaf used twice in one op.
  Tensor y = leaf({3.0});
  backward(mul(y, y));
  require_close(y.grad(), {6.0});
  // And a leaf used in two separate branches that meet at the end.
  Tensor w = leaf({2.0});
  backward(add(mul(w, 5.0), tide::exp(w)));
  require_close(w.grad(), {5.0 + std::exp(2.0)});
}

TEST_CASE("autograd: a chain of 10000 ops does not overflow the stack", "[autograd]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0});
  Tensor y = x;
  const int n = 10000;
  for (int i = 0; i < n; ++i) y = mul(y, 1.0001);
  backward(sum(y));
  double factor = std::pow(1.0001, n);
  require_close(x.grad(), {factor, factor}, 1e-9);
  // Building and dropping such a chain without running backward is fine too.
  Tensor z = x;
  for (int i = 0; i < n; ++i) z = add(z, 1.0);
  require_close(detach(z), {1.0 + n, 2.0 + n});
}

// ===========================================================================
// Engine checks
// ===========================================================================

TEST_CASE("autograd: a custom backward with a wrong gradient shape is reported",
          "[autograd][errors]") {
  using namespace tide;
  Tensor x = leaf({1.0, 2.0, 3.0});
  Tensor y = custom_op(x, [](const Tensor& g, const Tensor&) -> std::vector<Tensor> {
    return {zeros({2}, {.dtype = DType::Float64})};  // should be [3]
  });
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(std::string(y.grad_fn()->name()) == "custom_op");
  REQUIRE_THROWS_AS(backward(sum(y)), tide::Error);
  Tensor y2 = custom_op(x, [](const Tensor& g, const Tensor&) -> std::vector<Tensor> {
    return {zeros({2}, {.dtype = DType::Float64})};
  });
  REQUIRE_THROWS_WITH(backward(sum(y2)), Catch::Contains("custom_op") && Catch::Contains("[2]") &&
                                             Catch::Contains("[3]"));
  // A wrong dtype is reported the same way.
  Tensor y3 = custom_op(x, [](const Tensor& g, const Tensor&) -> std::vector<Tensor> {
    return {zeros({3})};  // float32 for a float64 input
  });
  REQUIRE_THROWS_WITH(backward(sum(y3)), Catch::Contains("custom_op") &&
                                             Catch::Contains("float32") &&
                                             Catch::Contains("float64"));
  // So is a wrong number of gradients.
  Tensor y4 = custom_op(x, [](const Tensor& g, const Tensor&) -> std::vector<Tensor> {
    return {g, g};
  });
  REQUIRE_THROWS_WITH(backward(sum(y4)),
                      Catch::Contains("custom_op") && Catch::Contains("2 gradients"));
  // A correct custom op works, and gradcheck accepts it.
  auto identity = [](const std::vector<Tensor>& in) {
    return custom_op(in[0],
                     [](const Tensor& g, const Tensor&) -> std::vector<Tensor> { return {g}; });
  };
  CHECK(gradcheck(identity, {leaf({1.0, 2.0})}));
}

TEST_CASE("autograd: gradcheck catches a wrong derivative", "[autograd][gradcheck]") {
  using namespace tide;
  // A custom op out = x with a backward that is off by 10%: the harness the
  // other tests rely on must notice.
  auto wrong = [](const std::vector<Tensor>& in) {
    return custom_op(
        in[0], [](const Tensor& g, const Tensor&) -> std::vector<Tensor> { return {mul(g, 1.1)}; });
  };
  REQUIRE_THROWS_AS(gradcheck(wrong, {leaf({1.0, 2.0})}), tide::Error);
  REQUIRE_THROWS_WITH(gradcheck(wrong, {leaf({1.0, 2.0})}), Catch::Contains("analytic"));
  // A correct first derivative whose backward is not differentiable (it
  // multiplies by a constant made from x's data): gradgradcheck must notice.
  auto cube_no_second = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor out = kernels::unary(UnaryOp::PowScalar, x, 3.0);
    if (needs_grad(x)) {
      Tensor three_x2 = kernels::binary(BinaryOp::Mul, kernels::unary(UnaryOp::Square, x),
                                        kernels::scalar_like(3.0, x));
      record("cube_no_second", {x}, out,
             [three_x2](const Tensor& g, const Tensor&) -> std::vector<Tensor> {
               return {mul(g, three_x2)};
             });
    }
    return out;
  };
  CHECK(gradcheck(cube_no_second, {leaf({0.5, 1.5})}));
  REQUIRE_THROWS_AS(gradgradcheck(cube_no_second, {leaf({0.5, 1.5})}), tide::Error);
}

TEST_CASE("autograd: modifying a saved tensor in place is detected", "[autograd][errors]") {
  using namespace tide;
  Tensor x = leaf({0.5, 1.0});
  Tensor h = mul(x, 2.0);
  Tensor y = sum(tide::sin(h));  // sin saves h for its backward
  kernels::fill_(h, 1.0);        // bumps h's storage version
  REQUIRE_THROWS_AS(backward(y), tide::Error);
  Tensor h2 = mul(x, 2.0);
  Tensor y2 = sum(tide::sin(h2));
  kernels::fill_(h2, 1.0);
  REQUIRE_THROWS_WITH(backward(y2), Catch::Contains("modified in place") && Catch::Contains("sin"));
  // Modifying a leaf that an op saved is caught the same way.
  Tensor w = leaf({1.0, 2.0});
  Tensor y3 = sum(mul(w, w));
  {
    NoGradGuard guard;
    kernels::fill_(w, 3.0);
  }
  REQUIRE_THROWS_WITH(backward(y3), Catch::Contains("modified in place"));
  // Untouched graphs still work.
  Tensor y4 = sum(tide::sin(mul(x, 2.0)));
  backward(y4);
  require_close(x.grad(), {2 * std::cos(1.0), 2 * std::cos(2.0)});
}

TEST_CASE("autograd: leaf gradients do not alias other buffers", "[autograd]") {
  using namespace tide;
  // add's backward may pass the incoming gradient through unchanged; the leaf
  // must still own its .grad, or an optimizer updating one gradient in place
  // would corrupt another.
  Tensor a = leaf({1.0, 2.0}), b = leaf({1.0, 2.0});
  backward(sum(add(a, b)));
  CHECK(a.grad().storage() != b.grad().storage());
  kernels::fill_(a.grad(), 7.0);
  require_close(b.grad(), {1.0, 1.0});
  // The caller's gradient tensor is not adopted as the leaf's .grad either.
  Tensor c = leaf({1.0, 2.0});
  Tensor seed = constant({3.0, 4.0});
  backward(add(c, constant({0.0, 0.0})), seed);
  CHECK(c.grad().storage() != seed.storage());
  kernels::fill_(seed, -1.0);
  require_close(c.grad(), {3.0, 4.0});
  // Nor is the returned gradient of grad() shared with a leaf's .grad.
  Tensor d = leaf({1.0});
  backward(mul(d, 2.0));
  Tensor gd = grad({mul(d, 2.0)}, {d})[0];
  kernels::fill_(gd, 0.0);
  require_close(d.grad(), {2.0});
}

TEST_CASE("autograd: overwriting a saved output before backward is detected", "[autograd]") {
  // exp saves its output y for the backward (dy/dx = y); zeroing y in place
  // would otherwise silently give a zero gradient.
  Tensor x = tide::tensor({1.0, 2.0});
  x.set_requires_grad(true);
  Tensor y = tide::exp(x);
  tide::kernels::fill_(y, 0.0);
  REQUIRE_THROWS_WITH(tide::backward(tide::sum(y)),
                      Catch::Contains("modified in place") && Catch::Contains("exp"));
}
