#include "flow/likelihood.h"

#include <cmath>
#include <limits>
#include <numbers>

#include "flow/model.h"

namespace tide::flow {

namespace {

std::string describe_or_undefined(const Tensor& t) {
  return t.defined() ? t.describe() : std::string("undefined");
}

void check_batch(const Tensor& x, const char* op) {
  TIDE_CHECK(x.defined() && x.dim() == 2 && x.is_floating_point(),
             "{}: x must be a floating-point [B, d] tensor, got {}", op, describe_or_undefined(x));
}

// `copies` stacked copies of x along a new leading dim, flattened into the
// batch: [B, ...] -> [copies * B, ...], copy c in rows c*B .. (c+1)*B - 1.
Tensor replicate(const Tensor& x, int64_t copies) {
  if (copies == 1) return x;
  Dims expanded{copies};
  for (int64_t s : x.shape()) expanded.push_back(s);
  Dims flat{copies * x.size(0)};
  for (int i = 1; i < x.dim(); ++i) flat.push_back(x.size(i));
  return reshape(expand(unsqueeze(x, 0), expanded), flat);
}

// What the reverse pass differentiates with respect to, and what the field is
// evaluated on. Without create_graph: a fresh leaf holding x's values (the
// divergence is a number, not part of any graph). With create_graph: x plus a
// zero leaf, so the field's input stays connected to x's history (and its
// parameters) while the gradient is taken with respect to the zero leaf, which
// equals the gradient with respect to the input even when x itself does not
// require grad (the first step of a solve starts from plain data).
struct DifferentiableInput {
  Tensor input, wrt;
};
DifferentiableInput differentiable_input(const Tensor& x, bool create_graph) {
  if (create_graph) {
    Tensor zero = zeros_like(x);
    zero.set_requires_grad(true);
    return {add(x, zero), zero};
  }
  Tensor leaf = detach(x);
  leaf.set_requires_grad(true);
  return {leaf, leaf};
}

Tensor evaluate_checked(const VelocityFn& velocity, const Tensor& input, const Tensor& t,
                        const char* op) {
  Tensor v = velocity(input, t);
  TIDE_CHECK(v.defined() && v.shape() == input.shape() && v.dtype() == input.dtype(),
             "{}: the velocity field returned {} for x of type {}", op, describe_or_undefined(v),
             input.describe());
  return v;
}

// The gradient of <v, cotangent> with respect to `wrt` (zeros when v does not
// depend on it, e.g. a constant field).
Tensor vector_jacobian(const Tensor& v, const Tensor& wrt, const Tensor& cotangent,
                       bool create_graph) {
  if (!v.requires_grad()) return zeros_like(wrt);
  Tensor g = grad({v}, {wrt}, {cotangent},
                  GradOptions{.create_graph = create_graph, .allow_unused = true})[0];
  return g.defined() ? g : zeros_like(wrt);
}

}  // namespace

Tensor normal_log_density(const Tensor& x, double sigma) {
  check_batch(x, "normal_log_density");
  TIDE_CHECK(sigma > 0 && std::isfinite(sigma),
             "normal_log_density: sigma must be positive and finite, got {}", sigma);
  const double d = static_cast<double>(x.size(1));
  Tensor squared = sum(square(to(x, DType::Float64)), {1}) / (sigma * sigma);
  return squared * -0.5 - d * (0.5 * std::log(2 * std::numbers::pi) + std::log(sigma));
}

VelocityDivergence exact_divergence(const VelocityFn& velocity, const Tensor& x, const Tensor& t,
                                    DType accumulate, bool create_graph) {
  check_batch(x, "exact_divergence");
  const int64_t batch = x.size(0), dim = x.size(1);
  TIDE_CHECK(t.defined() && t.shape() == Shape{batch},
             "exact_divergence: t must be a [B] = [{}] tensor, got {}", batch,
             describe_or_undefined(t));
  TIDE_CHECK(is_floating(accumulate), "exact_divergence: accumulate dtype must be floating, got {}",
             accumulate);
  GradModeGuard grad_on(true);  // the reverse pass needs the graph of v
  // Block i of the replicated batch gets the cotangent e_i in every row, so
  // block i of the gradient holds row i of the Jacobian for every sample; the
  // trace is the sum over i of column i of block i.
  DifferentiableInput in = differentiable_input(replicate(x, dim), create_graph);
  Tensor v_all = evaluate_checked(velocity, in.input, replicate(t, dim), "exact_divergence");
  Tensor one_hot = reshape(eye(dim, {.dtype = x.dtype(), .device = x.device()}), {dim, 1, dim});
  Tensor cotangent = reshape(expand(one_hot, {dim, batch, dim}), {dim * batch, dim});
  Tensor rows = vector_jacobian(v_all, in.wrt, cotangent, create_graph);
  Tensor blocks = reshape(to(rows, accumulate), {dim, batch, dim});
  Tensor divergence = sum(mul(blocks, to(one_hot, accumulate)), {0, 2});
  // Block 0 was evaluated on x itself: it is v(x, t).
  Tensor v = dim == 1 ? v_all : slice(v_all, 0, 0, batch);
  if (!create_graph) return {detach(v), detach(divergence)};
  return {v, divergence};
}

VelocityDivergence hutchinson_divergence(const VelocityFn& velocity, const Tensor& x,
                                         const Tensor& t, const Tensor& probes, DType accumulate,
                                         bool create_graph) {
  check_batch(x, "hutchinson_divergence");
  const int64_t batch = x.size(0), dim = x.size(1);
  TIDE_CHECK(t.defined() && t.shape() == Shape{batch},
             "hutchinson_divergence: t must be a [B] = [{}] tensor, got {}", batch,
             describe_or_undefined(t));
  TIDE_CHECK(probes.defined() && probes.dim() == 3 && probes.size(0) >= 1 &&
                 probes.size(1) == batch && probes.size(2) == dim && probes.dtype() == x.dtype(),
             "hutchinson_divergence: probes must be [K, B, d] = [K, {}, {}] of dtype {}, got {}",
             batch, dim, x.dtype(), describe_or_undefined(probes));
  TIDE_CHECK(is_floating(accumulate),
             "hutchinson_divergence: accumulate dtype must be floating, got {}", accumulate);
  const int64_t k = probes.size(0);
  GradModeGuard grad_on(true);
  DifferentiableInput in = differentiable_input(replicate(x, k), create_graph);
  Tensor v_all = evaluate_checked(velocity, in.input, replicate(t, k), "hutchinson_divergence");
  Tensor eps = reshape(probes, {k * batch, dim});
  // g = eps^T (dv/dx) for every probe at once; the estimate is g . eps.
  Tensor g = vector_jacobian(v_all, in.wrt, eps, create_graph);
  Tensor estimates = sum(mul(to(g, accumulate), to(eps, accumulate)), {1});         // [K*B]
  Tensor divergence = contiguous(transpose(reshape(estimates, {k, batch}), 0, 1));  // [B, K]
  Tensor v = k == 1 ? v_all : slice(v_all, 0, 0, batch);
  if (!create_graph) return {detach(v), detach(divergence)};
  return {v, divergence};
}

Tensor draw_probes(int64_t probes, int64_t batch, int64_t dim, ProbeKind kind, Generator& gen,
                   DType dtype) {
  TIDE_CHECK(probes >= 1 && batch >= 0 && dim >= 1,
             "draw_probes: need probes >= 1, batch >= 0, dim >= 1; got {}, {}, {}", probes, batch,
             dim);
  TIDE_CHECK(is_floating(dtype), "draw_probes: dtype must be floating, got {}", dtype);
  NoGradGuard no_grad;
  Shape shape{probes, batch, dim};
  if (kind == ProbeKind::Gaussian) return randn(shape, gen, {.dtype = dtype});
  // Rademacher: +1 or -1 with equal probability.
  return bernoulli(shape, 0.5, gen, {.dtype = dtype}) * 2.0 - 1.0;
}

namespace {

struct AugmentedSolution {
  Tensor x;         // the state at t_end
  Tensor integral;  // integral from t_start to t_end of div v: [B] or [B, K]
  SystemSolution solution;
};

// v and the exact div v at (x, t) without a graph; empty: use exact_divergence
// on the VelocityFn.
using ExactDivergenceFn =
    std::function<VelocityDivergence(const Tensor& x, const Tensor& t, DType accumulate)>;

// Integrates (x, l) with dx/dt = v, dl/dt = div v from (x_start, 0) at t_start
// to t_end.
AugmentedSolution integrate_augmented(const VelocityFn& velocity,
                                      const ExactDivergenceFn& model_divergence,
                                      const Tensor& x_start, double t_start, double t_end,
                                      const LikelihoodOptions& o, const char* op) {
  check_batch(x_start, op);
  const int64_t batch = x_start.size(0), dim = x_start.size(1);
  const bool hutchinson = o.divergence == Divergence::Hutchinson;
  TIDE_CHECK(!hutchinson || o.probes >= 1, "{}: Hutchinson needs probes >= 1, got {}", op,
             o.probes);
  const DType accumulate = o.accumulate_float64 ? DType::Float64 : x_start.dtype();

  Tensor probes;
  if (hutchinson) {
    // Drawn once, fixed over every step and stage of this solve.
    Generator local(o.seed);
    Generator& gen = o.generator ? *o.generator : local;
    probes = draw_probes(o.probes, batch, dim, o.probe_kind, gen, x_start.dtype());
  }

  // (dx/dt, dl/dt) at the per-row times `time` [B].
  auto evaluate = [&](const OdeState& y, const Tensor& time) -> OdeState {
    VelocityDivergence vd;
    if (hutchinson)
      vd = hutchinson_divergence(velocity, y[0], time, probes, accumulate, o.keep_graph);
    else if (model_divergence && !o.keep_graph)
      vd = model_divergence(y[0], time, accumulate);
    else
      vd = exact_divergence(velocity, y[0], time, accumulate, o.keep_graph);
    return {vd.velocity, vd.divergence};
  };
  Shape acc_shape = hutchinson ? Shape{batch, o.probes} : Shape{batch};
  Tensor l_start = zeros(acc_shape, {.dtype = accumulate, .device = x_start.device()});
  SolveOptions so{.method = o.solver,
                  .steps = o.steps,
                  .rtol = o.rtol,
                  .atol = o.atol,
                  .max_steps = o.max_steps,
                  .keep_graph = o.keep_graph,
                  .cuda_graph = o.cuda_graph};
  AugmentedSolution out;
  if (o.cuda_graph) {
    // The static step: the time comes from a device tensor (flow/ode.h).
    TIDE_CHECK(!is_adaptive(o.solver),
               "{}: cuda_graph needs a fixed-step solver (euler, midpoint, heun or rk4); dopri5 "
               "chooses its step sizes on the host",
               op);
    TIDE_CHECK(!o.keep_graph,
               "{}: cuda_graph cannot keep the autograd graph (keep_graph = true); set one of "
               "them to false",
               op);
    OdeSystemTensorTimeFn system = [&](const OdeState& y, const Tensor& t) -> OdeState {
      return evaluate(y, batch_time(t, batch, x_start.dtype()));
    };
    out.solution = solve_system_tensor_time(system, {x_start, l_start}, t_start, t_end, so);
  } else {
    OdeSystemFn system = [&](const OdeState& y, double t) -> OdeState {
      return evaluate(y, full({batch}, t, {.dtype = x_start.dtype(), .device = x_start.device()}));
    };
    out.solution = solve_system(system, {x_start, l_start}, t_start, t_end, so);
  }
  out.x = out.solution.y[0];
  out.integral = out.solution.y[1];
  return out;
}

Tensor source_log_density(const Tensor& x0, const LikelihoodOptions& o, const char* op) {
  if (!o.source_log_density) return normal_log_density(x0, o.source_std);
  Tensor lp = o.source_log_density(x0);
  TIDE_CHECK(lp.defined() && lp.shape() == Shape{x0.size(0)},
             "{}: source_log_density returned {} for x0 of type {}; expected [{}]", op,
             describe_or_undefined(lp), x0.describe(), x0.size(0));
  return to(lp, DType::Float64);
}

// Fills log_p (and the standard error for Hutchinson) from log p0 and the
// per-sample change `delta` = log p1(x1) - log p0(x0) ([B] or [B, K]).
void finish(LikelihoodResult& r, const Tensor& delta, const LikelihoodOptions& o) {
  Tensor d64 = to(delta, DType::Float64);
  if (o.divergence == Divergence::Exact) {
    r.log_p = r.log_p0 + d64;
    return;
  }
  const int64_t k = d64.size(1);
  r.log_p = r.log_p0 + mean(d64, {1});
  if (k >= 2) {
    NoGradGuard no_grad;
    r.standard_error = detach(std(d64, {1}, 1.0)) / std::sqrt(static_cast<double>(k));
  } else {
    r.standard_error = full({d64.size(0)}, std::numeric_limits<double>::quiet_NaN(),
                            {.dtype = DType::Float64, .device = d64.device()});
  }
}

void copy_counts(LikelihoodResult& r, const SystemSolution& s) {
  r.nfe = s.nfe;
  r.steps = s.steps;
  r.rejected = s.rejected;
}

}  // namespace

namespace {

LikelihoodResult log_likelihood_impl(const VelocityFn& velocity,
                                     const ExactDivergenceFn& model_divergence, const Tensor& x1,
                                     const LikelihoodOptions& options) {
  AugmentedSolution a =
      integrate_augmented(velocity, model_divergence, x1, 1.0, 0.0, options, "log_likelihood");
  LikelihoodResult r;
  r.x1 = x1;
  r.x0 = a.x;
  r.log_p0 = source_log_density(a.x, options, "log_likelihood");
  // l(0) = integral from 1 to 0 of div v = -integral from 0 to 1.
  finish(r, a.integral, options);
  copy_counts(r, a.solution);
  return r;
}

LikelihoodResult sample_with_log_likelihood_impl(const VelocityFn& velocity,
                                                 const ExactDivergenceFn& model_divergence,
                                                 const Tensor& x0,
                                                 const LikelihoodOptions& options) {
  AugmentedSolution a = integrate_augmented(velocity, model_divergence, x0, 0.0, 1.0, options,
                                            "sample_with_log_likelihood");
  LikelihoodResult r;
  r.x0 = x0;
  r.x1 = a.x;
  r.log_p0 = source_log_density(x0, options, "sample_with_log_likelihood");
  finish(r, neg(a.integral), options);
  copy_counts(r, a.solution);
  return r;
}

ExactDivergenceFn divergence_of(VelocityField& model) {
  return [&model](const Tensor& x, const Tensor& t, DType accumulate) {
    return model.velocity_and_divergence(x, t, accumulate);
  };
}

}  // namespace

LikelihoodResult log_likelihood(const VelocityFn& velocity, const Tensor& x1,
                                const LikelihoodOptions& options) {
  return log_likelihood_impl(velocity, {}, x1, options);
}

LikelihoodResult sample_with_log_likelihood(const VelocityFn& velocity, const Tensor& x0,
                                            const LikelihoodOptions& options) {
  return sample_with_log_likelihood_impl(velocity, {}, x0, options);
}

LikelihoodResult log_likelihood(VelocityField& model, const Tensor& x1,
                                const LikelihoodOptions& options) {
  return log_likelihood_impl(model.as_fn(), divergence_of(model), x1, options);
}

LikelihoodResult sample_with_log_likelihood(VelocityField& model, const Tensor& x0,
                                            const LikelihoodOptions& options) {
  return sample_with_log_likelihood_impl(model.as_fn(), divergence_of(model), x0, options);
}

Tensor dequantize_uniform(const Tensor& pixels, Generator& gen, DType dtype) {
  TIDE_CHECK(pixels.defined() && pixels.dtype() != DType::Bool,
             "dequantize_uniform: pixels must be a numeric tensor of values in [0, 255], got {}",
             describe_or_undefined(pixels));
  TIDE_CHECK(is_floating(dtype), "dequantize_uniform: dtype must be floating, got {}", dtype);
  NoGradGuard no_grad;
  Tensor k = to(pixels, dtype);
  if (k.numel() > 0) {
    double lo = min(k).item(), hi = max(k).item();
    TIDE_CHECK(lo >= 0 && hi <= 255,
               "dequantize_uniform: pixel values must lie in [0, 255], got {} with range [{}, {}]",
               pixels.describe(), lo, hi);
  }
  Tensor u = rand(k.shape(), gen, {.dtype = dtype, .device = k.device()});
  return (k + u) / 256.0;
}

Tensor dequantized_bits_per_dim(const Tensor& log_p, int64_t dims, double scaled_width,
                                double levels) {
  TIDE_CHECK(log_p.defined() && log_p.is_floating_point(),
             "dequantized_bits_per_dim: log_p must be a floating-point tensor, got {}",
             describe_or_undefined(log_p));
  TIDE_CHECK(dims >= 1 && scaled_width > 0 && levels > 0,
             "dequantized_bits_per_dim: need dims >= 1, scaled_width > 0, levels > 0; got {}, {}, "
             "{}",
             dims, scaled_width, levels);
  const double d = static_cast<double>(dims);
  // The density of y = (z - shift) / scaled_width, then nats -> bits, plus the
  // log2(levels) bits of the quantisation bin width 1 / levels.
  Tensor log_p_y = to(log_p, DType::Float64) + d * std::log(scaled_width);
  return log_p_y / (-d * std::numbers::ln2) + std::log2(levels);
}

}  // namespace tide::flow
