// Multi-layer perceptrons: a builder, and torchcfm's 2-D velocity network.
#pragma once

#include <memory>
#include <string>

#include "autograd/anomaly.h"
#include "nn/container.h"

namespace tide::nn {

struct MlpOptions {
  int64_t in = 0;
  int64_t out = 0;
  int64_t width = 64;
  int64_t hidden_layers = 3;        // the number of activations
  std::string activation = "selu";  // a name for make_activation
  Generator* generator = nullptr;   // null: default_generator()
};

// A Sequential of Linear, act, Linear, act, ..., Linear: hidden_layers
// activations, hidden_layers + 1 Linear layers (in -> width -> ... -> out),
// and no activation after the last Linear. With hidden_layers = 0 it is one
// Linear(in, out). Children are indexed 0, 1, 2, ... so for
//   mlp({.in = 3, .out = 2, .width = 64, .hidden_layers = 3, .activation = "selu"})
// the parameters are 0.weight [64, 3], 0.bias, 2.weight [64, 64], 2.bias,
// 4.weight, 4.bias, 6.weight [2, 64], 6.bias: torchcfm's MLP layout.
std::shared_ptr<Sequential> mlp(const MlpOptions& options);

struct TorchCfmMlpOptions {
  int64_t dim = 2;
  int64_t out_dim = 0;  // 0: same as dim
  int64_t w = 64;
  bool time_varying = false;  // true: the input has one extra column (t, last)
  Generator* generator = nullptr;
};

// torchcfm's MLP (atong01/conditional-flow-matching, torchcfm/models/models.py):
// a child "net" = mlp({.in = dim + time_varying, .out = out_dim, .width = w,
// .hidden_layers = 3, .activation = "selu"}), so parameter names are
// "net.0.weight" ... "net.6.bias" and a PyTorch state dict loads by name.
// forward(x) is net(x); the caller appends t as the last column of x.
class TorchCfmMLP : public Module {
 public:
  explicit TorchCfmMLP(const TorchCfmMlpOptions& options);
  Tensor forward(const Tensor& x) override {
    ModuleScope scope("net");  // anomaly messages name "net.2"
    return net_->forward(x);
  }
  const std::shared_ptr<Sequential>& net() const { return net_; }
  std::string type_name() const override { return "MLP"; }

 private:
  std::shared_ptr<Sequential> net_;
};

}  // namespace tide::nn
