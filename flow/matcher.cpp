#include "flow/matcher.h"

#include <fmt/ranges.h>

#include <cmath>
#include <numbers>

#include "autograd/ops.h"

namespace tide::flow {

namespace {

using std::numbers::pi;

std::string describe(const Tensor& x) {
  return x.defined() ? x.describe() : std::string("an undefined tensor");
}

// x0 and x1: floating, one shape [B, ...] with B > 0, one dtype and device.
void check_endpoints(const std::string& op, const Tensor& x0, const Tensor& x1) {
  TIDE_CHECK(
      x0.defined() && x1.defined() && x0.is_floating_point() && x0.dim() >= 1 &&
          x0.shape() == x1.shape() && x0.dtype() == x1.dtype(),
      "{}: x0 and x1 must be floating tensors of one shape [B, ...] and dtype, got {} and {}", op,
      describe(x0), describe(x1));
  TIDE_CHECK(x0.device() == x1.device(), "{}: x0 is on {} but x1 on {}", op, x0.device(),
             x1.device());
  TIDE_CHECK(x0.size(0) > 0, "{}: the batches {} are empty", op, x0.describe());
}

void check_times_and_noise(const std::string& op, const Tensor& x0, const Tensor& t,
                           const Tensor& noise, bool uses_noise) {
  TIDE_CHECK(t.defined() && t.is_floating_point() && t.dim() == 1 && t.size(0) == x0.size(0),
             "{}: t must be a floating tensor [B] with B = {}, got {}", op, x0.size(0),
             describe(t));
  if (uses_noise)
    TIDE_CHECK(noise.defined() && noise.shape() == x0.shape() && noise.is_floating_point(),
               "{}: noise must be a floating tensor of the shape of x0 {}, got {}", op,
               x0.describe(), describe(noise));
}

// t [B] as [B, 1, ..., 1] in x's dtype, to broadcast over each sample.
Tensor per_sample(const Tensor& t, const Tensor& x) {
  std::vector<int64_t> dims(static_cast<size_t>(x.dim()), 1);
  dims[0] = x.size(0);
  Tensor col = reshape(t, dims);
  return col.dtype() == x.dtype() ? col : to(col, x.dtype());
}

void check_sigma(const char* op, double sigma) {
  TIDE_CHECK(std::isfinite(sigma) && sigma >= 0, "{}: sigma must be finite and >= 0, got {}", op,
             sigma);
}

}  // namespace

// ---------------------------------------------------------------------------
// Matcher
// ---------------------------------------------------------------------------

MatcherSample Matcher::sample(const Tensor& x0, const Tensor& x1, Generator& gen,
                              const Tensor& labels) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  const int64_t batch = x0.size(0);
  if (labels.defined())
    TIDE_CHECK(labels.dim() >= 1 && labels.size(0) == batch,
               "{}: labels {} do not have one row per sample of x1 {}", op, labels.describe(),
               x1.describe());

  Tensor source = x0, target = x1, chosen_labels = labels;
  if (coupling_) {
    Coupling pairs = ot_coupling(x0, x1, *coupling_, gen);
    Tensor i = to(pairs.source_index, x0.device());
    Tensor j = to(pairs.target_index, x0.device());
    source = index_select(x0, 0, i);
    target = index_select(x1, 0, j);
    // Labels belong to the data rows, so they follow the target index.
    if (labels.defined()) chosen_labels = index_select(labels, 0, to(j, labels.device()));
  }
  TensorOptions options{.dtype = x0.dtype(), .device = x0.device()};
  Tensor t = rand({batch}, gen, options);
  Tensor noise = uses_noise() ? randn(x0.shape(), gen, options) : Tensor();
  MatcherSample out = sample_at(source, target, t, noise);
  out.labels = chosen_labels;
  return out;
}

// ---------------------------------------------------------------------------
// I-CFM and OT-CFM
// ---------------------------------------------------------------------------

ICFM::ICFM(double sigma) : ICFM(sigma, std::nullopt) {}

ICFM::ICFM(double sigma, std::optional<OTCouplingOptions> coupling)
    : Matcher(coupling), sigma_(sigma) {
  check_sigma("icfm", sigma);
}

MatcherSample ICFM::sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                              const Tensor& noise) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  check_times_and_noise(op, x0, t, noise, uses_noise());
  Tensor u = sub(x1, x0);
  Tensor x_t = add(x0, mul(per_sample(t, x0), u));  // t x1 + (1 - t) x0
  if (uses_noise()) x_t = add(x_t, mul(noise, sigma_));
  return {.t = t, .x_t = x_t, .u_t = u, .x0 = x0, .x1 = x1, .noise = noise, .labels = {}};
}

OTCFM::OTCFM(double sigma, OTCouplingOptions coupling) : ICFM(sigma, coupling) {}

// ---------------------------------------------------------------------------
// Target CFM (Lipman et al.)
// ---------------------------------------------------------------------------

TargetCFM::TargetCFM(double sigma) : sigma_(sigma) {
  TIDE_CHECK(std::isfinite(sigma) && sigma >= 0 && sigma < 1,
             "target matcher: sigma (Lipman's sigma_min) must be in [0, 1), got {}", sigma);
}

MatcherSample TargetCFM::sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                                   const Tensor& noise) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  check_times_and_noise(op, x0, t, noise, true);
  const double k = 1.0 - sigma_;
  Tensor tb = per_sample(t, x1);
  Tensor sigma_t = sub(1.0, mul(tb, k));
  Tensor x_t = add(mul(tb, x1), mul(sigma_t, noise));
  Tensor u = div(sub(x1, mul(x_t, k)), sigma_t);
  // The source sample of this path is the noise itself.
  return {.t = t, .x_t = x_t, .u_t = u, .x0 = noise, .x1 = x1, .noise = noise, .labels = {}};
}

// ---------------------------------------------------------------------------
// Schrodinger-bridge CFM
// ---------------------------------------------------------------------------

namespace {
OTCouplingOptions sb_coupling(double sigma, OTSolver solver) {
  OTCouplingOptions options;
  options.solver = solver;
  options.mode = CouplingMode::PlanResample;
  options.sinkhorn.epsilon = 2.0 * sigma * sigma;  // torchcfm: reg = 2 sigma^2
  return options;
}
}  // namespace

SBCFM::SBCFM(double sigma, OTSolver solver) : Matcher(sb_coupling(sigma, solver)), sigma_(sigma) {
  TIDE_CHECK(std::isfinite(sigma) && sigma > 0, "sbcfm matcher: sigma must be > 0, got {}", sigma);
}

MatcherSample SBCFM::sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                               const Tensor& noise) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  check_times_and_noise(op, x0, t, noise, true);
  Tensor tb = per_sample(t, x0);
  Tensor straight = sub(x1, x0);
  Tensor mu = add(x0, mul(tb, straight));
  Tensor t_one_minus_t = mul(tb, sub(1.0, tb));
  Tensor sigma_t = mul(sqrt(t_one_minus_t), sigma_);
  Tensor deviation = mul(sigma_t, noise);  // x_t - mu_t
  Tensor x_t = add(mu, deviation);
  // sigma_t' / sigma_t, guarded at t = 0 and t = 1 as in torchcfm.
  Tensor ratio = div(sub(1.0, mul(tb, 2.0)), add(mul(t_one_minus_t, 2.0), 1e-8));
  Tensor u = add(mul(ratio, deviation), straight);
  return {.t = t, .x_t = x_t, .u_t = u, .x0 = x0, .x1 = x1, .noise = noise, .labels = {}};
}

// ---------------------------------------------------------------------------
// VP-CFM
// ---------------------------------------------------------------------------

VPCFM::VPCFM(double sigma) : sigma_(sigma) {
  check_sigma("vpcfm", sigma);
}

MatcherSample VPCFM::sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                               const Tensor& noise) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  check_times_and_noise(op, x0, t, noise, uses_noise());
  Tensor angle = mul(per_sample(t, x0), 0.5 * pi);
  Tensor c = cos(angle), s = sin(angle);
  Tensor x_t = add(mul(c, x0), mul(s, x1));
  if (uses_noise()) x_t = add(x_t, mul(noise, sigma_));
  Tensor u = mul(sub(mul(c, x1), mul(s, x0)), 0.5 * pi);
  return {.t = t, .x_t = x_t, .u_t = u, .x0 = x0, .x1 = x1, .noise = noise, .labels = {}};
}

// ---------------------------------------------------------------------------
// Any affine path
// ---------------------------------------------------------------------------

PathMatcher::PathMatcher(std::shared_ptr<const Scheduler> scheduler,
                         std::optional<OTCouplingOptions> coupling)
    : Matcher(coupling), path_(std::move(scheduler)) {}

MatcherSample PathMatcher::sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                                     const Tensor& noise) const {
  const std::string op = name() + " matcher";
  check_endpoints(op, x0, x1);
  check_times_and_noise(op, x0, t, noise, false);
  PathSample s = path_.sample(x0, x1, t);
  return {.t = t, .x_t = s.x_t, .u_t = s.u_t, .x0 = x0, .x1 = x1, .noise = noise, .labels = {}};
}

// ---------------------------------------------------------------------------
// Factory
// ---------------------------------------------------------------------------

const std::vector<std::string>& matcher_names() {
  static const std::vector<std::string> names = {"icfm", "otcfm", "target", "sbcfm", "vpcfm"};
  return names;
}

std::unique_ptr<Matcher> make_matcher(std::string_view name, std::optional<double> sigma) {
  if (name == "icfm") return std::make_unique<ICFM>(sigma.value_or(0.0));
  if (name == "otcfm") return std::make_unique<OTCFM>(sigma.value_or(0.0));
  if (name == "target") return std::make_unique<TargetCFM>(sigma.value_or(0.0));
  if (name == "sbcfm") return std::make_unique<SBCFM>(sigma.value_or(1.0));
  if (name == "vpcfm") return std::make_unique<VPCFM>(sigma.value_or(0.0));
  fail("make_matcher: unknown matcher '{}'; valid names are {}", name,
       fmt::join(matcher_names(), ", "));
}

}  // namespace tide::flow
