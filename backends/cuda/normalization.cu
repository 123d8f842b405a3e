// softmax and layer_norm, forward and backward, over contiguous rows.
//
// A row is handled by one warp (rows up to kWarpRowLimit elements, 8 rows per
// block) or by a whole block of 8 warps (longer rows). Row sums use a fixed
// butterfly of warp shuffles (then a fixed sum over the warps), so results
// are reproducible. Accumulation is in T, like the CPU's row kernels; the
// layer-norm parameter gradients are column sums in double, as on the CPU.
#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

constexpr int64_t kWarpRowLimit = 1024;
constexpr int kBlockWarps = kThreads / 32;

// Where this thread is: which row slot of the block, its lane within the
// row, and how many threads share a row.
template <int kWarps>
struct RowThreads {
  static constexpr int kPerRow = 32 * kWarps;
  static constexpr int kRowsPerBlock = kBlockWarps / kWarps;
  __device__ static int slot() { return threadIdx.x / kPerRow; }
  __device__ static int lane() { return threadIdx.x % kPerRow; }
};

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {  // ignores NaN like the CPU's `x > max ? x : max`
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return b > a ? b : a;
  }
};

// Combines v over the threads of one row; every thread gets the result.
// `shared` holds one slot per warp of the block.
template <int kWarps, typename T, typename Op>
__device__ T row_reduce(T v, Op op, T* shared) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if constexpr (kWarps == 1) {
    return v;
  } else {
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) shared[warp] = v;
    __syncthreads();
    const int first = (warp / kWarps) * kWarps;
    T total = shared[first];
    for (int w = 1; w < kWarps; ++w) total = op(total, shared[first + w]);
    __syncthreads();  // shared is reused by the next reduction
    return total;
  }
}

// Loops `row` over the rows this thread's row slot handles. The trip count is
// the same for every thread of a row, as row_reduce's __syncthreads needs.
#define TIDE_FOR_EACH_ROW(R, rows, row)                                               \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * R::kRowsPerBlock + R::slot(); \
       row < (rows); row += static_cast<int64_t>(gridDim.x) * R::kRowsPerBlock)

template <typename T, int kWarps>
__global__ void __launch_bounds__(kThreads)
    softmax_kernel(T* dst, const T* src, int64_t rows, int64_t cols, bool log) {
  using R = RowThreads<kWarps>;
  __shared__ T shared[kBlockWarps];
  TIDE_FOR_EACH_ROW(R, rows, row) {
    const T* x = src + row * cols;
    T* y = dst + row * cols;
    T max = -T(INFINITY);
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) max = x[j] > max ? x[j] : max;
    max = row_reduce<kWarps>(max, MaxOp{}, shared);
    T sum = 0;
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) {
      const T e = fm::exp(x[j] - max);
      sum += e;
      if (!log) y[j] = e;
    }
    sum = row_reduce<kWarps>(sum, SumOp{}, shared);
    if (log) {
      const T shift = max + fm::log(sum);
      for (int64_t j = R::lane(); j < cols; j += R::kPerRow) y[j] = x[j] - shift;
    } else {
      const T inv = T(1) / sum;
      for (int64_t j = R::lane(); j < cols; j += R::kPerRow) y[j] *= inv;
    }
  }
}

// softmax:     grad_x = y * (g - sum(g * y))
// log_softmax: grad_x = g - exp(y) * sum(g)
template <typename T, int kWarps>
__global__ void __launch_bounds__(kThreads)
    softmax_backward_kernel(T* grad_src, const T* grad_dst, const T* dst, int64_t rows,
                            int64_t cols, bool log) {
  using R = RowThreads<kWarps>;
  __shared__ T shared[kBlockWarps];
  TIDE_FOR_EACH_ROW(R, rows, row) {
    const T* g = grad_dst + row * cols;
    const T* y = dst + row * cols;
    T* gx = grad_src + row * cols;
    T sum = 0;
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) sum += log ? g[j] : g[j] * y[j];
    sum = row_reduce<kWarps>(sum, SumOp{}, shared);
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow)
      gx[j] = log ? g[j] - fm::exp(y[j]) * sum : y[j] * (g[j] - sum);
  }
}

// The variance is taken around the mean in a second pass, as on the CPU.
template <typename T, int kWarps>
__global__ void __launch_bounds__(kThreads)
    layer_norm_kernel(T* dst, T* mean, T* rstd, const T* src, const T* w, const T* b, int64_t rows,
                      int64_t cols, double eps) {
  using R = RowThreads<kWarps>;
  __shared__ T shared[kBlockWarps];
  TIDE_FOR_EACH_ROW(R, rows, row) {
    const T* x = src + row * cols;
    T* y = dst + row * cols;
    T sum = 0;
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) sum += x[j];
    const T m = row_reduce<kWarps>(sum, SumOp{}, shared) / T(cols);
    T sq = 0;
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) sq += (x[j] - m) * (x[j] - m);
    const T s = T(1) / fm::sqrt(row_reduce<kWarps>(sq, SumOp{}, shared) / T(cols) + T(eps));
    if (R::lane() == 0) {
      mean[row] = m;
      rstd[row] = s;
    }
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) {
      T v = (x[j] - m) * s;
      if (w != nullptr) v = v * w[j];
      if (b != nullptr) v = v + b[j];
      y[j] = v;
    }
  }
}

// grad_x for each row. With xhat = (x - mean) * rstd and dy = g * w:
//   grad_x = rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
template <typename T, int kWarps>
__global__ void __launch_bounds__(kThreads)
    layer_norm_backward_kernel(T* grad_x, const T* grad_dst, const T* src, const T* mean,
                               const T* rstd, const T* w, int64_t rows, int64_t cols) {
  using R = RowThreads<kWarps>;
  __shared__ T shared[kBlockWarps];
  TIDE_FOR_EACH_ROW(R, rows, row) {
    const T* g = grad_dst + row * cols;
    const T* x = src + row * cols;
    T* gx = grad_x + row * cols;
    const T m = mean[row], s = rstd[row];
    T sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) {
      const T dy = w != nullptr ? g[j] * w[j] : g[j];
      sum_dy += dy;
      sum_dy_xhat += dy * ((x[j] - m) * s);
    }
    const T a = row_reduce<kWarps>(sum_dy, SumOp{}, shared) / T(cols);
    const T b = row_reduce<kWarps>(sum_dy_xhat, SumOp{}, shared) / T(cols);
    for (int64_t j = R::lane(); j < cols; j += R::kPerRow) {
      const T dy = w != nullptr ? g[j] * w[j] : g[j];
      gx[j] = s * (dy - a - (x[j] - m) * s * b);
    }
  }
}

#undef TIDE_FOR_EACH_ROW

// Rows per chunk of the parameter-gradient column sums.
constexpr int64_t kParamChunkRows = 64;

// Chunk partials: scratch_w[c][j] = sum over the chunk's rows of g * xhat,
// scratch_b[c][j] = sum of g, in double. Consecutive threads take consecutive
// columns (coalesced reads).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_param_partial_kernel(double* scratch_w, double* scratch_b, const T* grad_dst,
                                    const T* src, const T* mean, const T* rstd, int64_t rows,
                                    int64_t cols, int64_t n_chunks) {
  for (int64_t t = global_thread(); t < cols * n_chunks; t += grid_threads()) {
    const int64_t j = t % cols, c = t / cols;
    const int64_t r0 = c * kParamChunkRows;
    const int64_t r1 = r0 + kParamChunkRows < rows ? r0 + kParamChunkRows : rows;
    double acc_w = 0, acc_b = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const T g = grad_dst[r * cols + j];
      acc_w += double(g * ((src[r * cols + j] - mean[r]) * rstd[r]));
      acc_b += double(g);
    }
    scratch_w[c * cols + j] = acc_w;
    scratch_b[c * cols + j] = acc_b;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_param_combine_kernel(T* grad_w, T* grad_b, const double* scratch_w,
                                    const double* scratch_b, int64_t cols, int64_t n_chunks) {
  for (int64_t j = global_thread(); j < cols; j += grid_threads()) {
    double acc_w = 0, acc_b = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      acc_w += scratch_w[c * cols + j];
      acc_b += scratch_b[c * cols + j];
    }
    if (grad_w != nullptr) grad_w[j] = T(acc_w);
    if (grad_b != nullptr) grad_b[j] = T(acc_b);
  }
}

// Launches kernel<T, 1> (a warp per row) or kernel<T, 8> (a block per row).
template <int kWarps>
unsigned row_blocks(int64_t rows) {
  const int64_t per_block = kBlockWarps / kWarps;
  const int64_t blocks = (rows + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

#define TIDE_LAUNCH_ROWS(kernel, T, cols, rows, stream, ...)                                       \
  do {                                                                                             \
    if ((cols) <= kWarpRowLimit)                                                                   \
      kernel<T, 1><<<row_blocks<1>(rows), kThreads, 0, stream>>>(__VA_ARGS__);                     \
    else                                                                                           \
      kernel<T, kBlockWarps><<<row_blocks<kBlockWarps>(rows), kThreads, 0, stream>>>(__VA_ARGS__); \
  } while (0)

}  // namespace

void softmax(void* dst, const void* src, int64_t rows, int64_t cols, bool log, ElemType type,
             Stream stream) {
  if (type == ElemType::Float32) {
    TIDE_LAUNCH_ROWS(softmax_kernel, float, cols, rows, stream, static_cast<float*>(dst),
                     static_cast<const float*>(src), rows, cols, log);
  } else {
    TIDE_LAUNCH_ROWS(softmax_kernel, double, cols, rows, stream, static_cast<double*>(dst),
                     static_cast<const double*>(src), rows, cols, log);
  }
}

void softmax_backward(void* grad_src, const void* grad_dst, const void* dst, int64_t rows,
                      int64_t cols, bool log, ElemType type, Stream stream) {
  if (type == ElemType::Float32) {
    TIDE_LAUNCH_ROWS(softmax_backward_kernel, float, cols, rows, stream,
                     static_cast<float*>(grad_src), static_cast<const float*>(grad_dst),
                     static_cast<const float*>(dst), rows, cols, log);
  } else {
    TIDE_LAUNCH_ROWS(softmax_backward_kernel, double, cols, rows, stream,
                     static_cast<double*>(grad_src), static_cast<const double*>(grad_dst),
                     static_cast<const double*>(dst), rows, cols, log);
  }
}

void layer_norm(void* dst, void* mean, void* rstd, const void* x, const void* weight,
                const void* bias, int64_t rows, int64_t cols, double eps, ElemType type,
                Stream stream) {
  if (type == ElemType::Float32) {
    using T = float;
    TIDE_LAUNCH_ROWS(layer_norm_kernel, T, cols, rows, stream, static_cast<T*>(dst),
                     static_cast<T*>(mean), static_cast<T*>(rstd), static_cast<const T*>(x),
                     static_cast<const T*>(weight), static_cast<const T*>(bias), rows, cols, eps);
  } else {
    using T = double;
    TIDE_LAUNCH_ROWS(layer_norm_kernel, T, cols, rows, stream, static_cast<T*>(dst),
                     static_cast<T*>(mean), static_cast<T*>(rstd), static_cast<const T*>(x),
                     static_cast<const T*>(weight), static_cast<const T*>(bias), rows, cols, eps);
  }
}

int64_t layer_norm_param_chunks(int64_t rows) {
  return rows == 0 ? 1 : (rows + kParamChunkRows - 1) / kParamChunkRows;
}

namespace {

template <typename T>
void layer_norm_backward_typed(T* gx, T* gw, T* gb, const T* g, const T* x, const T* mean,
                               const T* rstd, const T* w, int64_t rows, int64_t cols,
                               double* scratch, Stream stream) {
  TIDE_LAUNCH_ROWS(layer_norm_backward_kernel, T, cols, rows, stream, gx, g, x, mean, rstd, w, rows,
                   cols);
  if (gw == nullptr && gb == nullptr) return;
  const int64_t n_chunks = layer_norm_param_chunks(rows);
  double* scratch_w = scratch;
  double* scratch_b = scratch + n_chunks * cols;
  layer_norm_param_partial_kernel<T><<<blocks_for(cols * n_chunks), kThreads, 0, stream>>>(
      scratch_w, scratch_b, g, x, mean, rstd, rows, cols, n_chunks);
  layer_norm_param_combine_kernel<T>
      <<<blocks_for(cols), kThreads, 0, stream>>>(gw, gb, scratch_w, scratch_b, cols, n_chunks);
}

}  // namespace

void layer_norm_backward(void* grad_x, void* grad_weight, void* grad_bias, const void* grad_dst,
                         const void* x, const void* mean, const void* rstd, const void* weight,
                         int64_t rows, int64_t cols, ElemType type, double* scratch,
                         Stream stream) {
  if (type == ElemType::Float32) {
    using T = float;
    layer_norm_backward_typed<T>(
        static_cast<T*>(grad_x), static_cast<T*>(grad_weight), static_cast<T*>(grad_bias),
        static_cast<const T*>(grad_dst), static_cast<const T*>(x), static_cast<const T*>(mean),
        static_cast<const T*>(rstd), static_cast<const T*>(weight), rows, cols, scratch, stream);
  } else {
    using T = double;
    layer_norm_backward_typed<T>(
        static_cast<T*>(grad_x), static_cast<T*>(grad_weight), static_cast<T*>(grad_bias),
        static_cast<const T*>(grad_dst), static_cast<const T*>(x), static_cast<const T*>(mean),
        static_cast<const T*>(rstd), static_cast<const T*>(weight), rows, cols, scratch, stream);
  }
}

}  // namespace tide::cuda::kern
