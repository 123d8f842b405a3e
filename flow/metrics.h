// Evaluation metrics (shared/reference/flow-matching.md, sections 7.4 and 10).
//
// - W2: the exact 2-Wasserstein distance between two equal-size sample sets
//   with uniform weights, sqrt(min over matchings of the mean squared
//   distance), through the exact assignment solver of flow/ot.h.
// - MMD^2 with the Gaussian (RBF) kernel k(x, y) = exp(-|x - y|^2 / (2 h^2)).
// - KL(p_data || p_model), NLL in nats and bits/dim, from log-densities.
//
// Sample sets are tensors [N, ...] (rows are points); everything is computed
// on the host in float64.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace tide::flow {

// A Monte Carlo estimate with its standard error (sample std / sqrt(N)).
struct Estimate {
  double value = 0;
  double standard_error = 0;
};

// Exact W2 between equal-size sets x and y [N, ...].
double wasserstein2(const Tensor& x, const Tensor& y);

struct MMDOptions {
  double bandwidth = 1.0;  // h in exp(-|x - y|^2 / (2 h^2))
  bool unbiased = false;
};

// The squared MMD between sets x [n, ...] and y [m, ...]:
//   biased:   mean K(x, x') + mean K(y, y') - 2 mean K(x, y), all pairs
//             including i = j (a V-statistic, always >= 0, 0 for x = y);
//   unbiased: the same with the i = j terms left out of the first two means
//             (a U-statistic; can be negative; needs n, m >= 2).
double mmd_squared(const Tensor& x, const Tensor& y, const MMDOptions& options = {});

// KL(p_data || p_model) ~ mean_i (log p_data(x_i) - log p_model(x_i)) for
// x_i ~ p_data, given both log-densities at the samples ([N] each).
Estimate kl_divergence(const Tensor& log_p_data, const Tensor& log_p_model);

// Mean negative log-likelihood in nats, -mean log p, from log-densities [N].
Estimate negative_log_likelihood(const Tensor& log_p);

// Nats per example to bits per dimension: nats / (dim ln 2).
double bits_per_dim(double nll_nats, int64_t dim);

// The NLL (nats) of 8-bit data (levels = 256) from the NLL of its uniformly
// dequantised values y = (k + u) / levels, rescaled to an interval of width
// `scaled_width` before the model saw them (1 for [0, 1], 2 for [-1, 1]):
// each of the `dim` coordinates adds log(levels / scaled_width), so in
// bits/dim +8 for data in [0, 1] and +7 for [-1, 1] (reference 7.4).
double dequantized_nll(double nll_nats, int64_t dim, double scaled_width = 1.0,
                       int64_t levels = 256);

}  // namespace tide::flow
