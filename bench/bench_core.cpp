// Core benchmarks (issue: per-op overhead, 256x64 ops, matmul, Linear+SiLU).
// Run through bench/compare.py, which also times PyTorch and prints ratios.
// Case names are shared with compare.py; keep them in sync.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include "tide.h"

using namespace tide;

namespace {

Generator gen(0);

Tensor random_tensor(const Shape& shape, bool requires_grad = false) {
  Tensor t = randn(shape, gen);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// --- per-op cost: forward only ---
void op_forward(benchmark::State& state, const Shape& shape, bool binary_op) {
  Tensor a = random_tensor(shape), b = random_tensor(shape);
  for (auto _ : state) {
    Tensor y = binary_op ? add(a, b) : selu(a);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

// --- forward + backward with an explicit output gradient ---
void op_forward_backward(benchmark::State& state, const Shape& shape, bool binary_op) {
  Tensor a = random_tensor(shape, true), b = random_tensor(shape, true);
  Tensor g = ones(shape);
  for (auto _ : state) {
    Tensor y = binary_op ? add(a, b) : selu(a);
    backward(y, g);
    benchmark::DoNotOptimize(a.grad().raw_data());
  }
}

void matmul_tide(benchmark::State& state) {
  int64_t n = state.range(0);
  Tensor a = random_tensor({n, n}), b = random_tensor({n, n});
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// The same product through oneDNN directly: primitive created once, output
// buffer reused. This is the ceiling Tide's matmul is measured against.
void matmul_onednn(benchmark::State& state) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  int64_t n = state.range(0);
  // Raw oneDNN on its own OpenMP team, of Tide's thread count.
  omp_set_num_threads(get_num_threads());
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  dnnl::memory::desc md({n, n}, dt::f32, tag::ab);
  auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, md), engine);
  dnnl::matmul prim(pd);
  Tensor a = random_tensor({n, n}), b = random_tensor({n, n}), c = zeros({n, n});
  dnnl::memory ma(md, engine, a.raw_data()), mb(md, engine, b.raw_data()),
      mc(md, engine, c.raw_data());
  for (auto _ : state) {
    prim.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream.wait();
  }
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// y = silu(x W^T + b); loss = sum(y); backward to W, b and x.
void linear_silu(benchmark::State& state) {
  int64_t width = state.range(0), batch = 256;
  Tensor x = random_tensor({batch, width}, true);
  Tensor w = random_tensor({width, width}, true), bias = random_tensor({width}, true);
  for (auto _ : state) {
    Tensor loss = sum(silu(linear(x, w, bias)));
    backward(loss);
    benchmark::DoNotOptimize(w.grad().raw_data());
  }
}

}  // namespace

BENCHMARK_CAPTURE(op_forward, add_1, Shape{1}, true)->Name("add_1/fwd");
BENCHMARK_CAPTURE(op_forward, selu_1, Shape{1}, false)->Name("selu_1/fwd");
BENCHMARK_CAPTURE(op_forward_backward, add_1, Shape{1}, true)->Name("add_1/fwd+bwd");
BENCHMARK_CAPTURE(op_forward_backward, selu_1, Shape{1}, false)->Name("selu_1/fwd+bwd");
BENCHMARK_CAPTURE(op_forward, add_256x64, Shape{256, 64}, true)->Name("add_256x64/fwd");
BENCHMARK_CAPTURE(op_forward, selu_256x64, Shape{256, 64}, false)->Name("selu_256x64/fwd");
BENCHMARK_CAPTURE(op_forward_backward, add_256x64, Shape{256, 64}, true)
    ->Name("add_256x64/fwd+bwd");
BENCHMARK_CAPTURE(op_forward_backward, selu_256x64, Shape{256, 64}, false)
    ->Name("selu_256x64/fwd+bwd");
BENCHMARK(matmul_tide)->Name("matmul/tide")->Arg(64)->Arg(256)->Arg(1024)->Arg(2048);
BENCHMARK(matmul_onednn)->Name("matmul/onednn")->Arg(64)->Arg(256)->Arg(1024)->Arg(2048);
BENCHMARK(linear_silu)->Name("linear_silu_b256/fwd+bwd")->Arg(64)->Arg(256);

BENCHMARK_MAIN();
