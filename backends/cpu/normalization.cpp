// softmax and layer_norm, forward and backward, over the last dim of
// contiguous tensors: each row of C elements is independent, so rows are
// split across threads and the results do not depend on the thread count.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cmath>
#include <limits>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/onednn.h"

namespace tide::cpu {

namespace {

using checks::check_contiguous;
using checks::check_float;
using checks::check_row_vector;
using checks::Rows;
using checks::rows_of;

// One row of softmax (or log-softmax): shift by the max, exponentiate, normalise.
template <typename T>
TIDE_ALWAYS_INLINE void softmax_row(T* y, const T* x, int64_t c, bool log) {
  T max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : max)
  for (int64_t j = 0; j < c; ++j) max = x[j] > max ? x[j] : max;
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < c; ++j) {
    const T e = fm::exp(x[j] - max);
    sum += e;
    y[j] = e;
  }
  if (log) {
    const T shift = max + fm::log(sum);
    for (int64_t j = 0; j < c; ++j) y[j] = x[j] - shift;
  } else {
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < c; ++j) y[j] *= inv;
  }
}

// softmax:     grad_x = y * (g - sum(g * y))
// log_softmax: grad_x = g - exp(y) * sum(g)
template <typename T>
TIDE_ALWAYS_INLINE void softmax_backward_row(T* gx, const T* g, const T* y, int64_t c, bool log) {
  T sum = 0;
  if (log) {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < c; ++j) sum += g[j];
    for (int64_t j = 0; j < c; ++j) gx[j] = g[j] - fm::exp(y[j]) * sum;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < c; ++j) sum += g[j] * y[j];
    for (int64_t j = 0; j < c; ++j) gx[j] = y[j] * (g[j] - sum);
  }
}

// The row loops run inside one function compiled per instruction set, so a
// short row costs a loop iteration rather than a call.
template <typename T>
TIDE_VECTOR_CLONES void softmax_row_range(T* y, const T* x, int64_t r0, int64_t r1, int64_t c,
                                          bool log) {
  for (int64_t r = r0; r < r1; ++r) softmax_row(y + r * c, x + r * c, c, log);
}

template <typename T>
TIDE_VECTOR_CLONES void softmax_backward_row_range(T* gx, const T* g, const T* y, int64_t r0,
                                                   int64_t r1, int64_t c, bool log) {
  for (int64_t r = r0; r < r1; ++r) softmax_backward_row(gx + r * c, g + r * c, y + r * c, c, log);
}

template <typename T>
void softmax_rows(T* y, const T* x, Rows rows, bool log) {
  const int64_t c = rows.length;
  parallel_for(rows.count, std::max<int64_t>(1, kGrainCostly / c),
               [&](int64_t r0, int64_t r1) { softmax_row_range(y, x, r0, r1, c, log); });
}

template <typename T>
void softmax_backward_rows(T* gx, const T* g, const T* y, Rows rows, bool log) {
  const int64_t c = rows.length;
  parallel_for(rows.count, std::max<int64_t>(1, kGrainCostly / c), [&](int64_t r0, int64_t r1) {
    softmax_backward_row_range(gx, g, y, r0, r1, c, log);
  });
}

}  // namespace

void CpuBackend::softmax(const ArrayView& dst, const ArrayView& src, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_float(op, src.dtype);
  check_contiguous(op, "src", src, src, src.dtype);
  check_contiguous(op, "dst", dst, src, src.dtype);
  const Rows rows = rows_of(src);
  if (src.numel() == 0) return;
  if (src.dtype == DType::Float32) {
    if (onednn::try_softmax(dst, src, log)) return;
    return softmax_rows(dst.ptr<float>(), src.ptr<float>(), rows, log);
  }
  softmax_rows(dst.ptr<double>(), src.ptr<double>(), rows, log);
}

void CpuBackend::softmax_backward(const ArrayView& grad_src, const ArrayView& grad_dst,
                                  const ArrayView& dst, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_float(op, dst.dtype);
  check_contiguous(op, "dst", dst, dst, dst.dtype);
  check_contiguous(op, "grad_dst", grad_dst, dst, dst.dtype);
  check_contiguous(op, "grad_src", grad_src, dst, dst.dtype);
  const Rows rows = rows_of(dst);
  if (dst.numel() == 0) return;
  if (dst.dtype == DType::Float32) {
    return softmax_backward_rows(grad_src.ptr<float>(), grad_dst.ptr<float>(), dst.ptr<float>(),
                                 rows, log);
  }
  softmax_backward_rows(grad_src.ptr<double>(), grad_dst.ptr<double>(), dst.ptr<double>(), rows,
                        log);
}

namespace {

// One row of layer norm. The variance is taken around the mean in a second
// pass (not as E[x^2] - E[x]^2), so rows with a large mean keep their
// accuracy; sums run in T like PyTorch's (double sums of short rows were
// latency bound and 2x slower).
template <typename T>
TIDE_ALWAYS_INLINE void layer_norm_row(T* y, T& mean_out, T& rstd_out, const T* x, const T* w,
                                       const T* b, int64_t c, double eps) {
  // Summing x - x[0] rather than x keeps the sum's rounding error at the
  // scale of the row's spread, not of its mean (a row around 1000 lost
  // several digits of its mean when the sum was not vectorised, at -O1).
  const T shift = x[0];
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < c; ++j) sum += x[j] - shift;
  const T m = shift + sum / T(c);
  T sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < c; ++j) sq += (x[j] - m) * (x[j] - m);
  const T s = T(1) / std::sqrt(sq / T(c) + T(eps));
  mean_out = m;
  rstd_out = s;
  if (w != nullptr && b != nullptr) {
    for (int64_t j = 0; j < c; ++j) y[j] = (x[j] - m) * s * w[j] + b[j];
  } else if (w != nullptr) {
    for (int64_t j = 0; j < c; ++j) y[j] = (x[j] - m) * s * w[j];
  } else if (b != nullptr) {
    for (int64_t j = 0; j < c; ++j) y[j] = (x[j] - m) * s + b[j];
  } else {
    for (int64_t j = 0; j < c; ++j) y[j] = (x[j] - m) * s;
  }
}

// grad_x for one row. With xhat = (x - mean) * rstd and dy = g * w:
//   grad_x = rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
// kHasWeight is a template argument: a `w != nullptr ? g * w : g` inside the
// loop kept GCC from vectorizing the unweighted case (4x slower).
template <bool kHasWeight, typename T>
TIDE_ALWAYS_INLINE void layer_norm_backward_row(T* gx, const T* g, const T* x, T m, T s, const T* w,
                                                int64_t c) {
  T sum_dy = 0, sum_dy_xhat = 0;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
  for (int64_t j = 0; j < c; ++j) {
    const T dy = kHasWeight ? g[j] * w[j] : g[j];
    sum_dy += dy;
    sum_dy_xhat += dy * ((x[j] - m) * s);
  }
  const T a = sum_dy / T(c), b = sum_dy_xhat / T(c);
  for (int64_t j = 0; j < c; ++j) {
    const T dy = kHasWeight ? g[j] * w[j] : g[j];
    gx[j] = s * (dy - a - (x[j] - m) * s * b);
  }
}

// grad_w += g * xhat and grad_b += g over one row, for columns [0, width).
template <typename T>
TIDE_VECTOR_CLONES void accumulate_param_grads(double* acc_w, double* acc_b, const T* g, const T* x,
                                               T m, T s, int64_t width) {
  for (int64_t j = 0; j < width; ++j) {
    acc_w[j] += double(g[j] * ((x[j] - m) * s));
    acc_b[j] += double(g[j]);
  }
}

template <typename T>
TIDE_VECTOR_CLONES void layer_norm_row_range(T* y, T* mean, T* rstd, const T* x, const T* w,
                                             const T* b, int64_t r0, int64_t r1, int64_t c,
                                             double eps) {
  for (int64_t r = r0; r < r1; ++r)
    layer_norm_row(y + r * c, mean[r], rstd[r], x + r * c, w, b, c, eps);
}

template <typename T>
TIDE_VECTOR_CLONES void layer_norm_backward_row_range(T* gx, const T* g, const T* x, const T* mean,
                                                      const T* rstd, const T* w, int64_t r0,
                                                      int64_t r1, int64_t c) {
  if (w != nullptr) {
    for (int64_t r = r0; r < r1; ++r)
      layer_norm_backward_row<true>(gx + r * c, g + r * c, x + r * c, mean[r], rstd[r], w, c);
  } else {
    for (int64_t r = r0; r < r1; ++r)
      layer_norm_backward_row<false>(gx + r * c, g + r * c, x + r * c, mean[r], rstd[r], w, c);
  }
}

// Layer norm reads each row twice and writes it once, with a division and a
// square root per row: a second thread pays from 8K elements (256x64 forward:
// 8.8 us on one thread, 5.0 us on two; bench/bench_onednn.cpp), not only from
// kGrainCheap.
inline constexpr int64_t kLayerNormGrain = 8192;

template <typename T>
void layer_norm_rows(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, Rows rows,
                     double eps) {
  const int64_t c = rows.length;
  parallel_for(rows.count, std::max<int64_t>(1, kLayerNormGrain / c), [&](int64_t r0, int64_t r1) {
    layer_norm_row_range(y, mean, rstd, x, w, b, r0, r1, c, eps);
  });
}

//   grad_w = sum over rows of g * xhat,  grad_b = sum over rows of g
template <typename T>
void layer_norm_backward_rows(T* gx, T* gw, T* gb, const T* g, const T* x, const T* mean,
                              const T* rstd, const T* w, Rows rows) {
  const int64_t c = rows.length;
  parallel_for(rows.count, std::max<int64_t>(1, kGrainCheap / c), [&](int64_t r0, int64_t r1) {
    layer_norm_backward_row_range(gx, g, x, mean, rstd, w, r0, r1, c);
  });
  if (gw == nullptr && gb == nullptr) return;
  // Column sums: each thread owns chunks of columns and adds rows in order, so
  // the result does not depend on the thread count.
  constexpr int64_t kChunk = 256;
  const int64_t n_chunks = (c + kChunk - 1) / kChunk;
  const int64_t grain = std::max<int64_t>(1, kGrainCheap / (rows.count * kChunk));
  parallel_for(n_chunks, grain, [&](int64_t c0, int64_t c1) {
    double acc_w[kChunk], acc_b[kChunk];
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t j0 = chunk * kChunk, width = std::min(kChunk, c - j0);
      std::fill_n(acc_w, width, 0.0);
      std::fill_n(acc_b, width, 0.0);
      for (int64_t r = 0; r < rows.count; ++r)
        accumulate_param_grads(acc_w, acc_b, g + r * c + j0, x + r * c + j0, mean[r], rstd[r],
                               width);
      for (int64_t j = 0; j < width; ++j) {
        if (gw != nullptr) gw[j0 + j] = T(acc_w[j]);
        if (gb != nullptr) gb[j0 + j] = T(acc_b[j]);
      }
    }
  });
}

}  // namespace

void CpuBackend::layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                            const ArrayView& x, const ArrayView& weight, const ArrayView& bias,
                            double eps) {
  const Rows rows = checks::check_layer_norm(dst, mean, rstd, x, weight, bias);
  if (x.numel() == 0) return;
  // oneDNN where it is faster: float32 with a weight, from 64K elements
  // (numbers in onednn.h; the backward stays here, oneDNN is slower).
  if (x.dtype == DType::Float32 && weight.data != nullptr &&
      x.numel() >= onednn::kLayerNormMinElements &&
      onednn::try_layer_norm(dst, mean, rstd, x, weight, bias, eps))
    return;
  dispatch_dtype(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      layer_norm_rows(dst.ptr<T>(), mean.ptr<T>(), rstd.ptr<T>(), x.ptr<const T>(),
                      weight.ptr<const T>(), bias.ptr<const T>(), rows, eps);
    }
  });
}

void CpuBackend::layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_weight,
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
  dispatch_dtype(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      layer_norm_backward_rows(grad_x.ptr<T>(), grad_weight.ptr<T>(), grad_bias.ptr<T>(),
                               grad_dst.ptr<const T>(), x.ptr<const T>(), mean.ptr<const T>(),
                               rstd.ptr<const T>(), weight.ptr<const T>(), rows);
    }
  });
}

}  // namespace tide::cpu
