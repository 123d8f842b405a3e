// Learning-rate schedules (see lr_scheduler.h).
#include "nn/lr_scheduler.h"

#include <cmath>
#include <numbers>

namespace tide::nn {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (size_t g = 0; g < optimizer.param_groups().size(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

void LRScheduler::apply() {
  for (size_t g = 0; g < base_lrs_.size(); ++g)
    optimizer_.set_lr(lr_at(last_step_, base_lrs_[g]), g);
}

void LRScheduler::step() {
  ++last_step_;
  apply();
}

std::vector<double> LRScheduler::last_lr() const {
  std::vector<double> out;
  for (size_t g = 0; g < base_lrs_.size(); ++g) out.push_back(optimizer_.lr(g));
  return out;
}

StateDict LRScheduler::state_dict() const {
  StateDict out;
  out["last_step"] = scalar(static_cast<double>(last_step_), {.dtype = DType::Int64});
  for (size_t g = 0; g < base_lrs_.size(); ++g)
    out[fmt::format("base_lrs.{}", g)] = scalar(base_lrs_[g], {.dtype = DType::Float64});
  return out;
}

void LRScheduler::load_state_dict(const StateDict& state) {
  const std::string who = type_name() + ".load_state_dict";
  for (const auto& [key, value] : state) {
    bool known = key == "last_step";
    for (size_t g = 0; g < base_lrs_.size() && !known; ++g)
      known = key == fmt::format("base_lrs.{}", g);
    TIDE_CHECK(known, "{}: unexpected key '{}' (shape {}; the optimizer has {} groups)", who, key,
               value.shape(), base_lrs_.size());
    TIDE_CHECK(value.defined() && value.numel() == 1,
               "{}: key '{}' has shape {}, expected a scalar", who, key,
               value.defined() ? value.shape() : Shape{0});
  }
  std::vector<double> base_lrs;
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    auto it = state.find(fmt::format("base_lrs.{}", g));
    TIDE_CHECK(it != state.end(), "{}: the state dict has no key 'base_lrs.{}'", who, g);
    base_lrs.push_back(it->second.item());
  }
  auto step = state.find("last_step");
  TIDE_CHECK(step != state.end(), "{}: the state dict has no key 'last_step'", who);
  TIDE_CHECK(step->second.item() >= 0, "{}: key 'last_step' is negative ({})", who,
             step->second.item());
  base_lrs_ = std::move(base_lrs);
  last_step_ = static_cast<int64_t>(step->second.item());
  apply();
}

// --- schedules ---------------------------------------------------------------

ConstantLR::ConstantLR(Optimizer& optimizer) : LRScheduler(optimizer) {
  apply();
}

double ConstantLR::lr_at(int64_t, double base_lr) const {
  return base_lr;
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  TIDE_CHECK(step_size > 0, "StepLR: step_size must be positive, got {}", step_size);
  TIDE_CHECK(gamma >= 0, "StepLR: gamma must be >= 0, got {}", gamma);
  apply();
}

double StepLR::lr_at(int64_t step, double base_lr) const {
  return base_lr * std::pow(gamma_, static_cast<double>(step / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  TIDE_CHECK(t_max > 0, "CosineAnnealingLR: T_max must be positive, got {}", t_max);
  TIDE_CHECK(eta_min >= 0, "CosineAnnealingLR: eta_min must be >= 0, got {}", eta_min);
  apply();
}

double CosineAnnealingLR::lr_at(int64_t step, double base_lr) const {
  const double phase = std::numbers::pi * static_cast<double>(step) / static_cast<double>(t_max_);
  return eta_min_ + (base_lr - eta_min_) * (1 + std::cos(phase)) / 2;
}

LinearWarmup::LinearWarmup(Optimizer& optimizer, int64_t warmup_steps,
                           std::unique_ptr<LRScheduler> after, double start_factor)
    : LRScheduler(optimizer),
      warmup_steps_(warmup_steps),
      after_(std::move(after)),
      start_factor_(start_factor) {
  TIDE_CHECK(warmup_steps > 0, "LinearWarmup: warmup_steps must be positive, got {}", warmup_steps);
  TIDE_CHECK(start_factor >= 0 && start_factor <= 1,
             "LinearWarmup: start_factor must be in [0, 1], got {}", start_factor);
  TIDE_CHECK(!after_ || &after_->optimizer() == &optimizer,
             "LinearWarmup: the following {} schedule drives a different optimizer",
             after_ ? after_->type_name() : "");
  // `after` recorded the base lrs before this one (which sees the same lrs,
  // as `after` sets its step-0 lr, i.e. the base lr for every schedule here).
  if (after_) base_lrs_ = after_->base_lrs();
  apply();
}

double LinearWarmup::lr_at(int64_t step, double base_lr) const {
  if (step < warmup_steps_) {
    const double fraction = static_cast<double>(step) / static_cast<double>(warmup_steps_);
    return base_lr * (start_factor_ + (1 - start_factor_) * fraction);
  }
  return after_ ? after_->lr_at(step - warmup_steps_, base_lr) : base_lr;
}

}  // namespace tide::nn
