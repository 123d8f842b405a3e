// Schedulers, affine paths and matchers (flow/scheduler.h, flow/path.h,
// flow/matcher.h). References: the test vectors and boundary values of
// flow-matching.md 2.3 and 3, float64 central differences of alpha and sigma
// (and of x_t along t), and the matcher formulas of section 4 recomputed here
// in float64 loops.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "flow/matcher.h"
#include "flow/path.h"
#include "flow/scheduler.h"

using namespace tide;
using namespace tide::flow;

namespace {

constexpr double kPi = std::numbers::pi;

std::vector<std::shared_ptr<const Scheduler>> all_schedulers() {
  return {std::make_shared<CondOTScheduler>(),      std::make_shared<CondOTScheduler>(0.1),
          std::make_shared<PolynomialScheduler>(3), std::make_shared<PolynomialScheduler>(1.5),
          std::make_shared<VPScheduler>(),          std::make_shared<LinearVPScheduler>(),
          std::make_shared<CosineScheduler>(),      std::make_shared<VEScheduler>(0.01, 10.0)};
}

Tensor random64(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen, {.dtype = DType::Float64});
}

// Times strictly inside (0, 1), away from both singular ends.
Tensor interior_times(int64_t n, uint64_t seed) {
  Generator gen(seed);
  return uniform({n}, 0.05, 0.95, gen, {.dtype = DType::Float64});
}

void require_close(const Tensor& a, const Tensor& b, double tol) {
  REQUIRE(a.shape() == b.shape());
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    INFO("element " << i);
    REQUIRE(va[i] == Approx(vb[i]).margin(tol).epsilon(tol));
  }
}

}  // namespace

// ===========================================================================
// Schedulers
// ===========================================================================

TEST_CASE("schedulers: the reference test vectors", "[flow][scheduler]") {
  struct Row {
    std::shared_ptr<const Scheduler> s;
    double t, alpha, sigma, d_alpha, d_sigma;
  };
  // flow-matching.md 2.3, "Test vectors" (6 significant digits).
  std::vector<Row> rows = {
      {std::make_shared<CondOTScheduler>(), 0.5, 0.5, 0.5, 1, -1},
      {std::make_shared<PolynomialScheduler>(3), 0.5, 0.125, 0.875, 0.75, -0.75},
      {std::make_shared<VPScheduler>(), 0.0, 0.00657159, 0.999978, 0.0657159, -0.000431867},
      {std::make_shared<VPScheduler>(), 0.5, 0.281183, 0.959654, 1.41294, -0.413999},
      {std::make_shared<VPScheduler>(), 0.9, 0.946722, 0.322053, 0.989324, -2.90827},
      {std::make_shared<LinearVPScheduler>(), 0.5, 0.5, 0.866025, 1, -0.577350},
      {std::make_shared<CosineScheduler>(), 0.5, 0.707107, 0.707107, 1.110721, -1.110721},
  };
  for (const Row& r : rows) {
    INFO(r.s->name() << " at t = " << r.t);
    SchedulerValues v = r.s->at(r.t);
    CHECK(v.alpha == Approx(r.alpha).epsilon(1e-5));
    CHECK(v.sigma == Approx(r.sigma).epsilon(1e-5));
    CHECK(v.d_alpha == Approx(r.d_alpha).epsilon(1e-5));
    CHECK(v.d_sigma == Approx(r.d_sigma).epsilon(1e-5));
  }
}

TEST_CASE("schedulers: derivatives match float64 central differences", "[flow][scheduler]") {
  const double h = 1e-6;
  for (const auto& s : all_schedulers()) {
    for (double t = 0.01; t < 0.995; t += 0.0625) {
      INFO(s->name() << " at t = " << t);
      SchedulerValues v = s->at(t);
      double fd_alpha = (s->at(t + h).alpha - s->at(t - h).alpha) / (2 * h);
      double fd_sigma = (s->at(t + h).sigma - s->at(t - h).sigma) / (2 * h);
      CHECK(v.d_alpha == Approx(fd_alpha).epsilon(1e-6).margin(1e-7));
      CHECK(v.d_sigma == Approx(fd_sigma).epsilon(1e-6).margin(1e-7));
    }
  }
  // One-sided at the ends, where the derivatives are finite.
  for (const auto& s : {std::shared_ptr<const Scheduler>(std::make_shared<CondOTScheduler>(0.2)),
                        std::shared_ptr<const Scheduler>(std::make_shared<CosineScheduler>()),
                        std::shared_ptr<const Scheduler>(std::make_shared<VPScheduler>())}) {
    INFO(s->name() << " at t = 0");
    double fd = (-3 * s->at(0).sigma + 4 * s->at(h).sigma - s->at(2 * h).sigma) / (2 * h);
    CHECK(s->at(0).d_sigma == Approx(fd).epsilon(1e-5).margin(1e-7));
  }
}

TEST_CASE("schedulers: boundary values and invariants", "[flow][scheduler]") {
  SECTION("convex and variance-preserving families") {
    for (double t = 0; t <= 1.0; t += 0.125) {
      for (const auto& s :
           {std::shared_ptr<const Scheduler>(std::make_shared<CondOTScheduler>()),
            std::shared_ptr<const Scheduler>(std::make_shared<PolynomialScheduler>(2.5))}) {
        SchedulerValues v = s->at(t);
        CHECK(v.alpha + v.sigma == Approx(1.0));
        CHECK(v.d_alpha + v.d_sigma == Approx(0.0).margin(1e-12));
      }
      for (const auto& s :
           {std::shared_ptr<const Scheduler>(std::make_shared<VPScheduler>()),
            std::shared_ptr<const Scheduler>(std::make_shared<LinearVPScheduler>()),
            std::shared_ptr<const Scheduler>(std::make_shared<CosineScheduler>())}) {
        SchedulerValues v = s->at(t);
        CHECK(v.alpha * v.alpha + v.sigma * v.sigma == Approx(1.0));
      }
    }
  }
  SECTION("t = 0 is the source and t = 1 the data") {
    struct Ends {
      std::shared_ptr<const Scheduler> s;
      double alpha0, sigma0, alpha1, sigma1;
    };
    const double vp_t0 = 0.5 * (20.0 + 0.1);  // T(0) = (beta_max + beta_min) / 2
    std::vector<Ends> ends = {
        {std::make_shared<CondOTScheduler>(), 0, 1, 1, 0},
        {std::make_shared<CondOTScheduler>(0.05), 0, 1, 1, 0.05},  // Lipman: N(x1, sigma_min^2)
        {std::make_shared<PolynomialScheduler>(3), 0, 1, 1, 0},
        {std::make_shared<VPScheduler>(), std::exp(-0.5 * vp_t0), std::sqrt(1 - std::exp(-vp_t0)),
         1, 0},
        {std::make_shared<LinearVPScheduler>(), 0, 1, 1, 0},
        {std::make_shared<CosineScheduler>(), 0, 1, 1, 0},
        {std::make_shared<VEScheduler>(0.01, 7.0), 1, 7.0, 1, 0},  // N(x1, sigma_max^2) at t = 0
    };
    for (const Ends& e : ends) {
      INFO(e.s->name());
      CHECK(e.s->at(0).alpha == Approx(e.alpha0).margin(1e-15));
      CHECK(e.s->at(0).sigma == Approx(e.sigma0).margin(1e-15));
      CHECK(e.s->at(1).alpha == Approx(e.alpha1).margin(1e-15));
      CHECK(e.s->at(1).sigma == Approx(e.sigma1).margin(1e-15));
    }
  }
  SECTION("Lipman's OT path: u_t = x1 - (1 - sigma_min) x0") {
    SchedulerValues v = CondOTScheduler(0.1).at(0.3);
    CHECK(v.alpha == Approx(0.3));
    CHECK(v.sigma == Approx(1 - 0.9 * 0.3));
    CHECK(v.d_alpha == 1.0);
    CHECK(v.d_sigma == Approx(-0.9));
  }
  SECTION("VE: alpha is constant and sigma grows towards the source") {
    VEScheduler ve(0.01, 10.0);
    double previous = -1;
    for (double t = 1.0; t >= 0; t -= 0.1) {
      SchedulerValues v = ve.at(std::max(t, 0.0));
      CHECK(v.alpha == 1.0);
      CHECK(v.d_alpha == 0.0);
      CHECK(v.sigma > previous);
      previous = v.sigma;
    }
    // Song's VE-SDE kernel std sigma_min sqrt(rho^(2u) - 1), u = 1 - t, up to
    // the end-point normalisation 1 / sqrt(1 - rho^-2) = 1 + 5e-7 here; and
    // close to the geometric sigma_min rho^u away from the data end.
    for (double u : {0.01, 0.3, 0.6, 1.0}) {
      double rho = 1000.0, song = 0.01 * std::sqrt(std::pow(rho, 2 * u) - 1);
      CHECK(ve.at(1 - u).sigma == Approx(song / std::sqrt(1 - 1 / (rho * rho))).epsilon(1e-12));
      CHECK(ve.at(1 - u).sigma == Approx(song).epsilon(1e-6));
    }
    CHECK(ve.at(0.4).sigma == Approx(0.01 * std::pow(1000.0, 0.6)).epsilon(2e-4));
  }
}

TEST_CASE("schedulers: the singular end t = 1 is guarded", "[flow][scheduler]") {
  for (const auto& s : {std::shared_ptr<const Scheduler>(std::make_shared<VPScheduler>()),
                        std::shared_ptr<const Scheduler>(std::make_shared<LinearVPScheduler>()),
                        std::shared_ptr<const Scheduler>(std::make_shared<VEScheduler>())}) {
    INFO(s->name());
    SchedulerValues at_one = s->at(1.0);
    REQUIRE(std::isfinite(at_one.d_sigma));
    CHECK(at_one.d_sigma == Approx(s->at(1.0 - kSingularGuard).d_sigma));
    CHECK(at_one.sigma == 0.0);
    // u_t = d_alpha x1 + d_sigma x0 stays finite for x0 = 0 (no inf * 0).
    AffinePath path(s);
    Tensor x = random64({3, 2}, 1);
    PathSample p = path.sample(zeros({3, 2}, {.dtype = DType::Float64}), x,
                               ones({3}, {.dtype = DType::Float64}));
    for (double u : p.u_t.to_vector<double>()) CHECK(std::isfinite(u));
  }
}

TEST_CASE("schedulers: evaluate applies at() elementwise", "[flow][scheduler]") {
  Generator gen(3);
  Tensor t = rand({2, 5}, gen);  // float32, any shape
  VPScheduler vp;
  SchedulerTensors out = vp.evaluate(t, DType::Float64);
  REQUIRE(out.alpha.shape() == t.shape());
  REQUIRE(out.d_sigma.dtype() == DType::Float64);
  std::vector<float> times = t.to_vector<float>();
  std::vector<double> alpha = out.alpha.to_vector<double>(), ds = out.d_sigma.to_vector<double>();
  for (size_t i = 0; i < times.size(); ++i) {
    CHECK(alpha[i] == vp.at(times[i]).alpha);
    CHECK(ds[i] == vp.at(times[i]).d_sigma);
  }
  REQUIRE(vp.evaluate(t, DType::Float32).sigma.dtype() == DType::Float32);
}

TEST_CASE("schedulers: errors", "[flow][scheduler]") {
  CosineScheduler cosine;
  REQUIRE_THROWS_AS(cosine.at(1.5), Error);
  REQUIRE_THROWS_WITH(cosine.at(-0.1), Catch::Contains("cosine") && Catch::Contains("-0.1"));
  REQUIRE_THROWS_WITH(cosine.evaluate(tensor({int64_t{0}}), DType::Float32),
                      Catch::Contains("int64[1]"));
  REQUIRE_THROWS_WITH(PolynomialScheduler(0), Catch::Contains("poly") && Catch::Contains("0"));
  REQUIRE_THROWS_WITH(VPScheduler(1.0, 0.5), Catch::Contains("beta_min"));
  REQUIRE_THROWS_WITH(VEScheduler(1.0, 1.0), Catch::Contains("sigma_max"));
  REQUIRE_THROWS_WITH(CondOTScheduler(1.0), Catch::Contains("sigma_min"));
  REQUIRE_THROWS_WITH(make_scheduler("linear"),
                      Catch::Contains("'linear'") && Catch::Contains("linear-vp") &&
                          Catch::Contains("condot") && Catch::Contains("ve"));
  for (const std::string& name : scheduler_names()) CHECK(make_scheduler(name)->name() == name);
  CHECK(std::dynamic_pointer_cast<const CondOTScheduler>(
            make_scheduler("condot", {.sigma_min = 0.25}))
            ->sigma_min() == 0.25);
}

// ===========================================================================
// Affine paths
// ===========================================================================

TEST_CASE("paths: x_t and u_t match the definition", "[flow][path]") {
  const int64_t batch = 6;
  Tensor x0 = random64({batch, 3}, 10), x1 = random64({batch, 3}, 11);
  Tensor t = interior_times(batch, 12);
  std::vector<double> vx0 = x0.to_vector<double>(), vx1 = x1.to_vector<double>(),
                      vt = t.to_vector<double>();
  for (const auto& s : all_schedulers()) {
    INFO(s->name());
    AffinePath path(s);
    PathSample p = path.sample(x0, x1, t);
    std::vector<double> xt = p.x_t.to_vector<double>(), ut = p.u_t.to_vector<double>();
    for (int64_t i = 0; i < batch; ++i) {
      SchedulerValues v = s->at(vt[i]);
      for (int64_t k = 0; k < 3; ++k) {
        size_t e = static_cast<size_t>(i * 3 + k);
        CHECK(xt[e] == Approx(v.alpha * vx1[e] + v.sigma * vx0[e]).margin(1e-14));
        CHECK(ut[e] == Approx(v.d_alpha * vx1[e] + v.d_sigma * vx0[e]).margin(1e-14));
      }
    }
    // u_t is the time derivative of x_t for fixed endpoints.
    const double h = 1e-6;
    Tensor xp = path.sample(x0, x1, add(t, h)).x_t, xm = path.sample(x0, x1, sub(t, h)).x_t;
    require_close(p.u_t, div(sub(xp, xm), 2 * h), 1e-6);
  }
}

TEST_CASE("paths: conversions between velocity, x1 and noise", "[flow][path]") {
  const int64_t batch = 5;
  Tensor x0 = random64({batch, 2}, 20), x1 = random64({batch, 2}, 21);
  Tensor t = interior_times(batch, 22);
  for (const auto& s : all_schedulers()) {
    INFO(s->name());
    AffinePath path(s);
    PathSample p = path.sample(x0, x1, t);
    // Consistency with the definitions: every parameterisation of the same
    // point gives the same velocity, and back.
    require_close(path.velocity_from_x1(p.x_t, x1, t), p.u_t, 1e-10);
    require_close(path.x1_from_velocity(p.x_t, p.u_t, t), x1, 1e-10);
    require_close(path.x0_from_velocity(p.x_t, p.u_t, t), x0, 1e-10);
    require_close(path.x0_from_x1(p.x_t, x1, t), x0, 1e-10);
    require_close(path.velocity_from_x0(p.x_t, x0, t), p.u_t, 1e-10);
    require_close(path.x1_from_x0(p.x_t, x0, t), x1, 1e-10);
    // Round trips through arbitrary predictions (not on the path).
    Tensor guess = random64({batch, 2}, 23);
    require_close(path.x1_from_velocity(p.x_t, path.velocity_from_x1(p.x_t, guess, t), t), guess,
                  1e-9);
    require_close(path.velocity_from_x0(p.x_t, path.x0_from_velocity(p.x_t, guess, t), t), guess,
                  1e-9);
    require_close(path.x1_from_x0(p.x_t, path.x0_from_x1(p.x_t, guess, t), t), guess, 1e-9);
  }
}

TEST_CASE("paths: CondOT conversions in closed form", "[flow][path]") {
  // CondOT: v = (x1_hat - x_t) / (1 - t) and v = (x_t - x0_hat) / t.
  AffinePath path(std::make_shared<CondOTScheduler>());
  Tensor xt = tensor({1.0, -2.0, 0.5, 3.0}, {2, 2});
  Tensor pred = tensor({0.25, 1.0, -1.0, 2.0}, {2, 2});
  Tensor t = tensor({0.25, 0.8});
  std::vector<double> x = xt.to_vector<double>(), y = pred.to_vector<double>();
  std::vector<double> from_x1 = path.velocity_from_x1(xt, pred, t).to_vector<double>();
  std::vector<double> from_x0 = path.velocity_from_x0(xt, pred, t).to_vector<double>();
  double ts[2] = {0.25, 0.8};
  for (size_t e = 0; e < 4; ++e) {
    CHECK(from_x1[e] == Approx((y[e] - x[e]) / (1 - ts[e / 2])));
    CHECK(from_x0[e] == Approx((x[e] - y[e]) / ts[e / 2]));
  }
}

TEST_CASE("paths: conversions pass gradients to the prediction", "[flow][path][grad]") {
  AffinePath path(std::make_shared<VPScheduler>());
  Tensor xt = random64({3, 2}, 30);
  Tensor t = interior_times(3, 31);
  Tensor pred = random64({3, 2}, 32).set_requires_grad();
  auto fn = [&](const std::vector<Tensor>& in) { return path.velocity_from_x1(xt, in[0], t); };
  REQUIRE(gradcheck(fn, {pred}));
  REQUIRE(gradgradcheck(fn, {pred}));
}

TEST_CASE("paths: float32 and (B, C, H) shapes", "[flow][path]") {
  Generator gen(40);
  Tensor x0 = randn({2, 3, 4}, gen), x1 = randn({2, 3, 4}, gen);
  Tensor t = tensor({0.25f, 0.75f});
  PathSample p = AffinePath(std::make_shared<CosineScheduler>()).sample(x0, x1, t);
  REQUIRE(p.x_t.dtype() == DType::Float32);
  REQUIRE(p.x_t.shape() == x0.shape());
  std::vector<float> a = x0.to_vector<float>(), b = x1.to_vector<float>(),
                     xt = p.x_t.to_vector<float>();
  for (size_t e = 0; e < a.size(); ++e) {
    double tt = e < 12 ? 0.25 : 0.75;
    CHECK(xt[e] == Approx(std::sin(kPi * tt / 2) * b[e] + std::cos(kPi * tt / 2) * a[e])
                       .epsilon(1e-5)
                       .margin(1e-6));
  }
}

TEST_CASE("paths: errors name the operation and the shapes", "[flow][path]") {
  AffinePath path(std::make_shared<CondOTScheduler>());
  Tensor a = zeros({4, 2}), b = zeros({4, 3}), t = zeros({4});
  REQUIRE_THROWS_AS(path.sample(a, b, t), Error);
  REQUIRE_THROWS_WITH(path.sample(a, b, t), Catch::Contains("AffinePath::sample") &&
                                                Catch::Contains("[4, 2]") &&
                                                Catch::Contains("[4, 3]"));
  REQUIRE_THROWS_WITH(path.velocity_from_x1(a, a, zeros({3})),
                      Catch::Contains("velocity_from_x1") && Catch::Contains("float32[3]"));
  REQUIRE_THROWS_WITH(path.x1_from_x0(a, zeros({4, 2}, {.dtype = DType::Int64}), t),
                      Catch::Contains("x1_from_x0") && Catch::Contains("int64[4, 2]"));
  REQUIRE_THROWS_WITH(path.sample(a, a, full({4}, 1.5)), Catch::Contains("1.5"));
  REQUIRE_THROWS_WITH(AffinePath(nullptr), Catch::Contains("AffinePath"));
}

// ===========================================================================
// Matchers
// ===========================================================================

namespace {

struct Batch {
  Tensor x0, x1, t, noise;
  std::vector<double> a, b, ts, eps;  // host copies
  int64_t n, d;
};

Batch make_batch(int64_t n, int64_t d, uint64_t seed) {
  Batch batch;
  batch.n = n;
  batch.d = d;
  batch.x0 = random64({n, d}, seed);
  batch.x1 = add(random64({n, d}, seed + 1), 3.0);
  batch.t = interior_times(n, seed + 2);
  batch.noise = random64({n, d}, seed + 3);
  batch.a = batch.x0.to_vector<double>();
  batch.b = batch.x1.to_vector<double>();
  batch.ts = batch.t.to_vector<double>();
  batch.eps = batch.noise.to_vector<double>();
  return batch;
}

// Checks x_t and u_t against per-element reference formulas
// f(t, x0, x1, eps) -> (x_t, u_t).
void check_formulas(
    const MatcherSample& s, const Batch& batch,
    const std::function<std::pair<double, double>(double, double, double, double)>& f,
    double tol = 1e-12) {
  std::vector<double> xt = s.x_t.to_vector<double>(), ut = s.u_t.to_vector<double>();
  REQUIRE(xt.size() == batch.a.size());
  for (int64_t i = 0; i < batch.n; ++i) {
    for (int64_t k = 0; k < batch.d; ++k) {
      size_t e = static_cast<size_t>(i * batch.d + k);
      auto [x_ref, u_ref] = f(batch.ts[i], batch.a[e], batch.b[e], batch.eps[e]);
      INFO("sample " << i << " coordinate " << k);
      CHECK(xt[e] == Approx(x_ref).margin(tol).epsilon(tol));
      CHECK(ut[e] == Approx(u_ref).margin(tol).epsilon(tol));
    }
  }
}

}  // namespace

TEST_CASE("matchers: I-CFM and VP-CFM formulas", "[flow][matcher]") {
  Batch batch = make_batch(7, 2, 100);
  SECTION("I-CFM, sigma = 0: no noise is used") {
    ICFM m;
    REQUIRE_FALSE(m.uses_noise());
    MatcherSample s = m.sample_at(batch.x0, batch.x1, batch.t, Tensor());
    REQUIRE_FALSE(s.noise.defined());
    check_formulas(s, batch, [](double t, double a, double b, double) {
      return std::pair{t * b + (1 - t) * a, b - a};
    });
  }
  SECTION("I-CFM, sigma = 0.3") {
    MatcherSample s = ICFM(0.3).sample_at(batch.x0, batch.x1, batch.t, batch.noise);
    check_formulas(s, batch, [](double t, double a, double b, double e) {
      return std::pair{t * b + (1 - t) * a + 0.3 * e, b - a};
    });
  }
  SECTION("VP-CFM, sigma = 0.2") {
    MatcherSample s = VPCFM(0.2).sample_at(batch.x0, batch.x1, batch.t, batch.noise);
    check_formulas(s, batch, [](double t, double a, double b, double e) {
      double c = std::cos(kPi * t / 2), si = std::sin(kPi * t / 2);
      return std::pair{c * a + si * b + 0.2 * e, kPi / 2 * (c * b - si * a)};
    });
  }
  SECTION("VP-CFM with sigma = 0 is the cosine path; I-CFM with sigma = 0 is CondOT") {
    MatcherSample vp = VPCFM().sample_at(batch.x0, batch.x1, batch.t, Tensor());
    PathSample cosine =
        AffinePath(std::make_shared<CosineScheduler>()).sample(batch.x0, batch.x1, batch.t);
    require_close(vp.x_t, cosine.x_t, 1e-12);
    require_close(vp.u_t, cosine.u_t, 1e-12);
    MatcherSample icfm = ICFM().sample_at(batch.x0, batch.x1, batch.t, Tensor());
    PathMatcher condot(std::make_shared<CondOTScheduler>());
    MatcherSample p = condot.sample_at(batch.x0, batch.x1, batch.t, Tensor());
    require_close(icfm.x_t, p.x_t, 1e-12);
    require_close(icfm.u_t, p.u_t, 1e-12);
  }
}

TEST_CASE("matchers: Lipman's target CFM", "[flow][matcher]") {
  Batch batch = make_batch(6, 3, 200);
  const double sigma = 0.1;
  MatcherSample s = TargetCFM(sigma).sample_at(batch.x0, batch.x1, batch.t, batch.noise);
  check_formulas(
      s, batch,
      [&](double t, double, double b, double e) {
        double sigma_t = 1 - (1 - sigma) * t;
        double xt = t * b + sigma_t * e;
        return std::pair{xt, (b - (1 - sigma) * xt) / (1 - (1 - sigma) * t)};
      },
      1e-11);
  // x0 is ignored: the source sample is the noise; on the path the target is
  // also x1 - (1 - sigma) eps (reference section 3).
  require_close(s.x0, batch.noise, 0);
  require_close(s.u_t, sub(batch.x1, mul(batch.noise, 1 - sigma)), 1e-11);
  // With sigma = 0 it is the CondOT path from the noise.
  MatcherSample s0 = TargetCFM().sample_at(batch.x0, batch.x1, batch.t, batch.noise);
  PathSample p =
      AffinePath(std::make_shared<CondOTScheduler>()).sample(batch.noise, batch.x1, batch.t);
  require_close(s0.x_t, p.x_t, 1e-12);
  require_close(s0.u_t, p.u_t, 1e-11);
}

TEST_CASE("matchers: Schrodinger-bridge CFM", "[flow][matcher]") {
  Batch batch = make_batch(6, 2, 300);
  const double sigma = 0.7;
  SBCFM m(sigma);
  MatcherSample s = m.sample_at(batch.x0, batch.x1, batch.t, batch.noise);
  check_formulas(
      s, batch,
      [&](double t, double a, double b, double e) {
        double mu = t * b + (1 - t) * a;
        double sigma_t = sigma * std::sqrt(t * (1 - t));
        double xt = mu + sigma_t * e;
        return std::pair{xt, (1 - 2 * t) / (2 * t * (1 - t) + 1e-8) * (xt - mu) + b - a};
      },
      1e-10);
  // u_t is the time derivative of x_t = mu_t + sigma_t eps for fixed eps (up
  // to torchcfm's 1e-8 guard).
  const double h = 1e-6;
  Tensor xp = m.sample_at(batch.x0, batch.x1, add(batch.t, h), batch.noise).x_t;
  Tensor xm = m.sample_at(batch.x0, batch.x1, sub(batch.t, h), batch.noise).x_t;
  require_close(s.u_t, div(sub(xp, xm), 2 * h), 1e-6);
  // torchcfm's entropic plan uses epsilon = 2 sigma^2.
  SBCFM entropic(0.5, OTSolver::Sinkhorn);
  REQUIRE(entropic.coupling().has_value());
  CHECK(entropic.coupling()->solver == OTSolver::Sinkhorn);
  CHECK(entropic.coupling()->sinkhorn.epsilon == Approx(0.5));
  CHECK(m.coupling()->solver == OTSolver::Exact);
}

TEST_CASE("matchers: PathMatcher samples any affine path", "[flow][matcher]") {
  Batch batch = make_batch(5, 2, 400);
  auto ve = std::make_shared<VEScheduler>();
  PathMatcher m(ve);
  CHECK(m.name() == "path:ve");
  MatcherSample s = m.sample_at(batch.x0, batch.x1, batch.t, Tensor());
  check_formulas(s, batch, [&](double t, double a, double b, double) {
    SchedulerValues v = ve->at(t);
    return std::pair{v.alpha * b + v.sigma * a, v.d_alpha * b + v.d_sigma * a};
  });
}

TEST_CASE("matchers: sample draws t in (0, 1) and noise, deterministically", "[flow][matcher]") {
  Generator data(500);
  Tensor x0 = randn({64, 2}, data), x1 = randn({64, 2}, data);
  for (const std::string& name : matcher_names()) {
    INFO(name);
    auto m = make_matcher(name, 0.1);
    Generator g1(7), g2(7), g3(8);
    MatcherSample a = m->sample(x0, x1, g1), b = m->sample(x0, x1, g2), c = m->sample(x0, x1, g3);
    REQUIRE(a.t.shape() == Shape{64});
    REQUIRE(a.t.dtype() == DType::Float32);
    REQUIRE(a.x_t.shape() == x0.shape());
    REQUIRE(a.u_t.shape() == x0.shape());
    for (float t : a.t.to_vector<float>()) CHECK((t >= 0 && t < 1));
    CHECK(a.x_t.to_vector<float>() == b.x_t.to_vector<float>());
    CHECK(a.u_t.to_vector<float>() == b.u_t.to_vector<float>());
    CHECK(a.x_t.to_vector<float>() != c.x_t.to_vector<float>());
    CHECK(g1.state() == g2.state());
    // The returned sample is consistent with the deterministic part.
    MatcherSample again = m->sample_at(a.x0, a.x1, a.t, a.noise);
    CHECK(again.x_t.to_vector<float>() == a.x_t.to_vector<float>());
  }
}

TEST_CASE("matchers: OT-CFM pairs along the optimal plan, labels follow", "[flow][matcher]") {
  // x1 is a shuffled copy of x0 shifted by s. The optimal matching pairs every
  // x0_i with x0_i + s (sum |x0_i - x0_p(i) - s|^2 = sum |x0_i - x0_p(i)|^2 +
  // n |s|^2 is smallest for the identity p), so every coupled pair differs by s.
  const int64_t n = 24;
  Generator gen(600);
  Tensor x0 = randn({n, 2}, gen, {.dtype = DType::Float64});
  Tensor perm = randperm(n, gen);
  Tensor shift = tensor({0.3, -0.2}, {1, 2});
  Tensor x1 = add(index_select(x0, 0, perm), shift);
  // Label of data row j: its own index, so we can see which rows were chosen.
  Tensor labels = arange(n, {.dtype = DType::Int64});

  for (CouplingMode mode : {CouplingMode::PlanResample, CouplingMode::Permutation}) {
    INFO((mode == CouplingMode::Permutation ? "permutation" : "plan resampling"));
    OTCFM m(0.0, {.solver = OTSolver::Exact, .mode = mode, .sinkhorn = {}});
    Generator g(601);
    MatcherSample s = m.sample(x0, x1, g, labels);
    require_close(sub(s.x1, s.x0), expand(shift, {n, 2}), 1e-12);
    require_close(s.u_t, sub(s.x1, s.x0), 0);
    // Labels travel with their rows of x1.
    require_close(s.x1, index_select(x1, 0, s.labels), 0);
    if (mode == CouplingMode::Permutation) {
      // Every point used once, x0 kept in order.
      require_close(s.x0, x0, 0);
    }
  }
  // Independent matchers leave the pairing and the labels alone.
  Generator g(602);
  MatcherSample s = ICFM().sample(x0, x1, g, labels);
  require_close(s.x0, x0, 0);
  require_close(s.x1, x1, 0);
  REQUIRE(s.labels.to_vector<int64_t>() == labels.to_vector<int64_t>());
}

TEST_CASE("matchers: factory and errors", "[flow][matcher]") {
  CHECK(make_matcher("icfm")->coupling() == std::nullopt);
  CHECK(make_matcher("otcfm")->coupling()->mode == CouplingMode::PlanResample);
  CHECK(make_matcher("sbcfm")->uses_noise());
  CHECK_FALSE(make_matcher("vpcfm")->uses_noise());
  REQUIRE_THROWS_WITH(make_matcher("fm"), Catch::Contains("'fm'") && Catch::Contains("otcfm") &&
                                              Catch::Contains("sbcfm"));
  REQUIRE_THROWS_WITH(SBCFM(0.0), Catch::Contains("sbcfm") && Catch::Contains("sigma"));
  REQUIRE_THROWS_WITH(ICFM(-1.0), Catch::Contains("icfm") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(TargetCFM(1.0), Catch::Contains("target"));

  Generator gen(700);
  Tensor a = zeros({4, 2}), b = zeros({5, 2});
  REQUIRE_THROWS_AS(ICFM().sample(a, b, gen), Error);
  REQUIRE_THROWS_WITH(OTCFM().sample(a, b, gen), Catch::Contains("otcfm") &&
                                                     Catch::Contains("[4, 2]") &&
                                                     Catch::Contains("[5, 2]"));
  REQUIRE_THROWS_WITH(ICFM().sample(a, zeros({4, 2}, {.dtype = DType::Float64}), gen),
                      Catch::Contains("float64[4, 2]"));
  REQUIRE_THROWS_WITH(ICFM().sample(a, a, gen, zeros({3})),
                      Catch::Contains("labels") && Catch::Contains("[3]"));
  REQUIRE_THROWS_WITH(SBCFM().sample_at(a, a, zeros({4}), Tensor()), Catch::Contains("noise"));
  REQUIRE_THROWS_WITH(ICFM().sample_at(a, a, zeros({2}), Tensor()),
                      Catch::Contains("t must be") && Catch::Contains("[2]"));
}
