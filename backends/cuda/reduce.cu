// reduce, arg_reduce and cumsum.
//
// Determinism: every output is reduced in fixed chunks (ReducePlan, chosen
// from the shape alone) by a fixed number of threads combined in a fixed
// tree, and chunk results are merged in chunk order by a second kernel. There
// are no atomics, so a reduction gives the same bits on every run and GPU.
#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

template <typename T>
using WideAcc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// Each op says how to start (init), add one element (step) and join two
// partial results (merge), as in backends/cpu/reduce.cpp.
template <typename T>
struct SumOp {
  using Acc = WideAcc<T>;
  __device__ static Acc init() { return 0; }
  __device__ static Acc step(Acc acc, T x) { return acc + Acc(x); }
  __device__ static Acc merge(Acc a, Acc b) { return a + b; }
};

template <typename T>
struct ProdOp {
  using Acc = WideAcc<T>;
  __device__ static Acc init() { return 1; }
  __device__ static Acc step(Acc acc, T x) { return acc * Acc(x); }
  __device__ static Acc merge(Acc a, Acc b) { return a * b; }
};

// Max and min propagate NaN, like torch.amax / torch.amin.
template <typename T, bool kIsMax>
struct ExtremumOp {
  using Acc = T;
  __device__ static Acc init() {
    if constexpr (std::is_same_v<T, bool>)
      return !kIsMax;
    else if constexpr (std::is_same_v<T, int64_t>)
      return kIsMax ? INT64_MIN : INT64_MAX;
    else
      return kIsMax ? -T(INFINITY) : T(INFINITY);
  }
  __device__ static Acc step(Acc acc, T x) { return scalar::nan_extremum_step<kIsMax>(acc, x); }
  __device__ static Acc merge(Acc a, Acc b) { return step(a, b); }
};

template <typename T>
using MaxOp = ExtremumOp<T, true>;
template <typename T>
using MinOp = ExtremumOp<T, false>;

// Reduces src elements [r0, r1) of the reduced space starting at base,
// taking every `step_by`-th one from r0 (one thread's share).
template <typename Op, typename In>
__device__ typename Op::Acc reduce_range(const Loop<1>& reduced, const In* base, int64_t r0,
                                         int64_t r1, int64_t step_by) {
  typename Op::Acc acc = Op::init();
  if (reduced.rank <= 1) {
    const int64_t stride = reduced.rank == 1 ? reduced.strides[0][0] : 0;
    for (int64_t r = r0; r < r1; r += step_by) acc = Op::step(acc, base[r * stride]);
  } else {
    for (int64_t r = r0; r < r1; r += step_by)
      acc = Op::step(acc, base[loop_offset(reduced, 0, r)]);
  }
  return acc;
}

// One thread per (output, chunk). Consecutive threads take consecutive
// outputs, so column sums read consecutive addresses.
template <typename Op, typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    reduce_thread_kernel(ReducePlan p, Out* dst, const In* src, typename Op::Acc* partial) {
  const int64_t outputs = p.kept.numel, n_red = p.reduced.numel;
  const int64_t total = outputs * p.n_chunks;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t o = t % outputs, c = t / outputs;
    int64_t off[2];
    loop_offsets(p.kept, o, off);
    const int64_t r0 = c * p.chunk, r1 = r0 + p.chunk < n_red ? r0 + p.chunk : n_red;
    const auto acc = reduce_range<Op>(p.reduced, src + off[1], r0, r1, 1);
    if (p.n_chunks == 1)
      dst[off[0]] = static_cast<Out>(acc);
    else
      partial[o * p.n_chunks + c] = acc;
  }
}

// One block of kReduceThreads per (output, chunk): thread i takes elements
// i, i + 256, ... of the chunk, then a fixed tree in shared memory joins them.
template <typename Op, typename In, typename Out>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_block_kernel(ReducePlan p, Out* dst, const In* src, typename Op::Acc* partial) {
  using Acc = typename Op::Acc;
  __shared__ Acc shared[kReduceThreads];
  const int64_t n_red = p.reduced.numel;
  const int64_t total = p.kept.numel * p.n_chunks;
  const int tid = threadIdx.x;
  for (int64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const int64_t o = t / p.n_chunks, c = t % p.n_chunks;
    int64_t off[2];
    loop_offsets(p.kept, o, off);
    const int64_t r0 = c * p.chunk, r1 = r0 + p.chunk < n_red ? r0 + p.chunk : n_red;
    shared[tid] = reduce_range<Op>(p.reduced, src + off[1], r0 + tid, r1, kReduceThreads);
    __syncthreads();
    for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
      if (tid < s) shared[tid] = Op::merge(shared[tid], shared[tid + s]);
      __syncthreads();
    }
    if (tid == 0) {
      if (p.n_chunks == 1)
        dst[off[0]] = static_cast<Out>(shared[0]);
      else
        partial[o * p.n_chunks + c] = shared[0];
    }
    __syncthreads();  // shared is reused by the next (output, chunk)
  }
}

// Joins each output's chunk results in chunk order.
template <typename Op, typename Out>
__global__ void __launch_bounds__(kThreads)
    reduce_combine_kernel(ReducePlan p, Out* dst, const typename Op::Acc* partial) {
  for (int64_t o = global_thread(); o < p.kept.numel; o += grid_threads()) {
    typename Op::Acc acc = Op::init();
    for (int64_t c = 0; c < p.n_chunks; ++c) acc = Op::merge(acc, partial[o * p.n_chunks + c]);
    dst[loop_offset(p.kept, 0, o)] = static_cast<Out>(acc);
  }
}

template <typename Op, typename In, typename Out>
void reduce_typed(const ReducePlan& p, void* dst, const void* src, void* partial, Stream st) {
  using Acc = typename Op::Acc;
  static_assert(sizeof(Acc) <= 8, "partial results are 8-byte slots");
  Out* out = static_cast<Out*>(dst);
  const In* in = static_cast<const In*>(src);
  Acc* part = static_cast<Acc*>(partial);
  const int64_t total = p.kept.numel * p.n_chunks;
  if (p.block_per_output) {
    const int64_t blocks = total < kMaxBlocks ? total : kMaxBlocks;
    reduce_block_kernel<Op, In, Out>
        <<<static_cast<unsigned>(blocks), kReduceThreads, 0, st>>>(p, out, in, part);
  } else {
    reduce_thread_kernel<Op, In, Out><<<blocks_for(total), kThreads, 0, st>>>(p, out, in, part);
  }
  if (p.n_chunks > 1)
    reduce_combine_kernel<Op, Out><<<blocks_for(p.kept.numel), kThreads, 0, st>>>(p, out, part);
}

template <template <typename> class OpT>
void reduce_dispatch(const ReducePlan& p, void* dst, const void* src, ElemType src_type,
                     void* partial, Stream st) {
  switch (src_type) {
    case ElemType::Float32:
      return reduce_typed<OpT<float>, float, float>(p, dst, src, partial, st);
    case ElemType::Float64:
      return reduce_typed<OpT<double>, double, double>(p, dst, src, partial, st);
    case ElemType::Int64:
      return reduce_typed<OpT<int64_t>, int64_t, int64_t>(p, dst, src, partial, st);
    case ElemType::Bool:
      // Sums and products of bool count in int64; max and min stay bool.
      if constexpr (std::is_same_v<typename OpT<bool>::Acc, int64_t>)
        return reduce_typed<OpT<bool>, bool, int64_t>(p, dst, src, partial, st);
      else
        return reduce_typed<OpT<bool>, bool, bool>(p, dst, src, partial, st);
  }
}

}  // namespace

void reduce(Reduce op, const ReducePlan& plan, void* dst, ElemType dst_type, const void* src,
            ElemType src_type, void* partial, Stream stream) {
  if (plan.kept.numel == 0) return;
  switch (op) {
    case Reduce::Sum:
      return reduce_dispatch<SumOp>(plan, dst, src, src_type, partial, stream);
    case Reduce::Prod:
      return reduce_dispatch<ProdOp>(plan, dst, src, src_type, partial, stream);
    case Reduce::Max:
      return reduce_dispatch<MaxOp>(plan, dst, src, src_type, partial, stream);
    case Reduce::Min:
      return reduce_dispatch<MinOp>(plan, dst, src, src_type, partial, stream);
  }
}

// ---------------------------------------------------------------------------
// arg_reduce and cumsum: one thread per line along the dim
// ---------------------------------------------------------------------------

namespace {

// The index of the first max (min) of a strided line; a NaN wins at once, as
// in torch.argmax / backends/cpu/reduce.cpp.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    arg_reduce_kernel(LinePlan p, bool is_max, int64_t* dst, const T* src) {
  for (int64_t l = global_thread(); l < p.lines.numel; l += grid_threads()) {
    int64_t off[2];
    loop_offsets(p.lines, l, off);
    const T* x = src + off[1];
    T best = x[0];
    int64_t best_index = 0;
    if (best == best) {
      for (int64_t i = 1; i < p.length; ++i) {
        const T v = x[i * p.src_stride];
        if (v != v) {
          best_index = i;
          break;
        }
        if (is_max ? v > best : v < best) {
          best = v;
          best_index = i;
        }
      }
    }
    dst[off[0]] = best_index;
  }
}

// The same sequential order as the CPU, so float32 results (double
// accumulation) are identical.
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) cumsum_kernel(LinePlan p, Out* dst, const In* src) {
  using Acc = WideAcc<In>;
  for (int64_t l = global_thread(); l < p.lines.numel; l += grid_threads()) {
    int64_t off[2];
    loop_offsets(p.lines, l, off);
    Out* y = dst + off[0];
    const In* x = src + off[1];
    Acc acc = 0;
    for (int64_t i = 0; i < p.length; ++i) {
      acc += Acc(x[i * p.src_stride]);
      y[i * p.dst_stride] = static_cast<Out>(acc);
    }
  }
}

}  // namespace

void arg_reduce(bool is_max, const LinePlan& plan, int64_t* dst, const void* src, ElemType type,
                Stream stream) {
  const unsigned blocks = blocks_for(plan.lines.numel);
  switch (type) {
    case ElemType::Float32:
      return arg_reduce_kernel<<<blocks, kThreads, 0, stream>>>(plan, is_max, dst,
                                                                static_cast<const float*>(src));
    case ElemType::Float64:
      return arg_reduce_kernel<<<blocks, kThreads, 0, stream>>>(plan, is_max, dst,
                                                                static_cast<const double*>(src));
    case ElemType::Int64:
      return arg_reduce_kernel<<<blocks, kThreads, 0, stream>>>(plan, is_max, dst,
                                                                static_cast<const int64_t*>(src));
    case ElemType::Bool:
      return arg_reduce_kernel<<<blocks, kThreads, 0, stream>>>(plan, is_max, dst,
                                                                static_cast<const bool*>(src));
  }
}

void cumsum(const LinePlan& plan, void* dst, ElemType dst_type, const void* src, ElemType src_type,
            Stream stream) {
  const unsigned blocks = blocks_for(plan.lines.numel);
  switch (src_type) {
    case ElemType::Float32:
      return cumsum_kernel<<<blocks, kThreads, 0, stream>>>(plan, static_cast<float*>(dst),
                                                            static_cast<const float*>(src));
    case ElemType::Float64:
      return cumsum_kernel<<<blocks, kThreads, 0, stream>>>(plan, static_cast<double*>(dst),
                                                            static_cast<const double*>(src));
    case ElemType::Int64:
      return cumsum_kernel<<<blocks, kThreads, 0, stream>>>(plan, static_cast<int64_t*>(dst),
                                                            static_cast<const int64_t*>(src));
    case ElemType::Bool:
      return cumsum_kernel<<<blocks, kThreads, 0, stream>>>(plan, static_cast<int64_t*>(dst),
                                                            static_cast<const bool*>(src));
  }
}

}  // namespace tide::cuda::kern
