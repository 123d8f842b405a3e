// Activation functions as modules, so that they can sit in a Sequential
// between Linear layers (they have no parameters). Each forwards to the
// differentiable op of the same name in autograd/ops.h.
#pragma once

#include <memory>
#include <string>

#include "nn/module.h"

namespace tide::nn {

// The base of the activation modules. An activation that a matmul can apply
// to its own output (see Epilogue in backends/backend.h) says which one, so
// that Sequential can fuse "Linear, activation" into a single linear() call.
class Activation : public Module {
 public:
  virtual Epilogue epilogue() const { return Epilogue::None; }
  // Forward-mode derivative: tangent * f'(x), given x and y = forward(x).
  // tangent may have extra leading dims over x (several tangents at once).
  // The default differentiates forward() by one reverse pass, so any custom
  // activation works; the built-in ones use their fused derivative kernel.
  virtual Tensor jvp(const Tensor& x, const Tensor& y, const Tensor& tangent);
};

class ReLU : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  Tensor jvp(const Tensor& x, const Tensor&, const Tensor& tangent) override {
    return relu_grad(tangent, x);
  }
  std::string type_name() const override { return "ReLU"; }
  Epilogue epilogue() const override { return Epilogue::Relu; }
};

// x * sigmoid(x), also called Swish.
class SiLU : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return silu(x); }
  Tensor jvp(const Tensor& x, const Tensor&, const Tensor& tangent) override {
    return silu_grad(tangent, x);
  }
  std::string type_name() const override { return "SiLU"; }
};

class GELU : public Activation {
 public:
  explicit GELU(GeluApproximation approximate = GeluApproximation::None)
      : approximate_(approximate) {}
  Tensor forward(const Tensor& x) override { return gelu(x, approximate_); }
  Tensor jvp(const Tensor& x, const Tensor&, const Tensor& tangent) override {
    return gelu_grad(tangent, x, approximate_);
  }
  std::string type_name() const override { return "GELU"; }
  GeluApproximation approximate() const { return approximate_; }

 protected:
  std::string extra_repr() const override;

 private:
  GeluApproximation approximate_;
};

// scale * (x > 0 ? x : alpha * (exp(x) - 1)), with the self-normalising
// constants alpha = 1.6732632423543772, scale = 1.0507009873554805.
class SELU : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return selu(x); }
  Tensor jvp(const Tensor&, const Tensor& y, const Tensor& tangent) override {
    return epilogue_grad(Epilogue::Selu, tangent, y);
  }
  std::string type_name() const override { return "SELU"; }
  Epilogue epilogue() const override { return Epilogue::Selu; }
};

class ELU : public Activation {
 public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  Tensor forward(const Tensor& x) override { return elu(x, alpha_); }
  Tensor jvp(const Tensor& x, const Tensor&, const Tensor& tangent) override {
    return elu_grad(tangent, x, alpha_);
  }
  std::string type_name() const override { return "ELU"; }
  double alpha() const { return alpha_; }

 protected:
  std::string extra_repr() const override;

 private:
  double alpha_;
};

class Tanh : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  Tensor jvp(const Tensor&, const Tensor& y, const Tensor& tangent) override {
    return epilogue_grad(Epilogue::Tanh, tangent, y);
  }
  std::string type_name() const override { return "Tanh"; }
  Epilogue epilogue() const override { return Epilogue::Tanh; }
};

class Sigmoid : public Activation {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  Tensor jvp(const Tensor&, const Tensor& y, const Tensor& tangent) override {
    return epilogue_grad(Epilogue::Sigmoid, tangent, y);
  }
  std::string type_name() const override { return "Sigmoid"; }
  Epilogue epilogue() const override { return Epilogue::Sigmoid; }
};

// log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold.
class Softplus : public Activation {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0)
      : beta_(beta), threshold_(threshold) {}
  Tensor forward(const Tensor& x) override { return softplus(x, beta_, threshold_); }
  Tensor jvp(const Tensor& x, const Tensor&, const Tensor& tangent) override {
    return softplus_grad(tangent, x, beta_, threshold_);
  }
  std::string type_name() const override { return "Softplus"; }
  double beta() const { return beta_; }
  double threshold() const { return threshold_; }

 protected:
  std::string extra_repr() const override;

 private:
  double beta_, threshold_;
};

// An activation by its lower-case name, with default settings: "relu",
// "silu" (or "swish"), "gelu", "gelu_tanh", "selu", "elu", "tanh", "sigmoid",
// "softplus". Unknown names throw, listing these.
std::shared_ptr<Activation> make_activation(const std::string& name);

}  // namespace tide::nn
