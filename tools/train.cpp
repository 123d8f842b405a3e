// tide train: fit a velocity field by conditional flow matching and write it
// as a safetensors model file that records its architecture.
#include "autograd/anomaly.h"
#include "backends/backend.h"
#include "flow/datasets.h"
#include "flow/trainer.h"
#include "nn/atomic_file.h"
#include "tools/common.h"

namespace tide::cli {

namespace {

struct TrainFlags {
  std::string data = "8gaussians";
  std::string out;
  std::string source = "gaussian";
  std::string path = "condot";
  std::string matcher = "icfm";
  double sigma = 0;  // used only when given
  int64_t width = 64;
  int64_t hidden_layers = 3;
  std::string activation = "selu";
  int64_t batch = 256;
  int64_t steps = 2000;
  double lr = 1e-3;
  uint64_t seed = 0;
  DeviceFlags device;
  bool resume = false;
  std::string checkpoint;  // default: next to --out
  int64_t checkpoint_every = 500;
  int64_t log_every = 0;  // 0: about 100 updates on a terminal, 10 lines otherwise
  std::string dtype = "float32";
  std::string lr_schedule = "constant";
  double ema_decay = 0;
  double grad_clip = 0;
  bool detect_anomaly = false;
};

// model.safetensors -> model.ckpt, in the same directory.
std::string default_checkpoint(const std::string& out) {
  std::filesystem::path p(out);
  p.replace_extension(".ckpt");
  return p.string();
}

void run_train(const TrainFlags& f, bool sigma_given) {
  check_output_path(f.out, "--out", ".safetensors");
  const std::string checkpoint = f.checkpoint.empty() ? default_checkpoint(f.out) : f.checkpoint;
  io::remove_stale_temp_files(f.out);  // left by a run killed while writing --out
  if (f.resume) {
    TIDE_CHECK(std::filesystem::exists(checkpoint),
               "--resume: checkpoint '{}' not found (a 'tide train' with the same --out, or "
               "--checkpoint, writes it)",
               checkpoint);
  }
  const Device device = resolve_device(f.device);

  // The data: a toy set drawn fresh every batch, or a fixed table. (For a toy
  // set, load_data draws one point, which tells the dimension.)
  const Data data = load_data(f.data, "--data", 1, 0);
  const int64_t dim = data.points.size(1);
  const flow::DataSource source =
      data.builtin ? flow::toy_data_source(f.data) : flow::tensor_data_source(data.points);

  flow::TrainOptions options;
  options.path = f.path;
  options.matcher = f.matcher;
  if (sigma_given) options.sigma = f.sigma;
  options.source = f.source;
  options.batch = f.batch;
  options.steps = f.steps;
  options.lr = f.lr;
  options.seed = f.seed;
  options.lr_schedule =
      f.lr_schedule == "cosine" ? flow::LRSchedule::Cosine : flow::LRSchedule::Constant;
  options.ema_decay = f.ema_decay;
  options.grad_clip = f.grad_clip;
  options.checkpoint_path = checkpoint;
  options.checkpoint_every = f.checkpoint_every;
  options.resume = f.resume;
  options.cuda_graph = f.device.cuda_graph;
  // Bad combinations (a sigma for a path matcher, ...) fail here, before the
  // model is built.
  flow::make_training_matcher(options);

  const bool terminal = stdout_is_terminal();
  options.log_every =
      f.log_every > 0 ? f.log_every : std::max<int64_t>(1, f.steps / (terminal ? 100 : 10));
  ProgressBar bar(terminal);
  options.on_progress = [&bar](const flow::TrainProgress& p) {
    bar.update(p.step, p.steps, p.loss, p.steps_per_second);
  };

  Generator init(f.seed);
  auto model =
      std::make_shared<flow::VelocityMLP>(flow::VelocityMLPOptions{.dim = dim,
                                                                   .width = f.width,
                                                                   .hidden_layers = f.hidden_layers,
                                                                   .activation = f.activation,
                                                                   .generator = &init});
  if (f.dtype == "float64") model->to(DType::Float64);
  if (device != Device::cpu()) model->to(device);

  fmt::print(
      "training VelocityMLP(dim={}, width={}, hidden_layers={}, activation={}), {} "
      "parameters, on {}\n",
      dim, f.width, f.hidden_layers, f.activation, model->num_parameters(),
      data.builtin ? f.data + " (fresh points every batch)"
                   : fmt::format("'{}' ({} points)", f.data, data.points.size(0)));
  fmt::print("path {}, matcher {}, source {}, batch {}, {} steps, lr {:g}, seed {}{}\n", f.path,
             f.matcher, f.source, f.batch, f.steps, f.lr, f.seed,
             f.resume ? fmt::format(", resuming from '{}'", checkpoint) : "");
  std::fflush(stdout);

  // Anomaly mode (autograd/anomaly.h): the first NaN/Inf in a forward or
  // backward pass stops training with an error naming the op and module.
  DetectAnomalyGuard anomaly(f.detect_anomaly);
  const flow::TrainResult result = flow::train_cfm(*model, source, options);
  bar.finish();

  flow::ModelMetadata metadata = result.metadata;
  metadata["tide.data"] = f.data;
  flow::save_model(f.out, *model, metadata);
  if (result.start_step >= result.steps) {
    fmt::print("nothing to do: the checkpoint already has all {} steps\n", result.steps);
  } else {
    fmt::print("trained steps {}..{} in {:.2f} s ({:.0f} steps/s), final loss {:.4f}\n",
               result.start_step + 1, result.steps, result.seconds, result.steps_per_second,
               result.final_loss);
  }
  fmt::print("wrote {} (checkpoint {})\n", f.out, checkpoint);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a velocity field v(x, t) by conditional flow matching and save it.\n"
      "Without --data it trains on the built-in 8gaussians toy set. The model is the\n"
      "torchcfm MLP (t appended as the last input column), trained with Adam; the file\n"
      "records the architecture, so 'tide sample' and 'tide loglik' need only --model.\n"
      "A checkpoint is written next to --out (MODEL.ckpt) for --resume.");
  cmd->add_option("--data", flags->data,
                  "Training data: a built-in set (" + dataset_list() +
                      "), or a .npy/.csv file of N rows x d columns")
      ->capture_default_str();
  cmd->add_option("--out", flags->out, "The model file to write (.safetensors)")->required();
  cmd->add_option("--source", flags->source,
                  "The source distribution at t = 0: a standard Gaussian (N(0, sigma_max^2 I) "
                  "for --path ve)")
      ->check(CLI::IsMember({"gaussian"}))
      ->capture_default_str();
  cmd->add_option("--path", flags->path,
                  "The probability path (scheduler): condot (linear interpolation), vp, "
                  "linear-vp, cosine, poly (t^2) or ve (variance exploding)")
      ->check(CLI::IsMember({"condot", "vp", "linear-vp", "cosine", "poly", "ve"}))
      ->capture_default_str();
  cmd->add_option("--matcher", flags->matcher,
                  "The conditional flow matcher: icfm (independent pairs), otcfm (minibatch "
                  "optimal transport), target (Lipman), sbcfm (Schrodinger bridge), vpcfm; "
                  "other paths than condot take icfm or otcfm")
      ->check(CLI::IsMember({"icfm", "otcfm", "target", "sbcfm", "vpcfm"}))
      ->capture_default_str();
  CLI::Option* sigma =
      cmd->add_option("--sigma", flags->sigma,
                      "The matcher's noise level sigma (default 0, and 1 for sbcfm)")
          ->check(non_negative_number());
  cmd->add_option("--width", flags->width, "Hidden units per layer")
      ->check(integer_in(1, int64_t{1} << 16))
      ->capture_default_str();
  cmd->add_option("--hidden-layers", flags->hidden_layers,
                  "The number of activations (Linear layers: one more)")
      ->check(integer_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--activation", flags->activation, "The activation between Linear layers")
      ->check(CLI::IsMember({"selu", "relu", "silu", "swish", "gelu", "gelu_tanh", "elu", "tanh",
                             "sigmoid", "softplus"}))
      ->capture_default_str();
  cmd->add_option("--batch", flags->batch, "Points per training step")
      ->check(integer_in(1, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--steps", flags->steps, "Training steps in total (a resumed run included)")
      ->check(integer_in(1, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--lr", flags->lr, "Adam's learning rate")
      ->check(positive_number())
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed of the initial weights and of every random draw")
      ->capture_default_str();
  add_device_flags(*cmd, flags->device, "Where to train",
                   "Capture the training step (forward, backward, Adam, EMA) once as a CUDA "
                   "Graph and replay it every step; the random draws stay outside. On the CPU "
                   "the same split step runs eagerly");
  cmd->add_flag("--resume", flags->resume,
                "Continue from the checkpoint (MODEL.ckpt, or --checkpoint) up to --steps; the "
                "result is identical to an uninterrupted run");
  const std::string more = "More training options";
  cmd->add_option("--checkpoint", flags->checkpoint,
                  "The checkpoint file (default: --out with extension .ckpt)")
      ->group(more);
  cmd->add_option("--checkpoint-every", flags->checkpoint_every,
                  "Write the checkpoint every N steps (0: only at the end)")
      ->check(non_negative_number())
      ->capture_default_str()
      ->group(more);
  cmd->add_option("--log-every", flags->log_every,
                  "Report progress every N steps (default: 100 updates on a terminal, 10 lines "
                  "otherwise)")
      ->check(non_negative_number())
      ->group(more);
  cmd->add_option("--dtype", flags->dtype, "Parameter dtype")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str()
      ->group(more);
  cmd->add_option("--lr-schedule", flags->lr_schedule,
                  "constant, or cosine annealing to 0 over --steps")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str()
      ->group(more);
  cmd->add_option("--ema-decay", flags->ema_decay,
                  "Keep an exponential moving average of the weights (e.g. 0.999) and save it")
      ->check(number_in(0.0, 1.0))
      ->group(more);
  cmd->add_option("--grad-clip", flags->grad_clip, "Clip the global gradient norm (0: off)")
      ->check(non_negative_number())
      ->group(more);
  cmd->add_flag("--detect-anomaly", flags->detect_anomaly,
                "Stop at the first NaN or Inf in a forward or backward pass, naming the op, its "
                "input shapes and the module (slow: for debugging)")
      ->group(more);
  cmd->callback([flags, sigma] { run_train(*flags, sigma->count() > 0); });
}

}  // namespace tide::cli
