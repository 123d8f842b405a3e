// oneDNN paths against Tide's own loops (backends/cpu/onednn.h), to pick the
// size thresholds. Each case times the loops (oneDNN switched off) and the
// oneDNN primitive (called directly, so below its threshold too) in the same
// run, interleaved, and keeps the minimum over many repetitions: the machine
// is shared, and the minimum is the least disturbed estimate.
//
//   tide_bench_onednn [reps [section]]   (reps default 40; sections: binary,
//                                         eltwise_backward, layer_norm, add_256x64)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "backends/backend.h"
#include "backends/cpu/loops.h"
#include "backends/cpu/onednn.h"
#include "backends/cpu/threads.h"
#include "tide.h"

using namespace tide;
namespace onednn = tide::cpu::onednn;

namespace {

int g_reps = 40;
std::string g_filter;  // only the sections whose name contains this (argv[2])

bool selected(const char* section) {
  return std::string(section).find(g_filter) != std::string::npos;
}

Backend& backend() {
  return backend_for(Device::cpu());
}

// A contiguous float32 buffer with values in [lo, hi).
struct Buffer {
  std::vector<float> values;
  Shape shape;
  Buffer(Shape s, float lo = -2, float hi = 2) : values(std::max<int64_t>(s.numel(), 1)), shape(s) {
    uint64_t state = 12345 + values.size();
    for (float& v : values) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      v = lo + (hi - lo) * float(state >> 40) / float(1 << 24);
    }
  }
  ArrayView view() const {
    return {const_cast<float*>(values.data()), DType::Float32, shape, contiguous_strides(shape)};
  }
};

// A view of b broadcast to `shape` (stride 0 where b has size 1).
ArrayView broadcast_view(const Buffer& b, const Shape& shape) {
  ArrayView v = b.view();
  Shape strides = contiguous_strides(b.shape);
  for (int d = 0; d < shape.size(); ++d)
    if (b.shape[d] == 1 && shape[d] != 1) strides[d] = 0;
  v.shape = shape;
  v.strides = strides;
  return v;
}

double seconds_per_call(const std::function<void()>& fn, int calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) fn();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count() / calls;
}

// Minimum per-call time (us) of each function, run interleaved.
std::vector<double> compare(const std::vector<std::function<void()>>& fns, int64_t numel) {
  const int calls = int(std::clamp<int64_t>(4'000'000 / std::max<int64_t>(numel, 1), 3, 2000));
  std::vector<double> best(fns.size(), 1e30);
  for (auto& fn : fns) fn();  // warm up: builds the oneDNN plans
  for (int rep = 0; rep < g_reps; ++rep) {
    for (size_t k = 0; k < fns.size(); ++k) {
      const size_t i = (rep % 2 == 0) ? k : fns.size() - 1 - k;  // alternate the order
      best[i] = std::min(best[i], seconds_per_call(fns[i], calls));
    }
  }
  for (double& b : best) b *= 1e6;
  return best;
}

void report(const std::string& name, const Shape& shape, const std::vector<double>& us) {
  std::printf("%-28s %-12s loops %9.2f us  onednn %9.2f us  onednn/loops %5.2f\n", name.c_str(),
              fmt::format("{}", shape).c_str(), us[0], us[1], us[1] / us[0]);
}

// The sizes the thresholds are chosen at: 1K, 16K (256x64), 64K, 1M.
const std::vector<Shape> kShapes = {{16, 64}, {256, 64}, {1024, 64}, {4096, 256}};

// Runs fn with oneDNN off (the loops).
template <typename Fn>
void loops_only(Fn&& fn) {
  onednn::set_enabled(false);
  fn();
  onednn::set_enabled(true);
}

void bench_binary(BinaryOp op, const char* layout) {
  std::vector<Shape> shapes = kShapes;
  shapes.push_back({4096, 1024});  // 4M: where memory bandwidth decides
  for (const Shape& shape : shapes) {
    const std::string l = layout;
    const Shape b_shape = l == "row" ? Shape{shape[1]} : l == "col" ? Shape{shape[0], 1} : shape;
    const Buffer a(shape, 0.5f, 2), b(l == "row" ? Shape{1, shape[1]} : b_shape, 0.5f, 2);
    Buffer out(shape);
    const ArrayView va = a.view(), vb = broadcast_view(b, shape), vo = out.view();
    const auto us = compare({[&] { loops_only([&] { backend().binary(op, vo, va, vb, 0, 0); }); },
                             [&] {
                               if (!onednn::try_binary(op, vo, va, vb)) std::abort();
                             }},
                            shape.numel());
    report(fmt::format("{} {}", op_name(op), layout), shape, us);
  }
}

void bench_eltwise_backward(BinaryOp op) {
  for (const Shape& shape : kShapes) {
    const Buffer g(shape), x(shape, -3.f, 3.f);
    Buffer out(shape);
    const ArrayView vg = g.view(), vx = x.view(), vo = out.view();
    const auto us = compare({[&] { loops_only([&] { backend().binary(op, vo, vg, vx, 0, 0); }); },
                             [&] {
                               if (!onednn::try_eltwise_backward(op, vo, vg, vx)) std::abort();
                             }},
                            shape.numel());
    report(op_name(op), shape, us);
  }
}

void bench_layer_norm(bool affine) {
  std::vector<Shape> shapes = kShapes;
  shapes.push_back({64, 256});
  shapes.push_back({256, 256});
  for (const Shape& shape : shapes) {
    const int64_t rows = shape[0], c = shape[1];
    const Buffer x(shape), g(shape), w({c}), b({c});
    Buffer y(shape), mean({rows}), rstd({rows}), gx(shape);
    const ArrayView vw = affine ? w.view() : ArrayView{}, vb = affine ? b.view() : ArrayView{};
    auto fwd_loops = [&] {
      loops_only([&] {
        backend().layer_norm(y.view(), mean.view(), rstd.view(), x.view(), vw, vb, 1e-5);
      });
    };
    auto fwd_onednn = [&] {
      if (!onednn::try_layer_norm(y.view(), mean.view(), rstd.view(), x.view(), vw, vb, 1e-5))
        std::abort();
    };
    report(affine ? "layer_norm affine" : "layer_norm", shape,
           compare({fwd_loops, fwd_onednn}, shape.numel()));
    fwd_loops();
    // grad_x only: the parameter gradients run in the loops either way.
    auto bwd_loops = [&] {
      loops_only([&] {
        backend().layer_norm_backward(gx.view(), ArrayView{}, ArrayView{}, g.view(), x.view(),
                                      mean.view(), rstd.view(), vw);
      });
    };
    auto bwd_onednn = [&] {
      if (!onednn::try_layer_norm_backward(gx.view(), g.view(), x.view(), mean.view(), rstd.view(),
                                           vw))
        std::abort();
    };
    report(affine ? "layer_norm_bwd affine" : "layer_norm_bwd", shape,
           compare({bwd_loops, bwd_onednn}, shape.numel()));
  }
}

// The 256x64 add: where the time goes, and what 2 threads would give.
void add_256x64_breakdown() {
  const Shape shape{256, 64};
  const Buffer a(shape), b(shape);
  Buffer out(shape);
  const ArrayView va = a.view(), vb = b.view(), vo = out.view();
  Generator gen(1);
  Tensor ta = randn(shape, gen), tb = randn(shape, gen);
  auto plus = [](float x, float y) { return x + y; };
  // A raw oneDNN binary_add, run on 1 or 2 OpenMP threads.
  using dt = dnnl::memory::data_type;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc md({shape.numel()}, dt::f32, dnnl::memory::dims{1});
  dnnl::binary prim(dnnl::binary::primitive_desc(
      dnnl::binary::desc(dnnl::algorithm::binary_add, md, md, md), engine));
  dnnl::memory ma(md, engine, va.data), mb(md, engine, vb.data), mo(md, engine, vo.data);
  auto raw = [&](int threads) {
    omp_set_num_threads(threads);
    prim.execute(stream, {{DNNL_ARG_SRC_0, ma}, {DNNL_ARG_SRC_1, mb}, {DNNL_ARG_DST, mo}});
    stream.wait();
  };
  std::vector<std::function<void()>> fns = {
      [&] { loops_only([&] { backend().binary(BinaryOp::Add, vo, va, vb, 0, 0); }); },
      [&] { cpu::map2<float, float, float>(vo, va, vb, plus, 8192); },  // 2 threads
      [&] { raw(1); },
      [&] { raw(2); },
      [&] {
        Tensor y = add(ta, tb);
        if (y.numel() != shape.numel()) std::abort();
      },
      [&] {
        Tensor y = empty(shape);
        if (y.numel() != shape.numel()) std::abort();
      },
  };
  const auto us = compare(fns, shape.numel());
  std::printf("\nadd 256x64 breakdown (us, min of %d reps):\n", g_reps);
  std::printf("  backend add, loops, 1 thread (kGrainCheap)   %6.2f\n", us[0]);
  std::printf("  loops, 2 threads (grain 8192)                %6.2f\n", us[1]);
  std::printf("  raw oneDNN binary_add, 1 thread              %6.2f\n", us[2]);
  std::printf("  raw oneDNN binary_add, 2 threads             %6.2f\n", us[3]);
  std::printf("  tide::add tensor op (alloc + dispatch + op)  %6.2f\n", us[4]);
  std::printf("  tide::empty 256x64 (allocation alone)        %6.2f\n", us[5]);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc > 1) g_reps = std::max(1, std::atoi(argv[1]));
  if (argc > 2) g_filter = argv[2];
  set_num_threads(2);
  std::printf("threads %d, reps %d\n\n", get_num_threads(), g_reps);
  if (selected("binary")) {
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div}) bench_binary(op, "same");
    bench_binary(BinaryOp::Add, "row");
    bench_binary(BinaryOp::Add, "col");
    std::printf("\n");
  }
  if (selected("eltwise_backward")) {
    for (BinaryOp op : {BinaryOp::GeluErfGrad, BinaryOp::GeluTanhGrad}) bench_eltwise_backward(op);
    std::printf("\n");
  }
  if (selected("layer_norm")) {
    bench_layer_norm(true);
    bench_layer_norm(false);
  }
  if (selected("add_256x64")) add_256x64_breakdown();
  return 0;
}
