#include "nn/activation.h"

#include <fmt/format.h>

#include "autograd/autograd.h"

namespace tide::nn {

Tensor Activation::jvp(const Tensor& x, const Tensor&, const Tensor& tangent) {
  // f is elementwise, so its Jacobian is diag(f'(x)): one reverse pass with
  // cotangent 1 gives f'(x), which then scales every tangent.
  GradModeGuard grad_on(true);
  Tensor leaf = detach(x);
  leaf.set_requires_grad(true);
  Tensor y = forward(leaf);
  Tensor slope = grad({y}, {leaf}, {ones_like(y)})[0];
  return mul(tangent, slope);
}

std::string GELU::extra_repr() const {
  return approximate_ == GeluApproximation::Tanh ? "approximate='tanh'" : "approximate='none'";
}

std::string ELU::extra_repr() const {
  return "alpha=" + repr_float(alpha_);
}

std::string Softplus::extra_repr() const {
  return "beta=" + repr_float(beta_) + ", threshold=" + repr_float(threshold_);
}

std::shared_ptr<Activation> make_activation(const std::string& name) {
  if (name == "relu") return std::make_shared<ReLU>();
  if (name == "silu" || name == "swish") return std::make_shared<SiLU>();
  if (name == "gelu") return std::make_shared<GELU>();
  if (name == "gelu_tanh") return std::make_shared<GELU>(GeluApproximation::Tanh);
  if (name == "selu") return std::make_shared<SELU>();
  if (name == "elu") return std::make_shared<ELU>();
  if (name == "tanh") return std::make_shared<Tanh>();
  if (name == "sigmoid") return std::make_shared<Sigmoid>();
  if (name == "softplus") return std::make_shared<Softplus>();
  fail(
      "make_activation: unknown activation '{}' (expected relu, silu, swish, gelu, gelu_tanh, "
      "selu, elu, tanh, sigmoid or softplus)",
      name);
}

}  // namespace tide::nn
