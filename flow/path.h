// Affine Gaussian probability paths (shared/reference/flow-matching.md,
// sections 2.1, 2.2 and 2.4), after facebookresearch/flow_matching's
// `AffineProbPath`:
//
//     x_t = alpha_t * x1 + sigma_t * x0            (the conditional sample)
//     u_t = d_alpha_t * x1 + d_sigma_t * x0        (its time derivative: the
//                                                   target velocity)
//
// with t = 0 the source and t = 1 the data. Shapes: x0, x1 and x_t are
// [B, ...] (typically [B, d]); t is [B], one time per sample, broadcast over
// that sample's other dims.
//
// A network may predict the velocity v, the data point x1 or the noise x0
// (epsilon). Each is an affine function of another given x_t, so the
// conversions below are `a * x_t + b * prediction` with per-sample a, b:
//
//     x1 -> v:  v  = (d_sigma/sigma) x_t + (d_alpha - d_sigma alpha/sigma) x1
//     x0 -> v:  v  = (d_alpha/alpha) x_t + (d_sigma - d_alpha sigma/alpha) x0
//     v -> x1:  x1 = (sigma v - d_sigma x_t) / (sigma d_alpha - d_sigma alpha)
//     v -> x0:  x0 = (d_alpha x_t - alpha v) / (sigma d_alpha - d_sigma alpha)
//     x0 -> x1: x1 = (x_t - sigma x0) / alpha
//     x1 -> x0: x0 = (x_t - alpha x1) / sigma
//
// Each conversion is singular where its divisor vanishes (x1-prediction at
// t = 1 where sigma = 0, noise-prediction at t = 0 where alpha = 0).
// The coefficients are computed in float64 and applied with differentiable
// ops, so gradients flow into the predictions (not into t).
#pragma once

#include <memory>

#include "flow/scheduler.h"
#include "tensor/tensor.h"

namespace tide::flow {

struct PathSample {
  Tensor t;    // [B]
  Tensor x_t;  // [B, ...]
  Tensor u_t;  // [B, ...]
};

class AffinePath {
 public:
  explicit AffinePath(std::shared_ptr<const Scheduler> scheduler);

  const Scheduler& scheduler() const { return *scheduler_; }

  // x_t and u_t for given endpoints and times.
  PathSample sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const;

  // Conversions between parameterisations, at the point x_t and times t.
  Tensor velocity_from_x1(const Tensor& x_t, const Tensor& x1, const Tensor& t) const;
  Tensor velocity_from_x0(const Tensor& x_t, const Tensor& x0, const Tensor& t) const;
  Tensor x1_from_velocity(const Tensor& x_t, const Tensor& velocity, const Tensor& t) const;
  Tensor x0_from_velocity(const Tensor& x_t, const Tensor& velocity, const Tensor& t) const;
  Tensor x1_from_x0(const Tensor& x_t, const Tensor& x0, const Tensor& t) const;
  Tensor x0_from_x1(const Tensor& x_t, const Tensor& x1, const Tensor& t) const;

 private:
  // Per-sample coefficients (a, b) from the scheduler values at one time.
  using Coefficients = std::pair<double, double> (*)(const SchedulerValues&);
  // a * x_t + b * y, with (a, b) = coefficients(scheduler values at t_i) for
  // sample i; the operands are already checked.
  Tensor combine(const Tensor& x_t, const Tensor& y, const Tensor& t,
                 Coefficients coefficients) const;

  std::shared_ptr<const Scheduler> scheduler_;
};

}  // namespace tide::flow
