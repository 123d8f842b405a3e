// Dropout: zeroes random elements while training.
#pragma once

#include "nn/module.h"

namespace tide::nn {

// In training mode each element is kept with probability 1 - p and scaled by
// 1 / (1 - p) (so the expected value is unchanged), with the mask drawn from
// `gen`; in eval mode it is the identity. The generator is held by
// reference and must outlive the module.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  double p() const { return p_; }
  std::string type_name() const override { return "Dropout"; }

 protected:
  std::string extra_repr() const override;

 private:
  double p_;
  Generator* gen_;
};

}  // namespace tide::nn
