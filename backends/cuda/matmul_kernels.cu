// The kernels around cuBLASLt: bias + activation for the epilogues cuBLASLt
// lacks (tanh, sigmoid, selu, and any epilogue on float64), and an int64
// matmul, which no cuBLAS routine offers.
#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

// The activations of backends/cpu/matmul.cpp's apply_epilogue.
template <typename T>
__device__ inline T apply_epilogue(Epilogue epilogue, T x) {
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
  return x;
}

// Element i of the (row-major) space is in column i % cols: the loop keeps
// dst's logical order even when it walks strided memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bias_epilogue_kernel(Loop<1> loop, T* dst, const T* bias, int64_t cols, Epilogue epilogue) {
  for (int64_t i = global_thread(); i < loop.numel; i += grid_threads()) {
    T* p = dst + (loop.contiguous ? i : loop_offset(loop, 0, i));
    T v = *p;
    if (bias != nullptr) v += bias[i % cols];
    *p = apply_epilogue(epilogue, v);
  }
}

__global__ void __launch_bounds__(kThreads)
    matmul_int64_kernel(GemmPlan g, int64_t* dst, const int64_t* a, const int64_t* b,
                        const int64_t* bias) {
  const int64_t per_batch = g.m * g.n;
  using U = uint64_t;  // wrapping arithmetic, as on the CPU
  for (int64_t t = global_thread(); t < g.batches.numel * per_batch; t += grid_threads()) {
    int64_t off[3];
    loop_offsets(g.batches, t / per_batch, off);
    const int64_t i = (t % per_batch) / g.n, j = t % g.n;
    const int64_t* arow = a + off[1] + i * g.a_row;
    const int64_t* bcol = b + off[2] + j * g.b_col;
    U acc = 0;
    for (int64_t kk = 0; kk < g.k; ++kk) acc += U(arow[kk * g.a_col]) * U(bcol[kk * g.b_row]);
    if (bias != nullptr) acc += U(bias[j]);
    dst[off[0] + i * g.c_row + j * g.c_col] = static_cast<int64_t>(acc);
  }
}

}  // namespace

void bias_epilogue(const Loop<1>& loop, void* dst, const void* bias, int64_t cols,
                   Epilogue epilogue, ElemType type, Stream stream) {
  if (loop.numel == 0) return;
  const unsigned blocks = blocks_for(loop.numel);
  if (type == ElemType::Float32) {
    bias_epilogue_kernel<<<blocks, kThreads, 0, stream>>>(
        loop, static_cast<float*>(dst), static_cast<const float*>(bias), cols, epilogue);
  } else {
    bias_epilogue_kernel<<<blocks, kThreads, 0, stream>>>(
        loop, static_cast<double*>(dst), static_cast<const double*>(bias), cols, epilogue);
  }
}

void matmul_int64(const GemmPlan& plan, int64_t* dst, const int64_t* a, const int64_t* b,
                  const int64_t* bias, Stream stream) {
  const int64_t total = plan.batches.numel * plan.m * plan.n;
  if (total == 0) return;
  matmul_int64_kernel<<<blocks_for(total), kThreads, 0, stream>>>(plan, dst, a, b, bias);
}

}  // namespace tide::cuda::kern
