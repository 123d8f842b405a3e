// gradcheck: compares the analytic Jacobian that autograd computes with
// float64 central finite differences. gradgradcheck does the same for the
// gradient function itself (second order), through create_graph.
#pragma once

#include <functional>
#include <vector>

#include "autograd/ops.h"

namespace tide {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-5;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
};

using DifferentiableFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs must be float64 CPU tensors; those with requires_grad are checked.
// Returns true, or throws tide::Error describing the first mismatch (which
// input, which element, analytic and numeric values).
bool gradcheck(const DifferentiableFn& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options = {});

// Checks the second derivatives: the function inputs -> grad(fn(inputs), inputs,
// v) for a fixed random v is itself gradchecked (v included as an input).
bool gradgradcheck(const DifferentiableFn& fn, const std::vector<Tensor>& inputs,
                   GradcheckOptions options = {});

}  // namespace tide
