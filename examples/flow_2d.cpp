// A continuous normalizing flow on a 2-D toy set, end to end: train by
// conditional flow matching, sample with an ODE solver, compute exact
// log-likelihoods, measure the fit, save the samples and draw the plots.
//
//   ./flow_2d [dataset = 8gaussians] [steps = 4000]
//
// Writes flow_2d.safetensors (the model), flow_2d_samples.npy and three PNGs.
#include <cstdlib>
#include <string>

#include "flow/datasets.h"
#include "flow/likelihood.h"
#include "flow/metrics.h"
#include "flow/ode.h"
#include "flow/plot.h"
#include "tide.h"

using namespace tide;
using namespace tide::flow;

int main(int argc, char** argv) {
  const std::string dataset = argc > 1 ? argv[1] : "8gaussians";
  const int64_t steps = argc > 2 ? std::atoll(argv[2]) : 4000;

  // 1. Model: torchcfm's MLP (x with t as the last input column), wider than
  //    its default 64 so a few thousand steps reach a good fit.
  Generator init(1);
  VelocityMLP model({.dim = 2, .width = 256, .hidden_layers = 3, .generator = &init});

  // 2. Train: I-CFM on the CondOT path, N(0, I) source, Adam with cosine decay.
  TrainOptions options{.batch = 256, .steps = steps, .lr = 2e-3, .seed = 0};
  options.lr_schedule = LRSchedule::Cosine;
  options.log_every = 500;
  options.on_progress = [](const TrainProgress& p) {
    fmt::print("step {:5d}/{}  loss {:.4f}  {:.0f} steps/s\n", p.step, p.steps, p.loss,
               p.steps_per_second);
  };
  TrainResult trained = train_cfm(model, toy_data_source(dataset), options);
  save_model("flow_2d.safetensors", model, trained.metadata);  // `tide sample` reads it
  model.eval();

  // 3. Sample: integrate dx/dt = v(x, t) from noise at t = 0 to data at t = 1.
  Generator gen(7);
  Tensor x0 = randn({1000, 2}, gen);
  Solution sample =
      solve(model.as_fn(), x0, 0.0, 1.0, {.method = Solver::Dopri5, .rtol = 1e-5, .atol = 1e-5});
  fmt::print("sampled 1000 points, dopri5 NFE {}\n", sample.nfe);

  // 4. Exact log-likelihoods of held-out data (integrating from t = 1 to 0).
  Tensor data = sample_dataset(dataset, 1000, gen);
  LikelihoodResult ll = log_likelihood(model, data, {.solver = Solver::RK4, .steps = 40});
  Estimate nll = negative_log_likelihood(ll.log_p);
  fmt::print("NLL {:.4f} +- {:.4f} nats ({:.4f} bits/dim), NFE {}\n", nll.value, nll.standard_error,
             bits_per_dim(nll.value, 2), ll.nfe);
  if (has_log_density(dataset)) {
    Estimate kl = kl_divergence(dataset_log_density(dataset, data), ll.log_p);
    fmt::print("KL(p_data || p_model) {:.4f} +- {:.4f} nats\n", kl.value, kl.standard_error);
  }
  fmt::print("W2(samples, data) {:.4f}\n", wasserstein2(sample.x, data));

  // 5. Save the samples, and plot: samples over data, the model's density,
  //    and trajectories from noise to data.
  io::write_npy("flow_2d_samples.npy", sample.x);
  Bounds box = bounds_of({data, sample.x}, 0.1);
  Plot({.bounds = box}).scatter(data, colors::kGray).scatter(sample.x).save("flow_2d_samples.png");
  Plot({.bounds = box})
      .density(
          [&](const Tensor& grid) {
            Tensor points = to(grid, DType::Float32);
            return log_likelihood(model, points, {.solver = Solver::RK4, .steps = 20}).log_p;
          },
          100)
      .save("flow_2d_density.png");
  Solution paths = solve(model.as_fn(), narrow(x0, 0, 0, 300), 0.0, 1.0,
                         {.method = Solver::RK4, .steps = 50, .record_trajectory = true});
  Plot({.bounds = bounds_of({flatten(paths.trajectory, 0, 1)})})
      .trajectories(paths.trajectory)
      .save("flow_2d_trajectories.png");
  fmt::print("wrote flow_2d.safetensors, flow_2d_samples.npy and flow_2d_*.png\n");
}
