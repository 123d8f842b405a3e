// One model shared by several threads: sampling (ODE solves) and exact
// log-likelihoods computed concurrently must be bit-identical to the same
// computations run on one thread.
//
// A VelocityMLP in eval mode is read-only during inference, but the threads
// still share process-wide state underneath: the oneDNN plan cache, the CPU
// thread pool (one job at a time; other callers run inline), OpenMP's
// per-thread settings, autograd's grad mode and the parameters' autograd
// bookkeeping (every graph recorded through a parameter links to its
// gradient sink). Any race there shows up as a wrong or differing result
// here, and as a report when this file runs under ThreadSanitizer
// (scripts/test_tsan.sh).
//
// The threads run first, on shapes no other test uses, so they also race to
// create the oneDNN plans; the single-threaded reference runs afterwards.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "autograd/ops.h"
#include "flow/likelihood.h"
#include "flow/model.h"
#include "tensor/creation.h"

using namespace tide;
using namespace tide::flow;

namespace {

constexpr int kThreads = 4;
constexpr int kRepeats = 2;  // per thread, so threads overlap on warm caches too

// Everything one thread computes with the shared model.
struct Results {
  std::vector<double> samples;         // solve(): x1 from x0
  std::vector<double> log_p_forward;   // exact divergence, VelocityMLP's forward mode
  std::vector<double> log_p_autograd;  // exact divergence, one reverse pass per evaluation
  std::vector<double> log_p_hutchinson;
};

std::shared_ptr<VelocityMLP> shared_model() {
  Generator gen(7);
  auto model = std::make_shared<VelocityMLP>(
      VelocityMLPOptions{.dim = 3, .width = 24, .hidden_layers = 2, .generator = &gen});
  model->to(DType::Float64);
  model->eval();
  return model;
}

Results compute(VelocityMLP& model, const Tensor& x0, const Tensor& x1) {
  Results r;
  SolveOptions solve_options;  // dopri5, adaptive: the step sequence depends on every value
  r.samples = solve(model.as_fn(), x0, 0.0, 1.0, solve_options).x.to_vector<double>();

  LikelihoodOptions exact;  // dopri5, exact divergence
  r.log_p_forward = log_likelihood(model, x1, exact).log_p.to_vector<double>();
  // The VelocityFn overload: the divergence by autograd, recording a graph
  // through the shared parameters in every thread.
  r.log_p_autograd = log_likelihood(model.as_fn(), x1, exact).log_p.to_vector<double>();

  LikelihoodOptions hutchinson;
  hutchinson.solver = Solver::RK4;
  hutchinson.steps = 8;
  hutchinson.divergence = Divergence::Hutchinson;
  hutchinson.probes = 3;
  hutchinson.seed = 11;
  r.log_p_hutchinson = log_likelihood(model.as_fn(), x1, hutchinson).log_p.to_vector<double>();
  return r;
}

// Bit-for-bit equality (memcmp), so even a last-bit difference from a racing
// reduction or a wrongly shared buffer fails.
bool bit_identical(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

TEST_CASE("concurrency: threads sharing one model sample and compute likelihoods bit-identically",
          "[concurrency][flow]") {
  auto model = shared_model();
  Generator gen(3);
  const Tensor x0 = randn({13, 3}, gen, {.dtype = DType::Float64});
  const Tensor x1 = randn({13, 3}, gen, {.dtype = DType::Float64});

  std::vector<std::vector<Results>> per_thread(kThreads);
  std::vector<std::string> errors(kThreads);
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        try {
          for (int k = 0; k < kRepeats; ++k) per_thread[i].push_back(compute(*model, x0, x1));
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }
  for (int i = 0; i < kThreads; ++i) {
    INFO("thread " << i);
    REQUIRE(errors[i].empty());
  }

  const Results reference = compute(*model, x0, x1);
  // The reference itself is meaningful: finite, and the three exact-divergence
  // paths agree (the forward-mode and reverse-mode traces to rounding).
  REQUIRE(reference.samples.size() == 13 * 3);
  REQUIRE(reference.log_p_forward.size() == 13);
  for (size_t j = 0; j < 13; ++j) {
    REQUIRE(std::isfinite(reference.log_p_forward[j]));
    REQUIRE(reference.log_p_autograd[j] == Approx(reference.log_p_forward[j]).epsilon(1e-9));
    REQUIRE(std::isfinite(reference.log_p_hutchinson[j]));
  }

  for (int i = 0; i < kThreads; ++i) {
    for (int k = 0; k < kRepeats; ++k) {
      INFO("thread " << i << ", repeat " << k);
      const Results& r = per_thread[i][k];
      CHECK(bit_identical(r.samples, reference.samples));
      CHECK(bit_identical(r.log_p_forward, reference.log_p_forward));
      CHECK(bit_identical(r.log_p_autograd, reference.log_p_autograd));
      CHECK(bit_identical(r.log_p_hutchinson, reference.log_p_hutchinson));
    }
  }
  // Inference left no gradient behind on the shared parameters.
  for (const Tensor& p : model->parameters()) REQUIRE_FALSE(p.grad().defined());
}
