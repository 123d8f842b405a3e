// Learning-rate schedules: constant, step decay, cosine annealing, and a linear
// warm-up that can precede any of them.
//
// A scheduler drives one optimizer. It records each group's learning rate when
// it is built (the base lr), and every step() sets each group's lr to
// lr_at(step, base_lr), a closed form of the step count, so a schedule can be
// restored from its step alone. Call it after optimizer.step(), like PyTorch:
//   for (...) { loss.backward(); opt.step(); sched.step(); }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/optimizer.h"

namespace tide::nn {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one step and sets every group's learning rate.
  void step();
  // Steps taken so far (0 right after construction).
  int64_t last_step() const { return last_step_; }
  // The learning rates last set, one per group.
  std::vector<double> last_lr() const;
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  Optimizer& optimizer() const { return optimizer_; }

  // The learning rate after `step` steps for a group whose base lr is base_lr.
  virtual double lr_at(int64_t step, double base_lr) const = 0;
  virtual std::string type_name() const = 0;

  // "last_step" (int64 0-d) and "base_lrs.<g>" (float64 0-d). Loading also sets
  // the optimizer's learning rates for the restored step.
  nn::StateDict state_dict() const;
  void load_state_dict(const nn::StateDict& state);

 protected:
  // Records the base lrs; subclasses call apply() at the end of their
  // constructor, which sets the step-0 learning rates (like PyTorch).
  explicit LRScheduler(Optimizer& optimizer);
  void apply();

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_step_ = 0;
};

// lr = base_lr.
class ConstantLR : public LRScheduler {
 public:
  explicit ConstantLR(Optimizer& optimizer);
  double lr_at(int64_t step, double base_lr) const override;
  std::string type_name() const override { return "ConstantLR"; }
};

// PyTorch's StepLR: lr = base_lr * gamma^floor(step / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t step, double base_lr) const override;
  std::string type_name() const override { return "StepLR"; }

 private:
  int64_t step_size_;
  double gamma_;
};

// PyTorch's CosineAnnealingLR, closed form:
//   lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2
// (beyond T_max the cosine continues, as PyTorch's closed form does).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  double lr_at(int64_t step, double base_lr) const override;
  std::string type_name() const override { return "CosineAnnealingLR"; }

 private:
  int64_t t_max_;
  double eta_min_;
};

// Linear warm-up for warmup_steps steps, then `after` (or a constant lr):
//   step <  W: lr = base_lr * (start_factor + (1 - start_factor) * step / W)
//   step >= W: lr = after.lr_at(step - W, base_lr)
// (PyTorch's LinearLR followed by SequentialLR with milestone W.) `after` is
// only used for its formula; build it on the same optimizer before this one.
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, int64_t warmup_steps,
               std::unique_ptr<LRScheduler> after = nullptr, double start_factor = 1.0 / 3.0);
  double lr_at(int64_t step, double base_lr) const override;
  std::string type_name() const override { return "LinearWarmup"; }

 private:
  int64_t warmup_steps_;
  std::unique_ptr<LRScheduler> after_;
  double start_factor_;
};

}  // namespace tide::nn
