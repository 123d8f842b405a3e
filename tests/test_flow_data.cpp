// The 2-D toy data sets (flow/datasets.h) and the sample-based metrics
// (flow/metrics.h: MMD, KL, NLL, bits/dim). Data sets are checked against
// their recipes (flow-matching.md section 9) in distribution: moments
// computed here from the recipe by exact sums or quadrature, supports, and
// structure the recipe fixes exactly (ordering, symmetry, row counts).
// Densities are checked against mixtures written here and by integrating
// them on grids. Metrics are checked against float64 loops and closed forms.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "flow/datasets.h"
#include "flow/metrics.h"

using namespace tide;
using namespace tide::flow;

namespace {

constexpr double kPi = std::numbers::pi;

// Points as float64 host values: x of point i at [2i], y at [2i + 1].
std::vector<double> draw(const std::string& name, int64_t n, uint64_t seed) {
  Generator gen(seed);
  return sample_dataset(name, n, gen, DType::Float64).to_vector<double>();
}

struct Moments {
  double mx = 0, my = 0, xx = 0, yy = 0, xy = 0, r2 = 0;  // raw moments
  double se_mx = 0, se_my = 0, se_r2 = 0;                 // their standard errors
};

Moments moments(const std::vector<double>& p) {
  const double n = static_cast<double>(p.size() / 2);
  Moments m;
  for (size_t i = 0; i < p.size(); i += 2) {
    double x = p[i], y = p[i + 1];
    m.mx += x / n;
    m.my += y / n;
    m.xx += x * x / n;
    m.yy += y * y / n;
    m.xy += x * y / n;
    m.r2 += (x * x + y * y) / n;
  }
  double r4 = 0;
  for (size_t i = 0; i < p.size(); i += 2) {
    double r2 = p[i] * p[i] + p[i + 1] * p[i + 1];
    r4 += r2 * r2 / n;
  }
  m.se_mx = std::sqrt((m.xx - m.mx * m.mx) / n);
  m.se_my = std::sqrt((m.yy - m.my * m.my) / n);
  m.se_r2 = std::sqrt((r4 - m.r2 * m.r2) / n);
  return m;
}

// numpy.linspace, written again here for the expected values.
std::vector<double> grid(double start, double stop, int64_t k, bool endpoint) {
  std::vector<double> out;
  for (int64_t i = 0; i < k; ++i)
    out.push_back(start + (stop - start) * i / static_cast<double>(endpoint ? k - 1 : k));
  return out;
}

// Midpoint-rule expectation of f(s) for s uniform on [a, b].
double expect_uniform(double a, double b, const std::function<double(double)>& f) {
  const int steps = 200000;
  double h = (b - a) / steps, s = 0;
  for (int i = 0; i < steps; ++i) s += f(a + (i + 0.5) * h);
  return s / steps;
}

// The eight directions of both 8gaussians recipes.
std::vector<std::pair<double, double>> directions() {
  double s = 1 / std::sqrt(2.0);
  return {{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {s, s}, {s, -s}, {-s, s}, {-s, -s}};
}

}  // namespace

// ===========================================================================
// Names, shapes, determinism
// ===========================================================================

TEST_CASE("datasets: names, row counts, dtypes and determinism", "[flow][data]") {
  std::vector<std::string> expected = {"swissroll",      "circles",  "rings",    "moons",
                                       "8gaussians",     "pinwheel", "2spirals", "checkerboard",
                                       "cfm-8gaussians", "cfm-moons"};
  REQUIRE(dataset_names() == expected);
  for (const std::string& name : dataset_names()) {
    INFO(name);
    Generator gen(1);
    Tensor x = sample_dataset(name, 1003, gen);
    REQUIRE(x.dtype() == DType::Float32);
    // FFJORD's pinwheel makes 5 * (n / 5) points and 2spirals 2 * (n / 2).
    int64_t rows = name == "pinwheel" ? 1000 : name == "2spirals" ? 1002 : 1003;
    REQUIRE(x.shape() == Shape{rows, 2});
    for (float v : x.to_vector<float>()) REQUIRE(std::isfinite(v));
    CHECK(gen.state().offset > 0);
    // Deterministic per seed, different across seeds.
    CHECK(draw(name, 200, 5) == draw(name, 200, 5));
    CHECK(draw(name, 200, 5) != draw(name, 200, 6));
    Generator g64(1);
    CHECK(sample_dataset(name, 10, g64, DType::Float64).dtype() == DType::Float64);
    Generator g0(1);
    CHECK(sample_dataset(name, 0, g0).numel() == 0);
  }
}

TEST_CASE("datasets: errors", "[flow][data]") {
  Generator gen(2);
  REQUIRE_THROWS_AS(sample_dataset("spirals", 10, gen), Error);
  REQUIRE_THROWS_WITH(sample_dataset("spirals", 10, gen),
                      Catch::Contains("'spirals'") && Catch::Contains("2spirals") &&
                          Catch::Contains("cfm-moons") && Catch::Contains("checkerboard"));
  REQUIRE_THROWS_WITH(sample_dataset("moons", -1, gen), Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(sample_dataset("moons", 4, gen, DType::Int64), Catch::Contains("int64"));
  REQUIRE_THROWS_WITH(dataset_log_density("moons", zeros({3, 2})),
                      Catch::Contains("moons") && Catch::Contains("no closed-form"));
  REQUIRE_THROWS_WITH(dataset_log_density("8gaussians", zeros({3, 3})), Catch::Contains("[3, 3]"));
  REQUIRE_THROWS_WITH(has_log_density("gauss"), Catch::Contains("'gauss'"));
  CHECK(has_log_density("8gaussians"));
  CHECK(has_log_density("cfm-8gaussians"));
  CHECK(has_log_density("checkerboard"));
  CHECK_FALSE(has_log_density("swissroll"));
}

// ===========================================================================
// The Gaussian mixtures
// ===========================================================================

TEST_CASE("datasets: 8gaussians and cfm-8gaussians match their mixtures", "[flow][data]") {
  struct Mixture {
    std::string name;
    double radius, std, ball;  // centres radius * direction, per-coordinate std
  };
  // FFJORD: centres 4 d, noise 0.5 N, all divided by the literal 1.414.
  // torchcfm: centres 5 d, covariance argument sqrt(0.1) I, so std 0.1^(1/4).
  for (const Mixture& mix : {Mixture{"8gaussians", 4 / 1.414, 0.5 / 1.414, 1.0},
                             Mixture{"cfm-8gaussians", 5.0, std::pow(0.1, 0.25), 1.5}}) {
    INFO(mix.name);
    const int64_t n = 40000;
    std::vector<double> p = draw(mix.name, n, 10);
    // Points within `ball` of each centre: their mean is the centre (a
    // symmetric truncation) and their share is (1/8) P(|N(0, std^2 I_2)| < ball)
    // = (1/8) (1 - exp(-ball^2 / (2 std^2))).
    double inside_prob = 1 - std::exp(-mix.ball * mix.ball / (2 * mix.std * mix.std));
    for (auto [dx, dy] : directions()) {
      double cx = mix.radius * dx, cy = mix.radius * dy, sx = 0, sy = 0, count = 0;
      for (size_t i = 0; i < p.size(); i += 2) {
        double ex = p[i] - cx, ey = p[i + 1] - cy;
        if (ex * ex + ey * ey < mix.ball * mix.ball) {
          sx += p[i];
          sy += p[i + 1];
          ++count;
        }
      }
      double expected = n * inside_prob / 8;
      CHECK(std::abs(count - expected) < 5 * std::sqrt(expected));
      CHECK(sx / count == Approx(cx).margin(5 * mix.std / std::sqrt(count)));
      CHECK(sy / count == Approx(cy).margin(5 * mix.std / std::sqrt(count)));
    }
    Moments m = moments(p);
    CHECK(m.mx == Approx(0).margin(5 * m.se_mx));
    CHECK(m.my == Approx(0).margin(5 * m.se_my));
    // E|x|^2 = radius^2 + 2 std^2.
    CHECK(m.r2 == Approx(mix.radius * mix.radius + 2 * mix.std * mix.std).margin(5 * m.se_r2));

    // The log-density against the mixture written here, and its integral.
    Generator gen(11);
    Tensor q = uniform({50, 2}, -6, 6, gen, {.dtype = DType::Float64});
    std::vector<double> qs = q.to_vector<double>();
    std::vector<double> lp = dataset_log_density(mix.name, q).to_vector<double>();
    for (size_t i = 0; i < lp.size(); ++i) {
      double density = 0;
      for (auto [dx, dy] : directions()) {
        double ex = qs[2 * i] - mix.radius * dx, ey = qs[2 * i + 1] - mix.radius * dy;
        density += std::exp(-(ex * ex + ey * ey) / (2 * mix.std * mix.std)) /
                   (2 * kPi * mix.std * mix.std) / 8;
      }
      CHECK(lp[i] == Approx(std::log(density)).epsilon(1e-12).margin(1e-12));
    }
    const double h = 0.02;
    std::vector<double> cells;  // midpoints of an 800 x 800 grid on [-8, 8]^2
    for (int i = 0; i < 800; ++i)
      for (int j = 0; j < 800; ++j) {
        cells.push_back(-8 + (i + 0.5) * h);
        cells.push_back(-8 + (j + 0.5) * h);
      }
    Tensor pts = from_vector(cells, {static_cast<int64_t>(cells.size() / 2), 2});
    double integral = 0;
    for (double v : dataset_log_density(mix.name, pts).to_vector<double>()) integral += std::exp(v);
    CHECK(integral * h * h == Approx(1.0).epsilon(1e-6));
  }
}

// ===========================================================================
// Checkerboard
// ===========================================================================

TEST_CASE("datasets: checkerboard support and density", "[flow][data]") {
  const int64_t n = 32000;
  std::vector<double> p = draw("checkerboard", n, 20);
  // The support: squares of side 2 in [-4, 4)^2 with floor(x/2) + floor(y/2)
  // even, 8 of them, each with 1/8 of the mass, uniform inside.
  std::vector<double> count(16, 0), sum_x(16, 0), sum_y(16, 0);
  for (size_t i = 0; i < p.size(); i += 2) {
    double x = p[i], y = p[i + 1];
    REQUIRE((x >= -4 && x < 4 && y >= -4 && y < 4));
    int a = static_cast<int>(std::floor(x / 2)), b = static_cast<int>(std::floor(y / 2));
    REQUIRE((a + b + 4) % 2 == 0);
    int square = (a + 2) * 4 + (b + 2);
    count[square] += 1;
    sum_x[square] += x;
    sum_y[square] += y;
  }
  for (int square = 0; square < 16; ++square) {
    int a = square / 4 - 2, b = square % 4 - 2;
    if ((a + b + 4) % 2 != 0) continue;
    INFO("square " << a << ", " << b);
    double expected = n / 8.0, sd = std::sqrt(n * (1 / 8.0) * (7 / 8.0));
    CHECK(std::abs(count[square] - expected) < 5 * sd);
    // Uniform on [2a, 2a + 2): mean 2a + 1, std 2 / sqrt(12).
    double se = 2 / std::sqrt(12.0) / std::sqrt(count[square]);
    CHECK(sum_x[square] / count[square] == Approx(2 * a + 1).margin(5 * se));
    CHECK(sum_y[square] / count[square] == Approx(2 * b + 1).margin(5 * se));
  }

  // The density: 1/32 on the support, 0 off it, integrating to 1.
  Tensor probes = tensor({1.0, 1.0, 1.0, 3.0, -3.0, -3.0, 4.0, 0.0, -4.0, -4.0, 3.9, -0.1}, {6, 2});
  std::vector<double> lp = dataset_log_density("checkerboard", probes).to_vector<double>();
  const double in = -std::log(32.0), out = -std::numeric_limits<double>::infinity();
  CHECK(lp == std::vector<double>{in, out, in, out, in, in});
  const double h = 0.1;
  std::vector<double> cells;  // midpoints of a 100 x 100 grid on [-5, 5]^2
  for (int i = 0; i < 100; ++i)
    for (int j = 0; j < 100; ++j) {
      cells.push_back(-5 + (i + 0.5) * h);
      cells.push_back(-5 + (j + 0.5) * h);
    }
  double integral = 0;
  for (double v :
       dataset_log_density("checkerboard", from_vector(cells, {10000, 2})).to_vector<double>())
    integral += std::exp(v) * h * h;
  CHECK(integral == Approx(1.0).epsilon(1e-9));
}

// ===========================================================================
// Rings, circles and moons: deterministic shapes plus noise
// ===========================================================================

TEST_CASE("datasets: circles and rings match their radii and noise", "[flow][data]") {
  const int64_t n = 20001;
  SECTION("circles: n/2 points at radius 3, the rest at 1.5, noise 0.08 * 3") {
    std::vector<double> p = draw("circles", n, 30);
    double n_out = n / 2, n_in = n - n_out, noise = 0.24;
    Moments m = moments(p);
    CHECK(m.mx == Approx(0).margin(5 * m.se_mx));
    CHECK(m.my == Approx(0).margin(5 * m.se_my));
    double r2 = (n_out * 9 + n_in * 2.25) / n + 2 * noise * noise;
    CHECK(m.r2 == Approx(r2).margin(5 * m.se_r2));
    // Radial split between the circles (at 2.25, 3.1 noise stds from each).
    double outer = 0;
    for (size_t i = 0; i < p.size(); i += 2) outer += std::hypot(p[i], p[i + 1]) > 2.25;
    CHECK(std::abs(outer - n_out) < 0.005 * n);
  }
  SECTION("rings: radii 3, 2.25, 1.5, 0.75 with n/4 points on the first three, noise 0.08") {
    std::vector<double> p = draw("rings", n, 31);
    double q = n / 4, rest = n - 3 * q, noise = 0.08;
    Moments m = moments(p);
    CHECK(m.mx == Approx(0).margin(5 * m.se_mx));
    CHECK(m.my == Approx(0).margin(5 * m.se_my));
    double r2 = (q * (9 + 5.0625 + 2.25) + rest * 0.5625) / n + 2 * noise * noise;
    CHECK(m.r2 == Approx(r2).margin(5 * m.se_r2));
    std::vector<double> radii = {3, 2.25, 1.5, 0.75}, counts(4, 0);
    for (size_t i = 0; i < p.size(); i += 2) {
      double r = std::hypot(p[i], p[i + 1]);
      for (int k = 0; k < 4; ++k)
        if (std::abs(r - radii[k]) < 0.375) counts[k] += 1;  // half the gap: 4.7 stds
    }
    CHECK(std::abs(counts[0] - q) <= 3);
    CHECK(std::abs(counts[1] - q) <= 3);
    CHECK(std::abs(counts[2] - q) <= 3);
    CHECK(std::abs(counts[3] - rest) <= 3);
  }
}

TEST_CASE("datasets: moons (FFJORD) moments and support", "[flow][data]") {
  const int64_t n = 20000;
  std::vector<double> p = draw("moons", n, 40);
  // Noise-free sklearn arcs, then x 2 + (-1, -0.2); the noise is 0.1 N before
  // the x 2, so std 0.2 after.
  std::vector<double> arcs;
  for (double th : grid(0, kPi, n / 2, true)) {
    arcs.push_back(2 * std::cos(th) - 1);
    arcs.push_back(2 * std::sin(th) - 0.2);
  }
  for (double th : grid(0, kPi, n - n / 2, true)) {
    arcs.push_back(2 * (1 - std::cos(th)) - 1);
    arcs.push_back(2 * (0.5 - std::sin(th)) - 0.2);
  }
  Moments clean = moments(arcs), m = moments(p);
  const double var = 0.04;
  CHECK(m.mx == Approx(clean.mx).margin(5 * 0.2 / std::sqrt(n)));
  CHECK(m.my == Approx(clean.my).margin(5 * 0.2 / std::sqrt(n)));
  CHECK(m.xx == Approx(clean.xx + var).margin(0.02));
  CHECK(m.yy == Approx(clean.yy + var).margin(0.02));
  CHECK(m.xy == Approx(clean.xy).margin(0.02));
  // Every point lies within 6 noise stds of one of the two (transformed) arcs.
  for (size_t i = 0; i < p.size(); i += 2) {
    double x = (p[i] + 1) / 2, y = (p[i + 1] + 0.2) / 2;  // back to sklearn's frame
    auto arc_distance = [](double u, double v) {          // to the upper unit half circle
      if (v >= 0) return std::abs(std::hypot(u, v) - 1);
      return std::min(std::hypot(u - 1, v), std::hypot(u + 1, v));
    };
    double d = std::min(arc_distance(x, y), arc_distance(1 - x, 0.5 - y));
    REQUIRE(d < 6 * 0.1 * std::sqrt(2.0));
  }
}

TEST_CASE("datasets: cfm-moons keeps torchcfm's order and diagonal uniform noise", "[flow][data]") {
  const int64_t n = 2001;
  std::vector<double> p = draw("cfm-moons", n, 50);
  std::vector<double> outer = grid(0, kPi, n / 2, true), inner = grid(0, kPi, n - n / 2, true);
  double sum_u = 0, sum_u2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Undo x 3 - 1; what remains beyond the arc point is (u, u), u in [0, 0.2).
    double x = (p[2 * i] + 1) / 3, y = (p[2 * i + 1] + 1) / 3;
    bool is_outer = i < n / 2;  // not shuffled: the outer moon comes first
    double th = is_outer ? outer[i] : inner[i - n / 2];
    double ax = is_outer ? std::cos(th) : 1 - std::cos(th);
    double ay = is_outer ? std::sin(th) : 0.5 - std::sin(th);
    double ux = x - ax, uy = y - ay;
    INFO("row " << i);
    REQUIRE(ux == Approx(uy).margin(1e-12));
    REQUIRE((ux >= -1e-12 && ux < 0.2));
    sum_u += ux;
    sum_u2 += ux * ux;
  }
  double mean = sum_u / n, var = sum_u2 / n - mean * mean;
  CHECK(mean == Approx(0.1).margin(5 * 0.2 / std::sqrt(12.0 * n)));
  CHECK(var == Approx(0.04 / 12).epsilon(0.1));
}

// ===========================================================================
// Swiss roll, pinwheel, spirals
// ===========================================================================

TEST_CASE("datasets: swissroll moments by quadrature of the recipe", "[flow][data]") {
  const int64_t n = 40000;
  std::vector<double> p = draw("swissroll", n, 60);
  // s uniform on [1.5 pi, 4.5 pi]; point (s cos s + N, s sin s + N) / 5.
  double a = 1.5 * kPi, b = 4.5 * kPi;
  double ex = expect_uniform(a, b, [](double s) { return s * std::cos(s); }) / 5;
  double ey = expect_uniform(a, b, [](double s) { return s * std::sin(s); }) / 5;
  double exx =
      expect_uniform(a, b, [](double s) { return std::pow(s * std::cos(s), 2); }) / 25 + 0.04;
  double eyy =
      expect_uniform(a, b, [](double s) { return std::pow(s * std::sin(s), 2); }) / 25 + 0.04;
  Moments m = moments(p);
  CHECK(m.mx == Approx(ex).margin(5 * m.se_mx));
  CHECK(m.my == Approx(ey).margin(5 * m.se_my));
  CHECK(m.xx == Approx(exx).epsilon(0.03));
  CHECK(m.yy == Approx(eyy).epsilon(0.03));
  CHECK(m.r2 == Approx(exx + eyy).margin(5 * m.se_r2));
}

TEST_CASE("datasets: pinwheel radius and symmetry", "[flow][data]") {
  const int64_t n = 40000;
  std::vector<double> p = draw("pinwheel", n, 70);
  // |point / 2|^2 = r^2 + tau^2 with r = 1 + 0.3 N and tau = 0.1 N:
  // E|point|^2 = 4 (1 + 0.09 + 0.01); five equal classes at 72 degrees give
  // mean 0.
  Moments m = moments(p);
  CHECK(m.r2 == Approx(4.4).margin(5 * m.se_r2));
  CHECK(m.mx == Approx(0).margin(5 * m.se_mx));
  CHECK(m.my == Approx(0).margin(5 * m.se_my));
  // E|point| = 2 E sqrt(r^2 + tau^2), by quadrature over the two normals.
  double expected_norm = 0, mass = 0;
  for (double z1 = -8; z1 < 8; z1 += 0.01)
    for (double z2 = -8; z2 < 8; z2 += 0.01) {
      double w = std::exp(-(z1 * z1 + z2 * z2) / 2);
      expected_norm += w * 2 * std::hypot(1 + 0.3 * z1, 0.1 * z2);
      mass += w;
    }
  expected_norm /= mass;
  double mean_norm = 0;
  for (size_t i = 0; i < p.size(); i += 2) mean_norm += std::hypot(p[i], p[i + 1]) / (p.size() / 2);
  CHECK(mean_norm == Approx(expected_norm).margin(5 * 0.6 / std::sqrt(n)));
}

TEST_CASE("datasets: 2spirals mirror symmetry and moments", "[flow][data]") {
  const int64_t n = 40000, m_half = n / 2;
  std::vector<double> p = draw("2spirals", n, 80);
  // Rows i and i + m are mirror images before the 0.1 N noise, so their sum is
  // the sum of two noises: N(0, 0.02) per coordinate.
  double s = 0, ss = 0;
  for (int64_t i = 0; i < m_half; ++i) {
    for (int k = 0; k < 2; ++k) {
      double v = p[2 * i + k] + p[2 * (i + m_half) + k];
      s += v;
      ss += v * v;
    }
  }
  double count = 2.0 * m_half;
  CHECK(s / count == Approx(0).margin(5 * std::sqrt(0.02 / count)));
  CHECK(ss / count == Approx(0.02).epsilon(0.05));
  // E|point|^2 = (E s^2 - 0.5 E[s cos s] + 0.5 E[s sin s] + 1/6) / 9 + 0.02
  // with s = 3 pi sqrt(V), V uniform: a = -s cos s + 0.5 U1, b = s sin s + 0.5 U2.
  auto s_of = [](double v) { return 3 * kPi * std::sqrt(v); };
  double e_s2 = expect_uniform(0, 1, [&](double v) { return std::pow(s_of(v), 2); });
  double e_cos = expect_uniform(0, 1, [&](double v) { return s_of(v) * std::cos(s_of(v)); });
  double e_sin = expect_uniform(0, 1, [&](double v) { return s_of(v) * std::sin(s_of(v)); });
  double r2 = (e_s2 - 0.5 * e_cos + 0.5 * e_sin + 1.0 / 6) / 9 + 0.02;
  Moments m = moments(p);
  CHECK(m.r2 == Approx(r2).margin(5 * m.se_r2));
  CHECK(m.mx == Approx(0).margin(5 * m.se_mx));
}

// ===========================================================================
// Metrics: MMD, KL, NLL, bits/dim
// ===========================================================================

namespace {

// Biased or unbiased MMD^2 written out as three double loops.
double mmd_reference(const std::vector<double>& x, const std::vector<double>& y, int d, double h,
                     bool unbiased) {
  auto k = [&](const double* a, const double* b) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    return std::exp(-s / (2 * h * h));
  };
  const size_t n = x.size() / d, m = y.size() / d;
  double kxx = 0, kyy = 0, kxy = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      if (!(unbiased && i == j)) kxx += k(&x[i * d], &x[j * d]);
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < m; ++j)
      if (!(unbiased && i == j)) kyy += k(&y[i * d], &y[j * d]);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < m; ++j) kxy += k(&x[i * d], &y[j * d]);
  double nx = unbiased ? n * (n - 1.0) : n * double(n);
  double ny = unbiased ? m * (m - 1.0) : m * double(m);
  return kxx / nx + kyy / ny - 2 * kxy / (double(n) * m);
}

}  // namespace

TEST_CASE("mmd: values against loops and closed forms", "[flow][metrics]") {
  Generator gen(90);
  Tensor x = randn({12, 3}, gen, {.dtype = DType::Float64});
  Tensor y = add(randn({9, 3}, gen, {.dtype = DType::Float64}), 0.5);
  std::vector<double> xs = x.to_vector<double>(), ys = y.to_vector<double>();
  for (bool unbiased : {false, true}) {
    for (double h : {0.3, 1.0, 2.5}) {
      MMDOptions options{.bandwidth = h, .unbiased = unbiased};
      CHECK(mmd_squared(x, y, options) ==
            Approx(mmd_reference(xs, ys, 3, h, unbiased)).epsilon(1e-12).margin(1e-14));
    }
  }
  // Identical sets: the biased estimate is exactly 0; the unbiased one is
  // 2 S / (n (n - 1)) - 2 (S + n) / n^2 with S the off-diagonal kernel sum.
  CHECK(mmd_squared(x, x) == Approx(0).margin(1e-14));
  double off = 0;
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j)
      if (i != j) {
        double d2 = 0;
        for (int k = 0; k < 3; ++k) d2 += std::pow(xs[i * 3 + k] - xs[j * 3 + k], 2);
        off += std::exp(-d2 / 2);
      }
  CHECK(mmd_squared(x, x, {.bandwidth = 1.0, .unbiased = true}) ==
        Approx(2 * off / (12 * 11) - 2 * (off + 12) / 144).epsilon(1e-12));
  // Two single points: 2 - 2 exp(-|a - b|^2 / (2 h^2)).
  Tensor a = tensor({0.0, 0.0}, {1, 2}), b = tensor({3.0, 4.0}, {1, 2});
  CHECK(mmd_squared(a, b, {.bandwidth = 5.0, .unbiased = false}) ==
        Approx(2 - 2 * std::exp(-25.0 / 50)));
  // Errors.
  REQUIRE_THROWS_WITH(mmd_squared(x, y, {.bandwidth = 0, .unbiased = false}),
                      Catch::Contains("bandwidth"));
  REQUIRE_THROWS_WITH(mmd_squared(a, b, {.bandwidth = 1, .unbiased = true}),
                      Catch::Contains("unbiased") && Catch::Contains("[1, 2]"));
  REQUIRE_THROWS_WITH(mmd_squared(x, zeros({4, 2})),
                      Catch::Contains("squared_distances") && Catch::Contains("[4, 2]"));
}

TEST_CASE("kl and nll: estimates with standard errors", "[flow][metrics]") {
  SECTION("KL(N(0, 1) || N(mu, 1)) = mu^2 / 2") {
    const int64_t n = 20000;
    const double mu = 0.4;
    Generator gen(91);
    std::vector<double> x = randn({n}, gen, {.dtype = DType::Float64}).to_vector<double>();
    std::vector<double> lp(n), lq(n);
    for (int64_t i = 0; i < n; ++i) {
      lp[i] = -0.5 * x[i] * x[i] - 0.5 * std::log(2 * kPi);
      lq[i] = -0.5 * (x[i] - mu) * (x[i] - mu) - 0.5 * std::log(2 * kPi);
    }
    Estimate kl = kl_divergence(from_vector(lp), from_vector(lq));
    // log p - log q = mu^2 / 2 - mu x has std |mu|.
    CHECK(kl.standard_error == Approx(mu / std::sqrt(double(n))).epsilon(0.05));
    CHECK(kl.value == Approx(mu * mu / 2).margin(5 * kl.standard_error));
  }
  SECTION("a model equal to the data density has KL 0") {
    Generator gen(92);
    Tensor x = sample_dataset("8gaussians", 500, gen, DType::Float64);
    Tensor lp = dataset_log_density("8gaussians", x);
    Estimate kl = kl_divergence(lp, lp);
    CHECK(kl.value == 0.0);
    CHECK(kl.standard_error == 0.0);
  }
  SECTION("NLL: mean and standard error of -log p") {
    Estimate nll = negative_log_likelihood(tensor({-1.0, -3.0}));
    CHECK(nll.value == 2.0);
    CHECK(nll.standard_error == Approx(1.0));  // sample variance 2, over n = 2
  }
  REQUIRE_THROWS_WITH(kl_divergence(zeros({3}), zeros({4})), Catch::Contains("kl_divergence") &&
                                                                 Catch::Contains("[3]") &&
                                                                 Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(negative_log_likelihood(zeros({2, 2})), Catch::Contains("[2, 2]"));
}

TEST_CASE("bits per dimension and dequantisation", "[flow][metrics]") {
  CHECK(bits_per_dim(3 * std::log(2.0) * 2, 3) == Approx(2.0));
  // A model uniform on [0, 1]^D has log p = 0; the 8-bit data it implies is
  // uniform over 256^D values: exactly 8 bits per dimension.
  CHECK(bits_per_dim(dequantized_nll(0.0, 3072), 3072) == Approx(8.0));
  // Data rescaled to [-1, 1]: +7 bits (reference 7.4).
  CHECK(bits_per_dim(dequantized_nll(0.0, 3072, 2.0), 3072) == Approx(7.0));
  // In general bits/dim = nll / (D ln 2) + 8 for [0, 1].
  CHECK(bits_per_dim(dequantized_nll(-5000.0, 3072), 3072) ==
        Approx(-5000.0 / (3072 * std::log(2.0)) + 8));
  REQUIRE_THROWS_WITH(bits_per_dim(1.0, 0), Catch::Contains("bits_per_dim"));
  REQUIRE_THROWS_WITH(dequantized_nll(1.0, 2, 0.0), Catch::Contains("scaled_width"));
}
