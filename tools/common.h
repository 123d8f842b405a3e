// Shared pieces of the `tide` command: reading data and models named on the
// command line, checking flag values, writing outputs, and the progress bar.
//
// Every problem with user input becomes a tide::Error whose message names the
// flag and the offending value; main() prints it as one line and exits with
// status 1.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "flow/likelihood.h"
#include "flow/model.h"
#include "flow/ode.h"
#include "tensor/tensor.h"

namespace tide::cli {

// --- subcommands ---------------------------------------------------------------

// Each subcommand registers its flags and its action on `app`.
void add_train_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_loglik_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_plot_command(CLI::App& app);

// --- flag validators -------------------------------------------------------------
// CLI11 checks with plain messages: "--lr: -0.1 is not a positive number".

CLI::Validator integer_in(int64_t lo, int64_t hi);
CLI::Validator number_in(double lo, double hi);
CLI::Validator positive_number();
CLI::Validator non_negative_number();

// --- data --------------------------------------------------------------------

// Data named on the command line: a built-in toy set or a file.
struct Data {
  Tensor points;         // [N, d], float32 or float64 (as the file stores it)
  std::string spec;      // what the user wrote
  bool builtin = false;  // a toy set of flow/datasets.h
};

// Resolves `spec` (the value of `flag`): an existing .npy or .csv file, or the
// name of a built-in set, of which `n` points are drawn with Generator(seed).
// Checks that the result is a non-empty, finite [N, d] floating-point table.
Data load_data(const std::string& spec, const std::string& flag, int64_t n, uint64_t seed);

// A .npy file of source points [N, d] (for `sample --noise`).
Tensor load_npy_points(const std::string& path, const std::string& flag);

// "8gaussians, moons, ..." for help texts and errors.
std::string dataset_list();

// --- models ------------------------------------------------------------------

// The --arch flags, for state dicts without Tide's architecture metadata.
struct ArchFlags {
  std::string arch;  // empty: read the architecture from the file
  int64_t dim = 2;
  int64_t width = 64;
  int64_t hidden_layers = 3;
  std::string activation = "selu";
};

// Adds --arch, --dim, --width, --hidden-layers and --activation to `cmd`.
void add_arch_flags(CLI::App& cmd, ArchFlags& flags);

struct Model {
  std::shared_ptr<flow::VelocityField> field;
  flow::ModelMetadata metadata;
  std::string path;
  double source_std = 1.0;     // of the Gaussian source it was trained with
  bool custom_source = false;  // trained from a source with no closed-form density
};

// Loads --model: with its own architecture metadata, or with the --arch flags.
// dtype, when given ("float32" or "float64"), converts the weights.
Model load_cli_model(const std::string& path, const ArchFlags& arch, const std::string& dtype = "");

// Checks that data [N, d] fits the model (d == model dim); `what` names the
// data in the message ("--data 'x.npy'").
void check_dim(const Model& model, const Tensor& points, const std::string& what);

// --- solver flags ----------------------------------------------------------------

struct SolverFlags {
  std::string solver = "dopri5";
  int64_t steps = 100;
  double rtol = 1e-5;
  double atol = 1e-5;
};

// Adds --solver, --steps, --rtol and --atol to `cmd`.
void add_solver_flags(CLI::App& cmd, SolverFlags& flags);
flow::SolveOptions solve_options(const SolverFlags& flags);

// --- device flags ----------------------------------------------------------------

// --device cpu|cuda and --cuda-graph, for the commands that compute.
struct DeviceFlags {
  std::string device = "cpu";
  bool cuda_graph = false;
};

// Adds --device (help: `where`, e.g. "Where to train") and --cuda-graph
// (help: `graph_help`) to `cmd`.
void add_device_flags(CLI::App& cmd, DeviceFlags& flags, const std::string& where,
                      const std::string& graph_help);
// The device --device names. Throws naming the flag when CUDA is unavailable.
Device resolve_device(const DeviceFlags& flags);
// --cuda-graph with the solver flags: only the fixed-step solvers can be
// captured (dopri5 chooses its steps on the host).
void check_graph_solver(const DeviceFlags& device, const SolverFlags& solver);
// The --model file on the --device device, for a command that solves with
// `solver`: checks --cuda-graph against the solver and the device before
// loading.
Model load_cli_model_on(const std::string& path, const ArchFlags& arch, const std::string& dtype,
                        const DeviceFlags& device, const SolverFlags& solver);
// Likelihood options from the solver flags (`solve` = solve_options(flags)),
// with the model's source scale and --cuda-graph.
flow::LikelihoodOptions likelihood_options(const flow::SolveOptions& solve, const Model& model,
                                           const DeviceFlags& device);

// --- outputs -----------------------------------------------------------------

// Checks that `path` (the value of `flag`) ends in `extension` (".npy") and
// that its directory exists, before any long computation runs.
void check_output_path(const std::string& path, const std::string& flag,
                       const std::string& extension);

// Parses "xmin,xmax,ymin,ymax" (the value of `flag`).
std::array<double, 4> parse_bounds(const std::string& text, const std::string& flag);

// --- timing and progress ----------------------------------------------------------

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Whether standard output is a terminal (so a redrawn progress bar makes sense).
bool stdout_is_terminal();

// "1:05" or "1:02:03".
std::string format_duration(double seconds);

// One progress line: "step 1200/2000 [#####.....] 60%  loss 0.1234  1510 steps/s  ETA 0:01".
// On a terminal it redraws itself in place (\r); otherwise each call prints a
// plain line.
class ProgressBar {
 public:
  explicit ProgressBar(bool terminal) : terminal_(terminal) {}
  void update(int64_t step, int64_t steps, double loss, double steps_per_second);
  // Ends the redrawn line, if any.
  void finish();

 private:
  bool terminal_;
  bool drawn_ = false;
};

}  // namespace tide::cli
