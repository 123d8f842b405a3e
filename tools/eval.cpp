// tide eval: how well a model fits data. Likelihood metrics on the data
// (NLL, bits/dim, and KL(p_data || p_model) where the data density is known)
// and sample metrics between model samples and the data (W2, MMD).
#include "flow/datasets.h"
#include "flow/metrics.h"
#include "tensor/creation.h"
#include "tools/common.h"

namespace tide::cli {

namespace {

struct EvalFlags {
  std::string model;
  std::string data;
  int64_t n = 1000;
  uint64_t seed = 0;
  SolverFlags solver;
  std::string divergence = "exact";
  int64_t probes = 1;
  double bandwidth = 1.0;
  std::string dtype;  // empty: as stored in the model file
  DeviceFlags device;
  ArchFlags arch;
};

void run_eval(const EvalFlags& f) {
  TIDE_CHECK(f.divergence == "hutchinson" || f.probes == 1,
             "--probes {}: probes are for --divergence hutchinson (the exact divergence has none)",
             f.probes);
  flow::SolveOptions solve = solve_options(f.solver);
  solve.cuda_graph = f.device.cuda_graph;
  const Model model = load_cli_model_on(f.model, f.arch, f.dtype, f.device, f.solver);
  TIDE_CHECK(!model.custom_source,
             "--model '{}': trained from a custom source distribution (tide.source = custom), "
             "which has no closed-form density, so it cannot be evaluated",
             f.model);
  Data data = load_data(f.data, "--data", f.n, f.seed);
  check_dim(model, data.points, fmt::format("--data '{}'", f.data));
  const int64_t rows = data.points.size(0);
  if (rows > f.n) {
    // A random subset of a large file keeps the exact W2 (O(n^3)) affordable.
    Generator pick(f.seed);
    data.points = index_select(data.points, 0, narrow(randperm(rows, pick), 0, 0, f.n));
  }
  const Tensor x = to(to(data.points, model.field->dtype()), model.field->device());
  const int64_t n = x.size(0), dim = x.size(1);
  const Stopwatch clock;

  // Likelihood of the data.
  flow::LikelihoodOptions lik = likelihood_options(solve, model, f.device);
  lik.divergence = f.divergence == "exact" ? flow::Divergence::Exact : flow::Divergence::Hutchinson;
  lik.probes = f.probes;
  lik.seed = f.seed;
  const flow::LikelihoodResult likelihood = flow::log_likelihood(*model.field, x, lik);
  // The metrics run on the host (the exact W2 assignment is a host algorithm).
  const Tensor log_p = to(likelihood.log_p, Device::cpu());
  const flow::Estimate nll = flow::negative_log_likelihood(log_p);

  // As many model samples as data points, for the sample metrics.
  Generator gen(f.seed + 1);
  const Tensor x0 = to(to(mul(randn({n, dim}, gen, {.dtype = DType::Float64}), model.source_std),
                          model.field->dtype()),
                       model.field->device());
  const flow::Solution samples = flow::solve(model.field->as_fn(), x0, 0.0, 1.0, solve);
  const Tensor model_x = to(samples.x, Device::cpu()), data_x = to(x, Device::cpu());
  const double w2 = flow::wasserstein2(model_x, data_x);
  const double mmd2 = flow::mmd_squared(model_x, data_x, {.bandwidth = f.bandwidth});

  fmt::print("data       {}: {} points of dimension {}{}\n",
             data.builtin ? f.data : "'" + f.data + "'", n, dim,
             data.builtin ? fmt::format(" (seed {})", f.seed)
                          : (rows > n ? fmt::format(" (a random {} of {} rows)", n, rows) : ""));
  fmt::print("NLL        {:.4f} nats (standard error {:.4f})\n", nll.value, nll.standard_error);
  fmt::print("bits/dim   {:.4f}\n", flow::bits_per_dim(nll.value, dim));
  if (data.builtin && flow::has_log_density(f.data)) {
    const Tensor log_p_data = flow::dataset_log_density(f.data, data.points);
    const flow::Estimate kl = flow::kl_divergence(log_p_data, log_p);
    fmt::print(
        "KL         {:.4f} nats (standard error {:.4f}), KL(p_data || p_model) with the "
        "true density\n",
        kl.value, kl.standard_error);
  } else {
    fmt::print("KL         n/a (no closed-form density for {})\n",
               data.builtin ? f.data : "data from a file");
  }
  fmt::print("W2         {:.4f} ({} model samples vs the data, exact assignment)\n", w2, n);
  fmt::print("MMD^2      {:.6f} (RBF kernel, bandwidth {:g})\n", mmd2, f.bandwidth);
  fmt::print("NFE        likelihood {}, sampling {} ({}, {} divergence)\n", likelihood.nfe,
             samples.nfe, f.solver.solver, f.divergence);
  fmt::print("time       {:.3f} s\n", clock.seconds());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate a model against data: NLL (nats) and bits/dim of the data, KL(p_data || "
      "p_model)\nwhere the data density is known (8gaussians, cfm-8gaussians, checkerboard), and "
      "W2 and\nMMD between as many model samples and the data, with the NFE of each solve.");
  cmd->add_option("--model", flags->model, "The model file (.safetensors)")->required();
  cmd->add_option("--data", flags->data,
                  "The data: a built-in set (" + dataset_list() + ") or a .npy/.csv file [N, d]")
      ->required();
  cmd->add_option("--n", flags->n,
                  "Points drawn from a built-in set; a larger file is randomly subsampled to "
                  "this many rows (W2 is exact, O(n^3) time and n^2 memory)")
      ->check(integer_in(2, 5000))
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed of the data, the subsample and the model samples")
      ->capture_default_str();
  add_solver_flags(*cmd, flags->solver);
  cmd->add_option("--divergence", flags->divergence, "exact or hutchinson (see 'tide loglik')")
      ->check(CLI::IsMember({"exact", "hutchinson"}))
      ->capture_default_str();
  cmd->add_option("--probes", flags->probes, "Hutchinson: probes per point")
      ->check(integer_in(1, 4096))
      ->capture_default_str();
  cmd->add_option("--mmd-bandwidth", flags->bandwidth,
                  "h of the MMD's kernel exp(-|x - y|^2 / (2 h^2))")
      ->check(positive_number())
      ->capture_default_str();
  cmd->add_option("--dtype", flags->dtype, "Compute in this dtype (default: the model's)")
      ->check(CLI::IsMember({"float32", "float64"}));
  add_device_flags(*cmd, flags->device, "Where to compute the likelihood and the samples",
                   "Fixed-step solvers: capture one step of each solve as a CUDA Graph and "
                   "replay it --steps times (on the CPU the same step runs eagerly)");
  add_arch_flags(*cmd, flags->arch);
  cmd->callback([flags] { run_eval(*flags); });
}

}  // namespace tide::cli
