// Sequential: children applied one after another, named "0", "1", "2", ...
// like torch.nn.Sequential, so parameter names read "0.weight", "2.bias".
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "nn/module.h"

namespace tide::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);

  // Appends a child under the next index and returns it.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    append(module);
    return module;
  }

  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t index) const;
  // The child at index as a concrete type; throws if it is not an M.
  template <typename M>
  std::shared_ptr<M> at(size_t index) const {
    auto typed = std::dynamic_pointer_cast<M>((*this)[index]);
    TIDE_CHECK(typed != nullptr, "Sequential: child {} is a {}, not the requested type", index,
               (*this)[index]->type_name());
    return typed;
  }

  // Chains the children. A Linear directly followed by an activation that a
  // matmul can apply itself (ReLU, Tanh, Sigmoid, SELU) runs as one fused
  // linear() call; the result and its gradients are the same as running the
  // two children one after another, only faster.
  Tensor forward(const Tensor& x) override;

  // Fusion is on by default; switching it off runs every child separately
  // (to compare the two paths, or to debug a child).
  void set_fuse_activations(bool on) { fuse_activations_ = on; }
  bool fuse_activations() const { return fuse_activations_; }

  std::string type_name() const override { return "Sequential"; }

 private:
  void append(std::shared_ptr<Module> module);

  std::vector<std::shared_ptr<Module>> modules_;  // the children, in order
  bool fuse_activations_ = true;
};

}  // namespace tide::nn
