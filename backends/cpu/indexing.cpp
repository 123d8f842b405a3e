// index_select, gather and scatter_add.
//
// All three walk an iteration space element by element with three operands:
// one is the int64 index and one is the tensor indexed along `dim`, whose
// stride at `dim` is set to 0 in the plan and applied by hand as
// index_value * stride. Indices are checked in a first pass, so a bad one
// throws before anything is written.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"

namespace tide::cpu {

namespace {

// Throws unless every element of `index` lies in [0, size).
void check_indices(const char* op, const ArrayView& index, int dim, int64_t size) {
  TIDE_CHECK(index.dtype == DType::Int64, "{}: index must be int64, got {}", op, index.dtype);
  const auto plan = make_loop_plan<1>({&index});
  const int64_t* idx = index.ptr<int64_t>();
  const int64_t stride = plan.inner_stride(0);
  for_each_row(plan, 0, plan.numel, [&](const int64_t* off, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = idx[off[0] + i * stride];
      TIDE_CHECK(v >= 0 && v < size, "{}: index {} is out of bounds for dim {} with size {}", op, v,
                 dim, size);
    }
  });
}

// A copy of `v` whose stride at `dim` is 0, so the plan skips that dim's
// contribution and the kernel adds index * stride itself.
ArrayView without_dim_stride(const ArrayView& v, int dim) {
  ArrayView out = v;
  out.strides[dim] = 0;
  return out;
}

// Views `v` with another shape (same strides): lets an operand be iterated
// over the index's (possibly smaller) shape.
ArrayView with_shape(const ArrayView& v, const Shape& shape) {
  ArrayView out = v;
  out.shape = shape;
  return out;
}

// dst[p] = src[p with coordinate dim replaced by index[p]], over dst's shape.
// `index` must already be shaped (and broadcast) like dst.
void gather_elements(const ArrayView& dst, const ArrayView& src, int dim, const ArrayView& index) {
  const ArrayView src_view = with_shape(without_dim_stride(src, dim), dst.shape);
  const auto plan = make_loop_plan<3>({&dst, &index, &src_view});
  const int64_t src_dim_stride = src.strides[dim];
  dispatch_dtype(dst.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = dst.ptr<T>();
    const int64_t* idx = index.ptr<int64_t>();
    const T* in = src.ptr<T>();
    const int64_t so = plan.inner_stride(0), si = plan.inner_stride(1), ss = plan.inner_stride(2);
    run_plan(plan, kGrainCheap, [&](const int64_t* off, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        out[off[0] + i * so] = in[off[2] + i * ss + idx[off[1] + i * si] * src_dim_stride];
    });
  });
}

using checks::check_index_dim;

}  // namespace

void CpuBackend::index_select(const ArrayView& dst, const ArrayView& src, int dim,
                              const ArrayView& index) {
  const char* op = "index_select";
  TIDE_CHECK(dst.dtype == src.dtype, "{}: output dtype {} differs from input dtype {}", op,
             dst.dtype, src.dtype);
  TIDE_CHECK(index.rank() <= 1, "{}: index must be 0-D or 1-D, got shape {}", op, index.shape);
  if (src.rank() == 0) {  // a scalar behaves as a 1-element vector
    TIDE_CHECK(index.numel() == 1 && dst.numel() == 1, "{}: bad shapes for a scalar input", op);
    check_indices(op, index, dim, 1);
    copy(dst, src);
    return;
  }
  check_index_dim(op, dim, src.rank());
  bool ok = dst.rank() == src.rank() && dst.shape[dim] == index.numel();
  for (int d = 0; ok && d < src.rank(); ++d) ok = d == dim || dst.shape[d] == src.shape[d];
  TIDE_CHECK(ok, "{}: output shape {} does not fit input {} and index {} (dim {})", op, dst.shape,
             src.shape, index.shape, dim);
  check_indices(op, index, dim, src.shape[dim]);
  if (dst.numel() == 0) return;
  // The index varies along dim only: view it with dst's shape and stride 0 elsewhere.
  ArrayView index_view = index;
  index_view.shape = dst.shape;
  index_view.strides = Shape::filled(dst.rank(), 0);
  index_view.strides[dim] = index.rank() == 1 ? index.strides[0] : 0;
  gather_elements(dst, src, dim, index_view);
}

void CpuBackend::gather(const ArrayView& dst, const ArrayView& src, int dim,
                        const ArrayView& index) {
  const char* op = "gather";
  TIDE_CHECK(dst.dtype == src.dtype, "{}: output dtype {} differs from input dtype {}", op,
             dst.dtype, src.dtype);
  if (src.rank() == 0) {
    TIDE_CHECK(index.numel() == 1 && dst.numel() == 1, "{}: bad shapes for a scalar input", op);
    check_indices(op, index, dim, 1);
    copy(dst, src);
    return;
  }
  check_index_dim(op, dim, src.rank());
  bool ok = index.shape == dst.shape && dst.rank() == src.rank();
  for (int d = 0; ok && d < src.rank(); ++d) ok = d == dim || dst.shape[d] <= src.shape[d];
  TIDE_CHECK(ok, "{}: index shape {} and output shape {} do not fit input shape {} (dim {})", op,
             index.shape, dst.shape, src.shape, dim);
  check_indices(op, index, dim, src.shape[dim]);
  if (dst.numel() == 0) return;
  gather_elements(dst, src, dim, index);
}

void CpuBackend::scatter_add(const ArrayView& dst, int dim, const ArrayView& index,
                             const ArrayView& src) {
  const char* op = "scatter_add";
  TIDE_CHECK(dst.dtype == src.dtype && dst.dtype != DType::Bool,
             "{}: unsupported dtypes (input {}, output {})", op, src.dtype, dst.dtype);
  if (dst.rank() == 0) {
    TIDE_CHECK(index.numel() <= 1 && src.numel() >= index.numel(),
               "{}: bad shapes for a scalar output", op);
    check_indices(op, index, dim, 1);
    if (index.numel() == 1) binary(BinaryOp::Add, dst, dst, with_shape(src, dst.shape), 0, 0);
    return;
  }
  check_index_dim(op, dim, dst.rank());
  bool ok = index.rank() == dst.rank() && src.rank() == dst.rank();
  for (int d = 0; ok && d < dst.rank(); ++d)
    ok = index.shape[d] <= src.shape[d] && (d == dim || index.shape[d] <= dst.shape[d]);
  TIDE_CHECK(ok, "{}: index shape {} does not fit output {} and source {} (dim {})", op,
             index.shape, dst.shape, src.shape, dim);
  check_indices(op, index, dim, dst.shape[dim]);
  if (index.numel() == 0) return;
  const ArrayView src_view = with_shape(src, index.shape);
  const ArrayView dst_view = with_shape(without_dim_stride(dst, dim), index.shape);
  const auto plan = make_loop_plan<3>({&index, &src_view, &dst_view});
  const int64_t dst_dim_stride = dst.strides[dim];
  dispatch_dtype(dst.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      T* out = dst.ptr<T>();
      const int64_t* idx = index.ptr<int64_t>();
      const T* in = src.ptr<T>();
      const int64_t si = plan.inner_stride(0), ss = plan.inner_stride(1), sd = plan.inner_stride(2);
      // Serial, in index order: two index entries may hit the same element.
      for_each_row(plan, 0, plan.numel, [&](const int64_t* off, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          out[off[2] + i * sd + idx[off[0] + i * si] * dst_dim_stride] += in[off[1] + i * ss];
      });
    }
  });
}

}  // namespace tide::cpu
