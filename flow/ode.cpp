#include "flow/ode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "flow/step_graph.h"
#include "flow/time_grid.h"

namespace tide::flow {

const char* solver_name(Solver solver) {
  switch (solver) {
    case Solver::Euler:
      return "euler";
    case Solver::Midpoint:
      return "midpoint";
    case Solver::Heun:
      return "heun";
    case Solver::RK4:
      return "rk4";
    case Solver::Dopri5:
      return "dopri5";
  }
  return "?";
}

Solver parse_solver(const std::string& name) {
  for (Solver s : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4, Solver::Dopri5})
    if (name == solver_name(s)) return s;
  fail("parse_solver: unknown solver '{}' (expected euler, midpoint, heun, rk4 or dopri5)", name);
}

int solver_order(Solver solver) {
  switch (solver) {
    case Solver::Euler:
      return 1;
    case Solver::Midpoint:
      return 2;
    case Solver::Heun:
      return 2;
    case Solver::RK4:
      return 4;
    case Solver::Dopri5:
      return 5;
  }
  return 0;
}

bool is_adaptive(Solver solver) {
  return solver == Solver::Dopri5;
}

namespace {

// ---------------------------------------------------------------------------
// Dormand-Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Norsett & Wanner,
// "Solving ODEs I", table II.5.2). Stage 7 is evaluated at the new state with
// the 5th-order weights, so it doubles as the next step's first stage (FSAL).
// ---------------------------------------------------------------------------
constexpr int kStages = 7;
constexpr double kC[kStages] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1};
constexpr double kA[kStages][kStages - 1] = {
    {0, 0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
    // The 5th-order solution weights (stage 7's own weight is 0).
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84},
};
// Error estimate: 5th-order weights minus the embedded 4th-order weights
// (5179/57600, 0, 7571/16695, 393/640, -92097/339200, 187/2100, 1/40).
constexpr double kE[kStages] = {35.0 / 384 - 5179.0 / 57600,
                                0,
                                500.0 / 1113 - 7571.0 / 16695,
                                125.0 / 192 - 393.0 / 640,
                                -2187.0 / 6784 + 92097.0 / 339200,
                                11.0 / 84 - 187.0 / 2100,
                                -1.0 / 40};
// Dense output (Hairer's continuous extension, as written in scipy's RK45 `P`):
// y(t_old + theta h) = y_old + h sum_k b_k(theta) k_k with
// b_k(theta) = sum_j kP[k][j] theta^(j+1). At theta = 1 it reproduces y_new.
constexpr double kP[kStages][4] = {
    {1, -8048581381.0 / 2820520608, 8663915743.0 / 2820520608, -12715105075.0 / 11282082432},
    {0, 0, 0, 0},
    {0, 131558114200.0 / 32700410799, -68118460800.0 / 10900136933, 87487479700.0 / 32700410799},
    {0, -1754552775.0 / 470086768, 14199869525.0 / 1410260304, -10690763975.0 / 1880347072},
    {0, 127303824393.0 / 49829197408, -318862633887.0 / 49829197408, 701980252875.0 / 199316789632},
    {0, -282668133.0 / 205662961, 2019193451.0 / 616988883, -1453857185.0 / 822651844},
    {0, 40617522.0 / 29380423, -110615467.0 / 29380423, 69997945.0 / 29380423},
};

// y + h * sum_j coeffs[j] * ks[j], tensor by tensor (zero weights skipped).
OdeState combine(const OdeState& y, double h, const std::vector<const OdeState*>& ks,
                 const double* coeffs) {
  OdeState out(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    Tensor acc = y[i];
    for (size_t j = 0; j < ks.size(); ++j)
      if (coeffs[j] != 0) acc = add(acc, mul((*ks[j])[i], h * coeffs[j]));
    out[i] = acc;
  }
  return out;
}

// The system must return one tensor per state tensor, each of the state's
// shape and dtype. The message names the time when it is known on the host.
void check_derivative(const OdeState& dy, const OdeState& like, std::optional<double> t) {
  TIDE_CHECK(dy.size() == like.size(),
             "solve: the system returned {} tensors for a state of {} tensors", dy.size(),
             like.size());
  for (size_t i = 0; i < dy.size(); ++i) {
    TIDE_CHECK(
        dy[i].defined() && dy[i].shape() == like[i].shape() && dy[i].dtype() == like[i].dtype(),
        "solve: the system returned {}{} for state tensor {} of type {}",
        dy[i].defined() ? dy[i].describe() : std::string("an undefined tensor"),
        t ? fmt::format(" at t = {}", *t) : std::string(), i, like[i].describe());
  }
}

// Calls the system, counts the call, checks what it returned, and clamps the
// time into the interval: stage times t + c h are computed in floating point
// and may round one ulp past the end, which must never reach the model.
class Evaluator {
 public:
  Evaluator(const OdeSystemFn& system, const OdeState& like, double t0, double t1)
      : system_(system), like_(like), lo_(std::min(t0, t1)), hi_(std::max(t0, t1)) {}

  OdeState operator()(const OdeState& y, double t) {
    t = std::clamp(t, lo_, hi_);
    OdeState dy = system_(y, t);
    ++nfe_;
    check_derivative(dy, like_, t);
    return dy;
  }
  int64_t nfe() const { return nfe_; }

 private:
  const OdeSystemFn& system_;
  const OdeState& like_;
  double lo_, hi_;
  int64_t nfe_ = 0;
};

// RMS over every element of every tensor of v / (atol + rtol * max(|a|, |b|)),
// in float64 (b may be null). The norm of the error control and of the
// initial-step heuristic.
double scaled_rms(const OdeState& v, const OdeState& a, const OdeState* b, double rtol,
                  double atol) {
  NoGradGuard no_grad;
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    Tensor magnitude = abs(to(a[i], DType::Float64));
    if (b) magnitude = maximum(magnitude, abs(to((*b)[i], DType::Float64)));
    Tensor ratio = to(v[i], DType::Float64) / (magnitude * rtol + atol);
    total += sum(square(ratio)).item();
    count += v[i].numel();
  }
  return count == 0 ? 0.0 : std::sqrt(total / static_cast<double>(count));
}

// The embedded error estimate h * sum_j kE[j] k_j (outside the graph: step
// control is not part of what is differentiated).
OdeState error_estimate(double h, const std::vector<const OdeState*>& ks) {
  NoGradGuard no_grad;
  OdeState out(ks[0]->size());
  for (size_t i = 0; i < out.size(); ++i) {
    Tensor acc = mul((*ks[0])[i], h * kE[0]);
    for (int j = 1; j < kStages; ++j)
      if (kE[j] != 0) acc = add(acc, mul((*ks[j])[i], h * kE[j]));
    out[i] = acc;
  }
  return out;
}

OdeState subtract(const OdeState& a, const OdeState& b) {
  OdeState out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = sub(a[i], b[i]);
  return out;
}

void check_options(const OdeState& y0, double t0, double t1, const SolveOptions& o) {
  TIDE_CHECK(!y0.empty(), "solve: the initial state has no tensors");
  for (size_t i = 0; i < y0.size(); ++i)
    TIDE_CHECK(y0[i].defined() && y0[i].is_floating_point(),
               "solve: state tensor {} must be a defined floating-point tensor, got {}", i,
               y0[i].defined() ? y0[i].describe() : std::string("undefined"));
  TIDE_CHECK(std::isfinite(t0) && std::isfinite(t1), "solve: times must be finite, got {} -> {}",
             t0, t1);
  if (!is_adaptive(o.method)) {
    TIDE_CHECK(o.steps >= 1, "solve: {} needs steps >= 1, got {}", solver_name(o.method), o.steps);
    TIDE_CHECK(o.trajectory_times.empty(),
               "solve: {} records its trajectory at its own grid of steps + 1 times; "
               "trajectory_times ({} given) is for dopri5",
               solver_name(o.method), o.trajectory_times.size());
    return;
  }
  TIDE_CHECK(o.rtol >= 0 && o.atol >= 0 && o.rtol + o.atol > 0,
             "solve: dopri5 needs rtol >= 0, atol >= 0, not both 0; got rtol={}, atol={}", o.rtol,
             o.atol);
  TIDE_CHECK(o.max_steps >= 1, "solve: max_steps must be at least 1, got {}", o.max_steps);
  TIDE_CHECK(
      o.safety > 0 && o.safety <= 1 && o.min_factor > 0 && o.min_factor <= 1 && o.max_factor >= 1,
      "solve: need 0 < safety <= 1, 0 < min_factor <= 1 <= max_factor; got {}, {}, {}", o.safety,
      o.min_factor, o.max_factor);
  TIDE_CHECK(o.first_step >= 0, "solve: first_step must be >= 0 (0 = automatic), got {}",
             o.first_step);
  double lo = std::min(t0, t1), hi = std::max(t0, t1), dir = t1 >= t0 ? 1.0 : -1.0;
  for (size_t i = 0; i < o.trajectory_times.size(); ++i) {
    double tau = o.trajectory_times[i];
    TIDE_CHECK(tau >= lo && tau <= hi,
               "solve: trajectory_times[{}] = {} is outside the integration interval [{}, {}]", i,
               tau, lo, hi);
    TIDE_CHECK(i == 0 || dir * (tau - o.trajectory_times[i - 1]) >= 0,
               "solve: trajectory_times must run from t0 = {} towards t1 = {}; entry {} = {} "
               "comes after {}",
               t0, t1, i, tau, o.trajectory_times[i - 1]);
  }
}

// ---------------------------------------------------------------------------
// Fixed-step methods
// ---------------------------------------------------------------------------
SystemSolution solve_fixed(Evaluator& f, const OdeState& y0, double t0, double t1,
                           const SolveOptions& o) {
  SystemSolution out;
  std::vector<double> grid = uniform_time_grid(t0, t1, o.steps);
  OdeState y = y0;
  if (o.record_trajectory) {
    out.times.push_back(t0);
    out.trajectory.push_back(y);
  }
  for (int64_t i = 0; i < o.steps; ++i) {
    double t = grid[i], t_next = grid[i + 1], h = t_next - t;
    double half = t + 0.5 * h;
    switch (o.method) {
      case Solver::Euler: {
        OdeState k1 = f(y, t);
        const double w[] = {1};
        y = combine(y, h, {&k1}, w);
        break;
      }
      case Solver::Midpoint: {
        OdeState k1 = f(y, t);
        const double a[] = {0.5}, w[] = {1};
        OdeState k2 = f(combine(y, h, {&k1}, a), half);
        y = combine(y, h, {&k2}, w);
        break;
      }
      case Solver::Heun: {  // the explicit trapezoidal rule
        OdeState k1 = f(y, t);
        const double a[] = {1}, w[] = {0.5, 0.5};
        OdeState k2 = f(combine(y, h, {&k1}, a), t_next);
        y = combine(y, h, {&k1, &k2}, w);
        break;
      }
      case Solver::RK4: {
        const double half_step[] = {0.5}, full_step[] = {1};
        const double w[] = {1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6};
        OdeState k1 = f(y, t);
        OdeState k2 = f(combine(y, h, {&k1}, half_step), half);
        OdeState k3 = f(combine(y, h, {&k2}, half_step), half);
        OdeState k4 = f(combine(y, h, {&k3}, full_step), t_next);
        y = combine(y, h, {&k1, &k2, &k3, &k4}, w);
        break;
      }
      case Solver::Dopri5:
        fail("solve: internal error, dopri5 in the fixed-step loop");
    }
    ++out.steps;
    if (o.record_trajectory) {
      out.times.push_back(t_next);
      out.trajectory.push_back(y);
    }
  }
  out.y = y;
  return out;
}

// ---------------------------------------------------------------------------
// Dormand-Prince 5(4)
// ---------------------------------------------------------------------------

// The first step size (Hairer, Norsett & Wanner, "Solving ODEs I", II.4), with
// the probe step limited to the interval so the field is never evaluated
// outside it. Costs one evaluation (f0 is given).
double initial_step(Evaluator& f, const OdeState& y0, const OdeState& f0, double t0, double t1,
                    const SolveOptions& o) {
  double span = std::abs(t1 - t0), dir = t1 >= t0 ? 1.0 : -1.0;
  double d0 = scaled_rms(y0, y0, nullptr, o.rtol, o.atol);
  double d1 = scaled_rms(f0, y0, nullptr, o.rtol, o.atol);
  double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  if (!std::isfinite(h0)) h0 = 1e-6;  // a non-finite field: let step control fail cleanly
  h0 = std::min(h0, span);
  const double w[] = {1};
  OdeState f1 = f(combine(y0, dir * h0, {&f0}, w), t0 + dir * h0);
  double d2 = scaled_rms(subtract(f1, f0), y0, nullptr, o.rtol, o.atol) / h0;
  double dmax = std::max(d1, d2);
  double h1 = dmax <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / dmax, 1.0 / 5);
  if (!std::isfinite(h1)) h1 = h0;
  return std::min({100 * h0, h1, span});
}

// The dense-output state at t_old + theta * h.
OdeState dense_output(const OdeState& y_old, double h, double theta,
                      const std::vector<const OdeState*>& ks) {
  double weights[kStages];
  for (int k = 0; k < kStages; ++k) {
    double power = theta, b = 0;
    for (int j = 0; j < 4; ++j, power *= theta) b += kP[k][j] * power;
    weights[k] = b;
  }
  return combine(y_old, h, ks, weights);
}

SystemSolution solve_dopri5(Evaluator& f, const OdeState& y0, double t0, double t1,
                            const SolveOptions& o) {
  SystemSolution out;
  const double dir = t1 >= t0 ? 1.0 : -1.0;
  const bool dense = !o.trajectory_times.empty();
  const bool every_step = o.record_trajectory && !dense;
  size_t pending = 0;  // next requested time not yet recorded
  auto record = [&](double t, const OdeState& y) {
    out.times.push_back(t);
    out.trajectory.push_back(y);
  };
  // Requested times at t0 need no step.
  while (dense && pending < o.trajectory_times.size() && o.trajectory_times[pending] == t0) {
    record(t0, y0);
    ++pending;
  }
  if (every_step) record(t0, y0);

  double t = t0;
  OdeState y = y0;
  OdeState k1 = f(y, t);
  double h = o.first_step > 0 ? std::min(o.first_step, std::abs(t1 - t0))
                              : initial_step(f, y, k1, t0, t1, o);
  h *= dir;
  bool previous_rejected = false;
  const double exponent = -1.0 / 5;  // 1 / (order of the error estimate + 1)

  while (true) {
    TIDE_CHECK(out.steps + out.rejected < o.max_steps,
               "solve: dopri5 exceeded max_steps = {} at t = {} (integrating {} -> {}, step "
               "{:.3e}, rtol={}, atol={}); loosen the tolerances or raise max_steps",
               o.max_steps, t, t0, t1, h, o.rtol, o.atol);
    // Land exactly on t1: stretch a step that would leave a sliver (< 1%).
    bool last = dir * (t + 1.01 * h - t1) >= 0;
    if (last) h = t1 - t;
    double t_new = last ? t1 : t + h;

    OdeState ks[kStages];
    ks[0] = k1;
    std::vector<const OdeState*> stages{&ks[0]};
    for (int s = 1; s < kStages - 1; ++s) {
      ks[s] = f(combine(y, h, stages, kA[s]), t + kC[s] * h);
      stages.push_back(&ks[s]);
    }
    OdeState y_new = combine(y, h, stages, kA[kStages - 1]);
    ks[kStages - 1] = f(y_new, t_new);
    stages.push_back(&ks[kStages - 1]);

    double ratio = scaled_rms(error_estimate(h, stages), y, &y_new, o.rtol, o.atol);
    if (!std::isfinite(ratio)) ratio = std::numeric_limits<double>::infinity();

    if (ratio <= 1) {
      ++out.steps;
      while (dense && pending < o.trajectory_times.size() &&
             dir * (o.trajectory_times[pending] - t_new) <= 0) {
        double tau = o.trajectory_times[pending++];
        record(tau, tau == t_new ? y_new : dense_output(y, h, (tau - t) / h, stages));
      }
      t = t_new;
      y = std::move(y_new);
      k1 = std::move(ks[kStages - 1]);
      if (every_step) record(t, y);
      if (last) break;
      double factor =
          ratio == 0 ? o.max_factor
                     : std::clamp(o.safety * std::pow(ratio, exponent), o.min_factor, o.max_factor);
      if (previous_rejected) factor = std::min(factor, 1.0);
      h *= factor;
      previous_rejected = false;
    } else {
      ++out.rejected;
      double factor = std::isinf(ratio)
                          ? o.min_factor
                          : std::clamp(o.safety * std::pow(ratio, exponent), o.min_factor, 1.0);
      h *= factor;
      previous_rejected = true;
    }
    TIDE_CHECK(
        std::abs(h) > 16 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(t)),
        "solve: dopri5 step size underflow ({:.3e}) at t = {} (integrating {} -> {}); the "
        "field may be non-finite or stiff there",
        h, t, t0, t1);
  }
  out.y = y;
  return out;
}

// ---------------------------------------------------------------------------
// Fixed-step methods with the time on the device (SolveOptions::cuda_graph)
// ---------------------------------------------------------------------------

int evaluations_per_step(Solver method) {
  switch (method) {
    case Solver::Euler:
      return 1;
    case Solver::Midpoint:
    case Solver::Heun:
      return 2;
    case Solver::RK4:
      return 4;
    case Solver::Dopri5:
      break;
  }
  fail("solve: internal error, {} has no fixed number of evaluations per step",
       solver_name(method));
}

// combine() with the step size h a 0-d float64 tensor: each weight h * c is
// formed in float64 and rounded to the state's dtype, as combine() rounds its
// host double, so both give the same numbers.
OdeState combine_on_device(const OdeState& y, const Tensor& h,
                           const std::vector<const OdeState*>& ks, const double* coeffs) {
  OdeState out(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    Tensor acc = y[i];
    for (size_t j = 0; j < ks.size(); ++j) {
      if (coeffs[j] == 0) continue;
      const Tensor& k = (*ks[j])[i];
      acc = add(acc, mul(k, to(mul(h, coeffs[j]), k.dtype())));
    }
    out[i] = acc;
  }
  return out;
}

// Evaluator for a system with the time as a tensor: the same clamp into the
// interval (as a tensor op) and the same checks, which run only while the
// step is recorded (eagerly or during the capture).
class TensorTimeEvaluator {
 public:
  TensorTimeEvaluator(const OdeSystemTensorTimeFn& system, const OdeState& like, double t0,
                      double t1)
      : system_(system), like_(like), lo_(std::min(t0, t1)), hi_(std::max(t0, t1)) {}

  OdeState operator()(const OdeState& y, const Tensor& t) {
    OdeState dy = system_(y, clamp(t, lo_, hi_));
    check_derivative(dy, like_, std::nullopt);
    return dy;
  }

 private:
  const OdeSystemTensorTimeFn& system_;
  const OdeState& like_;
  double lo_, hi_;
};

// One step of a fixed-step method from (y, t) with step h (t_next = t + h on
// the grid), every time a 0-d float64 tensor: solve_fixed's arithmetic.
OdeState fixed_step_on_device(Solver method, TensorTimeEvaluator& f, const OdeState& y,
                              const Tensor& t, const Tensor& t_next, const Tensor& h) {
  switch (method) {
    case Solver::Euler: {
      OdeState k1 = f(y, t);
      const double w[] = {1};
      return combine_on_device(y, h, {&k1}, w);
    }
    case Solver::Midpoint: {
      const Tensor half = add(t, mul(h, 0.5));
      OdeState k1 = f(y, t);
      const double a[] = {0.5}, w[] = {1};
      OdeState k2 = f(combine_on_device(y, h, {&k1}, a), half);
      return combine_on_device(y, h, {&k2}, w);
    }
    case Solver::Heun: {
      OdeState k1 = f(y, t);
      const double a[] = {1}, w[] = {0.5, 0.5};
      OdeState k2 = f(combine_on_device(y, h, {&k1}, a), t_next);
      return combine_on_device(y, h, {&k1, &k2}, w);
    }
    case Solver::RK4: {
      const Tensor half = add(t, mul(h, 0.5));
      const double half_step[] = {0.5}, full_step[] = {1};
      const double w[] = {1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6};
      OdeState k1 = f(y, t);
      OdeState k2 = f(combine_on_device(y, h, {&k1}, half_step), half);
      OdeState k3 = f(combine_on_device(y, h, {&k2}, half_step), half);
      OdeState k4 = f(combine_on_device(y, h, {&k3}, full_step), t_next);
      return combine_on_device(y, h, {&k1, &k2, &k3, &k4}, w);
    }
    case Solver::Dopri5:
      break;
  }
  fail("solve: internal error, {} in the fixed-step loop", solver_name(method));
}

}  // namespace

SystemSolution solve_system_tensor_time(const OdeSystemTensorTimeFn& system, const OdeState& y0,
                                        double t0, double t1, const SolveOptions& o) {
  check_options(y0, t0, t1, o);
  TIDE_CHECK(!is_adaptive(o.method),
             "solve: dopri5 cannot run as a static step (cuda_graph): it chooses its step sizes "
             "on the host from error estimates; use euler, midpoint, heun or rk4, or set "
             "cuda_graph = false");
  TIDE_CHECK(!o.keep_graph,
             "solve: cuda_graph cannot keep the autograd graph (keep_graph = true): a replayed "
             "step records none; set one of them to false");
  const Device device = y0[0].device();
  for (size_t i = 1; i < y0.size(); ++i)
    TIDE_CHECK(y0[i].device() == device,
               "solve: a static step (cuda_graph) needs every state tensor on one device; "
               "tensor 0 is on {}, tensor {} on {}",
               device, i, y0[i].device());
  NoGradGuard no_grad;
  SystemSolution out;
  if (t0 == t1) {
    out.y = y0;
    if (o.record_trajectory) {
      out.times.push_back(t0);
      out.trajectory.push_back(y0);
    }
    return out;
  }

  // Everything the step reads or writes, allocated once: the state, the
  // times (refreshed by fills before every step) and the trajectory.
  OdeState y;
  for (const Tensor& y0_i : y0) y.push_back(clone(y0_i));
  const TensorOptions f64{.dtype = DType::Float64, .device = device};
  Tensor t = empty({}, f64), t_next = empty({}, f64), h = empty({}, f64);
  std::vector<Tensor> trajectory;
  if (o.record_trajectory) {
    for (const Tensor& y0_i : y0) {
      std::vector<int64_t> dims{o.steps + 1};
      for (int64_t size : y0_i.shape()) dims.push_back(size);
      Tensor buffer = empty(Shape(dims), {.dtype = y0_i.dtype(), .device = device});
      copy_(select(buffer, 0, 0), y0_i);
      trajectory.push_back(buffer);
    }
  }

  TensorTimeEvaluator f(system, y0, t0, t1);
  auto step = [&] {
    OdeState next = fixed_step_on_device(o.method, f, y, t, t_next, h);
    for (size_t i = 0; i < y.size(); ++i) copy_(y[i], next[i]);
  };
  StepGraph graph("solve", device, o.cuda_graph);
  const std::vector<double> grid = uniform_time_grid(t0, t1, o.steps);
  for (int64_t i = 0; i < o.steps; ++i) {
    fill_(t, grid[i]);
    fill_(t_next, grid[i + 1]);
    fill_(h, grid[i + 1] - grid[i]);
    if (i == 0)
      step();  // the warm-up, before any capture
    else
      graph.run(step);
    for (size_t j = 0; j < trajectory.size(); ++j) copy_(select(trajectory[j], 0, i + 1), y[j]);
  }

  out.y = y;
  out.steps = o.steps;
  out.nfe = o.steps * evaluations_per_step(o.method);
  if (o.record_trajectory) {
    out.times = grid;
    for (int64_t k = 0; k <= o.steps; ++k) {
      OdeState state;
      for (const Tensor& buffer : trajectory) state.push_back(select(buffer, 0, k));
      out.trajectory.push_back(std::move(state));
    }
  }
  return out;
}

Tensor batch_time(const Tensor& t, int64_t batch, DType dtype) {
  TIDE_CHECK(t.defined() && t.numel() == 1 && batch >= 0,
             "batch_time: t must hold one time, got {} (batch {})",
             t.defined() ? t.describe() : std::string("undefined"), batch);
  return contiguous(expand(reshape(to(t, dtype), {1}), {batch}));
}

SystemSolution solve_system(const OdeSystemFn& system, const OdeState& y0, double t0, double t1,
                            const SolveOptions& options) {
  TIDE_CHECK(!options.cuda_graph,
             "solve_system: cuda_graph needs the time as a tensor; use solve_system_tensor_time "
             "(an OdeSystemFn takes the time as a double, which a captured step would freeze)");
  check_options(y0, t0, t1, options);
  std::optional<NoGradGuard> no_grad;
  if (!options.keep_graph) no_grad.emplace();

  Evaluator f(system, y0, t0, t1);
  SystemSolution out;
  if (t0 == t1) {
    out.y = y0;
    if (options.record_trajectory || !options.trajectory_times.empty()) {
      size_t n = is_adaptive(options.method) && !options.trajectory_times.empty()
                     ? options.trajectory_times.size()
                     : 1;
      for (size_t i = 0; i < n; ++i) {
        out.times.push_back(t0);
        out.trajectory.push_back(y0);
      }
    }
    return out;
  }
  out = is_adaptive(options.method) ? solve_dopri5(f, y0, t0, t1, options)
                                    : solve_fixed(f, y0, t0, t1, options);
  out.nfe = f.nfe();
  return out;
}

Solution solve(const VelocityFn& velocity, const Tensor& x0, double t0, double t1,
               const SolveOptions& options) {
  TIDE_CHECK(x0.defined() && x0.dim() == 2 && x0.is_floating_point(),
             "solve: x0 must be a floating-point [B, d] tensor, got {}",
             x0.defined() ? x0.describe() : std::string("undefined"));
  const int64_t batch = x0.size(0);
  auto check_velocity = [&](const Tensor& v, const std::string& when) {
    TIDE_CHECK(v.defined() && v.shape() == x0.shape() && v.dtype() == x0.dtype(),
               "solve: the velocity field returned {} {} for x of type {}",
               v.defined() ? v.describe() : std::string("an undefined tensor"), when,
               x0.describe());
  };
  SystemSolution s;
  if (options.cuda_graph) {
    OdeSystemTensorTimeFn system = [&](const OdeState& y, const Tensor& t) -> OdeState {
      Tensor v = velocity(y[0], batch_time(t, batch, x0.dtype()));
      if (!v.defined() || v.shape() != x0.shape() || v.dtype() != x0.dtype())
        check_velocity(v, "in a static step");
      return {v};
    };
    s = solve_system_tensor_time(system, {x0}, t0, t1, options);
  } else {
    OdeSystemFn system = [&](const OdeState& y, double t) -> OdeState {
      Tensor time = full({batch}, t, {.dtype = x0.dtype(), .device = x0.device()});
      Tensor v = velocity(y[0], time);
      if (!v.defined() || v.shape() != x0.shape() || v.dtype() != x0.dtype())
        check_velocity(v, fmt::format("at t = {}", t));
      return {v};
    };
    s = solve_system(system, {x0}, t0, t1, options);
  }
  Solution out;
  out.x = s.y[0];
  out.nfe = s.nfe;
  out.steps = s.steps;
  out.rejected = s.rejected;
  out.times = std::move(s.times);
  if (!s.trajectory.empty()) {
    std::vector<Tensor> states;
    states.reserve(s.trajectory.size());
    for (const OdeState& state : s.trajectory) states.push_back(state[0]);
    out.trajectory = stack(states, 0);
  }
  return out;
}

}  // namespace tide::flow
