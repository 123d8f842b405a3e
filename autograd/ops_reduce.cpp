// Reductions. sum is the primitive with a backward (broadcast the gradient back);
// mean, var, std, logsumexp and norm are composed from differentiable ops.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {
using Grads = std::vector<Tensor>;
}

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim) {
  Tensor out = kernels::reduce(ReduceOp::Sum, x, dims, keepdim);
  if (needs_grad(x)) {
    std::vector<int> rdims = kernels::reduction_dims(x, dims, "sum");
    Shape kept = kernels::keepdim_shape(x.shape(), rdims);
    Shape in = x.shape();
    record("sum", {x}, out, [kept, in](const Tensor& g, const Tensor&) -> Grads {
      return {expand(reshape(g, kept.vec()), in.vec())};
    });
  }
  return out;
}

}  // namespace tide
