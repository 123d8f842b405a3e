// Markers for functions compiled for both the host and CUDA devices, so one
// header can define a formula that every backend includes (philox.h,
// scalar_math.h). Without nvcc they expand to plain C++.
#pragma once

#if defined(__CUDACC__)
#define TIDE_HOST_DEVICE __host__ __device__
// __forceinline__ also forces inlining in nvcc's host pass.
#define TIDE_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define TIDE_HOST_DEVICE
// The CPU kernels are loops cloned per instruction set (TIDE_VECTOR_CLONES in
// backends/cpu/kernel_config.h); an out-of-line call would stop vectorization.
#define TIDE_HOST_DEVICE_INLINE [[gnu::always_inline]] inline
#else
#define TIDE_HOST_DEVICE
#define TIDE_HOST_DEVICE_INLINE inline
#endif
