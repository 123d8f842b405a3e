#include "tools/common.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "backends/backend.h"
#include "flow/datasets.h"
#include "nn/csv.h"
#include "nn/npy.h"
#include "nn/safetensors.h"

namespace tide::cli {

namespace {

std::string lower_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// Data must be a non-empty [N, d] table of finite floating-point numbers.
Tensor checked_points(Tensor points, const std::string& what) {
  TIDE_CHECK(points.dim() == 2, "{}: expected a 2-D array [N, d] of points, got shape {}", what,
             points.shape());
  TIDE_CHECK(points.size(0) >= 1 && points.size(1) >= 1,
             "{}: expected at least one point of at least one coordinate, got shape {}", what,
             points.shape());
  TIDE_CHECK(points.dtype() != DType::Bool, "{}: expected numbers, got a boolean array", what);
  if (!points.is_floating_point()) points = to(points, DType::Float32);
  const std::vector<double> v = points.to_vector<double>();
  const int64_t d = points.size(1);
  for (size_t i = 0; i < v.size(); ++i) {
    TIDE_CHECK(std::isfinite(v[i]), "{}: value at row {}, column {} is {} (data must be finite)",
               what, static_cast<int64_t>(i) / d, static_cast<int64_t>(i) % d,
               std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "inf" : "-inf"));
  }
  return points;
}

}  // namespace

// --- flag validators -------------------------------------------------------------

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        int64_t v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return fmt::format("'{}' is not an integer", text);
        if (v < lo || v > hi) return fmt::format("{} is out of range [{}, {}]", v, lo, hi);
        return "";
      },
      fmt::format("in [{}, {}]", lo, hi));
}

namespace {

// A number-checking validator: `ok` says whether a parsed value is allowed,
// `requirement` completes "-0.1 is not ...".
CLI::Validator number_check(std::function<bool(double)> ok, std::string requirement,
                            std::string description) {
  return CLI::Validator(
      [ok = std::move(ok), requirement](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v) || std::isnan(v)) {
          return fmt::format("'{}' is not a number", text);
        }
        if (!ok(v)) return fmt::format("{} is not {}", text, requirement);
        return "";
      },
      std::move(description));
}

}  // namespace

CLI::Validator number_in(double lo, double hi) {
  return number_check([lo, hi](double v) { return v >= lo && v <= hi; },
                      fmt::format("in [{:g}, {:g}]", lo, hi),
                      fmt::format("in [{:g}, {:g}]", lo, hi));
}

CLI::Validator positive_number() {
  return number_check([](double v) { return v > 0 && std::isfinite(v); }, "a positive number",
                      "POSITIVE");
}

CLI::Validator non_negative_number() {
  return number_check([](double v) { return v >= 0 && std::isfinite(v); }, "a non-negative number",
                      "NONNEGATIVE");
}

std::string dataset_list() {
  std::string out;
  for (const std::string& name : flow::dataset_names()) {
    out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

Data load_data(const std::string& spec, const std::string& flag, int64_t n, uint64_t seed) {
  TIDE_CHECK(!spec.empty(), "{}: empty value (expected a data set name or a .npy/.csv file)", flag);
  const std::filesystem::path path(spec);
  const std::string ext = lower_extension(path);
  const std::string what = fmt::format("{} '{}'", flag, spec);
  const auto& names = flow::dataset_names();
  const bool is_name = std::find(names.begin(), names.end(), spec) != names.end();
  if (is_name && !std::filesystem::exists(path)) {
    TIDE_CHECK(n >= 1, "{}: the number of points --n must be at least 1, got {}", what, n);
    Generator gen(seed);
    return {flow::sample_dataset(spec, n, gen), spec, true};
  }
  if (ext == ".npy" || ext == ".csv") {
    TIDE_CHECK(std::filesystem::exists(path), "{}: file not found", what);
    Tensor points =
        ext == ".npy" ? io::read_npy(path) : io::read_csv(path, {.dtype = DType::Float32}).values;
    return {checked_points(points, what), spec, false};
  }
  if (std::filesystem::exists(path)) {
    fail("{}: unsupported file type '{}' (expected .npy or .csv)", what, ext);
  }
  fail("{}: not a built-in data set ({}) nor a .npy or .csv file", what, dataset_list());
}

Tensor load_npy_points(const std::string& path, const std::string& flag) {
  const std::string what = fmt::format("{} '{}'", flag, path);
  TIDE_CHECK(lower_extension(path) == ".npy", "{}: expected a .npy file", what);
  TIDE_CHECK(std::filesystem::exists(path), "{}: file not found", what);
  return checked_points(io::read_npy(path), what);
}

// --- models ------------------------------------------------------------------

void add_arch_flags(CLI::App& cmd, ArchFlags& flags) {
  const std::string group = "Architecture (for model files without Tide metadata)";
  auto* arch =
      cmd.add_option("--arch", flags.arch,
                     "Read --model as a plain state dict of this architecture (e.g. a torchcfm "
                     "MLP saved by PyTorch) instead of reading its metadata; 'mlp' is "
                     "Linear(D+1, W), L-1 x [act, Linear(W, W)], act, Linear(W, D), named net.0, "
                     "net.2, ..., with t as the last input column")
          ->check(CLI::IsMember({"mlp"}))
          ->group(group);
  cmd.add_option("--dim", flags.dim, "With --arch: the data dimension D")
      ->check(integer_in(1, int64_t{1} << 20))
      ->needs(arch)
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--width", flags.width, "With --arch: hidden units per layer W")
      ->check(integer_in(1, int64_t{1} << 20))
      ->needs(arch)
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--hidden-layers", flags.hidden_layers, "With --arch: the number of activations L")
      ->check(integer_in(0, 1000))
      ->needs(arch)
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--activation", flags.activation, "With --arch: the activation")
      ->check(CLI::IsMember({"selu", "relu", "silu", "swish", "gelu", "gelu_tanh", "elu", "tanh",
                             "sigmoid", "softplus"}))
      ->needs(arch)
      ->capture_default_str()
      ->group(group);
}

Model load_cli_model(const std::string& path, const ArchFlags& arch, const std::string& dtype) {
  const std::string what = fmt::format("--model '{}'", path);
  TIDE_CHECK(std::filesystem::exists(path), "{}: file not found", what);
  TIDE_CHECK(std::filesystem::is_regular_file(path), "{}: not a regular file", what);
  flow::LoadedModel loaded;
  if (!arch.arch.empty()) {
    loaded = flow::load_model(path, flow::VelocityMLPOptions{.dim = arch.dim,
                                                             .width = arch.width,
                                                             .hidden_layers = arch.hidden_layers,
                                                             .activation = arch.activation});
  } else {
    // Look at the metadata first, so that a plain state dict gets a hint
    // about --arch rather than a bare "missing key".
    const io::SafetensorsFile file = io::read_safetensors(path);
    TIDE_CHECK(file.metadata.count("tide.arch") == 1,
               "{}: the file has no architecture metadata (tide.arch); for a plain state dict "
               "pass --arch mlp --dim D --width W --hidden-layers L --activation A",
               what);
    loaded = flow::load_model(path);
  }
  Model model{loaded.model, loaded.metadata, path};
  auto source = model.metadata.find("tide.source");
  model.custom_source = source != model.metadata.end() && source->second == "custom";
  model.source_std = flow::source_std_from_metadata(model.metadata);
  if (dtype == "float64") model.field->to(DType::Float64);
  if (dtype == "float32") model.field->to(DType::Float32);
  model.field->eval();
  return model;
}

void check_dim(const Model& model, const Tensor& points, const std::string& what) {
  TIDE_CHECK(points.size(1) == model.field->dim(),
             "{}: the points have {} coordinates but the model '{}' has dimension {}", what,
             points.size(1), model.path, model.field->dim());
}

// --- solver flags ----------------------------------------------------------------

void add_solver_flags(CLI::App& cmd, SolverFlags& flags) {
  const std::string group = "ODE solver";
  cmd.add_option("--solver", flags.solver,
                 "Integrator: fixed-step euler, midpoint, heun or rk4 (with --steps), or "
                 "adaptive dopri5 (with --rtol/--atol)")
      ->check(CLI::IsMember({"euler", "midpoint", "heun", "rk4", "dopri5"}))
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--steps", flags.steps, "Fixed-step solvers: the number of steps from t=0 to 1")
      ->check(integer_in(1, 100000000))
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--rtol", flags.rtol, "dopri5: relative tolerance")
      ->check(number_in(0.0, 1.0))
      ->capture_default_str()
      ->group(group);
  cmd.add_option("--atol", flags.atol, "dopri5: absolute tolerance")
      ->check(number_in(0.0, 1.0))
      ->capture_default_str()
      ->group(group);
}

flow::SolveOptions solve_options(const SolverFlags& flags) {
  TIDE_CHECK(flags.rtol > 0 || flags.atol > 0,
             "--rtol/--atol: at least one tolerance must be positive");
  flow::SolveOptions options;
  options.method = flow::parse_solver(flags.solver);
  options.steps = flags.steps;
  options.rtol = flags.rtol;
  options.atol = flags.atol;
  return options;
}

// --- device flags ----------------------------------------------------------------

void add_device_flags(CLI::App& cmd, DeviceFlags& flags, const std::string& where,
                      const std::string& graph_help) {
  cmd.add_option("--device", flags.device, where)
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_flag("--cuda-graph", flags.cuda_graph, graph_help);
}

Device resolve_device(const DeviceFlags& flags) {
  if (flags.device != "cuda") return Device::cpu();
  const Device device = Device::cuda(0);
  try {
    backend_for(device);
  } catch (const Error& e) {
    fail("--device cuda: not available in this build ({})", e.what());
  }
  return device;
}

void check_graph_solver(const DeviceFlags& device, const SolverFlags& solver) {
  TIDE_CHECK(!device.cuda_graph || solver.solver != "dopri5",
             "--cuda-graph needs a fixed-step --solver (euler, midpoint, heun or rk4); {} chooses "
             "its step sizes on the host",
             solver.solver);
}

Model load_cli_model_on(const std::string& path, const ArchFlags& arch, const std::string& dtype,
                        const DeviceFlags& device, const SolverFlags& solver) {
  check_graph_solver(device, solver);
  const Device where = resolve_device(device);
  Model model = load_cli_model(path, arch, dtype);
  if (where != Device::cpu()) model.field->to(where);
  return model;
}

flow::LikelihoodOptions likelihood_options(const flow::SolveOptions& solve, const Model& model,
                                           const DeviceFlags& device) {
  flow::LikelihoodOptions options;
  options.solver = solve.method;
  options.steps = solve.steps;
  options.rtol = solve.rtol;
  options.atol = solve.atol;
  options.source_std = model.source_std;
  options.cuda_graph = device.cuda_graph;
  return options;
}

// --- outputs -----------------------------------------------------------------

void check_output_path(const std::string& path, const std::string& flag,
                       const std::string& extension) {
  const std::filesystem::path p(path);
  TIDE_CHECK(!path.empty(), "{}: empty file name", flag);
  TIDE_CHECK(lower_extension(p) == extension, "{} '{}': expected a {} file name", flag, path,
             extension);
  const std::filesystem::path dir = p.parent_path();
  TIDE_CHECK(dir.empty() || std::filesystem::is_directory(dir),
             "{} '{}': directory '{}' does not exist", flag, path, dir.string());
  TIDE_CHECK(!std::filesystem::is_directory(p), "{} '{}': is a directory", flag, path);
}

std::array<double, 4> parse_bounds(const std::string& text, const std::string& flag) {
  std::array<double, 4> b{};
  std::stringstream in(text);
  std::string item;
  int count = 0;
  while (std::getline(in, item, ',')) {
    TIDE_CHECK(count < 4, "{} '{}': expected 4 numbers xmin,xmax,ymin,ymax", flag, text);
    size_t used = 0;
    try {
      b[count] = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TIDE_CHECK(used == item.size() && used > 0 && std::isfinite(b[count]),
               "{} '{}': '{}' is not a number", flag, text, item);
    ++count;
  }
  TIDE_CHECK(count == 4, "{} '{}': expected 4 numbers xmin,xmax,ymin,ymax", flag, text);
  TIDE_CHECK(b[0] < b[1] && b[2] < b[3], "{} '{}': need xmin < xmax and ymin < ymax", flag, text);
  return b;
}

// --- timing and progress ----------------------------------------------------------

bool stdout_is_terminal() {
  return isatty(STDOUT_FILENO) == 1;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(std::lround(seconds));
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, s) : fmt::format("{}:{:02}", m, s);
}

void ProgressBar::update(int64_t step, int64_t steps, double loss, double steps_per_second) {
  const double fraction = steps > 0 ? static_cast<double>(step) / steps : 1.0;
  const double eta = steps_per_second > 0 ? (steps - step) / steps_per_second : NAN;
  const std::string numbers = fmt::format("loss {:.4f}  {:.0f} steps/s  ETA {}", loss,
                                          steps_per_second, format_duration(eta));
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
    // \r returns to the line start; \x1b[K clears what a longer line left.
    fmt::print("\rstep {}/{} [{}] {:3.0f}%  {}\x1b[K", step, steps, bar, 100 * fraction, numbers);
    std::fflush(stdout);
    drawn_ = true;
  } else {
    fmt::print("step {}/{} ({:.0f}%)  {}\n", step, steps, 100 * fraction, numbers);
    std::fflush(stdout);
  }
}

void ProgressBar::finish() {
  if (drawn_) fmt::print("\n");
  drawn_ = false;
}

}  // namespace tide::cli
