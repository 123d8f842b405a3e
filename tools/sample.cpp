// tide sample: draw source points and integrate the flow from t = 0 to t = 1.
#include "flow/datasets.h"
#include "flow/plot.h"
#include "flow/time_grid.h"
#include "nn/npy.h"
#include "tensor/creation.h"
#include "tools/common.h"

namespace tide::cli {

namespace {

struct SampleFlags {
  std::string model;
  int64_t n = 1000;
  uint64_t seed = 0;
  std::string noise;
  SolverFlags solver;
  std::string out;
  std::string trajectory;
  int64_t trajectory_points = 101;
  std::string plot;
  std::string reference;
  std::string bounds;
  std::string dtype;
  DeviceFlags device;
  ArchFlags arch;
};

// The reference points a sample plot is drawn over: --reference, else the
// built-in set the model was trained on (if it was one).
Tensor plot_reference(const SampleFlags& f, const Model& model, int64_t n) {
  if (!f.reference.empty()) return load_data(f.reference, "--reference", n, f.seed + 1).points;
  const auto data = model.metadata.find("tide.data");
  if (data == model.metadata.end()) return {};
  const auto& names = flow::dataset_names();
  if (std::find(names.begin(), names.end(), data->second) == names.end()) return {};
  Generator gen(f.seed + 1);
  return flow::sample_dataset(data->second, n, gen);
}

void run_sample(const SampleFlags& f) {
  // Check every output before the (possibly long) solve.
  if (!f.out.empty()) check_output_path(f.out, "--out", ".npy");
  if (!f.trajectory.empty()) check_output_path(f.trajectory, "--trajectory", ".npy");
  if (!f.plot.empty()) check_output_path(f.plot, "--plot", ".png");
  std::optional<flow::Bounds> bounds;
  if (!f.bounds.empty()) {
    const auto b = parse_bounds(f.bounds, "--bounds");
    bounds = flow::Bounds{b[0], b[1], b[2], b[3]};
  }
  flow::SolveOptions options = solve_options(f.solver);
  options.cuda_graph = f.device.cuda_graph;
  const Model model = load_cli_model_on(f.model, f.arch, f.dtype, f.device, f.solver);
  const int64_t dim = model.field->dim();
  TIDE_CHECK(f.plot.empty() || dim == 2,
             "--plot: only 2-D samples can be plotted, but the model '{}' has dimension {}",
             f.model, dim);

  // The source points x0.
  Tensor x0;
  if (!f.noise.empty()) {
    x0 = load_npy_points(f.noise, "--noise");
    check_dim(model, x0, fmt::format("--noise '{}'", f.noise));
  } else {
    TIDE_CHECK(!model.custom_source,
               "--model '{}': trained from a custom source distribution, which 'tide sample' "
               "cannot draw; pass the source points with --noise X0.npy",
               f.model);
    Generator gen(f.seed);
    x0 = mul(randn({f.n, dim}, gen, {.dtype = DType::Float64}), model.source_std);
  }
  x0 = to(to(x0, model.field->dtype()), model.field->device());

  if (!f.trajectory.empty()) {
    options.record_trajectory = true;
    // Fixed-step solvers record their own grid; dopri5 is read out at evenly
    // spaced times by its dense output.
    if (options.method == flow::Solver::Dopri5) {
      options.trajectory_times = flow::uniform_time_grid(0.0, 1.0, f.trajectory_points - 1);
    }
  }
  const Stopwatch clock;
  const flow::Solution solution = flow::solve(model.field->as_fn(), x0, 0.0, 1.0, options);
  const double seconds = clock.seconds();

  fmt::print("sampled {} points of dimension {} with {}: NFE {} ({} steps", x0.size(0), dim,
             f.solver.solver, solution.nfe, solution.steps);
  if (options.method == flow::Solver::Dopri5) fmt::print(", {} rejected", solution.rejected);
  fmt::print(") in {:.3f} s\n", seconds);

  if (!f.out.empty()) {
    io::write_npy(f.out, solution.x);
    fmt::print("wrote {} [{} x {}]\n", f.out, solution.x.size(0), dim);
  }
  if (!f.trajectory.empty()) {
    io::write_npy(f.trajectory, solution.trajectory);
    fmt::print("wrote {} [{} times x {} x {}]\n", f.trajectory, solution.trajectory.size(0),
               x0.size(0), dim);
  }
  if (f.out.empty() && f.trajectory.empty() && f.plot.empty()) {
    fmt::print("nothing written: pass --out, --trajectory or --plot\n");
  }
  if (!f.plot.empty()) {
    const Tensor reference = plot_reference(f, model, x0.size(0));
    if (!bounds) bounds = flow::bounds_of({reference.defined() ? reference : solution.x});
    flow::Plot plot({.bounds = bounds});
    if (reference.defined()) plot.scatter(reference, flow::colors::kGray);
    plot.scatter(solution.x, flow::colors::kBlue);
    plot.save(f.plot);
    fmt::print("wrote {} (samples in blue{})\n", f.plot,
               reference.defined() ? ", reference data in gray" : "");
  }
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto flags = std::make_shared<SampleFlags>();
  CLI::App* cmd = app.add_subcommand(
      "sample",
      "Sample a trained model: draw x0 from the source N(0, s^2 I) (or read it) and integrate\n"
      "dx/dt = v(x, t) from t = 0 to t = 1. The architecture comes from the model file.");
  cmd->add_option("--model", flags->model, "The model file (.safetensors)")->required();
  // No cap below 2^40: a count too large for the machine fails in the
  // allocator with an error naming the bytes it asked for.
  CLI::Option* n = cmd->add_option("--n", flags->n, "How many points to draw")
                       ->check(integer_in(1, int64_t{1} << 40))
                       ->capture_default_str();
  CLI::Option* seed =
      cmd->add_option("--seed", flags->seed, "Seed of the source draw")->capture_default_str();
  cmd->add_option("--noise", flags->noise,
                  "Read the source points x0 [N, d] from this .npy file instead of drawing them")
      ->excludes(n)
      ->excludes(seed);
  add_solver_flags(*cmd, flags->solver);
  cmd->add_option("--out", flags->out, "Write the samples x1 [N, d] to this .npy file");
  cmd->add_option("--trajectory", flags->trajectory,
                  "Write the trajectories [T, N, d] to this .npy file (T = --steps + 1 for "
                  "fixed-step solvers, --trajectory-points for dopri5)");
  cmd->add_option("--trajectory-points", flags->trajectory_points,
                  "dopri5: the number of evenly spaced times recorded")
      ->check(integer_in(2, 100000))
      ->capture_default_str();
  cmd->add_option("--plot", flags->plot,
                  "Plot the samples (2-D models) over reference data to this .png file");
  cmd->add_option("--reference", flags->reference,
                  "Reference data for --plot: a built-in set or a .npy/.csv file (default: the "
                  "built-in set the model was trained on)");
  cmd->add_option("--bounds", flags->bounds,
                  "Plot bounds xmin,xmax,ymin,ymax (default: those of the reference data)");
  cmd->add_option("--dtype", flags->dtype, "Convert the model to this dtype (default: as stored)")
      ->check(CLI::IsMember({"float32", "float64"}));
  add_device_flags(*cmd, flags->device, "Where to integrate",
                   "Fixed-step solvers: capture one solver step as a CUDA Graph and replay it "
                   "--steps times (on the CPU the same step runs eagerly)");
  add_arch_flags(*cmd, flags->arch);
  cmd->callback([flags] { run_sample(*flags); });
}

}  // namespace tide::cli
