#include "flow/trainer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>

#include "flow/datasets.h"
#include "flow/step_graph.h"
#include "nn/atomic_file.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"

namespace tide::flow {

// ---------------------------------------------------------------------------
// Data sources
// ---------------------------------------------------------------------------

DataSource tensor_data_source(const Tensor& data) {
  TIDE_CHECK(data.defined() && data.dim() == 2 && data.size(0) > 0 && data.is_floating_point(),
             "tensor_data_source: data must be a floating-point [N, d] tensor with N > 0, got {}",
             data.defined() ? data.describe() : "undefined");
  // Contiguous once, so every batch is a plain row gather.
  Tensor rows = contiguous(data.requires_grad() ? detach(data) : data);
  return [rows](int64_t batch, Generator& gen) {
    Tensor index = randint(0, rows.size(0), {batch}, gen);
    return index_select(rows, 0, index);
  };
}

DataSource toy_data_source(std::string_view name) {
  const auto& names = dataset_names();
  TIDE_CHECK(std::find(names.begin(), names.end(), name) != names.end(),
             "toy_data_source: unknown data set '{}'; valid names are {}", name,
             fmt::join(names, ", "));
  return [name = std::string(name)](int64_t batch, Generator& gen) {
    Tensor x = sample_dataset(name, batch, gen);
    // pinwheel and 2spirals round the row count down to a multiple of 5 / 2:
    // draw a few more and keep `batch` (their rows are shuffled or symmetric).
    if (x.size(0) < batch) x = narrow(sample_dataset(name, batch + 4, gen), 0, 0, batch);
    return x;
  };
}

// ---------------------------------------------------------------------------
// Options -> matcher, source
// ---------------------------------------------------------------------------

namespace {

bool is_torchcfm_path(const TrainOptions& options) {
  return options.path == "condot" && options.scheduler.sigma_min == 0.0;
}

}  // namespace

std::shared_ptr<const Matcher> make_training_matcher(const TrainOptions& options) {
  if (options.custom_matcher) return options.custom_matcher;
  if (is_torchcfm_path(options)) return make_matcher(options.matcher, options.sigma);
  // Any other affine path: the scheduler defines x_t and u_t; the matcher name
  // only chooses how x0 and x1 are paired.
  auto scheduler = make_scheduler(options.path, options.scheduler);
  TIDE_CHECK(options.matcher == "icfm" || options.matcher == "otcfm",
             "train_cfm: matcher '{}' defines its own path and cannot be combined with path "
             "'{}'; use matcher icfm (independent pairs) or otcfm (minibatch OT pairs), or "
             "path condot",
             options.matcher, options.path);
  TIDE_CHECK(!options.sigma.has_value(),
             "train_cfm: sigma = {} applies to the torchcfm matchers on path condot; path '{}' "
             "has its own noise schedule",
             *options.sigma, options.path);
  std::optional<OTCouplingOptions> coupling;
  if (options.matcher == "otcfm") coupling = OTCouplingOptions{};
  return std::make_shared<PathMatcher>(scheduler, coupling);
}

double source_std(const TrainOptions& options) {
  if (options.custom_matcher) {
    auto* path = dynamic_cast<const PathMatcher*>(options.custom_matcher.get());
    if (path != nullptr) {
      auto* ve = dynamic_cast<const VEScheduler*>(&path->path().scheduler());
      if (ve != nullptr) return ve->sigma_max();
    }
    return 1.0;
  }
  return options.path == "ve" ? options.scheduler.ve_sigma_max : 1.0;
}

ModelMetadata training_metadata(const TrainOptions& options) {
  ModelMetadata m;
  const bool custom_matcher = options.custom_matcher != nullptr;
  m["tide.path"] = custom_matcher ? "custom" : options.path;
  m["tide.matcher"] = custom_matcher ? options.custom_matcher->name() : options.matcher;
  if (options.sigma && !custom_matcher) m["tide.sigma"] = fmt::format("{}", *options.sigma);
  if (!custom_matcher && options.path == "condot" && options.scheduler.sigma_min != 0)
    m["tide.sigma_min"] = fmt::format("{}", options.scheduler.sigma_min);
  if (!custom_matcher && options.path == "ve") {
    m["tide.sigma_min"] = fmt::format("{}", options.scheduler.ve_sigma_min);
    m["tide.sigma_max"] = fmt::format("{}", options.scheduler.ve_sigma_max);
  }
  if (options.custom_source) {
    m["tide.source"] = "custom";
  } else {
    m["tide.source"] = options.source;
    m["tide.source_std"] = fmt::format("{}", source_std(options));
  }
  m["tide.steps"] = std::to_string(options.steps);
  m["tide.batch"] = std::to_string(options.batch);
  m["tide.lr"] = fmt::format("{}", options.lr);
  m["tide.seed"] = std::to_string(options.seed);
  if (options.ema_decay > 0) m["tide.ema_decay"] = fmt::format("{}", options.ema_decay);
  return m;
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

namespace {

// Everything a step depends on, so that a resumed run continues bit for bit.
struct TrainingState {
  VelocityField& model;
  nn::Optimizer& optimizer;
  nn::LRScheduler* scheduler;  // null for a constant lr
  nn::EMA* ema;                // null without EMA
  Generator& gen;
};

nn::Checkpoint make_checkpoint(const TrainingState& state, int64_t step) {
  return {.model = &state.model,
          .optimizer = &state.optimizer,
          .ema = state.ema,
          .scheduler = state.scheduler,
          .generator = &state.gen,
          .step = step,
          .metadata = {{"cfm.dim", std::to_string(state.model.dim())}}};
}

void save_training_checkpoint(const std::filesystem::path& path, const TrainingState& state,
                              int64_t step) {
  nn::save_checkpoint(path, make_checkpoint(state, step));
}

// Restores the state and returns the step the checkpoint was taken after.
int64_t load_training_checkpoint(const std::filesystem::path& path, const TrainingState& state) {
  nn::Checkpoint checkpoint = make_checkpoint(state, 0);
  try {
    nn::load_checkpoint(path, checkpoint);
  } catch (const Error& e) {
    fail(
        "train_cfm: cannot resume from '{}' (a checkpoint of a run with the same model and "
        "options is needed): {}",
        path.string(), e.what());
  }
  return checkpoint.step;
}

void check_options(const TrainOptions& o) {
  TIDE_CHECK(o.batch >= 1, "train_cfm: batch must be >= 1, got {}", o.batch);
  TIDE_CHECK(o.steps >= 0, "train_cfm: steps must be >= 0, got {}", o.steps);
  TIDE_CHECK(o.lr > 0, "train_cfm: lr must be > 0, got {}", o.lr);
  TIDE_CHECK(o.grad_clip >= 0, "train_cfm: grad_clip must be >= 0, got {}", o.grad_clip);
  TIDE_CHECK(o.ema_decay >= 0 && o.ema_decay < 1, "train_cfm: ema_decay must be in [0, 1), got {}",
             o.ema_decay);
  TIDE_CHECK(o.warmup_steps >= 0 && o.log_every >= 0 && o.checkpoint_every >= 0,
             "train_cfm: warmup_steps, log_every and checkpoint_every must be >= 0, got {}, {}, {}",
             o.warmup_steps, o.log_every, o.checkpoint_every);
  TIDE_CHECK(o.custom_source || o.source == "gaussian",
             "train_cfm: unknown source '{}'; the built-in source is 'gaussian' (or pass "
             "custom_source)",
             o.source);
  TIDE_CHECK(!o.resume || !o.checkpoint_path.empty(), "train_cfm: resume needs checkpoint_path");
  TIDE_CHECK(!o.resume || std::filesystem::exists(o.checkpoint_path),
             "train_cfm: cannot resume: checkpoint '{}' does not exist",
             o.checkpoint_path.string());
}

// A batch from `source`, checked and moved to the model's dtype and device.
Tensor draw_batch(const DataSource& source, const char* what, int64_t batch, int64_t dim,
                  DType dtype, Device device, Generator& gen) {
  Tensor x = source(batch, gen);
  TIDE_CHECK(x.defined() && x.dim() == 2 && x.size(0) == batch && x.size(1) == dim,
             "train_cfm: the {} must give [batch, dim] = [{}, {}] batches (dim is the model's), "
             "got {}",
             what, batch, dim, x.defined() ? x.shape().str() : "undefined");
  if (x.device() != device) x = tide::to(x, device);
  if (x.dtype() != dtype) x = tide::to(x, dtype);
  return x;
}

// ---------------------------------------------------------------------------
// The capturable step (TrainOptions::cuda_graph)
// ---------------------------------------------------------------------------

// Steps run eagerly before the capture: they create what is made lazily
// (Adam's moments, the gradients, matmul plans) outside the captured region.
constexpr int64_t kGraphWarmupSteps = 2;

// The compute half of a training step, on tensors that never move: inputs
// allocated once, gradients allocated once by the captured backward (PyTorch's
// recipe: set to none before backward, so the graph's own allocations become
// the static gradients), Adam and EMA state updated in place with scalars read
// from the device, and the loss summed on the device.
class StaticTrainStep {
 public:
  StaticTrainStep(VelocityField& model, nn::Adam& optimizer, nn::EMA* ema, double grad_clip,
                  bool capture)
      : model_(model),
        optimizer_(optimizer),
        ema_(ema),
        grad_clip_(grad_clip),
        params_(model.parameters()),
        graph_("train_cfm", model.device(), capture),
        loss_sum_(zeros({}, {.dtype = DType::Float64, .device = model.device()})) {
    optimizer_.set_device_scalars(true);
    if (ema_) ema_->set_device_scalars(true);
  }

  // One training step on the matcher's sample (its x_t, t and u_t).
  void run(const MatcherSample& sample, int64_t step) {
    set_inputs(sample, step);
    if (eager_steps_ < kGraphWarmupSteps) {
      compute(/*with_host_half=*/true);
      ++eager_steps_;
      return;
    }
    // The host halves run here, outside the graph, before its replay.
    optimizer_.prepare_step();
    if (ema_) ema_->prepare_update();
    graph_.run([this] { compute(/*with_host_half=*/false); });
  }

  // The losses summed since the last call. Reads the device (waits for it).
  double take_loss_sum() {
    const double sum = loss_sum_.item();
    fill_(loss_sum_, 0.0);
    return sum;
  }

 private:
  void set_inputs(const MatcherSample& sample, int64_t step) {
    NoGradGuard no_grad;
    if (!x_t_.defined()) {
      x_t_ = clone(sample.x_t);
      t_ = clone(sample.t);
      u_t_ = clone(sample.u_t);
      return;
    }
    const std::pair<const Tensor*, const Tensor*> pairs[] = {
        {&x_t_, &sample.x_t}, {&t_, &sample.t}, {&u_t_, &sample.u_t}};
    for (const auto& [fixed, now] : pairs) {
      TIDE_CHECK(now->shape() == fixed->shape() && now->device() == fixed->device(),
                 "train_cfm: cuda_graph needs the same shapes every step, but step {} gave {} "
                 "where the first step gave {} (set cuda_graph = false for batches that change)",
                 step + 1, now->describe(), fixed->describe());
      copy_(*fixed, *now);
    }
  }

  // with_host_half: the eager warm-up (the optimizer's and EMA's counters and
  // scalars advance here); otherwise the capturable part only.
  void compute(bool with_host_half) {
    Tensor v = model_.forward(x_t_, t_);
    Tensor loss = mean(square(v - u_t_));  // element mean, as torchcfm
    optimizer_.zero_grad();
    backward(loss);
    if (grad_clip_ > 0) nn::clip_grad_norm_device_(params_, grad_clip_);
    if (with_host_half) {
      optimizer_.step();
      if (ema_) ema_->update();
    } else {
      optimizer_.apply_step();
      if (ema_) ema_->apply_update();
    }
    NoGradGuard no_grad;
    add_(loss_sum_, detach(loss));
  }

  VelocityField& model_;
  nn::Adam& optimizer_;
  nn::EMA* ema_;
  double grad_clip_;
  std::vector<Tensor> params_;
  StepGraph graph_;
  Tensor loss_sum_;       // float64 0-d on the model's device
  Tensor x_t_, t_, u_t_;  // the static inputs
  int64_t eager_steps_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// The training loop
// ---------------------------------------------------------------------------

TrainResult train_cfm(VelocityField& model, const DataSource& data, const TrainOptions& options) {
  check_options(options);
  TIDE_CHECK(data != nullptr, "train_cfm: no data source");
  const std::shared_ptr<const Matcher> matcher = make_training_matcher(options);
  const double x0_std = source_std(options);
  const int64_t dim = model.dim();
  const DType dtype = model.dtype();
  const Device device = model.device();

  Generator gen(options.seed);
  nn::Adam optimizer(model.parameters(), {.lr = options.lr,
                                          .beta1 = options.beta1,
                                          .beta2 = options.beta2,
                                          .eps = options.eps,
                                          .weight_decay = options.weight_decay});
  std::unique_ptr<nn::LRScheduler> scheduler;
  if (options.lr_schedule == LRSchedule::Cosine || options.warmup_steps > 0) {
    std::unique_ptr<nn::LRScheduler> main;
    if (options.lr_schedule == LRSchedule::Cosine)
      main = std::make_unique<nn::CosineAnnealingLR>(
          optimizer, std::max<int64_t>(1, options.steps - options.warmup_steps), options.lr_min);
    else
      main = std::make_unique<nn::ConstantLR>(optimizer);
    if (options.warmup_steps > 0)
      scheduler =
          std::make_unique<nn::LinearWarmup>(optimizer, options.warmup_steps, std::move(main));
    else
      scheduler = std::move(main);
  }
  std::unique_ptr<nn::EMA> ema;
  if (options.ema_decay > 0)
    ema = std::make_unique<nn::EMA>(
        model, nn::EMAOptions{.decay = options.ema_decay, .warmup = options.ema_warmup});
  const TrainingState state{model, optimizer, scheduler.get(), ema.get(), gen};

  TrainResult result;
  result.metadata = training_metadata(options);
  // A run killed while writing a checkpoint leaves its temporary file
  // behind; remove those of dead processes so repeated kills cannot fill the disk.
  if (!options.checkpoint_path.empty()) io::remove_stale_temp_files(options.checkpoint_path);
  int64_t step = 0;
  if (options.resume) step = load_training_checkpoint(options.checkpoint_path, state);
  result.start_step = step;

  model.train();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto window_start = start;
  double window_loss = 0;
  int64_t window_steps = 0;
  const std::vector<Tensor> params = model.parameters();
  // cuda_graph: the split step (captured on a CUDA device, eager on the CPU).
  std::unique_ptr<StaticTrainStep> static_step;
  if (options.cuda_graph)
    static_step = std::make_unique<StaticTrainStep>(model, optimizer, ema.get(), options.grad_clip,
                                                    device.is_cuda());

  while (step < options.steps) {
    // Draws, in a fixed order from the one generator: data, source, matcher.
    Tensor x1 = draw_batch(data, "data source", options.batch, dim, dtype, device, gen);
    Tensor x0 = options.custom_source ? draw_batch(options.custom_source, "custom source",
                                                   options.batch, dim, dtype, device, gen)
                                      : normal({options.batch, dim}, 0.0, x0_std, gen,
                                               {.dtype = dtype, .device = device});
    MatcherSample sample = matcher->sample(x0, x1, gen);
    const double step_lr = optimizer.lr();  // before the schedule moves it

    if (static_step) {
      static_step->run(sample, step);
      if (scheduler) scheduler->step();
    } else {
      Tensor v = model.forward(sample.x_t, sample.t);
      Tensor loss = mean(square(v - sample.u_t));  // element mean, as torchcfm

      optimizer.zero_grad();
      backward(loss);
      if (options.grad_clip > 0) nn::clip_grad_norm_(params, options.grad_clip);
      optimizer.step();
      if (scheduler) scheduler->step();
      if (ema) ema->update();
      // item() is free on the CPU; on an accelerator it synchronises.
      window_loss += loss.item();
    }
    ++step;
    ++window_steps;

    const bool last = step == options.steps;
    if (!options.checkpoint_path.empty() &&
        (last || (options.checkpoint_every > 0 && step % options.checkpoint_every == 0)))
      save_training_checkpoint(options.checkpoint_path, state, step);

    if (last || (options.log_every > 0 && step % options.log_every == 0)) {
      // The split step sums its losses on the device; read them only here.
      if (static_step) window_loss = static_step->take_loss_sum();
      const auto now = Clock::now();
      const double seconds = std::chrono::duration<double>(now - window_start).count();
      TrainProgress progress{.step = step,
                             .steps = options.steps,
                             .loss = window_loss / static_cast<double>(window_steps),
                             .steps_per_second = seconds > 0 ? window_steps / seconds : 0.0,
                             .lr = step_lr,
                             .elapsed_seconds = std::chrono::duration<double>(now - start).count()};
      result.losses.push_back({step, progress.loss});
      result.final_loss = progress.loss;
      if (options.on_progress) options.on_progress(progress);
      window_start = now;
      window_loss = 0;
      window_steps = 0;
    }
  }

  result.steps = step;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t done = step - result.start_step;
  result.steps_per_second = result.seconds > 0 ? done / result.seconds : 0.0;
  // Evaluate with the averaged weights (the checkpoint keeps the raw ones).
  if (ema) ema->copy_to(model);
  return result;
}

}  // namespace tide::flow
