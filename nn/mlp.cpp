#include "nn/mlp.h"

#include "nn/activation.h"
#include "nn/linear.h"

namespace tide::nn {

std::shared_ptr<Sequential> mlp(const MlpOptions& options) {
  TIDE_CHECK(options.in > 0 && options.out > 0 && options.width > 0 && options.hidden_layers >= 0,
             "mlp: need in, out, width > 0 and hidden_layers >= 0, got in={}, out={}, width={}, "
             "hidden_layers={}",
             options.in, options.out, options.width, options.hidden_layers);
  Generator* gen = options.generator ? options.generator : &default_generator();
  auto net = std::make_shared<Sequential>();
  int64_t features = options.in;
  for (int64_t i = 0; i < options.hidden_layers; ++i) {
    net->push_back(std::make_shared<Linear>(
        LinearOptions{.in = features, .out = options.width, .generator = gen}));
    net->push_back(make_activation(options.activation));
    features = options.width;
  }
  net->push_back(std::make_shared<Linear>(
      LinearOptions{.in = features, .out = options.out, .generator = gen}));
  return net;
}

TorchCfmMLP::TorchCfmMLP(const TorchCfmMlpOptions& options) {
  net_ = register_module("net", mlp({.in = options.dim + (options.time_varying ? 1 : 0),
                                     .out = options.out_dim > 0 ? options.out_dim : options.dim,
                                     .width = options.w,
                                     .hidden_layers = 3,
                                     .activation = "selu",
                                     .generator = options.generator}));
}

}  // namespace tide::nn
