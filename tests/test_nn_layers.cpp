// The layers (nn/linear, activation, container, mlp, normalization, dropout,
// embedding) and the initialisers (nn/init). Values are checked against
// float64 loops and closed forms written here, gradients against finite
// differences, random initial values against their distributions (5 sigma).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <numbers>

#include "autograd/gradcheck.h"
#include "nn/layers.h"

using namespace tide;
using namespace tide::nn;

namespace {

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

Tensor random64(const Shape& shape, uint64_t seed, double low = -1, double high = 1,
                bool requires_grad = true) {
  Generator gen(seed);
  return uniform(shape, low, high, gen, {.dtype = DType::Float64, .requires_grad = requires_grad});
}

std::vector<double> values(const Tensor& t) {
  return to(t, DType::Float64).to_vector<double>();
}

void check_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                 double atol) {
  REQUIRE(actual.defined());
  std::vector<double> a = values(actual);
  REQUIRE(a.size() == expected.size());
  // One check per tensor, reporting the first bad element and the count.
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - expected[i]) <= atol + rtol * std::abs(expected[i])) continue;
    if (bad++ == 0) first = i;
  }
  INFO("first mismatch at element " << first << ": " << (bad ? a[first] : 0.0) << " vs "
                                    << (bad ? expected[first] : 0.0));
  CHECK(bad == 0);
}

void check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  REQUIRE(actual.defined());
  REQUIRE(expected.defined());
  REQUIRE(actual.shape() == expected.shape());
  check_close(actual, values(expected), rtol, atol);
}

// gradcheck differentiates with respect to the tensors in its input list and,
// for the numeric Jacobian, calls the function with shifted copies of them.
// A module reads its own parameters, so this wraps a module call: the inputs
// list is [the function's own inputs..., the module's parameters...], and when
// the function receives a shifted copy of a parameter, the copy's values are
// put into the parameter for the call and restored afterwards. (The analytic
// Jacobian is taken with the parameters themselves, before any shifting.)
DifferentiableFn through_parameters(Module& module, size_t n_inputs,
                                    std::function<Tensor(const std::vector<Tensor>&)> body) {
  return [&module, n_inputs, body](const std::vector<Tensor>& args) {
    std::vector<Tensor> params = module.parameters();
    std::vector<std::pair<Tensor, Tensor>> originals;
    {
      NoGradGuard no_grad;
      for (size_t k = 0; k < params.size(); ++k) {
        const Tensor& arg = args[n_inputs + k];
        if (arg.impl() == params[k].impl()) continue;
        originals.emplace_back(params[k], clone(params[k]));
        copy_(params[k], arg);
      }
    }
    Tensor out = body(std::vector<Tensor>(args.begin(), args.begin() + n_inputs));
    NoGradGuard no_grad;
    for (auto& [param, original] : originals) copy_(param, original);
    return out;
  };
}

std::vector<Tensor> with_parameters(std::vector<Tensor> inputs, const Module& module) {
  for (const Tensor& p : module.parameters()) inputs.push_back(p);
  return inputs;
}

// First and second derivatives of forward(inputs) with respect to the inputs
// and every parameter of `module` (float64). The second-order check is
// gradgradcheck's: the vector-Jacobian product with a fixed cotangent v, as a
// function of (inputs, v, parameters), is itself gradchecked.
void check_module_gradients(Module& module, const std::vector<Tensor>& inputs,
                            std::function<Tensor(const std::vector<Tensor>&)> forward) {
  size_t n = inputs.size();
  CHECK(gradcheck(through_parameters(module, n, forward), with_parameters(inputs, module)));

  Tensor v = random64(forward(inputs).shape(), 4242);
  std::vector<Tensor> vjp_inputs = inputs;
  vjp_inputs.push_back(v);
  auto vjp = [&module, n, forward](const std::vector<Tensor>& args) {
    std::vector<Tensor> xs(args.begin(), args.begin() + static_cast<long>(n));
    std::vector<Tensor> wrt = xs;
    for (const Tensor& p : module.parameters()) wrt.push_back(p);
    Tensor y = forward(xs);
    std::vector<Tensor> grads =
        grad({y}, wrt, {args[n]}, {.create_graph = true, .allow_unused = true});
    std::vector<Tensor> flat;
    for (size_t i = 0; i < grads.size(); ++i)
      flat.push_back(reshape(grads[i].defined() ? grads[i] : zeros_like(wrt[i]), {-1}));
    return cat(flat, 0);
  };
  CHECK(gradcheck(through_parameters(module, n + 1, vjp), with_parameters(vjp_inputs, module)));
}

// Sample moments, in float64.
struct Moments {
  double mean = 0, var = 0, min = 0, max = 0;
  int64_t n = 0;
};

Moments moments(const Tensor& t) {
  std::vector<double> v = values(t);
  Moments m;
  m.n = static_cast<int64_t>(v.size());
  m.min = *std::min_element(v.begin(), v.end());
  m.max = *std::max_element(v.begin(), v.end());
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(m.n);
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(m.n);
  return m;
}

// U(low, high): inside the bounds, near both ends, and with mean and variance
// within 5 standard errors.
void check_uniform(const Tensor& t, double low, double high) {
  Moments m = moments(t);
  double width = high - low, n = static_cast<double>(m.n);
  CHECK(m.min >= low);
  CHECK(m.max <= high);
  CHECK(m.min < low + 0.01 * width);  // a bound that is too small would fail here
  CHECK(m.max > high - 0.01 * width);
  double var = width * width / 12;
  CHECK(std::abs(m.mean - (low + high) / 2) < 5 * std::sqrt(var / n));
  // Var(sample variance) ~ (mu4 - sigma^4) / n, with mu4 = width^4 / 80.
  double var_of_var = (std::pow(width, 4) / 80 - var * var) / n;
  CHECK(std::abs(m.var - var) < 5 * std::sqrt(var_of_var));
}

void check_normal(const Tensor& t, double mean, double std) {
  Moments m = moments(t);
  double n = static_cast<double>(m.n);
  CHECK(std::abs(m.mean - mean) < 5 * std / std::sqrt(n));
  CHECK(std::abs(m.var - std * std) < 5 * std * std * std::sqrt(2 / n));
}

// y[r, o] = sum_i x[r, i] w[o, i] + b[o], over the rows of x [..., in].
std::vector<double> linear_loop(const Tensor& x, const Tensor& w, const Tensor& b) {
  std::vector<double> xv = values(contiguous(x)), wv = values(w);
  std::vector<double> bv = b.defined() ? values(b) : std::vector<double>();
  int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bv.empty() ? 0.0 : bv[o];
      for (int64_t i = 0; i < in; ++i) acc += xv[r * in + i] * wv[o * in + i];
      y[r * out + o] = acc;
    }
  return y;
}

double selu_value(double x) {
  return kSeluScale * (x > 0 ? x : kSeluAlpha * std::expm1(x));
}

const std::vector<std::string> kActivations = {"relu", "silu", "gelu",    "gelu_tanh", "selu",
                                               "elu",  "tanh", "sigmoid", "softplus"};
const std::vector<std::string> kFusable = {"relu", "tanh", "sigmoid", "selu"};

}  // namespace

// ---------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------

TEST_CASE("Linear: forward matches a float64 loop", "[nn][layers]") {
  Generator gen(1);
  Linear layer({.in = 5, .out = 3, .generator = &gen});
  CHECK(layer.weight().shape() == Shape{3, 5});
  CHECK(layer.bias().shape() == Shape{3});
  CHECK(layer.in_features() == 5);
  CHECK(layer.out_features() == 3);
  CHECK(layer.weight().dtype() == DType::Float32);

  SECTION("float32 against the float64 loop") {
    Tensor x = to(random64({4, 5}, 2, -2, 2, false), DType::Float32);
    check_close(layer(x), linear_loop(x, layer.weight(), layer.bias()), 1e-5, 1e-5);
  }
  layer.to(DType::Float64);
  SECTION("float64, rank 2 and rank 3") {
    Tensor x = random64({4, 5}, 3);
    check_close(layer(x), linear_loop(x, layer.weight(), layer.bias()), 1e-13, 1e-13);
    Tensor x3 = random64({2, 3, 5}, 4);
    Tensor y3 = layer(x3);
    CHECK(y3.shape() == Shape{2, 3, 3});
    check_close(y3, linear_loop(x3, layer.weight(), layer.bias()), 1e-13, 1e-13);
  }
  SECTION("a non-contiguous input") {
    Tensor xt = transpose(random64({5, 4}, 5), 0, 1);  // [4, 5], strides (1, 4)
    REQUIRE_FALSE(xt.is_contiguous());
    check_close(layer(xt), linear_loop(xt, layer.weight(), layer.bias()), 1e-13, 1e-13);
  }
  SECTION("without bias") {
    Linear plain({.in = 5, .out = 3, .bias = false, .generator = &gen});
    plain.to(DType::Float64);
    CHECK_FALSE(plain.bias().defined());
    CHECK(plain.named_parameters().size() == 1);
    Tensor x = random64({4, 5}, 6);
    check_close(plain(x), linear_loop(x, plain.weight(), Tensor()), 1e-13, 1e-13);
  }
  SECTION("gradients, first and second order, input and parameters") {
    Tensor x = random64({3, 5}, 7);
    check_module_gradients(layer, {x}, [&](const std::vector<Tensor>& in) { return layer(in[0]); });
    Tensor x3 = random64({2, 2, 5}, 9);  // batch dims are flattened and restored
    check_module_gradients(layer, {x3},
                           [&](const std::vector<Tensor>& in) { return layer(in[0]); });
    // A non-contiguous (transposed) input.
    Tensor xt = random64({5, 2}, 8);
    check_module_gradients(
        layer, {xt}, [&](const std::vector<Tensor>& in) { return layer(transpose(in[0], 0, 1)); });
  }
}

TEST_CASE("Linear: PyTorch's default initialisation U(-1/sqrt(in), 1/sqrt(in))",
          "[nn][layers][init]") {
  Generator gen(11);
  Linear layer({.in = 200, .out = 500, .generator = &gen});
  double bound = 1 / std::sqrt(200.0);
  check_uniform(layer.weight(), -bound, bound);
  Moments b = moments(layer.bias());
  CHECK(b.min >= -bound);
  CHECK(b.max <= bound);
  CHECK(b.max - b.min > bound);  // spread over the interval, not a constant

  // The generator decides the values: same seed, same layer; another, not.
  Generator same(11), other(12);
  Linear again({.in = 200, .out = 500, .generator = &same});
  Linear different({.in = 200, .out = 500, .generator = &other});
  CHECK(values(again.weight()) == values(layer.weight()));
  CHECK(values(again.bias()) == values(layer.bias()));
  CHECK(values(different.weight()) != values(layer.weight()));
}

TEST_CASE("Linear: bad sizes and inputs throw", "[nn][layers]") {
  REQUIRE_THROWS_AS(Linear({.in = 0, .out = 3}), Error);
  REQUIRE_THROWS_WITH(Linear({.in = 4, .out = -1}),
                      Catch::Contains("Linear: in and out must be positive, got in=4, out=-1"));
  Linear layer({.in = 4, .out = 2});
  REQUIRE_THROWS_WITH(layer(zeros({3, 5})), Catch::Contains("linear") &&
                                                Catch::Contains("float32[3, 5]") &&
                                                Catch::Contains("float32[2, 4]"));
}

// ---------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------

TEST_CASE("Activation modules match their closed forms", "[nn][layers]") {
  Tensor x = linspace(-3.0, 3.0, 13, {.dtype = DType::Float64});
  std::vector<double> xs = values(x);
  auto expect = [&](Module&& module, const std::function<double(double)>& f) {
    INFO(module.type_name());
    std::vector<double> y;
    for (double v : xs) y.push_back(f(v));
    check_close(module(x), y, 1e-12, 1e-12);
  };
  expect(ReLU(), [](double v) { return std::max(v, 0.0); });
  expect(SiLU(), [](double v) { return v / (1 + std::exp(-v)); });
  expect(GELU(), [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); });
  expect(GELU(GeluApproximation::Tanh), [](double v) {
    return 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
  });
  expect(SELU(), selu_value);
  expect(ELU(0.7), [](double v) { return v > 0 ? v : 0.7 * std::expm1(v); });
  expect(Tanh(), [](double v) { return std::tanh(v); });
  expect(Sigmoid(), [](double v) { return 1 / (1 + std::exp(-v)); });
  // beta = 2, threshold = 1: linear once beta * x > 1.
  expect(Softplus(2.0, 1.0),
         [](double v) { return 2 * v > 1 ? v : std::log1p(std::exp(2 * v)) / 2; });

  // Which ones a matmul can apply (the fusable ones).
  CHECK(ReLU().epilogue() == Epilogue::Relu);
  CHECK(Tanh().epilogue() == Epilogue::Tanh);
  CHECK(Sigmoid().epilogue() == Epilogue::Sigmoid);
  CHECK(SELU().epilogue() == Epilogue::Selu);
  CHECK(SiLU().epilogue() == Epilogue::None);
  CHECK(GELU().epilogue() == Epilogue::None);
  CHECK(ELU().epilogue() == Epilogue::None);
  CHECK(Softplus().epilogue() == Epilogue::None);
  CHECK(ReLU().num_parameters() == 0);
}

namespace {

// An activation without a fused derivative: jvp falls back to the generic
// reverse pass of Activation.
class SinActivation : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return sin(x); }
  std::string type_name() const override { return "Sin"; }
};

}  // namespace

TEST_CASE("Activation::jvp is tangent * f'(x) by central differences, for many tangents",
          "[nn][layers]") {
  std::vector<std::shared_ptr<Activation>> activations;
  for (const char* name :
       {"relu", "silu", "gelu", "gelu_tanh", "selu", "elu", "tanh", "sigmoid", "softplus"})
    activations.push_back(make_activation(name));
  activations.push_back(std::make_shared<SinActivation>());
  // x away from relu's kink; tangents [3, 4, 5] over x [4, 5] (broadcast).
  Tensor x = random64({4, 5}, 41, -3, 3, false);
  x = where(lt(abs(x), 0.01), add(x, 0.05), x);
  Tensor tangent = random64({3, 4, 5}, 42, -1, 1, false);
  const std::vector<double> xs = values(x), ts = values(tangent);
  const double h = 1e-6;
  for (const auto& activation : activations) {
    INFO(activation->type_name());
    NoGradGuard no_grad;
    Tensor y = activation->forward(x);
    Tensor jvp = activation->jvp(x, y, tangent);
    REQUIRE(jvp.shape() == Shape{3, 4, 5});
    REQUIRE(jvp.dtype() == DType::Float64);
    std::vector<double> plus = values(activation->forward(add(x, h)));
    std::vector<double> minus = values(activation->forward(sub(x, h)));
    std::vector<double> got = values(jvp);
    for (size_t k = 0; k < got.size(); ++k) {
      size_t e = k % xs.size();
      double slope = (plus[e] - minus[e]) / (2 * h);
      CHECK(got[k] == Approx(ts[k] * slope).margin(1e-8));
    }
  }
}

TEST_CASE("make_activation knows every activation by name", "[nn][layers]") {
  CHECK(make_activation("relu")->type_name() == "ReLU");
  CHECK(make_activation("silu")->type_name() == "SiLU");
  CHECK(make_activation("swish")->type_name() == "SiLU");
  CHECK(make_activation("selu")->type_name() == "SELU");
  CHECK(make_activation("elu")->type_name() == "ELU");
  CHECK(make_activation("tanh")->type_name() == "Tanh");
  CHECK(make_activation("sigmoid")->type_name() == "Sigmoid");
  CHECK(make_activation("softplus")->type_name() == "Softplus");
  auto gelu_tanh = std::dynamic_pointer_cast<GELU>(make_activation("gelu_tanh"));
  REQUIRE(gelu_tanh);
  CHECK(gelu_tanh->approximate() == GeluApproximation::Tanh);
  CHECK(std::dynamic_pointer_cast<GELU>(make_activation("gelu"))->approximate() ==
        GeluApproximation::None);
  REQUIRE_THROWS_AS(make_activation("Relu"), Error);
  REQUIRE_THROWS_WITH(
      make_activation("swiglu"),
      Catch::Contains("make_activation: unknown activation 'swiglu'") && Catch::Contains("selu"));
}

// ---------------------------------------------------------------------------
// Sequential and fusion
// ---------------------------------------------------------------------------

TEST_CASE("Sequential: names, indexing and chaining", "[nn][layers]") {
  Generator gen(21);
  Sequential seq;
  CHECK(seq.size() == 0);
  Tensor x = random64({2, 3}, 22, -1, 1, false);
  CHECK(seq(x).impl() == x.impl());  // empty: the identity
  auto first =
      seq.push_back(std::make_shared<Linear>(LinearOptions{.in = 3, .out = 4, .generator = &gen}));
  seq.push_back(std::make_shared<SiLU>());
  seq.push_back(std::make_shared<Linear>(LinearOptions{.in = 4, .out = 2, .generator = &gen}));
  CHECK(seq.size() == 3);
  CHECK(seq[0] == first);
  CHECK(seq.at<Linear>(0) == first);
  CHECK(seq[1]->type_name() == "SiLU");
  std::vector<std::string> names;
  for (const auto& [name, p] : seq.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  REQUIRE_THROWS_WITH(seq[3], Catch::Contains("Sequential: index 3 is out of range for 3"));
  REQUIRE_THROWS_WITH(seq.at<Linear>(1), Catch::Contains("Sequential: child 1 is a SiLU"));

  seq.to(DType::Float64);
  Tensor manual = seq[2]->forward(silu(seq[0]->forward(x)));
  check_close(seq(x), manual, 1e-14, 1e-14);
  // The initializer-list constructor names children the same way.
  Sequential listed({seq[0], seq[1], seq[2]});
  check_close(listed(x), manual, 1e-14, 1e-14);
}

TEST_CASE("Sequential: Linear + activation runs as one fused linear", "[nn][layers]") {
  Generator gen(31);
  for (const std::string& name : kFusable) {
    INFO(name);
    auto layer = std::make_shared<Linear>(LinearOptions{.in = 3, .out = 4, .generator = &gen});
    Sequential pair({layer, make_activation(name)});
    Tensor x = ones({2, 3}, {.requires_grad = true});
    // Fused: the output comes straight from linear (one node, no activation node).
    Tensor fused = pair(x);
    REQUIRE(fused.grad_fn());
    CHECK(std::string(fused.grad_fn()->name()) == "linear");
    pair.set_fuse_activations(false);
    Tensor separate = pair(x);
    CHECK(std::string(separate.grad_fn()->name()) != "linear");
    check_close(fused, separate, 1e-6, 1e-6);
  }
  // A non-fusable activation is left alone.
  Sequential silu_pair(
      {std::make_shared<Linear>(LinearOptions{.in = 3, .out = 4}), std::make_shared<SiLU>()});
  Tensor y = silu_pair(ones({2, 3}, {.requires_grad = true}));
  CHECK(std::string(y.grad_fn()->name()) != "linear");
}

TEST_CASE("Sequential: fused and unfused paths agree in value and gradient", "[nn][layers]") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const std::string& name : kFusable) {
      INFO(name << " " << dtype_name(dtype));
      Generator gen(41);
      auto net = mlp({.in = 5,
                      .out = 3,
                      .width = 32,
                      .hidden_layers = 3,
                      .activation = name,
                      .generator = &gen});
      net->to(dtype);
      Tensor x = detach(to(random64({64, 5}, 42, -2, 2, false), dtype));
      x.set_requires_grad(true);
      Tensor w = to(random64({64, 3}, 43, -1, 1, false), dtype);

      auto run = [&](bool fuse) {
        net->set_fuse_activations(fuse);
        net->zero_grad();
        x.set_grad(Tensor());
        Tensor y = net->forward(x);
        backward(sum(mul(y, w)));
        std::vector<Tensor> out = {detach(y), x.grad()};
        for (const Tensor& p : net->parameters()) out.push_back(p.grad());
        return out;
      };
      std::vector<Tensor> fused = run(true), separate = run(false);
      double tol = dtype == DType::Float64 ? 1e-12 : 2e-5;
      for (size_t i = 0; i < fused.size(); ++i) {
        INFO("tensor " << i << " (0: output, 1: input grad, then parameter grads)");
        // Scale-aware: gradients of a sum over 64 rows can be O(10).
        double scale = 1.0;
        for (double v : values(separate[i])) scale = std::max(scale, std::abs(v));
        check_close(fused[i], separate[i], tol, tol * scale);
      }
    }
  }
}

TEST_CASE("MLP: gradcheck and gradgradcheck for every activation", "[nn][layers]") {
  for (const std::string& name : kActivations) {
    for (bool fuse : {true, false}) {
      if (!fuse && std::find(kFusable.begin(), kFusable.end(), name) == kFusable.end()) continue;
      INFO(name << (fuse ? " (fused)" : " (unfused)"));
      Generator gen(51);
      auto net = mlp({.in = 3,
                      .out = 2,
                      .width = 4,
                      .hidden_layers = 2,
                      .activation = name,
                      .generator = &gen});
      net->to(DType::Float64);
      net->set_fuse_activations(fuse);
      Tensor x = random64({3, 3}, 52, -1.5, 1.5);
      check_module_gradients(*net, {x},
                             [&](const std::vector<Tensor>& in) { return (*net)(in[0]); });
    }
  }
}

// ---------------------------------------------------------------------------
// The MLP builder and torchcfm's network
// ---------------------------------------------------------------------------

TEST_CASE("mlp builds torchcfm's layout: names, shapes and 8706 parameters", "[nn][layers]") {
  Generator gen(61);
  auto net = mlp({.in = 3,
                  .out = 2,
                  .width = 64,
                  .hidden_layers = 3,
                  .activation = "selu",
                  .generator = &gen});
  REQUIRE(net->size() == 7);
  for (size_t i = 1; i < 7; i += 2) CHECK(net->at<SELU>(i));
  std::vector<std::pair<std::string, Shape>> expected = {
      {"0.weight", {64, 3}},  {"0.bias", {64}}, {"2.weight", {64, 64}}, {"2.bias", {64}},
      {"4.weight", {64, 64}}, {"4.bias", {64}}, {"6.weight", {2, 64}},  {"6.bias", {2}}};
  auto params = net->named_parameters();
  REQUIRE(params.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(params[i].first == expected[i].first);
    CHECK(params[i].second.shape() == expected[i].second);
  }
  CHECK(net->num_parameters() == 8706);  // 256 + 4160 + 4160 + 130

  // hidden_layers = 0 is a single Linear; bad sizes throw.
  auto single = mlp({.in = 4, .out = 1, .hidden_layers = 0});
  CHECK(single->size() == 1);
  CHECK(single->num_parameters() == 5);
  REQUIRE_THROWS_WITH(mlp({.in = 0, .out = 2}),
                      Catch::Contains("mlp: need in, out, width > 0") && Catch::Contains("in=0"));
  REQUIRE_THROWS_WITH(mlp({.in = 2, .out = 2, .activation = "nope"}),
                      Catch::Contains("unknown activation 'nope'"));
}

TEST_CASE("TorchCfmMLP: PyTorch's names load by name and compute torchcfm's function",
          "[nn][layers]") {
  Generator gen(62);
  TorchCfmMLP model({.dim = 2, .time_varying = true, .generator = &gen});
  std::vector<std::pair<std::string, Shape>> expected = {
      {"net.0.weight", {64, 3}}, {"net.0.bias", {64}},       {"net.2.weight", {64, 64}},
      {"net.2.bias", {64}},      {"net.4.weight", {64, 64}}, {"net.4.bias", {64}},
      {"net.6.weight", {2, 64}}, {"net.6.bias", {2}}};
  auto params = model.named_parameters();
  REQUIRE(params.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(params[i].first == expected[i].first);
    CHECK(params[i].second.shape() == expected[i].second);
  }
  CHECK(model.num_parameters() == 8706);
  CHECK(TorchCfmMLP({.dim = 2}).net()->at<Linear>(0)->in_features() == 2);
  CHECK(TorchCfmMLP({.dim = 3, .out_dim = 5, .w = 8}).net()->at<Linear>(6)->out_features() == 5);

  // A state dict with PyTorch's names (values made up here) loads strictly, and
  // the forward is torchcfm's: SELU after every Linear but the last.
  StateDict state;
  uint64_t seed = 100;
  for (const auto& [name, shape] : expected)
    state[name] = random64(shape, seed++, -0.3, 0.3, false);
  model.to(DType::Float64);  // first, so the loaded float64 values stay exact
  model.load_state_dict(state);
  Tensor x = random64({5, 3}, 63, -1, 1, false);
  Tensor h = x;
  std::vector<double> reference;
  for (int layer = 0; layer < 4; ++layer) {
    std::string prefix = "net." + std::to_string(2 * layer);
    Tensor w = state.at(prefix + ".weight"), b = state.at(prefix + ".bias");
    std::vector<double> z = linear_loop(h, w, b);
    if (layer < 3)
      for (double& v : z) v = selu_value(v);
    h = from_vector(z, {5, w.size(0)});
  }
  check_close(model(x), values(h), 1e-12, 1e-12);
}

// ---------------------------------------------------------------------------
// ConcatSquashLinear
// ---------------------------------------------------------------------------

TEST_CASE("ConcatSquashLinear: FFJORD's names and formula", "[nn][layers]") {
  Generator gen(71);
  ConcatSquashLinear layer(3, 4, gen);
  std::vector<std::pair<std::string, Shape>> expected = {{"_layer.weight", {4, 3}},
                                                         {"_layer.bias", {4}},
                                                         {"_hyper_bias.weight", {4, 1}},
                                                         {"_hyper_gate.weight", {4, 1}},
                                                         {"_hyper_gate.bias", {4}}};
  auto params = layer.named_parameters();
  REQUIRE(params.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(params[i].first == expected[i].first);
    CHECK(params[i].second.shape() == expected[i].second);
  }
  layer.to(DType::Float64);
  StateDict s = layer.state_dict();
  std::vector<double> W = values(s.at("_layer.weight")), b = values(s.at("_layer.bias")),
                      Wb = values(s.at("_hyper_bias.weight")),
                      Wg = values(s.at("_hyper_gate.weight")),
                      bg = values(s.at("_hyper_gate.bias"));
  Tensor x = random64({5, 3}, 72, -1, 1, false);
  std::vector<double> xv = values(x);
  // out[n, o] = (W x_n + b)[o] * sigmoid(Wg[o] t_n + bg[o]) + Wb[o] t_n
  auto reference = [&](const std::vector<double>& times) {
    std::vector<double> y;
    for (int64_t n = 0; n < 5; ++n) {
      double t = times.size() == 1 ? times[0] : times[n];
      for (int64_t o = 0; o < 4; ++o) {
        double affine = b[o];
        for (int64_t i = 0; i < 3; ++i) affine += W[o * 3 + i] * xv[n * 3 + i];
        double gate = 1 / (1 + std::exp(-(Wg[o] * t + bg[o])));
        y.push_back(affine * gate + Wb[o] * t);
      }
    }
    return y;
  };
  Tensor t_rows = random64({5}, 73, 0, 1, false);
  check_close(layer(t_rows, x), reference(values(t_rows)), 1e-12, 1e-12);
  check_close(layer(reshape(t_rows, {5, 1}), x), reference(values(t_rows)), 1e-12, 1e-12);
  Tensor t_shared = scalar(0.3, {.dtype = DType::Float64});
  Tensor y = layer(t_shared, x);
  CHECK(y.shape() == Shape{5, 4});
  check_close(y, reference({0.3}), 1e-12, 1e-12);
  check_close(layer(tensor({0.3}), x), reference({0.3}), 1e-12, 1e-12);  // t of shape [1]

  REQUIRE_THROWS_WITH(
      layer(zeros({5, 2}, {.dtype = DType::Float64}), x),
      Catch::Contains("ConcatSquashLinear: t must be") && Catch::Contains("float64[5, 2]"));
  REQUIRE_THROWS_WITH(layer(zeros({4}, {.dtype = DType::Float64}), x),
                      Catch::Contains("ConcatSquashLinear: t float64[4] has 4 times but x "
                                      "float64[5, 3] has 5 rows"));
}

TEST_CASE("ConcatSquashLinear: gradcheck and gradgradcheck in t, x and parameters",
          "[nn][layers]") {
  Generator gen(74);
  ConcatSquashLinear layer(2, 3, gen);
  layer.to(DType::Float64);
  Tensor x = random64({3, 2}, 75);
  Tensor t = random64({3}, 76, 0, 1);
  check_module_gradients(layer, {t, x},
                         [&](const std::vector<Tensor>& in) { return layer(in[0], in[1]); });
  Tensor t0 = random64({}, 77, 0, 1);  // one time for the batch
  check_module_gradients(layer, {t0, x},
                         [&](const std::vector<Tensor>& in) { return layer(in[0], in[1]); });
}

// ---------------------------------------------------------------------------
// LayerNorm and Dropout
// ---------------------------------------------------------------------------

TEST_CASE("LayerNorm: matches a float64 loop, with and without affine", "[nn][layers]") {
  Generator gen(81);
  for (Dims normalized : {Dims{6}, Dims{2, 3}}) {
    INFO("normalized over " << normalized.size() << " dims");
    LayerNorm norm({.normalized_shape = normalized, .eps = 1e-3});
    CHECK(norm.weight().shape() == Shape(normalized));
    CHECK(norm.bias().shape() == Shape(normalized));
    CHECK(values(norm.weight()) == std::vector<double>(6, 1.0));  // PyTorch: ones, zeros
    CHECK(values(norm.bias()) == std::vector<double>(6, 0.0));
    norm.to(DType::Float64);
    init::normal_(norm.weight(), 1.0, 0.5, gen);
    init::normal_(norm.bias(), 0.0, 0.5, gen);
    Shape x_shape = normalized.size() == 1 ? Shape{4, 6} : Shape{4, 2, 3};
    Tensor x = random64(x_shape, 82, -2, 2);
    std::vector<double> xv = values(x), w = values(norm.weight()), b = values(norm.bias());
    std::vector<double> y;
    for (int r = 0; r < 4; ++r) {
      double mean = 0, var = 0;
      for (int i = 0; i < 6; ++i) mean += xv[r * 6 + i] / 6;
      for (int i = 0; i < 6; ++i) var += (xv[r * 6 + i] - mean) * (xv[r * 6 + i] - mean) / 6;
      for (int i = 0; i < 6; ++i)
        y.push_back((xv[r * 6 + i] - mean) / std::sqrt(var + 1e-3) * w[i] + b[i]);
    }
    check_close(norm(x), y, 1e-12, 1e-12);
    check_module_gradients(norm, {random64(x_shape, 83, -2, 2)},
                           [&](const std::vector<Tensor>& in) { return norm(in[0]); });
  }
  LayerNorm bare({.normalized_shape = {4}, .elementwise_affine = false});
  CHECK(bare.num_parameters() == 0);
  LayerNorm no_bias({.normalized_shape = {4}, .bias = false});
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK(no_bias.named_parameters()[0].first == "weight");
  Tensor x = random64({3, 4}, 84, -2, 2, false);
  std::vector<double> xv = values(x), y;
  for (int r = 0; r < 3; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += xv[r * 4 + i] / 4;
    for (int i = 0; i < 4; ++i) var += (xv[r * 4 + i] - mean) * (xv[r * 4 + i] - mean) / 4;
    for (int i = 0; i < 4; ++i) y.push_back((xv[r * 4 + i] - mean) / std::sqrt(var + 1e-5));
  }
  check_close(bare(x), y, 1e-12, 1e-12);
  REQUIRE_THROWS_WITH(LayerNorm({.normalized_shape = {}}),
                      Catch::Contains("LayerNorm: normalized_shape must not be empty"));
  REQUIRE_THROWS_WITH(LayerNorm({.normalized_shape = {3, 0}}),
                      Catch::Contains("LayerNorm: normalized_shape [3, 0]"));
}

TEST_CASE("Dropout: scaled Bernoulli mask in training, identity in eval", "[nn][layers]") {
  Generator gen(91);
  const double p = 0.3;
  Dropout dropout(p, gen);
  const int64_t n = 20000;
  Tensor x = ones({n}, {.dtype = DType::Float64, .requires_grad = true});
  Tensor y = dropout(x);
  std::vector<double> yv = values(y);
  int64_t kept = 0, other = 0;  // other: neither dropped (0) nor kept and scaled
  for (double v : yv) {
    bool zero = v == 0, scaled = std::abs(v - 1 / (1 - p)) < 1e-12;
    kept += scaled;
    other += !zero && !scaled;
  }
  CHECK(other == 0);
  // Kept with probability 1 - p: within 5 binomial standard deviations.
  CHECK(std::abs(kept - (1 - p) * n) < 5 * std::sqrt(n * p * (1 - p)));
  // The gradient goes through the same mask: dy/dx = mask / (1 - p) = y here.
  backward(sum(y));
  CHECK(values(x.grad()) == yv);
  // A new call draws a new mask; the same seed reproduces the first.
  Tensor y2 = dropout(x);
  CHECK(values(y2) != yv);
  Generator replay(91);
  CHECK(values(Dropout(p, replay)(x)) == yv);

  dropout.eval();
  CHECK(dropout(x).impl() == x.impl());
  dropout.train();
  Tensor ones32 = ones({8});
  CHECK(values(Dropout(0.0, gen)(ones32)) == std::vector<double>(8, 1.0));
  CHECK(values(Dropout(1.0, gen)(ones32)) == std::vector<double>(8, 0.0));
  REQUIRE_THROWS_WITH(Dropout(1.5, gen), Catch::Contains("Dropout: p must be in [0, 1], got 1.5"));
  REQUIRE_THROWS_WITH(dropout(zeros({2}, {.dtype = DType::Int64})),
                      Catch::Contains("Dropout: needs a floating-point input, got int64[2]"));
}

// ---------------------------------------------------------------------------
// Time embeddings
// ---------------------------------------------------------------------------

TEST_CASE("SinusoidalTimeEmbedding: (cos | sin) of t times geometric frequencies", "[nn][layers]") {
  Tensor t = tensor({0.0, 0.25, 1.0, 7.5});
  for (int64_t dim : {8, 7}) {
    INFO("dim " << dim);
    SinusoidalTimeEmbedding embed(dim, 100.0);
    CHECK(embed.num_parameters() == 0);
    CHECK(embed.state_dict().empty());
    Tensor y = embed(t);
    REQUIRE(y.shape() == Shape{4, dim});
    // Closed form: half = dim / 2, f_i = 100^(-i / half); row = [cos(t f_i)..., sin(t f_i)...]
    // and a zero column when dim is odd.
    int64_t half = dim / 2;
    std::vector<double> expected;
    for (double tv : values(t)) {
      for (int64_t i = 0; i < half; ++i)
        expected.push_back(std::cos(tv * std::pow(100.0, -double(i) / half)));
      for (int64_t i = 0; i < half; ++i)
        expected.push_back(std::sin(tv * std::pow(100.0, -double(i) / half)));
      if (dim % 2) expected.push_back(0.0);
    }
    check_close(y, expected, 1e-12, 1e-12);
    // [N, 1] gives the same; a 0-d t gives one row without the batch dim.
    check_close(embed(reshape(t, {4, 1})), expected, 1e-12, 1e-12);
    Tensor one = embed(scalar(7.5, {.dtype = DType::Float64}));
    CHECK(one.shape() == Shape{dim});
    check_close(one, std::vector<double>(expected.end() - dim, expected.end()), 1e-12, 1e-12);
  }
  // Integer timesteps are converted to float32 (torch's .float()).
  SinusoidalTimeEmbedding embed(4);
  Tensor steps = tensor({int64_t{0}, int64_t{10}, int64_t{500}});
  Tensor y = embed(steps);
  CHECK(y.dtype() == DType::Float32);
  std::vector<double> expected;  // dim 4: frequencies 1 and 10000^(-1/2) = 0.01
  for (double s : {0.0, 10.0, 500.0}) {
    for (double f : {1.0, 0.01}) expected.push_back(std::cos(s * f));
    for (double f : {1.0, 0.01}) expected.push_back(std::sin(s * f));
  }
  check_close(y, expected, 0, 1e-4);

  DifferentiableFn fn = [](const std::vector<Tensor>& in) {
    return SinusoidalTimeEmbedding(6, 50.0)(in[0]);
  };
  Tensor tg = random64({3}, 92, 0, 2);
  CHECK(gradcheck(fn, {tg}));
  CHECK(gradgradcheck(fn, {tg}));
  REQUIRE_THROWS_WITH(SinusoidalTimeEmbedding(1), Catch::Contains("dim must be at least 2, got 1"));
  REQUIRE_THROWS_WITH(embed(zeros({2, 3})),
                      Catch::Contains("SinusoidalTimeEmbedding: t must be 0-d, [N] or [N, 1], got "
                                      "float32[2, 3]"));
}

TEST_CASE("GaussianFourierFeatures: fixed N(0, scale^2) buffer, (sin | cos) output",
          "[nn][layers]") {
  Generator gen(93);
  GaussianFourierFeatures big(20000, 3.0, gen);
  CHECK(big.num_parameters() == 0);  // a buffer: saved, never trained
  REQUIRE(big.state_dict().count("W") == 1);
  CHECK(big.W().shape() == Shape{10000});
  CHECK_FALSE(big.W().requires_grad());
  check_normal(big.W(), 0.0, 3.0);

  GaussianFourierFeatures features(6, 2.0, gen);
  features.to(DType::Float64);
  std::vector<double> W = values(features.W());
  Tensor t = tensor({0.0, 0.1, 0.9});
  Tensor y = features(to(t, DType::Float64));
  REQUIRE(y.shape() == Shape{3, 6});
  std::vector<double> expected;
  for (double tv : {0.0, 0.1, 0.9}) {
    for (double w : W) expected.push_back(std::sin(2 * std::numbers::pi * tv * w));
    for (double w : W) expected.push_back(std::cos(2 * std::numbers::pi * tv * w));
  }
  check_close(y, expected, 1e-12, 1e-12);
  // The buffer is fixed: a second call gives the same result.
  CHECK(values(features(to(t, DType::Float64))) == values(y));

  DifferentiableFn fn = [&](const std::vector<Tensor>& in) { return features(in[0]); };
  Tensor tg = random64({3, 1}, 94, 0, 1);
  CHECK(gradcheck(fn, {tg}));
  CHECK(gradgradcheck(fn, {tg}));
  REQUIRE_THROWS_WITH(GaussianFourierFeatures(5, 1.0, gen),
                      Catch::Contains("GaussianFourierFeatures: dim must be even"));
}

// ---------------------------------------------------------------------------
// Initialisers
// ---------------------------------------------------------------------------

TEST_CASE("init: fans and gains follow PyTorch's formulas", "[nn][init]") {
  using Fans = std::pair<int64_t, int64_t>;  // (fan_in, fan_out)
  CHECK(init::calculate_fan_in_and_fan_out(zeros({5, 3})) == Fans{3, 5});
  // Conv-like [out, in, k, k]: both fans include the receptive field 3 * 2.
  CHECK(init::calculate_fan_in_and_fan_out(zeros({4, 7, 3, 2})) == Fans{7 * 6, 4 * 6});
  REQUIRE_THROWS_WITH(init::calculate_fan_in_and_fan_out(zeros({5})),
                      Catch::Contains("calculate_fan_in_and_fan_out") &&
                          Catch::Contains("rank >= 2, got float32[5]"));
  CHECK(init::calculate_gain("linear") == 1.0);
  CHECK(init::calculate_gain("conv2d") == 1.0);
  CHECK(init::calculate_gain("sigmoid") == 1.0);
  CHECK(init::calculate_gain("tanh") == Approx(5.0 / 3.0));
  CHECK(init::calculate_gain("relu") == Approx(std::sqrt(2.0)));
  CHECK(init::calculate_gain("leaky_relu") == Approx(std::sqrt(2.0 / (1 + 0.01 * 0.01))));
  CHECK(init::calculate_gain("leaky_relu", 0.2) == Approx(std::sqrt(2.0 / 1.04)));
  CHECK(init::calculate_gain("selu") == Approx(0.75));
  REQUIRE_THROWS_WITH(init::calculate_gain("mish"),
                      Catch::Contains("calculate_gain: unknown nonlinearity 'mish'"));
}

TEST_CASE("init: the random initialisers draw from the right distributions", "[nn][init]") {
  Generator gen(101);
  // [out, in, k, k] = [64, 32, 3, 3]: fan_in = 288, fan_out = 576.
  const double fan_in = 32 * 9, fan_out = 64 * 9;
  Tensor w = zeros({64, 32, 3, 3});

  SECTION("uniform_ and normal_") {
    check_uniform(init::uniform_(w, -0.5, 2.0, gen), -0.5, 2.0);
    check_normal(init::normal_(w, 1.5, 0.25, gen), 1.5, 0.25);
  }
  SECTION("xavier") {
    check_uniform(init::xavier_uniform_(w, gen, 5.0 / 3),
                  -5.0 / 3 * std::sqrt(6 / (fan_in + fan_out)),
                  5.0 / 3 * std::sqrt(6 / (fan_in + fan_out)));
    check_normal(init::xavier_normal_(w, gen), 0.0, std::sqrt(2 / (fan_in + fan_out)));
  }
  SECTION("kaiming") {
    // Linear's default: a = sqrt(5) gives the bound 1 / sqrt(fan_in).
    check_uniform(init::kaiming_uniform_(w, gen, {.a = std::sqrt(5.0)}), -1 / std::sqrt(fan_in),
                  1 / std::sqrt(fan_in));
    double relu_out = std::sqrt(2.0) * std::sqrt(3 / fan_out);
    check_uniform(
        init::kaiming_uniform_(w, gen, {.mode = init::FanMode::FanOut, .nonlinearity = "relu"}),
        -relu_out, relu_out);
    // Defaults: leaky_relu with a = 0 (gain sqrt 2), fan_in.
    check_normal(init::kaiming_normal_(w, gen), 0.0, std::sqrt(2.0) / std::sqrt(fan_in));
    check_normal(init::kaiming_normal_(w, gen, {.a = 0.2, .mode = init::FanMode::FanOut}), 0.0,
                 std::sqrt(2.0 / 1.04) / std::sqrt(fan_out));
  }
  SECTION("float64 tensors are filled in their own dtype") {
    Tensor w64 = zeros({300, 200}, {.dtype = DType::Float64});
    init::normal_(w64, 0.0, 1.0, gen);
    CHECK(w64.dtype() == DType::Float64);
    check_normal(w64, 0.0, 1.0);
  }
}

TEST_CASE("init: in place on parameters, constants, and errors", "[nn][init]") {
  Generator gen(111);
  Linear layer({.in = 3, .out = 2, .generator = &gen});
  Tensor weight = layer.weight();
  uint64_t version = weight.storage()->version();
  // Works with grad mode on although the parameter requires grad.
  REQUIRE(GradMode::is_enabled());
  Tensor returned = init::constant_(weight, 0.25);
  CHECK(returned.impl() == weight.impl());
  CHECK(weight.storage()->version() > version);
  CHECK(values(layer.weight()) == std::vector<double>(6, 0.25));
  CHECK(values(init::zeros_(layer.bias())) == std::vector<double>(2, 0.0));
  CHECK(values(init::ones_(layer.bias())) == std::vector<double>(2, 1.0));
  CHECK(layer.weight().requires_grad());
  CHECK(layer.weight().is_leaf());
  // The same seed gives the same values.
  Generator a(5), b(5);
  CHECK(values(init::xavier_uniform_(zeros({4, 4}), a)) ==
        values(init::xavier_uniform_(zeros({4, 4}), b)));

  Tensor ints = zeros({2, 2}, {.dtype = DType::Int64});
  REQUIRE_THROWS_WITH(init::uniform_(ints, 0, 1, gen),
                      Catch::Contains("uniform_: needs a floating-point tensor, got int64[2, 2]"));
  REQUIRE_THROWS_WITH(init::kaiming_normal_(ints, gen), Catch::Contains("kaiming_normal_"));
  REQUIRE_THROWS_WITH(init::uniform_(zeros({2}), 1.0, 0.0, gen),
                      Catch::Contains("uniform_: low (1) must not exceed high (0)"));
  REQUIRE_THROWS_WITH(init::normal_(zeros({2}), 0.0, -1.0, gen),
                      Catch::Contains("normal_: std must be non-negative, got -1"));
  REQUIRE_THROWS_WITH(init::xavier_uniform_(zeros({3}), gen),
                      Catch::Contains("calculate_fan_in_and_fan_out"));
  REQUIRE_THROWS_WITH(init::kaiming_uniform_(zeros({3, 3}), gen, {.nonlinearity = "swish"}),
                      Catch::Contains("unknown nonlinearity 'swish'"));
}
