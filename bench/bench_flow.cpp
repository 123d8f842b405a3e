// Flow benchmarks (issue 4, "Benchmarks"): CFM training steps/s, sampling with
// RK4, exact and Hutchinson log-likelihoods, each with the model FLOPs of one
// run, plus the machine's measured FP32 FMA peak (bench/peak_flops.cpp) so
// every case can be read as a fraction of peak.
//
// A small harness rather than Google Benchmark: the cases run for seconds, not
// microseconds, and bench/compare_flow.py needs the FLOP counts and some
// numerical checks next to the times. Prints one JSON object on stdout:
//   {"threads": T, "peak_gflops": P, "vector_bits": 512,
//    "cases": [{"name", "unit": "step"|"solve", "seconds" (median per unit),
//               "min_seconds", "reps", "flops" (per unit), "checks": {...}}]}
//
// Usage: tide_bench_flow [--quick] [--min-time S] [--filter SUBSTRING]
//                        [--dump DIR] [--no-peak]
//   --quick   one timed repetition per case (checks the plumbing)
//   --dump    writes each case's weights, inputs and outputs as .npy under
//             DIR/<case>/, so compare_flow.py can rerun them in PyTorch and
//             compare the numbers.
// Case names are shared with compare_flow.py; keep them in sync.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tide.h"

namespace tide_bench {
double measure_peak_gflops(int threads, double seconds, int* vector_bits);
}

using namespace tide;
namespace fs = std::filesystem;

namespace {

struct Settings {
  bool quick = false;
  double min_time = 1.0;  // seconds of timed runs per case (at least min_reps runs)
  std::string filter;
  fs::path dump_dir;
  bool peak = true;
};

// --- FLOP counts: matrix products only, 2*M*N*K per Linear -------------------

// The Linear layers of the torchcfm MLP: (in, out) pairs.
std::vector<std::pair<int64_t, int64_t>> mlp_layers(int64_t dim, int64_t width,
                                                    int64_t hidden_layers = 3) {
  std::vector<std::pair<int64_t, int64_t>> layers{{dim + 1, width}};
  for (int64_t i = 1; i < hidden_layers; ++i) layers.push_back({width, width});
  layers.push_back({width, dim});
  return layers;
}

// One forward pass on `rows` rows.
double forward_flops(int64_t rows, int64_t dim, int64_t width) {
  double flops = 0;
  for (auto [in, out] : mlp_layers(dim, width)) flops += 2.0 * rows * in * out;
  return flops;
}

// One reverse pass to the input only (a vector-Jacobian product in x): every
// layer's input gradient, no weight gradients.
double input_vjp_flops(int64_t rows, int64_t dim, int64_t width) {
  return forward_flops(rows, dim, width);
}

// One training step: forward, plus every weight gradient and every input
// gradient except the first layer's (x_t needs none).
double training_step_flops(int64_t batch, int64_t dim, int64_t width) {
  const double first_input_grad = 2.0 * batch * (dim + 1) * width;
  return 3 * forward_flops(batch, dim, width) - first_input_grad;
}

// --- timing -------------------------------------------------------------------

struct Timing {
  double median = 0, min = 0;
  int reps = 0;
};

// Runs `run` once untimed (warm-up: allocator, oneDNN primitive caches), then
// timed until `min_time` has passed and at least `min_reps` runs were done.
// `units` is how many steps (or solves) one run does.
Timing time_runs(const std::function<void()>& run, double units, const Settings& settings,
                 int min_reps, const std::function<void()>& warmup = nullptr) {
  using Clock = std::chrono::steady_clock;
  (warmup ? warmup : run)();
  std::vector<double> times;
  const auto start = Clock::now();
  const int reps = settings.quick ? 1 : min_reps;
  while (static_cast<int>(times.size()) < reps ||
         (!settings.quick &&
          std::chrono::duration<double>(Clock::now() - start).count() < settings.min_time)) {
    const auto t0 = Clock::now();
    run();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / units);
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front(), static_cast<int>(times.size())};
}

struct Result {
  std::string name;
  std::string unit;  // "step" (training) or "solve"
  Timing timing;
  double flops = 0;                                    // per unit
  std::vector<std::pair<std::string, double>> checks;  // numbers to sanity-check
};

bool selected(const Settings& settings, const std::string& name) {
  return settings.filter.empty() || name.find(settings.filter) != std::string::npos;
}

fs::path case_dir(const Settings& settings, const std::string& name) {
  std::string safe = name;
  std::replace(safe.begin(), safe.end(), '/', '_');
  fs::path dir = settings.dump_dir / safe;
  fs::create_directories(dir);
  return dir;
}

void dump_weights(const fs::path& dir, const nn::Module& model) {
  for (const auto& [name, tensor] : model.state_dict())
    io::write_npy(dir / (name + ".npy"), tensor);
}

bool all_finite(const Tensor& x) {
  return std::isfinite(sum(to(x, DType::Float64)).item());
}

double mean_of(const Tensor& x) {
  return mean(to(x, DType::Float64)).item();
}

std::shared_ptr<flow::VelocityMLP> make_model(int64_t dim, int64_t width, uint64_t seed) {
  Generator init(seed);
  return std::make_shared<flow::VelocityMLP>(
      flow::VelocityMLPOptions{.dim = dim, .width = width, .generator = &init});
}

// --- (1), (2) CFM training ------------------------------------------------------

// Steps/s of tide::flow::train_cfm (I-CFM, sigma 0, Adam 1e-3; x0 ~ N(0, I),
// x1 from FFJORD's 8gaussians), i.e. everything a training step does: draw x0
// and x1, the matcher (t, x_t, u_t), forward, MSE, backward, Adam.
Result bench_training(const Settings& settings, const std::string& name, int64_t width,
                      int64_t batch, int64_t steps_per_run) {
  auto model = make_model(2, width, 1);
  const flow::DataSource data = flow::toy_data_source("8gaussians");
  uint64_t seed = 0;
  double final_loss = 0;
  auto run = [&] {
    flow::TrainResult r = flow::train_cfm(*model, data,
                                          {.matcher = "icfm",
                                           .sigma = 0.0,
                                           .batch = batch,
                                           .steps = steps_per_run,
                                           .lr = 1e-3,
                                           .seed = seed++,
                                           .log_every = 0});
    final_loss = r.final_loss;
  };
  Result result{name, "step", time_runs(run, static_cast<double>(steps_per_run), settings, 3),
                training_step_flops(batch, 2, width)};
  result.checks = {{"final_loss", final_loss}, {"finite", std::isfinite(final_loss) ? 1.0 : 0.0}};
  return result;
}

// --- (3) sampling -------------------------------------------------------------------

Result bench_sampling(const Settings& settings, const std::string& name, int64_t width,
                      int64_t points, int64_t steps) {
  auto model = make_model(2, width, 2);
  model->eval();
  Generator gen(3);
  Tensor x0 = randn({points, 2}, gen);
  const flow::VelocityFn field = model->as_fn();
  Tensor x1;
  auto run = [&] {
    x1 = flow::solve(field, x0, 0.0, 1.0, {.method = flow::Solver::RK4, .steps = steps}).x;
  };
  Result result{name, "solve", time_runs(run, 1, settings, 3),
                4.0 * steps * forward_flops(points, 2, width)};
  result.checks = {{"finite", all_finite(x1) ? 1.0 : 0.0}, {"mean_x1", mean_of(x1)}};
  if (!settings.dump_dir.empty()) {
    fs::path dir = case_dir(settings, name);
    dump_weights(dir, *model);
    io::write_npy(dir / "x0.npy", x0);
    io::write_npy(dir / "x1.npy", x1);
  }
  return result;
}

// --- (4) log-likelihoods ------------------------------------------------------------

struct LoglikCase {
  std::string name;
  int64_t dim, width;
  DType dtype = DType::Float32;
  flow::Divergence divergence = flow::Divergence::Exact;
  int64_t probes = 1;
  int min_reps = 3;
};

// log p1 of 1,000 points by RK4 with 100 steps from t = 1 to 0 (divergence
// accumulated in float64, the library's default). The points: 8gaussians for
// d = 2, standard normal for larger d; the model is freshly initialised
// (untrained weights make a velocity field as costly as trained ones).
Result bench_loglik(const Settings& settings, const LoglikCase& c) {
  const int64_t points = 1000, steps = 100;
  auto model = make_model(c.dim, c.width, 4);
  model->to(c.dtype);
  model->eval();
  Generator gen(5);
  Tensor x1 = c.dim == 2 ? flow::sample_dataset("8gaussians", points, gen, c.dtype)
                         : randn({points, c.dim}, gen, {.dtype = c.dtype});
  const flow::LikelihoodOptions options{.solver = flow::Solver::RK4,
                                        .steps = steps,
                                        .divergence = c.divergence,
                                        .probes = c.probes,
                                        .seed = 6};
  flow::LikelihoodResult lik;
  auto run = [&] { lik = flow::log_likelihood(*model, x1, options); };
  // Warm up on a short solve: the long one runs for seconds.
  flow::LikelihoodOptions short_options = options;
  short_options.steps = 2;
  auto warmup = [&] { flow::log_likelihood(*model, x1, short_options); };

  // Per evaluation of the augmented field: one forward pass on the points and
  // one input VJP (or, for the MLP's forward-mode exact trace, one tangent
  // pass) per divergence term (d for exact, K for Hutchinson). That is the
  // arithmetic any implementation needs; Hutchinson's replicated batch also
  // repeats the forward pass K times, which is not counted.
  const int64_t vjps = c.divergence == flow::Divergence::Exact ? c.dim : c.probes;
  const double flops_per_eval =
      forward_flops(points, c.dim, c.width) + vjps * input_vjp_flops(points, c.dim, c.width);
  Result result{c.name, "solve", time_runs(run, 1, settings, c.min_reps, warmup),
                4.0 * steps * flops_per_eval};
  result.checks = {{"finite", all_finite(lik.log_p) ? 1.0 : 0.0},
                   {"mean_log_p", mean_of(lik.log_p)},
                   {"nfe", static_cast<double>(lik.nfe)}};
  if (!settings.dump_dir.empty()) {
    fs::path dir = case_dir(settings, c.name);
    dump_weights(dir, *model);
    io::write_npy(dir / "x1.npy", x1);
    io::write_npy(dir / "log_p.npy", lik.log_p);
  }
  return result;
}

void print_json(const std::vector<Result>& results, double peak, int vector_bits) {
  fmt::print("{{\n  \"threads\": {},\n  \"peak_gflops\": {:.2f},\n  \"vector_bits\": {},\n",
             get_num_threads(), peak, vector_bits);
  fmt::print("  \"cases\": [\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    fmt::print(
        "    {{\"name\": \"{}\", \"unit\": \"{}\", \"seconds\": {:.6e}, \"min_seconds\": {:.6e}, "
        "\"reps\": {}, \"flops\": {:.6e}, \"checks\": {{",
        r.name, r.unit, r.timing.median, r.timing.min, r.timing.reps, r.flops);
    for (size_t j = 0; j < r.checks.size(); ++j)
      fmt::print("{}\"{}\": {:.10g}", j ? ", " : "", r.checks[j].first, r.checks[j].second);
    fmt::print("}}}}{}\n", i + 1 < results.size() ? "," : "");
  }
  fmt::print("  ]\n}}\n");
}

Settings parse_args(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      TIDE_CHECK(i + 1 < argc, "tide_bench_flow: {} needs a value", arg);
      return argv[++i];
    };
    if (arg == "--quick")
      s.quick = true;
    else if (arg == "--min-time")
      s.min_time = std::stod(value());
    else if (arg == "--filter")
      s.filter = value();
    else if (arg == "--dump")
      s.dump_dir = value();
    else if (arg == "--no-peak")
      s.peak = false;
    else
      tide::fail(
          "tide_bench_flow: unknown argument '{}' (expected --quick, --min-time S, "
          "--filter TEXT, --dump DIR, --no-peak)",
          arg);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Settings settings = parse_args(argc, argv);
    std::vector<Result> results;
    if (selected(settings, "train/w64_b256"))
      results.push_back(bench_training(settings, "train/w64_b256", 64, 256, 200));
    if (selected(settings, "train/w256_b1024"))
      results.push_back(bench_training(settings, "train/w256_b1024", 256, 1024, 20));
    if (selected(settings, "sample/w64_n10000_rk4_100"))
      results.push_back(bench_sampling(settings, "sample/w64_n10000_rk4_100", 64, 10000, 100));
    const std::vector<LoglikCase> loglik_cases = {
        {.name = "loglik/d2_w64_f32_exact", .dim = 2, .width = 64},
        // A single solve takes seconds: one timed run is enough.
        {.name = "loglik/d16_w256_f32_exact", .dim = 16, .width = 256, .min_reps = 1},
        {.name = "loglik/d2_w64_f64_exact", .dim = 2, .width = 64, .dtype = DType::Float64},
        {.name = "loglik/d2_w64_f32_hutch1",
         .dim = 2,
         .width = 64,
         .divergence = flow::Divergence::Hutchinson,
         .probes = 1},
        {.name = "loglik/d2_w64_f32_hutch4",
         .dim = 2,
         .width = 64,
         .divergence = flow::Divergence::Hutchinson,
         .probes = 4},
    };
    for (const LoglikCase& c : loglik_cases)
      if (selected(settings, c.name)) results.push_back(bench_loglik(settings, c));

    int vector_bits = 0;
    const double peak =
        settings.peak ? tide_bench::measure_peak_gflops(0, settings.quick ? 0.2 : 0.5, &vector_bits)
                      : 0.0;
    print_json(results, peak, vector_bits);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tide_bench_flow: %s\n", e.what());
    return 1;
  }
  return 0;
}
