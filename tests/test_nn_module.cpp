// The Module base (nn/module.h): registration and dotted names, state dicts
// and their strict/non-strict loading, train/eval, dtype moves, gradients,
// parameter counts and the printed tree.
#include <catch2/catch.hpp>

#include <algorithm>

#include "nn/layers.h"

using namespace tide;
using namespace tide::nn;

namespace {

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& list) {
  std::vector<std::string> names;
  for (const auto& [name, t] : list) names.push_back(name);
  return names;
}

// A leaf module with one parameter and one buffer.
class Inner : public Module {
 public:
  Inner() {
    w = register_parameter("w", ones({2, 3}));
    running = register_buffer("running", zeros({3}));
  }
  Tensor forward(const Tensor& x) override { return matmul(x, transpose(w, 0, 1)); }
  std::string type_name() const override { return "Inner"; }
  Tensor w, running;
};

// A module nesting a custom child and a Sequential two levels down.
class Outer : public Module {
 public:
  explicit Outer(Generator& gen) {
    scale = register_parameter("scale", full({1}, 2.0));
    inner = register_module("inner", std::make_shared<Inner>());
    seq = register_module("seq", std::make_shared<Sequential>());
    seq->push_back(std::make_shared<Linear>(LinearOptions{.in = 2, .out = 4, .generator = &gen}));
    seq->push_back(std::make_shared<ReLU>());
    seq->push_back(std::make_shared<Linear>(LinearOptions{.in = 4, .out = 1, .generator = &gen}));
  }
  Tensor forward(const Tensor& x) override { return mul(seq->forward(inner->forward(x)), scale); }
  std::string type_name() const override { return "Outer"; }
  Tensor scale;
  std::shared_ptr<Inner> inner;
  std::shared_ptr<Sequential> seq;
};

// Registration helpers exposed for the error tests.
class Open : public Module {
 public:
  std::string type_name() const override { return "Open"; }
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
};

// A module with both extra text and a child, for repr().
class Block : public Module {
 public:
  Block() { register_module("act", std::make_shared<ReLU>()); }
  std::string type_name() const override { return "Block"; }

 protected:
  std::string extra_repr() const override { return "k=3"; }
};

bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         to(a, DType::Float64).to_vector<double>() == to(b, DType::Float64).to_vector<double>();
}

}  // namespace

TEST_CASE("Module: named_parameters gives dotted names in registration order", "[nn][module]") {
  Generator gen(1);
  Outer model(gen);
  using Names = std::vector<std::string>;
  CHECK(names_of(model.named_parameters()) ==
        Names{"scale", "inner.w", "seq.0.weight", "seq.0.bias", "seq.2.weight", "seq.2.bias"});
  CHECK(names_of(model.named_parameters(/*recurse=*/false)) == Names{"scale"});
  CHECK(names_of(model.named_buffers()) == Names{"inner.running"});
  Names children;
  for (const auto& [name, child] : model.named_children()) children.push_back(name);
  CHECK(children == Names{"inner", "seq"});
  // The listed tensors are the module's own (same impl), not copies.
  CHECK(model.named_parameters()[1].second.impl() == model.inner->w.impl());
  CHECK(model.parameters().size() == 6);
  for (const Tensor& p : model.parameters()) CHECK(p.requires_grad());
  CHECK_FALSE(model.inner->running.requires_grad());
}

TEST_CASE("Module: num_parameters counts elements, tied tensors once", "[nn][module]") {
  Generator gen(2);
  Outer model(gen);
  // scale 1 + w 6 + Linear(2,4) 12 + Linear(4,1) 5.
  CHECK(model.num_parameters() == 1 + 6 + 12 + 5);

  // One child registered under two names: its parameters are listed once (as
  // PyTorch's remove_duplicate does) while the state dict keeps both names.
  Open tied;
  auto shared = std::make_shared<Linear>(LinearOptions{.in = 3, .out = 2, .generator = &gen});
  tied.register_module("a", shared);
  tied.register_module("b", shared);
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"a.weight", "a.bias"});
  CHECK(tied.num_parameters() == 8);
  CHECK(tied.state_dict().size() == 4);
}

TEST_CASE("Module: registering a duplicate or dotted name throws", "[nn][module]") {
  Open m;
  m.register_parameter("w", zeros({2}));
  REQUIRE_THROWS_AS(m.register_parameter("w", zeros({2})), Error);
  REQUIRE_THROWS_WITH(m.register_buffer("w", zeros({2})),
                      Catch::Contains("Open") && Catch::Contains("'w' is already registered"));
  REQUIRE_THROWS_WITH(m.register_module("w", std::make_shared<ReLU>()),
                      Catch::Contains("'w' is already registered"));
  REQUIRE_THROWS_AS(m.register_parameter("a.b", zeros({2})), Error);
  REQUIRE_THROWS_WITH(m.register_buffer("a.b", zeros({2})), Catch::Contains("invalid name 'a.b'"));
  REQUIRE_THROWS_WITH(m.register_module("", std::make_shared<ReLU>()),
                      Catch::Contains("invalid name ''"));
  REQUIRE_THROWS_WITH(m.register_module("null", std::shared_ptr<ReLU>()),
                      Catch::Contains("'null' is null"));
  // A parameter may be registered frozen; it is still a parameter.
  Tensor frozen = m.register_parameter("frozen", ones({2}, {.requires_grad = true}), false);
  CHECK_FALSE(frozen.requires_grad());
  CHECK(m.named_parameters().back().first == "frozen");
  // A computed buffer is kept as a detached alias (state, not graph).
  Tensor computed = m.register_buffer("computed", mul(ones({2}, {.requires_grad = true}), 3.0));
  CHECK(computed.is_leaf());
  CHECK_FALSE(computed.requires_grad());
  m.to(DType::Float64);
  CHECK(computed.dtype() == DType::Float64);
  REQUIRE_THROWS_WITH(m.register_buffer("undef", Tensor()),
                      Catch::Contains("Open: buffer 'undef' is undefined"));
  // A parameter must be a leaf.
  Tensor leaf = ones({2}, {.requires_grad = true});
  REQUIRE_THROWS_WITH(m.register_parameter("nonleaf", mul(leaf, 2.0)),
                      Catch::Contains("'nonleaf' must be a leaf"));
  // A module without a one-input forward says so.
  REQUIRE_THROWS_WITH(m.forward(zeros({1})), Catch::Contains("Open: this module has no"));
}

TEST_CASE("Module: state_dict and load_state_dict round trip", "[nn][module]") {
  Generator gen_a(3), gen_b(4);
  Outer a(gen_a), b(gen_b);
  StateDict state = a.state_dict();
  using Names = std::vector<std::string>;
  Names keys;
  for (const auto& [name, t] : state) keys.push_back(name);
  CHECK(keys == Names{"inner.running", "inner.w", "scale", "seq.0.bias", "seq.0.weight",
                      "seq.2.bias", "seq.2.weight"});  // sorted: a std::map
  // The entries alias the module's data but carry no autograd state.
  CHECK(state.at("inner.w").storage() == a.inner->w.storage());
  CHECK_FALSE(state.at("seq.0.weight").requires_grad());

  // Make a's buffer and scale differ from b's, then load a into b.
  fill_(state.at("inner.running"), 7.0);  // writes through to a
  CHECK(a.inner->running.to_vector<float>() == std::vector<float>{7, 7, 7});
  REQUIRE_FALSE(same_values(a.seq->at<Linear>(0)->weight(), b.seq->at<Linear>(0)->weight()));
  b.load_state_dict(a.state_dict());
  for (const auto& [name, t] : a.state_dict()) {
    INFO(name);
    CHECK(same_values(t, b.state_dict().at(name)));
    // Loading copies: b's tensors are still its own.
    CHECK(t.storage() != b.state_dict().at(name).storage());
  }
  // b's handles (held by its layers) see the loaded values.
  CHECK(same_values(b.seq->at<Linear>(2)->bias(), a.seq->at<Linear>(2)->bias()));

  // Loading a module's own state into itself changes nothing.
  StateDict before;
  for (const auto& [name, t] : b.state_dict()) before[name] = clone(t);
  b.load_state_dict(b.state_dict());
  for (const auto& [name, t] : b.state_dict()) CHECK(same_values(t, before.at(name)));

  // float64 values are converted to the parameters' float32.
  StateDict wide;
  for (const auto& [name, t] : a.state_dict()) wide[name] = mul(to(t, DType::Float64), 0.5);
  b.load_state_dict(wide);
  CHECK(b.scale.dtype() == DType::Float32);
  CHECK(b.scale.item() == 1.0);
  CHECK(b.inner->running.to_vector<float>() == std::vector<float>{3.5f, 3.5f, 3.5f});
}

TEST_CASE("Module: strict load lists every missing, unexpected and mismatched key",
          "[nn][module]") {
  Generator gen(5);
  Outer model(gen);
  StateDict state = model.state_dict();
  Tensor before = clone(model.scale);
  state.erase("seq.0.bias");              // missing
  state.erase("inner.running");           // missing
  state["seq.9.weight"] = zeros({2});     // unexpected
  state["extra"] = zeros({1});            // unexpected
  state["seq.2.weight"] = zeros({1, 5});  // shape mismatch ([1, 4] expected)
  state["scale"] = zeros({3});            // shape mismatch ([1] expected)
  auto load = [&] { model.load_state_dict(state, /*strict=*/true); };
  REQUIRE_THROWS_AS(load(), Error);
  REQUIRE_THROWS_WITH(load(), Catch::Contains("load_state_dict") && Catch::Contains("Outer") &&
                                  Catch::Contains("missing keys: inner.running, seq.0.bias") &&
                                  Catch::Contains("unexpected keys: extra, seq.9.weight") &&
                                  Catch::Contains("scale (expected [1], got [3])") &&
                                  Catch::Contains("seq.2.weight (expected [1, 4], got [1, 5])"));
  // A failed load changes nothing.
  CHECK(same_values(model.scale, before));
}

TEST_CASE("Module: non-strict load skips missing and unexpected keys", "[nn][module]") {
  Generator gen_a(6), gen_b(7);
  Outer a(gen_a), b(gen_b);
  StateDict state = a.state_dict();
  state.erase("seq.0.bias");
  state["not.in.model"] = zeros({4});
  Tensor kept_bias = clone(b.seq->at<Linear>(0)->bias());
  b.load_state_dict(state, /*strict=*/false);
  CHECK(same_values(b.seq->at<Linear>(0)->weight(), a.seq->at<Linear>(0)->weight()));
  CHECK(same_values(b.seq->at<Linear>(0)->bias(), kept_bias));  // missing: left alone
  // Strict loading of the same dict fails.
  REQUIRE_THROWS_WITH(b.load_state_dict(state),
                      Catch::Contains("missing keys: seq.0.bias") &&
                          Catch::Contains("unexpected keys: not.in.model"));
  // A shape mismatch is an error even when not strict (as in PyTorch).
  state["scale"] = zeros({2});
  REQUIRE_THROWS_WITH(b.load_state_dict(state, false),
                      Catch::Contains("scale (expected [1], got [2])"));
}

TEST_CASE("Module: train and eval propagate to every descendant", "[nn][module]") {
  Generator gen(8);
  auto dropout = std::make_shared<Dropout>(0.5, gen);
  auto inner = std::make_shared<Sequential>(
      std::initializer_list<std::shared_ptr<Module>>{std::make_shared<ReLU>(), dropout});
  Sequential outer({std::make_shared<Tanh>(), inner});
  Tensor x = full({1000}, 0.5);
  CHECK(outer.is_training());
  CHECK(dropout->is_training());
  // Training: about half the elements are dropped.
  auto zeros_in = [](const Tensor& y) {
    auto v = y.to_vector<float>();
    return std::count(v.begin(), v.end(), 0.0f);
  };
  CHECK(zeros_in(outer(x)) > 300);
  outer.eval();
  CHECK_FALSE(outer.is_training());
  CHECK_FALSE(inner->is_training());
  CHECK_FALSE(dropout->is_training());
  CHECK(same_values(outer(x), tanh(x)));  // identity dropout in eval
  outer.train();
  CHECK(dropout->is_training());
  CHECK(zeros_in(outer(x)) > 300);
}

TEST_CASE("Module: to(Float64) converts in place and gradients flow afterwards", "[nn][module]") {
  Generator gen(9);
  Outer model(gen);
  Linear& first = *model.seq->at<Linear>(0);
  Tensor held = first.weight();              // a handle kept elsewhere
  Tensor from_list = model.parameters()[2];  // the same tensor, via the list
  std::vector<float> values32 = held.to_vector<float>();
  // A gradient that exists before the move is converted with its parameter.
  Tensor x32 = ones({3, 3});
  backward(sum(model(x32)));
  REQUIRE(held.grad().defined());
  std::vector<float> grad32 = held.grad().to_vector<float>();

  model.to(DType::Float64);
  for (const auto& [name, t] : model.state_dict()) {
    INFO(name);
    CHECK(t.dtype() == DType::Float64);
  }
  CHECK(held.dtype() == DType::Float64);
  CHECK(from_list.dtype() == DType::Float64);
  CHECK(first.weight().impl() == held.impl());  // same tensor, new data
  CHECK(held.requires_grad());
  CHECK(held.is_leaf());
  // float32 -> float64 is exact.
  std::vector<double> values64 = held.to_vector<double>();
  std::vector<double> grad64 = held.grad().to_vector<double>();
  REQUIRE(values64.size() == values32.size());
  for (size_t i = 0; i < values32.size(); ++i) {
    CHECK(values64[i] == static_cast<double>(values32[i]));
    CHECK(grad64[i] == static_cast<double>(grad32[i]));
  }
  CHECK(model.inner->running.dtype() == DType::Float64);

  // A float64 forward and backward now reaches every parameter in float64.
  model.zero_grad();
  Tensor x = ones({3, 3}, {.dtype = DType::Float64});
  Tensor y = model(x);
  CHECK(y.dtype() == DType::Float64);
  backward(sum(y));
  for (const auto& [name, p] : model.named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().dtype() == DType::Float64);
  }
  // scale's gradient is sum(seq(inner(x))) (y = scale * that), in closed form.
  Tensor inner_out = detach(model.seq->forward(model.inner->forward(x)));
  CHECK(model.scale.grad().item() == Approx(sum(inner_out).item()).epsilon(1e-12));

  REQUIRE_THROWS_WITH(model.to(DType::Int64),
                      Catch::Contains("Outer.to") && Catch::Contains("floating point"));
}

TEST_CASE("Module: zero_grad clears every gradient", "[nn][module]") {
  Generator gen(10);
  Outer model(gen);
  backward(sum(model(ones({2, 3}))));
  for (const Tensor& p : model.parameters()) REQUIRE(p.grad().defined());
  model.zero_grad();
  for (const Tensor& p : model.parameters()) CHECK_FALSE(p.grad().defined());
  // Gradients accumulate again from scratch afterwards.
  backward(sum(model(ones({2, 3}))));
  Tensor g1 = clone(model.scale.grad());
  backward(sum(model(ones({2, 3}))));
  CHECK(model.scale.grad().item() == Approx(2 * g1.item()));
}

TEST_CASE("Module: repr prints PyTorch's tree", "[nn][module]") {
  Generator gen(11);
  // The text PyTorch prints for torchcfm's MLP(dim=2, time_varying=True).
  TorchCfmMLP model({.dim = 2, .time_varying = true, .generator = &gen});
  CHECK(model.repr() ==
        "MLP(\n"
        "  (net): Sequential(\n"
        "    (0): Linear(in_features=3, out_features=64, bias=True)\n"
        "    (1): SELU()\n"
        "    (2): Linear(in_features=64, out_features=64, bias=True)\n"
        "    (3): SELU()\n"
        "    (4): Linear(in_features=64, out_features=64, bias=True)\n"
        "    (5): SELU()\n"
        "    (6): Linear(in_features=64, out_features=2, bias=True)\n"
        "  )\n"
        ")");
  Sequential other({std::make_shared<Linear>(LinearOptions{.in = 4, .out = 4, .bias = false}),
                    std::make_shared<ELU>(0.5), std::make_shared<Softplus>(2.0, 10.0),
                    std::make_shared<GELU>(GeluApproximation::Tanh), std::make_shared<Dropout>(0.1),
                    std::make_shared<LayerNorm>(LayerNormOptions{.normalized_shape = {4}})});
  CHECK(other.repr() ==
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=4, bias=False)\n"
        "  (1): ELU(alpha=0.5)\n"
        "  (2): Softplus(beta=2.0, threshold=10.0)\n"
        "  (3): GELU(approximate='tanh')\n"
        "  (4): Dropout(p=0.1, inplace=False)\n"
        "  (5): LayerNorm((4,), eps=1e-05, elementwise_affine=True)\n"
        ")");
  // Extra text and children: PyTorch puts the extra text on its own line.
  CHECK(Block().repr() == "Block(\n  k=3\n  (act): ReLU()\n)");
  Sequential nested({std::make_shared<Block>()});
  CHECK(nested.repr() == "Sequential(\n  (0): Block(\n    k=3\n    (act): ReLU()\n  )\n)");
}
