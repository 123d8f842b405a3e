// Views, copies, joins and indexing. A view's backward maps the gradient back
// to the input's geometry (reshape back, inverse permutation, sum over
// broadcast dims, scatter into zeros for slices and selections).
#include <numeric>

#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {
using Grads = std::vector<Tensor>;

// Records a backward for a single-input op when needed, and returns out.
template <typename Backward>
Tensor with_grad(const char* name, const Tensor& x, Tensor out, Backward backward) {
  if (needs_grad(x)) {
    record(name, {x}, out,
           [backward](const Tensor& g, const Tensor&) -> Grads { return {backward(g)}; });
  }
  return out;
}
}  // namespace

Tensor reshape(const Tensor& x, Dims shape) {
  Shape in = x.shape();
  return with_grad("reshape", x, kernels::reshape(x, std::move(shape)),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor view(const Tensor& x, Dims shape) {
  Shape in = x.shape();
  return with_grad("view", x, kernels::view(x, std::move(shape)),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor permute(const Tensor& x, const Dims& dims) {
  Tensor out = kernels::permute(x, dims);
  Dims inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], x.dim(), "permute")] = i;
  return with_grad("permute", x, out, [inverse](const Tensor& g) { return permute(g, inverse); });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  return with_grad("transpose", x, kernels::transpose(x, dim0, dim1),
                   [dim0, dim1](const Tensor& g) { return transpose(g, dim0, dim1); });
}

Tensor expand(const Tensor& x, const Dims& sizes) {
  Shape shape(sizes);
  for (int i = 0; i < shape.size(); ++i) {
    int ix = x.dim() - shape.size() + i;
    if (shape[i] == -1) {
      TIDE_CHECK(ix >= 0, "expand: -1 is not allowed for the new leading dim {} of {}", i,
                 Shape(sizes));
      shape[i] = x.shape()[ix];
    }
  }
  Shape in = x.shape();
  return with_grad("expand", x, kernels::expand(x, shape),
                   [in](const Tensor& g) { return sum_to(g, in); });
}

Tensor broadcast_to(const Tensor& x, const Dims& shape) { return expand(x, shape); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  TIDE_CHECK(shape.size() <= x.dim(), "sum_to: cannot sum {} to the higher-rank shape {}",
             x.describe(), shape);
  int lead = x.dim() - shape.size();
  Dims dims;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      dims.push_back(i);
    } else {
      TIDE_CHECK(shape[i - lead] == x.shape()[i], "sum_to: {} does not broadcast to shape {}",
                 shape, x.describe());
    }
  }
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return reshape(s, shape.vec());
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return with_grad("contiguous", x, kernels::clone(x), [](const Tensor& g) { return g; });
}

Tensor clone(const Tensor& x) {
  return with_grad("clone", x, kernels::clone(x), [](const Tensor& g) { return g; });
}

Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  TIDE_CHECK(!needs_grad(x) || is_floating(dtype),
             "to: cannot convert {} (which requires grad) to non-differentiable dtype {}",
             x.describe(), dtype);
  DType in = x.dtype();
  return with_grad("to_dtype", x, kernels::to_dtype(x, dtype),
                   [in](const Tensor& g) { return to(g, in); });
}

Tensor to(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Device in = x.device();
  return with_grad("to_device", x, kernels::to_device(x, device),
                   [in](const Tensor& g) { return to(g, in); });
}

}  // namespace tide
