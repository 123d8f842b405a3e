// LayerNorm: normalises each sample over its trailing dims.
#pragma once

#include "nn/module.h"

namespace tide::nn {

struct LayerNormOptions {
  Dims normalized_shape;  // the trailing dims to normalise over, e.g. {64}
  double eps = 1e-5;
  bool elementwise_affine = true;  // learnable weight (ones) and bias (zeros)
  bool bias = true;                // the bias, when elementwise_affine
};

// y = (x - mean) / sqrt(var + eps) * weight + bias, with mean and the biased
// variance taken over normalized_shape (torch.nn.LayerNorm; parameter names
// "weight" and "bias", shaped like normalized_shape).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  Tensor forward(const Tensor& x) override;
  const Tensor& weight() const { return weight_; }  // undefined without affine
  const Tensor& bias() const { return bias_; }
  std::string type_name() const override { return "LayerNorm"; }

 protected:
  std::string extra_repr() const override;

 private:
  LayerNormOptions options_;
  Tensor weight_, bias_;
};

}  // namespace tide::nn
