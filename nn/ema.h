// EMA: an exponential moving average of parameters, for evaluation.
//
// After each optimizer step, update() moves every shadow value towards its
// parameter: shadow += (1 - d) * (param - shadow), with d = decay, or with
// warm-up d = min(decay, (1 + n) / (10 + n)) where n counts updates including
// this one (the torch_ema / timm convention). Evaluate with the averaged
// weights either by swapping them into the model (apply_to, then restore) or by
// copying them into a separate evaluation model (copy_to).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/module.h"

namespace tide::nn {

struct EMAOptions {
  double decay = 0.999;
  bool warmup = false;
};

class EMA {
 public:
  // Tracks these parameters; the shadow starts as a copy of their values.
  EMA(std::vector<Tensor> params, EMAOptions options = {});
  EMA(const Module& model, EMAOptions options = {});

  void update();

  // --- device scalars (for CUDA Graph capture; see Optimizer::set_device_scalars) ---
  // With device scalars on, update() runs as two halves: prepare_update()
  // (host: advances the count and fills a 0-d tensor per dtype and device
  // with this update's 1 - decay, no synchronization) and apply_update() (the
  // kernels only, reading that tensor, so it can be captured and replayed).
  // Same numbers as the host path up to float rounding.
  void set_device_scalars(bool on) { device_scalars_ = on; }
  bool device_scalars() const { return device_scalars_; }
  void prepare_update();
  void apply_update();

  // The decay the next update() will use.
  double next_decay() const;
  int64_t num_updates() const { return num_updates_; }
  const std::vector<Tensor>& shadow() const { return shadow_; }

  // Writes the averages into `params` (same count and shapes as tracked).
  void copy_to(const std::vector<Tensor>& params) const;
  void copy_to(Module& model) const;
  // Swaps the averages into the tracked parameters, keeping their current
  // values until restore() puts them back.
  void apply_to();
  void restore();

  // "shadow.<i>" (copies), "num_updates" (int64 0-d), "decay" (float64 0-d).
  // Loading checks the count and shapes, naming the key.
  nn::StateDict state_dict() const;
  void load_state_dict(const nn::StateDict& state);

 private:
  std::vector<Tensor> params_;
  std::vector<Tensor> shadow_;
  std::vector<Tensor> backup_;  // filled by apply_to, emptied by restore
  EMAOptions options_;
  int64_t num_updates_ = 0;
  bool device_scalars_ = false;
  // Device scalars: 1 - decay as 0-d tensors, one per distinct dtype and
  // device of the shadows (scalar_of_[i] indexes it for shadow i).
  std::vector<Tensor> one_minus_decay_;
  std::vector<size_t> scalar_of_;
};

}  // namespace tide::nn
