// The autograd graph: one Node per differentiable op call.
//
// Vocabulary borrowed from PyTorch's engine:
//   Node        a backward function; it receives the gradient of its op's
//               output and returns one gradient per input.
//   Edge        where an input's gradient goes next: the Node that produced
//               the input, or the AccumulateGrad sink of a leaf.
//   GradMode    a thread-local switch; ops record nodes only when it is on
//               and some input requires grad.
// Every Node has exactly one output (multi-output ops such as split are made of
// several single-output views), which keeps the engine short.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace tide {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
};

// What the engine checks a gradient against before passing it along an edge.
struct InputInfo {
  Shape shape;
  DType dtype;
  std::weak_ptr<Storage> storage;  // for the in-place modification check
  uint64_t version = 0;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(const char* name);
  virtual ~Node() = default;

  // Gradients of the inputs, one per edge (undefined where not needed).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees what backward saved; a later apply() must throw.
  virtual void release() {}

  const char* name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  std::vector<Edge> next_edges;
  std::vector<InputInfo> inputs;  // parallel to next_edges
  // The module path where the forward op ran ("net.2"), recorded only in
  // anomaly mode (autograd/anomaly.h) for its error messages; else null.
  const char* module_path = nullptr;

 private:
  const char* name_;
  uint64_t sequence_nr_;  // creation order; later nodes run first in backward
};

// The backward of an ordinary op: a closure written next to the op's forward.
// It receives the output gradient and, for ops that asked to save it, the
// op's output (re-attached to this node, so double backward sees through it).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad, const Tensor& output)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(const char* name, BackwardFn backward, Tensor saved_output)
      : Node(name),
        backward_(std::move(backward)),
        saved_output_(std::move(saved_output)),
        saved_output_version_(saved_output_.defined() ? saved_output_.storage()->version() : 0) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override;

 private:
  BackwardFn backward_;
  Tensor saved_output_;  // a detached alias of the output, or undefined
  uint64_t saved_output_version_;
  bool released_ = false;
};

// The sink of a leaf tensor: adds the incoming gradient into leaf.grad().
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// ---------------------------------------------------------------------------
// Grad mode
// ---------------------------------------------------------------------------
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// RAII: disables graph recording in this scope (like torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// RAII: sets grad mode to `enabled` in this scope.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(GradMode::is_enabled()) {
    GradMode::set_enabled(enabled);
  }
  ~GradModeGuard() { GradMode::set_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

// ---------------------------------------------------------------------------
// Recording ops (used by every differentiable op in autograd/ops_*.cpp)
// ---------------------------------------------------------------------------

// True when grad mode is on and any of the tensors requires grad: the cheap
// test an op makes before building its backward closure.
template <typename... Ts>
bool needs_grad(const Ts&... tensors) {
  return GradMode::is_enabled() && ((tensors.defined() && tensors.requires_grad()) || ...);
}
bool needs_grad_any(const std::vector<Tensor>& tensors);

// Inside a backward closure: whether the engine will use the gradient of the
// op's input i (PyTorch's ctx.needs_input_grad). False for an input that needs
// no gradient and, in grad(), for one from which no requested tensor can be
// reached; the closure may return an undefined Tensor for it and skip the
// work (a weight's gradient when only d/dx was asked for). True outside a
// backward pass.
bool needs_input_grad(size_t i);

enum class SaveOutput : bool { No = false, Yes = true };

// Attaches a new FunctionNode with `backward` to `output`, with one edge per
// input. Call only when needs_grad(inputs...) is true.
void record(const char* name, const std::vector<Tensor>& inputs, Tensor& output,
            BackwardFn backward, SaveOutput save_output = SaveOutput::No);

// The edge that gradients for `t` should flow into.
Edge gradient_edge(const Tensor& t);

}  // namespace tide
