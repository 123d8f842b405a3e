// ODE solvers for flows: dx/dt = v(x, t), integrated from t0 to t1.
//
// Conventions (shared/reference/flow-matching.md, sections 1 and 6):
//   - t = 0 is the source (noise), t = 1 the data. Sampling integrates forward
//     from 0 to 1, likelihood evaluation backward from 1 to 0; both directions
//     are allowed here (t0 > t1 simply means a negative step).
//   - The field is NEVER evaluated outside [min(t0, t1), max(t0, t1)]: the
//     steps and the adaptive solver's initial-step probe are limited to the
//     remaining interval, and the last step lands exactly on t1.
//   - NFE (number of function evaluations) counts calls of the field, each a
//     whole batch: Euler 1 per step, midpoint 2, Heun 2, RK4 4; dopri5 2 to
//     choose the first step, then 6 per attempted step (its 7th stage is the
//     next step's 1st: "first same as last", FSAL).
//
// Two entry points: solve() for a velocity field on a [B, d] batch, and
// solve_system() for a state made of several tensors (the likelihood code
// integrates x together with a log-density accumulator this way).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace tide::flow {

// A velocity field. x is the batch of states [B, d]; t is a [B] tensor of x's
// dtype and device holding the current time in every entry (a per-row time, so
// the same field can be evaluated on batches whose rows sit at different times,
// e.g. in CFM training). Must return a tensor of x's shape and dtype.
using VelocityFn = std::function<Tensor(const Tensor& x, const Tensor& t)>;

// A general ODE system on a state made of several tensors (each keeps its own
// shape and dtype): returns dy/dt, one tensor per state tensor.
using OdeState = std::vector<Tensor>;
using OdeSystemFn = std::function<OdeState(const OdeState& y, double t)>;

enum class Solver { Euler, Midpoint, Heun, RK4, Dopri5 };

// "euler", "midpoint", "heun", "rk4", "dopri5" (the CLI's names).
const char* solver_name(Solver solver);
Solver parse_solver(const std::string& name);
// The order of accuracy: 1, 2, 2, 4, 5.
int solver_order(Solver solver);
bool is_adaptive(Solver solver);

struct SolveOptions {
  Solver method = Solver::Dopri5;
  // Fixed-step methods: the number of equal steps from t0 to t1.
  int64_t steps = 100;
  // Dopri5: a step is accepted when the RMS over all elements of
  // err / (atol + rtol * max(|y_old|, |y_new|)) is at most 1 (flow_matching's
  // defaults: rtol = atol = 1e-5).
  double rtol = 1e-5;
  double atol = 1e-5;
  // Dopri5: the most step attempts (accepted + rejected) before giving up
  // with tide::Error.
  int64_t max_steps = 100000;
  // Dopri5 step-size controller: h_new = h * clamp(safety * err^(-1/5),
  // min_factor, max_factor) (never growing right after a rejection).
  double safety = 0.9;
  double min_factor = 0.2;
  double max_factor = 10.0;
  // Dopri5: the first step size; 0 selects it automatically (Hairer, Norsett
  // & Wanner, "Solving ODEs I", II.4), which costs one extra evaluation.
  double first_step = 0;
  // Record the state along the way. Fixed-step methods record at their grid
  // (steps + 1 times, t0 and t1 included). Dopri5 records at trajectory_times
  // when given (by its 4th-order dense output, without shortening steps), or
  // else at t0 and after every accepted step.
  bool record_trajectory = false;
  // Dopri5 only: times in [t0, t1], ordered in the direction of integration.
  // Giving them implies record_trajectory.
  std::vector<double> trajectory_times = {};
  // false (default, for sampling): solve under NoGradGuard, so no graph is
  // built. true: record the graph through every step, so the result can be
  // differentiated with respect to x0 or the field's parameters.
  bool keep_graph = false;
  // Fixed-step methods only: run each step as a static, capturable step
  // (flow/step_graph.h). The state lives in tensors allocated once and the
  // step reads its time t, the next grid time and the step size h from 0-d
  // float64 tensors on the state's device, refreshed with fills before each
  // step. On a CUDA device the first step runs eagerly (the warm-up), the
  // second is captured as a CUDA graph, and every later step replays it; a
  // recorded trajectory is copied, on the device, into one buffer allocated
  // up front. On the CPU the same step runs eagerly. Results equal those of
  // cuda_graph = false. dopri5 (its step sizes are host decisions) and
  // keep_graph refuse it with tide::Error; solve_system takes it only through
  // solve_system_tensor_time (a system with a double time cannot be captured).
  bool cuda_graph = false;
};

struct SystemSolution {
  OdeState y;                        // the state at t1
  int64_t nfe = 0;                   // evaluations of the system
  int64_t steps = 0;                 // accepted steps
  int64_t rejected = 0;              // rejected steps (dopri5)
  std::vector<double> times;         // when recording: the recorded times
  std::vector<OdeState> trajectory;  // ... and the states there
};

struct Solution {
  Tensor x;  // the state at t1, [B, d]
  int64_t nfe = 0;
  int64_t steps = 0;
  int64_t rejected = 0;
  std::vector<double> times;
  Tensor trajectory;  // when recording: [T, B, d], one row per entry of times
};

// Integrates dx/dt = velocity(x, t) from x(t0) = x0 ([B, d], floating point)
// to t1.
Solution solve(const VelocityFn& velocity, const Tensor& x0, double t0, double t1,
               const SolveOptions& options = {});

// The same for a general system; every state tensor must be floating point.
SystemSolution solve_system(const OdeSystemFn& system, const OdeState& y0, double t0, double t1,
                            const SolveOptions& options = {});

// --- systems with the time on the device (CUDA Graphs) -------------------------

// A system whose time is a 0-d float64 tensor on the state's device, so that
// a captured step reads it from memory instead of freezing it (what
// SolveOptions::cuda_graph needs). Returns dy/dt like OdeSystemFn.
using OdeSystemTensorTimeFn = std::function<OdeState(const OdeState& y, const Tensor& t)>;

// Integrates a fixed-step method with the static, capturable step described
// at SolveOptions::cuda_graph (captured on a CUDA device when cuda_graph is
// set; eager otherwise). Every state tensor must be floating point and on one
// device; same results as solve_system with the same times. Throws for
// dopri5 and keep_graph.
SystemSolution solve_system_tensor_time(const OdeSystemTensorTimeFn& system, const OdeState& y0,
                                        double t0, double t1, const SolveOptions& options = {});

// The time of a 0-d tensor t as the [batch] tensor of `dtype` a VelocityFn
// takes (the value rounded as full({batch}, t, dtype) rounds it).
Tensor batch_time(const Tensor& t, int64_t batch, DType dtype);

}  // namespace tide::flow
