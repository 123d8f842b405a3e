#include "nn/linear.h"

#include <cmath>

#include "nn/init.h"

namespace tide::nn {

Linear::Linear(const LinearOptions& options) : in_(options.in), out_(options.out) {
  TIDE_CHECK(in_ > 0 && out_ > 0, "Linear: in and out must be positive, got in={}, out={}", in_,
             out_);
  weight_ = register_parameter("weight", empty({out_, in_}));
  if (options.bias) bias_ = register_parameter("bias", empty({out_}));
  reset_parameters(options.generator ? *options.generator : default_generator());
}

void Linear::reset_parameters(Generator& gen) {
  // PyTorch: kaiming_uniform_(weight, a=sqrt(5)) gives gain sqrt(2 / (1 + 5)) =
  // sqrt(1/3) and bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
  init::kaiming_uniform_(weight_, gen, {.a = std::sqrt(5.0)});
  if (bias_.defined()) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    init::uniform_(bias_, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight_, bias_);
}

Tensor Linear::forward(const Tensor& x, Epilogue activation) {
  return linear(x, weight_, bias_, activation);
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_, out_,
                     bias_.defined() ? "True" : "False");
}

ConcatSquashLinear::ConcatSquashLinear(int64_t in, int64_t out, Generator& gen) {
  // Registration (and drawing) order as in FFJORD: _layer, _hyper_bias, _hyper_gate.
  layer_ = register_module(
      "_layer", std::make_shared<Linear>(LinearOptions{.in = in, .out = out, .generator = &gen}));
  hyper_bias_ =
      register_module("_hyper_bias", std::make_shared<Linear>(LinearOptions{
                                         .in = 1, .out = out, .bias = false, .generator = &gen}));
  hyper_gate_ = register_module("_hyper_gate", std::make_shared<Linear>(LinearOptions{
                                                   .in = 1, .out = out, .generator = &gen}));
}

Tensor ConcatSquashLinear::forward(const Tensor& t, const Tensor& x) {
  TIDE_CHECK(t.defined() && x.defined(), "ConcatSquashLinear: got an undefined input");
  // Bring t to a column [N, 1] (or [1, 1] for one shared time) so that the
  // hyper-networks see one input feature per row.
  Tensor column;
  if (t.numel() == 1) {
    column = reshape(t, {1, 1});
  } else if (t.dim() == 1 || (t.dim() == 2 && t.size(1) == 1)) {
    column = reshape(t, {-1, 1});
  } else {
    fail("ConcatSquashLinear: t must be one time or one time per row ([N] or [N, 1]), got {}",
         t.describe());
  }
  TIDE_CHECK(column.size(0) == 1 || (x.dim() == 2 && x.size(0) == column.size(0)),
             "ConcatSquashLinear: t {} has {} times but x {} has {} rows", t.describe(),
             column.size(0), x.describe(), x.dim() == 2 ? x.size(0) : 1);
  Tensor gate = sigmoid(hyper_gate_->forward(column));
  return add(mul(layer_->forward(x), gate), hyper_bias_->forward(column));
}

}  // namespace tide::nn
