// Anomaly mode: find the op where a NaN or an infinity first appeared.
//
//   {
//     tide::DetectAnomalyGuard anomaly;      // or tide::set_detect_anomaly(true)
//     Tensor loss = mean(square(model(x) - y));
//     backward(loss);                        // throws tide::Error at the first NaN/Inf
//   }
//
// While it is on:
//   forward   every op that records a graph node (an input requires grad)
//             checks its output; the first NaN or Inf throws, naming the op,
//             its inputs' dtypes and shapes (and which of them already held
//             NaN/Inf) and the module path where it ran ("net.2").
//   backward  the engine checks the gradients each node returns; the first
//             NaN or Inf throws, naming the node (the forward op that created
//             it), the input the gradient is for and the module path where
//             the forward op ran.
// Ops that record nothing (no input requires grad, or under NoGradGuard) are
// not checked: in training that is everything upstream of the first
// parameter, whose NaNs are reported by the first op that uses a parameter.
//
// It costs a device sync and a reduction per op, so it is for debugging only.
// When it is off, each op pays one relaxed atomic load and each module scope
// one more: nothing measurable.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace tide {

class Node;

namespace detail {
extern std::atomic<bool> g_detect_anomaly;
}

// The process-wide switch (like torch.autograd.set_detect_anomaly).
inline bool detect_anomaly_enabled() {
  return detail::g_detect_anomaly.load(std::memory_order_relaxed);
}
void set_detect_anomaly(bool enabled);

// RAII: turns anomaly mode on (or to `enabled`) for this scope.
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true) : previous_(detect_anomaly_enabled()) {
    set_detect_anomaly(enabled);
  }
  ~DetectAnomalyGuard() { set_detect_anomaly(previous_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

// RAII: names the module whose forward runs in this scope, so anomaly
// messages can say where in the model an op ran. Containers push their
// children's names ("0", "1", ...), models their members' ("net"); nested
// scopes join with dots ("net.2"), matching the parameter names. Does nothing
// (and allocates nothing) when anomaly mode is off.
class ModuleScope {
 public:
  explicit ModuleScope(std::string_view name) {
    if (detect_anomaly_enabled()) [[unlikely]]
      push(std::string(name));
  }
  explicit ModuleScope(size_t index) {
    if (detect_anomaly_enabled()) [[unlikely]]
      push(std::to_string(index));
  }
  ~ModuleScope() {
    if (pushed_) pop();
  }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  void push(std::string name);
  void pop();
  bool pushed_ = false;
};

// The dotted path of the module scopes open on this thread ("" at top level).
std::string current_module_path();

namespace detail {
// Called by record() when anomaly mode is on: remembers where `node` was
// created and throws if `output` holds NaN or Inf.
void check_forward_anomaly(const char* op, const std::vector<Tensor>& inputs, const Tensor& output,
                           Node& node);
// Called by the engine instead of node.apply() when anomaly mode is on: runs
// the node's backward and throws if any input gradient holds NaN or Inf.
std::vector<Tensor> apply_checked(Node& node, const Tensor& grad_output);
void check_backward_anomaly(const Node& node, const std::vector<Tensor>& input_grads);
// Sets, for this thread, the node whose backward is running (null: none), so
// a forward check inside a differentiable backward can say so.
class BackwardNodeScope {
 public:
  explicit BackwardNodeScope(const Node* node);
  ~BackwardNodeScope();
  BackwardNodeScope(const BackwardNodeScope&) = delete;
  BackwardNodeScope& operator=(const BackwardNodeScope&) = delete;

 private:
  const Node* previous_;
};
}  // namespace detail

}  // namespace tide
