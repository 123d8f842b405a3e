// Device-side helpers shared by the .cu files: launch sizes, grid-stride
// loops and strided offsets. Only nvcc includes this file.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernels.h"
#include "backends/scalar_math.h"

namespace tide::cuda::kern {

inline constexpr int kThreads = 256;
// Grid-stride loops cover any size, so the grid is capped well below CUDA's
// limit (2^31 - 1 blocks); 2^16 blocks of 256 threads fill any current GPU.
inline constexpr int64_t kMaxBlocks = int64_t{1} << 16;

inline unsigned blocks_for(int64_t work, int threads = kThreads) {
  int64_t blocks = (work + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// The first index of this thread and the grid-wide stride, in int64 so that
// tensors of more than 2^31 elements are addressed correctly.
__device__ inline int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// i / size and i % size. 64-bit integer division is emulated on GPUs (tens of
// instructions), so values below 2^32 take the much cheaper 32-bit path.
__device__ inline void divmod(int64_t i, int64_t size, int64_t& quotient, int64_t& remainder) {
  if (((i | size) >> 32) == 0) {
    const uint32_t q = static_cast<uint32_t>(i) / static_cast<uint32_t>(size);
    quotient = q;
    remainder = static_cast<int64_t>(static_cast<uint32_t>(i) - q * static_cast<uint32_t>(size));
  } else {
    quotient = i / size;
    remainder = i - quotient * size;
  }
}

// Offsets (in elements) of element i of the loop's iteration space in each
// operand: peel coordinates off from the innermost dim. Rank 1 (a contiguous
// or evenly strided operand, or a broadcast scalar) needs no division.
template <int N>
__device__ inline void loop_offsets(const Loop<N>& loop, int64_t i, int64_t (&off)[N]) {
  if (loop.rank == 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i * loop.strides[k][0];
    return;
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = loop.rank - 1; d >= 0; --d) {
    int64_t coord;
    divmod(i, loop.sizes[d], i, coord);
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += coord * loop.strides[k][d];
  }
}

// Like loop_offsets, for one operand.
template <int N>
__device__ inline int64_t loop_offset(const Loop<N>& loop, int k, int64_t i) {
  if (loop.rank == 1) return i * loop.strides[k][0];
  int64_t off = 0;
  for (int d = loop.rank - 1; d >= 0; --d) {
    int64_t coord;
    divmod(i, loop.sizes[d], i, coord);
    off += coord * loop.strides[k][d];
  }
  return off;
}

}  // namespace tide::cuda::kern

namespace tide::cuda::kern {

// Calls f(off) for every element of the loop's space, where off[k] is the
// element's offset in operand k. Contiguous spaces skip the index arithmetic
// (the branch is uniform across the grid, so it costs nothing).
template <int N, typename F>
__global__ void __launch_bounds__(kThreads) for_each_kernel(Loop<N> loop, F f) {
  const int64_t step = grid_threads();
  if (loop.contiguous) {
    for (int64_t i = global_thread(); i < loop.numel; i += step) {
      int64_t off[N];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = i;
      f(off);
    }
  } else {
    for (int64_t i = global_thread(); i < loop.numel; i += step) {
      int64_t off[N];
      loop_offsets(loop, i, off);
      f(off);
    }
  }
}

template <int N, typename F>
void for_each(const Loop<N>& loop, Stream stream, F f) {
  if (loop.numel == 0) return;
  for_each_kernel<N><<<blocks_for(loop.numel), kThreads, 0, stream>>>(loop, f);
}

// Math by element type: float calls the single-precision functions (not the
// fast intrinsics), double the double ones.
namespace fm {
__device__ inline float exp(float x) {
  return expf(x);
}
__device__ inline double exp(double x) {
  return ::exp(x);
}
__device__ inline float expm1(float x) {
  return expm1f(x);
}
__device__ inline double expm1(double x) {
  return ::expm1(x);
}
__device__ inline float log(float x) {
  return logf(x);
}
__device__ inline double log(double x) {
  return ::log(x);
}
__device__ inline float log1p(float x) {
  return log1pf(x);
}
__device__ inline double log1p(double x) {
  return ::log1p(x);
}
__device__ inline float sqrt(float x) {
  return sqrtf(x);
}
__device__ inline double sqrt(double x) {
  return ::sqrt(x);
}
__device__ inline float sin(float x) {
  return sinf(x);
}
__device__ inline double sin(double x) {
  return ::sin(x);
}
__device__ inline float cos(float x) {
  return cosf(x);
}
__device__ inline double cos(double x) {
  return ::cos(x);
}
__device__ inline float tanh(float x) {
  return tanhf(x);
}
__device__ inline double tanh(double x) {
  return ::tanh(x);
}
__device__ inline float erf(float x) {
  return erff(x);
}
__device__ inline double erf(double x) {
  return ::erf(x);
}
__device__ inline float pow(float x, float y) {
  return powf(x, y);
}
__device__ inline double pow(double x, double y) {
  return ::pow(x, y);
}
__device__ inline float abs(float x) {
  return fabsf(x);
}
__device__ inline double abs(double x) {
  return ::fabs(x);
}
}  // namespace fm

template <typename T>
__device__ inline T sigmoid(T x) {
  return T(1) / (T(1) + fm::exp(-x));
}

}  // namespace tide::cuda::kern

namespace tide::cuda::kern {

// Elementwise maps: dst = f(inputs...), operands of the loop in that order.
template <typename Out, typename In, typename F>
struct Map1 {
  Out* dst;
  const In* src;
  F f;
  __device__ void operator()(const int64_t (&o)[2]) const { dst[o[0]] = f(src[o[1]]); }
};
template <typename Out, typename In, typename F>
struct Map2 {
  Out* dst;
  const In* a;
  const In* b;
  F f;
  __device__ void operator()(const int64_t (&o)[3]) const { dst[o[0]] = f(a[o[1]], b[o[2]]); }
};

template <typename Out, typename In, typename F>
void map1(const Loop<2>& loop, Out* dst, const In* src, Stream stream, F f) {
  for_each(loop, stream, Map1<Out, In, F>{dst, src, f});
}
template <typename Out, typename In, typename F>
void map2(const Loop<3>& loop, Out* dst, const In* a, const In* b, Stream stream, F f) {
  for_each(loop, stream, Map2<Out, In, F>{dst, a, b, f});
}

}  // namespace tide::cuda::kern
