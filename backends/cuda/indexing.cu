// gather (used for index_select and gather), the index check, and
// scatter_add. Bad indices are never followed; they are recorded in the
// backend's error slot, which the host reads back (see kernels.h).
#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

// Records the first bad index: the CAS makes one thread the writer.
__device__ inline void record_bad_index(int64_t* error, int64_t value) {
  auto* flag = reinterpret_cast<unsigned long long*>(error);
  if (atomicCAS(flag, 0ull, 1ull) == 0ull) error[1] = value;
}

// Elements are moved as raw words of their size: one kernel per size.
template <typename Word>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(Loop<3> loop, Word* dst, const int64_t* index, const Word* src,
                  int64_t src_dim_stride, int64_t dim_size, int64_t* error) {
  for (int64_t i = global_thread(); i < loop.numel; i += grid_threads()) {
    int64_t off[3];
    loop_offsets(loop, i, off);
    const int64_t v = index[off[1]];
    if (v < 0 || v >= dim_size) {
      record_bad_index(error, v);
      continue;
    }
    dst[off[0]] = src[off[2] + v * src_dim_stride];
  }
}

__global__ void __launch_bounds__(kThreads)
    check_indices_kernel(Loop<1> loop, const int64_t* index, int64_t size, int64_t* error) {
  for (int64_t i = global_thread(); i < loop.numel; i += grid_threads()) {
    const int64_t v = index[loop_offset(loop, 0, i)];
    if (v < 0 || v >= size) record_bad_index(error, v);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scatter_add_kernel(ScatterPlan p, T* dst, const int64_t* index, const T* src, int64_t* error) {
  for (int64_t l = global_thread(); l < p.lines.numel; l += grid_threads()) {
    int64_t off[3];
    loop_offsets(p.lines, l, off);
    const int64_t* idx = index + off[0];
    const T* in = src + off[1];
    T* out = dst + off[2];
    for (int64_t j = 0; j < p.length; ++j) {
      const int64_t v = idx[j * p.index_stride];
      if (v < 0 || v >= p.dim_size) {
        record_bad_index(error, v);
        continue;
      }
      out[v * p.dst_dim_stride] += in[j * p.src_stride];
    }
  }
}

}  // namespace

void gather(const Loop<3>& loop, void* dst, const int64_t* index, const void* src,
            int64_t src_dim_stride, int64_t dim_size, int elem_bytes, int64_t* error,
            Stream stream) {
  if (loop.numel == 0) return;
  const unsigned blocks = blocks_for(loop.numel);
  switch (elem_bytes) {
    case 1:
      return gather_kernel<<<blocks, kThreads, 0, stream>>>(loop, static_cast<uint8_t*>(dst), index,
                                                            static_cast<const uint8_t*>(src),
                                                            src_dim_stride, dim_size, error);
    case 4:
      return gather_kernel<<<blocks, kThreads, 0, stream>>>(
          loop, static_cast<uint32_t*>(dst), index, static_cast<const uint32_t*>(src),
          src_dim_stride, dim_size, error);
    default:
      return gather_kernel<<<blocks, kThreads, 0, stream>>>(
          loop, static_cast<uint64_t*>(dst), index, static_cast<const uint64_t*>(src),
          src_dim_stride, dim_size, error);
  }
}

void check_indices(const Loop<1>& loop, const int64_t* index, int64_t size, int64_t* error,
                   Stream stream) {
  if (loop.numel == 0) return;
  check_indices_kernel<<<blocks_for(loop.numel), kThreads, 0, stream>>>(loop, index, size, error);
}

void scatter_add(const ScatterPlan& plan, void* dst, const int64_t* index, const void* src,
                 ElemType type, int64_t* error, Stream stream) {
  if (plan.lines.numel == 0) return;
  const unsigned blocks = blocks_for(plan.lines.numel);
  switch (type) {
    case ElemType::Float32:
      return scatter_add_kernel<<<blocks, kThreads, 0, stream>>>(
          plan, static_cast<float*>(dst), index, static_cast<const float*>(src), error);
    case ElemType::Float64:
      return scatter_add_kernel<<<blocks, kThreads, 0, stream>>>(
          plan, static_cast<double*>(dst), index, static_cast<const double*>(src), error);
    case ElemType::Int64:
      return scatter_add_kernel<<<blocks, kThreads, 0, stream>>>(
          plan, static_cast<int64_t*>(dst), index, static_cast<const int64_t*>(src), error);
    case ElemType::Bool:
      return;  // rejected by the host
  }
}

}  // namespace tide::cuda::kern
