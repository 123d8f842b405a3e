// Parameter initialisers, following torch.nn.init.
//
// Each one overwrites a tensor in place (under NoGradGuard, so it works on
// parameters that require grad), draws from an explicit Generator, and returns
// the tensor for chaining. The fan and gain rules are PyTorch's:
//
//   fan_in  = size(1) * receptive field,  fan_out = size(0) * receptive field,
//   where the receptive field is the product of the dims after the first two
//   (1 for a Linear weight [out, in]);
//   xavier_uniform:  U(-b, b),   b   = gain * sqrt(6 / (fan_in + fan_out))
//   xavier_normal:   N(0, s^2),  s   = gain * sqrt(2 / (fan_in + fan_out))
//   kaiming_uniform: U(-b, b),   b   = gain * sqrt(3 / fan)
//   kaiming_normal:  N(0, s^2),  s   = gain / sqrt(fan)
//   with fan = fan_in or fan_out (mode) and gain = calculate_gain(nonlinearity, a).
#pragma once

#include <string>
#include <utility>

#include "autograd/ops.h"

namespace tide::nn::init {

// (fan_in, fan_out) of a weight of rank >= 2; throws for rank < 2.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor);

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain):
// "linear", "conv1d".."conv3d", "sigmoid" -> 1; "tanh" -> 5/3; "relu" -> sqrt(2);
// "leaky_relu" -> sqrt(2 / (1 + param^2)) (param = the negative slope,
// 0.01 by default as in PyTorch); "selu" -> 3/4. Unknown names throw.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

enum class FanMode { FanIn, FanOut };

struct KaimingOptions {
  double a = 0;  // negative slope of the leaky_relu that follows
  FanMode mode = FanMode::FanIn;
  std::string nonlinearity = "leaky_relu";
};

Tensor uniform_(const Tensor& tensor, double low, double high, Generator& gen);
Tensor normal_(const Tensor& tensor, double mean, double std, Generator& gen);
Tensor constant_(const Tensor& tensor, double value);
Tensor zeros_(const Tensor& tensor);
Tensor ones_(const Tensor& tensor);
Tensor xavier_uniform_(const Tensor& tensor, Generator& gen, double gain = 1.0);
Tensor xavier_normal_(const Tensor& tensor, Generator& gen, double gain = 1.0);
// kaiming_uniform_(w, gen, {.a = std::sqrt(5.0)}) is nn.Linear's weight init.
Tensor kaiming_uniform_(const Tensor& tensor, Generator& gen, const KaimingOptions& options = {});
Tensor kaiming_normal_(const Tensor& tensor, Generator& gen, const KaimingOptions& options = {});

}  // namespace tide::nn::init
