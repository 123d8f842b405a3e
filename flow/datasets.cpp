#include "flow/datasets.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>

#include "tensor/creation.h"

namespace tide::flow {

namespace {

using std::numbers::pi;

// Random draws from the generator, as host vectors.
class Draws {
 public:
  explicit Draws(Generator& gen) : gen_(gen) {}
  std::vector<double> uniform(int64_t n) {  // U[0, 1)
    return rand({n}, gen_, {.dtype = DType::Float64}).to_vector<double>();
  }
  std::vector<double> normal(int64_t n) {  // N(0, 1)
    return randn({n}, gen_, {.dtype = DType::Float64}).to_vector<double>();
  }
  std::vector<int64_t> integers(int64_t n, int64_t high) {  // uniform on 0 .. high-1
    return randint(0, high, {n}, gen_).to_vector<int64_t>();
  }
  std::vector<int64_t> permutation(int64_t n) { return randperm(n, gen_).to_vector<int64_t>(); }

 private:
  Generator& gen_;
};

// 2-D points, row-major: x of point i at [2i], y at [2i + 1].
using Points = std::vector<double>;

int64_t count(const Points& p) {
  return static_cast<int64_t>(p.size() / 2);
}

// numpy.linspace(start, stop, k, endpoint).
std::vector<double> linspace(double start, double stop, int64_t k, bool endpoint) {
  std::vector<double> out(static_cast<size_t>(k));
  int64_t intervals = endpoint ? k - 1 : k;
  double step = intervals > 0 ? (stop - start) / static_cast<double>(intervals) : 0.0;
  for (int64_t i = 0; i < k; ++i) out[i] = start + step * static_cast<double>(i);
  if (endpoint && k > 1) out.back() = stop;
  return out;
}

void shuffle_rows(Points& p, Draws& draws) {
  std::vector<int64_t> perm = draws.permutation(count(p));
  Points out(p.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    out[2 * i] = p[2 * perm[i]];
    out[2 * i + 1] = p[2 * perm[i] + 1];
  }
  p = std::move(out);
}

void add_gaussian_noise(Points& p, double noise_std, Draws& draws) {
  std::vector<double> noise = draws.normal(static_cast<int64_t>(p.size()));
  for (size_t k = 0; k < p.size(); ++k) p[k] += noise_std * noise[k];
}

void scale(Points& p, double factor) {
  for (double& v : p) v *= factor;
}

// Points on a circle of the given radius at k angles linspace(0, 2 pi, k,
// endpoint excluded), appended to p.
void append_circle(Points& p, double radius, int64_t k) {
  for (double a : linspace(0, 2 * pi, k, false)) {
    p.push_back(radius * std::cos(a));
    p.push_back(radius * std::sin(a));
  }
}

// sklearn make_moons without noise or shuffle: n / 2 points on the outer arc
// (cos th, sin th), the rest on the inner arc (1 - cos th, 0.5 - sin th), th =
// linspace(0, pi, k) with the endpoint.
Points two_arcs(int64_t n) {
  int64_t n_out = n / 2, n_in = n - n_out;
  Points p;
  p.reserve(2 * n);
  for (double th : linspace(0, pi, n_out, true)) {
    p.push_back(std::cos(th));
    p.push_back(std::sin(th));
  }
  for (double th : linspace(0, pi, n_in, true)) {
    p.push_back(1.0 - std::cos(th));
    p.push_back(1.0 - std::sin(th) - 0.5);
  }
  return p;
}

// The eight unit directions of both libraries' 8gaussians, in their order.
const std::array<std::pair<double, double>, 8>& eight_directions() {
  static const double s = 1.0 / std::sqrt(2.0);
  static const std::array<std::pair<double, double>, 8> dirs = {
      {{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {s, s}, {s, -s}, {-s, s}, {-s, -s}}};
  return dirs;
}

// --- FFJORD (lib/toy_data.py) -----------------------------------------------

Points swissroll(int64_t n, Draws& draws) {
  // sklearn make_swiss_roll(n, noise=1.0): s = 1.5 pi (1 + 2U), point
  // (s cos s, 21 U, s sin s) + N on each coordinate; keep x and z, divide by 5.
  // (The discarded middle coordinate is not drawn.)
  std::vector<double> u = draws.uniform(n);
  std::vector<double> noise = draws.normal(2 * n);
  Points p(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    double s = 1.5 * pi * (1.0 + 2.0 * u[i]);
    p[2 * i] = (s * std::cos(s) + noise[2 * i]) / 5.0;
    p[2 * i + 1] = (s * std::sin(s) + noise[2 * i + 1]) / 5.0;
  }
  return p;
}

Points circles(int64_t n, Draws& draws) {
  // sklearn make_circles(n, factor=0.5, noise=0.08), then x 3.
  int64_t n_out = n / 2, n_in = n - n_out;
  Points p;
  p.reserve(2 * n);
  append_circle(p, 1.0, n_out);
  append_circle(p, 0.5, n_in);
  shuffle_rows(p, draws);
  add_gaussian_noise(p, 0.08, draws);
  scale(p, 3.0);
  return p;
}

Points rings(int64_t n, Draws& draws) {
  int64_t quarter = n / 4, rest = n - 3 * quarter;
  Points p;
  p.reserve(2 * n);
  append_circle(p, 1.0, quarter);
  append_circle(p, 0.75, quarter);
  append_circle(p, 0.5, quarter);
  append_circle(p, 0.25, rest);
  scale(p, 3.0);
  shuffle_rows(p, draws);
  add_gaussian_noise(p, 0.08, draws);  // after the x 3: std 0.08
  return p;
}

Points moons(int64_t n, Draws& draws) {
  // sklearn make_moons(n, noise=0.1) (shuffled, then noise), then x 2 + (-1, -0.2).
  Points p = two_arcs(n);
  shuffle_rows(p, draws);
  add_gaussian_noise(p, 0.1, draws);
  for (int64_t i = 0; i < count(p); ++i) {
    p[2 * i] = 2.0 * p[2 * i] - 1.0;
    p[2 * i + 1] = 2.0 * p[2 * i + 1] - 0.2;
  }
  return p;
}

Points eight_gaussians(int64_t n, Draws& draws) {
  // 0.5 N + 4 * (a random direction), then divide by the literal 1.414.
  std::vector<double> noise = draws.normal(2 * n);
  std::vector<int64_t> which = draws.integers(n, 8);
  Points p(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    auto [cx, cy] = eight_directions()[which[i]];
    p[2 * i] = (0.5 * noise[2 * i] + 4.0 * cx) / 1.414;
    p[2 * i + 1] = (0.5 * noise[2 * i + 1] + 4.0 * cy) / 1.414;
  }
  return p;
}

Points pinwheel(int64_t n, Draws& draws) {
  const int64_t classes = 5, per_class = n / classes, total = classes * per_class;
  const double radial_std = 0.3, tangential_std = 0.1, rate = 0.25;
  std::vector<double> features = draws.normal(2 * total);
  Points p(2 * total);
  for (int64_t i = 0; i < total; ++i) {
    double r = 1.0 + radial_std * features[2 * i];
    double tau = tangential_std * features[2 * i + 1];
    int64_t label = i / per_class;  // classes in blocks
    double a = 2.0 * pi * static_cast<double>(label) / classes + rate * std::exp(r);
    p[2 * i] = r * std::cos(a) + tau * std::sin(a);
    p[2 * i + 1] = -r * std::sin(a) + tau * std::cos(a);
  }
  shuffle_rows(p, draws);
  scale(p, 2.0);
  return p;
}

Points two_spirals(int64_t n, Draws& draws) {
  const int64_t m = n / 2;
  std::vector<double> u = draws.uniform(m);
  std::vector<double> jitter_x = draws.uniform(m);
  std::vector<double> jitter_y = draws.uniform(m);
  Points p(4 * m);
  for (int64_t i = 0; i < m; ++i) {
    double s = std::sqrt(u[i]) * 3.0 * pi;  // 540 degrees
    double a = -std::cos(s) * s + 0.5 * jitter_x[i];
    double b = std::sin(s) * s + 0.5 * jitter_y[i];
    p[2 * i] = a / 3.0;  // first spiral, then its mirror image; not shuffled
    p[2 * i + 1] = b / 3.0;
    p[2 * (m + i)] = -a / 3.0;
    p[2 * (m + i) + 1] = -b / 3.0;
  }
  add_gaussian_noise(p, 0.1, draws);
  return p;
}

// numpy's floored modulo: the result has the sign of the divisor.
int64_t floored_mod(int64_t k, int64_t m) {
  return ((k % m) + m) % m;
}

Points checkerboard(int64_t n, Draws& draws) {
  std::vector<double> u1 = draws.uniform(n);
  std::vector<double> u2 = draws.uniform(n);
  std::vector<int64_t> bit = draws.integers(n, 2);
  Points p(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    double x1 = 4.0 * u1[i] - 2.0;
    auto column = static_cast<int64_t>(std::floor(x1));
    double x2 =
        u2[i] - 2.0 * static_cast<double>(bit[i]) + static_cast<double>(floored_mod(column, 2));
    p[2 * i] = 2.0 * x1;
    p[2 * i + 1] = 2.0 * x2;
  }
  return p;
}

// --- torchcfm (torchcfm/utils.py) ---------------------------------------------

// torchcfm's covariance argument is sqrt(0.1) I, so this is the variance.
const double kCfmVariance = std::sqrt(0.1);

Points cfm_eight_gaussians(int64_t n, Draws& draws) {
  std::vector<double> noise = draws.normal(2 * n);
  std::vector<int64_t> which = draws.integers(n, 8);
  const double noise_std = std::sqrt(kCfmVariance);  // 0.1^(1/4)
  Points p(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    auto [cx, cy] = eight_directions()[which[i]];
    p[2 * i] = 5.0 * cx + noise_std * noise[2 * i];
    p[2 * i + 1] = 5.0 * cy + noise_std * noise[2 * i + 1];
  }
  return p;
}

Points cfm_moons(int64_t n, Draws& draws) {
  // torchdyn generate_moons(n, noise=0.2): one U * 0.2 per point added to both
  // coordinates; no shuffle (the outer moon comes first). Then x 3 - 1.
  Points p = two_arcs(n);
  std::vector<double> shift = draws.uniform(n);
  for (int64_t i = 0; i < n; ++i) {
    p[2 * i] = 3.0 * (p[2 * i] + 0.2 * shift[i]) - 1.0;
    p[2 * i + 1] = 3.0 * (p[2 * i + 1] + 0.2 * shift[i]) - 1.0;
  }
  return p;
}

using Recipe = Points (*)(int64_t, Draws&);

const std::vector<std::pair<std::string, Recipe>>& recipes() {
  static const std::vector<std::pair<std::string, Recipe>> table = {
      {"swissroll", swissroll},
      {"circles", circles},
      {"rings", rings},
      {"moons", moons},
      {"8gaussians", eight_gaussians},
      {"pinwheel", pinwheel},
      {"2spirals", two_spirals},
      {"checkerboard", checkerboard},
      {"cfm-8gaussians", cfm_eight_gaussians},
      {"cfm-moons", cfm_moons}};
  return table;
}

[[noreturn]] void unknown_name(const char* op, std::string_view name) {
  fail("{}: unknown dataset '{}'; valid names are {}", op, name, fmt::join(dataset_names(), ", "));
}

// log of an equal-weight mixture of 8 isotropic Gaussians with the given
// centres (radius * direction) and per-coordinate variance.
double mixture_log_density(double x, double y, double radius, double variance) {
  std::array<double, 8> terms;
  for (size_t k = 0; k < 8; ++k) {
    auto [cx, cy] = eight_directions()[k];
    double dx = x - radius * cx, dy = y - radius * cy;
    terms[k] = -(dx * dx + dy * dy) / (2.0 * variance);
  }
  double top = *std::max_element(terms.begin(), terms.end());
  double s = 0;
  for (double v : terms) s += std::exp(v - top);
  return std::log(s / 8.0) + top - std::log(2.0 * pi * variance);
}

// log(1/32) on the 8 squares of side 2 where floor(x/2) + floor(y/2) is even,
// inside [-4, 4)^2; -inf elsewhere.
double checkerboard_log_density(double x, double y) {
  double a = std::floor(x / 2.0), b = std::floor(y / 2.0);
  bool inside =
      a >= -2 && a <= 1 && b >= -2 && b <= 1 && floored_mod(static_cast<int64_t>(a + b), 2) == 0;
  return inside ? -std::log(32.0) : -std::numeric_limits<double>::infinity();
}

}  // namespace

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& [name, recipe] : recipes()) out.push_back(name);
    return out;
  }();
  return names;
}

Tensor sample_dataset(std::string_view name, int64_t n, Generator& gen, DType dtype) {
  TIDE_CHECK(n >= 0, "sample_dataset: n must be non-negative, got {} for '{}'", n, name);
  TIDE_CHECK(is_floating(dtype), "sample_dataset: dtype must be floating, got {}", dtype);
  for (const auto& [known, recipe] : recipes()) {
    if (known != name) continue;
    Draws draws(gen);
    Points p = recipe(n, draws);
    return from_vector(p, {count(p), 2}, {.dtype = dtype});
  }
  unknown_name("sample_dataset", name);
}

bool has_log_density(std::string_view name) {
  bool known = std::any_of(recipes().begin(), recipes().end(),
                           [&](const auto& entry) { return entry.first == name; });
  if (!known) unknown_name("has_log_density", name);
  return name == "8gaussians" || name == "cfm-8gaussians" || name == "checkerboard";
}

Tensor dataset_log_density(std::string_view name, const Tensor& x) {
  TIDE_CHECK(has_log_density(name),
             "dataset_log_density: '{}' has no closed-form density (only 8gaussians, "
             "cfm-8gaussians and checkerboard do)",
             name);
  TIDE_CHECK(x.defined() && x.dim() == 2 && x.size(1) == 2 && x.dtype() != DType::Bool,
             "dataset_log_density: points must be a numeric [N, 2] tensor, got {}",
             x.defined() ? x.describe() : std::string("an undefined tensor"));
  std::vector<double> p = x.to_vector<double>();
  std::vector<double> out(static_cast<size_t>(x.size(0)));
  for (size_t i = 0; i < out.size(); ++i) {
    double px = p[2 * i], py = p[2 * i + 1];
    if (name == "8gaussians") {
      // Centres 4 d / 1.414 and std 0.5 / 1.414 (everything was divided by 1.414).
      double component_std = 0.5 / 1.414;
      out[i] = mixture_log_density(px, py, 4.0 / 1.414, component_std * component_std);
    } else if (name == "cfm-8gaussians") {
      out[i] = mixture_log_density(px, py, 5.0, kCfmVariance);
    } else {
      out[i] = checkerboard_log_density(px, py);
    }
  }
  return from_vector(out, {x.size(0)});
}

}  // namespace tide::flow
