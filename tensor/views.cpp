// View ops: new geometry over the same storage, never a copy (reshape excepted,
// which copies when no view exists, like PyTorch).
#include <algorithm>

#include "tensor/kernels.h"

namespace tide::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  if (a == b) return a;
  int rank = std::max(a.size(), b.size());
  Shape out = Shape::filled(rank, 1);
  for (int i = 0; i < rank; ++i) {
    int ia = a.size() - rank + i, ib = b.size() - rank + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    TIDE_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast together",
               op, a, b);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int rank = shape.size();
  TIDE_CHECK(rank >= x.dim(), "expand: cannot expand {} to the lower-rank shape {}", x.describe(),
             shape);
  Shape strides = Shape::filled(rank, 0);
  for (int i = 0; i < rank; ++i) {
    int ix = x.dim() - rank + i;
    if (ix < 0) continue;  // new leading dim: stride 0
    if (x.shape()[ix] == shape[i]) {
      strides[i] = x.strides()[ix];
    } else {
      TIDE_CHECK(x.shape()[ix] == 1, "expand: cannot expand {} to shape {} (dim {} is {}, not 1)",
                 x.describe(), shape, ix, x.shape()[ix]);
    }
  }
  return make_view(x, shape, strides, x.offset(), "expand");
}

Shape infer_shape(std::vector<int64_t> shape, int64_t numel, const char* op) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      TIDE_CHECK(infer < 0, "{}: only one dimension can be -1 in {}", op, Shape(shape));
      infer = static_cast<int>(i);
    } else {
      TIDE_CHECK(shape[i] >= 0, "{}: invalid size {} in {}", op, shape[i], Shape(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    TIDE_CHECK(known != 0 && numel % known == 0,
               "{}: shape {} is invalid for a tensor of {} elements", op, Shape(shape), numel);
    shape[infer] = numel / known;
    known *= shape[infer];
  }
  TIDE_CHECK(known == numel, "{}: shape {} is invalid for a tensor of {} elements", op,
             Shape(shape), numel);
  return Shape(shape);
}

// Strides for viewing x as `shape` without a copy, or false if impossible.
// Walks groups of old dims that merge into groups of new dims; each old group
// must be internally contiguous (PyTorch's computeStride algorithm).
static bool view_strides(const Tensor& x, const Shape& shape, Shape& out) {
  const Shape& old_shape = x.shape();
  const Shape& old_strides = x.strides();
  out = Shape::filled(shape.size(), 1);
  if (x.numel() == 0) {
    out = contiguous_strides(shape);
    return true;
  }
  int new_dim = shape.size() - 1;
  int64_t chunk_base_stride = old_strides.size() ? old_strides.back() : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int old_dim = old_shape.size() - 1; old_dim >= 0; --old_dim) {
    tensor_numel *= old_shape[old_dim];
    // A chunk ends where the next-outer old dim is not contiguous with this one.
    bool chunk_end = old_dim == 0 || (old_shape[old_dim - 1] != 1 &&
                                      old_strides[old_dim - 1] != tensor_numel * chunk_base_stride);
    if (chunk_end) {
      while (new_dim >= 0 && (view_numel < tensor_numel || shape[new_dim] == 1)) {
        out[new_dim] = view_numel * chunk_base_stride;
        view_numel *= shape[new_dim];
        --new_dim;
      }
      if (view_numel != tensor_numel) return false;
      if (old_dim > 0) {
        chunk_base_stride = old_strides[old_dim - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return new_dim == -1;
}

Tensor view(const Tensor& x, std::vector<int64_t> sizes) {
  Shape shape = infer_shape(std::move(sizes), x.numel(), "view");
  Shape strides;
  TIDE_CHECK(view_strides(x, shape, strides),
             "view: cannot view {} with strides {} as shape {} without a copy; use reshape",
             x.describe(), x.strides(), shape);
  return make_view(x, shape, strides, x.offset());
}

Tensor reshape(const Tensor& x, std::vector<int64_t> sizes) {
  Shape shape = infer_shape(std::move(sizes), x.numel(), "reshape");
  Shape strides;
  if (view_strides(x, shape, strides)) return make_view(x, shape, strides, x.offset());
  Tensor packed = clone(x);
  return make_view(packed, shape, contiguous_strides(shape), 0);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  TIDE_CHECK(static_cast<int>(dims.size()) == x.dim(),
             "permute: {} dims given for a tensor of rank {}", dims.size(), x.dim());
  Shape shape, strides;
  bool seen[kMaxDims] = {};
  for (int64_t d : dims) {
    int w = wrap_dim(d, x.dim(), "permute");
    TIDE_CHECK(!seen[w], "permute: dim {} appears twice in [{}]", w, fmt::join(dims, ", "));
    seen[w] = true;
    shape.push_back(x.shape()[w]);
    strides.push_back(x.strides()[w]);
  }
  return make_view(x, shape, strides, x.offset());
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  int d0 = wrap_dim(dim0, x.dim(), "transpose"), d1 = wrap_dim(dim1, x.dim(), "transpose");
  Shape shape = x.shape(), strides = x.strides();
  if (x.dim() == 0) return x;
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  return make_view(x, shape, strides, x.offset());
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  TIDE_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "slice");
  TIDE_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t n = x.shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return make_view(x, shape, strides, x.offset() + start * x.strides()[d]);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  TIDE_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "narrow");
  int64_t n = x.shape()[d];
  if (start < 0) start += n;
  TIDE_CHECK(start >= 0 && length >= 0 && start + length <= n,
             "narrow: start {} and length {} are out of range for dim {} of size {} in {}", start,
             length, d, n, x.describe());
  return slice(x, d, start, start + length, 1);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  TIDE_CHECK(x.dim() > 0, "select: cannot select from a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "select");
  int64_t n = x.shape()[d];
  TIDE_CHECK(index >= -n && index < n, "select: index {} is out of range for dim {} of size {}",
             index, d, n);
  if (index < 0) index += n;
  Shape shape = x.shape(), strides = x.strides();
  int64_t offset = x.offset() + index * strides[d];
  shape.erase(d);
  strides.erase(d);
  return make_view(x, shape, strides, offset);
}

Tensor squeeze(const Tensor& x) {
  Shape shape, strides;
  for (int i = 0; i < x.dim(); ++i) {
    if (x.shape()[i] == 1) continue;
    shape.push_back(x.shape()[i]);
    strides.push_back(x.strides()[i]);
  }
  return make_view(x, shape, strides, x.offset());
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  int d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.dim() == 0 || x.shape()[d] != 1) return x;  // PyTorch: a no-op, not an error
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(d);
  strides.erase(d);
  return make_view(x, shape, strides, x.offset());
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape(), strides = x.strides();
  int64_t stride = d < x.dim() ? x.strides()[d] * x.shape()[d] : 1;
  shape.insert(d, 1);
  strides.insert(d, stride);
  return make_view(x, shape, strides, x.offset());
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  int s = wrap_dim(start_dim, x.dim(), "flatten"), e = wrap_dim(end_dim, x.dim(), "flatten");
  TIDE_CHECK(s <= e, "flatten: start_dim {} is after end_dim {}", s, e);
  std::vector<int64_t> sizes;
  for (int i = 0; i < s; ++i) sizes.push_back(x.shape()[i]);
  int64_t merged = 1;
  for (int i = s; i <= e; ++i) merged *= x.shape()[i];
  sizes.push_back(merged);
  for (int i = e + 1; i < x.dim(); ++i) sizes.push_back(x.shape()[i]);
  return reshape(x, sizes);
}

}  // namespace tide::kernels
