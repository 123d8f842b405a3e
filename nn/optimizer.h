// Optimizers: SGD, Adam and AdamW with PyTorch's exact update formulas, and
// gradient clipping by global norm.
//
// An optimizer holds parameter groups (each with its own learning rate and
// weight decay) and per-parameter state (momentum buffers, Adam moments).
// step() updates every parameter that has a gradient in place, under a
// NoGradGuard, so references to the parameters (a model's, a checkpoint's)
// stay valid. Parameters are numbered 0, 1, 2, ... in group order; that index
// names their state in state_dict().
//
// On the CPU, float32/float64 parameters with contiguous gradients take a fused
// loop (one pass reads the gradient and updates the moments and the parameter);
// anything else (other devices, strided gradients) takes a path written with
// tide ops that works on any backend.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace tide::nn {

// A set of parameters sharing hyperparameters. Unset options take the
// optimizer's defaults when the optimizer is built; afterwards both hold values
// (schedulers change `lr`).
struct ParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (parameters without one
  // are skipped, like PyTorch). Increments step_count().
  void step();
  // Clears every parameter's gradient (PyTorch's set_to_none=True).
  void zero_grad();
  // The number of step() calls so far (restored by load_state_dict).
  int64_t step_count() const { return step_count_; }

  // --- device scalars (for CUDA Graph capture) ---
  // A captured update replays its kernels with the arguments they had at
  // capture time, so every number that changes from step to step (Adam's
  // learning rate, which a schedule moves, and its bias corrections) must be
  // read from device memory instead. With device scalars on, step() runs in
  // two halves:
  //   prepare_step(): host work only. Advances the step counters and writes
  //     this step's scalars into 0-d tensors on the parameters' device with
  //     fills (one small kernel launch each, no host synchronization).
  //   apply_step(): device work only. The update kernels, reading those
  //     tensors; it changes no host state, so it can be captured once and
  //     replayed after each prepare_step().
  // step() runs both. The update is written with tide ops (on the CPU too, so
  // the CPU tests check what a GPU runs) and gives the host-scalar path's
  // numbers up to float rounding. Options other than lr and weight_decay
  // (betas, eps, amsgrad) and whether weight_decay is 0 are fixed in a
  // captured update. Adam and AdamW have this mode; SGD throws.
  void set_device_scalars(bool on);
  bool device_scalars() const { return device_scalars_; }
  void prepare_step();
  void apply_step();

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // The learning rate of group g (what schedulers read and write).
  double lr(size_t group = 0) const;
  void set_lr(double lr, size_t group = 0);
  int64_t num_params() const;  // over all groups

  // Everything needed to resume bit-identically, as copies (later steps do not
  // change a saved dict). Keys:
  //   "step_count"                       int64 0-d
  //   "param_groups.<g>.params"          int64 [n]: the parameter indices
  //   "param_groups.<g>.lr"              float64 0-d (and .weight_decay)
  //   "options.<name>"                   float64 0-d: momentum, beta1, eps, ...
  //   "state.<i>.<buffer>"               per-parameter buffers, e.g.
  //                                      momentum_buffer, exp_avg, exp_avg_sq,
  //                                      max_exp_avg_sq, and "step" (int64 0-d)
  nn::StateDict state_dict() const;
  // Restores a dict made by state_dict() of an optimizer of the same type over
  // parameters of the same shapes. Throws tide::Error naming the key (and the
  // shapes) on a missing, unexpected or mismatched entry.
  void load_state_dict(const nn::StateDict& state);

  virtual std::string type_name() const = 0;

 protected:
  // default_lr / default_weight_decay fill the groups' unset options; `name`
  // (the type name) prefixes the constructor's error messages.
  Optimizer(const char* name, std::vector<ParamGroup> groups, double default_lr,
            double default_weight_decay);

  // Updates one parameter (index i in group order) from its gradient.
  // Called under a NoGradGuard, only for parameters with a gradient.
  virtual void update(const ParamGroup& group, int64_t index, const Tensor& param,
                      const Tensor& grad) = 0;
  // The optimizer-wide options, saved as "options.<name>" (all as doubles;
  // booleans as 0/1).
  virtual std::vector<std::pair<std::string, double>> named_options() const = 0;
  virtual void set_option(const std::string& name, double value) = 0;
  // The names of the per-parameter buffers this optimizer may create.
  virtual std::vector<std::string> buffer_names() const = 0;
  // Device-scalar mode (see set_device_scalars): whether this optimizer has
  // it, and the hook that writes the scalars of the step prepare_step() began.
  virtual bool supports_device_scalars() const { return false; }
  virtual void refresh_device_scalars() {}
  // The index of `group` in param_groups() (update() receives the group).
  size_t group_index(const ParamGroup& group) const;

  // Per-parameter state: named buffers (created lazily on the first update)
  // and the parameter's own step counter.
  struct ParamState {
    std::map<std::string, Tensor> buffers;
    int64_t step = 0;
  };
  std::vector<ParamState> state_;  // indexed by parameter index

 private:
  // The gradient of parameter `index`, checked against the parameter.
  Tensor checked_grad(int64_t index, const Tensor& param) const;

  std::vector<ParamGroup> groups_;
  int64_t step_count_ = 0;
  bool device_scalars_ = false;
};

// --- SGD -------------------------------------------------------------------
// PyTorch's torch.optim.SGD:
//   g = grad + weight_decay * p
//   if momentum: buf = g on the first step, else momentum * buf + (1 - dampening) * g
//                g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options = {});
  SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  std::string type_name() const override { return "SGD"; }
  const SGDOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, int64_t index, const Tensor& param,
              const Tensor& grad) override;
  std::vector<std::pair<std::string, double>> named_options() const override;
  void set_option(const std::string& name, double value) override;
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }

 private:
  SGDOptions options_;
};

// --- Adam and AdamW ----------------------------------------------------------
// PyTorch's torch.optim.Adam / AdamW, with t the parameter's step count:
//   Adam:  g = grad + weight_decay * p          (L2 penalty in the gradient)
//   AdamW: p *= 1 - lr * weight_decay           (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   amsgrad: vmax = max(vmax, v), and vmax replaces v below
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  std::string type_name() const override { return "Adam"; }
  const AdamOptions& options() const { return options_; }

 protected:
  // decoupled = true gives AdamW.
  Adam(std::vector<ParamGroup> groups, AdamOptions options, bool decoupled);
  void update(const ParamGroup& group, int64_t index, const Tensor& param,
              const Tensor& grad) override;
  std::vector<std::pair<std::string, double>> named_options() const override;
  void set_option(const std::string& name, double value) override;
  std::vector<std::string> buffer_names() const override {
    return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  }
  bool supports_device_scalars() const override { return true; }
  void refresh_device_scalars() override;

 private:
  // Step-dependent scalars as 0-d tensors of one dtype on one device. The
  // parameters of a group that share a step count (all of them, unless some
  // skipped steps without a gradient) share one set per dtype and device; a
  // parameter at another step count gets its own.
  struct DeviceScalars {
    DType dtype;
    Device device;
    Tensor neg_step_size;    // -lr / (1 - beta1^t)
    Tensor bias2_sqrt;       // sqrt(1 - beta2^t)
    Tensor decay;            // AdamW: 1 - lr * weight_decay
    Tensor weight_decay;     // Adam: the L2 coefficient
    int64_t filled_at = -1;  // the step_count() whose values it holds
  };
  DeviceScalars& scalars_for(size_t group, int64_t index, const Tensor& param, bool create);
  void fill_scalars(DeviceScalars& s, double lr, double weight_decay, int64_t t);
  // The update with the scalars read from the device.
  void update_with_device_scalars(const DeviceScalars& s, double weight_decay, const Tensor& param,
                                  const Tensor& grad, Tensor& m, Tensor& v, Tensor& vmax) const;

  AdamOptions options_;
  bool decoupled_;
  std::vector<std::vector<DeviceScalars>> shared_scalars_;  // by group
  std::vector<int64_t> group_step_;                         // the shared sets' step count
  std::map<int64_t, DeviceScalars> own_scalars_;            // by parameter index
};

// AdamW's defaults differ from Adam's only in weight_decay (0.01, as PyTorch).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  std::string type_name() const override { return "AdamW"; }
};

// --- gradient clipping -------------------------------------------------------
// PyTorch's clip_grad_norm_: the norm of all gradients taken together (as if
// concatenated); when it exceeds max_norm every gradient is scaled in place by
// max_norm / (total + 1e-6). Returns the total norm (before clipping).
// Parameters without a gradient are ignored. norm_type may be inf.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

// The same clipping without reading anything on the host (for CUDA Graph
// capture): the total norm and the scale min(1, max_norm / (total + 1e-6))
// stay on the gradients' device, and every gradient is multiplied by the
// scale. Returns the total norm as a float64 0-d tensor there (undefined when
// no parameter has a gradient). Equal to clip_grad_norm_ up to float rounding.
Tensor clip_grad_norm_device_(const std::vector<Tensor>& params, double max_norm,
                              double norm_type = 2.0);

}  // namespace tide::nn
