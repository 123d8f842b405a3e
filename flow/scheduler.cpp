#include "flow/scheduler.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tensor/creation.h"

namespace tide::flow {

using std::numbers::pi;

SchedulerValues Scheduler::at(double t) const {
  TIDE_CHECK(t >= 0.0 && t <= 1.0, "{} scheduler: time {} is outside [0, 1]", name(), t);
  return values(t);
}

SchedulerTensors Scheduler::evaluate(const Tensor& t, DType dtype) const {
  TIDE_CHECK(t.defined() && t.is_floating_point(),
             "{} scheduler: times must be a float32 or float64 tensor, got {}", name(),
             t.defined() ? t.describe() : std::string("an undefined tensor"));
  TIDE_CHECK(is_floating(dtype), "{} scheduler: output dtype must be floating, got {}", name(),
             dtype);
  std::vector<double> times = t.to_vector<double>();
  size_t n = times.size();
  std::vector<double> alpha(n), sigma(n), d_alpha(n), d_sigma(n);
  for (size_t i = 0; i < n; ++i) {
    SchedulerValues v = at(times[i]);
    alpha[i] = v.alpha;
    sigma[i] = v.sigma;
    d_alpha[i] = v.d_alpha;
    d_sigma[i] = v.d_sigma;
  }
  TensorOptions options{.dtype = dtype, .device = t.device()};
  return {from_vector(alpha, t.shape(), options), from_vector(sigma, t.shape(), options),
          from_vector(d_alpha, t.shape(), options), from_vector(d_sigma, t.shape(), options)};
}

// --- CondOT ------------------------------------------------------------------

CondOTScheduler::CondOTScheduler(double sigma_min) : sigma_min_(sigma_min) {
  TIDE_CHECK(sigma_min >= 0.0 && sigma_min < 1.0,
             "condot scheduler: sigma_min must be in [0, 1), got {}", sigma_min);
}

SchedulerValues CondOTScheduler::values(double t) const {
  double k = 1.0 - sigma_min_;
  return {.alpha = t, .sigma = 1.0 - k * t, .d_alpha = 1.0, .d_sigma = -k};
}

// --- Polynomial --------------------------------------------------------------

PolynomialScheduler::PolynomialScheduler(double exponent) : exponent_(exponent) {
  TIDE_CHECK(exponent > 0.0 && std::isfinite(exponent),
             "poly scheduler: the exponent must be positive, got {}", exponent);
}

SchedulerValues PolynomialScheduler::values(double t) const {
  double n = exponent_;
  double tn = std::pow(t, n);
  double d = n * std::pow(t, n - 1.0);
  return {.alpha = tn, .sigma = 1.0 - tn, .d_alpha = d, .d_sigma = -d};
}

// --- VP ----------------------------------------------------------------------

VPScheduler::VPScheduler(double beta_min, double beta_max)
    : beta_min_(beta_min), beta_max_(beta_max) {
  TIDE_CHECK(beta_min > 0.0 && beta_max > beta_min,
             "vp scheduler: need 0 < beta_min < beta_max, got beta_min {} and beta_max {}",
             beta_min, beta_max);
}

SchedulerValues VPScheduler::values(double t) const {
  // T(t) = integral of beta(s) from 0 to 1 - t, with beta linear in s.
  auto big_t = [&](double s) {
    double u = 1.0 - s;
    return 0.5 * u * u * (beta_max_ - beta_min_) + u * beta_min_;
  };
  auto d_big_t = [&](double s) { return -(1.0 - s) * (beta_max_ - beta_min_) - beta_min_; };
  double T = big_t(t);
  SchedulerValues v;
  v.alpha = std::exp(-0.5 * T);
  v.sigma = std::sqrt(-std::expm1(-T));  // 1 - e^-T without cancellation near t = 1
  v.d_alpha = -0.5 * d_big_t(t) * v.alpha;
  double tg = std::min(t, 1.0 - kSingularGuard);
  double Tg = big_t(tg);
  v.d_sigma = 0.5 * d_big_t(tg) * std::exp(-Tg) / std::sqrt(-std::expm1(-Tg));
  return v;
}

// --- Linear VP ---------------------------------------------------------------

SchedulerValues LinearVPScheduler::values(double t) const {
  double tg = std::min(t, 1.0 - kSingularGuard);
  return {.alpha = t,
          .sigma = std::sqrt((1.0 - t) * (1.0 + t)),
          .d_alpha = 1.0,
          .d_sigma = -tg / std::sqrt((1.0 - tg) * (1.0 + tg))};
}

// --- Cosine ------------------------------------------------------------------

SchedulerValues CosineScheduler::values(double t) const {
  double a = 0.5 * pi * t;
  return {.alpha = std::sin(a),
          .sigma = std::cos(a),
          .d_alpha = 0.5 * pi * std::cos(a),
          .d_sigma = -0.5 * pi * std::sin(a)};
}

// --- VE ----------------------------------------------------------------------

VEScheduler::VEScheduler(double sigma_min, double sigma_max)
    : sigma_min_(sigma_min), sigma_max_(sigma_max) {
  TIDE_CHECK(sigma_min > 0.0 && sigma_max > sigma_min,
             "ve scheduler: need 0 < sigma_min < sigma_max, got sigma_min {} and sigma_max {}",
             sigma_min, sigma_max);
}

SchedulerValues VEScheduler::values(double t) const {
  double log_rho = std::log(sigma_max_ / sigma_min_);
  double denom = std::expm1(2.0 * log_rho);  // rho^2 - 1
  // s(u) and ds/du, with u = 1 - t the noise level's own time.
  auto s = [&](double u) { return sigma_max_ * std::sqrt(std::expm1(2.0 * u * log_rho) / denom); };
  auto ds = [&](double u) {
    return sigma_max_ * sigma_max_ * log_rho * std::exp(2.0 * u * log_rho) / (denom * s(u));
  };
  double tg = std::min(t, 1.0 - kSingularGuard);
  return {.alpha = 1.0, .sigma = s(1.0 - t), .d_alpha = 0.0, .d_sigma = -ds(1.0 - tg)};
}

// --- Factory -----------------------------------------------------------------

const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> names = {"condot",    "poly",   "vp",
                                                 "linear-vp", "cosine", "ve"};
  return names;
}

std::shared_ptr<const Scheduler> make_scheduler(std::string_view name,
                                                const SchedulerOptions& options) {
  if (name == "condot") return std::make_shared<CondOTScheduler>(options.sigma_min);
  if (name == "poly") return std::make_shared<PolynomialScheduler>(options.exponent);
  if (name == "vp") return std::make_shared<VPScheduler>(options.beta_min, options.beta_max);
  if (name == "linear-vp") return std::make_shared<LinearVPScheduler>();
  if (name == "cosine") return std::make_shared<CosineScheduler>();
  if (name == "ve")
    return std::make_shared<VEScheduler>(options.ve_sigma_min, options.ve_sigma_max);
  fail("make_scheduler: unknown path '{}'; valid names are {}", name,
       fmt::join(scheduler_names(), ", "));
}

}  // namespace tide::flow
