// Generic strided loops for the CPU kernels.
//
// Every elementwise primitive is "for each element of dst, combine the matching
// elements of the inputs". The inputs arrive already broadcast to dst's shape
// (stride 0 where broadcast), so one shared iteration scheme serves all of them:
//
//   1. make_loop_plan() drops size-1 dims and merges neighbouring dims that are
//      laid out contiguously in every operand, so a contiguous tensor of any
//      rank becomes one flat row.
//   2. for_each_row() walks a flat index range [begin, end) row by row (a row
//      is a run along the innermost dim), which lets parallel_for() hand each
//      thread one contiguous range.
//   3. map0..map3 run the innermost loop. Before building a plan at all they
//      try the flat fast paths (everything contiguous, or one input a broadcast
//      scalar), and map2 also has a whole-rows path for [M, N] op [N] and
//      [M, N] op [M, 1]. The innermost loops are plain indexed loops in small
//      functions compiled per instruction set (TIDE_VECTOR_CLONES), which the
//      compiler vectorizes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "backends/backend.h"
#include "backends/checks.h"
#include "backends/cpu/kernel_config.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/threads.h"

namespace tide::cpu {

// Below these sizes (in elements) a loop runs on the calling thread: handing
// work to a pool worker costs about 0.3 us (thread_pool.h), which is what a
// cheap loop over this many elements takes.
inline constexpr int64_t kGrainCheap = 8192;   // add, copy, compare: memory bound
inline constexpr int64_t kGrainCostly = 2048;  // exp, tanh, erf, pow: compute bound

// The half-open range of chunk `i` when [0, n) is cut into `chunks` nearly
// equal contiguous pieces (the first n % chunks pieces one longer).
inline void chunk_range(int64_t n, int64_t chunks, int64_t i, int64_t& begin, int64_t& end) {
  const int64_t base = n / chunks, extra = n % chunks;
  begin = i * base + std::min(i, extra);
  end = begin + base + (i < extra ? 1 : 0);
}

// How many chunks of at least `grain` elements to cut n into: one per thread
// at most.
inline int64_t chunk_count(int64_t n, int64_t grain) {
  const int64_t by_size = n / std::max<int64_t>(grain, 1);
  return std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), by_size));
}

// Runs fn(begin, end) over [0, n) in contiguous chunks, one per thread, each
// at least `grain` elements. The caller's chunk (the first) is grain / 4
// longer than the others: the caller starts at once, while a worker starts
// and reports back a cache-line transfer later each way (thread_pool.h).
// Chunk boundaries never change a result here: fn writes per element.
template <typename Fn>
void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  const int64_t chunks = chunk_count(n, grain);
  if (chunks == 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t head = std::min(grain / 4, n / chunks);
  run_tasks(chunks, [n, head, fn](int64_t i, int64_t chunks) {
    int64_t begin, end;
    chunk_range(n - head, chunks, i, begin, end);
    if (i > 0) begin += head;
    end += head;
    if (begin < end) fn(begin, end);
  });
}

// The iteration space shared by N operands (operand 0 is usually dst), after
// dropping size-1 dims and merging dims that are contiguous in all operands.
template <int N>
struct LoopPlan {
  int rank = 0;  // 0 means a single element
  int64_t numel = 1;
  int64_t sizes[kMaxDims] = {};       // outermost first
  int64_t strides[N][kMaxDims] = {};  // per operand, in elements

  int64_t inner_stride(int operand) const { return rank > 0 ? strides[operand][rank - 1] : 0; }
  int64_t inner_size() const { return rank > 0 ? sizes[rank - 1] : 1; }

  // Appends a dim (outer to inner), merging it into the previous one when every
  // operand steps over the pair as if it were one longer dim.
  void push_dim(int64_t size, const int64_t (&dim_strides)[N]) {
    if (size == 1) return;
    if (rank > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        mergeable = mergeable && strides[k][rank - 1] == dim_strides[k] * size;
      if (mergeable) {
        sizes[rank - 1] *= size;
        for (int k = 0; k < N; ++k) strides[k][rank - 1] = dim_strides[k];
        return;
      }
    }
    sizes[rank] = size;
    for (int k = 0; k < N; ++k) strides[k][rank] = dim_strides[k];
    ++rank;
  }
};

// A plan over views that all have the shape of views[0].
template <int N>
LoopPlan<N> make_loop_plan(const std::array<const ArrayView*, N>& views) {
  LoopPlan<N> plan;
  const Shape& shape = views[0]->shape;
  plan.numel = shape.numel();
  for (int d = 0; d < shape.size(); ++d) {
    int64_t dim_strides[N];
    for (int k = 0; k < N; ++k) dim_strides[k] = views[k]->strides[d];
    plan.push_dim(shape[d], dim_strides);
  }
  return plan;
}

// Calls row(offsets, n) for each run of the flat range [begin, end) that lies
// along the innermost dim; offsets[k] is operand k's element offset at the
// start of the run.
template <int N, typename RowFn>
void for_each_row(const LoopPlan<N>& plan, int64_t begin, int64_t end, RowFn&& row) {
  int64_t offsets[N] = {};
  // Nothing to do, and a zero-size dim must not reach the divisions below.
  if (begin >= end) return;
  if (plan.rank == 0) {
    row(offsets, int64_t{1});
    return;
  }
  const int last = plan.rank - 1;
  int64_t index[kMaxDims];
  int64_t rest = begin;
  for (int d = last; d >= 0; --d) {
    index[d] = rest % plan.sizes[d];
    rest /= plan.sizes[d];
    for (int k = 0; k < N; ++k) offsets[k] += index[d] * plan.strides[k][d];
  }
  for (int64_t pos = begin; pos < end;) {
    int64_t n = std::min(end - pos, plan.sizes[last] - index[last]);
    row(offsets, n);
    pos += n;
    index[last] += n;
    for (int k = 0; k < N; ++k) offsets[k] += n * plan.strides[k][last];
    // Carry into the outer dims, like an odometer.
    for (int d = last; d > 0 && index[d] == plan.sizes[d]; --d) {
      for (int k = 0; k < N; ++k)
        offsets[k] += plan.strides[k][d - 1] - index[d] * plan.strides[k][d];
      index[d] = 0;
      ++index[d - 1];
    }
  }
}

// Element offsets of the flat index `flat` (row-major over plan.sizes).
template <int N>
void offsets_at(const LoopPlan<N>& plan, int64_t flat, int64_t (&offsets)[N]) {
  for (int k = 0; k < N; ++k) offsets[k] = 0;
  for (int d = plan.rank - 1; d >= 0; --d) {
    int64_t i = flat % plan.sizes[d];
    flat /= plan.sizes[d];
    for (int k = 0; k < N; ++k) offsets[k] += i * plan.strides[k][d];
  }
}

// Runs row(offsets, n) over the whole plan, in parallel above `grain`.
template <int N, typename RowFn>
void run_plan(const LoopPlan<N>& plan, int64_t grain, RowFn&& row) {
  parallel_for(plan.numel, grain,
               [&](int64_t begin, int64_t end) { for_each_row(plan, begin, end, row); });
}

// The innermost loops over contiguous runs, as separate functions so that
// each can be compiled per instruction set (TIDE_VECTOR_CLONES).
template <typename Out, typename F>
TIDE_VECTOR_CLONES void fill_run(Out* o, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f();
}
template <typename Out, typename A, typename F>
TIDE_VECTOR_CLONES void map_run(Out* o, const A* x, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
}
template <typename Out, typename A, typename B, typename F>
TIDE_VECTOR_CLONES void map_run(Out* o, const A* x, const B* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
}
template <typename Out, typename A, typename B, typename F>
TIDE_VECTOR_CLONES void map_run_scalar_b(Out* o, const A* x, B y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y);
}
template <typename Out, typename A, typename B, typename F>
TIDE_VECTOR_CLONES void map_run_scalar_a(Out* o, A x, const B* y, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x, y[i]);
}
// `rows` rows of n elements each: row r of each operand starts r * row_step
// elements further on; within a row a and b step by kStepA / kStepB (1, or 0
// for a broadcast value). This covers the broadcast patterns of a bias add,
// [M, N] + [N] and [M, N] + [M, 1], in one call.
template <int kStepA, int kStepB, typename Out, typename A, typename B, typename F>
TIDE_VECTOR_CLONES void map_rows(Out* o, const A* x, const B* y, int64_t rows, int64_t n,
                                 int64_t o_row_step, int64_t x_row_step, int64_t y_row_step, F f) {
  for (int64_t r = 0; r < rows; ++r) {
    Out* orow = o + r * o_row_step;
    const A* xrow = x + r * x_row_step;
    const B* yrow = y + r * y_row_step;
    for (int64_t i = 0; i < n; ++i) orow[i] = f(xrow[i * kStepA], yrow[i * kStepB]);
  }
}
template <typename Out, typename A, typename B, typename C, typename F>
TIDE_VECTOR_CLONES void map_run(Out* o, const A* x, const B* y, const C* z, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i], z[i]);
}

// True when v is one value seen at every position (all strides 0).
inline bool is_broadcast_scalar(const ArrayView& v) {
  for (int d = 0; d < v.rank(); ++d)
    if (v.shape[d] != 1 && v.strides[d] != 0) return false;
  return true;
}

// The mapN functions below first try the flat fast paths (everything
// contiguous, or one input a broadcast scalar), which skip building a plan:
// that is what keeps a 1-element op at a few tens of nanoseconds.

// dst[i] = f()   (dst may be strided)
template <typename Out, typename F>
void map0(const ArrayView& dst, F f, int64_t grain = kGrainCheap) {
  Out* out = dst.ptr<Out>();
  if (dst.is_contiguous()) {
    parallel_for(dst.numel(), grain, [=](int64_t b, int64_t e) { fill_run(out + b, e - b, f); });
    return;
  }
  const auto plan = make_loop_plan<1>({&dst});
  const int64_t so = plan.inner_stride(0);
  run_plan(plan, grain, [&](const int64_t* off, int64_t n) {
    Out* o = out + off[0];
    if (so == 1) {
      fill_run(o, n, f);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f();
    }
  });
}

// dst[i] = f(a[i])
template <typename Out, typename A, typename F>
void map1(const ArrayView& dst, const ArrayView& a, F f, int64_t grain = kGrainCheap) {
  Out* out = dst.ptr<Out>();
  const A* pa = a.ptr<A>();
  if (dst.is_contiguous() && a.is_contiguous()) {
    parallel_for(dst.numel(), grain,
                 [=](int64_t b, int64_t e) { map_run(out + b, pa + b, e - b, f); });
    return;
  }
  const auto plan = make_loop_plan<2>({&dst, &a});
  const int64_t so = plan.inner_stride(0), sa = plan.inner_stride(1);
  run_plan(plan, grain, [&](const int64_t* off, int64_t n) {
    Out* o = out + off[0];
    const A* x = pa + off[1];
    if (so == 1 && sa == 1) {
      map_run(o, x, n, f);
    } else if (so == 1 && sa == 0) {
      const Out v = f(x[0]);
      fill_run(o, n, [v] { return v; });
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(x[i * sa]);
    }
  });
}

// dst[i] = f(a[i], b[i])
template <typename Out, typename A, typename B, typename F>
void map2(const ArrayView& dst, const ArrayView& a, const ArrayView& b, F f,
          int64_t grain = kGrainCheap) {
  Out* out = dst.ptr<Out>();
  const A* pa = a.ptr<A>();
  const B* pb = b.ptr<B>();
  if (dst.is_contiguous()) {
    const bool a_flat = a.is_contiguous(), b_flat = b.is_contiguous();
    if (a_flat && b_flat) {
      parallel_for(dst.numel(), grain,
                   [=](int64_t s, int64_t e) { map_run(out + s, pa + s, pb + s, e - s, f); });
      return;
    }
    if (a_flat && is_broadcast_scalar(b)) {
      parallel_for(dst.numel(), grain,
                   [=](int64_t s, int64_t e) { map_run_scalar_b(out + s, pa + s, *pb, e - s, f); });
      return;
    }
    if (b_flat && is_broadcast_scalar(a)) {
      parallel_for(dst.numel(), grain,
                   [=](int64_t s, int64_t e) { map_run_scalar_a(out + s, *pa, pb + s, e - s, f); });
      return;
    }
  }
  const auto plan = make_loop_plan<3>({&dst, &a, &b});
  const int64_t so = plan.inner_stride(0), sa = plan.inner_stride(1), sb = plan.inner_stride(2);
  if (plan.rank == 2 && so == 1 && (sa == 1 || sb == 1) && sa <= 1 && sb <= 1) {
    // Two dims with a broadcast: whole rows at a time.
    const int64_t n = plan.sizes[1];
    const int64_t ro = plan.strides[0][0], ra = plan.strides[1][0], rb = plan.strides[2][0];
    parallel_for(plan.sizes[0], std::max<int64_t>(1, grain / n), [&](int64_t r0, int64_t r1) {
      Out* o = out + r0 * ro;
      const A* x = pa + r0 * ra;
      const B* y = pb + r0 * rb;
      if (sa == 1 && sb == 1) {
        map_rows<1, 1>(o, x, y, r1 - r0, n, ro, ra, rb, f);
      } else if (sa == 1) {
        map_rows<1, 0>(o, x, y, r1 - r0, n, ro, ra, rb, f);
      } else {
        map_rows<0, 1>(o, x, y, r1 - r0, n, ro, ra, rb, f);
      }
    });
    return;
  }
  run_plan(plan, grain, [&](const int64_t* off, int64_t n) {
    Out* o = out + off[0];
    const A* x = pa + off[1];
    const B* y = pb + off[2];
    if (so == 1 && sa == 1 && sb == 1) {
      map_run(o, x, y, n, f);
    } else if (so == 1 && sa == 1 && sb == 0) {
      map_run_scalar_b(o, x, y[0], n, f);
    } else if (so == 1 && sa == 0 && sb == 1) {
      map_run_scalar_a(o, x[0], y, n, f);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(x[i * sa], y[i * sb]);
    }
  });
}

// dst[i] = f(a[i], b[i], c[i])
template <typename Out, typename A, typename B, typename C, typename F>
void map3(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& c, F f,
          int64_t grain = kGrainCheap) {
  Out* out = dst.ptr<Out>();
  const A* pa = a.ptr<A>();
  const B* pb = b.ptr<B>();
  const C* pc = c.ptr<C>();
  if (dst.is_contiguous() && a.is_contiguous() && b.is_contiguous() && c.is_contiguous()) {
    parallel_for(dst.numel(), grain,
                 [=](int64_t s, int64_t e) { map_run(out + s, pa + s, pb + s, pc + s, e - s, f); });
    return;
  }
  const auto plan = make_loop_plan<4>({&dst, &a, &b, &c});
  const int64_t so = plan.inner_stride(0), sa = plan.inner_stride(1), sb = plan.inner_stride(2),
                sc = plan.inner_stride(3);
  run_plan(plan, grain, [&](const int64_t* off, int64_t n) {
    Out* o = out + off[0];
    const A* x = pa + off[1];
    const B* y = pb + off[2];
    const C* z = pc + off[3];
    if (so == 1 && sa == 1 && sb == 1 && sc == 1) {
      map_run(o, x, y, z, n, f);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(x[i * sa], y[i * sb], z[i * sc]);
    }
  });
}

// Throws unless every view has dst's shape (what the elementwise contract promises).
using checks::check_same_shape;

}  // namespace tide::cpu
