// ODE solvers (flow/ode.cpp) against the exact solution of a linear,
// time-dependent ODE written out here in float64: convergence orders of the
// fixed-step methods, dopri5 accuracy and its evaluation count, backward
// integration, trajectories and dense output, the guarantee that the field is
// never evaluated outside [t0, t1], the graph option and bad input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/ops.h"
#include "flow/ode.h"

using namespace tide;
using namespace tide::flow;

namespace {

// dx/dt = x A^T + t x with A = [[a, b], [-b, a]] (rows of x are states). A and
// t I commute, so x(t) = exp((t^2 - t0^2) / 2) * x(t0) exp(A^T (t - t0)), where
// exp(A tau) = e^(a tau) [[cos b tau, sin b tau], [-sin b tau, cos b tau]].
constexpr double kA = 0.3, kB = 2.0;

VelocityFn linear_field(DType dtype = DType::Float64) {
  Tensor a_t = from_vector(std::vector<double>{kA, -kB, kB, kA}, {2, 2});  // A^T
  a_t = to(a_t, dtype);
  return [a_t](const Tensor& x, const Tensor& t) {
    return add(matmul(x, a_t), mul(x, unsqueeze(t, 1)));
  };
}

std::vector<double> exact_linear(const std::vector<double>& x0, double t0, double t1) {
  double tau = t1 - t0;
  double scale = std::exp(kA * tau + 0.5 * (t1 * t1 - t0 * t0));
  double c = std::cos(kB * tau), s = std::sin(kB * tau);
  std::vector<double> out(x0.size());
  for (size_t r = 0; r + 1 < x0.size(); r += 2) {
    out[r] = scale * (c * x0[r] + s * x0[r + 1]);
    out[r + 1] = scale * (-s * x0[r] + c * x0[r + 1]);
  }
  return out;
}

Tensor initial_state(DType dtype = DType::Float64) {
  Generator gen(7);
  return uniform({5, 2}, -1.5, 1.5, gen, {.dtype = dtype});
}

double max_abs_diff(const Tensor& x, const std::vector<double>& expected) {
  std::vector<double> got = x.to_vector<double>();
  REQUIRE(got.size() == expected.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - expected[i]));
  return worst;
}

double solve_error(Solver method, int64_t steps, double t0, double t1) {
  Tensor x0 = initial_state();
  Solution s = solve(linear_field(), x0, t0, t1, {.method = method, .steps = steps});
  return max_abs_diff(s.x, exact_linear(x0.to_vector<double>(), t0, t1));
}

int stages_of(Solver method) {
  switch (method) {
    case Solver::Euler:
      return 1;
    case Solver::Midpoint:
      return 2;
    case Solver::Heun:
      return 2;
    case Solver::RK4:
      return 4;
    default:
      return 0;
  }
}

}  // namespace

TEST_CASE("fixed-step solvers converge at their order on a linear ODE", "[flow][ode]") {
  for (Solver method : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4}) {
    for (auto [t0, t1] : {std::pair{0.0, 1.0}, std::pair{1.0, 0.0}}) {
      INFO(solver_name(method) << " from " << t0 << " to " << t1);
      double e1 = solve_error(method, 16, t0, t1);
      double e2 = solve_error(method, 32, t0, t1);
      double e3 = solve_error(method, 64, t0, t1);
      int p = solver_order(method);
      // Halving the step divides the global error by about 2^p.
      CHECK(std::log2(e1 / e2) == Approx(p).margin(0.25));
      CHECK(std::log2(e2 / e3) == Approx(p).margin(0.15));
    }
  }
}

TEST_CASE("fixed-step NFE is steps times stages", "[flow][ode]") {
  for (Solver method : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4}) {
    int64_t calls = 0;
    VelocityFn field = linear_field();
    VelocityFn counted = [&](const Tensor& x, const Tensor& t) {
      ++calls;
      return field(x, t);
    };
    Solution s = solve(counted, initial_state(), 0, 1, {.method = method, .steps = 13});
    CHECK(s.nfe == 13 * stages_of(method));
    CHECK(calls == s.nfe);
    CHECK(s.steps == 13);
  }
}

TEST_CASE("dopri5 reaches 1e-10 with tight tolerances and counts FSAL evaluations", "[flow][ode]") {
  for (auto [t0, t1] : {std::pair{0.0, 1.0}, std::pair{1.0, 0.0}, std::pair{0.2, 0.9}}) {
    INFO("from " << t0 << " to " << t1);
    Tensor x0 = initial_state();
    int64_t calls = 0;
    VelocityFn field = linear_field();
    VelocityFn counted = [&](const Tensor& x, const Tensor& t) {
      ++calls;
      return field(x, t);
    };
    Solution s =
        solve(counted, x0, t0, t1, {.method = Solver::Dopri5, .rtol = 1e-12, .atol = 1e-12});
    CHECK(max_abs_diff(s.x, exact_linear(x0.to_vector<double>(), t0, t1)) < 1e-10);
    // 1 evaluation at t0, 1 for the initial-step probe, then 6 per attempt.
    CHECK(s.nfe == 2 + 6 * (s.steps + s.rejected));
    CHECK(calls == s.nfe);
    CHECK(s.steps > 10);

    // A given first step skips the probe.
    Solution g =
        solve(field, x0, t0, t1,
              {.method = Solver::Dopri5, .rtol = 1e-12, .atol = 1e-12, .first_step = 1e-3});
    CHECK(g.nfe == 1 + 6 * (g.steps + g.rejected));
    CHECK(max_abs_diff(g.x, exact_linear(x0.to_vector<double>(), t0, t1)) < 1e-10);
  }
}

TEST_CASE("dopri5 error follows the tolerance and loose tolerances take fewer steps",
          "[flow][ode]") {
  Tensor x0 = initial_state();
  std::vector<double> exact = exact_linear(x0.to_vector<double>(), 0, 1);
  Solution loose = solve(linear_field(), x0, 0, 1, {.rtol = 1e-4, .atol = 1e-4});
  Solution tight = solve(linear_field(), x0, 0, 1, {.rtol = 1e-9, .atol = 1e-9});
  double e_loose = max_abs_diff(loose.x, exact), e_tight = max_abs_diff(tight.x, exact);
  CHECK(e_loose < 1e-2);
  CHECK(e_tight < 1e-7);
  CHECK(e_tight < e_loose);
  CHECK(loose.nfe < tight.nfe);
}

TEST_CASE("backward integration inverts forward integration", "[flow][ode]") {
  Tensor x0 = initial_state();
  for (Solver method : {Solver::RK4, Solver::Dopri5}) {
    INFO(solver_name(method));
    SolveOptions o{.method = method, .steps = 200, .rtol = 1e-11, .atol = 1e-11};
    Solution forward = solve(linear_field(), x0, 0, 1, o);
    Solution back = solve(linear_field(), forward.x, 1, 0, o);
    CHECK(max_abs_diff(back.x, x0.to_vector<double>()) < 1e-8);
  }
}

TEST_CASE("solvers never evaluate the field outside the integration interval", "[flow][ode]") {
  // Fields that throw for any time outside [lo, hi]; one has zero velocity
  // (the step size then grows by max_factor every step and would overshoot
  // without clipping), one grows fast (many rejections).
  struct Case {
    double t0, t1;
  };
  for (Case c : {Case{0, 1}, Case{1, 0}, Case{0.25, 0.75}, Case{0.6, 0.1}}) {
    double lo = std::min(c.t0, c.t1), hi = std::max(c.t0, c.t1);
    double seen_lo = std::numeric_limits<double>::infinity(), seen_hi = -seen_lo;
    auto guard = [&](const Tensor& t) {
      for (double v : t.to_vector<double>()) {
        if (v < lo || v > hi) fail("field evaluated at t = {} outside [{}, {}]", v, lo, hi);
        seen_lo = std::min(seen_lo, v);
        seen_hi = std::max(seen_hi, v);
      }
    };
    VelocityFn zero = [&](const Tensor& x, const Tensor& t) {
      guard(t);
      return zeros_like(x);
    };
    VelocityFn fast = [&](const Tensor& x, const Tensor& t) {
      guard(t);
      return mul(x, 25.0);
    };
    Tensor x0 = initial_state();
    for (Solver method :
         {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4, Solver::Dopri5}) {
      for (const VelocityFn* field : {&zero, &fast}) {
        INFO(solver_name(method) << " on [" << c.t0 << ", " << c.t1 << "]");
        seen_lo = std::numeric_limits<double>::infinity(), seen_hi = -seen_lo;
        Solution s;
        REQUIRE_NOTHROW(s = solve(*field, x0, c.t0, c.t1,
                                  {.method = method, .steps = 7, .rtol = 1e-6, .atol = 1e-6}));
        // Every method starts at t0 exactly; those with a stage at the end of
        // the step (Heun, RK4, dopri5) also reach t1 exactly.
        CHECK((c.t0 < c.t1 ? seen_lo : seen_hi) == c.t0);
        if (method == Solver::Heun || method == Solver::RK4 || method == Solver::Dopri5) {
          CHECK(seen_lo == lo);
          CHECK(seen_hi == hi);
        }
      }
    }
    // The zero field leaves the state unchanged.
    Solution s = solve(zero, x0, c.t0, c.t1);
    CHECK(max_abs_diff(s.x, x0.to_vector<double>()) == 0);
  }
}

TEST_CASE("fixed-step trajectories are recorded at the grid", "[flow][ode]") {
  Tensor x0 = initial_state();
  Solution s = solve(linear_field(), x0, 1, 0,
                     {.method = Solver::RK4, .steps = 40, .record_trajectory = true});
  REQUIRE(s.times.size() == 41);
  REQUIRE(s.trajectory.shape() == Shape{41, 5, 2});
  CHECK(s.times.front() == 1.0);
  CHECK(s.times.back() == 0.0);
  std::vector<double> x0v = x0.to_vector<double>();
  for (size_t i = 0; i < s.times.size(); ++i) {
    CHECK(s.times[i] == Approx(1.0 - static_cast<double>(i) / 40).margin(1e-15));
    Tensor row = select(s.trajectory, 0, static_cast<int64_t>(i));
    CHECK(max_abs_diff(row, exact_linear(x0v, 1, s.times[i])) < 1e-5);
  }
  CHECK(max_abs_diff(select(s.trajectory, 0, 0), x0v) == 0);
  CHECK(max_abs_diff(select(s.trajectory, 0, 40), s.x.to_vector<double>()) == 0);
}

TEST_CASE("dopri5 records requested times by dense output without extra steps", "[flow][ode]") {
  Tensor x0 = initial_state();
  std::vector<double> x0v = x0.to_vector<double>();
  std::vector<double> want = {0.0, 0.05, 0.3, 0.3, 0.61, 0.999, 1.0};
  SolveOptions plain{.rtol = 1e-9, .atol = 1e-9};
  SolveOptions dense = plain;
  dense.trajectory_times = want;
  Solution a = solve(linear_field(), x0, 0, 1, plain);
  Solution b = solve(linear_field(), x0, 0, 1, dense);
  CHECK(a.nfe == b.nfe);  // the steps are not shortened to hit the times
  CHECK(a.steps == b.steps);
  REQUIRE(b.times == want);
  REQUIRE(b.trajectory.shape() == Shape{7, 5, 2});
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("t = " << want[i]);
    // The interpolant is 4th order; with tolerance 1e-9 it is good to ~1e-7.
    CHECK(max_abs_diff(select(b.trajectory, 0, static_cast<int64_t>(i)),
                       exact_linear(x0v, 0, want[i])) < 1e-7);
  }
  // Integrating downwards with requested times.
  SolveOptions down{.rtol = 1e-9, .atol = 1e-9, .trajectory_times = {0.8, 0.4, 0.0}};
  Solution c = solve(linear_field(), x0, 1, 0, down);
  REQUIRE(c.trajectory.size(0) == 3);
  CHECK(max_abs_diff(select(c.trajectory, 0, 1), exact_linear(x0v, 1, 0.4)) < 1e-7);

  // Without requested times: t0 and every accepted step.
  Solution d =
      solve(linear_field(), x0, 0, 1, {.rtol = 1e-6, .atol = 1e-6, .record_trajectory = true});
  REQUIRE(static_cast<int64_t>(d.times.size()) == d.steps + 1);
  CHECK(d.times.front() == 0.0);
  CHECK(d.times.back() == 1.0);
  for (size_t i = 1; i < d.times.size(); ++i) CHECK(d.times[i] > d.times[i - 1]);
  for (size_t i = 0; i < d.times.size(); ++i)
    CHECK(max_abs_diff(select(d.trajectory, 0, static_cast<int64_t>(i)),
                       exact_linear(x0v, 0, d.times[i])) < 1e-4);
}

TEST_CASE("solve_system integrates a state of several tensors and dtypes", "[flow][ode]") {
  // y = {x [3, 2] float32, l [3] float64}: dx/dt = -x, dl/dt = 2 (constant):
  // x(1) = x0 e^-1, l(1) = 2; each tensor keeps its dtype.
  Tensor x0 = initial_state(DType::Float32);
  OdeSystemFn system = [](const OdeState& y, double) -> OdeState {
    return {neg(y[0]), full_like(y[1], 2.0)};
  };
  for (Solver method : {Solver::RK4, Solver::Dopri5}) {
    SystemSolution s = solve_system(system, {x0, zeros({5}, {.dtype = DType::Float64})}, 0, 1,
                                    {.method = method, .steps = 50});
    REQUIRE(s.y.size() == 2);
    CHECK(s.y[0].dtype() == DType::Float32);
    CHECK(s.y[1].dtype() == DType::Float64);
    std::vector<double> x0v = x0.to_vector<double>(), expected(x0v.size());
    for (size_t i = 0; i < x0v.size(); ++i) expected[i] = x0v[i] * std::exp(-1.0);
    CHECK(max_abs_diff(s.y[0], expected) < 1e-5);
    for (double l : s.y[1].to_vector<double>()) CHECK(l == Approx(2.0).margin(1e-12));
  }
}

TEST_CASE("solve keeps the graph only when asked", "[flow][ode]") {
  // dx/dt = a x: x(1) = x0 e^a, so d sum(x(1)) / da = sum(x0) e^a.
  Tensor a = full({1}, 0.7, {.dtype = DType::Float64, .requires_grad = true});
  VelocityFn field = [&](const Tensor& x, const Tensor&) { return mul(x, a); };
  Tensor x0 = initial_state();
  double sum_x0 = 0;
  for (double v : x0.to_vector<double>()) sum_x0 += v;

  Solution plain = solve(field, x0, 0, 1, {.method = Solver::RK4, .steps = 50});
  CHECK_FALSE(plain.x.requires_grad());

  for (Solver method : {Solver::RK4, Solver::Dopri5}) {
    Solution s =
        solve(field, x0, 0, 1,
              {.method = method, .steps = 100, .rtol = 1e-10, .atol = 1e-10, .keep_graph = true});
    REQUIRE(s.x.requires_grad());
    Tensor g = grad({sum(s.x)}, {a})[0];
    CHECK(g.item() == Approx(sum_x0 * std::exp(0.7)).epsilon(1e-7));
  }
}

TEST_CASE("float32 states are integrated in float32", "[flow][ode]") {
  Tensor x0 = initial_state(DType::Float32);
  std::vector<double> exact = exact_linear(x0.to_vector<double>(), 0, 1);
  Solution rk4 =
      solve(linear_field(DType::Float32), x0, 0, 1, {.method = Solver::RK4, .steps = 50});
  Solution dopri = solve(linear_field(DType::Float32), x0, 0, 1, {.rtol = 1e-5, .atol = 1e-5});
  CHECK(rk4.x.dtype() == DType::Float32);
  CHECK(dopri.x.dtype() == DType::Float32);
  CHECK(max_abs_diff(rk4.x, exact) < 1e-4);
  CHECK(max_abs_diff(dopri.x, exact) < 1e-3);
}

TEST_CASE("an empty interval returns the initial state without evaluating", "[flow][ode]") {
  Tensor x0 = initial_state();
  for (Solver method : {Solver::RK4, Solver::Dopri5}) {
    Solution s = solve(linear_field(), x0, 0.5, 0.5, {.method = method, .record_trajectory = true});
    CHECK(s.nfe == 0);
    CHECK(max_abs_diff(s.x, x0.to_vector<double>()) == 0);
    CHECK(s.trajectory.size(0) == 1);
  }
}

TEST_CASE("solver names round-trip", "[flow][ode]") {
  for (Solver s : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4, Solver::Dopri5})
    CHECK(parse_solver(solver_name(s)) == s);
  REQUIRE_THROWS_AS(parse_solver("rk45"), Error);
  REQUIRE_THROWS_WITH(parse_solver("rk45"), Catch::Contains("unknown solver 'rk45'"));
}

TEST_CASE("solve rejects bad input with clear errors", "[flow][ode]") {
  Tensor x0 = initial_state();
  VelocityFn field = linear_field();
  SECTION("max_steps exceeded") {
    REQUIRE_THROWS_AS(solve(field, x0, 0, 1, {.rtol = 1e-12, .atol = 1e-12, .max_steps = 3}),
                      Error);
    REQUIRE_THROWS_WITH(solve(field, x0, 0, 1, {.rtol = 1e-12, .atol = 1e-12, .max_steps = 3}),
                        Catch::Contains("exceeded max_steps = 3"));
  }
  SECTION("state shape and dtype") {
    REQUIRE_THROWS_WITH(solve(field, zeros({4}, {.dtype = DType::Float64}), 0, 1),
                        Catch::Contains("solve: x0 must be a floating-point [B, d] tensor") &&
                            Catch::Contains("float64[4]"));
    REQUIRE_THROWS_WITH(solve(field, zeros({4, 2}, {.dtype = DType::Int64}), 0, 1),
                        Catch::Contains("int64[4, 2]"));
  }
  SECTION("options") {
    REQUIRE_THROWS_WITH(solve(field, x0, 0, 1, {.method = Solver::RK4, .steps = 0}),
                        Catch::Contains("rk4 needs steps >= 1, got 0"));
    REQUIRE_THROWS_WITH(solve(field, x0, 0, 1, {.rtol = -1}), Catch::Contains("rtol=-1"));
    REQUIRE_THROWS_WITH(solve(field, x0, 0, 1, {.rtol = 0, .atol = 0}),
                        Catch::Contains("not both 0"));
    REQUIRE_THROWS_WITH(solve(field, x0, 0, std::nan(""), {}), Catch::Contains("finite"));
  }
  SECTION("trajectory times") {
    REQUIRE_THROWS_WITH(solve(field, x0, 0, 1, {.trajectory_times = {0.5, 1.5}}),
                        Catch::Contains("trajectory_times[1] = 1.5 is outside"));
    REQUIRE_THROWS_WITH(solve(field, x0, 1, 0, {.trajectory_times = {0.2, 0.5}}),
                        Catch::Contains("entry 1 = 0.5 comes after 0.2"));
    REQUIRE_THROWS_WITH(
        solve(field, x0, 0, 1, {.method = Solver::Euler, .trajectory_times = {0.5}}),
        Catch::Contains("trajectory_times (1 given) is for dopri5"));
  }
  SECTION("the field returns the wrong shape or dtype") {
    VelocityFn wrong = [](const Tensor& x, const Tensor&) { return sum(x, {1}); };
    REQUIRE_THROWS_WITH(
        solve(wrong, x0, 0, 1),
        Catch::Contains("velocity field returned float64[5]") && Catch::Contains("float64[5, 2]"));
    VelocityFn wrong_dtype = [](const Tensor& x, const Tensor&) { return to(x, DType::Float32); };
    REQUIRE_THROWS_WITH(solve(wrong_dtype, x0, 0, 1, {.method = Solver::Euler}),
                        Catch::Contains("returned float32[5, 2]"));
  }
  SECTION("a non-finite field ends in an error, not a hang") {
    VelocityFn nan_field = [](const Tensor& x, const Tensor&) { return mul(x, std::nan("")); };
    REQUIRE_THROWS_AS(solve(nan_field, x0, 0, 1), Error);
  }
}
