// Optimizers, schedules, clipping and EMA (nn/optimizer.h, nn/lr_scheduler.h,
// nn/ema.h).
//
// References: PyTorch's own results from tests/golden/optim_golden.py
// (optimizer trajectories, schedules, clipping, an MLP's loss curve), closed
// forms and float64 loops written here (schedules, clipping, EMA), and an
// uninterrupted run for state_dict save/restore (compared bit for bit).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>
#include <string>

#include "golden/optim_golden.h"
#include "nn/layers.h"
#include "nn/optim.h"

using namespace tide;
using namespace tide::nn;
namespace golden = optim_golden;

namespace {

Shape to_shape(const std::vector<int64_t>& dims) {
  return Shape(dims);
}

// Fresh float64 leaves holding the golden initial values.
std::vector<Tensor> golden_params(DType dtype = DType::Float64) {
  std::vector<Tensor> params;
  for (size_t i = 0; i < golden::kParamShapes.size(); ++i) {
    Tensor p = to(from_vector(golden::kInitialParams[i], to_shape(golden::kParamShapes[i])), dtype);
    p = detach(p);
    p.set_requires_grad(true);
    params.push_back(p);
  }
  return params;
}

// A gradient with the given values and shape; strided = true gives a
// non-contiguous view (a transpose for 2-D, every other element for 1-D), which
// sends the optimizers down their generic (tensor-op) path.
Tensor make_grad(const std::vector<double>& values, const Shape& shape, bool strided) {
  if (!strided) return from_vector(values, shape);
  if (shape.size() == 2) {
    // Store the transpose contiguously, then transpose back: same values.
    std::vector<double> t(values.size());
    for (int64_t r = 0; r < shape[0]; ++r)
      for (int64_t c = 0; c < shape[1]; ++c) t[c * shape[0] + r] = values[r * shape[1] + c];
    return transpose(from_vector(t, Shape{shape[1], shape[0]}), 0, 1);
  }
  std::vector<double> spread(values.size() * 2, 0.0);
  for (size_t i = 0; i < values.size(); ++i) spread[2 * i] = values[i];
  return slice(from_vector(spread), 0, 0, static_cast<int64_t>(spread.size()), 2);
}

// Sets the golden gradients of `step` (clearing those that are absent).
void set_golden_grads(const std::vector<Tensor>& params, int step, bool strided = false) {
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& g = golden::kGrads[step][i];
    Tensor grad;
    if (!g.empty()) grad = make_grad(g, params[i].shape(), strided);
    Tensor param = params[i];  // a handle to the same tensor
    param.set_grad(grad);
  }
}

std::unique_ptr<Optimizer> make_optimizer(const golden::OptimCase& c,
                                          const std::vector<Tensor>& params) {
  std::vector<ParamGroup> groups;
  for (const auto& g : c.groups) {
    ParamGroup group{.lr = g.lr, .weight_decay = g.weight_decay};
    for (int i : g.params) group.params.push_back(params[i]);
    groups.push_back(group);
  }
  const std::string type = c.optimizer;
  if (type == "SGD")
    return std::make_unique<SGD>(groups, SGDOptions{.lr = c.lr,
                                                    .momentum = c.momentum,
                                                    .dampening = c.dampening,
                                                    .weight_decay = c.weight_decay,
                                                    .nesterov = c.nesterov});
  if (type == "Adam")
    return std::make_unique<Adam>(groups, AdamOptions{.lr = c.lr,
                                                      .beta1 = c.beta1,
                                                      .beta2 = c.beta2,
                                                      .eps = c.eps,
                                                      .weight_decay = c.weight_decay,
                                                      .amsgrad = c.amsgrad});
  REQUIRE(type == "AdamW");
  return std::make_unique<AdamW>(groups, AdamWOptions{.lr = c.lr,
                                                      .beta1 = c.beta1,
                                                      .beta2 = c.beta2,
                                                      .eps = c.eps,
                                                      .weight_decay = c.weight_decay,
                                                      .amsgrad = c.amsgrad});
}

const golden::OptimCase& golden_case(const std::string& name) {
  for (const auto& c : golden::kCases)
    if (name == c.name) return c;
  FAIL("no golden case " << name);
  return golden::kCases.front();
}

bool close(double actual, double expected, double rtol) {
  return std::abs(actual - expected) <= rtol * std::max(1.0, std::abs(expected));
}

void check_close(const std::vector<double>& actual, const std::vector<double>& expected,
                 double rtol, const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  for (size_t k = 0; k < actual.size(); ++k) {
    INFO(what << " element " << k << ": " << actual[k] << " vs " << expected[k]);
    REQUIRE(close(actual[k], expected[k], rtol));
  }
}

// Runs a golden case and compares every parameter after every step.
void replay_golden(const golden::OptimCase& c, bool strided_grads) {
  std::vector<Tensor> params = golden_params();
  auto opt = make_optimizer(c, params);
  for (int step = 0; step < golden::kNumSteps; ++step) {
    set_golden_grads(params, step, strided_grads);
    opt->step();
    REQUIRE(opt->step_count() == step + 1);
    for (size_t i = 0; i < params.size(); ++i)
      check_close(params[i].to_vector<double>(), c.history[step][i], 1e-12,
                  fmt::format("{} step {} param {}", c.name, step + 1, i));
  }
}

}  // namespace

// ===========================================================================
// Golden trajectories
// ===========================================================================

TEST_CASE("optimizers match PyTorch trajectories (fused CPU path)", "[optim]") {
  INFO("golden values from torch " << golden::kTorchVersion);
  for (const auto& c : golden::kCases) {
    SECTION(c.name) {
      replay_golden(c, false);
    }
  }
}

TEST_CASE("optimizers match PyTorch trajectories (generic tensor-op path)", "[optim]") {
  // Non-contiguous gradients cannot take the fused loops.
  for (const auto& c : golden::kCases) {
    SECTION(c.name) {
      replay_golden(c, true);
    }
  }
}

TEST_CASE("optimizer updates parameters in place and keeps their identity", "[optim]") {
  std::vector<Tensor> params = golden_params();
  const void* data = params[0].raw_data();
  const uint64_t version = params[0].storage()->version();
  SGD opt(params, {.lr = 0.1});
  set_golden_grads(params, 0);
  opt.step();
  REQUIRE(params[0].raw_data() == data);
  REQUIRE(params[0].storage()->version() > version);  // autograd sees the write
  REQUIRE(params[0].requires_grad());
  REQUIRE(params[0].is_leaf());

  // zero_grad clears gradients; a step without gradients changes nothing.
  opt.zero_grad();
  for (const Tensor& p : params) REQUIRE_FALSE(p.grad().defined());
  std::vector<double> before = params[0].to_vector<double>();
  opt.step();
  REQUIRE(params[0].to_vector<double>() == before);
  REQUIRE(opt.step_count() == 2);
}

TEST_CASE("Adam in float32 follows the float64 trajectory", "[optim]") {
  // The fused float32 loop against the float64 golden values, to float32 accuracy.
  const auto& c = golden_case("adamw_amsgrad");
  std::vector<Tensor> params = golden_params(DType::Float32);
  auto opt = make_optimizer(c, params);
  for (int step = 0; step < golden::kNumSteps; ++step) {
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& g = golden::kGrads[step][i];
      params[i].set_grad(g.empty() ? Tensor()
                                   : to(from_vector(g, params[i].shape()), DType::Float32));
    }
    opt->step();
  }
  for (size_t i = 0; i < params.size(); ++i)
    check_close(params[i].to_vector<double>(), c.history.back()[i], 1e-5, "float32 Adam");
}

TEST_CASE("optimizer lr accessors and parameter groups", "[optim]") {
  std::vector<Tensor> params = golden_params();
  Adam opt(
      {ParamGroup{.params = {params[0]}}, ParamGroup{.params = {params[1], params[2]}, .lr = 0.5}},
      {.lr = 0.01, .weight_decay = 0.2});
  REQUIRE(opt.param_groups().size() == 2);
  REQUIRE(opt.lr(0) == 0.01);
  REQUIRE(opt.lr(1) == 0.5);
  REQUIRE(*opt.param_groups()[1].weight_decay == 0.2);  // the default fills unset options
  REQUIRE(opt.num_params() == 3);
  opt.set_lr(0.25, 1);
  REQUIRE(opt.lr(1) == 0.25);
  REQUIRE_THROWS_WITH(opt.lr(2), Catch::Contains("group 2"));
  REQUIRE_THROWS_WITH(opt.set_lr(-1.0, 0), Catch::Contains("invalid learning rate -1"));
}

// ===========================================================================
// Learning-rate schedules
// ===========================================================================

namespace {

// Steps a scheduler and returns the lr after 0 .. steps steps.
std::vector<double> run_schedule(Optimizer& opt, LRScheduler& sched, int steps, size_t group = 0) {
  std::vector<double> lrs = {opt.lr(group)};
  for (int s = 0; s < steps; ++s) {
    sched.step();
    lrs.push_back(opt.lr(group));
  }
  return lrs;
}

double cosine_closed_form(double base, double eta_min, int64_t t, int64_t t_max) {
  return eta_min + (base - eta_min) * (1 + std::cos(std::numbers::pi * t / t_max)) / 2;
}

}  // namespace

TEST_CASE("learning-rate schedules follow their closed forms and PyTorch", "[optim]") {
  std::vector<Tensor> params = golden_params();
  const double base = golden::kScheduleBaseLr;
  const int n = golden::kScheduleSteps;

  SECTION("constant") {
    SGD opt(params, {.lr = base});
    ConstantLR sched(opt);
    for (double lr : run_schedule(opt, sched, n)) REQUIRE(lr == base);
  }
  SECTION("step") {
    SGD opt(params, {.lr = base});
    StepLR sched(opt, 4, 0.5);
    std::vector<double> lrs = run_schedule(opt, sched, n);
    for (int t = 0; t <= n; ++t) {
      REQUIRE(lrs[t] == Approx(base * std::pow(0.5, t / 4)).epsilon(1e-15));
      REQUIRE(close(lrs[t], golden::kStepLr[t], 1e-14));
    }
  }
  SECTION("cosine") {
    SGD opt(params, {.lr = base});
    CosineAnnealingLR sched(opt, 10, 0.001);
    std::vector<double> lrs = run_schedule(opt, sched, n);
    for (int t = 0; t <= n; ++t) {
      REQUIRE(close(lrs[t], cosine_closed_form(base, 0.001, t, 10), 1e-15));
      // PyTorch steps the cosine recursively; it agrees to rounding.
      REQUIRE(close(lrs[t], golden::kCosineLr[t], 1e-12));
    }
    REQUIRE(close(lrs[10], 0.001, 1e-15));
  }
  SECTION("warm-up then cosine") {
    SGD opt(params, {.lr = base});
    auto cosine = std::make_unique<CosineAnnealingLR>(opt, 8, 0.0);
    LinearWarmup sched(opt, 3, std::move(cosine), 0.25);
    std::vector<double> lrs = run_schedule(opt, sched, n);
    for (int t = 0; t <= n; ++t) {
      double expected =
          t < 3 ? base * (0.25 + 0.75 * t / 3.0) : cosine_closed_form(base, 0, t - 3, 8);
      REQUIRE(close(lrs[t], expected, 1e-15));
      REQUIRE(close(lrs[t], golden::kWarmupCosineLr[t], 1e-12));
    }
  }
  SECTION("warm-up alone, two groups with their own base lr") {
    SGD opt({ParamGroup{.params = {params[0]}, .lr = 0.2},
             ParamGroup{.params = {params[1]}, .lr = 0.02}},
            {.lr = 1.0});
    LinearWarmup sched(opt, 4, nullptr, 0.0);
    std::vector<double> lr0 = run_schedule(opt, sched, 6, 0);
    REQUIRE(sched.last_lr().size() == 2);
    for (int t = 0; t <= 6; ++t) REQUIRE(close(lr0[t], 0.2 * std::min(t, 4) / 4.0, 1e-15));
    REQUIRE(opt.lr(1) == Approx(0.02));
  }
  SECTION("errors") {
    SGD opt(params, {.lr = base});
    REQUIRE_THROWS_AS(StepLR(opt, 0), Error);
    REQUIRE_THROWS_WITH(StepLR(opt, 0), Catch::Contains("StepLR: step_size must be positive"));
    REQUIRE_THROWS_WITH(CosineAnnealingLR(opt, -2), Catch::Contains("T_max must be positive"));
    REQUIRE_THROWS_WITH(LinearWarmup(opt, 0), Catch::Contains("warmup_steps must be positive"));
  }
}

TEST_CASE("scheduler state_dict restores the step and the learning rates", "[optim]") {
  std::vector<Tensor> params = golden_params();
  SGD opt(params, {.lr = 0.1});
  CosineAnnealingLR sched(opt, 10, 0.0);
  for (int s = 0; s < 4; ++s) sched.step();
  StateDict saved = sched.state_dict();
  REQUIRE(saved.at("last_step").dtype() == DType::Int64);
  REQUIRE(saved.at("last_step").item() == 4);
  REQUIRE(saved.at("base_lrs.0").item() == 0.1);

  std::vector<Tensor> params2 = golden_params();
  SGD opt2(params2, {.lr = 0.1});
  CosineAnnealingLR sched2(opt2, 10, 0.0);
  sched2.load_state_dict(saved);
  REQUIRE(sched2.last_step() == 4);
  REQUIRE(opt2.lr() == opt.lr());
  sched.step();
  sched2.step();
  REQUIRE(opt2.lr() == opt.lr());

  StateDict bad = saved;
  bad["base_lrs.1"] = scalar(0.5, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(sched2.load_state_dict(bad), Catch::Contains("unexpected key 'base_lrs.1'"));
  bad = saved;
  bad.erase("last_step");
  REQUIRE_THROWS_WITH(sched2.load_state_dict(bad), Catch::Contains("no key 'last_step'"));
}

// ===========================================================================
// Gradient clipping
// ===========================================================================

TEST_CASE("clip_grad_norm_ matches a hand computation and PyTorch", "[optim]") {
  for (const auto& c : golden::kClipCases) {
    DYNAMIC_SECTION("max_norm " << c.max_norm << " norm_type " << c.norm_type) {
      std::vector<Tensor> params = golden_params();
      for (size_t i = 0; i < params.size(); ++i)
        params[i].set_grad(from_vector(golden::kClipGrads[i], params[i].shape()));
      // The hand computation: all gradient elements as one vector.
      double total = 0;
      for (const auto& g : golden::kClipGrads)
        for (double v : g)
          total = std::isinf(c.norm_type) ? std::max(total, std::abs(v)) : total + v * v;
      if (!std::isinf(c.norm_type)) total = std::sqrt(total);
      const double scale = std::min(1.0, c.max_norm / (total + 1e-6));

      const double returned = clip_grad_norm_(params, c.max_norm, c.norm_type);
      REQUIRE(close(returned, total, 1e-14));
      REQUIRE(close(returned, c.total_norm, 1e-14));
      for (size_t i = 0; i < params.size(); ++i) {
        std::vector<double> got = params[i].grad().to_vector<double>();
        for (size_t k = 0; k < got.size(); ++k) {
          REQUIRE(close(got[k], golden::kClipGrads[i][k] * scale, 1e-14));
          REQUIRE(close(got[k], c.clipped[i][k], 1e-14));
        }
        if (scale == 1.0) REQUIRE(got == golden::kClipGrads[i]);  // untouched
      }
    }
  }
  SECTION("parameters without gradients are ignored") {
    std::vector<Tensor> params = golden_params();
    REQUIRE(clip_grad_norm_(params, 1.0) == 0.0);
    params[1].set_grad(from_vector(std::vector<double>{3, 4, 0}, Shape{3}));
    REQUIRE(clip_grad_norm_(params, 1.0) == Approx(5.0).epsilon(1e-15));
    REQUIRE(params[1].grad().to_vector<double>()[0] == Approx(3 / (5 + 1e-6)).epsilon(1e-14));
  }
  SECTION("errors") {
    std::vector<Tensor> params = golden_params();
    REQUIRE_THROWS_WITH(clip_grad_norm_(params, -1.0),
                        Catch::Contains("clip_grad_norm_: max_norm"));
  }
}

// ===========================================================================
// EMA
// ===========================================================================

TEST_CASE("EMA follows a hand-written loop", "[optim]") {
  // device_scalars: the decay read from a device tensor (the CUDA Graph
  // path), alternating the split prepare/apply calls with update().
  for (bool device_scalars : {false, true}) {
    for (bool warmup : {false, true}) {
      DYNAMIC_SECTION("device scalars " << device_scalars << ", warmup " << warmup) {
        std::vector<Tensor> params = golden_params();
        EMA ema(params, {.decay = 0.9, .warmup = warmup});
        if (device_scalars) ema.set_device_scalars(true);
        std::vector<std::vector<double>> shadow;
        for (const Tensor& p : params) shadow.push_back(p.to_vector<double>());

        SGD opt(params, {.lr = 0.1});
        for (int step = 0; step < golden::kNumSteps; ++step) {
          set_golden_grads(params, step);
          opt.step();
          const double n = step + 1;
          const double d = warmup ? std::min(0.9, (1 + n) / (10 + n)) : 0.9;
          if (!device_scalars) REQUIRE(ema.next_decay() == d);
          if (device_scalars && step % 2 == 0) {
            ema.prepare_update();
            ema.apply_update();
          } else {
            ema.update();
          }
          for (size_t i = 0; i < params.size(); ++i) {
            std::vector<double> p = params[i].to_vector<double>();
            for (size_t k = 0; k < p.size(); ++k) shadow[i][k] += (1 - d) * (p[k] - shadow[i][k]);
            check_close(ema.shadow()[i].to_vector<double>(), shadow[i], 1e-14, "EMA shadow");
          }
        }
        REQUIRE(ema.num_updates() == golden::kNumSteps);
      }
    }
  }
}

TEST_CASE("EMA apply_to, restore, copy_to and state_dict", "[optim]") {
  std::vector<Tensor> params = golden_params();
  EMA ema(params, {.decay = 0.5});
  SGD opt(params, {.lr = 0.1});
  for (int step = 0; step < 3; ++step) {
    set_golden_grads(params, step);
    opt.step();
    ema.update();
  }
  std::vector<double> trained = params[0].to_vector<double>();
  std::vector<double> average = ema.shadow()[0].to_vector<double>();
  REQUIRE(trained != average);

  ema.apply_to();
  REQUIRE(params[0].to_vector<double>() == average);
  REQUIRE_THROWS_WITH(ema.update(), Catch::Contains("call restore() first"));
  ema.restore();
  REQUIRE(params[0].to_vector<double>() == trained);
  REQUIRE_THROWS_WITH(ema.restore(), Catch::Contains("nothing to restore"));

  std::vector<Tensor> eval_params = golden_params();
  ema.copy_to(eval_params);
  REQUIRE(eval_params[0].to_vector<double>() == average);
  REQUIRE_THROWS_WITH(ema.copy_to({eval_params[0]}),
                      Catch::Contains("EMA.copy_to: got 1 parameters, but the EMA tracks 3"));

  // Module overloads: track a model, copy into a separate evaluation model.
  Generator gen(3);
  Linear model(LinearOptions{.in = 2, .out = 3, .generator = &gen});
  Linear eval_model(LinearOptions{.in = 2, .out = 3, .generator = &gen});
  EMA model_ema(model, {.decay = 0.0});  // decay 0: the shadow follows the model exactly
  {
    NoGradGuard no_grad;
    for (Tensor& p : model.parameters()) mul_(p, 3.0);
  }
  model_ema.update();
  model_ema.copy_to(eval_model);
  for (size_t i = 0; i < 2; ++i)
    REQUIRE(eval_model.parameters()[i].to_vector<float>() ==
            model.parameters()[i].to_vector<float>());

  // state_dict: a copy, restored bit for bit.
  StateDict saved = ema.state_dict();
  ema.update();
  REQUIRE(saved.at("shadow.0").to_vector<double>() == average);
  EMA ema2(golden_params(), {.decay = 0.5});
  ema2.load_state_dict(saved);
  REQUIRE(ema2.num_updates() == 3);
  REQUIRE(ema2.shadow()[0].to_vector<double>() == average);

  StateDict bad = saved;
  bad["shadow.0"] = zeros({3, 2}, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(
      ema2.load_state_dict(bad),
      Catch::Contains("key 'shadow.0' has shape [3, 2], but parameter 0 has shape [2, 3]"));
  bad = saved;
  bad["shadow.3"] = zeros({1}, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(ema2.load_state_dict(bad), Catch::Contains("unexpected key 'shadow.3'"));
}

// ===========================================================================
// state_dict: resuming is bit-identical
// ===========================================================================

TEST_CASE("optimizer state_dict resumes bit-identically", "[optim]") {
  for (const char* name : {"sgd_nesterov", "sgd_two_groups", "adam_amsgrad", "adamw_two_groups"}) {
    DYNAMIC_SECTION(name) {
      const auto& c = golden_case(name);
      // Uninterrupted run, with a schedule on top.
      std::vector<Tensor> full = golden_params();
      auto opt_full = make_optimizer(c, full);
      StepLR sched_full(*opt_full, 2, 0.7);
      for (int step = 0; step < golden::kNumSteps; ++step) {
        set_golden_grads(full, step);
        opt_full->step();
        sched_full.step();
      }

      // Interrupted at step 3 (before the parameter with a missing gradient).
      std::vector<Tensor> first = golden_params();
      auto opt_first = make_optimizer(c, first);
      StepLR sched_first(*opt_first, 2, 0.7);
      for (int step = 0; step < 3; ++step) {
        set_golden_grads(first, step);
        opt_first->step();
        sched_first.step();
      }
      StateDict opt_state = opt_first->state_dict();
      StateDict sched_state = sched_first.state_dict();
      std::vector<std::vector<double>> saved_params;
      for (const Tensor& p : first) saved_params.push_back(p.to_vector<double>());
      // The dict holds copies: stepping on does not change it.
      opt_first->step();
      REQUIRE(opt_state.at("step_count").item() == 3);

      std::vector<Tensor> resumed = golden_params();
      for (size_t i = 0; i < resumed.size(); ++i) {
        NoGradGuard no_grad;
        copy_(resumed[i], from_vector(saved_params[i], resumed[i].shape()));
      }
      // Built with different hyperparameters: the dict must restore them.
      golden::OptimCase other = c;
      other.lr = 0.5;
      for (auto& g : other.groups) g.lr = std::nullopt;
      auto opt_resumed = make_optimizer(other, resumed);
      StepLR sched_resumed(*opt_resumed, 2, 0.7);
      opt_resumed->load_state_dict(opt_state);
      sched_resumed.load_state_dict(sched_state);
      REQUIRE(opt_resumed->step_count() == 3);
      for (int step = 3; step < golden::kNumSteps; ++step) {
        set_golden_grads(resumed, step);
        opt_resumed->step();
        sched_resumed.step();
      }
      for (size_t i = 0; i < full.size(); ++i)
        REQUIRE(resumed[i].to_vector<double>() == full[i].to_vector<double>());
      REQUIRE(opt_resumed->lr(0) == opt_full->lr(0));
    }
  }
}

TEST_CASE("optimizer state_dict keys", "[optim]") {
  std::vector<Tensor> params = golden_params();
  Adam opt(params, {.lr = 0.01, .amsgrad = true});
  StateDict before = opt.state_dict();
  REQUIRE(before.count("state.0.exp_avg") == 0);  // no state before the first step
  REQUIRE(before.at("param_groups.0.lr").dtype() == DType::Float64);
  REQUIRE(before.at("param_groups.0.lr").dim() == 0);
  REQUIRE(before.at("param_groups.0.params").to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2});
  set_golden_grads(params, 0);
  opt.step();
  StateDict after = opt.state_dict();
  for (const char* key : {"step_count", "options.beta1", "options.beta2", "options.eps",
                          "options.amsgrad", "param_groups.0.weight_decay", "state.2.step",
                          "state.0.exp_avg", "state.0.exp_avg_sq", "state.0.max_exp_avg_sq"})
    REQUIRE(after.count(key) == 1);
  REQUIRE(after.at("state.2.step").dtype() == DType::Int64);
  REQUIRE(after.at("state.2.step").item() == 1);
  REQUIRE(after.at("state.0.exp_avg").shape() == Shape{2, 3});

  SGD sgd(golden_params(), {.lr = 0.1, .momentum = 0.9});
  REQUIRE(sgd.state_dict().count("options.momentum") == 1);
}

// ===========================================================================
// Errors
// ===========================================================================

TEST_CASE("optimizer argument errors", "[optim]") {
  std::vector<Tensor> params = golden_params();
  REQUIRE_THROWS_AS(SGD(params, {.lr = -0.1}), Error);
  REQUIRE_THROWS_WITH(SGD(params, {.lr = -0.1}),
                      Catch::Contains("SGD: invalid learning rate -0.1"));
  REQUIRE_THROWS_WITH(Adam({ParamGroup{.params = params, .lr = -1.0}}),
                      Catch::Contains("Adam: invalid learning rate -1 in group 0"));
  REQUIRE_THROWS_WITH(Adam(params, {.beta1 = 1.0}), Catch::Contains("Adam: invalid beta1 1"));
  REQUIRE_THROWS_WITH(Adam(params, {.beta2 = -0.5}), Catch::Contains("Adam: invalid beta2 -0.5"));
  REQUIRE_THROWS_WITH(AdamW(params, {.beta2 = 1.5}), Catch::Contains("AdamW: invalid beta2 1.5"));
  REQUIRE_THROWS_WITH(Adam(params, {.eps = -1e-8}), Catch::Contains("invalid eps"));
  REQUIRE_THROWS_WITH(SGD(params, {.weight_decay = -1}), Catch::Contains("invalid weight_decay"));
  REQUIRE_THROWS_WITH(SGD(params, {.momentum = 0, .nesterov = true}),
                      Catch::Contains("nesterov momentum requires momentum > 0"));

  Tensor frozen = zeros({4}, {.dtype = DType::Float64});
  REQUIRE_THROWS_AS(SGD({params[0], frozen}), Error);
  REQUIRE_THROWS_WITH(
      SGD({params[0], frozen}),
      Catch::Contains("SGD: parameter 1 (group 0) float64[4] does not require grad"));
  REQUIRE_THROWS_WITH(SGD({params[0], params[0]}), Catch::Contains("appears more than once"));
  REQUIRE_THROWS_WITH(SGD(std::vector<Tensor>{}), Catch::Contains("parameter group 0 is empty"));
  Tensor non_leaf = mul(params[0], 2.0);
  REQUIRE_THROWS_WITH(SGD({non_leaf}), Catch::Contains("is not a leaf"));
}

TEST_CASE("optimizer load_state_dict errors name the key and shapes", "[optim]") {
  std::vector<Tensor> params = golden_params();
  Adam opt(params, {.lr = 0.01});
  set_golden_grads(params, 0);
  opt.step();
  StateDict saved = opt.state_dict();

  SECTION("a different number of parameters") {
    std::vector<Tensor> fewer = golden_params();
    fewer.pop_back();
    Adam other(fewer, {.lr = 0.01});
    REQUIRE_THROWS_AS(other.load_state_dict(saved), Error);
    REQUIRE_THROWS_WITH(other.load_state_dict(saved),
                        Catch::Contains("key 'param_groups.0.params' has shape [3], but group 0 of "
                                        "this optimizer has 2 parameters"));
  }
  SECTION("a parameter of another shape") {
    std::vector<Tensor> reshaped = golden_params();
    reshaped[0] = detach(reshape(reshaped[0], {3, 2}));
    reshaped[0].set_requires_grad(true);
    Adam other(reshaped, {.lr = 0.01});
    REQUIRE_THROWS_WITH(other.load_state_dict(saved),
                        Catch::Contains("key 'state.0.exp_avg' has shape [2, 3], but parameter 0 "
                                        "has shape [3, 2]"));
  }
  SECTION("unexpected and missing keys; a failed load changes nothing") {
    StateDict bad = saved;
    bad["state.7.exp_avg"] = zeros({1}, {.dtype = DType::Float64});
    REQUIRE_THROWS_WITH(opt.load_state_dict(bad),
                        Catch::Contains("unexpected key 'state.7.exp_avg' with shape [1]: this "
                                        "optimizer has only 3 parameters"));
    bad = saved;
    bad["state.0.momentum_buffer"] = zeros({2, 3}, {.dtype = DType::Float64});
    REQUIRE_THROWS_WITH(opt.load_state_dict(bad),
                        Catch::Contains("unexpected key 'state.0.momentum_buffer'"));
    bad = saved;
    bad.erase("options.beta1");
    REQUIRE_THROWS_WITH(opt.load_state_dict(bad), Catch::Contains("no key 'options.beta1'"));
    REQUIRE(opt.step_count() == 1);
  }
  SECTION("an SGD dict into Adam") {
    SGD sgd(golden_params(), {.lr = 0.1, .momentum = 0.9});
    REQUIRE_THROWS_WITH(opt.load_state_dict(sgd.state_dict()),
                        Catch::Contains("Adam.load_state_dict"));
  }
}

// ===========================================================================
// MLP regression against PyTorch's loss curve
// ===========================================================================

namespace {

// Golden weight i (in PyTorch's named_parameters order) as a float leaf.
Tensor golden_weight(size_t i, DType dtype) {
  const auto& sizes = golden::kMlpSizes;
  const size_t layer = i / 2;
  Shape shape = i % 2 == 0 ? Shape{sizes[layer + 1], sizes[layer]} : Shape{sizes[layer + 1]};
  Tensor w = detach(to(from_vector(golden::kMlpWeights[i], shape), dtype));
  w.set_requires_grad(true);
  return w;
}

// Trains with full-batch MSE and Adam, returning the loss before each step
// and the final loss at the end.
std::vector<double> train_mlp(const std::function<Tensor(const Tensor&)>& model,
                              const std::vector<Tensor>& params, DType dtype) {
  const int64_t samples = static_cast<int64_t>(golden::kMlpY.size());
  Tensor x = to(from_vector(golden::kMlpX, Shape{samples, golden::kMlpSizes[0]}), dtype);
  Tensor y = to(from_vector(golden::kMlpY, Shape{samples, 1}), dtype);
  auto loss_fn = [&] { return mean(square(sub(model(x), y))); };

  Adam opt(params, {.lr = golden::kMlpLr});
  std::vector<double> losses;
  for (int step = 0; step < golden::kMlpSteps; ++step) {
    opt.zero_grad();
    Tensor loss = loss_fn();
    backward(loss);
    opt.step();
    losses.push_back(loss.item());
  }
  NoGradGuard no_grad;
  losses.push_back(loss_fn().item());
  return losses;
}

// The golden MLP written with tide ops on plain tensors.
std::vector<double> train_golden_mlp(DType dtype) {
  std::vector<Tensor> params;
  for (size_t i = 0; i < golden::kMlpWeights.size(); ++i) params.push_back(golden_weight(i, dtype));
  auto model = [&](const Tensor& x) {
    Tensor h = x;
    for (size_t layer = 0; layer * 2 < params.size(); ++layer) {
      h = linear(h, params[2 * layer], params[2 * layer + 1]);
      if (layer * 2 + 2 < params.size()) h = tanh(h);
    }
    return h;
  };
  return train_mlp(model, params, dtype);
}

// The same MLP built from nn layers, loading PyTorch's parameter names.
std::vector<double> train_golden_mlp_layers(DType dtype) {
  const auto& sizes = golden::kMlpSizes;
  auto net = std::make_shared<Sequential>();
  StateDict weights;
  for (size_t layer = 0; layer + 1 < sizes.size(); ++layer) {
    net->push_back(
        std::make_shared<Linear>(LinearOptions{.in = sizes[layer], .out = sizes[layer + 1]}));
    const size_t index = net->size() - 1;
    weights[fmt::format("{}.weight", index)] = detach(golden_weight(2 * layer, DType::Float64));
    weights[fmt::format("{}.bias", index)] = detach(golden_weight(2 * layer + 1, DType::Float64));
    if (layer + 2 < sizes.size()) net->push_back(std::make_shared<Tanh>());
  }
  net->to(dtype);
  net->load_state_dict(weights);
  return train_mlp([&](const Tensor& x) { return net->forward(x); }, net->parameters(), dtype);
}

void check_loss_curve(const std::vector<double>& losses, const std::vector<double>& expected,
                      double expected_final, double rtol) {
  REQUIRE(losses.size() == expected.size() + 1);
  for (size_t s = 0; s < expected.size(); ++s) {
    INFO("step " << s << ": " << losses[s] << " vs " << expected[s]);
    REQUIRE(std::abs(losses[s] - expected[s]) <= rtol * expected[s]);  // relative
  }
  INFO("final loss " << losses.back() << " vs " << expected_final);
  REQUIRE(std::abs(losses.back() - expected_final) <= rtol * expected_final);
  REQUIRE(losses.back() < 0.05 * losses.front());  // it did learn
}

}  // namespace

TEST_CASE("MLP regression with Adam reproduces PyTorch's loss curve", "[optim]") {
  SECTION("float64") {
    check_loss_curve(train_golden_mlp(DType::Float64), golden::kMlpLosses64,
                     golden::kMlpFinalLoss64, 1e-10);
  }
  SECTION("float32") {
    check_loss_curve(train_golden_mlp(DType::Float32), golden::kMlpLosses32,
                     golden::kMlpFinalLoss32, 1e-4);
  }
}

TEST_CASE("MLP regression built from nn layers reproduces PyTorch's loss curve", "[optim]") {
  // Sequential fuses each Linear with the Tanh after it; the curve must not change.
  SECTION("float64") {
    check_loss_curve(train_golden_mlp_layers(DType::Float64), golden::kMlpLosses64,
                     golden::kMlpFinalLoss64, 1e-10);
  }
  SECTION("float32") {
    check_loss_curve(train_golden_mlp_layers(DType::Float32), golden::kMlpLosses32,
                     golden::kMlpFinalLoss32, 1e-4);
  }
}

// ===========================================================================
// Device scalars (for CUDA Graph capture): the same updates with the
// step-dependent numbers read from 0-d tensors
// ===========================================================================

TEST_CASE("Adam and AdamW with device scalars match PyTorch trajectories", "[optim][graph]") {
  // The golden cases include parameters that skip steps (no gradient), so
  // some are at other step counts than their group, and two groups.
  for (const auto& c : golden::kCases) {
    if (std::string(c.optimizer) == "SGD") continue;
    SECTION(c.name) {
      std::vector<Tensor> params = golden_params();
      auto opt = make_optimizer(c, params);
      opt->set_device_scalars(true);
      REQUIRE(opt->device_scalars());
      for (int step = 0; step < golden::kNumSteps; ++step) {
        set_golden_grads(params, step);
        // The two halves a captured step uses.
        opt->prepare_step();
        opt->apply_step();
        REQUIRE(opt->step_count() == step + 1);
        for (size_t i = 0; i < params.size(); ++i)
          check_close(params[i].to_vector<double>(), c.history[step][i], 1e-12,
                      fmt::format("{} step {} param {}", c.name, step + 1, i));
      }
    }
  }
}

TEST_CASE("device scalars follow a learning-rate schedule like host scalars", "[optim][graph]") {
  // Warm-up then cosine annealing moves lr every step; both modes see the same
  // gradients. float64 agrees to rounding; float32 to a few ulps per step.
  for (DType dtype : {DType::Float64, DType::Float32}) {
    for (bool decoupled : {false, true}) {
      DYNAMIC_SECTION(dtype_name(dtype) << (decoupled ? " AdamW" : " Adam")) {
        auto make = [&](const std::vector<Tensor>& params) -> std::unique_ptr<Optimizer> {
          if (decoupled)
            return std::make_unique<AdamW>(params, AdamWOptions{.lr = 0.05, .weight_decay = 0.1});
          return std::make_unique<Adam>(params, AdamOptions{.lr = 0.05, .weight_decay = 0.1});
        };
        std::vector<Tensor> host_params = golden_params(dtype),
                            device_params = golden_params(dtype);
        auto host = make(host_params);
        auto device = make(device_params);
        device->set_device_scalars(true);
        LinearWarmup host_schedule(*host, 3, std::make_unique<CosineAnnealingLR>(*host, 9, 1e-3));
        LinearWarmup device_schedule(*device, 3,
                                     std::make_unique<CosineAnnealingLR>(*device, 9, 1e-3));
        Generator gen(7);
        for (int step = 0; step < 12; ++step) {
          for (size_t i = 0; i < host_params.size(); ++i) {
            Tensor g = randn(host_params[i].shape(), gen, {.dtype = dtype});
            host_params[i].set_grad(g);
            device_params[i].set_grad(clone(g));
          }
          REQUIRE(host->lr() == device->lr());
          host->step();
          device->step();  // prepare_step + apply_step
          host_schedule.step();
          device_schedule.step();
          const double rtol = dtype == DType::Float64 ? 1e-14 : 4e-7 * (step + 1);
          for (size_t i = 0; i < host_params.size(); ++i)
            check_close(device_params[i].to_vector<double>(), host_params[i].to_vector<double>(),
                        rtol, fmt::format("step {} param {}", step + 1, i));
        }
        // The saved state is the same (device scalars are not state).
        const StateDict a = host->state_dict(), b = device->state_dict();
        REQUIRE(a.size() == b.size());
        REQUIRE(a.at("state.0.step").item() == b.at("state.0.step").item());
      }
    }
  }
}

TEST_CASE("device-scalar mode errors name the optimizer and the missing call", "[optim][graph]") {
  std::vector<Tensor> params = golden_params();
  SGD sgd(params, {.lr = 0.1});
  REQUIRE_THROWS_WITH(sgd.set_device_scalars(true), Catch::Contains("SGD.set_device_scalars") &&
                                                        Catch::Contains("Adam and AdamW"));
  sgd.set_device_scalars(false);  // off is always fine
  Adam adam(params);
  REQUIRE_THROWS_WITH(adam.prepare_step(), Catch::Contains("Adam.prepare_step: device scalars "
                                                           "are off"));
  REQUIRE_THROWS_WITH(adam.apply_step(), Catch::Contains("Adam.apply_step: device scalars"));
  adam.set_device_scalars(true);
  set_golden_grads(params, 0);
  REQUIRE_THROWS_WITH(adam.apply_step(), Catch::Contains("call prepare_step() before"));
}

TEST_CASE("clip_grad_norm_device_ equals clip_grad_norm_ without reading the host",
          "[optim][graph]") {
  for (const auto& c : golden::kClipCases) {
    DYNAMIC_SECTION("max_norm " << c.max_norm << " norm_type " << c.norm_type) {
      std::vector<Tensor> params = golden_params();
      for (size_t i = 0; i < params.size(); ++i)
        params[i].set_grad(from_vector(golden::kClipGrads[i], params[i].shape()));
      const Tensor total = clip_grad_norm_device_(params, c.max_norm, c.norm_type);
      REQUIRE(total.dtype() == DType::Float64);
      REQUIRE(total.dim() == 0);
      REQUIRE(close(total.item(), c.total_norm, 1e-14));
      for (size_t i = 0; i < params.size(); ++i)
        check_close(params[i].grad().to_vector<double>(), c.clipped[i], 1e-14, "clipped grad");
    }
  }
  SECTION("no gradients, NaN norm, errors") {
    std::vector<Tensor> params = golden_params();
    REQUIRE_FALSE(clip_grad_norm_device_(params, 1.0).defined());
    params[1].set_grad(from_vector(std::vector<double>{NAN, 1, 2}, Shape{3}));
    clip_grad_norm_device_(params, 1.0);  // like the host path: a NaN norm scales nothing
    std::vector<double> g = params[1].grad().to_vector<double>();
    REQUIRE(std::isnan(g[0]));
    REQUIRE(g[1] == 1.0);
    REQUIRE(g[2] == 2.0);
    REQUIRE_THROWS_WITH(clip_grad_norm_device_(params, -1.0),
                        Catch::Contains("clip_grad_norm_device_: max_norm"));
  }
}

TEST_CASE("EMA device-scalar mode errors name the missing call", "[optim][graph]") {
  EMA ema(golden_params());
  REQUIRE_THROWS_WITH(ema.prepare_update(), Catch::Contains("EMA.prepare_update: device "
                                                            "scalars are off"));
  ema.set_device_scalars(true);
  REQUIRE_THROWS_WITH(ema.apply_update(), Catch::Contains("prepare_update() first"));
}
