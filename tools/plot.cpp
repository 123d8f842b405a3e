// tide plot: PNG figures of 2-D flows: samples against data, a log-density
// heat map on a grid (the model's, or the data's true one), trajectories.
#include "flow/plot.h"
#include "flow/datasets.h"
#include "nn/npy.h"
#include "tools/common.h"

namespace tide::cli {

namespace {

struct PlotFlags {
  std::string out;
  std::string samples;
  std::string data;
  int64_t n = 2000;
  uint64_t seed = 0;
  std::string model;
  bool density = false;
  bool true_density = false;
  std::string trajectory;
  std::string bounds;
  int size = 640;
  int resolution = 100;
  int64_t max_paths = 500;
  bool log_scale = false;
  SolverFlags solver{.solver = "rk4", .steps = 20};
  std::string dtype;
  DeviceFlags device;
  ArchFlags arch;
};

Tensor load_trajectory(const std::string& path) {
  const std::string what = fmt::format("--trajectory '{}'", path);
  TIDE_CHECK(std::filesystem::exists(path), "{}: file not found", what);
  const Tensor t = io::read_npy(path);
  TIDE_CHECK(
      t.dim() == 3 && t.size(0) >= 1 && t.size(1) >= 1 && t.size(2) == 2 && t.is_floating_point(),
      "{}: expected a floating-point array [T, N, 2] (as 'tide sample --trajectory' "
      "writes), got {}",
      what, t.describe());
  return t;
}

void run_plot(const PlotFlags& f) {
  check_output_path(f.out, "--out", ".png");
  TIDE_CHECK(!f.samples.empty() || !f.data.empty() || !f.trajectory.empty() || f.density,
             "nothing to plot: give --samples, --data, --trajectory, or --model with --density");
  TIDE_CHECK(!(f.density && f.true_density), "--density and --true-density: choose one");
  TIDE_CHECK(f.model.empty() || f.density, "--model '{}': used only with --density", f.model);

  // Load every input before drawing anything.
  Tensor samples, data, trajectory;
  if (!f.samples.empty()) samples = load_npy_points(f.samples, "--samples");
  bool builtin_data = false;
  if (!f.data.empty()) {
    const Data loaded = load_data(f.data, "--data", f.n, f.seed);
    data = loaded.points;
    builtin_data = loaded.builtin;
  }
  if (!f.trajectory.empty()) trajectory = load_trajectory(f.trajectory);
  for (const auto& [tensor, what] : {std::pair{samples, "--samples '" + f.samples + "'"},
                                     std::pair{data, "--data '" + f.data + "'"}}) {
    TIDE_CHECK(!tensor.defined() || tensor.size(1) == 2,
               "{}: only 2-D points can be plotted, got {} columns", what,
               tensor.defined() ? tensor.size(1) : 0);
  }
  if (f.true_density) {
    TIDE_CHECK(builtin_data && flow::has_log_density(f.data),
               "--true-density: needs --data naming a built-in set with a closed-form density "
               "(8gaussians, cfm-8gaussians, checkerboard), got '{}'",
               f.data);
  }
  std::optional<Model> model;
  if (f.density) {
    model = load_cli_model_on(f.model, f.arch, f.dtype, f.device, f.solver);
    TIDE_CHECK(model->field->dim() == 2,
               "--density: only a 2-D model's density can be drawn, but '{}' has dimension {}",
               f.model, model->field->dim());
    TIDE_CHECK(!model->custom_source,
               "--density: the model '{}' was trained from a custom source with no closed-form "
               "density",
               f.model);
  }

  // Bounds: given, or those of the point layers, or of the model's training set.
  flow::Bounds bounds;
  if (!f.bounds.empty()) {
    const auto b = parse_bounds(f.bounds, "--bounds");
    bounds = {b[0], b[1], b[2], b[3]};
  } else if (samples.defined() || data.defined() || trajectory.defined()) {
    bounds = flow::bounds_of({data, samples, trajectory});
  } else {
    const auto trained_on = model->metadata.find("tide.data");
    const auto& names = flow::dataset_names();
    TIDE_CHECK(trained_on != model->metadata.end() &&
                   std::find(names.begin(), names.end(), trained_on->second) != names.end(),
               "--density: give --bounds xmin,xmax,ymin,ymax (or --data) for the grid");
    Generator gen(f.seed);
    bounds = flow::bounds_of({flow::sample_dataset(trained_on->second, 2000, gen)});
  }

  flow::Plot plot({.width = f.size, .height = f.size, .bounds = bounds});
  const flow::DensityScale scale =
      f.log_scale ? flow::DensityScale::Log : flow::DensityScale::Linear;
  const Stopwatch clock;
  if (f.density) {
    const flow::LikelihoodOptions options =
        likelihood_options(solve_options(f.solver), *model, f.device);
    int64_t nfe = 0;
    plot.density(
        [&](const Tensor& points) {
          const Tensor x = to(to(points, model->field->dtype()), model->field->device());
          flow::LikelihoodResult r = flow::log_likelihood(*model->field, x, options);
          nfe += r.nfe;
          return to(r.log_p, Device::cpu());
        },
        f.resolution, scale, 10.0, int64_t{1} << 30);
    fmt::print("model log-density on a {}x{} grid: NFE {} ({}) in {:.2f} s\n", f.resolution,
               f.resolution, nfe, f.solver.solver, clock.seconds());
  } else if (f.true_density) {
    plot.density([&](const Tensor& points) { return flow::dataset_log_density(f.data, points); },
                 f.resolution, scale);
  }
  if (trajectory.defined()) {
    plot.trajectories(trajectory, flow::colors::kOlive, flow::colors::kBlue, f.max_paths);
  }
  // Over a heat map the data would hide the colours, so it is drawn light.
  if (data.defined()) {
    plot.scatter(data, f.density || f.true_density ? flow::colors::kWhite : flow::colors::kGray,
                 1.2, f.density || f.true_density ? 0.35 : 0.6);
  }
  if (samples.defined()) plot.scatter(samples, flow::colors::kBlue);
  plot.save(f.out);
  fmt::print("wrote {} (x in [{:g}, {:g}], y in [{:g}, {:g}])\n", f.out, plot.bounds().x_min,
             plot.bounds().x_max, plot.bounds().y_min, plot.bounds().y_max);
}

}  // namespace

void add_plot_command(CLI::App& app) {
  auto flags = std::make_shared<PlotFlags>();
  CLI::App* cmd = app.add_subcommand(
      "plot",
      "Draw a PNG of 2-D data, in layers from bottom to top: a density heat map (the model's,\n"
      "with --model --density, or the data's true one, --true-density), trajectories\n"
      "(--trajectory, from 'tide sample --trajectory'; starts black, ends blue), data (gray)\n"
      "and samples (blue).");
  cmd->add_option("--out", flags->out, "The image to write (.png)")->required();
  cmd->add_option("--samples", flags->samples, "Points [N, 2] to draw in blue (.npy)");
  cmd->add_option(
      "--data", flags->data,
      "Data to draw in gray: a built-in set (" + dataset_list() + ") or a .npy/.csv file");
  cmd->add_option("--n", flags->n, "Points drawn from a built-in set")
      ->check(integer_in(1, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed of built-in data")->capture_default_str();
  CLI::Option* model = cmd->add_option("--model", flags->model, "The model file (.safetensors)");
  cmd->add_flag("--density", flags->density,
                "Draw the model's density exp(log p) on a grid (exact divergence)")
      ->needs(model);
  cmd->add_flag("--true-density", flags->true_density,
                "Draw the true density of a built-in --data set that has one");
  cmd->add_option("--trajectory", flags->trajectory, "Trajectories [T, N, 2] (.npy)");
  cmd->add_option("--max-paths", flags->max_paths,
                  "Trajectories: draw at most this many paths, evenly picked")
      ->check(integer_in(1, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--bounds", flags->bounds,
                  "xmin,xmax,ymin,ymax (default: the bounds of the points drawn)");
  cmd->add_option("--size", flags->size, "Image width and height in pixels")
      ->check(integer_in(128, 8192))
      ->capture_default_str();
  cmd->add_option("--resolution", flags->resolution, "Heat map: grid cells per side")
      ->check(integer_in(2, 2048))
      ->capture_default_str();
  cmd->add_flag("--log-scale", flags->log_scale,
                "Heat map: colour by log p over a range of 10 nats instead of by p");
  add_solver_flags(*cmd, flags->solver);
  cmd->add_option("--dtype", flags->dtype, "Convert the model to this dtype")
      ->check(CLI::IsMember({"float32", "float64"}));
  add_device_flags(
      *cmd, flags->device, "Where to compute the model's density (--density)",
      "Fixed-step solvers: capture one step of the density's likelihood solve as a "
      "CUDA Graph and replay it --steps times (on the CPU the same step runs eagerly)");
  add_arch_flags(*cmd, flags->arch);
  cmd->callback([flags] { run_plot(*flags); });
}

}  // namespace tide::cli
