// The cuda_graph options of the trainer, the fixed-step solvers and the
// likelihood (flow/trainer.h, flow/ode.h, flow/likelihood.h, flow/step_graph.h),
// checked on the CPU: there the static ("graph-ready") step runs eagerly, so
// everything but the capture itself can be compared with the normal path.
//
// References: the normal (host-scalar, host-time) path of the same code,
// which tests/test_flow_*.cpp check against closed forms, float64 loops and
// PyTorch. The solver and likelihood steps do the same arithmetic in the same
// order (the step sizes are formed in float64 and rounded to the state's
// dtype exactly as the host path rounds them), so they must agree bit for
// bit; training differs only by the optimizer's fused CPU loop against the
// tensor-op update, so it must agree to float64 rounding. The capture itself
// is tested on a GPU by tests/cuda/test_cuda_flow_graph.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <stdexcept>

#include "autograd/ops.h"
#include "flow/likelihood.h"
#include "flow/model.h"
#include "flow/step_graph.h"
#include "flow/trainer.h"
#include "test_io_util.h"

using namespace tide;
using namespace tide::flow;
using Catch::Contains;

namespace {

std::map<std::string, std::vector<double>> values_of(const nn::Module& model) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, tensor] : model.state_dict()) out[name] = tensor.to_vector<double>();
  return out;
}

// max |a - b| / (1 + |b|) over every parameter.
double max_rel_diff(const nn::Module& a, const nn::Module& b) {
  const auto va = values_of(a), vb = values_of(b);
  REQUIRE(va.size() == vb.size());
  double worst = 0;
  for (const auto& [name, values] : va) {
    const std::vector<double>& other = vb.at(name);
    REQUIRE(values.size() == other.size());
    for (size_t i = 0; i < values.size(); ++i)
      worst = std::max(worst, std::abs(values[i] - other[i]) / (1 + std::abs(other[i])));
  }
  return worst;
}

std::shared_ptr<VelocityMLP> small_model(uint64_t seed, DType dtype = DType::Float64) {
  Generator init(seed);
  auto model =
      std::make_shared<VelocityMLP>(VelocityMLPOptions{.dim = 2, .width = 16, .generator = &init});
  model->to(dtype);
  return model;
}

// A nonlinear, time-dependent field: v = sin(x) (1 - t) - x t^2 + 0.3 t.
Tensor test_field(const Tensor& x, const Tensor& t) {
  Tensor tc = unsqueeze(t, 1);
  return sin(x) * (1.0 - tc) - x * square(tc) + tc * 0.3;
}

void require_identical(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  REQUIRE(a.to_vector<double>() == b.to_vector<double>());
}

// I-CFM whose batch shrinks by one row from its fourth sample on.
class ShrinkingMatcher : public Matcher {
 public:
  std::string name() const override { return "shrinking"; }
  bool uses_noise() const override { return false; }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override {
    MatcherSample out = inner_.sample_at(x0, x1, t, noise);
    if (++calls_ > 3) {
      const int64_t rows = out.x_t.size(0) - 1;
      out.x_t = narrow(out.x_t, 0, 0, rows);
      out.u_t = narrow(out.u_t, 0, 0, rows);
      out.t = narrow(out.t, 0, 0, rows);
    }
    return out;
  }

 private:
  ICFM inner_{0.0};
  mutable int calls_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// The trainer
// ---------------------------------------------------------------------------

TEST_CASE("train_cfm: the cuda_graph split step equals the normal step on the CPU",
          "[flow][graph]") {
  // Every stateful part: OT coupling and noise, warm-up and cosine schedule,
  // clipping, EMA with warm-up, Adam with weight decay.
  TrainOptions options{.matcher = "otcfm", .sigma = 0.1, .batch = 32, .steps = 20};
  options.lr_schedule = LRSchedule::Cosine;
  options.warmup_steps = 4;
  options.weight_decay = 1e-3;
  options.grad_clip = 0.5;
  options.ema_decay = 0.9;
  options.ema_warmup = true;
  options.log_every = 5;
  const DataSource data = toy_data_source("moons");

  auto normal = small_model(3);
  const TrainResult a = train_cfm(*normal, data, options);

  auto split = small_model(3);
  options.cuda_graph = true;
  const TrainResult b = train_cfm(*split, data, options);

  CHECK(max_rel_diff(*split, *normal) <= 1e-13);
  CHECK(max_rel_diff(*split, *small_model(3)) > 1e-3);  // it did train
  // The loss windows, summed on the device, equal the host sums.
  REQUIRE(a.losses.size() == 4);
  REQUIRE(b.losses.size() == a.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) {
    CHECK(b.losses[i].step == a.losses[i].step);
    CHECK(b.losses[i].loss == Approx(a.losses[i].loss).epsilon(1e-12));
  }
  CHECK(b.final_loss == Approx(a.final_loss).epsilon(1e-12));
}

TEST_CASE("train_cfm: cuda_graph in float32 and with a path matcher", "[flow][graph]") {
  TrainOptions options{.path = "cosine", .matcher = "icfm", .batch = 16, .steps = 12};
  options.log_every = 0;
  const DataSource data = toy_data_source("8gaussians");
  auto normal = small_model(5, DType::Float32);
  train_cfm(*normal, data, options);
  auto split = small_model(5, DType::Float32);
  options.cuda_graph = true;
  train_cfm(*split, data, options);
  CHECK(max_rel_diff(*split, *normal) <= 1e-5);
}

TEST_CASE("train_cfm: a cuda_graph run resumes bit-identically from its checkpoint",
          "[flow][graph]") {
  // The split step advances Adam's and the EMA's counters outside the
  // (captured) compute; the checkpoint must still record them.
  test::TempDir dir;
  const auto ckpt = dir / "ckpt.safetensors";
  TrainOptions options{.batch = 16, .steps = 16, .cuda_graph = true};
  options.lr_schedule = LRSchedule::Cosine;
  options.ema_decay = 0.8;
  options.log_every = 1;
  const DataSource data = toy_data_source("moons");

  auto uninterrupted = small_model(9);
  train_cfm(*uninterrupted, data, options);

  auto interrupted = small_model(9);
  TrainOptions first = options;
  first.checkpoint_path = ckpt;
  first.checkpoint_every = 5;
  first.on_progress = [](const TrainProgress& p) {
    if (p.step == 7) throw std::runtime_error("simulated crash");
  };
  REQUIRE_THROWS_AS(train_cfm(*interrupted, data, first), std::runtime_error);

  auto resumed = small_model(9);
  TrainOptions second = options;
  second.checkpoint_path = ckpt;
  second.resume = true;
  const TrainResult r = train_cfm(*resumed, data, second);
  CHECK(r.start_step == 5);
  CHECK(values_of(*resumed) == values_of(*uninterrupted));
}

TEST_CASE("train_cfm: cuda_graph refuses a batch whose shape changes", "[flow][graph]") {
  TrainOptions options{
      .custom_matcher = std::make_shared<ShrinkingMatcher>(), .batch = 8, .steps = 6};
  auto model = small_model(1);
  // Without the option the changing batch trains (nothing is static).
  REQUIRE_NOTHROW(train_cfm(*model, toy_data_source("moons"), options));
  options.cuda_graph = true;
  options.custom_matcher = std::make_shared<ShrinkingMatcher>();
  REQUIRE_THROWS_WITH(train_cfm(*model, toy_data_source("moons"), options),
                      Contains("train_cfm: cuda_graph needs the same shapes every step") &&
                          Contains("step 4") && Contains("[7, 2]") && Contains("[8, 2]"));
}

// ---------------------------------------------------------------------------
// The solvers
// ---------------------------------------------------------------------------

TEST_CASE("solve with cuda_graph (the static step) equals the normal fixed-step solve",
          "[flow][graph]") {
  Generator gen(11);
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const Tensor x0 = randn({5, 3}, gen, {.dtype = dtype});
    for (Solver method : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4}) {
      for (auto [t0, t1] : {std::pair{0.0, 1.0}, std::pair{1.0, 0.1}}) {
        DYNAMIC_SECTION(dtype_name(dtype)
                        << " " << solver_name(method) << " " << t0 << " -> " << t1) {
          SolveOptions options{.method = method, .steps = 7, .record_trajectory = true};
          const Solution a = solve(test_field, x0, t0, t1, options);
          options.cuda_graph = true;
          const Solution b = solve(test_field, x0, t0, t1, options);
          require_identical(b.x, a.x);
          require_identical(b.trajectory, a.trajectory);
          REQUIRE(b.times == a.times);
          REQUIRE(b.nfe == a.nfe);
          REQUIRE(b.steps == a.steps);
        }
      }
    }
  }
}

TEST_CASE("solve with cuda_graph samples a VelocityMLP like the normal solve", "[flow][graph]") {
  auto model = small_model(2, DType::Float32);
  Generator gen(4);
  const Tensor x0 = randn({64, 2}, gen);
  SolveOptions options{.method = Solver::RK4, .steps = 10};
  const Solution a = solve(model->as_fn(), x0, 0.0, 1.0, options);
  options.cuda_graph = true;
  const Solution b = solve(model->as_fn(), x0, 0.0, 1.0, options);
  require_identical(b.x, a.x);
  REQUIRE(b.nfe == 40);
}

TEST_CASE("solve_system_tensor_time integrates a state of several tensors", "[flow][graph]") {
  // y0' = -y0 (float32 [2, 2]), y1' = t (float64 [3]): y1(1) = y1(0) + 1/2.
  const OdeState y0{full({2, 2}, 2.0), zeros({3}, {.dtype = DType::Float64})};
  OdeSystemFn host = [](const OdeState& y, double t) -> OdeState {
    return {neg(y[0]), full({3}, t, {.dtype = DType::Float64})};
  };
  OdeSystemTensorTimeFn device = [](const OdeState& y, const Tensor& t) -> OdeState {
    return {neg(y[0]), batch_time(t, 3, DType::Float64)};
  };
  const SolveOptions options{.method = Solver::Heun, .steps = 4, .record_trajectory = true};
  const SystemSolution a = solve_system(host, y0, 0.0, 1.0, options);
  const SystemSolution b = solve_system_tensor_time(device, y0, 0.0, 1.0, options);
  for (size_t i = 0; i < 2; ++i) require_identical(b.y[i], a.y[i]);
  REQUIRE(b.trajectory.size() == 5);
  for (size_t k = 0; k < 5; ++k)
    for (size_t i = 0; i < 2; ++i) require_identical(b.trajectory[k][i], a.trajectory[k][i]);
  REQUIRE(b.y[1].to_vector<double>()[0] == Approx(0.5).epsilon(1e-15));  // Heun is exact here
  REQUIRE(b.nfe == 8);
  // The initial state is not modified (the step works on its own copy).
  REQUIRE(y0[0].to_vector<float>()[0] == 2.0f);

  SECTION("an empty interval returns the initial state") {
    const SystemSolution c = solve_system_tensor_time(device, y0, 0.5, 0.5, options);
    REQUIRE(c.nfe == 0);
    REQUIRE(c.trajectory.size() == 1);
    require_identical(c.y[0], y0[0]);
  }
}

TEST_CASE("StepGraph runs the step itself on the CPU", "[flow][graph]") {
  int calls = 0;
  StepGraph graph("test", Device::cpu(), /*use_graph=*/true);
  REQUIRE_FALSE(graph.uses_graph());
  graph.run([&] { ++calls; });
  graph.run([&] { ++calls; });
  REQUIRE(calls == 2);
  REQUIRE_FALSE(graph.captured());
}

// ---------------------------------------------------------------------------
// The likelihood
// ---------------------------------------------------------------------------

TEST_CASE("log_likelihood with cuda_graph equals the normal fixed-step solve", "[flow][graph]") {
  auto model = small_model(6, DType::Float32);
  Generator gen(8);
  const Tensor x = randn({20, 2}, gen);
  for (Solver method : {Solver::Euler, Solver::RK4}) {
    DYNAMIC_SECTION(solver_name(method)) {
      LikelihoodOptions options{.solver = method, .steps = 6};
      SECTION("exact, VelocityMLP forward mode") {
        const LikelihoodResult a = log_likelihood(*model, x, options);
        options.cuda_graph = true;
        const LikelihoodResult b = log_likelihood(*model, x, options);
        require_identical(b.log_p, a.log_p);
        require_identical(b.x0, a.x0);
        REQUIRE(b.nfe == a.nfe);
      }
      SECTION("exact, any VelocityFn (one reverse pass)") {
        const LikelihoodResult a = log_likelihood(model->as_fn(), x, options);
        options.cuda_graph = true;
        const LikelihoodResult b = log_likelihood(model->as_fn(), x, options);
        require_identical(b.log_p, a.log_p);
      }
      SECTION("Hutchinson") {
        options.divergence = Divergence::Hutchinson;
        options.probes = 3;
        options.seed = 5;
        const LikelihoodResult a = log_likelihood(*model, x, options);
        options.cuda_graph = true;
        const LikelihoodResult b = log_likelihood(*model, x, options);
        require_identical(b.log_p, a.log_p);
        require_identical(b.standard_error, a.standard_error);
      }
      SECTION("sampling with the likelihood") {
        const LikelihoodResult a = sample_with_log_likelihood(*model, x, options);
        options.cuda_graph = true;
        const LikelihoodResult b = sample_with_log_likelihood(*model, x, options);
        require_identical(b.log_p, a.log_p);
        require_identical(b.x1, a.x1);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

TEST_CASE("cuda_graph errors name the option and the reason", "[flow][graph]") {
  Generator gen(1);
  const Tensor x0 = randn({4, 2}, gen);
  SECTION("dopri5 chooses its steps on the host") {
    REQUIRE_THROWS_WITH(solve(test_field, x0, 0, 1, {.method = Solver::Dopri5, .cuda_graph = true}),
                        Contains("solve: dopri5 cannot run as a static step (cuda_graph)") &&
                            Contains("euler, midpoint, heun or rk4"));
    auto model = small_model(1, DType::Float32);
    REQUIRE_THROWS_WITH(
        log_likelihood(*model, x0, {.solver = Solver::Dopri5, .cuda_graph = true}),
        Contains("log_likelihood: cuda_graph needs a fixed-step solver") && Contains("dopri5"));
    REQUIRE_THROWS_WITH(
        sample_with_log_likelihood(*model, x0, {.solver = Solver::Dopri5, .cuda_graph = true}),
        Contains("sample_with_log_likelihood: cuda_graph needs a fixed-step solver"));
  }
  SECTION("keep_graph") {
    REQUIRE_THROWS_WITH(solve(test_field, x0, 0, 1,
                              {.method = Solver::RK4, .keep_graph = true, .cuda_graph = true}),
                        Contains("cuda_graph cannot keep the autograd graph (keep_graph = true)"));
    auto model = small_model(1, DType::Float32);
    REQUIRE_THROWS_WITH(
        log_likelihood(*model, x0, {.solver = Solver::RK4, .keep_graph = true, .cuda_graph = true}),
        Contains("log_likelihood: cuda_graph cannot keep the autograd graph"));
  }
  SECTION("solve_system takes the time as a double") {
    OdeSystemFn system = [](const OdeState& y, double) -> OdeState { return {neg(y[0])}; };
    REQUIRE_THROWS_WITH(
        solve_system(system, {x0}, 0, 1, {.method = Solver::Euler, .cuda_graph = true}),
        Contains("solve_system: cuda_graph needs the time as a tensor") &&
            Contains("solve_system_tensor_time"));
  }
  SECTION("batch_time needs one time") {
    REQUIRE_THROWS_WITH(batch_time(zeros({2}), 3, DType::Float32),
                        Contains("batch_time: t must hold one time") && Contains("[2]"));
  }
}
