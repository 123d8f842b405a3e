// In-place updates (autograd/ops_inplace.cpp): values against host loops,
// writes through views, version bumps, and the autograd safety checks.
#include <catch2/catch.hpp>

#include "autograd/ops.h"
#include "tensor/kernels.h"

using namespace tide;
using Catch::Contains;

namespace {

Tensor host_values(const std::vector<double>& values, const Shape& shape) {
  return from_vector(values, shape);
}

std::vector<double> iota_values(int64_t n, double start = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i);
  return v;
}

}  // namespace

TEST_CASE("copy_, fill_ and zero_: values, views and versions", "[inplace]") {
  Tensor x = host_values(iota_values(6), {2, 3});
  uint64_t version = x.storage()->version();

  SECTION("copy_ broadcasts and converts") {
    copy_(x, from_vector(std::vector<float>{7.5f, 8.5f, 9.5f}));  // [3] -> [2, 3]
    REQUIRE(x.to_vector<double>() == std::vector<double>{7.5, 8.5, 9.5, 7.5, 8.5, 9.5});
    REQUIRE(x.storage()->version() > version);
    Tensor i = zeros({3}, {.dtype = DType::Int64});
    copy_(i, from_vector(std::vector<double>{1.0, 2.0, -3.0}));
    REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, 2, -3});
    REQUIRE_THROWS_AS(copy_(x, zeros({2})), Error);
    REQUIRE_THROWS_WITH(copy_(x, zeros({2})), Contains("copy_") && Contains("[2, 3]"));
  }
  SECTION("copy_ into a non-contiguous view writes the base") {
    Tensor column = select(transpose(x, 0, 1), 0, 1);  // x[:, 1]
    copy_(column, from_vector(std::vector<double>{-1, -2}));
    REQUIRE(x.to_vector<double>() == std::vector<double>{0, -1, 2, 3, -2, 5});
  }
  SECTION("copy_ from an overlapping view of the same storage") {
    // Shift right by one: x[:, 1:] = x[:, :2]. Must read before writing.
    copy_(slice(x, 1, 1, 3), slice(x, 1, 0, 2));
    REQUIRE(x.to_vector<double>() == std::vector<double>{0, 0, 1, 3, 3, 4});
  }
  SECTION("fill_ and zero_ on views") {
    fill_(slice(x, 1, 0, 3, 2), 4.25);
    REQUIRE(x.to_vector<double>() == std::vector<double>{4.25, 1, 4.25, 4.25, 4, 4.25});
    uint64_t before = x.storage()->version();
    zero_(select(x, 0, 1));
    REQUIRE(x.to_vector<double>() == std::vector<double>{4.25, 1, 4.25, 0, 0, 0});
    REQUIRE(x.storage()->version() > before);
  }
  SECTION("an expanded view cannot be written") {
    Tensor e = expand(zeros({1, 3}), {2, 3});
    REQUIRE_THROWS_AS(fill_(e, 1), Error);
    REQUIRE_THROWS_WITH(fill_(e, 1),
                        Contains("fill_: cannot write into float32[2, 3]") && Contains("stride 0"));
    REQUIRE_THROWS_WITH(add_(e, ones({3})), Contains("add_") && Contains("stride 0"));
  }
}

TEST_CASE("add_ and mul_: values against host loops", "[inplace]") {
  std::vector<double> xv = iota_values(6, 1);
  Tensor x = host_values(xv, {2, 3});

  SECTION("add_ with alpha and a broadcast source") {
    std::vector<double> sv{0.5, -1.0, 2.0};
    add_(x, from_vector(sv, {3}), -2.0);
    std::vector<double> r = x.to_vector<double>();
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) REQUIRE(r[i * 3 + j] == xv[i * 3 + j] - 2.0 * sv[j]);
  }
  SECTION("add_ into a transposed view") {
    Tensor t = transpose(x, 0, 1);  // [3, 2]
    add_(t, from_vector(std::vector<double>{10, 20}, {1, 2}));
    std::vector<double> r = x.to_vector<double>();
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) REQUIRE(r[i * 3 + j] == xv[i * 3 + j] + 10.0 * (i + 1));
  }
  SECTION("add_ of x to itself") {
    add_(x, x, 0.5);
    std::vector<double> r = x.to_vector<double>();
    for (size_t i = 0; i < r.size(); ++i) REQUIRE(r[i] == 1.5 * xv[i]);
  }
  SECTION("mixed dtypes") {
    Tensor f = zeros({2}, {.dtype = DType::Float32});
    add_(f, from_vector(std::vector<double>{0.25, 1.5}));  // float64 into float32 is fine
    REQUIRE(f.to_vector<double>() == std::vector<double>{0.25, 1.5});
    Tensor i = from_vector(std::vector<int64_t>{1, 2, 3});
    add_(i, from_vector(std::vector<int64_t>{5, 5, 5}), 3);
    REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{16, 17, 18});
    mul_(i, -2);
    REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{-32, -34, -36});
    REQUIRE_THROWS_AS(add_(i, from_vector(std::vector<double>{0.5, 0.5, 0.5})), Error);
    REQUIRE_THROWS_WITH(add_(i, from_vector(std::vector<double>{0.5, 0.5, 0.5})),
                        Contains("add_: the result has dtype float64") && Contains("int64[3]"));
    REQUIRE_THROWS_WITH(mul_(i, 0.5), Contains("mul_: the result has dtype float32"));
    REQUIRE_THROWS_WITH(add_(zeros({2}, {.dtype = DType::Bool}), ones({2})),
                        Contains("add_: cannot add into the bool tensor"));
  }
  SECTION("mul_ on a view") {
    uint64_t before = x.storage()->version();
    mul_(slice(x, 0, 1, 2), 3.0);
    std::vector<double> r = x.to_vector<double>();
    for (size_t i = 0; i < r.size(); ++i) REQUIRE(r[i] == (i >= 3 ? 3.0 : 1.0) * xv[i]);
    REQUIRE(x.storage()->version() > before);
  }
  SECTION("shape errors") {
    REQUIRE_THROWS_AS(add_(x, ones({2, 2}, {.dtype = DType::Float64})), Error);
    REQUIRE_THROWS_WITH(add_(x, ones({2, 2}, {.dtype = DType::Float64})),
                        Contains("add_: shapes [2, 3] and [2, 2] cannot be broadcast"));
    // src may not be larger than dst: the result would not fit.
    REQUIRE_THROWS_WITH(add_(x, ones({4, 2, 3}, {.dtype = DType::Float64})),
                        Contains("add_: cannot add float64[4, 2, 3] into float64[2, 3]"));
  }
}

TEST_CASE("in-place ops refuse tensors that take part in autograd", "[inplace][grad]") {
  Tensor p = ones({3}, {.dtype = DType::Float64, .requires_grad = true});
  Tensor g = from_vector(std::vector<double>{1, 2, 3});

  REQUIRE_THROWS_AS(add_(p, g), Error);
  REQUIRE_THROWS_WITH(
      add_(p, g),
      Contains("add_: in-place update of a tensor that requires grad") && Contains("NoGradGuard"));
  REQUIRE_THROWS_WITH(copy_(p, g),
                      Contains("copy_: in-place update of a tensor that requires grad"));
  REQUIRE_THROWS_WITH(fill_(p, 0),
                      Contains("fill_: in-place update of a tensor that requires grad"));
  REQUIRE_THROWS_WITH(zero_(p), Contains("zero_: in-place update of a tensor that requires grad"));
  REQUIRE_THROWS_WITH(mul_(p, 2), Contains("mul_: in-place update of a tensor that requires grad"));
  // A view of p computed with grad mode on requires grad as well.
  REQUIRE_THROWS_WITH(fill_(slice(p, 0, 0, 1), 0), Contains("fill_: in-place update"));
  // Copying a tensor that requires grad would silently cut its graph.
  Tensor plain = zeros({3}, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(copy_(plain, p), Contains("copy_: the source float64[3] requires grad"));
  REQUIRE(p.to_vector<double>() == std::vector<double>{1, 1, 1});  // nothing was written

  SECTION("an optimizer-style update under NoGradGuard") {
    {
      NoGradGuard no_grad;
      add_(p, g, -0.5);  // p -= lr * g
      mul_(p, 2.0);
    }
    REQUIRE(p.to_vector<double>() == std::vector<double>{1.0, 0.0, -1.0});
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
  }
  SECTION("zeroing an accumulated gradient") {
    backward(sum(mul(p, g)));
    Tensor grad = p.grad();
    REQUIRE(grad.to_vector<double>() == std::vector<double>{1, 2, 3});
    zero_(grad);  // gradients do not require grad themselves
    REQUIRE(p.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
  }
}

TEST_CASE("backward detects a saved tensor modified in place", "[inplace][grad]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3});
  Tensor w = from_vector(std::vector<double>{4, 5, 6});
  w.set_requires_grad(true);

  SECTION("direct modification") {
    Tensor y = mul(x, w);  // saves x for w's gradient
    {
      NoGradGuard no_grad;
      add_(x, ones({3}, {.dtype = DType::Float64}));
    }
    REQUIRE_THROWS_AS(backward(sum(y)), Error);
    REQUIRE_THROWS_WITH(backward(sum(y)), Contains("modified in place") && Contains("mul"));
  }
  SECTION("modification through another view of the same storage") {
    Tensor y = mul(reshape(x, {3}), w);
    fill_(slice(x, 0, 1, 2), 0.0);  // x does not require grad: allowed, but bumps the version
    REQUIRE_THROWS_WITH(backward(sum(y)), Contains("modified in place"));
  }
  SECTION("without modification the gradient is x") {
    Tensor y = mul(x, w);
    backward(sum(y));
    REQUIRE(w.grad().to_vector<double>() == std::vector<double>{1, 2, 3});
  }
}
