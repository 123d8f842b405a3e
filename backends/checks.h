// Argument checks shared by every backend's primitives: the parts of the
// contract in backend.h that do not depend on the device, stated once so that
// the CPU and CUDA backends reject bad arguments with the same messages.
#pragma once

#include <cstdint>

#include "backends/backend.h"

namespace tide::checks {

inline void check_same_shape(const char* op, const ArrayView& dst, const ArrayView& src) {
  TIDE_CHECK(dst.shape == src.shape, "{}: input shape {} does not match output shape {}", op,
             src.shape, dst.shape);
}

// where(): a bool condition and branches of the output's dtype, all of dst's shape.
inline void check_where(const ArrayView& dst, const ArrayView& cond, const ArrayView& a,
                        const ArrayView& b) {
  TIDE_CHECK(cond.dtype == DType::Bool, "where: condition must be bool, got {}", cond.dtype);
  TIDE_CHECK(a.dtype == dst.dtype && b.dtype == dst.dtype,
             "where: branches must have the output dtype {}, got {} and {}", dst.dtype, a.dtype,
             b.dtype);
  check_same_shape("where", dst, cond);
  check_same_shape("where", dst, a);
  check_same_shape("where", dst, b);
}

// reduce(): dst has src's rank, with size 1 or src's size in each dim.
inline void check_reduction_shape(const char* op, const ArrayView& dst, const ArrayView& src) {
  bool ok = dst.rank() == src.rank();
  for (int d = 0; ok && d < src.rank(); ++d) ok = dst.shape[d] == src.shape[d] || dst.shape[d] == 1;
  TIDE_CHECK(ok, "{}: output shape {} is not a reduction of input shape {}", op, dst.shape,
             src.shape);
}

// arg_reduce() and cumsum(): dst is src's shape, or size 1 at skip_dim.
inline void check_kept_shape(const char* op, const ArrayView& dst, const ArrayView& src,
                             int skip_dim) {
  bool ok = dst.rank() == src.rank();
  for (int d = 0; ok && d < src.rank(); ++d)
    ok = d == skip_dim ? dst.shape[d] == 1 : dst.shape[d] == src.shape[d];
  TIDE_CHECK(ok, "{}: output shape {} does not fit input shape {} (dim {})", op, dst.shape,
             src.shape, skip_dim);
}

// matmul(): dst[..., M, N] = a[..., M, K] @ b[..., K, N] (+ bias[N]), batch
// dims already broadcast, one dtype throughout.
inline void check_matmul_args(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                              const ArrayView& bias, Epilogue epilogue) {
  const int r = dst.rank();
  bool ok = r >= 2 && a.rank() == r && b.rank() == r;
  for (int d = 0; ok && d < r - 2; ++d)
    ok = a.shape[d] == dst.shape[d] && b.shape[d] == dst.shape[d];
  ok = ok && a.shape[r - 2] == dst.shape[r - 2] && b.shape[r - 1] == dst.shape[r - 1] &&
       a.shape[r - 1] == b.shape[r - 2];
  TIDE_CHECK(ok, "matmul: shapes {} @ {} -> {} do not match", a.shape, b.shape, dst.shape);
  TIDE_CHECK(a.dtype == dst.dtype && b.dtype == dst.dtype,
             "matmul: dtypes {} @ {} -> {} must all be the same", a.dtype, b.dtype, dst.dtype);
  TIDE_CHECK(dst.dtype != DType::Bool, "matmul: unsupported dtype {}", dst.dtype);
  TIDE_CHECK(epilogue == Epilogue::None || is_floating(dst.dtype),
             "matmul: epilogue {} needs a float dtype, got {}", op_name(epilogue), dst.dtype);
  if (bias.data != nullptr) {
    TIDE_CHECK(bias.dtype == dst.dtype && bias.numel() == dst.shape[r - 1] &&
                   (bias.rank() <= 1 || bias.is_contiguous()),
               "matmul: bias must be a contiguous {} vector of {} elements, got {} {}", dst.dtype,
               dst.shape[r - 1], bias.dtype, bias.shape);
  }
}

// --- normalisation (softmax, layer_norm) -------------------------------------

// Rows and row length of a contiguous tensor normalised over its last dim.
struct Rows {
  int64_t count, length;
};

inline Rows rows_of(const ArrayView& v) {
  Rows rows{1, 1};
  for (int d = 0; d < v.rank(); ++d) (d + 1 < v.rank() ? rows.count : rows.length) *= v.shape[d];
  return rows;
}

inline void check_float(const char* op, DType dtype) {
  TIDE_CHECK(is_floating(dtype), "{}: unsupported dtype {}", op, dtype);
}

inline void check_contiguous(const char* op, const char* what, const ArrayView& v,
                             const ArrayView& like, DType dtype) {
  TIDE_CHECK(v.shape == like.shape && v.dtype == dtype && v.is_contiguous(),
             "{}: {} must be a contiguous {} tensor of shape {}, got {} {}", op, what, dtype,
             like.shape, v.dtype, v.shape);
}

// An optional per-row or per-column vector (absent when its data is null).
inline void check_row_vector(const char* op, const char* what, const ArrayView& v, int64_t n,
                             DType dtype) {
  if (v.data == nullptr) return;
  TIDE_CHECK(v.numel() == n && v.dtype == dtype && v.is_contiguous(),
             "{}: {} must be a contiguous {} tensor of {} elements, got {} {}", op, what, dtype, n,
             v.dtype, v.shape);
}

// layer_norm(): contiguous dst like x; mean and rstd one per row; optional
// weight and bias one per column. Returns x's rows.
inline Rows check_layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                             const ArrayView& x, const ArrayView& weight, const ArrayView& bias) {
  const char* op = "layer_norm";
  check_float(op, x.dtype);
  check_contiguous(op, "x", x, x, x.dtype);
  check_contiguous(op, "dst", dst, x, x.dtype);
  const Rows rows = rows_of(x);
  // Zero rows: mean and rstd are empty, so their data may be null.
  TIDE_CHECK(rows.count == 0 || (mean.data != nullptr && rstd.data != nullptr),
             "layer_norm: mean and rstd are required");
  check_row_vector(op, "mean", mean, rows.count, x.dtype);
  check_row_vector(op, "rstd", rstd, rows.count, x.dtype);
  check_row_vector(op, "weight", weight, rows.length, x.dtype);
  check_row_vector(op, "bias", bias, rows.length, x.dtype);
  return rows;
}

// layer_norm_backward(): the forward's checks for the gradients.
inline Rows check_layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_weight,
                                      const ArrayView& grad_bias, const ArrayView& grad_dst,
                                      const ArrayView& x, const ArrayView& mean,
                                      const ArrayView& rstd, const ArrayView& weight) {
  const char* op = "layer_norm_backward";
  check_float(op, x.dtype);
  check_contiguous(op, "x", x, x, x.dtype);
  check_contiguous(op, "grad_dst", grad_dst, x, x.dtype);
  check_contiguous(op, "grad_x", grad_x, x, x.dtype);
  const Rows rows = rows_of(x);
  check_row_vector(op, "mean", mean, rows.count, x.dtype);
  check_row_vector(op, "rstd", rstd, rows.count, x.dtype);
  check_row_vector(op, "weight", weight, rows.length, x.dtype);
  check_row_vector(op, "grad_weight", grad_weight, rows.length, x.dtype);
  check_row_vector(op, "grad_bias", grad_bias, rows.length, x.dtype);
  return rows;
}

// --- linear_weight_grad ----------------------------------------------------------

// linear_weight_grad(): weight_grad[N, K] = grad_out[M, N]^T @ input[M, K] and
// an optional bias_grad[N]; one float dtype; the outputs contiguous.
inline void check_linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                                     const ArrayView& grad_out, const ArrayView& input) {
  const char* op = "linear_weight_grad";
  TIDE_CHECK(grad_out.rank() == 2 && input.rank() == 2 && weight_grad.rank() == 2 &&
                 grad_out.shape[0] == input.shape[0] && weight_grad.shape[0] == grad_out.shape[1] &&
                 weight_grad.shape[1] == input.shape[1],
             "linear_weight_grad: grad_out {} and input {} do not give weight_grad {} "
             "(expected [M, N], [M, K] and [N, K])",
             grad_out.shape, input.shape, weight_grad.shape);
  check_float(op, weight_grad.dtype);
  TIDE_CHECK(grad_out.dtype == weight_grad.dtype && input.dtype == weight_grad.dtype,
             "linear_weight_grad: dtypes grad_out {}, input {}, weight_grad {} must all be the "
             "same",
             grad_out.dtype, input.dtype, weight_grad.dtype);
  check_contiguous(op, "weight_grad", weight_grad, weight_grad, weight_grad.dtype);
  check_row_vector(op, "bias_grad", bias_grad, weight_grad.shape[0], weight_grad.dtype);
}

// --- indexing -------------------------------------------------------------------

inline void check_index_dtype(const char* op, const ArrayView& index) {
  TIDE_CHECK(index.dtype == DType::Int64, "{}: index must be int64, got {}", op, index.dtype);
}

inline void check_index_dim(const char* op, int dim, int rank) {
  TIDE_CHECK(dim >= 0 && dim < rank, "{}: dim {} is out of range for a tensor of rank {}", op, dim,
             rank);
}

// --- random numbers ---------------------------------------------------------------

inline const char* distribution_name(Distribution dist) {
  switch (dist) {
    case Distribution::Uniform:
      return "uniform";
    case Distribution::Normal:
      return "normal";
    case Distribution::Bernoulli:
      return "bernoulli";
    case Distribution::RandInt:
      return "randint";
  }
  return "?";
}

// random(): a contiguous dst of a dtype the distribution can fill.
inline void check_random(const ArrayView& dst, Distribution dist) {
  TIDE_CHECK(dst.is_contiguous(), "random: output must be contiguous, got strides {} for shape {}",
             dst.strides, dst.shape);
  const bool ok = dist == Distribution::Bernoulli ? true
                  : dist == Distribution::RandInt ? dst.dtype != DType::Bool
                                                  : is_floating(dst.dtype);
  TIDE_CHECK(ok, "random: {} cannot fill a {} tensor", distribution_name(dist), dst.dtype);
}

}  // namespace tide::checks
