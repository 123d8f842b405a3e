// Reductions and scans (autograd/ops_reduce.cpp): values against float64 loops
// written here, gradients against finite differences (gradcheck and
// gradgradcheck), and the edge cases: ties, zeros in prod, infinities in
// logsumexp, the norm at 0, empty dims and bad dims.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

using namespace tide;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using SliceFn = std::function<double(const std::vector<double>&)>;

// Random float64 values in [low, high), optionally a leaf that requires grad.
Tensor random64(const Shape& shape, uint64_t seed, double low = -2, double high = 2,
                bool requires_grad = true) {
  Generator gen(seed);
  return uniform(shape, low, high, gen, {.dtype = DType::Float64, .requires_grad = requires_grad});
}

// Random values with |x| in [0.5, 1.5] and a random sign: away from the kinks of
// abs, and well conditioned for products.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v =
      uniform(shape, 0.5, 1.5, gen, {.dtype = DType::Float64}).to_vector<double>();
  std::vector<double> signs =
      uniform(shape, 0, 1, gen, {.dtype = DType::Float64}).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i)
    if (signs[i] < 0.5) v[i] = -v[i];
  return from_vector(v, shape, {.dtype = DType::Float64, .requires_grad = true});
}

// The dims a reduction over `dims` of a rank-`rank` tensor covers, wrapped and
// sorted (all of them when `dims` is empty): the test's own copy of the rule.
std::vector<int> wrapped(const Dims& dims, int rank) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims) out.push_back(static_cast<int>(d < 0 ? d + rank : d));
  std::sort(out.begin(), out.end());
  return out;
}

Shape kept_shape(const Shape& shape, const std::vector<int>& dims) {
  Shape out = shape;
  for (int d : dims) out[d] = 1;
  return out;
}

Shape dropped_shape(const Shape& shape, const std::vector<int>& dims) {
  Shape out;
  for (int i = 0; i < shape.size(); ++i)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) out.push_back(shape[i]);
  return out;
}

// Applies f to every slice of row-major `data` along `dims`; the results come in
// the row-major order of the kept shape (which is also that of the dropped one).
std::vector<double> host_reduce(const std::vector<double>& data, const Shape& shape,
                                const std::vector<int>& dims, const SliceFn& f) {
  Shape kept = kept_shape(shape, dims);
  std::vector<std::vector<double>> slices(static_cast<size_t>(kept.numel()));
  std::vector<int64_t> index(static_cast<size_t>(shape.size()));
  for (int64_t i = 0; i < shape.numel(); ++i) {
    int64_t rest = i;
    for (int d = shape.size() - 1; d >= 0; --d) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    int64_t out = 0;
    for (int d = 0; d < shape.size(); ++d) out = out * kept[d] + (kept[d] == 1 ? 0 : index[d]);
    slices[out].push_back(data[i]);
  }
  std::vector<double> result;
  for (const auto& s : slices) result.push_back(f(s));
  return result;
}

double host_sum(const std::vector<double>& s) {
  return std::accumulate(s.begin(), s.end(), 0.0);
}
double host_mean(const std::vector<double>& s) {
  return host_sum(s) / s.size();
}
double host_prod(const std::vector<double>& s) {
  return std::accumulate(s.begin(), s.end(), 1.0, std::multiplies<>());
}
double host_max(const std::vector<double>& s) {
  return *std::max_element(s.begin(), s.end());
}
double host_min(const std::vector<double>& s) {
  return *std::min_element(s.begin(), s.end());
}
SliceFn host_var(double correction) {
  return [correction](const std::vector<double>& s) {
    double m = host_mean(s), acc = 0;
    for (double v : s) acc += (v - m) * (v - m);
    return acc / (static_cast<double>(s.size()) - correction);
  };
}
double host_logsumexp(const std::vector<double>& s) {
  double m = host_max(s), acc = 0;
  for (double v : s) acc += std::exp(v - m);
  return m + std::log(acc);
}
SliceFn host_norm(double p) {
  return [p](const std::vector<double>& s) {
    if (std::isinf(p)) {
      double m = 0;
      for (double v : s) m = std::max(m, std::abs(v));
      return m;
    }
    if (p == 0) {
      double count = 0;
      for (double v : s) count += v != 0;
      return count;
    }
    double acc = 0;
    for (double v : s) acc += std::pow(std::abs(v), p);
    return std::pow(acc, 1 / p);
  };
}

void require_close(const std::vector<double>& actual, const std::vector<double>& expected,
                   double tol = 1e-12) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("element " << i << ": " << actual[i] << " vs expected " << expected[i]);
    REQUIRE(std::abs(actual[i] - expected[i]) <= tol * (1 + std::abs(expected[i])));
  }
}

// Reduction calls in one signature, so the same loops cover all of them.
using ReduceCall = std::function<Tensor(const Tensor&, const Dims&, bool)>;

struct ReduceCase {
  const char* name;
  ReduceCall op;
  SliceFn reference;
};

std::vector<ReduceCase> reduce_cases() {
  return {
      {"sum", [](const Tensor& x, const Dims& d, bool k) { return sum(x, d, k); }, host_sum},
      {"mean", [](const Tensor& x, const Dims& d, bool k) { return mean(x, d, k); }, host_mean},
      {"prod", [](const Tensor& x, const Dims& d, bool k) { return prod(x, d, k); }, host_prod},
      {"amax", [](const Tensor& x, const Dims& d, bool k) { return amax(x, d, k); }, host_max},
      {"amin", [](const Tensor& x, const Dims& d, bool k) { return amin(x, d, k); }, host_min},
      {"var(correction 1)", [](const Tensor& x, const Dims& d, bool k) { return var(x, d, 1, k); },
       host_var(1)},
      {"var(correction 0)", [](const Tensor& x, const Dims& d, bool k) { return var(x, d, 0, k); },
       host_var(0)},
      {"std(correction 1)",
       [](const Tensor& x, const Dims& d, bool k) { return tide::std(x, d, 1, k); },
       [](const std::vector<double>& s) { return std::sqrt(host_var(1)(s)); }},
      {"logsumexp", [](const Tensor& x, const Dims& d, bool k) { return logsumexp(x, d, k); },
       host_logsumexp},
      {"norm(p=2)", [](const Tensor& x, const Dims& d, bool k) { return norm(x, 2, d, k); },
       host_norm(2)},
      {"norm(p=1)", [](const Tensor& x, const Dims& d, bool k) { return norm(x, 1, d, k); },
       host_norm(1)},
      {"norm(p=3)", [](const Tensor& x, const Dims& d, bool k) { return norm(x, 3, d, k); },
       host_norm(3)},
      {"norm(p=inf)", [](const Tensor& x, const Dims& d, bool k) { return norm(x, kInf, d, k); },
       host_norm(kInf)},
  };
}

}  // namespace

TEST_CASE("reductions match float64 loops for every dims / keepdim combination", "[reduce]") {
  Shape shape{2, 3, 4};
  Tensor x = random64(shape, 1, -2, 2, false);
  std::vector<double> data = x.to_vector<double>();
  std::vector<Dims> dim_lists = {{}, {0}, {1}, {-1}, {0, 2}, {-1, 0}, {2, 0, 1}};
  for (const ReduceCase& c : reduce_cases()) {
    for (const Dims& dims : dim_lists) {
      for (bool keepdim : {false, true}) {
        INFO(c.name << " over dims [" << fmt::format("{}", fmt::join(dims, ", ")) << "], keepdim "
                    << keepdim);
        std::vector<int> w = wrapped(dims, shape.size());
        Tensor out = c.op(x, dims, keepdim);
        REQUIRE(out.dtype() == DType::Float64);
        REQUIRE(out.shape() == (keepdim ? kept_shape(shape, w) : dropped_shape(shape, w)));
        require_close(out.to_vector<double>(), host_reduce(data, shape, w, c.reference));
      }
    }
  }
}

TEST_CASE("reductions accept non-contiguous inputs and 0-d tensors", "[reduce]") {
  Tensor base = random64({4, 3}, 2, -2, 2, false);
  Tensor xt = transpose(base, 0, 1);  // [3, 4], strides (1, 3)
  REQUIRE_FALSE(xt.is_contiguous());
  std::vector<double> data = contiguous(xt).to_vector<double>();
  for (const ReduceCase& c : reduce_cases()) {
    INFO(c.name);
    require_close(c.op(xt, {-1}, false).to_vector<double>(),
                  host_reduce(data, {3, 4}, {1}, c.reference));
    require_close(c.op(xt, {0}, true).to_vector<double>(),
                  host_reduce(data, {3, 4}, {0}, c.reference));
  }
  Tensor s = scalar(-1.5, {.dtype = DType::Float64});
  REQUIRE(sum(s).item() == -1.5);
  REQUIRE(mean(s, {0}).item() == -1.5);
  REQUIRE(amax(s, {-1}, true).dim() == 0);
  REQUIRE(norm(s).item() == 1.5);
}

TEST_CASE("integer and bool reductions keep exact integer results", "[reduce]") {
  Tensor i = tensor({int64_t{3}, int64_t{-4}, int64_t{5}, int64_t{7}}, {2, 2});
  Tensor s = sum(i, {1});
  REQUIRE(s.dtype() == DType::Int64);
  REQUIRE(s.to_vector<int64_t>() == std::vector<int64_t>{-1, 12});
  REQUIRE(prod(i).item<int64_t>() == 3 * -4 * 5 * 7);
  REQUIRE(amax(i, {0}).to_vector<int64_t>() == std::vector<int64_t>{5, 7});
  Tensor b = gt(i, 0.0);
  Tensor count = sum(b);
  REQUIRE(count.dtype() == DType::Int64);
  REQUIRE(count.item<int64_t>() == 3);
  // mean and var need floating point, as in PyTorch.
  REQUIRE_THROWS_WITH(mean(i), Catch::Contains("mean") && Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(var(i), Catch::Contains("var") && Catch::Contains("int64"));
}

TEST_CASE("float32 sum of 1e7 elements stays accurate", "[reduce]") {
  const int64_t n = 10'000'000;
  Tensor x = full({n}, 0.1);
  REQUIRE(x.dtype() == DType::Float32);
  double exact = static_cast<double>(n) * static_cast<double>(0.1f);
  double total = sum(x).item();
  REQUIRE(std::abs(total - exact) <= 1e-6 * exact);
  REQUIRE(std::abs(mean(x).item() - static_cast<double>(0.1f)) <= 1e-6 * 0.1);
  // Along a dim too: 1000 rows of 10000.
  Tensor rows = sum(reshape(x, {1000, 10000}), {1});
  double row_exact = 10000.0 * static_cast<double>(0.1f);
  for (double v : rows.to_vector<double>()) REQUIRE(std::abs(v - row_exact) <= 1e-6 * row_exact);
}

TEST_CASE("reductions over zero-size dims follow PyTorch", "[reduce]") {
  Tensor x = zeros({0, 3}, {.dtype = DType::Float64});
  REQUIRE(sum(x).item() == 0.0);
  REQUIRE(sum(x, {0}).to_vector<double>() == std::vector<double>{0, 0, 0});
  REQUIRE(prod(x).item() == 1.0);
  REQUIRE(prod(x, {0}).to_vector<double>() == std::vector<double>{1, 1, 1});
  REQUIRE(std::isnan(mean(x).item()));
  REQUIRE(std::isnan(var(x).item()));
  REQUIRE(logsumexp(x, {0}).to_vector<double>() == std::vector<double>{-kInf, -kInf, -kInf});
  REQUIRE(norm(x).item() == 0.0);
  // Reducing the non-empty dim of an empty tensor gives an empty result.
  REQUIRE(amax(x, {1}).shape() == Shape{0});
  REQUIRE(max(x, 1).values.shape() == Shape{0});
  REQUIRE(sum(x, {1}, true).shape() == Shape{0, 1});
  // max and min have no identity: reducing an empty dim is an error.
  REQUIRE_THROWS_AS(amax(x), Error);
  REQUIRE_THROWS_WITH(amax(x, {0}), Catch::Contains("amax") && Catch::Contains("size 0"));
  REQUIRE_THROWS_WITH(amin(x, {0}), Catch::Contains("amin") && Catch::Contains("[0, 3]"));
  REQUIRE_THROWS_WITH(max(x), Catch::Contains("max") && Catch::Contains("size 0"));
  REQUIRE_THROWS_WITH(min(x), Catch::Contains("min") && Catch::Contains("size 0"));
  REQUIRE_THROWS_WITH(max(x, 0), Catch::Contains("max") && Catch::Contains("dim 0"));
  REQUIRE_THROWS_WITH(min(x, -2), Catch::Contains("min") && Catch::Contains("dim 0"));
  REQUIRE_THROWS_WITH(argmax(x, 0), Catch::Contains("argmax"));
  REQUIRE_THROWS_WITH(norm(x, kInf, {0}), Catch::Contains("norm"));
}

TEST_CASE("reductions reject bad and repeated dims, naming the op", "[reduce]") {
  Tensor x = random64({2, 3}, 3);
  std::vector<std::pair<std::string, std::function<void()>>> bad_dim = {
      {"sum", [&] { sum(x, {2}); }},       {"mean", [&] { mean(x, {-3}); }},
      {"prod", [&] { prod(x, {5}); }},     {"amax", [&] { amax(x, {2}); }},
      {"amin", [&] { amin(x, {2}); }},     {"max", [&] { max(x, 2); }},
      {"min", [&] { min(x, -3); }},        {"argmax", [&] { argmax(x, 2); }},
      {"argmin", [&] { argmin(x, 2); }},   {"var", [&] { var(x, {2}); }},
      {"std", [&] { tide::std(x, {2}); }}, {"logsumexp", [&] { logsumexp(x, {2}); }},
      {"norm", [&] { norm(x, 2, {2}); }},  {"cumsum", [&] { cumsum(x, 2); }},
  };
  for (auto& [name, call] : bad_dim) {
    INFO(name);
    REQUIRE_THROWS_AS(call(), Error);
    REQUIRE_THROWS_WITH(call(), Catch::StartsWith(name + ":") && Catch::Contains("out of range"));
  }
  std::vector<std::pair<std::string, std::function<void()>>> repeated = {
      {"sum", [&] { sum(x, {0, 0}); }},       {"mean", [&] { mean(x, {1, -1}); }},
      {"prod", [&] { prod(x, {0, -2}); }},    {"amax", [&] { amax(x, {1, 1}); }},
      {"amin", [&] { amin(x, {1, 1}); }},     {"var", [&] { var(x, {0, 0}); }},
      {"std", [&] { tide::std(x, {0, 0}); }}, {"logsumexp", [&] { logsumexp(x, {0, 0}); }},
      {"norm", [&] { norm(x, 1, {0, -2}); }},
  };
  for (auto& [name, call] : repeated) {
    INFO(name);
    REQUIRE_THROWS_AS(call(), Error);
    REQUIRE_THROWS_WITH(call(), Catch::StartsWith(name + ":") && Catch::Contains("repeats"));
  }
}

TEST_CASE("gradcheck and gradgradcheck of every reduction", "[reduce][grad]") {
  // [2, 3, 2] keeps the checks fast; the dims cover one, several, negative and
  // all dims, both keepdim settings.
  std::vector<Dims> dim_lists = {{}, {1}, {-1}, {0, -1}};
  for (const ReduceCase& c : reduce_cases()) {
    for (const Dims& dims : dim_lists) {
      for (bool keepdim : {false, true}) {
        INFO(c.name << " over dims [" << fmt::format("{}", fmt::join(dims, ", ")) << "], keepdim "
                    << keepdim);
        Tensor x = away_from_zero({2, 3, 2}, 10);
        DifferentiableFn fn = [&](const std::vector<Tensor>& in) {
          return c.op(in[0], dims, keepdim);
        };
        CHECK(gradcheck(fn, {x}));
        CHECK(gradgradcheck(fn, {x}));
      }
    }
  }
}

TEST_CASE("reduction gradients through non-contiguous inputs", "[reduce][grad]") {
  for (const ReduceCase& c : reduce_cases()) {
    INFO(c.name);
    Tensor x = away_from_zero({3, 2, 2}, 11);
    // permute makes the reduced dims strided in memory.
    DifferentiableFn fn = [&](const std::vector<Tensor>& in) {
      return c.op(permute(in[0], {2, 0, 1}), {1, -1}, false);
    };
    CHECK(gradcheck(fn, {x}));
    CHECK(gradgradcheck(fn, {x}));
  }
}

TEST_CASE("max and min along a dim return values and first indices", "[reduce]") {
  Shape shape{3, 4, 2};
  Tensor x = random64(shape, 4, -2, 2, false);
  std::vector<double> data = x.to_vector<double>();
  for (bool is_max : {true, false}) {
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      for (bool keepdim : {false, true}) {
        INFO((is_max ? "max" : "min") << " dim " << dim << " keepdim " << keepdim);
        ValuesIndices r = is_max ? max(x, dim, keepdim) : min(x, dim, keepdim);
        std::vector<int> w = wrapped({dim}, 3);
        Shape expected_shape = keepdim ? kept_shape(shape, w) : dropped_shape(shape, w);
        REQUIRE(r.values.shape() == expected_shape);
        REQUIRE(r.indices.shape() == expected_shape);
        REQUIRE(r.indices.dtype() == DType::Int64);
        auto pick = [is_max](const std::vector<double>& s) {
          auto it =
              is_max ? std::max_element(s.begin(), s.end()) : std::min_element(s.begin(), s.end());
          return static_cast<double>(it - s.begin());
        };
        require_close(r.values.to_vector<double>(),
                      host_reduce(data, shape, w, is_max ? host_max : host_min));
        std::vector<double> expected_index = host_reduce(data, shape, w, pick);
        std::vector<int64_t> index = r.indices.to_vector<int64_t>();
        for (size_t i = 0; i < index.size(); ++i)
          REQUIRE(static_cast<double>(index[i]) == expected_index[i]);
        Tensor am = is_max ? argmax(x, dim, keepdim) : argmin(x, dim, keepdim);
        REQUIRE(am.shape() == expected_shape);
        REQUIRE(am.to_vector<int64_t>() == index);
      }
    }
  }
  // Over all elements.
  REQUIRE(max(x).item() == host_max(data));
  REQUIRE(min(x).item() == host_min(data));
  REQUIRE(max(x).dim() == 0);
  // Ties: the first index wins.
  Tensor t = tensor({1.0, 5.0, 5.0, -2.0, -2.0}, {1, 5});
  REQUIRE(max(t, 1).indices.item<int64_t>() == 1);
  REQUIRE(min(t, 1).indices.item<int64_t>() == 3);
  REQUIRE(argmax(t, 1).item<int64_t>() == 1);
  // A 0-d tensor is its own extremum at index 0.
  Tensor s = scalar(2.5, {.dtype = DType::Float64});
  REQUIRE(max(s, 0).values.item() == 2.5);
  REQUIRE(max(s, -1).indices.item<int64_t>() == 0);
}

TEST_CASE("gradients of max and min along a dim go to the selected index", "[reduce][grad]") {
  for (bool is_max : {true, false}) {
    for (int64_t dim : {0, -1}) {
      for (bool keepdim : {false, true}) {
        INFO((is_max ? "max" : "min") << " dim " << dim << " keepdim " << keepdim);
        Tensor x = random64({3, 4}, 5);
        DifferentiableFn fn = [&](const std::vector<Tensor>& in) {
          return is_max ? max(in[0], dim, keepdim).values : min(in[0], dim, keepdim).values;
        };
        CHECK(gradcheck(fn, {x}));
        CHECK(gradgradcheck(fn, {x}));
      }
    }
    // Non-contiguous input, and the all-elements form.
    Tensor x = random64({4, 3}, 6);
    DifferentiableFn along = [&](const std::vector<Tensor>& in) {
      Tensor xt = transpose(in[0], 0, 1);
      return is_max ? max(xt, 1).values : min(xt, 1).values;
    };
    CHECK(gradcheck(along, {x}));
    CHECK(gradgradcheck(along, {x}));
    DifferentiableFn all = [&](const std::vector<Tensor>& in) {
      return is_max ? max(in[0]) : min(in[0]);
    };
    CHECK(gradcheck(all, {x}));
    CHECK(gradgradcheck(all, {x}));
  }
  // On a tie, max along a dim gives the whole gradient to the first index.
  Tensor t = tensor({1.0, 3.0, 3.0, 2.0}).set_requires_grad();
  Tensor g = grad({max(t, 0).values}, {t})[0];
  REQUIRE(g.to_vector<double>() == std::vector<double>{0, 1, 0, 0});
}

TEST_CASE("amax, amin, max() and min() split the gradient evenly between ties", "[reduce][grad]") {
  Tensor t = tensor({1.0, 3.0, 3.0, 2.0, 3.0, 0.0}, {2, 3}).set_requires_grad();
  // Over all elements: three maxima share the gradient.
  std::vector<double> third{0, 1.0 / 3, 1.0 / 3, 0, 1.0 / 3, 0};
  require_close(grad({amax(t)}, {t})[0].to_vector<double>(), third);
  require_close(grad({max(t)}, {t})[0].to_vector<double>(), third);
  // Per row: [1, 3, 3] has two maxima, [2, 3, 0] one.
  Tensor gy = tensor({1.0, 2.0});
  require_close(grad({amax(t, {1})}, {t}, {gy})[0].to_vector<double>(), {0, 0.5, 0.5, 0, 2, 0});
  // The minimum: one tie per column pair.
  Tensor u = tensor({2.0, 2.0, 5.0, -1.0}).set_requires_grad();
  require_close(grad({amin(u)}, {u})[0].to_vector<double>(), {0, 0, 0, 1});
  Tensor pair = tensor({2.0, 2.0}).set_requires_grad();
  require_close(grad({min(pair)}, {pair})[0].to_vector<double>(), {0.5, 0.5});
}

TEST_CASE("prod gradient is the product of the others, also with zeros", "[reduce][grad]") {
  // Rows with no zero, one zero and two zeros.
  std::vector<double> data{1.5, -2, 3, 0.5, 4, 0, 5, -1, 0, 0, 6, 2};
  Shape shape{3, 4};
  Tensor x = from_vector(data, shape, {.dtype = DType::Float64, .requires_grad = true});
  Tensor gy = tensor({1.0, -2.0, 0.5});
  Tensor gx = grad({prod(x, {1})}, {x}, {gy})[0];
  std::vector<double> expected;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) {
      double others = 1;
      for (int k = 0; k < 4; ++k)
        if (k != c) others *= data[r * 4 + k];
      expected.push_back(gy.to_vector<double>()[r] * others);
    }
  require_close(gx.to_vector<double>(), expected);
  REQUIRE(gx.to_vector<double>()[5] == 4 * 5 * -1.0 * -2.0);  // the single zero's gradient

  // prod is linear in each element, so finite differences are exact at a zero:
  // with exactly one zero per slice both derivative orders are checked.
  Tensor one_zero = from_vector(std::vector<double>{0.7, 0, -1.3, 1.1, 0.9, 0}, {2, 3},
                                {.dtype = DType::Float64, .requires_grad = true});
  for (const Dims& dims : std::vector<Dims>{{1}, {}}) {
    INFO("dims size " << dims.size());
    DifferentiableFn fn = [&](const std::vector<Tensor>& in) { return prod(in[0], dims); };
    if (dims.empty()) {
      // Two zeros in the one slice: first order only.
      CHECK(gradcheck(fn, {one_zero}));
    } else {
      CHECK(gradcheck(fn, {one_zero}));
      CHECK(gradgradcheck(fn, {one_zero}));
    }
  }
}

TEST_CASE("std and the norms have gradient 0 at 0, like PyTorch", "[reduce][grad]") {
  Tensor z = zeros({2, 3}, {.dtype = DType::Float64, .requires_grad = true});
  for (double p : {2.0, 3.0, 1.0, kInf}) {
    INFO("p = " << p);
    Tensor n = norm(z, p);
    REQUIRE(n.item() == 0.0);
    Tensor g = grad({n}, {z})[0];
    for (double v : g.to_vector<double>()) REQUIRE(v == 0.0);
  }
  // A row of zeros next to a non-zero row: only the zero row is special-cased.
  Tensor x = from_vector(std::vector<double>{0, 0, 0, 3, 4, 0}, {2, 3},
                         {.dtype = DType::Float64, .requires_grad = true});
  require_close(grad({sum(norm(x, 2, {1}))}, {x})[0].to_vector<double>(), {0, 0, 0, 0.6, 0.8, 0});
  Tensor c = full({4}, 2.5, {.dtype = DType::Float64, .requires_grad = true});
  Tensor s = tide::std(c);
  REQUIRE(s.item() == 0.0);
  for (double v : grad({s}, {c})[0].to_vector<double>()) REQUIRE(v == 0.0);
  // The p = 0 "norm" counts non-zeros and has no gradient.
  REQUIRE(norm(x, 0).item() == 2.0);
}

TEST_CASE("logsumexp is stable for large values and handles infinities", "[reduce]") {
  Tensor big = tensor({1000.0, 1000.0, 999.0, -1000.0}, {2, 2});
  std::vector<double> out = logsumexp(big, {1}).to_vector<double>();
  REQUIRE(out[0] == Approx(1000 + std::log(2.0)).epsilon(1e-14));
  REQUIRE(out[1] == Approx(999).epsilon(1e-14));
  Tensor f32 = tensor({100.f, 100.f, 90.f});
  REQUIRE(logsumexp(f32, {0}).item() == Approx(100 + std::log(2 + std::exp(-10.0))).epsilon(1e-6));
  // A slice of -inf has logsumexp -inf; one with +inf has +inf.
  Tensor inf = tensor({-kInf, -kInf, 1.0, kInf, -kInf, 2.0}, {3, 2});
  std::vector<double> r = logsumexp(inf, {-1}).to_vector<double>();
  REQUIRE(r[0] == -kInf);
  REQUIRE(r[1] == kInf);
  REQUIRE(r[2] == Approx(2.0).epsilon(1e-14));
  // keepdim and integer inputs (computed in float32, like PyTorch).
  REQUIRE(logsumexp(inf, {1}, true).shape() == Shape{3, 1});
  Tensor ints = tensor({int64_t{0}, int64_t{0}});
  Tensor li = logsumexp(ints, {0});
  REQUIRE(li.dtype() == DType::Float32);
  REQUIRE(li.item() == Approx(std::log(2.0)).epsilon(1e-6));
  // The gradient is the softmax, also for huge values.
  Tensor h = tensor({1000.0, 1000.0}).set_requires_grad();
  require_close(grad({logsumexp(h, {0})}, {h})[0].to_vector<double>(), {0.5, 0.5});
}

TEST_CASE("var and std corrections", "[reduce]") {
  Tensor x = tensor({1.0, 2.0, 4.0, 7.0});
  // mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 12.25 = 21
  REQUIRE(var(x, {}, 0).item() == Approx(21.0 / 4).epsilon(1e-15));
  REQUIRE(var(x).item() == Approx(21.0 / 3).epsilon(1e-15));
  REQUIRE(var(x, {}, 2).item() == Approx(21.0 / 2).epsilon(1e-15));
  REQUIRE(tide::std(x, {0}, 1, true).shape() == Shape{1});
  REQUIRE(tide::std(x, {0}, 1).item() == Approx(std::sqrt(7.0)).epsilon(1e-15));
  // A correction >= n divides by zero, like PyTorch.
  REQUIRE(var(tensor({1.0, 3.0}), {}, 2).item() == kInf);
  REQUIRE(std::isnan(var(tensor({1.0}), {}, 1).item()));
}

TEST_CASE("cumsum values and gradients", "[reduce][grad]") {
  Shape shape{3, 4};
  Tensor x = random64(shape, 7);
  std::vector<double> data = x.to_vector<double>();
  for (int64_t dim : {0, 1, -1, -2}) {
    INFO("dim " << dim);
    int d = static_cast<int>(dim < 0 ? dim + 2 : dim);
    std::vector<double> expected(data.size());
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        double acc = 0;
        for (int64_t k = 0; k <= (d == 0 ? i : j); ++k)
          acc += d == 0 ? data[k * 4 + j] : data[i * 4 + k];
        expected[i * 4 + j] = acc;
      }
    require_close(cumsum(x, dim).to_vector<double>(), expected);
    DifferentiableFn fn = [dim](const std::vector<Tensor>& in) { return cumsum(in[0], dim); };
    CHECK(gradcheck(fn, {x}));
    CHECK(gradgradcheck(fn, {x}));
  }
  // Non-contiguous input; the gradient is the reversed cumulative sum.
  DifferentiableFn strided = [](const std::vector<Tensor>& in) {
    return cumsum(transpose(in[0], 0, 1), 1);
  };
  CHECK(gradcheck(strided, {x}));
  CHECK(gradgradcheck(strided, {x}));
  Tensor v = tensor({1.0, 2.0, 3.0}).set_requires_grad();
  Tensor gy = tensor({1.0, 10.0, 100.0});
  REQUIRE(grad({cumsum(v, 0)}, {v}, {gy})[0].to_vector<double>() ==
          std::vector<double>{111, 110, 100});
  // 0-d and int64 inputs.
  REQUIRE(cumsum(scalar(4.0), 0).item() == 4.0);
  REQUIRE(cumsum(tensor({int64_t{1}, int64_t{2}}), 0).to_vector<int64_t>() ==
          std::vector<int64_t>{1, 3});
}
