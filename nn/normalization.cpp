#include "nn/normalization.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace tide::nn {

LayerNorm::LayerNorm(const LayerNormOptions& options) : options_(options) {
  TIDE_CHECK(!options.normalized_shape.empty(), "LayerNorm: normalized_shape must not be empty");
  for (int64_t d : options.normalized_shape)
    TIDE_CHECK(d > 0, "LayerNorm: normalized_shape [{}] has a non-positive size",
               fmt::join(options.normalized_shape, ", "));
  TIDE_CHECK(options.eps >= 0, "LayerNorm: eps must be non-negative, got {}", options.eps);
  Shape shape(options.normalized_shape);
  if (options.elementwise_affine) {
    weight_ = register_parameter("weight", ones(shape));
    if (options.bias) bias_ = register_parameter("bias", zeros(shape));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  return layer_norm(x, options_.normalized_shape, weight_, bias_, options_.eps);
}

std::string LayerNorm::extra_repr() const {
  // PyTorch prints the shape as a Python tuple: "(64,)".
  const Dims& dims = options_.normalized_shape;
  std::string shape =
      dims.size() == 1 ? fmt::format("({},)", dims[0]) : fmt::format("({})", fmt::join(dims, ", "));
  return fmt::format("{}, eps={}, elementwise_affine={}", shape, repr_float(options_.eps),
                     options_.elementwise_affine ? "True" : "False");
}

}  // namespace tide::nn
