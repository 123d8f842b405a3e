// Module: the base of every layer and model.
//
// A module owns named parameters (trainable tensors), named buffers (state
// that is saved but not trained) and named child modules, each registered by
// name in the constructor. Everything that walks a model (named_parameters with
// PyTorch-style dotted names such as "net.0.weight", state_dict, train/eval,
// moving to a dtype or device, zero_grad, printing) is written once, here.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace tide::nn {

// Name -> tensor, sorted by name (a std::map keeps files and errors stable).
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The one-input forward that Sequential chains. Modules with other inputs
  // (a velocity field takes x and t) add their own overloads.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // The type name shown when printing ("Linear").
  virtual std::string type_name() const = 0;

  // --- traversal (registration order; children's names prefixed "child.") ---
  // A tensor registered under several names (tied weights) is listed once,
  // under its first name, so optimizers and counts see it once.
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  int64_t num_parameters() const;  // total element count

  // --- state ---
  // Parameters and buffers by dotted name (every name, tied ones included).
  // The entries are detached aliases: they share this module's data but carry
  // no autograd state, like PyTorch's state_dict.
  StateDict state_dict() const;
  // Copies values in by name. strict: every key must match in name and shape,
  // and the error lists every missing, unexpected and mismatched key at once.
  // Non-strict: loads what matches and ignores the rest (shape mismatches
  // still throw). Values are converted to each parameter's dtype and device.
  void load_state_dict(const StateDict& state, bool strict = true);

  // --- modes and placement ---
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // In place: every handle to a parameter sees the new data, and existing
  // gradients are converted along with it.
  void to(DType dtype);  // floating-point parameters and buffers only
  void to(Device device);
  void zero_grad();  // clears every parameter's .grad()

  // PyTorch's print(model) tree:
  // "Sequential(\n  (0): Linear(in_features=3, out_features=64, bias=True)\n ...)".
  std::string repr() const;

 protected:
  // Registration, for constructors. Returns the stored tensor/child.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }
  // Extra text inside the parentheses of repr(): "in=3, out=64".
  virtual std::string extra_repr() const { return ""; }
  // Called after train(on) flips the flag on this module.
  virtual void on_train_changed() {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool recurse, bool buffers,
               std::vector<std::pair<std::string, Tensor>>& out) const;
  void repr_into(std::string& out, int indent) const;

  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Python's repr of a float ("1.0", "1e-05"), for extra_repr() texts that read
// like PyTorch's print(model).
std::string repr_float(double value);

}  // namespace tide::nn
