// The cuda_graph options on a GPU: a training step, a fixed-step solver step
// and an exact-likelihood step captured as CUDA graphs and replayed, against
// the same computation run eagerly on the same device; replays must not
// allocate. (tests/test_flow_graph.cpp checks the same static steps on the
// CPU, where they run eagerly.)
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "autograd/ops.h"
#include "backends/backend.h"
#include "flow/likelihood.h"
#include "flow/model.h"
#include "flow/trainer.h"

using namespace tide;
using namespace tide::flow;
using Catch::Contains;

namespace {

const Device kCuda = Device::cuda();

std::shared_ptr<VelocityMLP> gpu_model(uint64_t seed, int64_t width = 64) {
  Generator init(seed);
  auto model = std::make_shared<VelocityMLP>(
      VelocityMLPOptions{.dim = 2, .width = width, .generator = &init});
  model->to(kCuda);
  return model;
}

// max |a - b| / (1 + |b|) over two tensors (copied to the host).
double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  return worst;
}

double max_rel_diff(const nn::Module& a, const nn::Module& b) {
  const nn::StateDict sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  double worst = 0;
  for (const auto& [name, tensor] : sa) worst = std::max(worst, max_rel_diff(tensor, sb.at(name)));
  return worst;
}

TrainOptions training_options() {
  TrainOptions options{.batch = 256, .steps = 20};
  options.lr_schedule = LRSchedule::Cosine;
  options.warmup_steps = 3;
  options.grad_clip = 1.0;
  options.ema_decay = 0.9;
  options.ema_warmup = true;
  options.log_every = 5;
  return options;
}

}  // namespace

TEST_CASE("cuda graph: 20 captured training steps give the eager parameters", "[cuda][graph]") {
  const DataSource data = toy_data_source("8gaussians");
  TrainOptions options = training_options();
  auto eager = gpu_model(1);
  const TrainResult a = train_cfm(*eager, data, options);
  auto graphed = gpu_model(1);
  options.cuda_graph = true;
  const TrainResult b = train_cfm(*graphed, data, options);
  CHECK(max_rel_diff(*graphed, *eager) <= 1e-5);
  CHECK(max_rel_diff(*graphed, *gpu_model(1)) > 1e-3);  // it trained
  REQUIRE(b.losses.size() == a.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i)
    CHECK(b.losses[i].loss == Approx(a.losses[i].loss).epsilon(1e-5));
}

TEST_CASE("cuda graph: replayed training steps allocate nothing", "[cuda][graph]") {
  Backend& gpu = backend_for(kCuda);
  TrainOptions options = training_options();
  options.steps = 60;
  options.log_every = 10;
  options.cuda_graph = true;
  std::vector<size_t> in_use;
  options.on_progress = [&](const TrainProgress&) {
    in_use.push_back(gpu.memory_stats().bytes_in_use);
  };
  auto model = gpu_model(2);
  train_cfm(*model, toy_data_source("moons"), options);
  REQUIRE(in_use.size() == 6);
  // From the first report on (step 10, well after the capture at step 3) the
  // memory in use must not change.
  for (size_t i = 1; i < in_use.size(); ++i) CHECK(in_use[i] == in_use[0]);
}

TEST_CASE("cuda graph: RK4 sampling replays give the eager samples", "[cuda][graph]") {
  auto model = gpu_model(3);
  Generator gen(4);
  const Tensor x0 = randn({4096, 2}, gen).to(kCuda);
  SolveOptions options{.method = Solver::RK4, .steps = 50, .record_trajectory = true};
  const Solution a = solve(model->as_fn(), x0, 0.0, 1.0, options);
  options.cuda_graph = true;
  const Solution b = solve(model->as_fn(), x0, 0.0, 1.0, options);
  CHECK(max_rel_diff(b.x, a.x) <= 1e-6);
  CHECK(max_rel_diff(b.trajectory, a.trajectory) <= 1e-6);
  CHECK(b.nfe == a.nfe);
  // And the CPU's numbers, to float32 tolerance.
  auto cpu_model = gpu_model(3);
  cpu_model->to(Device::cpu());
  const Solution c = solve(cpu_model->as_fn(), x0.to(Device::cpu()), 0.0, 1.0,
                           {.method = Solver::RK4, .steps = 50});
  CHECK(max_rel_diff(b.x.to(Device::cpu()), c.x) <= 1e-4);
}

TEST_CASE("cuda graph: exact log-likelihood replays give the eager log-densities",
          "[cuda][graph]") {
  auto model = gpu_model(5);
  Generator gen(6);
  const Tensor x = randn({1000, 2}, gen).to(kCuda);
  LikelihoodOptions options{.solver = Solver::RK4, .steps = 20};
  const LikelihoodResult a = log_likelihood(*model, x, options);
  options.cuda_graph = true;
  const LikelihoodResult b = log_likelihood(*model, x, options);
  CHECK(max_rel_diff(b.log_p, a.log_p) <= 1e-6);
  CHECK(max_rel_diff(b.x0, a.x0) <= 1e-6);
  // Hutchinson and the generic (reverse-pass) divergence too.
  options.cuda_graph = false;
  options.divergence = Divergence::Hutchinson;
  options.probes = 2;
  const LikelihoodResult c = log_likelihood(model->as_fn(), x, options);
  options.cuda_graph = true;
  const LikelihoodResult d = log_likelihood(model->as_fn(), x, options);
  CHECK(max_rel_diff(d.log_p, c.log_p) <= 1e-6);
}

TEST_CASE("cuda graph: solver replays do not grow memory", "[cuda][graph]") {
  Backend& gpu = backend_for(kCuda);
  auto model = gpu_model(7);
  Generator gen(8);
  const Tensor x = randn({512, 2}, gen).to(kCuda);
  const LikelihoodOptions options{.solver = Solver::RK4, .steps = 10, .cuda_graph = true};
  log_likelihood(*model, x, options);  // warm the allocator's cache
  auto peak_of = [&](int64_t steps) {
    gpu.synchronize();
    const size_t before = gpu.memory_stats().bytes_in_use;
    gpu.reset_peak_memory_stats();
    LikelihoodOptions o = options;
    o.steps = steps;
    {
      const LikelihoodResult r = log_likelihood(*model, x, o);
      gpu.synchronize();
    }
    CHECK(gpu.memory_stats().bytes_in_use == before);  // the graph's memory is released
    return gpu.memory_stats().peak_bytes_in_use - before;
  };
  const size_t few = peak_of(10), many = peak_of(200);
  CHECK(many == few);  // 190 more replays, not one byte more
}

TEST_CASE("cuda graph: a step that reads the host fails its capture cleanly", "[cuda][graph]") {
  VelocityFn reads_host = [](const Tensor& x, const Tensor&) {
    (void)sum(x).item();  // a synchronization: not allowed in a captured step
    return neg(x);
  };
  Generator gen(9);
  const Tensor x0 = randn({8, 2}, gen).to(kCuda);
  REQUIRE_THROWS_WITH(
      solve(reads_host, x0, 0, 1, {.method = Solver::Euler, .steps = 4, .cuda_graph = true}),
      Contains("solve: capturing the step as a CUDA graph on cuda:0 failed") &&
          Contains("copy_to_host"));
  // The device is usable afterwards, and the eager path still works.
  const Solution s = solve(reads_host, x0, 0, 1, {.method = Solver::Euler, .steps = 4});
  CHECK(max_rel_diff(s.x, x0 * std::pow(0.75, 4)) <= 1e-6);
}
