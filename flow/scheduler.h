// Schedulers of affine Gaussian probability paths
// (shared/reference/flow-matching.md, sections 1 to 3).
//
// A path interpolates between a source sample x0 and a data sample x1:
//
//     x_t = alpha_t * x1 + sigma_t * x0,     t = 0 is the source, t = 1 the data.
//
// A scheduler supplies alpha_t, sigma_t and their time derivatives d_alpha_t,
// d_sigma_t, all in closed form. The formulas follow facebookresearch/
// flow_matching (`flow_matching/path/scheduler/scheduler.py`), restated in
// the reference's table 2.3; the variance-exploding path is Lipman et al.
// (ICLR 2023, section 4.1, "VE").
//
// Values are computed on the host in float64 (one time point is a few flops),
// so each scheduler's formulas live in exactly one place: `at(t)`. `evaluate`
// applies them elementwise to a tensor of times; t carries no gradient.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace tide::flow {

// The four functions of t at one time point.
struct SchedulerValues {
  double alpha = 0, sigma = 0;      // x_t = alpha * x1 + sigma * x0
  double d_alpha = 0, d_sigma = 0;  // their derivatives with respect to t
};

// The same four functions at a batch of times, one tensor each (shape of t).
struct SchedulerTensors {
  Tensor alpha, sigma, d_alpha, d_sigma;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // The name make_scheduler knows it by ("condot", "vp", ...).
  virtual std::string name() const = 0;

  // alpha, sigma and their derivatives at t in [0, 1]; throws outside.
  SchedulerValues at(double t) const;

  // `at` applied to every element of t (float32 or float64, any shape, any
  // device). The results have t's shape and device and the given dtype.
  SchedulerTensors evaluate(const Tensor& t, DType dtype) const;

 protected:
  // The closed forms, for t already checked to lie in [0, 1].
  virtual SchedulerValues values(double t) const = 0;
};

// Derivatives that are singular at t = 1 (sigma_1 = 0 under a square root:
// VP, linear-VP, VE) are evaluated at min(t, 1 - kSingularGuard), so that a
// time rounded to exactly 1 cannot turn into inf * 0 = NaN downstream
// (reference 2.3, "Properties and traps"). alpha and sigma are never clamped.
inline constexpr double kSingularGuard = 1e-6;

// CondOT with Lipman's sigma_min (reference 2.3 and 3):
//   alpha = t, sigma = 1 - (1 - sigma_min) t. sigma_min = 0 is plain CondOT.
class CondOTScheduler : public Scheduler {
 public:
  explicit CondOTScheduler(double sigma_min = 0.0);
  std::string name() const override { return "condot"; }
  double sigma_min() const { return sigma_min_; }

 protected:
  SchedulerValues values(double t) const override;

 private:
  double sigma_min_;
};

// Polynomial(n): alpha = t^n, sigma = 1 - t^n, n > 0.
class PolynomialScheduler : public Scheduler {
 public:
  explicit PolynomialScheduler(double exponent = 2.0);
  std::string name() const override { return "poly"; }
  double exponent() const { return exponent_; }

 protected:
  SchedulerValues values(double t) const override;

 private:
  double exponent_;
};

// Variance preserving (the DDPM/score-SDE schedule mapped onto t = 0 noise):
//   T(t) = 0.5 (1-t)^2 (beta_max - beta_min) + (1-t) beta_min,
//   alpha = exp(-T/2), sigma = sqrt(1 - exp(-T)).
// It never reaches pure noise: alpha_0 is about 0.00657 with the defaults.
class VPScheduler : public Scheduler {
 public:
  explicit VPScheduler(double beta_min = 0.1, double beta_max = 20.0);
  std::string name() const override { return "vp"; }

 protected:
  SchedulerValues values(double t) const override;

 private:
  double beta_min_, beta_max_;
};

// Linear VP: alpha = t, sigma = sqrt(1 - t^2).
class LinearVPScheduler : public Scheduler {
 public:
  std::string name() const override { return "linear-vp"; }

 protected:
  SchedulerValues values(double t) const override;
};

// Cosine: alpha = sin(pi t / 2), sigma = cos(pi t / 2). The same path as
// torchcfm's VP-CFM with sigma = 0.
class CosineScheduler : public Scheduler {
 public:
  std::string name() const override { return "cosine"; }

 protected:
  SchedulerValues values(double t) const override;
};

// Lipman's variance-exploding path: mean x1 at every t (alpha = 1) and std
// sigma_t = s(1 - t), where the noise level s grows from s(0) = 0 at the data
// to s(1) = sigma_max at the source, so the source is (approximately, for
// sigma_max much larger than the data) N(0, sigma_max^2 I).
//
// s is the geometric SMLD/VE-SDE schedule (Song et al. 2021): the perturbation
// kernel of that SDE has std sigma_min * sqrt(rho^(2u) - 1), rho =
// sigma_max / sigma_min, which starts at 0; we rescale it by
// 1 / sqrt(1 - rho^-2) (a factor 1 + O(sigma_min^2 / sigma_max^2)) so that it
// ends at exactly sigma_max:
//
//     s(u) = sigma_max * sqrt((rho^(2u) - 1) / (rho^2 - 1)).
class VEScheduler : public Scheduler {
 public:
  explicit VEScheduler(double sigma_min = 0.01, double sigma_max = 10.0);
  std::string name() const override { return "ve"; }
  double sigma_max() const { return sigma_max_; }

 protected:
  SchedulerValues values(double t) const override;

 private:
  double sigma_min_, sigma_max_;
};

// Knobs for make_scheduler; each scheduler reads only its own.
struct SchedulerOptions {
  double sigma_min = 0.0;      // condot
  double exponent = 2.0;       // poly
  double beta_min = 0.1;       // vp
  double beta_max = 20.0;      // vp
  double ve_sigma_min = 0.01;  // ve
  double ve_sigma_max = 10.0;  // ve
};

// "condot", "poly", "vp", "linear-vp", "cosine" or "ve"; any other name throws
// an Error that lists these.
std::shared_ptr<const Scheduler> make_scheduler(std::string_view name,
                                                const SchedulerOptions& options = {});
const std::vector<std::string>& scheduler_names();

}  // namespace tide::flow
