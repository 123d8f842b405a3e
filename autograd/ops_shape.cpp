// Views, copies, joins and indexing. A view's backward maps the gradient back
// to the input's geometry (reshape back, inverse permutation, sum over
// broadcast dims, scatter into zeros for slices and selections).
#include <algorithm>
#include <functional>

#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {
using Grads = std::vector<Tensor>;

// Records a backward for a single-input op when needed, and returns out.
template <typename Backward>
Tensor with_grad(const char* name, const Tensor& x, Tensor out, Backward backward) {
  // Some kernels return x itself when there is nothing to do (squeeze of a
  // dim that is not 1, expand to the same shape). Recording on x would give x
  // a grad_fn pointing at itself, so such results become a fresh alias.
  if (out.impl() == x.impl()) out = detach(x);
  if (needs_grad(x)) {
    record(name, {x}, out,
           [backward](const Tensor& g, const Tensor&) -> Grads { return {backward(g)}; });
  }
  return out;
}

void check_defined(const Tensor& x, const char* op) {
  TIDE_CHECK(x.defined(), "{}: got an undefined tensor", op);
}

// A view op that picks part of its input (slice, select), written as a
// differentiable function of one tensor.
using PickFn = std::function<Tensor(const Tensor&)>;

// The backward of a picking view: zeros shaped like the input, with g written
// into the picked part. It is linear in g and its own backward is the same
// pick applied to the incoming gradient, so gradients of any order work.
Tensor embed_in_zeros(const char* name, const Tensor& g, const Shape& shape, const PickFn& pick) {
  Tensor out = zeros(shape, {.dtype = g.dtype(), .device = g.device()});
  // `out` does not require grad, so pick(out) records nothing: it is just the
  // window to write through.
  kernels::copy_(pick(out), g);
  if (needs_grad(g)) {
    record(name, {g}, out, [pick](const Tensor& gg, const Tensor&) -> Grads { return {pick(gg)}; });
  }
  return out;
}

// Records the backward of a picking view `out = pick(x)`.
Tensor picked_view(const char* name, const char* backward_name, const Tensor& x, Tensor out,
                   PickFn pick) {
  Shape in = x.shape();
  return with_grad(name, x, std::move(out), [backward_name, in, pick](const Tensor& g) {
    return embed_in_zeros(backward_name, g, in, pick);
  });
}

// Clamps slice bounds exactly as kernels::slice does, so the backward can
// re-slice with plain non-negative numbers.
std::pair<int64_t, int64_t> normalize_slice(int64_t start, int64_t end, int64_t n) {
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  return {start, end};
}

// A gradient in the dtype of the input it belongs to (inputs of cat and
// scatter_add may have been promoted).
Tensor cast_to(const Tensor& g, DType dtype) {
  return g.dtype() == dtype ? g : to(g, dtype);
}

}  // namespace

// ---------------------------------------------------------------------------
// Views that change the geometry
// ---------------------------------------------------------------------------

Tensor reshape(const Tensor& x, Dims shape) {
  check_defined(x, "reshape");
  Shape in = x.shape();
  return with_grad("reshape", x, kernels::reshape(x, std::move(shape)),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor view(const Tensor& x, Dims shape) {
  check_defined(x, "view");
  Shape in = x.shape();
  return with_grad("view", x, kernels::view(x, std::move(shape)),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor permute(const Tensor& x, const Dims& dims) {
  check_defined(x, "permute");
  Tensor out = kernels::permute(x, dims);  // checks dims first
  Dims inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], x.dim(), "permute")] = i;
  return with_grad("permute", x, out, [inverse](const Tensor& g) { return permute(g, inverse); });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  check_defined(x, "transpose");
  return with_grad("transpose", x, kernels::transpose(x, dim0, dim1),
                   [dim0, dim1](const Tensor& g) { return transpose(g, dim0, dim1); });
}

Tensor expand(const Tensor& x, const Dims& sizes) {
  check_defined(x, "expand");
  Shape shape(sizes);
  for (int i = 0; i < shape.size(); ++i) {
    int ix = x.dim() - shape.size() + i;
    if (shape[i] == -1) {
      TIDE_CHECK(ix >= 0, "expand: -1 is not allowed for the new leading dim {} of {}", i,
                 Shape(sizes));
      shape[i] = x.shape()[ix];
    }
    TIDE_CHECK(shape[i] >= 0, "expand: invalid size {} in {} (sizes must be >= 0, or -1)", shape[i],
               Shape(sizes));
  }
  Shape in = x.shape();
  return with_grad("expand", x, kernels::expand(x, shape),
                   [in](const Tensor& g) { return sum_to(g, in); });
}

Tensor broadcast_to(const Tensor& x, const Dims& shape) {
  return expand(x, shape);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_defined(x, "sum_to");
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

Tensor squeeze(const Tensor& x) {
  check_defined(x, "squeeze");
  Shape in = x.shape();
  return with_grad("squeeze", x, kernels::squeeze(x),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  check_defined(x, "squeeze");
  Shape in = x.shape();
  return with_grad("squeeze", x, kernels::squeeze(x, dim),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  check_defined(x, "unsqueeze");
  Shape in = x.shape();
  return with_grad("unsqueeze", x, kernels::unsqueeze(x, dim),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  check_defined(x, "flatten");
  Shape in = x.shape();
  return with_grad("flatten", x, kernels::flatten(x, start_dim, end_dim),
                   [in](const Tensor& g) { return reshape(g, in.vec()); });
}

// ---------------------------------------------------------------------------
// Views that pick part of the input
// ---------------------------------------------------------------------------

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  check_defined(x, "slice");
  Tensor out = kernels::slice(x, dim, start, end, step);  // checks dim and step
  int d = wrap_dim(dim, x.dim(), "slice");
  auto [s, e] = normalize_slice(start, end, x.shape()[d]);
  return picked_view("slice", "slice_backward", x, out,
                     // Init-captures: clang before 16 cannot capture structured bindings.
                     [d, s = s, e = e, step](const Tensor& t) { return slice(t, d, s, e, step); });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check_defined(x, "narrow");
  kernels::narrow(x, dim, start, length);  // only for its range checks
  int d = wrap_dim(dim, x.dim(), "narrow");
  if (start < 0) start += x.shape()[d];
  return slice(x, d, start, start + length);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  check_defined(x, "select");
  Tensor out = kernels::select(x, dim, index);  // checks dim and index
  int d = wrap_dim(dim, x.dim(), "select");
  if (index < 0) index += x.shape()[d];
  return picked_view("select", "select_backward", x, out,
                     [d, index](const Tensor& t) { return select(t, d, index); });
}

// ---------------------------------------------------------------------------
// Copies
// ---------------------------------------------------------------------------

Tensor contiguous(const Tensor& x) {
  check_defined(x, "contiguous");
  if (x.is_contiguous()) return x;
  return with_grad("contiguous", x, kernels::clone(x), [](const Tensor& g) { return g; });
}

Tensor clone(const Tensor& x) {
  check_defined(x, "clone");
  return with_grad("clone", x, kernels::clone(x), [](const Tensor& g) { return g; });
}

Tensor to(const Tensor& x, DType dtype) {
  check_defined(x, "to");
  if (x.dtype() == dtype) return x;
  TIDE_CHECK(!needs_grad(x) || is_floating(dtype),
             "to: cannot convert {} (which requires grad) to non-differentiable dtype {}",
             x.describe(), dtype);
  DType in = x.dtype();
  return with_grad("to_dtype", x, kernels::to_dtype(x, dtype),
                   [in](const Tensor& g) { return to(g, in); });
}

Tensor to(const Tensor& x, Device device) {
  check_defined(x, "to");
  if (x.device() == device) return x;
  Device in = x.device();
  return with_grad("to_device", x, kernels::to_device(x, device),
                   [in](const Tensor& g) { return to(g, in); });
}

// ---------------------------------------------------------------------------
// Joins and splits
// ---------------------------------------------------------------------------

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  for (size_t i = 0; i < tensors.size(); ++i)
    TIDE_CHECK(tensors[i].defined(), "cat: tensor {} is undefined", i);
  Tensor out = kernels::cat(tensors, dim);  // checks shapes, promotes dtypes
  if (needs_grad_any(tensors)) {
    int d = wrap_dim(dim, tensors[0].dim(), "cat");
    // Backward needs only each input's extent along dim and its dtype; keeping
    // the inputs themselves would hold their memory until backward.
    struct Part {
      int64_t length;
      DType dtype;
      bool requires_grad;
    };
    std::vector<Part> parts;
    for (const Tensor& t : tensors) parts.push_back({t.shape()[d], t.dtype(), t.requires_grad()});
    // Each input's gradient is its own stretch of g along dim.
    record("cat", tensors, out, [parts, d](const Tensor& g, const Tensor&) -> Grads {
      Grads grads;
      int64_t start = 0;
      for (const Part& p : parts) {
        grads.push_back(p.requires_grad ? cast_to(narrow(g, d, start, p.length), p.dtype)
                                        : Tensor());
        start += p.length;
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  TIDE_CHECK(!tensors.empty(), "stack: expected at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    TIDE_CHECK(tensors[i].defined(), "stack: tensor {} is undefined", i);
    TIDE_CHECK(tensors[i].shape() == tensors[0].shape(),
               "stack: tensor {} is {} but tensor 0 is {} (all shapes must be equal)", i,
               tensors[i].describe(), tensors[0].describe());
  }
  int d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const Tensor& t : tensors) parts.push_back(unsqueeze(t, d));
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  check_defined(x, "split");
  TIDE_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "split");
  int64_t n = x.shape()[d];
  TIDE_CHECK(split_size > 0 || (split_size == 0 && n == 0),
             "split: split_size must be positive, got {} (for dim {} of size {} in {})", split_size,
             d, n, x.describe());
  // Pieces of split_size, the last one shorter; an empty dim gives one empty piece.
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n || pieces.empty(); start += split_size)
    pieces.push_back(narrow(x, d, start, std::min(split_size, n - start)));
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const Dims& sizes, int64_t dim) {
  check_defined(x, "split");
  TIDE_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    TIDE_CHECK(s >= 0, "split: sizes [{}] contain a negative size", fmt::join(sizes, ", "));
    total += s;
  }
  TIDE_CHECK(total == x.shape()[d], "split: sizes [{}] sum to {} but dim {} of {} has size {}",
             fmt::join(sizes, ", "), total, d, x.describe(), x.shape()[d]);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, start, s));
    start += s;
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  check_defined(x, "chunk");
  TIDE_CHECK(chunks > 0, "chunk: the number of chunks must be positive, got {}", chunks);
  TIDE_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  int d = wrap_dim(dim, x.dim(), "chunk");
  int64_t n = x.shape()[d];
  // PyTorch: pieces of ceil(n / chunks), so there may be fewer than `chunks`
  // pieces; an empty dim still gives `chunks` empty pieces.
  if (n == 0) return split(x, Dims(static_cast<size_t>(chunks), 0), d);
  return split(x, (n + chunks - 1) / chunks, d);
}

// ---------------------------------------------------------------------------
// Indexing
// ---------------------------------------------------------------------------

// index and mask tensors are passed to record() as inputs even though they get
// no gradient: that way the engine notices if they are modified in place
// before backward reads them.

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_defined(x, "scatter_add");
  check_defined(src, "scatter_add");
  Tensor out = kernels::scatter_add(x, dim, index, src);
  if (needs_grad(x, src)) {
    int d = wrap_dim(dim, x.dim(), "scatter_add");
    bool x_grad = x.requires_grad(), src_grad = src.requires_grad();
    DType src_dtype = src.dtype();
    record("scatter_add", {x, src, index}, out,
           [x_grad, src_grad, src_dtype, index, d](const Tensor& g, const Tensor&) -> Grads {
             // out = x + (src added at index): x's gradient passes through,
             // src's is read back from the positions it was added to.
             return {x_grad ? g : Tensor(),
                     src_grad ? cast_to(gather(g, d, index), src_dtype) : Tensor(), Tensor()};
           });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, "gather");
  Tensor out = kernels::gather(x, dim, index);
  if (needs_grad(x)) {
    int d = wrap_dim(dim, x.dim(), "gather");
    Shape in = x.shape();
    record("gather", {x, index}, out, [in, index, d](const Tensor& g, const Tensor&) -> Grads {
      Tensor base = zeros(in, {.dtype = g.dtype(), .device = g.device()});
      return {scatter_add(base, d, index, g), Tensor()};
    });
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, "index_select");
  check_defined(index, "index_select");
  if (x.dim() == 0) {
    // A scalar behaves as a one-element vector (PyTorch).
    wrap_dim(dim, 0, "index_select");
    TIDE_CHECK(index.numel() == 1, "index_select: a 0-d input needs a one-element index, got {}",
               index.describe());
    return reshape(index_select(reshape(x, {1}), 0, index), {});
  }
  Tensor out = kernels::index_select(x, dim, index);
  if (needs_grad(x)) {
    int d = wrap_dim(dim, x.dim(), "index_select");
    Shape in = x.shape();
    record("index_select", {x, index}, out,
           [in, index, d](const Tensor& g, const Tensor&) -> Grads {
             // Add each selected slice of g back at its index: a scatter_add
             // whose index is `index` laid along dim and expanded to g's shape.
             Dims along = Dims(static_cast<size_t>(g.dim()), 1);
             along[d] = index.numel();
             Tensor wide = expand(reshape(index, along), g.shape().vec());
             Tensor base = zeros(in, {.dtype = g.dtype(), .device = g.device()});
             return {scatter_add(base, d, wide, g), Tensor()};
           });
  }
  return out;
}

static void check_mask(const Tensor& x, const Tensor& mask, const char* op) {
  check_defined(x, op);
  check_defined(mask, op);
  kernels::check_same_device(x, mask, op);
  TIDE_CHECK(mask.dtype() == DType::Bool, "{}: mask must be bool, got {}", op, mask.describe());
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_mask(x, mask, "masked_fill");
  TIDE_CHECK(kernels::broadcast_shapes(x.shape(), mask.shape(), "masked_fill") == x.shape(),
             "masked_fill: mask {} does not broadcast to the input's shape {}", mask.describe(),
             x.describe());
  Tensor fill = full({}, value, {.dtype = x.dtype(), .device = x.device()});
  Tensor out = kernels::where(mask, fill, x);
  if (needs_grad(x)) {
    // Filled elements no longer depend on x.
    record("masked_fill", {x, mask}, out, [mask](const Tensor& g, const Tensor&) -> Grads {
      return {masked_fill(g, mask, 0.0), Tensor()};
    });
  }
  return out;
}

Tensor masked_select(const Tensor& x, const Tensor& mask) {
  check_mask(x, mask, "masked_select");
  Shape shape = kernels::broadcast_shapes(x.shape(), mask.shape(), "masked_select");
  // The output's length depends on the mask's values, so read the mask on the
  // host and turn it into the flat positions of its true elements.
  std::vector<bool> keep = kernels::expand(mask, shape).to_vector<bool>();
  std::vector<int64_t> positions;
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) positions.push_back(static_cast<int64_t>(i));
  Tensor index = kernels::to_device(
      from_vector(positions, Shape{static_cast<int64_t>(positions.size())}), x.device());
  // Composed from differentiable ops, so its backward (scatter the gradient
  // back into zeros, sum over broadcast dims) comes for free.
  return index_select(reshape(expand(x, shape.vec()), {-1}), 0, index);
}

}  // namespace tide
