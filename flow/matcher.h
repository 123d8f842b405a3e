// Conditional flow matchers (shared/reference/flow-matching.md, section 4),
// with the semantics of torchcfm (atong01/conditional-flow-matching,
// `torchcfm/conditional_flow_matching.py`).
//
// A matcher turns a source batch x0 and a data batch x1 (both [B, ...]) into
// a training example for the velocity network: it pairs the two batches
// (independently, or through minibatch OT, see flow/ot.h), draws one time
// t ~ U[0, 1) per sample and fresh noise eps ~ N(0, I), and returns
//
//     x_t = mu_t + sigma_t * eps    and the conditional target velocity u_t.
//
// The CFM loss is then mean((v(t, x_t) - u_t)^2) over all B*d elements
// (reference 2.2). Random draws happen in torchcfm's order: the coupling,
// then t, then eps. eps is drawn only when some sigma_t is non-zero.
//
// | matcher  | mu_t                      | sigma_t            | u_t                          |
// |----------|---------------------------|--------------------|------------------------------|
// | I-CFM    | t x1 + (1-t) x0           | sigma              | x1 - x0                      |
// | OT-CFM   | as I-CFM, pairs from the minibatch OT plan                                    |
// | Target   | t x1 (x0 unused: the      | 1 - (1-sigma) t    | (x1 - (1-sigma) x_t)         |
// |          | source is eps)            |                    |   / (1 - (1-sigma) t)        |
// | SB-CFM   | t x1 + (1-t) x0           | sigma sqrt(t(1-t)) | (1-2t)/(2t(1-t) + 1e-8)      |
// |          |                           |                    |   (x_t - mu_t) + x1 - x0     |
// | VP-CFM   | cos(pi t/2) x0            | sigma              | pi/2 (cos(pi t/2) x1         |
// |          |   + sin(pi t/2) x1        |                    |   - sin(pi t/2) x0)          |
// | Path     | alpha_t x1 + sigma_t x0 for any scheduler (flow/path.h), no extra noise     |
//
// Labels: `sample` takes optional labels of the data rows (x1), shape [B, ...],
// and returns them reordered with the rows of x1 that the coupling picked, so
// that each output row keeps its own label (torchcfm's guided variants).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flow/ot.h"
#include "flow/path.h"
#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace tide::flow {

struct MatcherSample {
  Tensor t;       // [B], in x's dtype
  Tensor x_t;     // [B, ...]
  Tensor u_t;     // [B, ...] the regression target
  Tensor x0, x1;  // the coupled endpoints the path was built on
  Tensor noise;   // eps with x_t = mu_t + sigma_t eps; undefined when sigma_t = 0
  Tensor labels;  // the labels of the chosen x1 rows; undefined if none given
};

class Matcher {
 public:
  virtual ~Matcher() = default;

  // The name make_matcher knows it by ("icfm", "otcfm", ...).
  virtual std::string name() const = 0;

  // Couples x0 with x1, draws t and the noise from gen, and returns the sample.
  MatcherSample sample(const Tensor& x0, const Tensor& x1, Generator& gen,
                       const Tensor& labels = {}) const;

  // The deterministic part, for already coupled endpoints, given times t [B]
  // and noise (undefined when uses_noise() is false). torchcfm's sample_xt
  // followed by compute_conditional_flow.
  virtual MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                                  const Tensor& noise) const = 0;

  // Whether sample_at needs eps (some sigma_t is non-zero).
  virtual bool uses_noise() const = 0;

  // The minibatch OT coupling, if this matcher uses one.
  const std::optional<OTCouplingOptions>& coupling() const { return coupling_; }

 protected:
  explicit Matcher(std::optional<OTCouplingOptions> coupling = std::nullopt)
      : coupling_(coupling) {}

 private:
  std::optional<OTCouplingOptions> coupling_;
};

// I-CFM (torchcfm `ConditionalFlowMatcher`): independent pairs, constant sigma.
class ICFM : public Matcher {
 public:
  explicit ICFM(double sigma = 0.0);
  std::string name() const override { return "icfm"; }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override;
  bool uses_noise() const override { return sigma_ != 0.0; }
  double sigma() const { return sigma_; }

 protected:
  ICFM(double sigma, std::optional<OTCouplingOptions> coupling);

 private:
  double sigma_;
};

// OT-CFM (torchcfm `ExactOptimalTransportConditionalFlowMatcher`): the I-CFM
// path on pairs from the minibatch OT plan. The default coupling is torchcfm's:
// exact plan, resampled with replacement.
class OTCFM : public ICFM {
 public:
  explicit OTCFM(double sigma = 0.0, OTCouplingOptions coupling = {});
  std::string name() const override { return "otcfm"; }
};

// Lipman's flow matching (torchcfm `TargetConditionalFlowMatcher`): conditions
// on x1 only; x0 is ignored (its shape is still checked) and the source
// sample is eps, returned as MatcherSample::x0. sigma is Lipman's sigma_min.
class TargetCFM : public Matcher {
 public:
  explicit TargetCFM(double sigma = 0.0);
  std::string name() const override { return "target"; }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override;
  bool uses_noise() const override { return true; }

 private:
  double sigma_;
};

// Schrodinger-bridge CFM (torchcfm `SchrodingerBridgeConditionalFlowMatcher`):
// a Brownian bridge of scale sigma > 0 between OT-coupled pairs. The plan is
// exact (torchcfm's default ot_method) or entropic with epsilon = 2 sigma^2.
class SBCFM : public Matcher {
 public:
  explicit SBCFM(double sigma = 1.0, OTSolver solver = OTSolver::Exact);
  std::string name() const override { return "sbcfm"; }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override;
  bool uses_noise() const override { return true; }

 private:
  double sigma_;
};

// VP-CFM (torchcfm `VariancePreservingConditionalFlowMatcher`, the
// trigonometric interpolant of Albergo et al.): independent pairs.
class VPCFM : public Matcher {
 public:
  explicit VPCFM(double sigma = 0.0);
  std::string name() const override { return "vpcfm"; }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override;
  bool uses_noise() const override { return sigma_ != 0.0; }

 private:
  double sigma_;
};

// Any affine path of flow/path.h (x_t = alpha_t x1 + sigma_t x0, u_t its time
// derivative) as a matcher, with optional minibatch OT coupling: how the
// `--path` choices (vp, cosine, ve, ...) are trained.
class PathMatcher : public Matcher {
 public:
  explicit PathMatcher(std::shared_ptr<const Scheduler> scheduler,
                       std::optional<OTCouplingOptions> coupling = std::nullopt);
  std::string name() const override { return "path:" + path_.scheduler().name(); }
  MatcherSample sample_at(const Tensor& x0, const Tensor& x1, const Tensor& t,
                          const Tensor& noise) const override;
  bool uses_noise() const override { return false; }
  const AffinePath& path() const { return path_; }

 private:
  AffinePath path_;
};

// "icfm", "otcfm", "target", "sbcfm" or "vpcfm" with torchcfm's defaults
// (sigma 0, and 1 for sbcfm) unless sigma is given; other names throw an Error
// that lists these.
std::unique_ptr<Matcher> make_matcher(std::string_view name,
                                      std::optional<double> sigma = std::nullopt);
const std::vector<std::string>& matcher_names();

}  // namespace tide::flow
