// reduce, arg_reduce and cumsum.
//
// Determinism: a reduction's result must not depend on the thread count, so
// threads only ever split work between independent outputs, or between fixed
// blocks of kReduceBlock elements whose partial results are then combined in
// block order. Float sums and products accumulate in double.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/scalar_math.h"

namespace tide::cpu {

namespace {

// One output's reduction is summed in blocks of this many elements, in order.
constexpr int64_t kReduceBlock = 16384;
// Columns accumulated at once when the reduced dims are the outer ones.
constexpr int64_t kColumnChunk = 256;

template <typename T>
using WideAcc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// Each op says how to start (init), add one element (step), join two partial
// results (merge) and reduce one strided run quickly (run).
template <typename T>
struct SumOp {
  using Acc = WideAcc<T>;
  static Acc init() { return 0; }
  static Acc step(Acc acc, T x) { return acc + Acc(x); }
  static Acc merge(Acc a, Acc b) { return a + b; }
  TIDE_ALWAYS_INLINE static Acc run(const T* x, int64_t n, int64_t stride) {
    Acc acc = 0;
    if (stride == 1) {
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < n; ++i) acc += Acc(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) acc += Acc(x[i * stride]);
    }
    return acc;
  }
};

template <typename T>
struct ProdOp {
  using Acc = WideAcc<T>;
  static Acc init() { return 1; }
  static Acc step(Acc acc, T x) { return acc * Acc(x); }
  static Acc merge(Acc a, Acc b) { return a * b; }
  TIDE_ALWAYS_INLINE static Acc run(const T* x, int64_t n, int64_t stride) {
    Acc acc = 1;
    for (int64_t i = 0; i < n; ++i) acc *= Acc(x[i * stride]);
    return acc;
  }
};

// Max and min propagate NaN, like torch.max / torch.amax.
template <typename T, bool kIsMax>
struct ExtremumOp {
  using Acc = T;
  static Acc init() {
    if constexpr (std::is_same_v<T, bool>)
      return !kIsMax;
    else if constexpr (std::numeric_limits<T>::has_infinity)
      return kIsMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    else
      return kIsMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
  }
  static Acc step(Acc acc, T x) { return scalar::nan_extremum_step<kIsMax>(acc, x); }
  static Acc merge(Acc a, Acc b) { return step(a, b); }
  TIDE_ALWAYS_INLINE static Acc run(const T* x, int64_t n, int64_t stride) {
    if constexpr (std::is_same_v<T, bool>) {
      Acc acc = init();
      for (int64_t i = 0; i < n; ++i) acc = step(acc, x[i * stride]);
      return acc;
    } else {
      // A branch-free max plus a separate NaN flag, so the loop vectorizes.
      Acc acc = init();
      int has_nan = 0;
      if (stride == 1) {
        if constexpr (kIsMax) {
#pragma omp simd reduction(max : acc) reduction(| : has_nan)
          for (int64_t i = 0; i < n; ++i) {
            acc = x[i] > acc ? x[i] : acc;
            has_nan |= x[i] != x[i];
          }
        } else {
#pragma omp simd reduction(min : acc) reduction(| : has_nan)
          for (int64_t i = 0; i < n; ++i) {
            acc = x[i] < acc ? x[i] : acc;
            has_nan |= x[i] != x[i];
          }
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          T v = x[i * stride];
          acc = (kIsMax ? v > acc : v < acc) ? v : acc;
          has_nan |= v != v;
        }
      }
      if constexpr (std::numeric_limits<T>::has_quiet_NaN) {
        if (has_nan) return std::numeric_limits<T>::quiet_NaN();
      }
      return acc;
    }
  }
};

template <typename T>
using MaxOp = ExtremumOp<T, true>;
template <typename T>
using MinOp = ExtremumOp<T, false>;

// The dims of a reduction, split into the kept ones (operands: dst, src) and
// the reduced ones (operand: src), each coalesced.
struct ReducePlan {
  LoopPlan<2> kept;
  LoopPlan<1> reduced;
};

ReducePlan make_reduce_plan(const ArrayView& dst, const ArrayView& src) {
  ReducePlan plan;
  plan.kept.numel = 1;
  plan.reduced.numel = 1;
  for (int d = 0; d < src.rank(); ++d) {
    if (dst.shape[d] == 1 && src.shape[d] != 1) {
      plan.reduced.push_dim(src.shape[d], {src.strides[d]});
      plan.reduced.numel *= src.shape[d];
    } else {
      plan.kept.push_dim(src.shape[d], {dst.strides[d], src.strides[d]});
      plan.kept.numel *= src.shape[d];
    }
  }
  return plan;
}

// Reduces the flat range [begin, end) of the reduced dims starting at `base`.
// Op::run compiled per instruction set.
template <typename Op, typename In>
TIDE_VECTOR_CLONES typename Op::Acc reduce_run(const In* x, int64_t n, int64_t stride) {
  return Op::run(x, n, stride);
}

// Many outputs whose reductions are each one short contiguous run (a sum over
// the last dim): one call for all of them, so the per-output cost is a loop
// iteration rather than a function call. Same arithmetic as reduce_one.
template <typename Op, typename In, typename Out>
TIDE_VECTOR_CLONES void reduce_short_runs(Out* out, int64_t out_stride, const In* x,
                                          int64_t x_stride, int64_t outputs, int64_t n) {
  for (int64_t i = 0; i < outputs; ++i)
    out[i * out_stride] = static_cast<Out>(Op::merge(Op::init(), Op::run(x + i * x_stride, n, 1)));
}

template <typename Op, typename In>
typename Op::Acc reduce_range(const LoopPlan<1>& reduced, const In* base, int64_t begin,
                              int64_t end) {
  typename Op::Acc acc = Op::init();
  const int64_t stride = reduced.inner_stride(0);
  for_each_row(reduced, begin, end, [&](const int64_t* off, int64_t n) {
    acc = Op::merge(acc, reduce_run<Op>(base + off[0], n, stride));
  });
  return acc;
}

// One output: blocks of kReduceBlock reduced separately, then merged in order.
// The parallel path for a few huge outputs computes exactly the same blocks.
template <typename Op, typename In>
typename Op::Acc reduce_one(const LoopPlan<1>& reduced, const In* base) {
  const int64_t n = reduced.numel;
  typename Op::Acc acc = Op::init();
  for (int64_t b = 0; b < n; b += kReduceBlock)
    acc = Op::merge(acc, reduce_range<Op>(reduced, base, b, std::min(n, b + kReduceBlock)));
  return acc;
}

template <typename Op, typename In, typename Out>
void reduce_inner(const ReducePlan& plan, Out* dst, const In* src) {
  using Acc = typename Op::Acc;
  const int64_t n_out = plan.kept.numel, n_red = plan.reduced.numel;
  const int64_t n_blocks = (n_red + kReduceBlock - 1) / kReduceBlock;
  if (n_out < get_num_threads() && n_blocks > 1) {
    // Few outputs, long reductions: parallel over the fixed blocks.
    std::vector<Acc> partial(n_blocks);
    for (int64_t o = 0; o < n_out; ++o) {
      int64_t off[2];
      offsets_at(plan.kept, o, off);
      parallel_for(n_blocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          partial[b] = reduce_range<Op>(plan.reduced, src + off[1], b * kReduceBlock,
                                        std::min(n_red, (b + 1) * kReduceBlock));
      });
      Acc acc = Op::init();
      for (Acc p : partial) acc = Op::merge(acc, p);
      dst[off[0]] = static_cast<Out>(acc);
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(n_red, 1));
  const int64_t sd = plan.kept.inner_stride(0), ss = plan.kept.inner_stride(1);
  if (plan.reduced.rank == 1 && plan.reduced.inner_stride(0) == 1 && n_blocks == 1) {
    run_plan(plan.kept, grain, [&](const int64_t* off, int64_t n) {
      reduce_short_runs<Op>(dst + off[0], sd, src + off[1], ss, n, n_red);
    });
    return;
  }
  run_plan(plan.kept, grain, [&](const int64_t* off, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      dst[off[0] + i * sd] = static_cast<Out>(reduce_one<Op>(plan.reduced, src + off[1] + i * ss));
  });
}

// acc[j] = step(acc[j], x[j]) for one row of a column reduction.
template <typename Op, typename In>
TIDE_VECTOR_CLONES void accumulate_columns(typename Op::Acc* acc, const In* x, int64_t width) {
  for (int64_t j = 0; j < width; ++j) acc[j] = Op::step(acc[j], x[j]);
}

// The reduced dims are outer and the innermost kept dim is contiguous (e.g. a
// column sum): accumulate whole rows into a chunk of column accumulators.
template <typename Op, typename In, typename Out>
void reduce_outer(const ReducePlan& plan, Out* dst, const In* src) {
  using Acc = typename Op::Acc;
  const int64_t columns = plan.kept.inner_size();
  const int64_t n_chunks = (columns + kColumnChunk - 1) / kColumnChunk;
  const int64_t n_tasks = plan.kept.numel / columns * n_chunks;
  // The kept dims without the innermost one: which row a task starts from.
  LoopPlan<2> outer = plan.kept;
  outer.rank -= 1;
  const int64_t red_stride = plan.reduced.inner_stride(0);
  const int64_t grain = std::max<int64_t>(1, kGrainCheap / (plan.reduced.numel * kColumnChunk));
  parallel_for(n_tasks, grain, [&](int64_t t0, int64_t t1) {
    Acc acc[kColumnChunk];
    for (int64_t t = t0; t < t1; ++t) {
      int64_t off[2];
      offsets_at(outer, t / n_chunks, off);
      const int64_t j0 = (t % n_chunks) * kColumnChunk;
      const int64_t width = std::min(kColumnChunk, columns - j0);
      for (int64_t j = 0; j < width; ++j) acc[j] = Op::init();
      const In* base = src + off[1] + j0;
      for_each_row(plan.reduced, 0, plan.reduced.numel, [&](const int64_t* roff, int64_t n) {
        for (int64_t r = 0; r < n; ++r) {
          accumulate_columns<Op>(acc, base + roff[0] + r * red_stride, width);
        }
      });
      Out* out = dst + off[0] + j0;
      for (int64_t j = 0; j < width; ++j) out[j] = static_cast<Out>(acc[j]);
    }
  });
}

template <template <typename> class OpT, typename In, typename Out>
void reduce_typed(const ArrayView& dst, const ArrayView& src) {
  using Op = OpT<In>;
  const ReducePlan plan = make_reduce_plan(dst, src);
  const bool outer_layout = plan.kept.rank > 0 && plan.kept.inner_stride(0) == 1 &&
                            plan.kept.inner_stride(1) == 1 && plan.reduced.rank > 0 &&
                            plan.reduced.inner_stride(0) != 1;
  if (outer_layout) {
    reduce_outer<Op>(plan, dst.ptr<Out>(), src.ptr<In>());
  } else {
    reduce_inner<Op>(plan, dst.ptr<Out>(), src.ptr<In>());
  }
}

template <template <typename> class OpT>
void reduce_dispatch(ReduceOp op, const ArrayView& dst, const ArrayView& src, bool bool_to_int64) {
  if (src.dtype == dst.dtype) {
    switch (src.dtype) {
      case DType::Float32:
        return reduce_typed<OpT, float, float>(dst, src);
      case DType::Float64:
        return reduce_typed<OpT, double, double>(dst, src);
      case DType::Int64:
        return reduce_typed<OpT, int64_t, int64_t>(dst, src);
      case DType::Bool:
        if (!bool_to_int64) return reduce_typed<OpT, bool, bool>(dst, src);
        break;
    }
  } else if (bool_to_int64 && src.dtype == DType::Bool && dst.dtype == DType::Int64) {
    return reduce_typed<OpT, bool, int64_t>(dst, src);
  }
  fail("{}: unsupported dtypes (input {}, output {})", op_name(op), src.dtype, dst.dtype);
}

using checks::check_kept_shape;

}  // namespace

void CpuBackend::reduce(ReduceOp op, const ArrayView& dst, const ArrayView& src) {
  checks::check_reduction_shape(op_name(op), dst, src);
  if (dst.numel() == 0) return;
  if (src.numel() == 0) {  // reducing over an empty dim
    TIDE_CHECK(op == ReduceOp::Sum || op == ReduceOp::Prod,
               "{}: cannot reduce over an empty dimension (input shape {})", op_name(op),
               src.shape);
    fill(dst, op == ReduceOp::Sum ? 0.0 : 1.0);
    return;
  }
  switch (op) {
    case ReduceOp::Sum:
      return reduce_dispatch<SumOp>(op, dst, src, true);
    case ReduceOp::Prod:
      return reduce_dispatch<ProdOp>(op, dst, src, true);
    case ReduceOp::Max:
      return reduce_dispatch<MaxOp>(op, dst, src, false);
    case ReduceOp::Min:
      return reduce_dispatch<MinOp>(op, dst, src, false);
  }
}

namespace {

// The index of the first max (min) of a strided run; a NaN wins at once, as in
// torch.argmax / torch.argmin.
template <typename T>
int64_t arg_extremum(const T* x, int64_t n, int64_t stride, bool is_max) {
  T best = x[0];
  int64_t best_index = 0;
  if (best != best) return 0;
  for (int64_t i = 1; i < n; ++i) {
    T v = x[i * stride];
    if (v != v) return i;
    if (is_max ? v > best : v < best) {
      best = v;
      best_index = i;
    }
  }
  return best_index;
}

// A plan over every dim but `dim` (operands: dst, src), for ops that work on
// whole lines along `dim`.
LoopPlan<2> make_line_plan(const ArrayView& dst, const ArrayView& src, int dim) {
  LoopPlan<2> plan;
  plan.numel = 1;
  for (int d = 0; d < src.rank(); ++d) {
    if (d == dim) continue;
    plan.push_dim(src.shape[d], {dst.strides[d], src.strides[d]});
    plan.numel *= src.shape[d];
  }
  return plan;
}

}  // namespace

void CpuBackend::arg_reduce(bool is_max, const ArrayView& dst, const ArrayView& src, int dim) {
  const char* op = is_max ? "argmax" : "argmin";
  TIDE_CHECK(dst.dtype == DType::Int64, "{}: output must be int64, got {}", op, dst.dtype);
  TIDE_CHECK(dim >= 0 && dim < std::max(src.rank(), 1), "{}: dim {} is out of range for rank {}",
             op, dim, src.rank());
  if (src.rank() == 0) {  // a scalar: its only index
    *dst.ptr<int64_t>() = 0;
    return;
  }
  check_kept_shape(op, dst, src, dim);
  if (dst.numel() == 0) return;
  const int64_t n = src.shape[dim], stride = src.strides[dim];
  TIDE_CHECK(n > 0, "{}: cannot reduce over an empty dimension (input shape {}, dim {})", op,
             src.shape, dim);
  const LoopPlan<2> plan = make_line_plan(dst, src, dim);
  int64_t* out = dst.ptr<int64_t>();
  dispatch_dtype(src.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* in = src.ptr<T>();
    const int64_t sd = plan.inner_stride(0), ss = plan.inner_stride(1);
    run_plan(plan, std::max<int64_t>(1, kGrainCheap / n), [&](const int64_t* off, int64_t rows) {
      for (int64_t r = 0; r < rows; ++r)
        out[off[0] + r * sd] = arg_extremum(in + off[1] + r * ss, n, stride, is_max);
    });
  });
}

namespace {

template <typename In, typename Out>
void cumsum_typed(const ArrayView& dst, const ArrayView& src, int dim) {
  using Acc = WideAcc<In>;  // double for float32, like PyTorch's CPU cumsum
  const LoopPlan<2> plan = make_line_plan(dst, src, dim);
  const int64_t n = src.shape[dim], s_in = src.strides[dim], s_out = dst.strides[dim];
  Out* out = dst.ptr<Out>();
  const In* in = src.ptr<In>();
  const int64_t sd = plan.inner_stride(0), ss = plan.inner_stride(1);
  run_plan(plan, std::max<int64_t>(1, kGrainCheap / n), [&](const int64_t* off, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      Out* y = out + off[0] + r * sd;
      const In* x = in + off[1] + r * ss;
      Acc acc = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc += Acc(x[i * s_in]);
        y[i * s_out] = static_cast<Out>(acc);
      }
    }
  });
}

}  // namespace

void CpuBackend::cumsum(const ArrayView& dst, const ArrayView& src, int dim) {
  TIDE_CHECK(dst.shape == src.shape, "cumsum: output shape {} does not match input shape {}",
             dst.shape, src.shape);
  if (src.rank() == 0) {  // a scalar is its own cumulative sum
    copy(dst, src);
    return;
  }
  TIDE_CHECK(dim >= 0 && dim < src.rank(), "cumsum: dim {} is out of range for rank {}", dim,
             src.rank());
  if (dst.numel() == 0) return;
  if (src.dtype == DType::Float32 && dst.dtype == DType::Float32)
    return cumsum_typed<float, float>(dst, src, dim);
  if (src.dtype == DType::Float64 && dst.dtype == DType::Float64)
    return cumsum_typed<double, double>(dst, src, dim);
  if (src.dtype == DType::Int64 && dst.dtype == DType::Int64)
    return cumsum_typed<int64_t, int64_t>(dst, src, dim);
  if (src.dtype == DType::Bool && dst.dtype == DType::Int64)
    return cumsum_typed<bool, int64_t>(dst, src, dim);
  fail("cumsum: unsupported dtypes (input {}, output {})", src.dtype, dst.dtype);
}

}  // namespace tide::cpu
