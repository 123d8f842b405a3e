// VelocityMLP's forward-mode divergence (flow/model.cpp) against two
// independent references: float64 central differences of v with respect to
// each input coordinate, and the generic reverse-mode exact_divergence of
// flow/likelihood.cpp. The likelihood overloads that take a model must give the
// same log-densities as the ones that take its VelocityFn.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "flow/likelihood.h"
#include "flow/model.h"

using namespace tide;
using namespace tide::flow;

namespace {

// trace(dv/dx) per row by central differences, in float64 on the host.
std::vector<double> finite_difference_divergence(VelocityMLP& model, const Tensor& x,
                                                 const Tensor& t) {
  NoGradGuard no_grad;
  const int64_t batch = x.size(0), d = x.size(1);
  const double h = 1e-6;
  std::vector<double> trace(static_cast<size_t>(batch), 0.0);
  for (int64_t i = 0; i < d; ++i) {
    std::vector<double> e(static_cast<size_t>(d), 0.0);
    e[static_cast<size_t>(i)] = h;
    Tensor step = from_vector(e, {1, d});
    std::vector<double> plus = model.forward(add(x, step), t).to_vector<double>();
    std::vector<double> minus = model.forward(sub(x, step), t).to_vector<double>();
    for (int64_t b = 0; b < batch; ++b) {
      size_t k = static_cast<size_t>(b * d + i);
      trace[static_cast<size_t>(b)] += (plus[k] - minus[k]) / (2 * h);
    }
  }
  return trace;
}

}  // namespace

TEST_CASE("VelocityMLP forward-mode divergence matches finite differences and reverse mode",
          "[flow][likelihood][mlp]") {
  for (std::string activation :
       {"selu", "tanh", "silu", "gelu", "gelu_tanh", "elu", "softplus", "sigmoid", "relu"}) {
    for (int64_t dim : {1, 2, 5}) {
      for (int64_t hidden : {0, 1, 3}) {
        Generator gen(7 + dim + hidden);
        VelocityMLP model({.dim = dim,
                           .width = 16,
                           .hidden_layers = hidden,
                           .activation = activation,
                           .generator = &gen});
        model.to(DType::Float64);
        Tensor x = randn({6, dim}, gen, {.dtype = DType::Float64});
        Tensor t = rand({6}, gen, {.dtype = DType::Float64});
        VelocityDivergence fast = model.velocity_and_divergence(x, t, DType::Float64);
        VelocityDivergence generic = exact_divergence(model.as_fn(), x, t, DType::Float64);
        std::vector<double> fd = finite_difference_divergence(model, x, t);
        INFO(activation << " dim=" << dim << " hidden=" << hidden);
        REQUIRE(fast.divergence.shape() == Shape{6});
        REQUIRE(fast.divergence.dtype() == DType::Float64);
        REQUIRE_FALSE(fast.divergence.requires_grad());
        REQUIRE_FALSE(fast.velocity.requires_grad());
        std::vector<double> a = fast.divergence.to_vector<double>();
        std::vector<double> b = generic.divergence.to_vector<double>();
        for (size_t r = 0; r < a.size(); ++r) {
          CHECK(a[r] == Approx(b[r]).margin(1e-12));
          CHECK(a[r] == Approx(fd[r]).margin(1e-6));
        }
        std::vector<double> va = fast.velocity.to_vector<double>();
        std::vector<double> vb = model.forward(x, t).to_vector<double>();
        for (size_t r = 0; r < va.size(); ++r) CHECK(va[r] == Approx(vb[r]).margin(1e-14));
      }
    }
  }
}

TEST_CASE("likelihood through the model equals likelihood through its function",
          "[flow][likelihood][mlp]") {
  Generator gen(3);
  VelocityMLP model({.dim = 3, .width = 32, .hidden_layers = 3, .generator = &gen});
  Tensor x = randn({50, 3}, gen);
  for (Solver solver : {Solver::RK4, Solver::Dopri5}) {
    LikelihoodOptions o{.solver = solver, .steps = 20, .rtol = 1e-5, .atol = 1e-5};
    LikelihoodResult fast = log_likelihood(model, x, o);
    LikelihoodResult generic = log_likelihood(model.as_fn(), x, o);
    CHECK(fast.nfe == generic.nfe);
    std::vector<double> a = fast.log_p.to_vector<double>();
    std::vector<double> b = generic.log_p.to_vector<double>();
    REQUIRE(a.size() == 50);
    // Float32 states: both paths round differently (matrix products in a
    // different order), so agreement is to float32 precision.
    for (size_t r = 0; r < a.size(); ++r) CHECK(a[r] == Approx(b[r]).margin(2e-4));
    LikelihoodResult sampled = sample_with_log_likelihood(model, x, o);
    LikelihoodResult sampled_generic = sample_with_log_likelihood(model.as_fn(), x, o);
    std::vector<double> c = sampled.log_p.to_vector<double>();
    std::vector<double> e = sampled_generic.log_p.to_vector<double>();
    for (size_t r = 0; r < c.size(); ++r) CHECK(c[r] == Approx(e[r]).margin(2e-4));
  }
  // Hutchinson and keep_graph take the VelocityFn path: identical results.
  LikelihoodOptions h{.solver = Solver::RK4,
                      .steps = 5,
                      .divergence = Divergence::Hutchinson,
                      .probes = 3,
                      .seed = 11};
  CHECK(log_likelihood(model, x, h).log_p.to_vector<double>() ==
        log_likelihood(model.as_fn(), x, h).log_p.to_vector<double>());
}
