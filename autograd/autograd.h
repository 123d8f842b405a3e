// The reverse-mode engine's public API: backward() and grad().
#pragma once

#include <vector>

#include "autograd/node.h"

namespace tide {

struct GradOptions {
  // Build a graph of the backward pass itself, so the returned gradients can
  // be differentiated again (gradients of gradients).
  bool create_graph = false;
  // Keep the graph's saved tensors so backward can run through it again.
  // Defaults to create_graph, like PyTorch.
  bool retain_graph = false;
  // Return an undefined tensor (instead of throwing) for an input that the
  // outputs do not depend on.
  bool allow_unused = false;
};

// Accumulates d(output)/d(leaf) into every leaf's .grad(). `grad_output` may be
// omitted only for a one-element output (it is then 1). With create_graph, a
// leaf's .grad() holds a graph leading back to the leaf, a reference cycle (as
// in PyTorch) that is freed only by clearing it: set_grad(Tensor()). grad()
// makes no such cycle.
void backward(const Tensor& output, const Tensor& grad_output = {}, bool retain_graph = false,
              bool create_graph = false);
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              bool retain_graph = false, bool create_graph = false);

// The functional form: returns sum_i d(outputs[i] . grad_outputs[i]) / d(inputs[j])
// for each input, without touching any .grad().
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, GradOptions options = {});

// A tensor sharing x's data with no autograd history.
Tensor detach(const Tensor& x);

}  // namespace tide
