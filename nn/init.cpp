#include "nn/init.h"

#include <cmath>

namespace tide::nn::init {

namespace {

void check_floating(const Tensor& tensor, const char* op) {
  TIDE_CHECK(tensor.defined(), "{}: got an undefined tensor", op);
  TIDE_CHECK(tensor.is_floating_point(), "{}: needs a floating-point tensor, got {}", op,
             tensor.describe());
}

// Overwrites `tensor` with `values` (same shape). NoGradGuard: parameters
// require grad, and an initialiser is not part of any graph.
Tensor assign(const Tensor& tensor, const Tensor& values) {
  NoGradGuard no_grad;
  copy_(tensor, values);
  return tensor;
}

TensorOptions like(const Tensor& tensor) {
  return {.dtype = tensor.dtype(), .device = tensor.device()};
}

int64_t fan(const Tensor& tensor, FanMode mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor);
  return mode == FanMode::FanIn ? fan_in : fan_out;
}

}  // namespace

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor) {
  TIDE_CHECK(tensor.defined() && tensor.dim() >= 2,
             "calculate_fan_in_and_fan_out: fans need a tensor of rank >= 2, got {}",
             tensor.defined() ? tensor.describe() : "an undefined tensor");
  int64_t receptive_field = 1;
  for (int i = 2; i < tensor.dim(); ++i) receptive_field *= tensor.size(i);
  return {tensor.size(1) * receptive_field, tensor.size(0) * receptive_field};
}

double calculate_gain(const std::string& nonlinearity, double param) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" ||
      nonlinearity.rfind("conv", 0) == 0)  // conv1d..3d, conv_transpose1d..3d
    return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nonlinearity == "selu") return 3.0 / 4.0;
  fail(
      "calculate_gain: unknown nonlinearity '{}' (expected linear, conv*, sigmoid, tanh, relu, "
      "leaky_relu or selu)",
      nonlinearity);
}

Tensor uniform_(const Tensor& tensor, double low, double high, Generator& gen) {
  check_floating(tensor, "uniform_");
  TIDE_CHECK(low <= high, "uniform_: low ({}) must not exceed high ({})", low, high);
  return assign(tensor, uniform(tensor.shape(), low, high, gen, like(tensor)));
}

Tensor normal_(const Tensor& tensor, double mean, double std, Generator& gen) {
  check_floating(tensor, "normal_");
  TIDE_CHECK(std >= 0, "normal_: std must be non-negative, got {}", std);
  return assign(tensor, normal(tensor.shape(), mean, std, gen, like(tensor)));
}

Tensor constant_(const Tensor& tensor, double value) {
  TIDE_CHECK(tensor.defined(), "constant_: got an undefined tensor");
  NoGradGuard no_grad;
  fill_(tensor, value);
  return tensor;
}

Tensor zeros_(const Tensor& tensor) {
  return constant_(tensor, 0.0);
}
Tensor ones_(const Tensor& tensor) {
  return constant_(tensor, 1.0);
}

Tensor xavier_uniform_(const Tensor& tensor, Generator& gen, double gain) {
  check_floating(tensor, "xavier_uniform_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor);
  if (tensor.numel() == 0) return tensor;
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return uniform_(tensor, -bound, bound, gen);
}

Tensor xavier_normal_(const Tensor& tensor, Generator& gen, double gain) {
  check_floating(tensor, "xavier_normal_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor);
  if (tensor.numel() == 0) return tensor;
  double stddev = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(tensor, 0.0, stddev, gen);
}

Tensor kaiming_uniform_(const Tensor& tensor, Generator& gen, const KaimingOptions& options) {
  check_floating(tensor, "kaiming_uniform_");
  int64_t f = fan(tensor, options.mode);
  if (tensor.numel() == 0) return tensor;  // nothing to draw (and fan may be 0)
  double gain = calculate_gain(options.nonlinearity, options.a);
  // U(-b, b) has variance b^2 / 3, so b = gain * sqrt(3 / fan) gives std gain / sqrt(fan).
  double bound = gain * std::sqrt(3.0 / static_cast<double>(f));
  return uniform_(tensor, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& tensor, Generator& gen, const KaimingOptions& options) {
  check_floating(tensor, "kaiming_normal_");
  int64_t f = fan(tensor, options.mode);
  if (tensor.numel() == 0) return tensor;
  double gain = calculate_gain(options.nonlinearity, options.a);
  return normal_(tensor, 0.0, gain / std::sqrt(static_cast<double>(f)), gen);
}

}  // namespace tide::nn::init
