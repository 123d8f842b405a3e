// Exponential moving average of parameters (see ema.h).
#include "nn/ema.h"

#include <algorithm>

#include "tensor/kernels.h"

namespace tide::nn {

namespace {

void check_same(const std::vector<Tensor>& shadow, const std::vector<Tensor>& params,
                const char* op) {
  TIDE_CHECK(params.size() == shadow.size(), "{}: got {} parameters, but the EMA tracks {}", op,
             params.size(), shadow.size());
  for (size_t i = 0; i < params.size(); ++i)
    TIDE_CHECK(params[i].defined() && params[i].shape() == shadow[i].shape(),
               "{}: parameter {} is {}, but the EMA's shadow {} is {}", op, i,
               params[i].defined() ? params[i].describe() : "undefined", i, shadow[i].describe());
}

}  // namespace

EMA::EMA(std::vector<Tensor> params, EMAOptions options)
    : params_(std::move(params)), options_(options) {
  TIDE_CHECK(options.decay >= 0 && options.decay <= 1, "EMA: decay must be in [0, 1], got {}",
             options.decay);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    TIDE_CHECK(p.defined() && p.is_floating_point(),
               "EMA: parameter {} must be a floating-point tensor, got {}", i,
               p.defined() ? p.describe() : "undefined");
    shadow_.push_back(kernels::clone(p));
  }
}

EMA::EMA(const Module& model, EMAOptions options) : EMA(model.parameters(), options) {}

double EMA::next_decay() const {
  if (!options_.warmup) return options_.decay;
  const double n = static_cast<double>(num_updates_ + 1);
  return std::min(options_.decay, (1 + n) / (10 + n));
}

void EMA::update() {
  if (device_scalars_) {
    prepare_update();
    apply_update();
    return;
  }
  TIDE_CHECK(backup_.empty(),
             "EMA.update: the averages are applied to the parameters (apply_to); call restore() "
             "first");
  NoGradGuard no_grad;
  const double one_minus_decay = 1 - next_decay();
  ++num_updates_;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    Tensor& s = shadow_[i];
    const Tensor& p = params_[i];
    if (p.device().is_cpu() && p.is_contiguous() && p.dtype() == s.dtype()) {
      // shadow += (1 - d) * (param - shadow), in one pass.
      dispatch_dtype(s.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_floating_point_v<T>) {
          T* sd = s.data_ptr<T>();
          const T* pd = p.data_ptr<T>();
          const T w = static_cast<T>(one_minus_decay);
          for (int64_t k = 0, n = s.numel(); k < n; ++k) sd[k] = sd[k] + w * (pd[k] - sd[k]);
        }
      });
      s.storage()->bump_version();
    } else {
      add_(s, sub(p, s), one_minus_decay);
    }
  }
}

void EMA::prepare_update() {
  TIDE_CHECK(device_scalars_,
             "EMA.prepare_update: device scalars are off (call set_device_scalars(true) first)");
  TIDE_CHECK(backup_.empty(),
             "EMA.prepare_update: the averages are applied to the parameters (apply_to); call "
             "restore() first");
  if (scalar_of_.size() != shadow_.size()) {  // first use: one scalar per dtype and device
    one_minus_decay_.clear();
    scalar_of_.clear();
    for (const Tensor& s : shadow_) {
      size_t k = 0;
      while (k < one_minus_decay_.size() && (one_minus_decay_[k].dtype() != s.dtype() ||
                                             one_minus_decay_[k].device() != s.device()))
        ++k;
      if (k == one_minus_decay_.size())
        one_minus_decay_.push_back(empty({}, {.dtype = s.dtype(), .device = s.device()}));
      scalar_of_.push_back(k);
    }
  }
  const double one_minus_decay = 1 - next_decay();
  ++num_updates_;
  for (const Tensor& w : one_minus_decay_) kernels::fill_(w, one_minus_decay);
}

void EMA::apply_update() {
  TIDE_CHECK(device_scalars_ && scalar_of_.size() == shadow_.size(),
             "EMA.apply_update: call set_device_scalars(true) and prepare_update() first");
  NoGradGuard no_grad;
  // shadow += (1 - d) * (param - shadow), as the host path's add_.
  for (size_t i = 0; i < shadow_.size(); ++i) {
    const Tensor& s = shadow_[i];
    add_(s, mul(sub(params_[i], s), one_minus_decay_[scalar_of_[i]]));
  }
}

void EMA::copy_to(const std::vector<Tensor>& params) const {
  check_same(shadow_, params, "EMA.copy_to");
  NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) copy_(params[i], shadow_[i]);
}

void EMA::copy_to(Module& model) const {
  copy_to(model.parameters());
}

void EMA::apply_to() {
  TIDE_CHECK(backup_.empty(), "EMA.apply_to: the averages are already applied; call restore()");
  for (const Tensor& p : params_) backup_.push_back(kernels::clone(p));
  copy_to(params_);
}

void EMA::restore() {
  TIDE_CHECK(!backup_.empty() || params_.empty(),
             "EMA.restore: nothing to restore (call apply_to first)");
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) copy_(params_[i], backup_[i]);
  backup_.clear();
}

StateDict EMA::state_dict() const {
  StateDict out;
  out["num_updates"] = scalar(static_cast<double>(num_updates_), {.dtype = DType::Int64});
  out["decay"] = scalar(options_.decay, {.dtype = DType::Float64});
  for (size_t i = 0; i < shadow_.size(); ++i)
    out[fmt::format("shadow.{}", i)] = kernels::clone(shadow_[i]);
  return out;
}

void EMA::load_state_dict(const StateDict& state) {
  for (const char* key : {"num_updates", "decay"}) {
    auto it = state.find(key);
    TIDE_CHECK(it != state.end(), "EMA.load_state_dict: the state dict has no key '{}'", key);
    TIDE_CHECK(it->second.defined() && it->second.numel() == 1,
               "EMA.load_state_dict: key '{}' must be a scalar", key);
  }
  for (const auto& [key, value] : state) {
    if (key == "num_updates" || key == "decay") continue;
    bool known = false;
    for (size_t i = 0; i < shadow_.size() && !known; ++i)
      known = key == fmt::format("shadow.{}", i);
    TIDE_CHECK(known,
               "EMA.load_state_dict: unexpected key '{}' with shape {} (the EMA tracks {} "
               "parameters)",
               key, value.shape(), shadow_.size());
  }
  std::vector<Tensor> shadow;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    const std::string key = fmt::format("shadow.{}", i);
    auto it = state.find(key);
    TIDE_CHECK(it != state.end(), "EMA.load_state_dict: the state dict has no key '{}'", key);
    TIDE_CHECK(it->second.shape() == shadow_[i].shape(),
               "EMA.load_state_dict: key '{}' has shape {}, but parameter {} has shape {}", key,
               it->second.shape(), i, shadow_[i].shape());
    Tensor value =
        kernels::to_device(kernels::to_dtype(it->second, shadow_[i].dtype()), shadow_[i].device());
    shadow.push_back(kernels::clone(value));
  }
  shadow_ = std::move(shadow);
  num_updates_ = static_cast<int64_t>(state.at("num_updates").item());
  options_.decay = state.at("decay").item();
}

}  // namespace tide::nn
