#include "flow/path.h"

#include "autograd/ops.h"

namespace tide::flow {

namespace {

std::string describe(const Tensor& x) {
  return x.defined() ? x.describe() : std::string("an undefined tensor");
}

// Checks that a and b are floating tensors of one shape [B, ...] and that t
// is [B]. `a_name` and `b_name` are the argument names shown in errors.
void check_operands(const char* op, const Tensor& a, const char* a_name, const Tensor& b,
                    const char* b_name, const Tensor& t) {
  TIDE_CHECK(a.defined() && a.is_floating_point() && a.dim() >= 1,
             "{}: {} must be a floating tensor [B, ...], got {}", op, a_name, describe(a));
  TIDE_CHECK(b.defined() && b.is_floating_point() && b.shape() == a.shape(),
             "{}: {} must be a floating tensor of the same shape as {} {}, got {}", op, b_name,
             a_name, a.describe(), describe(b));
  TIDE_CHECK(t.defined() && t.is_floating_point() && t.dim() == 1 && t.size(0) == a.size(0),
             "{}: t must be a floating tensor [B] with B = {} (the batch of {} {}), got {}", op,
             a.size(0), a_name, a.describe(), describe(t));
}

// Per-sample values reshaped to [B, 1, ..., 1] so they broadcast over x.
Tensor per_sample(const std::vector<double>& values, const Tensor& like, DType dtype) {
  std::vector<int64_t> dims(static_cast<size_t>(like.dim()), 1);
  dims[0] = like.size(0);
  return from_vector(values, Shape(dims), {.dtype = dtype, .device = like.device()});
}

}  // namespace

AffinePath::AffinePath(std::shared_ptr<const Scheduler> scheduler)
    : scheduler_(std::move(scheduler)) {
  TIDE_CHECK(scheduler_ != nullptr, "AffinePath: the scheduler is null");
}

Tensor AffinePath::combine(const Tensor& x_t, const Tensor& y, const Tensor& t,
                           Coefficients coefficients) const {
  std::vector<double> times = t.to_vector<double>();
  std::vector<double> a(times.size()), b(times.size());
  for (size_t i = 0; i < times.size(); ++i) {
    std::tie(a[i], b[i]) = coefficients(scheduler_->at(times[i]));
  }
  DType dtype = promote_types(x_t.dtype(), y.dtype());
  return add(mul(per_sample(a, x_t, dtype), x_t), mul(per_sample(b, x_t, dtype), y));
}

PathSample AffinePath::sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const {
  check_operands("AffinePath::sample", x0, "x0", x1, "x1", t);
  // One scheduler evaluation per time gives both the sample and its target.
  SchedulerTensors s = scheduler_->evaluate(t, promote_types(x0.dtype(), x1.dtype()));
  std::vector<int64_t> dims(static_cast<size_t>(x0.dim()), 1);
  dims[0] = x0.size(0);
  auto col = [&](const Tensor& v) { return reshape(v, dims); };
  Tensor x_t = add(mul(col(s.alpha), x1), mul(col(s.sigma), x0));
  Tensor u_t = add(mul(col(s.d_alpha), x1), mul(col(s.d_sigma), x0));
  return {t, x_t, u_t};
}

Tensor AffinePath::velocity_from_x1(const Tensor& x_t, const Tensor& x1, const Tensor& t) const {
  const char* op = "AffinePath::velocity_from_x1";
  check_operands(op, x_t, "x_t", x1, "x1", t);
  return combine(x_t, x1, t, [](const SchedulerValues& v) {
    return std::pair{v.d_sigma / v.sigma, v.d_alpha - v.d_sigma * v.alpha / v.sigma};
  });
}

Tensor AffinePath::velocity_from_x0(const Tensor& x_t, const Tensor& x0, const Tensor& t) const {
  const char* op = "AffinePath::velocity_from_x0";
  check_operands(op, x_t, "x_t", x0, "x0", t);
  return combine(x_t, x0, t, [](const SchedulerValues& v) {
    return std::pair{v.d_alpha / v.alpha, v.d_sigma - v.d_alpha * v.sigma / v.alpha};
  });
}

Tensor AffinePath::x1_from_velocity(const Tensor& x_t, const Tensor& velocity,
                                    const Tensor& t) const {
  const char* op = "AffinePath::x1_from_velocity";
  check_operands(op, x_t, "x_t", velocity, "velocity", t);
  return combine(x_t, velocity, t, [](const SchedulerValues& v) {
    double det = v.sigma * v.d_alpha - v.d_sigma * v.alpha;
    return std::pair{-v.d_sigma / det, v.sigma / det};
  });
}

Tensor AffinePath::x0_from_velocity(const Tensor& x_t, const Tensor& velocity,
                                    const Tensor& t) const {
  const char* op = "AffinePath::x0_from_velocity";
  check_operands(op, x_t, "x_t", velocity, "velocity", t);
  return combine(x_t, velocity, t, [](const SchedulerValues& v) {
    double det = v.sigma * v.d_alpha - v.d_sigma * v.alpha;
    return std::pair{v.d_alpha / det, -v.alpha / det};
  });
}

Tensor AffinePath::x1_from_x0(const Tensor& x_t, const Tensor& x0, const Tensor& t) const {
  const char* op = "AffinePath::x1_from_x0";
  check_operands(op, x_t, "x_t", x0, "x0", t);
  return combine(x_t, x0, t, [](const SchedulerValues& v) {
    return std::pair{1.0 / v.alpha, -v.sigma / v.alpha};
  });
}

Tensor AffinePath::x0_from_x1(const Tensor& x_t, const Tensor& x1, const Tensor& t) const {
  const char* op = "AffinePath::x0_from_x1";
  check_operands(op, x_t, "x_t", x1, "x1", t);
  return combine(x_t, x1, t, [](const SchedulerValues& v) {
    return std::pair{1.0 / v.sigma, -v.alpha / v.sigma};
  });
}

}  // namespace tide::flow
