// Anomaly mode (autograd/anomaly.h): the first NaN or Inf in a forward or
// backward pass throws tide::Error naming the op, its inputs and the module.
//
// Each case builds a model whose first non-finite value is known in closed
// form (log of a negative number, the derivative 1 / (2 sqrt x) at 0, a
// product that overflows float32), so the expected op, module path and count
// come from the construction, not from running the code.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "autograd/anomaly.h"
#include "autograd/autograd.h"
#include "autograd/ops.h"
#include "flow/model.h"
#include "nn/activation.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "tensor/creation.h"

using namespace tide;

namespace {

// Modules for ops that have none of their own.
struct LogModule : nn::Module {
  Tensor forward(const Tensor& x) override { return log(x); }
  std::string type_name() const override { return "Log"; }
};
struct SqrtModule : nn::Module {
  Tensor forward(const Tensor& x) override { return sqrt(x); }
  std::string type_name() const override { return "Sqrt"; }
};
// Records the module path its forward ran under.
struct PathProbe : nn::Module {
  std::string seen = "unset";
  Tensor forward(const Tensor& x) override {
    seen = current_module_path();
    return x;
  }
  std::string type_name() const override { return "PathProbe"; }
};

void fill_parameter(const Tensor& p, double value) {
  NoGradGuard no_grad;
  fill_(p, value);
}

// Linear(2 -> 3) with W = -1, b = 0, then Sequential(Tanh, Log): for inputs
// with positive entries every pre-activation is negative, tanh keeps the sign,
// and log of all 6 values is NaN.
std::shared_ptr<nn::Sequential> negative_log_model() {
  Generator gen(0);
  auto linear =
      std::make_shared<nn::Linear>(nn::LinearOptions{.in = 2, .out = 3, .generator = &gen});
  fill_parameter(linear->weight(), -1.0);
  fill_parameter(linear->bias(), 0.0);
  auto inner = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Tanh>(), std::make_shared<LogModule>()});
  return std::make_shared<nn::Sequential>(
      std::initializer_list<std::shared_ptr<nn::Module>>{linear, inner});
}

}  // namespace

TEST_CASE("anomaly: off by default, NaN and Inf propagate silently", "[autograd][anomaly]") {
  REQUIRE_FALSE(detect_anomaly_enabled());
  auto model = negative_log_model();
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor y;
  REQUIRE_NOTHROW(y = model->forward(x));
  for (float v : y.to_vector<float>()) CHECK(std::isnan(v));

  // d sqrt(x) / dx = 1 / (2 sqrt(x)): +Inf at 0, 0.5 at 1, 0.25 at 4.
  Tensor z = from_vector<double>({0, 1, 4}, {3}, {.dtype = DType::Float64, .requires_grad = true});
  REQUIRE_NOTHROW(backward(sum(sqrt(z))));
  std::vector<double> g = z.grad().to_vector<double>();
  CHECK(std::isinf(g[0]));
  CHECK(g[0] > 0);
  CHECK(g[1] == 0.5);
  CHECK(g[2] == 0.25);

  // Module scopes record nothing when the mode is off.
  auto probe = std::make_shared<PathProbe>();
  nn::Sequential seq{std::make_shared<nn::Tanh>(), probe};
  Tensor w = ones({2}, {.requires_grad = true});
  seq.forward(w);
  CHECK(probe->seen == "");
}

TEST_CASE("anomaly: the guard sets and restores the mode, also when an error escapes",
          "[autograd][anomaly]") {
  {
    DetectAnomalyGuard guard;
    CHECK(detect_anomaly_enabled());
    {
      DetectAnomalyGuard off(false);
      CHECK_FALSE(detect_anomaly_enabled());
    }
    CHECK(detect_anomaly_enabled());
  }
  CHECK_FALSE(detect_anomaly_enabled());
  try {
    DetectAnomalyGuard guard;
    negative_log_model()->forward(from_vector<float>({1, 2}, {1, 2}));
    FAIL("expected an anomaly error");
  } catch (const Error&) {
  }
  CHECK_FALSE(detect_anomaly_enabled());
  set_detect_anomaly(true);
  CHECK(detect_anomaly_enabled());
  set_detect_anomaly(false);
  CHECK_FALSE(detect_anomaly_enabled());
}

TEST_CASE("anomaly: module scopes join into the parameter-style path", "[autograd][anomaly]") {
  DetectAnomalyGuard guard;
  auto probe = std::make_shared<PathProbe>();
  auto inner = std::make_shared<nn::Sequential>(
      std::initializer_list<std::shared_ptr<nn::Module>>{std::make_shared<nn::Tanh>(), probe});
  nn::Sequential outer{std::make_shared<nn::Tanh>(), std::make_shared<nn::Tanh>(), inner};
  outer.forward(ones({2}));
  CHECK(probe->seen == "2.1");
  CHECK(current_module_path() == "");  // every scope closed again
}

TEST_CASE("anomaly: a forward NaN names the op, its input shapes and the module path",
          "[autograd][anomaly]") {
  DetectAnomalyGuard guard;
  auto model = negative_log_model();
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  REQUIRE_THROWS_WITH(model->forward(x), Catch::Contains("detect_anomaly: 'log' in module '1.1'") &&
                                             Catch::Contains("produced NaN (6 of 6 elements)") &&
                                             Catch::Contains("output float32[2, 3]") &&
                                             Catch::Contains("its inputs: (float32[2, 3])") &&
                                             !Catch::Contains("came in through an input"));

  // A point where only some pre-activations are negative: x = (1, -2) gives
  // -(1 - 2) = 1 > 0 in every unit, x = (1, 1) gives -2: 3 NaNs of 6.
  Tensor mixed = from_vector<float>({1, -2, 1, 1}, {2, 2});
  REQUIRE_THROWS_WITH(model->forward(mixed), Catch::Contains("NaN (3 of 6 elements)"));
}

TEST_CASE("anomaly: a NaN that comes in with the data is traced to the input",
          "[autograd][anomaly]") {
  DetectAnomalyGuard guard;
  Generator gen(1);
  nn::Sequential model{
      std::make_shared<nn::Linear>(nn::LinearOptions{.in = 2, .out = 4, .generator = &gen})};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = from_vector<float>({1, nan, 3, 4}, {2, 2});
  REQUIRE_THROWS_WITH(model.forward(x),
                      Catch::Contains("'linear' in module '0'") &&
                          Catch::Contains("NaN (4 of 8 elements)") &&
                          Catch::Contains("float32[2, 2] holding NaN (1 of 4 elements)") &&
                          Catch::Contains("float32[4, 2], float32[4]") &&
                          Catch::Contains("came in through an input"));
}

TEST_CASE("anomaly: an overflow inside VelocityMLP names 'net.2'", "[autograd][anomaly]") {
  Generator gen(2);
  flow::VelocityMLP model({.dim = 2, .width = 8, .hidden_layers = 2, .generator = &gen});
  nn::StateDict state = model.state_dict();
  // net.0: W = 0, b = 10, so every hidden unit is selu(10) = 10.5; net.2:
  // W = 1e38, so each output is 8 * 10.5 * 1e38 = 8.4e39 > FLT_MAX: all Inf.
  fill_parameter(state.at("net.0.weight"), 0.0);
  fill_parameter(state.at("net.0.bias"), 10.0);
  fill_parameter(state.at("net.2.weight"), 1e38);
  Tensor x = from_vector<float>({0.5f, -1.f, 2.f, 0.f}, {2, 2});
  Tensor t = from_vector<float>({0.25f, 0.75f}, {2});
  {
    DetectAnomalyGuard off(false);
    Tensor v = model.forward(x, t);  // Inf and NaN flow through silently
    for (float e : v.to_vector<float>()) CHECK_FALSE(std::isfinite(e));
  }
  DetectAnomalyGuard guard;
  REQUIRE_THROWS_WITH(
      model.forward(x, t),
      Catch::Contains("'linear' in module 'net.2' produced Inf (16 of 16 elements)") &&
          Catch::Contains("its inputs: (float32[2, 8], float32[8, 8], float32[8])") &&
          !Catch::Contains("holding"));
}

TEST_CASE("anomaly: a backward-only Inf names the backward node and where it was created",
          "[autograd][anomaly]") {
  DetectAnomalyGuard guard;
  nn::Sequential model{std::make_shared<nn::Tanh>(), std::make_shared<SqrtModule>()};
  // tanh(0) = 0, so sqrt sees 0 in one place: finite forward, and
  // d sqrt(u) / du = 1 / (2 sqrt(u)) = +Inf there.
  Tensor x = from_vector<double>({0, 1, 2}, {3}, {.dtype = DType::Float64, .requires_grad = true});
  Tensor y;
  REQUIRE_NOTHROW(y = sum(model.forward(x)));
  REQUIRE(std::isfinite(y.item()));
  REQUIRE_THROWS_WITH(backward(y),
                      Catch::Contains("detect_anomaly: the backward of 'sqrt' (created in module "
                                      "'1') returned Inf (1 of 3 elements)") &&
                          Catch::Contains("gradient for its input 0 (float64[3])") &&
                          Catch::Contains("the forward op's inputs: (float64[3])"));

  // With create_graph the backward's own ops record nodes, and the first one
  // producing Inf is reported as running inside the backward of 'sqrt'.
  Tensor y2 = sum(model.forward(x));
  REQUIRE_THROWS_WITH(grad({y2}, {x}, {}, {.create_graph = true}),
                      Catch::Contains("while computing the backward of 'sqrt' (created in module "
                                      "'1')"));
}

TEST_CASE("anomaly: finite passes are unchanged by the mode", "[autograd][anomaly]") {
  Generator gen(3);
  flow::VelocityMLP model({.dim = 2, .width = 8, .hidden_layers = 2, .generator = &gen});
  Tensor x = from_vector<float>({0.5f, -1.f, 2.f, 0.f}, {2, 2});
  Tensor t = from_vector<float>({0.25f, 0.75f}, {2});
  auto run = [&] {
    model.zero_grad();
    Tensor loss = mean(square(model.forward(x, t)));
    backward(loss);
    std::vector<float> out = {static_cast<float>(loss.item())};
    for (const Tensor& p : model.parameters())
      for (float v : p.grad().to_vector<float>()) out.push_back(v);
    return out;
  };
  std::vector<float> plain = run();
  DetectAnomalyGuard guard;
  CHECK(run() == plain);
}
