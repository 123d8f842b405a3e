#include "nn/embedding.h"

#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

namespace tide::nn {

namespace {

// t as a float column [N, 1] (or [1, 1] for a 0-d t), and whether the caller
// gave a 0-d t (whose result drops the batch dim).
std::pair<Tensor, bool> time_column(const Tensor& t, const char* op) {
  TIDE_CHECK(t.defined(), "{}: got an undefined t", op);
  bool scalar_time = t.dim() == 0;
  TIDE_CHECK(scalar_time || t.dim() == 1 || (t.dim() == 2 && t.size(1) == 1),
             "{}: t must be 0-d, [N] or [N, 1], got {}", op, t.describe());
  Tensor column = reshape(t, {-1, 1});
  if (!column.is_floating_point()) column = to(column, DType::Float32);
  return {column, scalar_time};
}

}  // namespace

SinusoidalTimeEmbedding::SinusoidalTimeEmbedding(int64_t dim, double max_period)
    : dim_(dim), max_period_(max_period) {
  TIDE_CHECK(dim >= 2, "SinusoidalTimeEmbedding: dim must be at least 2, got {}", dim);
  TIDE_CHECK(max_period > 0, "SinusoidalTimeEmbedding: max_period must be positive, got {}",
             max_period);
}

Tensor SinusoidalTimeEmbedding::forward(const Tensor& t) {
  auto [column, scalar_time] = time_column(t, "SinusoidalTimeEmbedding");
  int64_t half = dim_ / 2;
  // Frequencies from 1 down to max_period^(-(half-1)/half), in t's dtype.
  Tensor i =
      arange(static_cast<double>(half), {.dtype = column.dtype(), .device = column.device()});
  Tensor freqs = exp(div(mul(i, -std::log(max_period_)), static_cast<double>(half)));
  Tensor args = mul(column, unsqueeze(freqs, 0));  // [N, half]
  std::vector<Tensor> parts = {cos(args), sin(args)};
  if (dim_ % 2 == 1)
    parts.push_back(
        zeros({column.size(0), 1}, {.dtype = column.dtype(), .device = column.device()}));
  Tensor out = cat(parts, 1);
  return scalar_time ? squeeze(out, 0) : out;
}

std::string SinusoidalTimeEmbedding::extra_repr() const {
  return fmt::format("dim={}, max_period={}", dim_, repr_float(max_period_));
}

GaussianFourierFeatures::GaussianFourierFeatures(int64_t dim, double scale, Generator& gen)
    : dim_(dim), scale_(scale) {
  TIDE_CHECK(dim >= 2 && dim % 2 == 0,
             "GaussianFourierFeatures: dim must be even and at least 2, got {}", dim);
  TIDE_CHECK(scale > 0, "GaussianFourierFeatures: scale must be positive, got {}", scale);
  W_ = register_buffer("W", normal({dim / 2}, 0.0, scale, gen));
}

Tensor GaussianFourierFeatures::forward(const Tensor& t) {
  auto [column, scalar_time] = time_column(t, "GaussianFourierFeatures");
  Tensor projection = mul(mul(column, unsqueeze(W_, 0)), 2.0 * std::numbers::pi);  // [N, dim/2]
  Tensor out = cat({sin(projection), cos(projection)}, 1);
  return scalar_time ? squeeze(out, 0) : out;
}

std::string GaussianFourierFeatures::extra_repr() const {
  return fmt::format("dim={}, scale={}", dim_, repr_float(scale_));
}

}  // namespace tide::nn
