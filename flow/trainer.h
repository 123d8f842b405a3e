// Conditional flow matching (CFM) training, usable from C++ in a few lines:
//
//   tide::Generator init(0);
//   auto model = std::make_shared<tide::flow::VelocityMLP>(
//       tide::flow::VelocityMLPOptions{.dim = 2, .generator = &init});
//   auto result = tide::flow::train_cfm(*model, tide::flow::toy_data_source("8gaussians"),
//                                       {.steps = 2000, .seed = 0});
//   tide::flow::save_model("model.safetensors", *model, result.metadata);
//
// Each step (shared/reference/flow-matching.md, sections 2.2 and 4):
//   x1 = data(batch, gen)                    the data batch   [B, d]
//   x0 = source_std * randn(B, d)            the source batch (or a custom source)
//   (t, x_t, u_t) = matcher.sample(x0, x1)   coupling, t ~ U[0, 1), noise
//   loss = mean((model(x_t, t) - u_t)^2)     over all B*d elements (torchcfm)
//   backward, optional gradient clipping, Adam step, lr schedule, EMA update.
// Every random draw comes from one Generator(seed), in that order, so a run is
// a deterministic function of (model's initial weights, data, options), and a
// checkpoint (which saves the generator state) resumes bit-identically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flow/matcher.h"
#include "flow/model.h"
#include "flow/scheduler.h"
#include "tensor/generator.h"

namespace tide::flow {

// --- data sources ------------------------------------------------------------

// Draws a batch of `batch` data points x1 [batch, d] from `gen`. The trainer
// converts the result to the model's dtype and device.
using DataSource = std::function<Tensor(int64_t batch, Generator& gen)>;

// A fixed data set [N, d] (e.g. read with nn/npy.h or nn/csv.h): each batch is
// `batch` rows drawn uniformly with replacement (one randint per batch).
DataSource tensor_data_source(const Tensor& data);

// A built-in toy set of flow/datasets.h by name ("8gaussians", "moons", ...),
// drawn fresh for every batch (an infinite data set, as FFJORD and torchcfm
// train). Unknown names throw, listing the valid ones.
DataSource toy_data_source(std::string_view name);

// --- options -----------------------------------------------------------------

enum class LRSchedule {
  Constant,  // lr throughout
  Cosine,    // cosine annealing from lr to lr_min over `steps`
};

// Progress reported to TrainOptions::on_progress.
struct TrainProgress {
  int64_t step = 0;             // steps completed (1-based; == steps at the end)
  int64_t steps = 0;            // the total
  double loss = 0;              // mean loss over the steps since the last report
  double steps_per_second = 0;  // over the steps since the last report
  double lr = 0;                // the learning rate of the last step
  double elapsed_seconds = 0;   // since train_cfm started (this session)
};

struct TrainOptions {
  // --- the probability path and matcher ---
  // "condot" (the default) with a torchcfm matcher; any other scheduler name of
  // flow/scheduler.h ("poly", "vp", "linear-vp", "cosine", "ve") trains that
  // affine path (PathMatcher), with independent pairs (matcher "icfm") or
  // minibatch-OT pairs (matcher "otcfm"); other matchers define their own path
  // and combine only with "condot". "condot" with scheduler.sigma_min > 0 is
  // Lipman's OT path, trained the same way (PathMatcher).
  std::string path = "condot";
  // "icfm", "otcfm", "target", "sbcfm" or "vpcfm" (flow/matcher.h).
  std::string matcher = "icfm";
  // The matcher's sigma; unset: torchcfm's default (0, and 1 for sbcfm).
  // Only torchcfm matchers (path "condot") take it.
  std::optional<double> sigma = std::nullopt;
  // Scheduler knobs (poly exponent, VP betas, VE sigma_min/sigma_max, ...).
  SchedulerOptions scheduler = {};
  // A matcher object instead of the two names above (they are then ignored).
  std::shared_ptr<const Matcher> custom_matcher = nullptr;

  // --- the source distribution ---
  // "gaussian": x0 ~ N(0, s^2 I) with s = 1, or s = sigma_max for the VE path
  // (whose source is N(0, sigma_max^2 I)). The only built-in choice.
  std::string source = "gaussian";
  // A source sampler instead (e.g. toy_data_source("8gaussians") for a
  // data-to-data flow with icfm/otcfm). Models trained this way have no
  // closed-form source density, so their metadata says "tide.source" = "custom".
  DataSource custom_source = nullptr;

  // --- optimisation ---
  int64_t batch = 256;
  int64_t steps = 1000;
  // Adam with PyTorch's defaults (torch.optim.Adam).
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  LRSchedule lr_schedule = LRSchedule::Constant;
  double lr_min = 0.0;       // Cosine: the final learning rate
  int64_t warmup_steps = 0;  // linear warm-up from lr / 3 before the schedule
  double grad_clip = 0.0;    // > 0: clip the global gradient norm to this
  double ema_decay = 0.0;    // > 0: keep an EMA of the weights (e.g. 0.999)
  bool ema_warmup = false;   // EMA decay min(decay, (1 + n) / (10 + n))
  uint64_t seed = 0;         // the training Generator's seed

  // --- checkpoints ---
  // When set, a checkpoint (model, optimizer, lr schedule, EMA, step and
  // generator state; nn/checkpoint.h, written atomically) is saved every
  // checkpoint_every steps (0: only at the end) and after the last step.
  std::filesystem::path checkpoint_path = {};
  int64_t checkpoint_every = 0;
  // Continue from checkpoint_path (which must exist): the run ends exactly as
  // the uninterrupted run with the same options would have, bit for bit (on
  // the same machine and thread count, which can change float rounding).
  // `steps` is the total, so resuming a finished run does nothing.
  bool resume = false;

  // --- CUDA Graphs ---
  // Run each step as a static, capturable step (flow/step_graph.h): first the
  // draws (data, source, the matcher's coupling, t and noise, and its x_t and
  // u_t, which some paths compute on the host), copied into input tensors
  // allocated once; then the compute (forward, loss, backward, clipping, Adam,
  // EMA), which reads only those tensors and device-side scalars (Adam's step
  // size and bias correction, the EMA decay: nn::Optimizer::set_device_scalars)
  // and never waits for the device. On a CUDA model the compute runs eagerly
  // for the first two steps of a call (the warm-up), is then captured once as
  // a CUDA graph and replayed every step; the loss is summed on the device and
  // read only when progress is reported or a checkpoint written. On the CPU,
  // which has no graphs, the same split step runs eagerly (so the CPU tests
  // check it). The parameters equal those of cuda_graph = false up to float
  // rounding. Every step must have the same shapes: a matcher whose batch
  // changes throws tide::Error.
  bool cuda_graph = false;

  // --- progress ---
  // Report every log_every steps (0: only at the end) and after the last step.
  int64_t log_every = 100;
  std::function<void(const TrainProgress&)> on_progress = nullptr;
};

struct LossPoint {
  int64_t step;  // the last step of the window
  double loss;   // the mean loss over the window
};

struct TrainResult {
  int64_t steps = 0;              // the total steps completed (including resumed ones)
  int64_t start_step = 0;         // where this call began (> 0 after a resume)
  double final_loss = 0;          // the mean loss of the last report window
  std::vector<LossPoint> losses;  // one point per report (this call's steps)
  double seconds = 0;             // wall time of this call's steps
  double steps_per_second = 0;
  // What save_model should record besides the architecture: "tide.path",
  // "tide.matcher", "tide.sigma" (when set), "tide.source", "tide.source_std",
  // "tide.sigma_max" (VE), "tide.steps", "tide.seed", "tide.ema_decay".
  ModelMetadata metadata;
};

// Trains `model` in place. With ema_decay > 0 the model holds the averaged
// (EMA) weights when train_cfm returns (the checkpoint keeps both). Throws
// tide::Error for bad options (unknown names, batch < 1, a data batch whose
// width is not model.dim(), ...), naming the option and value.
TrainResult train_cfm(VelocityField& model, const DataSource& data, const TrainOptions& options);

// The matcher and source std the options describe (what train_cfm uses), for
// callers that validate options before training (the CLI).
std::shared_ptr<const Matcher> make_training_matcher(const TrainOptions& options);
double source_std(const TrainOptions& options);

// The metadata train_cfm returns in TrainResult::metadata.
ModelMetadata training_metadata(const TrainOptions& options);

}  // namespace tide::flow
