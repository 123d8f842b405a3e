// Affine layers: Linear, and FFJORD's time-conditioned ConcatSquashLinear.
#pragma once

#include "nn/module.h"

namespace tide::nn {

struct LinearOptions {
  int64_t in = 0;   // in_features
  int64_t out = 0;  // out_features
  bool bias = true;
  Generator* generator = nullptr;  // for the initial values; null: default_generator()
};

// y = x W^T + b, with weight W stored [out, in] and bias b [out] (PyTorch's
// layout, so state dicts load by name). Initialised like torch.nn.Linear:
// W and b both ~ U(-1/sqrt(in), +1/sqrt(in)).
//   auto layer = std::make_shared<Linear>(LinearOptions{.in = 3, .out = 64, .generator = &gen});
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);

  // x [..., in] -> [..., out].
  Tensor forward(const Tensor& x) override;
  // forward followed by an activation, fused into the matmul (one kernel, and
  // a backward that reads only the output). Sequential uses this.
  Tensor forward(const Tensor& x, Epilogue activation);
  using Module::operator();

  // Draws new initial values (PyTorch's reset_parameters).
  void reset_parameters(Generator& gen);

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  std::string type_name() const override { return "Linear"; }

 protected:
  std::string extra_repr() const override;

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

// FFJORD's ConcatSquashLinear (rtqichen/ffjord, lib/layers/diffeq_layers/basic.py):
//   out = _layer(x) * sigmoid(_hyper_gate(t)) + _hyper_bias(t)
//       = (W x + b) * sigmoid(W_g t + b_g) + W_b t,
// where _hyper_gate and _hyper_bias are Linear(1, out) and _hyper_bias has no
// bias. The children carry FFJORD's names, so parameter names are
// "_layer.weight", "_layer.bias", "_hyper_bias.weight", "_hyper_gate.weight",
// "_hyper_gate.bias".
class ConcatSquashLinear : public Module {
 public:
  ConcatSquashLinear(int64_t in, int64_t out, Generator& gen = default_generator());

  // FFJORD's argument order: time first. t is a single time (0-d or one
  // element), shared by the batch, or one time per row ([N] or [N, 1]);
  // x is [N, in] (or [in]). Returns [N, out].
  Tensor forward(const Tensor& t, const Tensor& x);
  Tensor operator()(const Tensor& t, const Tensor& x) { return forward(t, x); }
  using Module::forward;
  using Module::operator();

  const std::shared_ptr<Linear>& layer() const { return layer_; }
  const std::shared_ptr<Linear>& hyper_bias() const { return hyper_bias_; }
  const std::shared_ptr<Linear>& hyper_gate() const { return hyper_gate_; }
  std::string type_name() const override { return "ConcatSquashLinear"; }

 private:
  std::shared_ptr<Linear> layer_, hyper_bias_, hyper_gate_;
};

}  // namespace tide::nn
