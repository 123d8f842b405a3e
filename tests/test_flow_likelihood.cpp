// Log-likelihoods of flows (flow/likelihood.cpp) against closed forms.
//
// The main check is the one of flow-matching.md section 7.5: with p0 = N(0, I)
// and data N(mu, s^2 I), the CondOT marginal velocity is affine,
//   v(x, t) = mu + k(t) (x - t mu),  k(t) = (t s^2 - (1 - t)) / c_t^2,
//   c_t^2 = t^2 s^2 + (1 - t)^2,
// and its flow maps N(0, I) exactly onto N(mu, s^2 I), so the computed
// log p1(x) must equal log N(x; mu, s^2 I). A small tanh network built from tide
// ops (no closed form) checks the divergence against Jacobians from separate
// autograd calls and finite differences, exact against Hutchinson, and forward
// against backward integration.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "autograd/ops.h"
#include "flow/likelihood.h"

using namespace tide;
using namespace tide::flow;

namespace {

const std::vector<double> kMu = {0.5, -1.0, 2.0};
constexpr double kS = 0.6;

Tensor mu_tensor(DType dtype) {
  return to(from_vector(kMu, {3}), dtype);
}

// The CondOT marginal velocity between N(0, I) and N(mu, s^2 I) (d = 3).
VelocityFn condot_gaussian_field(DType dtype = DType::Float64) {
  Tensor mu = mu_tensor(dtype);
  return [mu](const Tensor& x, const Tensor& t) {
    Tensor one_minus_t = sub(1.0, t);
    Tensor c2 = add(mul(square(t), kS * kS), square(one_minus_t));
    Tensor k = div(sub(mul(t, kS * kS), one_minus_t), c2);
    Tensor centred = sub(x, mul(unsqueeze(t, 1), mu));
    return add(mu, mul(unsqueeze(k, 1), centred));
  };
}

// log N(x; mu, sigma^2 I) per row, on the host in float64.
std::vector<double> host_gaussian_log_density(const Tensor& x, const std::vector<double>& mu,
                                              double sigma) {
  std::vector<double> v = x.to_vector<double>();
  const size_t d = static_cast<size_t>(x.size(1));
  std::vector<double> out;
  for (size_t r = 0; r < v.size() / d; ++r) {
    double q = 0;
    for (size_t j = 0; j < d; ++j) {
      double z = (v[r * d + j] - mu[j]) / sigma;
      q += z * z;
    }
    out.push_back(-0.5 * q - static_cast<double>(d) *
                                 (0.5 * std::log(2 * std::numbers::pi) + std::log(sigma)));
  }
  return out;
}

double max_abs_diff(const Tensor& a, const std::vector<double>& b) {
  std::vector<double> v = a.to_vector<double>();
  REQUIRE(v.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < v.size(); ++i) worst = std::max(worst, std::abs(v[i] - b[i]));
  return worst;
}

Tensor data_points(int64_t batch, uint64_t seed, DType dtype = DType::Float64) {
  Generator gen(seed);
  // Points around the data mean, some in the tails.
  Tensor z = randn({batch, 3}, gen, {.dtype = DType::Float64});
  return to(add(mul(z, kS * 1.5), mu_tensor(DType::Float64)), dtype);
}

// A small time-dependent tanh network, v = W2 tanh(W1 x + w t + b1) + b2, with
// fixed random float64 parameters: a nonlinear field with a full Jacobian.
struct TanhField {
  Tensor w1, wt, b1, w2, b2;
  TanhField(int64_t dim, int64_t width, uint64_t seed) {
    Generator gen(seed);
    TensorOptions f64{.dtype = DType::Float64};
    w1 = uniform({width, dim}, -1.2, 1.2, gen, f64);
    wt = uniform({width}, -1, 1, gen, f64);
    b1 = uniform({width}, -0.5, 0.5, gen, f64);
    w2 = uniform({dim, width}, -0.8, 0.8, gen, f64);
    b2 = uniform({dim}, -0.5, 0.5, gen, f64);
  }
  VelocityFn fn() const {
    TanhField self = *this;
    return [self](const Tensor& x, const Tensor& t) {
      Tensor h = tanh(add(linear(x, self.w1, self.b1), mul(unsqueeze(t, 1), self.wt)));
      return linear(h, self.w2, self.b2);
    };
  }
};

}  // namespace

TEST_CASE("likelihood of the CondOT Gaussian flow matches the closed form with dopri5",
          "[flow][likelihood]") {
  Tensor x1 = data_points(6, 1);
  LikelihoodResult r = log_likelihood(condot_gaussian_field(), x1,
                                      {.solver = Solver::Dopri5, .rtol = 1e-12, .atol = 1e-12});
  REQUIRE(r.log_p.dtype() == DType::Float64);
  REQUIRE(r.log_p.shape() == Shape{6});
  CHECK(max_abs_diff(r.log_p, host_gaussian_log_density(x1, kMu, kS)) < 1e-8);
  // The flow maps x1 to the source point (x1 - mu) / s.
  std::vector<double> x1v = x1.to_vector<double>(), z(x1v.size());
  for (size_t i = 0; i < z.size(); ++i) z[i] = (x1v[i] - kMu[i % 3]) / kS;
  CHECK(max_abs_diff(r.x0, z) < 1e-9);
  CHECK(max_abs_diff(r.log_p0, host_gaussian_log_density(r.x0, {0, 0, 0}, 1)) < 1e-12);
  CHECK(r.nfe == 2 + 6 * (r.steps + r.rejected));
  CHECK_FALSE(r.standard_error.defined());
}

TEST_CASE("fixed-step likelihoods converge at the solver's order", "[flow][likelihood]") {
  Tensor x1 = data_points(4, 2);
  std::vector<double> exact = host_gaussian_log_density(x1, kMu, kS);
  for (Solver method : {Solver::Euler, Solver::Midpoint, Solver::Heun, Solver::RK4}) {
    INFO(solver_name(method));
    auto error = [&](int64_t steps) {
      LikelihoodResult r =
          log_likelihood(condot_gaussian_field(), x1, {.solver = method, .steps = steps});
      CHECK(r.nfe == steps * (method == Solver::Euler ? 1 : method == Solver::RK4 ? 4 : 2));
      return max_abs_diff(r.log_p, exact);
    };
    double e1 = error(40), e2 = error(80), e3 = error(160);
    int p = solver_order(method);
    CHECK(std::log2(e1 / e2) == Approx(p).margin(0.3));
    CHECK(std::log2(e2 / e3) == Approx(p).margin(0.2));
  }
  // RK4 with a few thousand steps reaches round-off level (reference 7.5).
  LikelihoodResult fine =
      log_likelihood(condot_gaussian_field(), x1, {.solver = Solver::RK4, .steps = 2000});
  CHECK(max_abs_diff(fine.log_p, exact) < 1e-11);
}

TEST_CASE("a N(0, s0^2 I) source gives the right likelihood (variance-exploding style)",
          "[flow][likelihood]") {
  // Gaussian path with mean t mu and std c_t = (1 - t) s0 + t s: velocity
  // mu + (s - s0) / c_t (x - t mu) maps N(0, s0^2 I) onto N(mu, s^2 I).
  const double s0 = 3.0;
  Tensor mu = mu_tensor(DType::Float64);
  VelocityFn field = [mu, s0](const Tensor& x, const Tensor& t) {
    Tensor c = add(mul(sub(1.0, t), s0), mul(t, kS));
    Tensor k = div(kS - s0, c);
    return add(mu, mul(unsqueeze(k, 1), sub(x, mul(unsqueeze(t, 1), mu))));
  };
  Tensor x1 = data_points(5, 3);
  std::vector<double> exact = host_gaussian_log_density(x1, kMu, kS);
  LikelihoodResult r = log_likelihood(field, x1, {.rtol = 1e-12, .atol = 1e-12, .source_std = s0});
  CHECK(max_abs_diff(r.log_p, exact) < 1e-8);
  // The same source passed as a function.
  LikelihoodResult f = log_likelihood(
      field, x1, {.rtol = 1e-12, .atol = 1e-12, .source_log_density = [s0](const Tensor& x0) {
                    return normal_log_density(x0, s0);
                  }});
  CHECK(max_abs_diff(f.log_p, exact) < 1e-8);
  // With the wrong source the answer is wrong (the option is really used).
  LikelihoodResult wrong = log_likelihood(field, x1, {.rtol = 1e-12, .atol = 1e-12});
  CHECK(max_abs_diff(wrong.log_p, exact) > 0.1);
}

TEST_CASE(
    "Hutchinson probes: Rademacher is exact for an isotropic Jacobian, Gaussian only "
    "in expectation",
    "[flow][likelihood]") {
  // The CondOT field's Jacobian is k(t) I, so e^T J e = k |e|^2: exactly k d
  // for +-1 probes, a chi-square multiple for Gaussian ones.
  Tensor x1 = data_points(6, 4);
  std::vector<double> exact = host_gaussian_log_density(x1, kMu, kS);
  LikelihoodOptions o{.solver = Solver::RK4,
                      .steps = 400,
                      .divergence = Divergence::Hutchinson,
                      .probes = 8,
                      .probe_kind = ProbeKind::Rademacher,
                      .seed = 11};
  LikelihoodResult rad = log_likelihood(condot_gaussian_field(), x1, o);
  CHECK(max_abs_diff(rad.log_p, exact) < 1e-9);
  for (double se : rad.standard_error.to_vector<double>()) CHECK(se < 1e-9);

  o.probe_kind = ProbeKind::Gaussian;
  o.probes = 64;
  LikelihoodResult gauss = log_likelihood(condot_gaussian_field(), x1, o);
  std::vector<double> lp = gauss.log_p.to_vector<double>();
  std::vector<double> se = gauss.standard_error.to_vector<double>();
  CHECK(max_abs_diff(gauss.log_p, exact) > 1e-4);  // not exact...
  for (size_t i = 0; i < lp.size(); ++i) {
    CHECK(se[i] > 0);
    CHECK(std::abs(lp[i] - exact[i]) < 4 * se[i]);  // ...but within its standard error
  }
}

TEST_CASE(
    "exact divergence equals the Jacobian trace from separate gradients and finite "
    "differences",
    "[flow][likelihood]") {
  const int64_t dim = 4, batch = 3;
  TanhField net(dim, 7, 5);
  VelocityFn field = net.fn();
  Generator gen(9);
  Tensor x = uniform({batch, dim}, -1, 1, gen, {.dtype = DType::Float64});
  Tensor t = from_vector(std::vector<double>{0.1, 0.5, 0.93}, {3});

  VelocityDivergence vd = exact_divergence(field, x, t, DType::Float64);
  REQUIRE(vd.divergence.shape() == Shape{batch});
  REQUIRE(vd.divergence.dtype() == DType::Float64);
  CHECK_FALSE(vd.divergence.requires_grad());
  // The velocity comes from the same evaluation.
  CHECK(max_abs_diff(vd.velocity, field(x, t).to_vector<double>()) == 0);

  // Reference 1: d separate reverse passes, one per output coordinate.
  Tensor leaf = detach(x);
  leaf.set_requires_grad(true);
  Tensor v = field(leaf, t);
  std::vector<double> trace(batch, 0.0);
  for (int64_t i = 0; i < dim; ++i) {
    Tensor e = zeros({batch, dim}, {.dtype = DType::Float64});
    fill_(narrow(e, 1, i, 1), 1.0);
    std::vector<double> g = grad({v}, {leaf}, {e}, {.retain_graph = true})[0].to_vector<double>();
    for (int64_t b = 0; b < batch; ++b) trace[b] += g[b * dim + i];
  }
  CHECK(max_abs_diff(vd.divergence, trace) < 1e-12);

  // Reference 2: central finite differences of v_i along x_i.
  std::vector<double> xv = x.to_vector<double>(), fd(batch, 0.0);
  const double h = 1e-5;
  for (int64_t i = 0; i < dim; ++i) {
    std::vector<double> plus = xv, minus = xv;
    for (int64_t b = 0; b < batch; ++b) {
      plus[b * dim + i] += h;
      minus[b * dim + i] -= h;
    }
    std::vector<double> vp = field(from_vector(plus, {batch, dim}), t).to_vector<double>();
    std::vector<double> vm = field(from_vector(minus, {batch, dim}), t).to_vector<double>();
    for (int64_t b = 0; b < batch; ++b) fd[b] += (vp[b * dim + i] - vm[b * dim + i]) / (2 * h);
  }
  CHECK(max_abs_diff(vd.divergence, fd) < 1e-8);

  // Hutchinson with the d basis vectors as probes gives the diagonal entries,
  // whose sum is the trace.
  Tensor basis = contiguous(
      expand(reshape(eye(dim, {.dtype = DType::Float64}), {dim, 1, dim}), {dim, batch, dim}));
  VelocityDivergence hd = hutchinson_divergence(field, x, t, basis, DType::Float64);
  REQUIRE(hd.divergence.shape() == Shape{batch, dim});
  CHECK(max_abs_diff(sum(hd.divergence, {1}), trace) < 1e-12);

  // float32 inputs with float64 accumulation.
  Tensor x32 = to(x, DType::Float32);
  VelocityFn field32 = [&](const Tensor& xx, const Tensor& tt) {
    return to(field(to(xx, DType::Float64), to(tt, DType::Float64)), DType::Float32);
  };
  VelocityDivergence v32 = exact_divergence(field32, x32, to(t, DType::Float32), DType::Float64);
  CHECK(v32.divergence.dtype() == DType::Float64);
  CHECK(v32.velocity.dtype() == DType::Float32);
  CHECK(max_abs_diff(v32.divergence, trace) < 1e-5);
}

TEST_CASE("exact and Hutchinson log-likelihoods agree within the standard error",
          "[flow][likelihood]") {
  // Same fixed-step solver, so the x trajectory is identical and only the
  // divergence estimate differs; each probe's estimate is unbiased.
  TanhField net(3, 8, 21);
  Generator gen(22);
  Tensor x1 = randn({4, 3}, gen, {.dtype = DType::Float64});
  LikelihoodOptions exact_opts{.solver = Solver::RK4, .steps = 20};
  LikelihoodResult exact = log_likelihood(net.fn(), x1, exact_opts);
  std::vector<double> lp_exact = exact.log_p.to_vector<double>();

  for (ProbeKind kind : {ProbeKind::Rademacher, ProbeKind::Gaussian}) {
    std::vector<double> mean_se;
    for (int64_t k : {32, 512}) {
      INFO((kind == ProbeKind::Rademacher ? "rademacher" : "gaussian") << ", K = " << k);
      LikelihoodOptions o = exact_opts;
      o.divergence = Divergence::Hutchinson;
      o.probes = k;
      o.probe_kind = kind;
      o.seed = 100 + static_cast<uint64_t>(k);
      LikelihoodResult h = log_likelihood(net.fn(), x1, o);
      CHECK(h.nfe == exact.nfe);
      // The x end point does not depend on the probes.
      CHECK(max_abs_diff(h.x0, exact.x0.to_vector<double>()) < 1e-12);
      std::vector<double> lp = h.log_p.to_vector<double>(),
                          se = h.standard_error.to_vector<double>();
      double total = 0;
      for (size_t i = 0; i < lp.size(); ++i) {
        CHECK(se[i] > 0);
        CHECK(std::abs(lp[i] - lp_exact[i]) < 4 * se[i]);
        total += se[i];
      }
      mean_se.push_back(total / static_cast<double>(lp.size()));
    }
    // 16 times the probes: the standard error shrinks about 4 times. (Enough
    // probes that the sample standard deviation is itself reliable: in d = 3 a
    // Rademacher estimate takes only 4 distinct values.)
    CHECK(mean_se[0] / mean_se[1] == Approx(4.0).margin(1.2));
  }

  // One probe: an estimate but no standard error.
  LikelihoodOptions one = exact_opts;
  one.divergence = Divergence::Hutchinson;
  LikelihoodResult h1 = log_likelihood(net.fn(), x1, one);
  for (double se : h1.standard_error.to_vector<double>()) CHECK(std::isnan(se));
}

TEST_CASE("Hutchinson probes are fixed by the seed and drawn from the generator",
          "[flow][likelihood]") {
  TanhField net(3, 8, 23);
  Tensor x1 = data_points(3, 24);
  LikelihoodOptions o{.solver = Solver::Dopri5,
                      .divergence = Divergence::Hutchinson,
                      .probes = 4,
                      .probe_kind = ProbeKind::Gaussian,
                      .seed = 5};
  LikelihoodResult a = log_likelihood(net.fn(), x1, o);
  LikelihoodResult b = log_likelihood(net.fn(), x1, o);
  CHECK(max_abs_diff(a.log_p, b.log_p.to_vector<double>()) == 0);
  o.seed = 6;
  LikelihoodResult c = log_likelihood(net.fn(), x1, o);
  CHECK(max_abs_diff(a.log_p, c.log_p.to_vector<double>()) > 0);
  Generator gen(5);
  o.generator = &gen;
  LikelihoodResult d = log_likelihood(net.fn(), x1, o);
  CHECK(max_abs_diff(a.log_p, d.log_p.to_vector<double>()) == 0);
  CHECK(gen.state().offset == 4 * 3 * 3);  // K * B * d draws, once per solve

  // Rademacher probes are +-1 and Gaussian ones have unit variance.
  Generator g2(1);
  std::vector<double> r = draw_probes(50, 10, 4, ProbeKind::Rademacher, g2).to_vector<double>();
  CHECK(std::all_of(r.begin(), r.end(), [](double v) { return v == 1.0 || v == -1.0; }));
  double mean = 0;
  for (double v : r) mean += v;
  CHECK(std::abs(mean / static_cast<double>(r.size())) < 0.1);
}

TEST_CASE("sampling with the likelihood agrees with the likelihood of the samples",
          "[flow][likelihood]") {
  Generator gen(31);
  Tensor x0 = randn({5, 3}, gen, {.dtype = DType::Float64});
  LikelihoodOptions o{.rtol = 1e-11, .atol = 1e-11};

  SECTION("nonlinear field") {
    TanhField net(3, 8, 32);
    LikelihoodResult forward = sample_with_log_likelihood(net.fn(), x0, o);
    CHECK(max_abs_diff(forward.x0, x0.to_vector<double>()) == 0);
    LikelihoodResult back = log_likelihood(net.fn(), forward.x1, o);
    CHECK(max_abs_diff(back.x0, x0.to_vector<double>()) < 1e-8);
    CHECK(max_abs_diff(back.log_p, forward.log_p.to_vector<double>()) < 1e-8);
    // The sample itself matches the plain ODE solve.
    Solution plain = solve(net.fn(), x0, 0, 1, {.rtol = 1e-11, .atol = 1e-11});
    CHECK(max_abs_diff(forward.x1, plain.x.to_vector<double>()) < 1e-8);
  }
  SECTION("CondOT Gaussian flow: samples carry the closed-form density") {
    LikelihoodResult forward = sample_with_log_likelihood(condot_gaussian_field(), x0, o);
    CHECK(max_abs_diff(forward.log_p, host_gaussian_log_density(forward.x1, kMu, kS)) < 1e-8);
    // and the samples are mu + s x0.
    std::vector<double> x0v = x0.to_vector<double>(), expected(x0v.size());
    for (size_t i = 0; i < x0v.size(); ++i) expected[i] = kMu[i % 3] + kS * x0v[i];
    CHECK(max_abs_diff(forward.x1, expected) < 1e-9);
  }
}

TEST_CASE("float32 states with float64 accumulation", "[flow][likelihood]") {
  Tensor x1 = data_points(8, 41, DType::Float32);
  std::vector<double> exact = host_gaussian_log_density(x1, kMu, kS);
  for (bool acc64 : {true, false}) {
    for (Solver method : {Solver::RK4, Solver::Dopri5}) {
      INFO("accumulate_float64 = " << acc64 << ", " << solver_name(method));
      LikelihoodResult r =
          log_likelihood(condot_gaussian_field(DType::Float32), x1,
                         {.solver = method, .steps = 100, .accumulate_float64 = acc64});
      CHECK(r.log_p.dtype() == DType::Float64);
      CHECK(r.x0.dtype() == DType::Float32);
      CHECK(max_abs_diff(r.log_p, exact) < 2e-4);
    }
  }
  // Hutchinson in float32 with float64 accumulation.
  LikelihoodResult h = log_likelihood(
      condot_gaussian_field(DType::Float32), x1,
      {.solver = Solver::RK4, .steps = 100, .divergence = Divergence::Hutchinson, .probes = 3});
  CHECK(max_abs_diff(h.log_p, exact) < 2e-4);
}

TEST_CASE("a constant field shifts the source density", "[flow][likelihood]") {
  // v = c does not depend on x (its divergence is 0): log p1(x) = log p0(x - c).
  Tensor c = from_vector(std::vector<double>{1.0, -2.0, 0.5}, {3});
  VelocityFn field = [c](const Tensor& x, const Tensor&) { return add(zeros_like(x), c); };
  Tensor x1 = data_points(4, 51);
  std::vector<double> exact = host_gaussian_log_density(x1, {1.0, -2.0, 0.5}, 1.0);
  for (Divergence div : {Divergence::Exact, Divergence::Hutchinson}) {
    LikelihoodResult r =
        log_likelihood(field, x1, {.solver = Solver::Euler, .steps = 3, .divergence = div});
    CHECK(max_abs_diff(r.log_p, exact) < 1e-12);
  }
}

TEST_CASE("keep_graph differentiates the log-likelihood with respect to field parameters",
          "[flow][likelihood]") {
  // v = a x: x0 = x1 e^-a and div v = d a, so
  // log p1(x1) = log N(x1 e^-a; 0, I) - d a, d/da = |x1|^2 e^-2a - d.
  Tensor a = full({1}, 0.4, {.dtype = DType::Float64, .requires_grad = true});
  VelocityFn field = [&](const Tensor& x, const Tensor&) { return mul(x, a); };
  Tensor x1 = data_points(3, 61);
  std::vector<double> x1v = x1.to_vector<double>();
  double expected = 0;
  for (int b = 0; b < 3; ++b) {
    double sq = 0;
    for (int j = 0; j < 3; ++j) sq += x1v[b * 3 + j] * x1v[b * 3 + j];
    expected += sq * std::exp(-0.8) - 3;
  }
  for (Divergence div : {Divergence::Exact, Divergence::Hutchinson}) {
    LikelihoodResult r = log_likelihood(
        field, x1,
        {.solver = Solver::RK4, .steps = 100, .divergence = div, .probes = 2, .keep_graph = true});
    REQUIRE(r.log_p.requires_grad());
    Tensor g = grad({sum(r.log_p)}, {a})[0];
    CHECK(g.item() == Approx(expected).epsilon(1e-7));
  }
  LikelihoodResult plain = log_likelihood(field, x1, {.solver = Solver::RK4, .steps = 10});
  CHECK_FALSE(plain.log_p.requires_grad());
}

TEST_CASE("bits per dimension and uniform dequantisation", "[flow][likelihood]") {
  // A uniform density on [0, 1)^D has log p = 0: 8 bits per dimension for
  // 8-bit data; the same data seen on [-1, 1) has log p = -D ln 2, same bits.
  const int64_t dims = 12;
  Tensor zero = zeros({2}, {.dtype = DType::Float64});
  CHECK(max_abs_diff(dequantized_bits_per_dim(zero, dims), {8.0, 8.0}) < 1e-12);
  Tensor on_pm1 = full({2}, -static_cast<double>(dims) * std::log(2.0), {.dtype = DType::Float64});
  CHECK(max_abs_diff(dequantized_bits_per_dim(on_pm1, dims, 2.0), {8.0, 8.0}) < 1e-12);
  // The general formula: -(log p / D - ln 256) / ln 2.
  Tensor lp = from_vector(std::vector<double>{-30.5, 12.25}, {2});
  CHECK(max_abs_diff(dequantized_bits_per_dim(lp, dims),
                     {-(-30.5 / dims - std::log(256.0)) / std::log(2.0),
                      -(12.25 / dims - std::log(256.0)) / std::log(2.0)}) < 1e-12);
  CHECK(dequantized_bits_per_dim(to(lp, DType::Float32), dims).dtype() == DType::Float64);

  // Dequantisation: y = (k + u) / 256 with u ~ U[0, 1).
  std::vector<double> k;
  for (int i = 0; i < 4096; ++i) k.push_back(static_cast<double>((i * 37) % 256));
  Generator gen(3);
  Tensor y = dequantize_uniform(from_vector(k, {64, 64}), gen, DType::Float64);
  REQUIRE(y.shape() == Shape{64, 64});
  std::vector<double> yv = y.to_vector<double>();
  double mean_u = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    double u = yv[i] * 256 - k[i];
    CHECK((u >= 0 && u < 1));
    mean_u += u;
  }
  CHECK(mean_u / static_cast<double>(yv.size()) == Approx(0.5).margin(0.02));
  REQUIRE_THROWS_AS(dequantize_uniform(from_vector(std::vector<double>{3, 256}), gen), Error);
  REQUIRE_THROWS_WITH(dequantize_uniform(from_vector(std::vector<double>{-1, 2}), gen),
                      Catch::Contains("dequantize_uniform: pixel values must lie in [0, 255]") &&
                          Catch::Contains("[-1, 2]"));
  REQUIRE_THROWS_WITH(
      dequantized_bits_per_dim(lp, 0),
      Catch::Contains("dequantized_bits_per_dim: need dims >= 1, scaled_width > 0"));
}

TEST_CASE("likelihood functions reject bad input with clear errors", "[flow][likelihood]") {
  VelocityFn field = condot_gaussian_field();
  Tensor x1 = data_points(4, 71);
  REQUIRE_THROWS_AS(log_likelihood(field, zeros({4}, {.dtype = DType::Float64})), Error);
  REQUIRE_THROWS_WITH(log_likelihood(field, zeros({4}, {.dtype = DType::Float64})),
                      Catch::Contains("log_likelihood: x must be a floating-point [B, d] tensor") &&
                          Catch::Contains("float64[4]"));
  REQUIRE_THROWS_WITH(
      log_likelihood(field, x1, {.divergence = Divergence::Hutchinson, .probes = 0}),
      Catch::Contains("Hutchinson needs probes >= 1, got 0"));
  VelocityFn wrong = [](const Tensor& x, const Tensor&) { return narrow(x, 1, 0, 2); };
  REQUIRE_THROWS_WITH(log_likelihood(wrong, x1),
                      Catch::Contains("velocity field returned float64[12, 2]") &&
                          Catch::Contains("float64[12, 3]"));
  REQUIRE_THROWS_WITH(
      log_likelihood(field, x1, {.source_log_density = [](const Tensor& x0) { return sum(x0); }}),
      Catch::Contains("source_log_density returned float64[]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(normal_log_density(x1, 0.0), Catch::Contains("sigma must be positive"));
  Tensor t = zeros({4}, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(
      hutchinson_divergence(field, x1, t, zeros({2, 4, 2}, {.dtype = DType::Float64}),
                            DType::Float64),
      Catch::Contains("probes must be [K, B, d] = [K, 4, 3]") &&
          Catch::Contains("float64[2, 4, 2]"));
  REQUIRE_THROWS_WITH(
      exact_divergence(field, x1, zeros({3}, {.dtype = DType::Float64}), DType::Float64),
      Catch::Contains("t must be a [B] = [4] tensor, got float64[3]"));
}
