// tide loglik: exact (or Hutchinson) log-likelihoods of data under a model,
// by integrating the augmented ODE from t = 1 down to t = 0.
#include <cmath>

#include "flow/metrics.h"
#include "nn/npy.h"
#include "tensor/creation.h"
#include "tools/common.h"

namespace tide::cli {

namespace {

struct LoglikFlags {
  std::string model;
  std::string data;
  int64_t n = 1000;
  uint64_t seed = 0;
  SolverFlags solver;
  std::string divergence = "exact";
  int64_t probes = 1;
  std::string probe_kind = "rademacher";
  std::string dtype;  // empty: as stored in the model file
  std::string out;
  DeviceFlags device;
  ArchFlags arch;
};

void run_loglik(const LoglikFlags& f) {
  if (!f.out.empty()) check_output_path(f.out, "--out", ".npy");
  TIDE_CHECK(f.divergence == "hutchinson" || f.probes == 1,
             "--probes {}: probes are for --divergence hutchinson (the exact divergence has none)",
             f.probes);
  const flow::SolveOptions solve = solve_options(f.solver);
  const Model model = load_cli_model_on(f.model, f.arch, f.dtype, f.device, f.solver);
  TIDE_CHECK(!model.custom_source,
             "--model '{}': trained from a custom source distribution (tide.source = custom), "
             "which has no closed-form density, so log-likelihoods are undefined",
             f.model);
  const Data data = load_data(f.data, "--data", f.n, f.seed);
  check_dim(model, data.points, fmt::format("--data '{}'", f.data));
  const Tensor x1 = to(to(data.points, model.field->dtype()), model.field->device());
  const int64_t n = x1.size(0), dim = x1.size(1);

  flow::LikelihoodOptions options = likelihood_options(solve, model, f.device);
  options.divergence =
      f.divergence == "exact" ? flow::Divergence::Exact : flow::Divergence::Hutchinson;
  options.probes = f.probes;
  options.probe_kind =
      f.probe_kind == "gaussian" ? flow::ProbeKind::Gaussian : flow::ProbeKind::Rademacher;
  options.seed = f.seed;

  const Stopwatch clock;
  const flow::LikelihoodResult result = flow::log_likelihood(*model.field, x1, options);
  const double seconds = clock.seconds();

  const flow::Estimate nll = flow::negative_log_likelihood(result.log_p);
  fmt::print("points     {} x {} from {}\n", n, dim,
             data.builtin ? fmt::format("{} (seed {})", f.data, f.seed) : "'" + f.data + "'");
  fmt::print("mean NLL   {:.4f} nats (standard error {:.4f})\n", nll.value, nll.standard_error);
  fmt::print("bits/dim   {:.4f}\n", flow::bits_per_dim(nll.value, dim));
  if (options.divergence == flow::Divergence::Hutchinson && f.probes >= 2) {
    const std::vector<double> se = result.standard_error.to_vector<double>();
    double sum = 0;
    for (double s : se) sum += s;
    fmt::print("Hutchinson mean per-point standard error {:.4f} nats ({} {} probes)\n",
               sum / static_cast<double>(se.size()), f.probes, f.probe_kind);
  }
  fmt::print("NFE        {} ({}, {} steps", result.nfe, f.solver.solver, result.steps);
  if (options.solver == flow::Solver::Dopri5) fmt::print(", {} rejected", result.rejected);
  fmt::print(", {} divergence, {})\n", f.divergence, model.field->dtype());
  fmt::print("time       {:.3f} s\n", seconds);
  if (!f.out.empty()) {
    io::write_npy(f.out, result.log_p);
    fmt::print("wrote {} [{}] float64 log-densities in nats\n", f.out, n);
  }
}

}  // namespace

void add_loglik_command(CLI::App& app) {
  auto flags = std::make_shared<LoglikFlags>();
  CLI::App* cmd = app.add_subcommand(
      "loglik",
      "Compute log p(x) of every row of the data under a model, in nats, by integrating\n"
      "dx/dt = v(x, t) and d(log p)/dt = -div v from t = 1 back to t = 0:\n"
      "  log p1(x1) = log p0(x0) - integral_0^1 div v(x_t, t) dt.\n"
      "Prints the mean negative log-likelihood, bits per dimension and the NFE.");
  cmd->add_option("--model", flags->model, "The model file (.safetensors)")->required();
  cmd->add_option("--data", flags->data,
                  "The points: a .npy or .csv file [N, d], or a built-in set (" + dataset_list() +
                      ") of which --n points are drawn with --seed")
      ->required();
  cmd->add_option("--n", flags->n, "Points drawn from a built-in set")
      ->check(integer_in(1, int64_t{1} << 31))
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed of built-in data and of Hutchinson probes")
      ->capture_default_str();
  add_solver_flags(*cmd, flags->solver);
  const std::string group = "Divergence";
  cmd->add_option("--divergence", flags->divergence,
                  "exact: the trace of the Jacobian, all d vector-Jacobian products in one "
                  "batched backward pass; hutchinson: an unbiased estimate from --probes random "
                  "probes, fixed over the solve")
      ->check(CLI::IsMember({"exact", "hutchinson"}))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--probes", flags->probes,
                  "Hutchinson: probes per point (2 or more also give a standard error)")
      ->check(integer_in(1, 4096))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--probe-kind", flags->probe_kind, "Hutchinson: the probe distribution")
      ->check(CLI::IsMember({"rademacher", "gaussian"}))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--dtype", flags->dtype,
                  "Compute in this dtype (default: the model's; the divergence is accumulated in "
                  "float64 either way)")
      ->check(CLI::IsMember({"float32", "float64"}));
  cmd->add_option("--out", flags->out,
                  "Write the log-densities (float64 [N], nats) to this .npy file");
  add_device_flags(*cmd, flags->device, "Where to compute",
                   "Fixed-step solvers: capture one step of the augmented ODE (state and "
                   "divergence) as a CUDA Graph and replay it --steps times (on the CPU the same "
                   "step runs eagerly)");
  add_arch_flags(*cmd, flags->arch);
  cmd->callback([flags] { run_loglik(*flags); });
}

}  // namespace tide::cli
