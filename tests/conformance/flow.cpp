// The flow layer on the device under test, against the same work on the CPU:
// CFM training steps, RK4 and Dopri5 sampling, exact and Hutchinson
// log-likelihoods. These are the flow tests that take a device; the
// tide_tests flow tests run on the CPU only.
//
// Tolerances: both sides start from identical weights, data and random
// streams (Philox is bit-identical across devices), so differences are float32
// rounding carried through a few steps or an ODE solve.
#include <cmath>

#include "conformance.h"

namespace tide::conformance {
namespace {

struct Models {
  std::shared_ptr<flow::VelocityMLP> cpu, dev;
};

// Two copies of one freshly initialised model: on the CPU and on the device.
Models make_models(int64_t dim, int64_t width, DType dtype = DType::Float32) {
  Generator g1(7), g2(7);
  Models m{std::make_shared<flow::VelocityMLP>(
               flow::VelocityMLPOptions{.dim = dim, .width = width, .generator = &g1}),
           std::make_shared<flow::VelocityMLP>(
               flow::VelocityMLPOptions{.dim = dim, .width = width, .generator = &g2})};
  m.cpu->to(dtype);
  m.dev->to(dtype);
  m.dev->to(device());
  m.cpu->eval();
  m.dev->eval();
  return m;
}

std::string what(const std::string& name, DType dtype = DType::Float32) {
  return describe_case(name, dtype, {});
}

TEST_CASE("conformance: the velocity model forward and its input gradient", "[flow]") {
  for (DType dtype : float_dtypes()) {
    Models m = make_models(3, 32, dtype);
    Generator gen(11);
    const Tensor x = randn({257, 3}, gen, {.dtype = dtype});
    const Tensor t = rand({257}, gen, {.dtype = dtype});
    const Tensor v_cpu = (*m.cpu)(x, t);
    Tensor xd = clone(to(x, device()));
    xd.set_requires_grad(true);
    const Tensor v_dev = (*m.dev)(xd, to(t, device()));
    const Tol tol = dtype == DType::Float64 ? Tol{1e-12, 1e-12, true} : Tol{1e-5, 1e-5, true};
    check_close(what("VelocityMLP forward", dtype), v_dev, to(v_cpu, DType::Float64), dtype, tol);
    Tensor x_ref = clone(x);
    x_ref.set_requires_grad(true);
    const Tensor g_cpu = grad({sum(square((*m.cpu)(x_ref, t)))}, {x_ref})[0];
    const Tensor g_dev = grad({sum(square(v_dev))}, {xd})[0];
    check_close(what("VelocityMLP input gradient", dtype), g_dev, to(g_cpu, DType::Float64), dtype,
                tol);
  }
}

TEST_CASE("conformance: CFM training steps match the CPU", "[flow][train]") {
  // Five Adam steps of I-CFM and OT-CFM on 8gaussians. The batch is drawn on
  // the host from the same generator on both sides; t and noise come from
  // Philox on the device. Adam's first steps move every weight by about lr
  // whatever the gradient's size, so the parameters are compared with a bound
  // on the steps (lr * steps) and the losses closely.
  for (const std::string matcher : {"icfm", "otcfm"}) {
    Models m = make_models(2, 32);
    m.cpu->train();
    m.dev->train();
    const flow::DataSource data = flow::toy_data_source("8gaussians");
    const flow::TrainOptions options{
        .matcher = matcher, .batch = 128, .steps = 5, .lr = 1e-3, .seed = 3, .log_every = 1};
    flow::TrainResult on_cpu_result, on_dev_result;
    try {
      on_cpu_result = flow::train_cfm(*m.cpu, data, options);
      on_dev_result = flow::train_cfm(*m.dev, data, options);
    } catch (const std::exception& e) {
      FAIL_CHECK(what("train_cfm " + matcher) + ": threw: " + e.what());
      continue;
    }
    REQUIRE(on_cpu_result.losses.size() == on_dev_result.losses.size());
    std::vector<double> cpu_losses, dev_losses;
    for (const auto& p : on_cpu_result.losses) cpu_losses.push_back(p.loss);
    for (const auto& p : on_dev_result.losses) dev_losses.push_back(p.loss);
    const Shape shape{static_cast<int64_t>(cpu_losses.size())};
    // Losses are reported as host numbers: compare them as CPU tensors.
    const Device tested = device();
    set_device(Device::cpu());
    check_close(what("train_cfm " + matcher + " losses per step"), from_vector(dev_losses, shape),
                from_vector(cpu_losses, shape), DType::Float64, {1e-5, 1e-4});
    set_device(tested);
    const auto cpu_params = m.cpu->named_parameters();
    const auto dev_params = m.dev->named_parameters();
    REQUIRE(cpu_params.size() == dev_params.size());
    for (size_t i = 0; i < cpu_params.size(); ++i)
      check_close(what("train_cfm " + matcher + " parameter " + cpu_params[i].first),
                  dev_params[i].second, to(cpu_params[i].second, DType::Float64), DType::Float32,
                  {2 * 5 * 1e-3, 0});
  }
}

TEST_CASE("conformance: sampling with RK4 and Dopri5 matches the CPU", "[flow][sample]") {
  Models m = make_models(2, 64);
  Generator gen(12);
  const Tensor x0 = randn({1000, 2}, gen);
  for (flow::Solver method : {flow::Solver::RK4, flow::Solver::Dopri5}) {
    const flow::SolveOptions options{.method = method, .steps = 20};
    const std::string name = method == flow::Solver::RK4 ? "solve rk4" : "solve dopri5";
    try {
      const flow::Solution on_cpu_result = flow::solve(m.cpu->as_fn(), x0, 0.0, 1.0, options);
      const flow::Solution on_dev_result =
          flow::solve(m.dev->as_fn(), to(x0, device()), 0.0, 1.0, options);
      // 20 steps (or the adaptive ones) of float32 rounding, |x| ~ 3.
      check_close(what(name), on_dev_result.x, to(on_cpu_result.x, DType::Float64), DType::Float32,
                  {1e-4, 1e-4, true});
    } catch (const std::exception& e) {
      FAIL_CHECK(what(name) + ": threw: " + e.what());
    }
  }
}

TEST_CASE("conformance: exact and Hutchinson log-likelihoods match the CPU", "[flow][loglik]") {
  for (int64_t dim : {2, 5}) {
    Models m = make_models(dim, 32);
    Generator gen(13);
    const Tensor x1 = randn({300, dim}, gen);
    for (flow::Divergence divergence : {flow::Divergence::Exact, flow::Divergence::Hutchinson}) {
      const flow::LikelihoodOptions options{.solver = flow::Solver::RK4,
                                            .steps = 20,
                                            .divergence = divergence,
                                            .probes = 3,
                                            .seed = 5};
      const std::string name =
          fmt::format("log_likelihood d={} {}", dim,
                      divergence == flow::Divergence::Exact ? "exact" : "hutchinson (3 probes)");
      try {
        const flow::LikelihoodResult on_cpu_result =
            flow::log_likelihood(m.cpu->as_fn(), x1, options);
        const flow::LikelihoodResult on_dev_result =
            flow::log_likelihood(m.dev->as_fn(), to(x1, device()), options);
        // log p is a sum of d + 20 * 4 float32 divergences accumulated in
        // float64: 1e-4 absolute on values of size ~5.
        check_close(what(name), on_dev_result.log_p, on_cpu_result.log_p, DType::Float64,
                    {1e-4, 1e-5});
        CHECK(on_dev_result.nfe == on_cpu_result.nfe);
      } catch (const std::exception& e) {
        FAIL_CHECK(what(name) + ": threw: " + e.what());
      }
    }
  }
}

}  // namespace
}  // namespace tide::conformance
