// matmul: dst[..., M, N] = epilogue(a[..., M, K] @ b[..., K, N] + bias[N]).
//
// Large float32 problems go to oneDNN (onednn.cpp). Everything else (small
// float32, float64, int64) runs the plain loops below:
//   rows_kernel  b and dst rows contiguous: i-k-j order, blocked over k and j
//                so a block of b stays in cache while four rows of dst
//                accumulate from it. A b whose rows are not contiguous (a
//                transposed Linear weight) is first copied into a contiguous
//                buffer: O(K N) copies against O(M N K) multiply-adds.
//   any_kernel   a strided dst (rare): one strided dot product per output.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/onednn.h"

namespace tide::cpu {

namespace {

// One 2-D problem c[M, N] = a[M, K] @ b[K, N], strides in elements.
template <typename T>
struct Gemm {
  int64_t m, n, k;
  const T* a;
  int64_t a_row, a_col;
  const T* b;
  int64_t b_row, b_col;
  T* c;
  int64_t c_row, c_col;
};

template <typename T>
T apply_epilogue(Epilogue epilogue, T x) {
  if constexpr (std::is_floating_point_v<T>) {  // integer matmuls have no epilogue
    switch (epilogue) {
      case Epilogue::None:
        return x;
      case Epilogue::Relu:
        return scalar::relu(x);
      case Epilogue::Tanh:
        return fm::tanh(x);
      case Epilogue::Sigmoid:
        return sigmoid(x);
      case Epilogue::Selu:
        return T(scalar::kSeluScale) * (x > T(0) ? x : T(scalar::kSeluAlpha) * fm::expm1(x));
    }
  }
  return x;
}

// Adds the bias and applies the activation to rows [i0, i1) of c.
template <typename T>
void finish_rows(const Gemm<T>& g, int64_t i0, int64_t i1, const T* bias, Epilogue epilogue) {
  if (bias == nullptr && epilogue == Epilogue::None) return;
  for (int64_t i = i0; i < i1; ++i) {
    T* c = g.c + i * g.c_row;
    if (bias != nullptr)
      for (int64_t j = 0; j < g.n; ++j) c[j * g.c_col] += bias[j];
    if (epilogue != Epilogue::None)
      for (int64_t j = 0; j < g.n; ++j) c[j * g.c_col] = apply_epilogue(epilogue, c[j * g.c_col]);
  }
}

template <typename T>
TIDE_VECTOR_CLONES void rows_kernel(const Gemm<T>& g, int64_t i0, int64_t i1) {
  constexpr int64_t kBlockK = 128, kBlockN = 512;
  for (int64_t i = i0; i < i1; ++i) std::fill_n(g.c + i * g.c_row, g.n, T(0));
  for (int64_t j0 = 0; j0 < g.n; j0 += kBlockN) {
    const int64_t nj = std::min(kBlockN, g.n - j0);
    for (int64_t k0 = 0; k0 < g.k; k0 += kBlockK) {
      const int64_t k1 = std::min(g.k, k0 + kBlockK);
      int64_t i = i0;
      for (; i + 4 <= i1; i += 4) {  // four rows share each load of b
        T* c0 = g.c + i * g.c_row + j0;
        T* c1 = c0 + g.c_row;
        T* c2 = c1 + g.c_row;
        T* c3 = c2 + g.c_row;
        const T* a = g.a + i * g.a_row;
        for (int64_t kk = k0; kk < k1; ++kk) {
          const T* b = g.b + kk * g.b_row + j0;
          const T a0 = a[kk * g.a_col], a1 = a[g.a_row + kk * g.a_col],
                  a2 = a[2 * g.a_row + kk * g.a_col], a3 = a[3 * g.a_row + kk * g.a_col];
          for (int64_t j = 0; j < nj; ++j) {
            const T bj = b[j];
            c0[j] += a0 * bj;
            c1[j] += a1 * bj;
            c2[j] += a2 * bj;
            c3[j] += a3 * bj;
          }
        }
      }
      for (; i < i1; ++i) {
        T* c = g.c + i * g.c_row + j0;
        for (int64_t kk = k0; kk < k1; ++kk) {
          const T* b = g.b + kk * g.b_row + j0;
          const T av = g.a[i * g.a_row + kk * g.a_col];
          for (int64_t j = 0; j < nj; ++j) c[j] += av * b[j];
        }
      }
    }
  }
}

template <typename T>
void any_kernel(const Gemm<T>& g, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      T acc = 0;
      for (int64_t kk = 0; kk < g.k; ++kk)
        acc += g.a[i * g.a_row + kk * g.a_col] * g.b[kk * g.b_row + j * g.b_col];
      g.c[i * g.c_row + j * g.c_col] = acc;
    }
}

template <typename T>
void gemm_rows(const Gemm<T>& g, int64_t i0, int64_t i1, const T* bias, Epilogue epilogue) {
  if (g.k == 0) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < g.n; ++j) g.c[i * g.c_row + j * g.c_col] = T(0);
  } else if (g.b_col == 1 && g.c_col == 1) {
    rows_kernel(g, i0, i1);
  } else {
    any_kernel(g, i0, i1);
  }
  finish_rows(g, i0, i1, bias, epilogue);
}

// Runs every batch of the problem, split into tasks of kRowsPerTask rows.
template <typename T>
void matmul_loops(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                  const ArrayView& bias, Epilogue epilogue) {
  constexpr int64_t kRowsPerTask = 16;
  const int r = dst.rank();
  LoopPlan<3> batches;  // operands: dst, a, b
  batches.numel = 1;
  for (int d = 0; d < r - 2; ++d) {
    batches.push_dim(dst.shape[d], {dst.strides[d], a.strides[d], b.strides[d]});
    batches.numel *= dst.shape[d];
  }
  Gemm<T> g{dst.shape[r - 2], dst.shape[r - 1],   a.shape[r - 1],
            nullptr,          a.strides[r - 2],   a.strides[r - 1],
            nullptr,          b.strides[r - 2],   b.strides[r - 1],
            nullptr,          dst.strides[r - 2], dst.strides[r - 1]};
  const T* bias_data = bias.ptr<const T>();
  const int64_t row_tasks = (g.m + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t flops_per_task =
      std::max<int64_t>(1, kRowsPerTask * g.n * std::max<int64_t>(g.k, 1));
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / flops_per_task);
  parallel_for(batches.numel * row_tasks, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t off[3];
      offsets_at(batches, t / row_tasks, off);
      Gemm<T> batch = g;
      batch.c = dst.ptr<T>() + off[0];
      batch.a = a.ptr<const T>() + off[1];
      batch.b = b.ptr<const T>() + off[2];
      const int64_t i0 = (t % row_tasks) * kRowsPerTask;
      gemm_rows(batch, i0, std::min(g.m, i0 + kRowsPerTask), bias_data, epilogue);
    }
  });
}

using checks::check_matmul_args;

// A contiguous copy of b's matrices (batch dims that b broadcasts with stride
// 0 stay broadcast, so they are copied once).
struct PackedOperand {
  std::vector<char> storage;
  ArrayView view;
};

PackedOperand pack_rows(CpuBackend& backend, const ArrayView& b) {
  PackedOperand packed;
  packed.view = b;
  int64_t stride = 1;
  for (int d = b.rank() - 1; d >= 0; --d) {
    const bool broadcast = d < b.rank() - 2 && b.strides[d] == 0;
    packed.view.strides[d] = broadcast ? 0 : stride;
    if (!broadcast) stride *= b.shape[d];
  }
  packed.storage.resize(stride * dtype_size(b.dtype));
  packed.view.data = packed.storage.data();
  backend.copy(packed.view, b);
  return packed;
}

}  // namespace

void CpuBackend::matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                        const ArrayView& bias, Epilogue epilogue) {
  check_matmul_args(dst, a, b, bias, epilogue);
  if (dst.numel() == 0) return;
  if (dst.dtype == DType::Float32 && onednn::try_matmul(dst, a, b, bias, epilogue)) return;
  const int r = dst.rank();
  if (b.strides[r - 1] != 1 && b.shape[r - 1] > 1 && dst.strides[r - 1] == 1) {
    const PackedOperand packed = pack_rows(*this, b);
    return matmul(dst, a, packed.view, bias, epilogue);
  }
  switch (dst.dtype) {
    case DType::Float32:
      return matmul_loops<float>(dst, a, b, bias, epilogue);
    case DType::Float64:
      return matmul_loops<double>(dst, a, b, bias, epilogue);
    case DType::Int64:
      return matmul_loops<int64_t>(dst, a, b, bias, epilogue);
    case DType::Bool:
      break;
  }
}

// linear_weight_grad is Backend's default: matmul over a transposed view
// (oneDNN's matmul for float32 above its threshold) and a row sum, which
// accumulates float32 in double. oneDNN's inner_product backward weights
// (onednn::try_linear_weight_grad, both in one primitive) is not faster: its
// time / the default's, min of 200 reps on the loaded 2-core build machine,
// was 1.13-1.30 at [256, 64], 0.99-1.01 at [256, 256], 0.86-1.05 at
// [1024, 64] and 1.01 at [1024, 256] (batch, width), and it sums the bias
// gradient in float32. So it stays unrouted.

}  // namespace tide::cpu
