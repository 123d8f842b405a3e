#include "flow/metrics.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "flow/ot.h"

namespace tide::flow {

namespace {

std::string describe(const Tensor& x) {
  return x.defined() ? x.describe() : std::string("an undefined tensor");
}

// Mean and standard error of the mean of values.
Estimate mean_with_error(const std::vector<double>& values) {
  const double n = static_cast<double>(values.size());
  double mean = 0;
  for (double v : values) mean += v;
  mean /= n;
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  double se = values.size() > 1 ? std::sqrt(ss / (n - 1.0) / n) : 0.0;
  return {mean, se};
}

std::vector<double> log_densities(const char* op, const Tensor& log_p, const char* name) {
  TIDE_CHECK(log_p.defined() && log_p.dim() == 1 && log_p.size(0) > 0 && log_p.is_floating_point(),
             "{}: {} must be a non-empty floating tensor [N], got {}", op, name, describe(log_p));
  return log_p.to_vector<double>();
}

}  // namespace

double wasserstein2(const Tensor& x, const Tensor& y) {
  TIDE_CHECK(x.defined() && y.defined() && x.dim() >= 1 && x.shape() == y.shape() && x.size(0) > 0,
             "wasserstein2: needs two non-empty sets of one shape [N, ...], got {} and {}",
             describe(x), describe(y));
  Assignment matching = solve_assignment(squared_distances(x, y));
  return std::sqrt(matching.cost / static_cast<double>(x.size(0)));
}

double mmd_squared(const Tensor& x, const Tensor& y, const MMDOptions& options) {
  TIDE_CHECK(options.bandwidth > 0, "mmd_squared: bandwidth must be positive, got {}",
             options.bandwidth);
  TIDE_CHECK(x.defined() && y.defined() && x.dim() >= 1 && y.dim() >= 1,
             "mmd_squared: needs two sets [n, ...] and [m, ...], got {} and {}", describe(x),
             describe(y));
  const int64_t n = x.size(0), m = y.size(0);
  const int64_t min_size = options.unbiased ? 2 : 1;
  TIDE_CHECK(n >= min_size && m >= min_size,
             "mmd_squared: the {} estimator needs at least {} points per set, got {} and {}",
             options.unbiased ? "unbiased" : "biased", min_size, x.describe(), y.describe());
  const double scale = -1.0 / (2.0 * options.bandwidth * options.bandwidth);
  // Sum of the kernel over all pairs of a squared-distance matrix, optionally
  // without its diagonal (for a set against itself).
  auto kernel_sum = [&](const Tensor& a, const Tensor& b, bool skip_diagonal) {
    std::vector<double> d2 = squared_distances(a, b).to_vector<double>();
    const int64_t rows = a.size(0), cols = b.size(0);
    double s = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        if (!(skip_diagonal && i == j)) s += std::exp(scale * d2[i * cols + j]);
    return s;
  };
  const double dn = static_cast<double>(n), dm = static_cast<double>(m);
  const bool skip = options.unbiased;
  double kxx = kernel_sum(x, x, skip) / (skip ? dn * (dn - 1) : dn * dn);
  double kyy = kernel_sum(y, y, skip) / (skip ? dm * (dm - 1) : dm * dm);
  double kxy = kernel_sum(x, y, false) / (dn * dm);
  return kxx + kyy - 2.0 * kxy;
}

Estimate kl_divergence(const Tensor& log_p_data, const Tensor& log_p_model) {
  std::vector<double> p = log_densities("kl_divergence", log_p_data, "log_p_data");
  std::vector<double> q = log_densities("kl_divergence", log_p_model, "log_p_model");
  TIDE_CHECK(p.size() == q.size(),
             "kl_divergence: log_p_data {} and log_p_model {} have different lengths",
             log_p_data.describe(), log_p_model.describe());
  std::vector<double> diff(p.size());
  for (size_t i = 0; i < p.size(); ++i) diff[i] = p[i] - q[i];
  return mean_with_error(diff);
}

Estimate negative_log_likelihood(const Tensor& log_p) {
  std::vector<double> v = log_densities("negative_log_likelihood", log_p, "log_p");
  for (double& x : v) x = -x;
  return mean_with_error(v);
}

double bits_per_dim(double nll_nats, int64_t dim) {
  TIDE_CHECK(dim > 0, "bits_per_dim: dim must be positive, got {}", dim);
  return nll_nats / (static_cast<double>(dim) * std::numbers::ln2);
}

double dequantized_nll(double nll_nats, int64_t dim, double scaled_width, int64_t levels) {
  TIDE_CHECK(dim > 0 && levels > 0 && scaled_width > 0,
             "dequantized_nll: dim ({}), levels ({}) and scaled_width ({}) must be positive", dim,
             levels, scaled_width);
  return nll_nats + static_cast<double>(dim) * std::log(static_cast<double>(levels) / scaled_width);
}

}  // namespace tide::flow
