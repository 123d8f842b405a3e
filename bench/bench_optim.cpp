// Optimizer benchmarks: one optimizer step over the torchcfm 2-D MLP's
// parameters (8706) and over a 1M-parameter MLP (4 layers of 500x500), with
// gradients already set. Run through bench/compare_optim.py, which times
// torch.optim on the same shapes and prints ratios. Case names are shared with
// compare_optim.py; keep them in sync.
#include <benchmark/benchmark.h>

#include "tide.h"

using namespace tide;

namespace {

// The torchcfm MLP for 2-D data with time (w = 64): 3 -> 64 -> 64 -> 64 -> 2.
const std::vector<Shape> kTorchcfmShapes = {{64, 3},  {64}, {64, 64}, {64},
                                            {64, 64}, {64}, {2, 64},  {2}};
// 4 x (500x500 weight + 500 bias) = 1,002,000 parameters.
const std::vector<Shape> kMlp1MShapes = {{500, 500}, {500}, {500, 500}, {500},
                                         {500, 500}, {500}, {500, 500}, {500}};

std::vector<Tensor> make_params(const std::vector<Shape>& shapes) {
  Generator gen(0);
  std::vector<Tensor> params;
  for (const Shape& s : shapes) {
    Tensor p = randn(s, gen);
    p.set_requires_grad(true);
    p.set_grad(mul(randn(s, gen), 1e-2));
    params.push_back(p);
  }
  return params;
}

// Times opt.step() on params (gradients already set).
void run_steps(benchmark::State& state, nn::Optimizer& opt, const std::vector<Tensor>& params) {
  for (auto _ : state) {
    opt.step();
    benchmark::DoNotOptimize(params[0].raw_data());
  }
  int64_t elements = 0;
  for (const Tensor& p : params) elements += p.numel();
  state.counters["elements"] = static_cast<double>(elements);
}

void adam_step(benchmark::State& state, const std::vector<Shape>* shapes) {
  std::vector<Tensor> params = make_params(*shapes);
  nn::Adam opt(params);
  run_steps(state, opt, params);
}

void adamw_step(benchmark::State& state, const std::vector<Shape>* shapes) {
  std::vector<Tensor> params = make_params(*shapes);
  nn::AdamW opt(params);
  run_steps(state, opt, params);
}

void sgd_momentum_step(benchmark::State& state, const std::vector<Shape>* shapes) {
  std::vector<Tensor> params = make_params(*shapes);
  nn::SGD opt(params, {.lr = 1e-3, .momentum = 0.9});
  run_steps(state, opt, params);
}

}  // namespace

BENCHMARK_CAPTURE(adam_step, torchcfm_8706, &kTorchcfmShapes)->Name("adam/torchcfm_8706");
BENCHMARK_CAPTURE(adam_step, mlp_1M, &kMlp1MShapes)->Name("adam/mlp_1M");
BENCHMARK_CAPTURE(adamw_step, torchcfm_8706, &kTorchcfmShapes)->Name("adamw/torchcfm_8706");
BENCHMARK_CAPTURE(adamw_step, mlp_1M, &kMlp1MShapes)->Name("adamw/mlp_1M");
BENCHMARK_CAPTURE(sgd_momentum_step, torchcfm_8706, &kTorchcfmShapes)
    ->Name("sgd_momentum/torchcfm_8706");
BENCHMARK_CAPTURE(sgd_momentum_step, mlp_1M, &kMlp1MShapes)->Name("sgd_momentum/mlp_1M");

BENCHMARK_MAIN();
