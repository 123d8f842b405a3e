// needs_input_grad(i) (autograd/node.h): a backward closure learns which of its
// inputs' gradients the engine will use, so it can skip the others.
#include <catch2/catch.hpp>

#include <vector>

#include "autograd/ops.h"

using namespace tide;

namespace {

// y = a * b, recorded with a closure that writes down what it was told.
Tensor spy_mul(const Tensor& a, const Tensor& b, std::vector<bool>& seen) {
  Tensor out = mul(detach(a), detach(b));
  if (needs_grad(a, b)) {
    record("spy_mul", {a, b}, out, [a, b, &seen](const Tensor& g, const Tensor&) {
      seen = {needs_input_grad(0), needs_input_grad(1)};
      return std::vector<Tensor>{needs_input_grad(0) ? mul(g, b) : Tensor(),
                                 needs_input_grad(1) ? mul(g, a) : Tensor()};
    });
  }
  return out;
}

}  // namespace

TEST_CASE("needs_input_grad tells a backward which gradients are used", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3});
  Tensor w = from_vector(std::vector<double>{4, 5, 6}, {3});
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  std::vector<bool> seen;

  // backward(): every leaf accumulates, so both are needed.
  backward(sum(spy_mul(x, w, seen)));
  CHECK(seen == std::vector<bool>{true, true});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 5, 6});

  // grad() with respect to x alone: w's gradient is not computed.
  Tensor gx = grad({sum(spy_mul(x, w, seen))}, {x})[0];
  CHECK(seen == std::vector<bool>{true, false});
  CHECK(gx.to_vector<double>() == std::vector<double>{4, 5, 6});
  Tensor gw = grad({sum(spy_mul(x, w, seen))}, {w})[0];
  CHECK(seen == std::vector<bool>{false, true});
  CHECK(gw.to_vector<double>() == std::vector<double>{1, 2, 3});

  // An input that does not require grad is never needed.
  Tensor c = from_vector(std::vector<double>{7, 8, 9}, {3});
  Tensor gw2 = grad({sum(spy_mul(c, w, seen))}, {w})[0];
  CHECK(seen == std::vector<bool>{false, true});
  CHECK(gw2.to_vector<double>() == std::vector<double>{7, 8, 9});

  // Through an intermediate op: d/dx of sum((x * w) * w) still skips w.
  Tensor h = mul(x, w);
  Tensor gx2 = grad({sum(spy_mul(h, w, seen))}, {x})[0];
  CHECK(seen == std::vector<bool>{true, false});
  CHECK(gx2.to_vector<double>() == std::vector<double>{16, 25, 36});

  // Outside a backward pass every input counts as needed.
  CHECK(needs_input_grad(0));
  CHECK(needs_input_grad(100));
}

TEST_CASE("linear skips the weight gradient when only the input's is asked for",
          "[autograd][linear]") {
  // Same values either way; checked against a float64 closed form: for
  // y = x W^T + b, d sum(y) / dx = column sums of W, for every row.
  Generator gen(1);
  Tensor x = randn({4, 3}, gen, {.dtype = DType::Float64, .requires_grad = true});
  Tensor w = randn({2, 3}, gen, {.dtype = DType::Float64, .requires_grad = true});
  Tensor b = randn({2}, gen, {.dtype = DType::Float64, .requires_grad = true});
  Tensor gx = grad({sum(linear(x, w, b))}, {x})[0];
  std::vector<double> wv = w.to_vector<double>(), gv = gx.to_vector<double>();
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 3; ++k) CHECK(gv[r * 3 + k] == Approx(wv[k] + wv[3 + k]).epsilon(1e-15));
  CHECK_FALSE(w.grad().defined());
}
