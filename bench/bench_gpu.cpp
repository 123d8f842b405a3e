// GPU benchmarks (issue 5, "Benchmarks"): the four cases that
// bench/compare_gpu.py runs side by side with PyTorch eager on the same GPU.
//   train/...   CFM training steps/s, torchcfm MLP (d = 2), width 256, batch 4096
//   mlp/...     forward + backward of an MLP, width 1024, 4 hidden layers,
//               batch 16384, float32 (and bf16 where Tide has it)
//   loglik/...  exact log-likelihood of 10,000 points, d = 16, width 256, RK4 100 steps
//   sample/...  sampling 100,000 points, d = 2, width 256, RK4 100 steps
// Training, likelihood and sampling also run with cuda_graph = true (the
// "+graph" cases: one step captured as a CUDA graph and replayed; on the CPU
// the same static steps run eagerly). Their warm-up run includes the
// capture, and every timed run captures once more, as each train_cfm, solve
// or log_likelihood call does. They record how far their results are from
// the eager case's on the same inputs (checks "max_rel_diff_vs_eager" and
// "matches_eager", within kGraphTolerance).
//
// The same structure as bench/bench_flow.cpp (a small harness printing one
// JSON object; compare_gpu.py reads it), with the device as a parameter:
//   tide_bench_gpu [--device cuda|cpu] [--quick] [--min-time S] [--filter TEXT] [--dump DIR]
//   --quick   tiny sizes and one timed run per case: checks the plumbing
//             (runs on the CPU in seconds; never a measurement)
//   --dump    writes each sampling/likelihood case's weights, inputs and
//             outputs as .npy under DIR/<case>/ for compare_gpu.py's checks.
// Every timed run ends with Backend::synchronize(), so asynchronous device
// work is inside the measured time. Each case records its sizes in "config",
// and compare_gpu.py builds the PyTorch side from them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tide.h"

#ifdef TIDE_BENCH_WITH_CUDA
#include "backends/cuda/cuda_backend.h"  // set_matmul_precision (the bf16 option)
#endif

using namespace tide;
namespace fs = std::filesystem;

namespace {

struct Settings {
  Device device = Device::cuda(0);
  bool quick = false;
  double min_time = 1.0;  // seconds of timed runs per case
  std::string filter;
  fs::path dump_dir;
};

struct Timing {
  double median = 0, min = 0;
  int reps = 0;
};

struct Result {
  std::string name;
  std::string unit;  // "step" or "solve"
  Timing timing;
  double flops = 0;  // per unit (matrix products only)
  std::map<std::string, double> config;
  std::vector<std::pair<std::string, double>> checks;
};

struct Skipped {
  std::string name, why;
};

// "+graph" cases: the suffix of their names, and how close (max |a - b| /
// (1 + |b|)) their results must be to the eager case's on the same inputs.
// The tests (tests/cuda/test_cuda_flow_graph.cpp) ask 1e-6 on small problems;
// 100 float32 RK4 steps on larger batches may round a little differently.
constexpr const char* kGraphSuffix = "+graph";
constexpr double kGraphTolerance = 1e-5;

// Results of the eager cases that the "+graph" cases compare against, keyed
// "<kind>/<output>" (filled only when the eager case ran; otherwise a graph
// case computes its eager reference itself, untimed).
struct EagerOutputs {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> numbers;
};

void sync(const Settings& s) {
  backend_for(s.device).synchronize();
}

// One untimed warm-up run, then timed runs (each ended by a device
// synchronization) until min_time has passed and min_reps were done.
Timing time_runs(const Settings& s, const std::function<void()>& run, double units, int min_reps,
                 const std::function<void()>& warmup = nullptr) {
  using Clock = std::chrono::steady_clock;
  (warmup ? warmup : run)();
  sync(s);
  std::vector<double> times;
  const auto start = Clock::now();
  const int reps = s.quick ? 1 : min_reps;
  while (static_cast<int>(times.size()) < reps ||
         (!s.quick && std::chrono::duration<double>(Clock::now() - start).count() < s.min_time)) {
    const auto t0 = Clock::now();
    run();
    sync(s);
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / units);
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front(), static_cast<int>(times.size())};
}

bool selected(const Settings& s, const std::string& name) {
  return s.filter.empty() || name.find(s.filter) != std::string::npos;
}

fs::path case_dir(const Settings& s, const std::string& name) {
  std::string safe = name;
  std::replace(safe.begin(), safe.end(), '/', '_');
  fs::path dir = s.dump_dir / safe;
  fs::create_directories(dir);
  return dir;
}

void dump(const fs::path& path, const Tensor& x) {
  io::write_npy(path, to(x, Device::cpu()));
}

void dump_weights(const fs::path& dir, const nn::Module& model) {
  for (const auto& [name, tensor] : model.state_dict()) dump(dir / (name + ".npy"), tensor);
}

bool all_finite(const Tensor& x) {
  return std::isfinite(sum(to(x, DType::Float64)).item());
}

// max |a - b| / (1 + |b|), in float64 on a's device.
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor a64 = to(a, DType::Float64), b64 = to(b, DType::Float64);
  return max(div(abs(sub(a64, b64)), add(abs(b64), 1.0))).item();
}

// The checks of a "+graph" case against the eager result on the same inputs.
void add_graph_checks(Result& r, const Tensor& graphed, const Tensor& eager) {
  const double diff = max_rel_diff(graphed, eager);
  r.checks.push_back({"max_rel_diff_vs_eager", diff});
  r.checks.push_back({"matches_eager", diff <= kGraphTolerance ? 1.0 : 0.0});
  r.checks.push_back({"graph_tolerance", kGraphTolerance});
}

std::string case_name(const std::string& base, bool graph) {
  return graph ? base + kGraphSuffix : base;
}

// The torchcfm MLP layers (in, out) for data dimension `dim`.
double mlp_forward_flops(int64_t rows, int64_t dim, int64_t width, int64_t hidden_layers = 3) {
  double flops = 2.0 * rows * (dim + 1) * width + 2.0 * rows * width * dim;
  flops += (hidden_layers - 1) * 2.0 * rows * width * width;
  return flops;
}

std::shared_ptr<flow::VelocityMLP> make_model(const Settings& s, int64_t dim, int64_t width,
                                              uint64_t seed) {
  Generator init(seed);
  auto model = std::make_shared<flow::VelocityMLP>(
      flow::VelocityMLPOptions{.dim = dim, .width = width, .generator = &init});
  model->to(s.device);
  return model;
}

// --- CFM training ------------------------------------------------------------

// graph: TrainOptions::cuda_graph (each run of `steps` steps: two eager
// warm-up steps, one capture, then replays). The warm-up run trains a fresh
// model with seed 0 in both variants, so its loss is compared (training is
// equal only up to float rounding, which 50 steps of Adam can amplify: an
// informative check, not a pass/fail one).
Result bench_training(const Settings& s, bool graph, EagerOutputs& eager) {
  const int64_t width = s.quick ? 32 : 256, batch = s.quick ? 64 : 4096;
  const int64_t steps = s.quick ? 3 : 50;
  const std::string name = case_name("train/w256_b4096", graph);
  auto model = make_model(s, 2, width, 1);
  const flow::DataSource data = flow::toy_data_source("8gaussians");
  uint64_t seed = 0;
  double final_loss = 0, first_run_loss = 0;
  auto run = [&] {
    final_loss = flow::train_cfm(*model, data,
                                 {.matcher = "icfm",
                                  .sigma = 0.0,
                                  .batch = batch,
                                  .steps = steps,
                                  .lr = 1e-3,
                                  .seed = seed++,
                                  .cuda_graph = graph,
                                  .log_every = 0})
                     .final_loss;
    if (seed == 1) first_run_loss = final_loss;
  };
  Result r{name, "step", time_runs(s, run, static_cast<double>(steps), 3),
           3 * mlp_forward_flops(batch, 2, width)};
  r.config = {{"width", width}, {"batch", batch}, {"dim", 2}, {"steps_per_run", steps}};
  r.checks = {{"final_loss", final_loss},
              {"finite", std::isfinite(final_loss) ? 1.0 : 0.0},
              {"first_run_loss", first_run_loss}};
  const std::string eager_key = "train/first_run_loss";
  if (!graph) {
    eager.numbers[eager_key] = first_run_loss;
  } else if (eager.numbers.count(eager_key)) {
    const double reference = eager.numbers.at(eager_key);
    r.checks.push_back({"first_run_loss_rel_diff_vs_eager",
                        std::abs(first_run_loss - reference) / std::abs(reference)});
  }
  return r;
}

// --- MLP forward + backward ------------------------------------------------------

// x [batch, width] through `layers` Linear(width, width) + SELU (fused), loss
// = mean(y^2), gradients of every weight and bias.
Result bench_mlp(const Settings& s, bool bf16) {
  const int64_t width = s.quick ? 64 : 1024, batch = s.quick ? 128 : 16384, layers = 4;
  Generator gen(2);
  const TensorOptions opts{.device = s.device};
  std::vector<Tensor> params;
  for (int64_t i = 0; i < layers; ++i) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(width));
    params.push_back(uniform({width, width}, -bound, bound, gen, opts));
    params.push_back(uniform({width}, -bound, bound, gen, opts));
  }
  for (Tensor& p : params) p.set_requires_grad(true);
  const Tensor x = randn({batch, width}, gen, opts);
  double loss_value = 0;
  auto run = [&] {
    Tensor h = x;
    for (int64_t i = 0; i < layers; ++i)
      h = linear(h, params[2 * i], params[2 * i + 1], Epilogue::Selu);
    Tensor loss = mean(square(h));
    const std::vector<Tensor> grads = grad({loss}, params);
    loss_value = loss.item();  // one host read per step, like loss.item() in PyTorch loops
    (void)grads;
  };
  // Forward: layers matmuls; backward: input and weight gradients (the first
  // layer's input gradient is not needed).
  const double matmul = 2.0 * batch * width * width;
  Result r{bf16 ? "mlp/w1024_l4_b16384_bf16" : "mlp/w1024_l4_b16384_f32", "step",
           time_runs(s, run, 1, 5), matmul * (3 * layers - 1)};
  r.config = {{"width", width}, {"batch", batch}, {"layers", layers}};
  r.checks = {{"loss", loss_value}, {"finite", std::isfinite(loss_value) ? 1.0 : 0.0}};
  return r;
}

// --- exact log-likelihood ----------------------------------------------------------

// graph: LikelihoodOptions::cuda_graph (one step of the augmented system
// captured, replayed `steps` times per solve).
Result bench_loglik(const Settings& s, bool graph, EagerOutputs& eager) {
  const int64_t dim = s.quick ? 4 : 16, width = s.quick ? 32 : 256;
  const int64_t points = s.quick ? 100 : 10000, steps = s.quick ? 4 : 100;
  auto model = make_model(s, dim, width, 4);
  model->eval();
  Generator gen(5);
  const Tensor x1 = to(randn({points, dim}, gen), s.device);
  const flow::VelocityFn field = model->as_fn();
  flow::LikelihoodOptions options{
      .solver = flow::Solver::RK4, .steps = steps, .divergence = flow::Divergence::Exact};
  options.cuda_graph = graph;
  flow::LikelihoodOptions short_options = options;
  short_options.steps = 2;
  flow::LikelihoodResult lik;
  auto run = [&] { lik = flow::log_likelihood(field, x1, options); };
  auto warmup = [&] { flow::log_likelihood(field, x1, short_options); };
  // Per evaluation: a forward pass and d input VJPs (see bench_flow.cpp).
  const double per_eval = (1 + dim) * mlp_forward_flops(points, dim, width);
  Result r{case_name("loglik/d16_w256_n10000_rk4_100", graph), "solve",
           time_runs(s, run, 1, 1, warmup), 4.0 * steps * per_eval};
  r.config = {{"dim", dim}, {"width", width}, {"points", points}, {"steps", steps}};
  r.checks = {{"finite", all_finite(lik.log_p) ? 1.0 : 0.0},
              {"mean_log_p", mean(lik.log_p).item()}};
  const std::string eager_key = "loglik/log_p";
  if (!graph) {
    eager.tensors[eager_key] = lik.log_p;
  } else {
    if (!eager.tensors.count(eager_key)) {
      flow::LikelihoodOptions eager_options = options;
      eager_options.cuda_graph = false;
      eager.tensors[eager_key] = flow::log_likelihood(field, x1, eager_options).log_p;
    }
    add_graph_checks(r, lik.log_p, eager.tensors.at(eager_key));
  }
  if (!s.dump_dir.empty()) {
    const fs::path dir = case_dir(s, r.name);
    dump_weights(dir, *model);
    dump(dir / "x1.npy", x1);
    dump(dir / "log_p.npy", lik.log_p);
  }
  return r;
}

// --- sampling ------------------------------------------------------------------------

// graph: SolveOptions::cuda_graph (one RK4 step captured, replayed `steps`
// times per solve).
Result bench_sampling(const Settings& s, bool graph, EagerOutputs& eager) {
  const int64_t width = s.quick ? 32 : 256, points = s.quick ? 1000 : 100000;
  const int64_t steps = s.quick ? 4 : 100;
  auto model = make_model(s, 2, width, 2);
  model->eval();
  Generator gen(3);
  const Tensor x0 = to(randn({points, 2}, gen), s.device);
  const flow::VelocityFn field = model->as_fn();
  const flow::SolveOptions options{
      .method = flow::Solver::RK4, .steps = steps, .cuda_graph = graph};
  Tensor x1;
  auto run = [&] { x1 = flow::solve(field, x0, 0.0, 1.0, options).x; };
  Result r{case_name("sample/d2_w256_n100000_rk4_100", graph), "solve", time_runs(s, run, 1, 3),
           4.0 * steps * mlp_forward_flops(points, 2, width)};
  r.config = {{"dim", 2}, {"width", width}, {"points", points}, {"steps", steps}};
  r.checks = {{"finite", all_finite(x1) ? 1.0 : 0.0},
              {"mean_x1", mean(to(x1, DType::Float64)).item()}};
  const std::string eager_key = "sample/x1";
  if (!graph) {
    eager.tensors[eager_key] = x1;
  } else {
    if (!eager.tensors.count(eager_key)) {
      flow::SolveOptions eager_options = options;
      eager_options.cuda_graph = false;
      eager.tensors[eager_key] = flow::solve(field, x0, 0.0, 1.0, eager_options).x;
    }
    add_graph_checks(r, x1, eager.tensors.at(eager_key));
  }
  if (!s.dump_dir.empty()) {
    const fs::path dir = case_dir(s, r.name);
    dump_weights(dir, *model);
    dump(dir / "x0.npy", x0);
    dump(dir / "x1.npy", x1);
  }
  return r;
}

// A string as a JSON string literal's contents (error messages may quote).
std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

void print_json(const Settings& s, const std::vector<Result>& results,
                const std::vector<Skipped>& skipped) {
  fmt::print("{{\n  \"device\": \"{}\",\n  \"quick\": {},\n  \"cases\": [\n", s.device,
             s.quick ? "true" : "false");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::vector<std::string> config, checks;
    for (const auto& [k, v] : r.config) config.push_back(fmt::format("\"{}\": {}", k, v));
    for (const auto& [k, v] : r.checks) checks.push_back(fmt::format("\"{}\": {:.10g}", k, v));
    fmt::print(
        "    {{\"name\": \"{}\", \"unit\": \"{}\", \"seconds\": {:.6e}, \"min_seconds\": {:.6e}, "
        "\"reps\": {}, \"flops\": {:.6e}, \"config\": {{{}}}, \"checks\": {{{}}}}}{}\n",
        r.name, r.unit, r.timing.median, r.timing.min, r.timing.reps, r.flops,
        fmt::join(config, ", "), fmt::join(checks, ", "), i + 1 < results.size() ? "," : "");
  }
  fmt::print("  ],\n  \"skipped\": [\n");
  for (size_t i = 0; i < skipped.size(); ++i)
    fmt::print("    {{\"name\": \"{}\", \"why\": \"{}\"}}{}\n", skipped[i].name,
               json_escape(skipped[i].why), i + 1 < skipped.size() ? "," : "");
  fmt::print("  ]\n}}\n");
}

Settings parse_args(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      TIDE_CHECK(i + 1 < argc, "tide_bench_gpu: {} needs a value", arg);
      return argv[++i];
    };
    if (arg == "--device") {
      const std::string d = value();
      TIDE_CHECK(d == "cuda" || d == "cpu",
                 "tide_bench_gpu: --device must be cuda or cpu, got '{}'", d);
      s.device = d == "cuda" ? Device::cuda(0) : Device::cpu();
    } else if (arg == "--quick") {
      s.quick = true;
    } else if (arg == "--min-time") {
      s.min_time = std::stod(value());
    } else if (arg == "--filter") {
      s.filter = value();
    } else if (arg == "--dump") {
      s.dump_dir = value();
    } else {
      fail(
          "tide_bench_gpu: unknown argument '{}' (expected --device cuda|cpu, --quick, "
          "--min-time S, --filter TEXT, --dump DIR)",
          arg);
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Settings s = parse_args(argc, argv);
    backend_for(s.device);  // a clear error now if the device is unavailable
    std::vector<Result> results;
    std::vector<Skipped> skipped;
    EagerOutputs eager;
    auto run_case = [&](const std::string& name, const std::function<Result()>& bench) {
      if (!selected(s, name)) return;
      // One failing case must not hide the others' numbers.
      try {
        results.push_back(bench());
      } catch (const std::exception& e) {
        skipped.push_back({name, fmt::format("failed: {}", e.what())});
        std::fprintf(stderr, "tide_bench_gpu: %s failed: %s\n", name.c_str(), e.what());
      }
    };
    // Each "+graph" case right after its eager case, which it compares against.
    run_case("train/w256_b4096", [&] { return bench_training(s, false, eager); });
    run_case("train/w256_b4096+graph", [&] { return bench_training(s, true, eager); });
    run_case("mlp/w1024_l4_b16384_f32", [&] { return bench_mlp(s, false); });
#ifdef TIDE_BENCH_WITH_CUDA
    // bf16 = the CUDA backend's mixed-precision matmuls (bf16 inputs, fp32
    // accumulation), PyTorch's autocast counterpart.
    if (s.device.is_cuda()) {
      const std::string before = cuda::matmul_precision();
      cuda::set_matmul_precision("bf16");
      run_case("mlp/w1024_l4_b16384_bf16", [&] { return bench_mlp(s, true); });
      cuda::set_matmul_precision(before);
    }
#endif
    if (selected(s, "mlp/w1024_l4_b16384_bf16") && !s.device.is_cuda())
      skipped.push_back({"mlp/w1024_l4_b16384_bf16", "bf16 matmuls exist only on CUDA"});
    run_case("loglik/d16_w256_n10000_rk4_100", [&] { return bench_loglik(s, false, eager); });
    run_case("loglik/d16_w256_n10000_rk4_100+graph", [&] { return bench_loglik(s, true, eager); });
    run_case("sample/d2_w256_n100000_rk4_100", [&] { return bench_sampling(s, false, eager); });
    run_case("sample/d2_w256_n100000_rk4_100+graph",
             [&] { return bench_sampling(s, true, eager); });
    print_json(s, results, skipped);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tide_bench_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
