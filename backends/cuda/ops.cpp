// The CUDA backend's primitives except matmul: the same argument checks (and
// error messages) as the CPU backend, then a plan for the kernels of
// kernels.h. Every primitive only enqueues work on the backend's stream,
// except the index checks noted below.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>

#include "backends/checks.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/plan.h"

namespace tide::cuda {

namespace {

using checks::check_same_shape;

template <int N>
kern::Loop<N> loop_over(const ArrayView& dst, const std::array<const ArrayView*, N - 1>& inputs) {
  std::array<const Shape*, N> strides;
  strides[0] = &dst.strides;
  for (int k = 1; k < N; ++k) strides[k] = &inputs[k - 1]->strides;
  return make_loop<N>(dst.shape, strides);
}

}  // namespace

// ---------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------

void CudaBackend::copy(const ArrayView& dst, const ArrayView& src) {
  check_same_shape("copy", dst, src);
  if (dst.numel() == 0) return;
  kern::copy(loop_over<2>(dst, {&src}), dst.data, elem(dst.dtype), src.data, elem(src.dtype),
             stream_);
  TIDE_CUDA_CHECK_LAUNCH("copy");
}

void CudaBackend::fill(const ArrayView& dst, double value) {
  if (dst.numel() == 0) return;
  kern::fill(loop_of(dst), dst.data, elem(dst.dtype), value, stream_);
  TIDE_CUDA_CHECK_LAUNCH("fill");
}

void CudaBackend::unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha,
                        double beta) {
  const bool bool_op = op == UnaryOp::LogicalNot;
  const bool int_op =
      op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Square;
  bool ok = bool_op ? src.dtype == DType::Bool && dst.dtype == DType::Bool
                    : src.dtype == dst.dtype &&
                          (is_floating(src.dtype) || (int_op && src.dtype == DType::Int64));
  TIDE_CHECK(ok, "{}: unsupported dtypes (input {}, output {})", op_name(op), src.dtype, dst.dtype);
  check_same_shape(op_name(op), dst, src);
  if (dst.numel() == 0) return;
  kern::unary(static_cast<kern::Unary>(op), loop_over<2>(dst, {&src}), dst.data, src.data,
              elem(dst.dtype), alpha, beta, stream_);
  TIDE_CUDA_CHECK_LAUNCH(op_name(op));
}

void CudaBackend::binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                         double alpha, double beta) {
  const DType out_dtype = produces_bool(op) ? DType::Bool : a.dtype;
  bool ok = a.dtype == b.dtype && dst.dtype == out_dtype;
  if (ok && !produces_bool(op) && !is_floating(a.dtype)) {
    // What the CPU's int64 and bool loops accept.
    const bool int_ok = op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul ||
                        op == BinaryOp::Maximum || op == BinaryOp::Minimum || op == BinaryOp::Pow;
    const bool bool_ok = op == BinaryOp::Add || op == BinaryOp::Mul || op == BinaryOp::Maximum ||
                         op == BinaryOp::Minimum;
    ok = a.dtype == DType::Int64 ? int_ok : bool_ok;
  }
  TIDE_CHECK(ok, "{}: unsupported dtypes (inputs {} and {}, output {})", op_name(op), a.dtype,
             b.dtype, dst.dtype);
  check_same_shape(op_name(op), dst, a);
  check_same_shape(op_name(op), dst, b);
  if (dst.numel() == 0) return;
  kern::binary(static_cast<kern::Binary>(op), loop_over<3>(dst, {&a, &b}), dst.data, a.data, b.data,
               elem(a.dtype), alpha, beta, stream_);
  TIDE_CUDA_CHECK_LAUNCH(op_name(op));
}

void CudaBackend::where(const ArrayView& dst, const ArrayView& cond, const ArrayView& a,
                        const ArrayView& b) {
  checks::check_where(dst, cond, a, b);
  if (dst.numel() == 0) return;
  kern::where(loop_over<4>(dst, {&cond, &a, &b}), dst.data, cond.data, a.data, b.data,
              elem(dst.dtype), stream_);
  TIDE_CUDA_CHECK_LAUNCH("where");
}

// ---------------------------------------------------------------------------
// Reductions and scans
// ---------------------------------------------------------------------------

namespace {

// Splits the reduction into the plan of kernels.h. The chunking depends on
// the shape only, never on the GPU, so results are reproducible everywhere.
kern::ReducePlan make_reduce_plan(const ArrayView& dst, const ArrayView& src) {
  Shape kept_shape, kept_dst, kept_src, red_shape, red_src;
  for (int d = 0; d < src.rank(); ++d) {
    if (dst.shape[d] == 1 && src.shape[d] != 1) {
      red_shape.push_back(src.shape[d]);
      red_src.push_back(src.strides[d]);
    } else {
      kept_shape.push_back(src.shape[d]);
      kept_dst.push_back(dst.strides[d]);
      kept_src.push_back(src.strides[d]);
    }
  }
  kern::ReducePlan plan;
  plan.kept = make_loop<2>(kept_shape, {&kept_dst, &kept_src});
  plan.reduced = make_loop<1>(red_shape, {&red_src});
  const int64_t outputs = plan.kept.numel, n = plan.reduced.numel;
  const bool inner_contiguous =
      plan.reduced.rank > 0 && plan.reduced.strides[0][plan.reduced.rank - 1] == 1;
  const bool columns =
      !inner_contiguous && plan.kept.rank > 0 && plan.kept.strides[1][plan.kept.rank - 1] == 1;
  constexpr int64_t kShort = 64, kColumnChunk = 256, kBlockChunk = 8192;
  if (columns || n <= kShort) {
    // A thread per output (neighbouring threads read neighbouring columns);
    // long columns are cut into chunks when there are few outputs.
    plan.block_per_output = false;
    plan.chunk = (outputs >= 65536 || n <= kColumnChunk) ? std::max<int64_t>(n, 1) : kColumnChunk;
  } else {
    // A block per output; a few long reductions are cut into chunks so that
    // more blocks share the work.
    plan.block_per_output = true;
    plan.chunk = (outputs >= 1024 || n <= kBlockChunk) ? std::max<int64_t>(n, 1) : kBlockChunk;
  }
  plan.n_chunks = (std::max<int64_t>(n, 1) + plan.chunk - 1) / plan.chunk;
  return plan;
}

using checks::check_kept_shape;

// The lines along `dim` (all other dims walked by the loop).
kern::LinePlan make_line_plan(const ArrayView& dst, const ArrayView& src, int dim) {
  Shape shape, dst_strides, src_strides;
  for (int d = 0; d < src.rank(); ++d) {
    if (d == dim) continue;
    shape.push_back(src.shape[d]);
    dst_strides.push_back(dst.strides[d]);
    src_strides.push_back(src.strides[d]);
  }
  kern::LinePlan plan;
  plan.lines = make_loop<2>(shape, {&dst_strides, &src_strides});
  plan.length = src.shape[dim];
  plan.dst_stride = dst.strides[dim];
  plan.src_stride = src.strides[dim];
  return plan;
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const ArrayView& dst, const ArrayView& src) {
  checks::check_reduction_shape(op_name(op), dst, src);
  const bool sum_like = op == ReduceOp::Sum || op == ReduceOp::Prod;
  const bool dtypes_ok = src.dtype == DType::Bool
                             ? dst.dtype == (sum_like ? DType::Int64 : DType::Bool)
                             : dst.dtype == src.dtype;
  TIDE_CHECK(dtypes_ok, "{}: unsupported dtypes (input {}, output {})", op_name(op), src.dtype,
             dst.dtype);
  if (dst.numel() == 0) return;
  if (src.numel() == 0) {  // reducing over an empty dim
    TIDE_CHECK(sum_like, "{}: cannot reduce over an empty dimension (input shape {})", op_name(op),
               src.shape);
    fill(dst, op == ReduceOp::Sum ? 0.0 : 1.0);
    return;
  }
  const kern::ReducePlan plan = make_reduce_plan(dst, src);
  const size_t partial_bytes =
      plan.n_chunks > 1 ? static_cast<size_t>(plan.kept.numel * plan.n_chunks) * 8 : 0;
  Scratch partial(*this, partial_bytes);
  kern::reduce(static_cast<kern::Reduce>(op), plan, dst.data, elem(dst.dtype), src.data,
               elem(src.dtype), partial.get(), stream_);
  TIDE_CUDA_CHECK_LAUNCH(op_name(op));
}

void CudaBackend::arg_reduce(bool is_max, const ArrayView& dst, const ArrayView& src, int dim) {
  const char* op = is_max ? "argmax" : "argmin";
  TIDE_CHECK(dst.dtype == DType::Int64, "{}: output must be int64, got {}", op, dst.dtype);
  TIDE_CHECK(dim >= 0 && dim < std::max(src.rank(), 1), "{}: dim {} is out of range for rank {}",
             op, dim, src.rank());
  if (src.rank() == 0) {  // a scalar: its only index
    fill(dst, 0.0);
    return;
  }
  check_kept_shape(op, dst, src, dim);
  if (dst.numel() == 0) return;
  TIDE_CHECK(src.shape[dim] > 0,
             "{}: cannot reduce over an empty dimension (input shape {}, dim {})", op, src.shape,
             dim);
  kern::arg_reduce(is_max, make_line_plan(dst, src, dim), dst.ptr<int64_t>(), src.data,
                   elem(src.dtype), stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
}

void CudaBackend::cumsum(const ArrayView& dst, const ArrayView& src, int dim) {
  TIDE_CHECK(dst.shape == src.shape, "cumsum: output shape {} does not match input shape {}",
             dst.shape, src.shape);
  const bool dtypes_ok =
      src.dtype == DType::Bool ? dst.dtype == DType::Int64 : dst.dtype == src.dtype;
  if (src.rank() == 0) {  // a scalar is its own cumulative sum
    copy(dst, src);
    return;
  }
  TIDE_CHECK(dim >= 0 && dim < src.rank(), "cumsum: dim {} is out of range for rank {}", dim,
             src.rank());
  TIDE_CHECK(dtypes_ok, "cumsum: unsupported dtypes (input {}, output {})", src.dtype, dst.dtype);
  if (dst.numel() == 0) return;
  kern::cumsum(make_line_plan(dst, src, dim), dst.data, elem(dst.dtype), src.data, elem(src.dtype),
               stream_);
  TIDE_CUDA_CHECK_LAUNCH("cumsum");
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

namespace {

using checks::check_contiguous;
using checks::check_float;
using checks::check_row_vector;
using checks::Rows;
using checks::rows_of;

}  // namespace

void CudaBackend::softmax(const ArrayView& dst, const ArrayView& src, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_float(op, src.dtype);
  check_contiguous(op, "src", src, src, src.dtype);
  check_contiguous(op, "dst", dst, src, src.dtype);
  if (src.numel() == 0) return;
  const Rows rows = rows_of(src);
  // The primitive's layout is rows x length, contiguous: cuDNN's [N, C, 1, 1].
  if (cudnn_softmax(cudnn_.get(), dst, src, rows.count, rows.length, log)) return;
  kern::softmax(dst.data, src.data, rows.count, rows.length, log, elem(src.dtype), stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
}

void CudaBackend::softmax_backward(const ArrayView& grad_src, const ArrayView& grad_dst,
                                   const ArrayView& dst, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_float(op, dst.dtype);
  check_contiguous(op, "dst", dst, dst, dst.dtype);
  check_contiguous(op, "grad_dst", grad_dst, dst, dst.dtype);
  check_contiguous(op, "grad_src", grad_src, dst, dst.dtype);
  if (dst.numel() == 0) return;
  const Rows rows = rows_of(dst);
  if (cudnn_softmax_backward(cudnn_.get(), grad_src, grad_dst, dst, rows.count, rows.length, log))
    return;
  kern::softmax_backward(grad_src.data, grad_dst.data, dst.data, rows.count, rows.length, log,
                         elem(dst.dtype), stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
}

void CudaBackend::layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                             const ArrayView& x, const ArrayView& weight, const ArrayView& bias,
                             double eps) {
  const Rows rows = checks::check_layer_norm(dst, mean, rstd, x, weight, bias);
  if (x.numel() == 0) return;
  kern::layer_norm(dst.data, mean.data, rstd.data, x.data, weight.data, bias.data, rows.count,
                   rows.length, eps, elem(x.dtype), stream_);
  TIDE_CUDA_CHECK_LAUNCH("layer_norm");
}

void CudaBackend::layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_weight,
                                      const ArrayView& grad_bias, const ArrayView& grad_dst,
                                      const ArrayView& x, const ArrayView& mean,
                                      const ArrayView& rstd, const ArrayView& weight) {
  const Rows rows = checks::check_layer_norm_backward(grad_x, grad_weight, grad_bias, grad_dst, x,
                                                      mean, rstd, weight);
  if (x.numel() == 0) {  // the parameter gradients are empty sums
    if (grad_weight.data != nullptr) fill(grad_weight, 0.0);
    if (grad_bias.data != nullptr) fill(grad_bias, 0.0);
    return;
  }
  const bool params = grad_weight.data != nullptr || grad_bias.data != nullptr;
  const size_t scratch_bytes =
      params ? static_cast<size_t>(2 * rows.length * kern::layer_norm_param_chunks(rows.count)) *
                   sizeof(double)
             : 0;
  Scratch scratch(*this, scratch_bytes);
  kern::layer_norm_backward(grad_x.data, grad_weight.data, grad_bias.data, grad_dst.data, x.data,
                            mean.data, rstd.data, weight.data, rows.count, rows.length,
                            elem(x.dtype), static_cast<double*>(scratch.get()), stream_);
  TIDE_CUDA_CHECK_LAUNCH("layer_norm_backward");
}

// ---------------------------------------------------------------------------
// Indexing
//
// Index checks cost a host synchronization: the kernels record a bad index
// in a device slot and check_index_error() reads it back, so the call throws
// tide::Error like the CPU backend. (During graph capture the read is skipped
// and the slot is checked by the next synchronize().) gather and
// index_select check while they run, since their dst is fresh; scatter_add
// writes in place, so it checks in a separate kernel before writing.
// ---------------------------------------------------------------------------

namespace {

using checks::check_index_dim;
using checks::check_index_dtype;

ArrayView with_shape(const ArrayView& v, const Shape& shape) {
  ArrayView out = v;
  out.shape = shape;
  return out;
}

ArrayView without_dim_stride(const ArrayView& v, int dim) {
  ArrayView out = v;
  out.strides[dim] = 0;
  return out;
}

}  // namespace

void CudaBackend::index_select(const ArrayView& dst, const ArrayView& src, int dim,
                               const ArrayView& index) {
  const char* op = "index_select";
  TIDE_CHECK(dst.dtype == src.dtype, "{}: output dtype {} differs from input dtype {}", op,
             dst.dtype, src.dtype);
  TIDE_CHECK(index.rank() <= 1, "{}: index must be 0-D or 1-D, got shape {}", op, index.shape);
  check_index_dtype(op, index);
  if (src.rank() == 0) {  // a scalar behaves as a 1-element vector
    TIDE_CHECK(index.numel() == 1 && dst.numel() == 1, "{}: bad shapes for a scalar input", op);
    kern::check_indices(loop_of(index), index.ptr<int64_t>(), 1, error_slot_, stream_);
    TIDE_CUDA_CHECK_LAUNCH(op);
    check_index_error(op, dim, 1);
    copy(dst, src);
    return;
  }
  check_index_dim(op, dim, src.rank());
  bool ok = dst.rank() == src.rank() && dst.shape[dim] == index.numel();
  for (int d = 0; ok && d < src.rank(); ++d) ok = d == dim || dst.shape[d] == src.shape[d];
  TIDE_CHECK(ok, "{}: output shape {} does not fit input {} and index {} (dim {})", op, dst.shape,
             src.shape, index.shape, dim);
  if (dst.numel() == 0) {
    // Nothing to gather, but the indices are still checked, as on the CPU.
    kern::check_indices(loop_of(index), index.ptr<int64_t>(), src.shape[dim], error_slot_, stream_);
    TIDE_CUDA_CHECK_LAUNCH(op);
    if (index.numel() > 0) check_index_error(op, dim, src.shape[dim]);
    return;
  }
  // The index varies along dim only: view it with dst's shape, stride 0 elsewhere.
  ArrayView index_view = index;
  index_view.shape = dst.shape;
  index_view.strides = Shape::filled(dst.rank(), 0);
  index_view.strides[dim] = index.rank() == 1 ? index.strides[0] : 0;
  const ArrayView src_view = with_shape(without_dim_stride(src, dim), dst.shape);
  kern::gather(loop_over<3>(dst, {&index_view, &src_view}), dst.data, index.ptr<int64_t>(),
               src.data, src.strides[dim], src.shape[dim], static_cast<int>(dtype_size(dst.dtype)),
               error_slot_, stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
  check_index_error(op, dim, src.shape[dim]);
}

void CudaBackend::gather(const ArrayView& dst, const ArrayView& src, int dim,
                         const ArrayView& index) {
  const char* op = "gather";
  TIDE_CHECK(dst.dtype == src.dtype, "{}: output dtype {} differs from input dtype {}", op,
             dst.dtype, src.dtype);
  check_index_dtype(op, index);
  if (src.rank() == 0) {
    TIDE_CHECK(index.numel() == 1 && dst.numel() == 1, "{}: bad shapes for a scalar input", op);
    kern::check_indices(loop_of(index), index.ptr<int64_t>(), 1, error_slot_, stream_);
    TIDE_CUDA_CHECK_LAUNCH(op);
    check_index_error(op, dim, 1);
    copy(dst, src);
    return;
  }
  check_index_dim(op, dim, src.rank());
  bool ok = index.shape == dst.shape && dst.rank() == src.rank();
  for (int d = 0; ok && d < src.rank(); ++d) ok = d == dim || dst.shape[d] <= src.shape[d];
  TIDE_CHECK(ok, "{}: index shape {} and output shape {} do not fit input shape {} (dim {})", op,
             index.shape, dst.shape, src.shape, dim);
  if (dst.numel() == 0) return;
  const ArrayView src_view = with_shape(without_dim_stride(src, dim), dst.shape);
  kern::gather(loop_over<3>(dst, {&index, &src_view}), dst.data, index.ptr<int64_t>(), src.data,
               src.strides[dim], src.shape[dim], static_cast<int>(dtype_size(dst.dtype)),
               error_slot_, stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
  check_index_error(op, dim, src.shape[dim]);
}

void CudaBackend::scatter_add(const ArrayView& dst, int dim, const ArrayView& index,
                              const ArrayView& src) {
  const char* op = "scatter_add";
  TIDE_CHECK(dst.dtype == src.dtype && dst.dtype != DType::Bool,
             "{}: unsupported dtypes (input {}, output {})", op, src.dtype, dst.dtype);
  check_index_dtype(op, index);
  if (dst.rank() == 0) {
    TIDE_CHECK(index.numel() <= 1 && src.numel() >= index.numel(),
               "{}: bad shapes for a scalar output", op);
    kern::check_indices(loop_of(index), index.ptr<int64_t>(), 1, error_slot_, stream_);
    TIDE_CUDA_CHECK_LAUNCH(op);
    if (index.numel() == 1) {
      check_index_error(op, dim, 1);
      binary(BinaryOp::Add, dst, dst, with_shape(src, dst.shape), 0, 0);
    }
    return;
  }
  check_index_dim(op, dim, dst.rank());
  bool ok = index.rank() == dst.rank() && src.rank() == dst.rank();
  for (int d = 0; ok && d < dst.rank(); ++d)
    ok = index.shape[d] <= src.shape[d] && (d == dim || index.shape[d] <= dst.shape[d]);
  TIDE_CHECK(ok, "{}: index shape {} does not fit output {} and source {} (dim {})", op,
             index.shape, dst.shape, src.shape, dim);
  if (index.numel() == 0) return;
  // Check first: nothing may be written when an index is bad.
  kern::check_indices(loop_of(index), index.ptr<int64_t>(), dst.shape[dim], error_slot_, stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
  check_index_error(op, dim, dst.shape[dim]);
  // One thread per line along dim: the lines are the index's other dims.
  Shape shape, index_strides, src_strides, dst_strides;
  for (int d = 0; d < index.rank(); ++d) {
    if (d == dim) continue;
    shape.push_back(index.shape[d]);
    index_strides.push_back(index.strides[d]);
    src_strides.push_back(src.strides[d]);
    dst_strides.push_back(dst.strides[d]);
  }
  kern::ScatterPlan plan;
  plan.lines = make_loop<3>(shape, {&index_strides, &src_strides, &dst_strides});
  plan.length = index.shape[dim];
  plan.index_stride = index.strides[dim];
  plan.src_stride = src.strides[dim];
  plan.dst_dim_stride = dst.strides[dim];
  plan.dim_size = dst.shape[dim];
  kern::scatter_add(plan, dst.data, index.ptr<int64_t>(), src.data, elem(dst.dtype), error_slot_,
                    stream_);
  TIDE_CUDA_CHECK_LAUNCH(op);
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

void CudaBackend::random(const ArrayView& dst, Distribution dist, double a, double b, uint64_t seed,
                         uint64_t offset) {
  checks::check_random(dst, dist);
  if (dst.numel() == 0) return;
  // The largest value a uniform may take, as the CPU computes it: rounding a
  // double just below b to float32 can give b itself.
  double upper = b;
  if (dst.dtype == DType::Float32) {
    const float fa = static_cast<float>(a), fb = static_cast<float>(b);
    upper = fb > fa ? std::nextafter(fb, fa) : fb;
  } else if (dst.dtype == DType::Float64) {
    upper = b > a ? std::nextafter(b, a) : b;
  }
  kern::random(dst.data, elem(dst.dtype), dst.numel(), static_cast<kern::Distribution>(dist), a, b,
               upper, seed, offset, stream_);
  TIDE_CUDA_CHECK_LAUNCH("random");
}

}  // namespace tide::cuda
