#include "nn/dropout.h"

namespace tide::nn {

Dropout::Dropout(double p, Generator& gen) : p_(p), gen_(&gen) {
  TIDE_CHECK(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got {}", p);
}

Tensor Dropout::forward(const Tensor& x) {
  TIDE_CHECK(x.defined() && x.is_floating_point(), "Dropout: needs a floating-point input, got {}",
             x.defined() ? x.describe() : "an undefined tensor");
  if (!is_training() || p_ == 0) return x;
  if (p_ == 1) return mul(x, 0.0);  // everything dropped (keeps the graph)
  // The mask is a constant: gradients flow to x only, through the same mask.
  Tensor keep = bernoulli(x.shape(), 1.0 - p_, *gen_, {.dtype = x.dtype(), .device = x.device()});
  return mul(x, mul(keep, 1.0 / (1.0 - p_)));
}

std::string Dropout::extra_repr() const {
  return "p=" + repr_float(p_) + ", inplace=False";
}

}  // namespace tide::nn
