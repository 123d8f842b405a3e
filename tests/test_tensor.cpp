// Tensors themselves: creation functions (tensor/creation.h), dtype
// conversions, copies and element access (tensor/tensor.h), the random
// generator and its distributions, and printing (tensor/print.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/kernels.h"
#include "tide.h"

using tide::DType;
using tide::Generator;
using tide::Shape;
using tide::Tensor;

namespace {

std::vector<double> values_of(const Tensor& t) {
  return t.to_vector<double>();
}

void require_close(const Tensor& actual, const std::vector<double>& expected, double tol) {
  std::vector<double> got = values_of(actual);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", expected " << expected[i]);
    REQUIRE(std::abs(got[i] - expected[i]) <= tol);
  }
}

// Sample mean and (population) variance, accumulated in double.
struct Moments {
  double mean = 0, var = 0;
};
Moments moments(const std::vector<double>& xs) {
  Moments m;
  for (double x : xs) m.mean += x;
  m.mean /= static_cast<double>(xs.size());
  for (double x : xs) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(xs.size());
  return m;
}

// Restores the thread count when a test that changes it ends (or fails).
struct ThreadCountGuard {
  int saved = tide::get_num_threads();
  ~ThreadCountGuard() { tide::set_num_threads(saved); }
};

}  // namespace

// ===========================================================================
// Creation
// ===========================================================================

TEST_CASE("tensor: zeros, ones, full and the _like variants", "[tensor][creation]") {
  using namespace tide;
  Tensor z = zeros({2, 3});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.device() == Device::cpu());
  CHECK(z.is_contiguous());
  CHECK_FALSE(z.requires_grad());
  CHECK(values_of(z) == std::vector<double>(6, 0.0));
  CHECK(values_of(ones({4}, {.dtype = DType::Int64})) == std::vector<double>(4, 1.0));
  Tensor f = full({3, 1}, -2.5, {.dtype = DType::Float64});
  CHECK(f.dtype() == DType::Float64);
  CHECK(values_of(f) == std::vector<double>(3, -2.5));
  CHECK(full({2}, 3.0, {.dtype = DType::Bool}).to_vector<bool>() == std::vector<bool>{true, true});
  Tensor g = zeros({2}, {.dtype = DType::Float64, .requires_grad = true});
  CHECK(g.requires_grad());
  CHECK(g.is_leaf());
  // _like copies shape and dtype but not requires_grad.
  Tensor like = full_like(g, 4.0);
  CHECK(like.shape() == g.shape());
  CHECK(like.dtype() == DType::Float64);
  CHECK_FALSE(like.requires_grad());
  CHECK(values_of(like) == std::vector<double>{4, 4});
  CHECK(values_of(ones_like(g)) == std::vector<double>{1, 1});
  CHECK(values_of(zeros_like(f)) == std::vector<double>{0, 0, 0});
  CHECK(empty_like(f).shape() == f.shape());
  Tensor s = scalar(1.5, {.dtype = DType::Float64});
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 1.5);
}

TEST_CASE("tensor: arange", "[tensor][creation]") {
  using namespace tide;
  Tensor a = arange(5);
  CHECK(a.dtype() == DType::Float32);
  CHECK(values_of(a) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(2, 8, 2, {.dtype = DType::Int64}).to_vector<int64_t>() ==
        std::vector<int64_t>{2, 4, 6});
  // The end is excluded even when the step lands on it.
  CHECK(values_of(arange(0, 6, 2)) == std::vector<double>{0, 2, 4});
  // Fractional steps: value i is start + i * step, count ceil((end - start) / step).
  require_close(arange(1, 2, 0.25, {.dtype = DType::Float64}), {1, 1.25, 1.5, 1.75}, 0);
  Tensor tenth = arange(0, 1, 0.1, {.dtype = DType::Float64});
  REQUIRE(tenth.numel() == 10);
  for (int i = 0; i < 10; ++i) CHECK(values_of(tenth)[i] == Approx(0.1 * i).margin(1e-15));
  // Negative steps count down.
  require_close(arange(5, 0, -1.5, {.dtype = DType::Float64}), {5, 3.5, 2, 0.5}, 0);
  CHECK(arange(3, -1, -1, {.dtype = DType::Int64}).to_vector<int64_t>() ==
        std::vector<int64_t>{3, 2, 1, 0});
  // An empty range gives an empty tensor, not an error.
  CHECK(arange(3, 1).numel() == 0);
  CHECK(arange(0, 5, -1).numel() == 0);
  REQUIRE_THROWS_AS(arange(0, 5, 0), tide::Error);
  REQUIRE_THROWS_WITH(arange(0, 5, 0), Catch::Contains("arange") && Catch::Contains("step=0"));
  REQUIRE_THROWS_WITH(arange(0, INFINITY, 1), Catch::Contains("arange"));
}

TEST_CASE("tensor: linspace includes both endpoints", "[tensor][creation]") {
  using namespace tide;
  Tensor l = linspace(-1, 2, 7, {.dtype = DType::Float64});
  REQUIRE(l.numel() == 7);
  std::vector<double> v = values_of(l);
  CHECK(v.front() == -1.0);
  CHECK(v.back() == 2.0);
  for (int i = 0; i < 7; ++i) CHECK(v[i] == Approx(-1 + 0.5 * i).margin(1e-15));
  // Endpoints are exact even where start + i * step would round differently.
  std::vector<double> w = values_of(linspace(0.1, 0.7, 13, {.dtype = DType::Float64}));
  CHECK(w.front() == 0.1);
  CHECK(w.back() == 0.7);
  for (int i = 0; i < 13; ++i) CHECK(w[i] == Approx(0.1 + 0.05 * i).margin(1e-15));
  // Decreasing ranges, a single step, and no steps.
  require_close(linspace(3, 1, 5, {.dtype = DType::Float64}), {3, 2.5, 2, 1.5, 1}, 1e-15);
  CHECK(values_of(linspace(4, 9, 1)) == std::vector<double>{4});
  CHECK(linspace(0, 1, 0).numel() == 0);
  CHECK(linspace(0, 1, 3).dtype() == DType::Float32);
  REQUIRE_THROWS_AS(linspace(0, 1, -2), tide::Error);
  REQUIRE_THROWS_WITH(linspace(0, 1, -2), Catch::Contains("linspace") && Catch::Contains("-2"));
}

TEST_CASE("tensor: eye, square and rectangular", "[tensor][creation]") {
  using namespace tide;
  Tensor i3 = eye(3);
  CHECK(i3.shape() == Shape{3, 3});
  CHECK(values_of(i3) == std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  CHECK(values_of(eye(2, 3)) == std::vector<double>{1, 0, 0, 0, 1, 0});
  CHECK(values_of(eye(3, 2)) == std::vector<double>{1, 0, 0, 1, 0, 0});
  CHECK(eye(2, 3).shape() == Shape{2, 3});
  CHECK(eye(2, {.dtype = DType::Int64}).dtype() == DType::Int64);
  CHECK(eye(0, 4).numel() == 0);
  REQUIRE_THROWS_AS(eye(-1, 2), tide::Error);
  REQUIRE_THROWS_WITH(eye(-1, 2), Catch::Contains("eye"));
}

TEST_CASE("tensor: from_vector and tensor()", "[tensor][creation]") {
  using namespace tide;
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(a.dtype() == DType::Float64);
  CHECK(a.shape() == Shape{2, 3});
  CHECK(a.data_ptr<double>()[4] == 5.0);
  CHECK(from_vector(std::vector<int64_t>{7, 8}).dtype() == DType::Int64);
  CHECK(from_vector(std::vector<bool>{true, false}).dtype() == DType::Bool);
  CHECK(from_vector(std::vector<float>{0.5f}).shape() == Shape{1});
  // An explicit dtype converts.
  Tensor c = from_vector(std::vector<double>{1.9, -1.9}, {2}, {.dtype = DType::Int64});
  CHECK(c.to_vector<int64_t>() == std::vector<int64_t>{1, -1});
  Tensor r =
      from_vector(std::vector<float>{1, 2}, {2}, {.dtype = DType::Float32, .requires_grad = true});
  CHECK(r.requires_grad());
  REQUIRE_THROWS_AS(from_vector(std::vector<double>{1, 2, 3}, {2, 2}), tide::Error);
  REQUIRE_THROWS_WITH(from_vector(std::vector<double>{1, 2, 3}, {2, 2}),
                      Catch::Contains("from_vector") && Catch::Contains("[2, 2]"));
  // tensor(): 1-D by default, or an explicit shape.
  Tensor t = tide::tensor({1.0f, 2.0f, 3.0f});
  CHECK(t.dtype() == DType::Float32);
  CHECK(t.shape() == Shape{3});
  Tensor t2 = tide::tensor({1.0, 2.0, 3.0, 4.0}, {2, 2});
  CHECK(t2.dtype() == DType::Float64);
  CHECK(t2.shape() == Shape{2, 2});
  CHECK(values_of(t2) == std::vector<double>{1, 2, 3, 4});
  CHECK(tide::tensor({int64_t(5), int64_t(6)}).dtype() == DType::Int64);
  // Data is copied, not referenced.
  std::vector<double> host = {1, 2};
  Tensor copy = from_vector(host);
  host[0] = 100;
  CHECK(values_of(copy) == std::vector<double>{1, 2});
}

TEST_CASE("tensor: shape errors", "[tensor][errors]") {
  using namespace tide;
  REQUIRE_THROWS_AS(zeros({2, -1}), tide::Error);
  REQUIRE_THROWS_WITH(zeros({2, -1}), Catch::Contains("negative") && Catch::Contains("[2, -1]"));
  REQUIRE_THROWS_WITH(ones({-3}), Catch::Contains("[-3]"));
  // More than kMaxDims (8) dims.
  REQUIRE_THROWS_AS(Shape({1, 1, 1, 1, 1, 1, 1, 1, 1}), tide::Error);
  REQUIRE_THROWS_WITH(zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}), Catch::Contains("8"));
  CHECK(zeros({1, 1, 1, 1, 1, 1, 1, 2}).numel() == 2);  // exactly 8 is fine
  // Shapes whose element count overflows are refused, not allocated.
  int64_t huge = int64_t(1) << 40;
  REQUIRE_THROWS_AS(zeros({huge, huge}), tide::Error);
}

// ===========================================================================
// Conversions, copies and element access
// ===========================================================================

TEST_CASE("tensor: dtype conversions", "[tensor][dtype]") {
  using namespace tide;
  Tensor f = tide::tensor({-2.7, -0.5, 0.0, 0.5, 1.0, 2.9, 1e10});
  // float -> int64 truncates toward zero (C++ and PyTorch semantics).
  CHECK(to(f, DType::Int64).to_vector<int64_t>() ==
        std::vector<int64_t>{-2, 0, 0, 0, 1, 2, 10000000000});
  // float -> bool: anything non-zero is true.
  CHECK(to(f, DType::Bool).to_vector<bool>() ==
        std::vector<bool>{true, true, false, true, true, true, true});
  // bool -> numbers: 0 and 1.
  Tensor b = from_vector(std::vector<bool>{true, false});
  CHECK(values_of(to(b, DType::Float32)) == std::vector<double>{1, 0});
  CHECK(to(b, DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  // int64 -> float64 is exact below 2^53; float64 -> float32 rounds to nearest.
  int64_t big = (int64_t(1) << 52) + 1;
  CHECK(to(tide::tensor({big}), DType::Float64).item() == static_cast<double>(big));
  Tensor third = to(tide::tensor({1.0 / 3.0}), DType::Float32);
  CHECK(third.dtype() == DType::Float32);
  CHECK(third.item() == static_cast<double>(1.0f / 3.0f));
  // int64 -> bool and back.
  Tensor i = tide::tensor({int64_t(0), int64_t(-4), int64_t(9)});
  CHECK(to(i, DType::Bool).to_vector<bool>() == std::vector<bool>{false, true, true});
  // Converting to the same dtype returns the same tensor (no copy).
  CHECK(tide::kernels::to_dtype(f, DType::Float64).impl() == f.impl());
  // A non-contiguous source converts element by element.
  Tensor m = tide::tensor({1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, {2, 3});
  Tensor mt = to(transpose(m, 0, 1), DType::Int64);
  CHECK(mt.shape() == Shape{3, 2});
  CHECK(mt.to_vector<int64_t>() == std::vector<int64_t>{1, 4, 2, 5, 3, 6});
}

TEST_CASE("tensor: contiguous and clone", "[tensor]") {
  using namespace tide;
  Tensor m = tide::tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3});
  CHECK(contiguous(m).storage() == m.storage());  // already contiguous: no copy
  Tensor t = transpose(m, 0, 1);
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.strides() == Shape{1, 3});
  CHECK(t.storage() == m.storage());  // a view
  Tensor c = contiguous(t);
  CHECK(c.is_contiguous());
  CHECK(c.strides() == Shape{2, 1});
  CHECK(c.storage() != m.storage());
  CHECK(values_of(c) == std::vector<double>{1, 4, 2, 5, 3, 6});
  // clone always copies, even a contiguous tensor.
  Tensor k = clone(m);
  CHECK(k.storage() != m.storage());
  kernels::fill_(k, 0.0);
  CHECK(values_of(m) == std::vector<double>{1, 2, 3, 4, 5, 6});
  // A view writes through to its base.
  kernels::fill_(select(m, 0, 1), -1.0);
  CHECK(values_of(m) == std::vector<double>{1, 2, 3, -1, -1, -1});
}

TEST_CASE("tensor: item and to_vector", "[tensor]") {
  using namespace tide;
  CHECK(scalar(2.5).item() == 2.5);
  CHECK(tide::tensor({int64_t(-7)}).item<int64_t>() == -7);
  CHECK(zeros({1, 1, 1}).item() == 0.0);
  CHECK(gt(scalar(1.0), 0.0).item<bool>());
  REQUIRE_THROWS_AS(zeros({2}).item(), tide::Error);
  REQUIRE_THROWS_WITH(zeros({2, 3}).item(), Catch::Contains("item") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(zeros({0}).item(), Catch::Contains("item"));
  REQUIRE_THROWS_WITH(Tensor().item(), Catch::Contains("undefined"));
  // An element of a strided view.
  Tensor m = tide::tensor({1.0, 2.0, 3.0, 4.0}, {2, 2});
  CHECK(select(select(m, 1, 1), 0, 0).item() == 2.0);
  // to_vector converts and follows strides.
  CHECK(transpose(m, 0, 1).to_vector<float>() == std::vector<float>{1, 3, 2, 4});
  CHECK(m.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4});
  // data_ptr checks the element type.
  REQUIRE_THROWS_WITH(m.data_ptr<float>(),
                      Catch::Contains("float64") && Catch::Contains("float32"));
}

TEST_CASE("tensor: empty tensors", "[tensor]") {
  using namespace tide;
  Tensor e = zeros({0, 3});
  CHECK(e.numel() == 0);
  CHECK(e.shape() == Shape{0, 3});
  CHECK(e.to_vector<double>().empty());
  Tensor sum_e = add(e, ones({3}));  // broadcasting with an empty dim
  CHECK(sum_e.shape() == Shape{0, 3});
  CHECK(tide::exp(e).numel() == 0);
  CHECK(clone(e).numel() == 0);
  CHECK(contiguous(transpose(e, 0, 1)).shape() == Shape{3, 0});
  CHECK(to(e, DType::Int64).numel() == 0);
  CHECK(from_vector(std::vector<double>{}).shape() == Shape{0});
  CHECK(arange(0).numel() == 0);
}

// ===========================================================================
// The generator and random tensors
// ===========================================================================

TEST_CASE("tensor: the same seed gives the same numbers", "[tensor][random]") {
  using namespace tide;
  Generator g1(42), g2(42), g3(43);
  std::vector<double> a = values_of(rand({1000}, g1));
  std::vector<double> b = values_of(rand({1000}, g2));
  std::vector<double> c = values_of(rand({1000}, g3));
  CHECK(a == b);
  CHECK(a != c);
  // Each call advances the stream: the next draw is new.
  std::vector<double> a2 = values_of(rand({1000}, g1));
  CHECK(a2 != a);
  CHECK(g1.state().offset == 2000);
  // manual_seed restarts the stream.
  g1.manual_seed(42);
  CHECK(values_of(rand({1000}, g1)) == a);
  // Draws are positional: two draws of 500 equal one draw of 1000.
  Generator h(42);
  std::vector<double> first = values_of(rand({500}, h));
  std::vector<double> second = values_of(rand({500}, h));
  first.insert(first.end(), second.begin(), second.end());
  CHECK(first == a);
  // The default generator is seeded through tide::manual_seed.
  manual_seed(7);
  std::vector<double> d1 = values_of(rand({10}, default_generator()));
  manual_seed(7);
  CHECK(values_of(rand({10}, default_generator())) == d1);
}

TEST_CASE("tensor: saving and restoring the generator state reproduces a run", "[tensor][random]") {
  using namespace tide;
  Generator g(2024);
  (void)randn({37}, g);
  GeneratorState saved = g.state();
  std::vector<double> n1 = values_of(randn({100}, g, {.dtype = DType::Float64}));
  std::vector<int64_t> i1 = randint(0, 50, {20}, g).to_vector<int64_t>();
  std::vector<int64_t> p1 = randperm(30, g).to_vector<int64_t>();
  CHECK(g.state() != saved);
  g.set_state(saved);
  CHECK(g.state() == saved);
  CHECK(values_of(randn({100}, g, {.dtype = DType::Float64})) == n1);
  CHECK(randint(0, 50, {20}, g).to_vector<int64_t>() == i1);
  CHECK(randperm(30, g).to_vector<int64_t>() == p1);
  // A second generator given the saved state continues identically.
  Generator other;
  other.set_state(saved);
  CHECK(values_of(randn({100}, other, {.dtype = DType::Float64})) == n1);
}

TEST_CASE("tensor: random results do not depend on the thread count", "[tensor][random]") {
  using namespace tide;
  ThreadCountGuard restore;
  // Large enough to be split across threads.
  auto draw = [](int threads) {
    set_num_threads(threads);
    Generator g(99);
    std::vector<std::vector<double>> out;
    out.push_back(values_of(rand({100000}, g)));
    out.push_back(values_of(randn({100000}, g, {.dtype = DType::Float64})));
    out.push_back(values_of(randint(-5, 5, {100000}, g)));
    out.push_back(values_of(bernoulli({100000}, 0.3, g)));
    // A large float32 sum must also be the same (fixed blocking).
    out.push_back(values_of(sum(rand({100000}, g))));
    return out;
  };
  auto one = draw(1);
  auto two = draw(2);
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("draw " << i);
    CHECK(one[i] == two[i]);
  }
  REQUIRE_THROWS_AS(set_num_threads(0), tide::Error);
  REQUIRE_THROWS_WITH(set_num_threads(0), Catch::Contains("set_num_threads"));
}

TEST_CASE("tensor: rand and uniform draw uniformly from a half-open interval", "[tensor][random]") {
  using namespace tide;
  const int64_t n = 100000;
  Generator g(1);
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO("dtype " << dtype_name(dtype));
    Tensor u = rand({n}, g, {.dtype = dtype});
    CHECK(u.dtype() == dtype);
    std::vector<double> v = values_of(u);
    CHECK(*std::min_element(v.begin(), v.end()) >= 0.0);
    CHECK(*std::max_element(v.begin(), v.end()) < 1.0);
    // U(0, 1): mean 1/2 with sd sqrt(1/12 / n); variance 1/12 with sd of
    // the estimate sqrt((1/80 - 1/144) / n) (fourth central moment 1/80).
    Moments m = moments(v);
    CHECK(std::abs(m.mean - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
    CHECK(std::abs(m.var - 1.0 / 12) < 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / n));
    // Ten equal bins each hold n/10 +- 5 binomial sd.
    std::vector<int64_t> bins(10, 0);
    for (double x : v) ++bins[static_cast<size_t>(x * 10)];
    for (int64_t count : bins) CHECK(std::abs(count - n / 10) < 5 * std::sqrt(n * 0.1 * 0.9));
  }
  // uniform(low, high): scaled and shifted.
  std::vector<double> w = values_of(uniform({n}, -3, 5, g, {.dtype = DType::Float64}));
  CHECK(*std::min_element(w.begin(), w.end()) >= -3.0);
  CHECK(*std::max_element(w.begin(), w.end()) < 5.0);
  Moments mw = moments(w);
  CHECK(std::abs(mw.mean - 1.0) < 5 * std::sqrt(64.0 / 12 / n));
  // A degenerate interval gives its one value.
  CHECK(values_of(uniform({3}, 2, 2, g)) == std::vector<double>{2, 2, 2});
}

TEST_CASE("tensor: randn and normal have the requested moments", "[tensor][random]") {
  using namespace tide;
  const int64_t n = 100000;
  Generator g(5);
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO("dtype " << dtype_name(dtype));
    std::vector<double> v = values_of(randn({n}, g, {.dtype = dtype}));
    Moments m = moments(v);
    // N(0, 1): mean sd 1/sqrt(n); variance sd sqrt(2/n).
    CHECK(std::abs(m.mean) < 5 / std::sqrt(double(n)));
    CHECK(std::abs(m.var - 1) < 5 * std::sqrt(2.0 / n));
    // About 68.27% within one sd (binomial sd of the fraction).
    double inside = 0;
    for (double x : v) inside += std::abs(x) < 1 ? 1 : 0;
    double p = 0.682689492137;
    CHECK(std::abs(inside / n - p) < 5 * std::sqrt(p * (1 - p) / n));
  }
  std::vector<double> w = values_of(normal({n}, 3, 0.5, g, {.dtype = DType::Float64}));
  Moments mw = moments(w);
  CHECK(std::abs(mw.mean - 3) < 5 * 0.5 / std::sqrt(double(n)));
  CHECK(std::abs(mw.var - 0.25) < 5 * 0.25 * std::sqrt(2.0 / n));
  // std = 0 gives the mean exactly.
  CHECK(values_of(normal({2}, 1.5, 0, g)) == std::vector<double>{1.5, 1.5});
}

TEST_CASE("tensor: randint covers its range uniformly", "[tensor][random]") {
  using namespace tide;
  const int64_t n = 100000, low = -3, high = 7, k = high - low;
  Generator g(11);
  Tensor r = randint(low, high, {n}, g);
  CHECK(r.dtype() == DType::Int64);
  std::vector<int64_t> v = r.to_vector<int64_t>();
  std::vector<int64_t> counts(static_cast<size_t>(k), 0);
  REQUIRE(*std::min_element(v.begin(), v.end()) >= low);
  REQUIRE(*std::max_element(v.begin(), v.end()) < high);
  for (int64_t x : v) ++counts[static_cast<size_t>(x - low)];
  double p = 1.0 / k;
  for (int64_t c : counts) CHECK(std::abs(c - n * p) < 5 * std::sqrt(n * p * (1 - p)));
  // Float output and a one-value range.
  Tensor rf = randint(0, 4, {1000}, g, {.dtype = DType::Float32});
  CHECK(rf.dtype() == DType::Float32);
  std::vector<double> vf = values_of(rf);
  CHECK(std::all_of(vf.begin(), vf.end(),
                    [](double x) { return x == 0 || x == 1 || x == 2 || x == 3; }));
  CHECK(randint(5, 6, {4}, g).to_vector<int64_t>() == std::vector<int64_t>{5, 5, 5, 5});
}

TEST_CASE("tensor: bernoulli frequency", "[tensor][random]") {
  using namespace tide;
  const int64_t n = 100000;
  Generator g(3);
  for (double p : {0.05, 0.3, 0.5, 0.9}) {
    INFO("p = " << p);
    std::vector<double> v = values_of(bernoulli({n}, p, g));
    double ones = 0, others = 0;
    for (double x : v) {
      ones += x == 1;
      others += x != 0 && x != 1;
    }
    REQUIRE(others == 0);
    CHECK(std::abs(ones / n - p) < 5 * std::sqrt(p * (1 - p) / n));
  }
  CHECK(values_of(bernoulli({100}, 0.0, g)) == std::vector<double>(100, 0.0));
  CHECK(values_of(bernoulli({100}, 1.0, g)) == std::vector<double>(100, 1.0));
  CHECK(bernoulli({4}, 0.5, g, {.dtype = DType::Bool}).dtype() == DType::Bool);
  CHECK(bernoulli({4}, 0.5, g, {.dtype = DType::Int64}).dtype() == DType::Int64);
}

TEST_CASE("tensor: randperm is a reproducible permutation", "[tensor][random]") {
  using namespace tide;
  Generator g1(8), g2(8);
  for (int64_t n : {0, 1, 2, 10, 1000}) {
    INFO("n = " << n);
    Tensor p = randperm(n, g1);
    CHECK(p.dtype() == DType::Int64);
    CHECK(p.shape() == Shape{n});
    std::vector<int64_t> v = p.to_vector<int64_t>();
    std::vector<int64_t> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) identity[i] = i;
    CHECK(sorted == identity);
    CHECK(randperm(n, g2).to_vector<int64_t>() == v);  // same seed, same order
  }
  // Not the identity, and different seeds shuffle differently.
  std::vector<int64_t> a = randperm(1000, g1).to_vector<int64_t>();
  std::vector<int64_t> b = randperm(1000, g1).to_vector<int64_t>();
  int64_t fixed_points = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed_points += a[i] == i;
  CHECK(fixed_points < 10);  // ~ Poisson(1)
  CHECK(a != b);
  // Every position sees every value about equally often (100 shuffles of 4).
  std::vector<std::vector<int64_t>> seen(4, std::vector<int64_t>(4, 0));
  Generator g(17);
  for (int rep = 0; rep < 4000; ++rep) {
    std::vector<int64_t> q = randperm(4, g).to_vector<int64_t>();
    for (int i = 0; i < 4; ++i) ++seen[i][q[i]];
  }
  for (auto& row : seen)
    for (int64_t c : row) CHECK(std::abs(c - 1000) < 5 * std::sqrt(4000 * 0.25 * 0.75));
}

TEST_CASE("tensor: random parameter errors", "[tensor][random][errors]") {
  using namespace tide;
  Generator g(0);
  REQUIRE_THROWS_AS(uniform({2}, 1, 0, g), tide::Error);
  REQUIRE_THROWS_WITH(uniform({2}, 1, 0, g), Catch::Contains("uniform"));
  REQUIRE_THROWS_AS(normal({2}, 0, -1, g), tide::Error);
  REQUIRE_THROWS_WITH(normal({2}, 0, -1, g), Catch::Contains("normal") && Catch::Contains("-1"));
  REQUIRE_THROWS_AS(randint(3, 3, {2}, g), tide::Error);
  REQUIRE_THROWS_WITH(randint(3, 3, {2}, g), Catch::Contains("randint"));
  REQUIRE_THROWS_AS(bernoulli({2}, 1.5, g), tide::Error);
  REQUIRE_THROWS_WITH(bernoulli({2}, -0.1, g), Catch::Contains("bernoulli"));
  REQUIRE_THROWS_AS(randperm(-1, g), tide::Error);
  REQUIRE_THROWS_WITH(randperm(-1, g), Catch::Contains("randperm"));
  // Distributions that need a floating-point output.
  REQUIRE_THROWS_AS(rand({2}, g, {.dtype = DType::Int64}), tide::Error);
  REQUIRE_THROWS_WITH(randn({2}, g, {.dtype = DType::Bool}),
                      Catch::Contains("randn") && Catch::Contains("bool"));
  // A failed call does not advance the generator.
  CHECK(g.state().offset == 0);
}

// ===========================================================================
// Printing (the format is documented in tensor/print.h)
// ===========================================================================

TEST_CASE("tensor: printing small tensors", "[tensor][print]") {
  using namespace tide;
  CHECK(fmt::format("{}", tide::tensor({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2})) ==
        "tensor([[1.0000, 2.0000],\n"
        "        [3.0000, 4.0000]], dtype=float32, shape=[2, 2])");
  // Negative numbers: every element is right-aligned to the widest.
  CHECK(to_string(tide::tensor({-1.5, 2.25})) ==
        "tensor([-1.5000,  2.2500], dtype=float64, shape=[2])");
  CHECK(to_string(tide::tensor({int64_t(1), int64_t(-20), int64_t(300)})) ==
        "tensor([  1, -20, 300], dtype=int64, shape=[3])");
  CHECK(to_string(from_vector(std::vector<bool>{true, false, true})) ==
        "tensor([ true, false,  true], dtype=bool, shape=[3])");
  // 0-d and empty tensors.
  CHECK(to_string(scalar(2.5)) == "tensor(2.5000, dtype=float32, shape=[])");
  CHECK(to_string(scalar(7, {.dtype = DType::Int64})) == "tensor(7, dtype=int64, shape=[])");
  CHECK(to_string(zeros({0, 3})) == "tensor([], dtype=float32, shape=[0, 3])");
  CHECK(to_string(zeros({0})) == "tensor([], dtype=float32, shape=[0])");
  // Three dims: a blank line between the 2-D blocks.
  CHECK(to_string(reshape(arange(8, {.dtype = DType::Int64}), {2, 2, 2})) ==
        "tensor([[[0, 1],\n"
        "         [2, 3]],\n"
        "\n"
        "        [[4, 5],\n"
        "         [6, 7]]], dtype=int64, shape=[2, 2, 2])");
  // A non-contiguous view prints its logical order.
  Tensor m = reshape(arange(1, 7, 1, {.dtype = DType::Int64}), {2, 3});
  CHECK(to_string(transpose(m, 0, 1)) ==
        "tensor([[1, 4],\n"
        "        [2, 5],\n"
        "        [3, 6]], dtype=int64, shape=[3, 2])");
  CHECK(to_string(slice(arange(6), 0, 1, 6, 2)) ==
        "tensor([1.0000, 3.0000, 5.0000], dtype=float32, shape=[3])");
}

TEST_CASE("tensor: printing notation and special values", "[tensor][print]") {
  using namespace tide;
  // Scientific notation when the smallest non-zero |x| < 1e-4 or the largest >= 1e8.
  CHECK(to_string(tide::tensor({1e-5, 1.0})) ==
        "tensor([1.0000e-05, 1.0000e+00], dtype=float64, shape=[2])");
  CHECK(to_string(tide::tensor({2e9, -3.0})) ==
        "tensor([ 2.0000e+09, -3.0000e+00], dtype=float64, shape=[2])");
  // Zero does not trigger it.
  CHECK(to_string(tide::tensor({0.0, 0.5})) ==
        "tensor([0.0000, 0.5000], dtype=float64, shape=[2])");
  CHECK(to_string(tide::tensor({NAN, INFINITY, -INFINITY, 1.0})) ==
        "tensor([   nan,    inf,   -inf, 1.0000], dtype=float64, shape=[4])");
  // The precision is an option.
  CHECK(to_string(tide::tensor({1.5, 2.25}), {.precision = 2}) ==
        "tensor([1.50, 2.25], dtype=float64, shape=[2])");
}

TEST_CASE("tensor: printing autograd state", "[tensor][print]") {
  using namespace tide;
  Tensor x = tide::tensor({0.5, 1.5});
  x.set_requires_grad(true);
  CHECK(to_string(x) == "tensor([0.5000, 1.5000], dtype=float64, shape=[2], requires_grad=true)");
  CHECK(to_string(mul(x, 2.0)) ==
        "tensor([1.0000, 3.0000], dtype=float64, shape=[2], grad_fn=<mul>)");
  CHECK(to_string(tide::exp(x)).find("grad_fn=<exp>") != std::string::npos);
  CHECK(to_string(detach(x)) == "tensor([0.5000, 1.5000], dtype=float64, shape=[2])");
  CHECK(to_string(Tensor()) == "tensor(undefined)");
  // operator<< prints the same text.
  std::ostringstream os;
  os << x;
  CHECK(os.str() == to_string(x));
}

TEST_CASE("tensor: printing wraps long rows and summarises large tensors", "[tensor][print]") {
  using namespace tide;
  // A row wraps before an element that would pass column 80.
  CHECK(to_string(arange(12)) ==
        "tensor([ 0.0000,  1.0000,  2.0000,  3.0000,  4.0000,  5.0000,  6.0000,  7.0000,\n"
        "         8.0000,  9.0000, 10.0000, 11.0000], dtype=float32, shape=[12])");
  // More than 1000 elements: the first and last 3 of each long dim.
  CHECK(to_string(arange(2000, {.dtype = DType::Int64})) ==
        "tensor([   0,    1,    2, ..., 1997, 1998, 1999], dtype=int64, shape=[2000])");
  CHECK(to_string(reshape(arange(2000, {.dtype = DType::Int64}), {40, 50})) ==
        "tensor([[   0,    1,    2, ...,   47,   48,   49],\n"
        "        [  50,   51,   52, ...,   97,   98,   99],\n"
        "        [ 100,  101,  102, ...,  147,  148,  149],\n"
        "        ...,\n"
        "        [1850, 1851, 1852, ..., 1897, 1898, 1899],\n"
        "        [1900, 1901, 1902, ..., 1947, 1948, 1949],\n"
        "        [1950, 1951, 1952, ..., 1997, 1998, 1999]], dtype=int64, shape=[40, 50])");
  // Short dims of a large tensor are shown in full.
  CHECK(to_string(reshape(arange(2002, {.dtype = DType::Int64}), {2, 1001})) ==
        "tensor([[   0,    1,    2, ...,  998,  999, 1000],\n"
        "        [1001, 1002, 1003, ..., 1999, 2000, 2001]], dtype=int64, shape=[2, 1001])");
  // Exactly 1000 elements are all printed.
  std::string full = to_string(arange(1000, {.dtype = DType::Int64}));
  CHECK(full.find("...") == std::string::npos);
  CHECK(full.find(" 999]") != std::string::npos);
  // A summarised non-contiguous tensor shows the right corners.
  Tensor t = transpose(reshape(arange(2000, {.dtype = DType::Int64}), {40, 50}), 0, 1);
  std::string s = to_string(t);
  CHECK(s.rfind("tensor([[   0,   50,  100, ..., 1850, 1900, 1950],\n", 0) == 0);
  CHECK(s.find("[  49,   99,  149, ..., 1899, 1949, 1999]]") != std::string::npos);
}
