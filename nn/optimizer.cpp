// Optimizers (see optimizer.h). Each update has two implementations with the
// same arithmetic, in the same order as PyTorch's single-tensor code (as of
// torch 1.13, which made the golden values; later versions compute Adam's mean
// with lerp, equal up to rounding):
//   - a fused CPU loop over raw float32/float64 pointers: one pass reads the
//     gradient once and writes the moments and the parameter, instead of the
//     ~10 full passes (and temporaries) that a sequence of tensor ops makes;
//   - a generic path written with tide ops, used for other devices and for
//     strided parameters or gradients.
#include "nn/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tensor/kernels.h"

namespace tide::nn {

namespace {

Tensor scalar_f64(double value) {
  return scalar(value, {.dtype = DType::Float64});
}
Tensor scalar_i64(int64_t value) {
  return scalar(static_cast<double>(value), {.dtype = DType::Int64});
}

// A private, contiguous copy of `value` in `like`'s dtype and device.
Tensor owned_copy(const Tensor& value, const Tensor& like) {
  Tensor converted = kernels::to_device(kernels::to_dtype(value, like.dtype()), like.device());
  return kernels::clone(converted);
}

// The fused loops run on contiguous CPU float32/float64 data only.
bool fused_ok(const Tensor& param, const Tensor& grad) {
  return param.device().is_cpu() && grad.device().is_cpu() && param.is_contiguous() &&
         grad.is_contiguous() && param.dtype() == grad.dtype() &&
         (param.dtype() == DType::Float32 || param.dtype() == DType::Float64);
}

// Calls fn(std::true_type{}) or fn(std::false_type{}): turns a runtime option
// into a compile-time one, so each combination gets its own branch-free loop.
template <typename Fn>
void with_flag(bool flag, Fn&& fn) {
  if (flag)
    fn(std::true_type{});
  else
    fn(std::false_type{});
}

const Tensor& lookup(const StateDict& state, const std::string& key, const std::string& who) {
  auto it = state.find(key);
  TIDE_CHECK(it != state.end(), "{}: the state dict has no key '{}'", who, key);
  TIDE_CHECK(it->second.defined(), "{}: key '{}' holds an undefined tensor", who, key);
  return it->second;
}

}  // namespace

// ===========================================================================
// Optimizer
// ===========================================================================

Optimizer::Optimizer(const char* name, std::vector<ParamGroup> groups, double default_lr,
                     double default_weight_decay)
    : groups_(std::move(groups)) {
  // Subclasses validate their own options; this checks what all share.
  TIDE_CHECK(!groups_.empty(), "{}: got no parameter groups", name);
  std::set<const TensorImpl*> seen;
  int64_t index = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& group = groups_[g];
    if (!group.lr) group.lr = default_lr;
    if (!group.weight_decay) group.weight_decay = default_weight_decay;
    TIDE_CHECK(*group.lr >= 0, "{}: invalid learning rate {} in group {} (must be >= 0)", name,
               *group.lr, g);
    TIDE_CHECK(*group.weight_decay >= 0, "{}: invalid weight_decay {} in group {} (must be >= 0)",
               name, *group.weight_decay, g);
    TIDE_CHECK(!group.params.empty(), "{}: parameter group {} is empty", name, g);
    for (const Tensor& p : group.params) {
      TIDE_CHECK(p.defined(), "{}: parameter {} (group {}) is an undefined tensor", name, index, g);
      TIDE_CHECK(p.is_floating_point(),
                 "{}: parameter {} (group {}) is {}, but only floating-point tensors can "
                 "be optimized",
                 name, index, g, p.describe());
      TIDE_CHECK(p.requires_grad(),
                 "{}: parameter {} (group {}) {} does not require grad, so it would never "
                 "get a gradient",
                 name, index, g, p.describe());
      TIDE_CHECK(p.is_leaf(), "{}: parameter {} (group {}) {} is not a leaf tensor", name, index, g,
                 p.describe());
      TIDE_CHECK(seen.insert(p.impl()).second,
                 "{}: parameter {} (group {}) {} appears more than once", name, index, g,
                 p.describe());
      ++index;
    }
  }
  state_.resize(index);
}

Tensor Optimizer::checked_grad(int64_t index, const Tensor& param) const {
  Tensor grad = param.grad();
  if (grad.defined()) {
    TIDE_CHECK(grad.shape() == param.shape() && grad.device() == param.device(),
               "{}.step: parameter {} is {} but its gradient is {}", type_name(), index,
               param.describe(), grad.describe());
  }
  return grad;
}

void Optimizer::step() {
  if (device_scalars_) {
    prepare_step();
    apply_step();
    return;
  }
  NoGradGuard no_grad;  // updates are in place on leaves that require grad
  int64_t index = 0;
  for (const ParamGroup& group : groups_) {
    for (const Tensor& param : group.params) {
      Tensor grad = checked_grad(index, param);
      if (grad.defined()) {
        ++state_[index].step;
        update(group, index, param, grad);
      }
      ++index;
    }
  }
  ++step_count_;
}

void Optimizer::set_device_scalars(bool on) {
  TIDE_CHECK(!on || supports_device_scalars(),
             "{}.set_device_scalars: {} has no device-scalar mode (Adam and AdamW have it)",
             type_name(), type_name());
  device_scalars_ = on;
}

// The host half of a device-scalar step: what step() does besides the
// kernels (the counters), then the step's scalars.
void Optimizer::prepare_step() {
  TIDE_CHECK(device_scalars_,
             "{}.prepare_step: device scalars are off (call set_device_scalars(true) first)",
             type_name());
  int64_t index = 0;
  for (const ParamGroup& group : groups_) {
    for (const Tensor& param : group.params) {
      if (checked_grad(index, param).defined()) ++state_[index].step;
      ++index;
    }
  }
  ++step_count_;
  refresh_device_scalars();
}

// The device half: only kernel launches (and, on the first step, the lazily
// created state buffers), so it can be captured.
void Optimizer::apply_step() {
  TIDE_CHECK(device_scalars_,
             "{}.apply_step: device scalars are off (call set_device_scalars(true) first)",
             type_name());
  NoGradGuard no_grad;
  int64_t index = 0;
  for (const ParamGroup& group : groups_) {
    for (const Tensor& param : group.params) {
      Tensor grad = checked_grad(index, param);
      if (grad.defined()) update(group, index, param, grad);
      ++index;
    }
  }
}

size_t Optimizer::group_index(const ParamGroup& group) const {
  const auto index = &group - groups_.data();
  TIDE_CHECK(index >= 0 && static_cast<size_t>(index) < groups_.size(),
             "{}: internal error, the group is not one of param_groups()", type_name());
  return static_cast<size_t>(index);
}

void Optimizer::zero_grad() {
  for (ParamGroup& group : groups_)
    for (Tensor& p : group.params) p.set_grad(Tensor());
}

double Optimizer::lr(size_t group) const {
  TIDE_CHECK(group < groups_.size(), "{}.lr: group {} does not exist (there are {})", type_name(),
             group, groups_.size());
  return *groups_[group].lr;
}

void Optimizer::set_lr(double lr, size_t group) {
  TIDE_CHECK(group < groups_.size(), "{}.set_lr: group {} does not exist (there are {})",
             type_name(), group, groups_.size());
  TIDE_CHECK(lr >= 0, "{}.set_lr: invalid learning rate {} (must be >= 0)", type_name(), lr);
  groups_[group].lr = lr;
}

int64_t Optimizer::num_params() const {
  return static_cast<int64_t>(state_.size());
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  out["step_count"] = scalar_i64(step_count_);
  int64_t index = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    std::vector<int64_t> indices(group.params.size());
    for (auto& i : indices) i = index++;
    const std::string prefix = fmt::format("param_groups.{}.", g);
    out[prefix + "params"] = from_vector(indices);
    out[prefix + "lr"] = scalar_f64(*group.lr);
    out[prefix + "weight_decay"] = scalar_f64(*group.weight_decay);
  }
  for (const auto& [name, value] : named_options()) out["options." + name] = scalar_f64(value);
  for (size_t i = 0; i < state_.size(); ++i) {
    if (state_[i].step == 0) continue;  // never updated: no state yet
    const std::string prefix = fmt::format("state.{}.", i);
    out[prefix + "step"] = scalar_i64(state_[i].step);
    for (const auto& [name, buffer] : state_[i].buffers)
      out[prefix + name] = kernels::clone(buffer);
  }
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  const std::string who = type_name() + ".load_state_dict";
  std::vector<Tensor> params;
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params) params.push_back(p);

  // Check everything before changing anything, so a bad dict leaves the
  // optimizer as it was.
  std::set<std::string> known = {"step_count"};
  const Tensor& step_count = lookup(state, "step_count", who);
  TIDE_CHECK(step_count.numel() == 1, "{}: key 'step_count' has shape {}, expected a scalar", who,
             step_count.shape());
  int64_t index = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = fmt::format("param_groups.{}.", g);
    const int64_t n = static_cast<int64_t>(groups_[g].params.size());
    const Tensor& indices = lookup(state, prefix + "params", who);
    TIDE_CHECK(indices.dim() == 1 && indices.size(0) == n,
               "{}: key '{}params' has shape {}, but group {} of this optimizer has {} "
               "parameters (shape [{}])",
               who, prefix, indices.shape(), g, n, n);
    std::vector<int64_t> values = indices.to_vector<int64_t>();
    for (int64_t k = 0; k < n; ++k)
      TIDE_CHECK(values[k] == index + k,
                 "{}: key '{}params' lists parameter {} at position {}, expected {}", who, prefix,
                 values[k], k, index + k);
    index += n;
    for (const char* name : {"params", "lr", "weight_decay"}) known.insert(prefix + name);
    for (const char* name : {"lr", "weight_decay"}) {
      const Tensor& value = lookup(state, prefix + name, who);
      TIDE_CHECK(value.numel() == 1, "{}: key '{}{}' has shape {}, expected a scalar", who, prefix,
                 name, value.shape());
    }
  }
  for (const auto& [name, value] : named_options()) {
    const Tensor& t = lookup(state, "options." + name, who);
    TIDE_CHECK(t.numel() == 1, "{}: key 'options.{}' has shape {}, expected a scalar", who, name,
               t.shape());
    known.insert("options." + name);
  }
  const std::vector<std::string> buffers = buffer_names();
  for (const auto& [key, value] : state) {
    if (known.count(key)) continue;
    // Per-parameter state: "state.<i>.<name>".
    TIDE_CHECK(key.rfind("state.", 0) == 0, "{}: unexpected key '{}' (shape {})", who, key,
               value.shape());
    const size_t dot = key.find('.', 6);
    TIDE_CHECK(dot != std::string::npos, "{}: unexpected key '{}'", who, key);
    int64_t i = -1;
    try {
      size_t used = 0;
      i = std::stoll(key.substr(6, dot - 6), &used);
      if (used != dot - 6) i = -1;
    } catch (const std::exception&) {
      i = -1;
    }
    TIDE_CHECK(i >= 0, "{}: unexpected key '{}' (no parameter index)", who, key);
    TIDE_CHECK(i < num_params(),
               "{}: unexpected key '{}' with shape {}: this optimizer has only {} parameters", who,
               key, value.shape(), num_params());
    const std::string name = key.substr(dot + 1);
    if (name == "step") {
      TIDE_CHECK(value.numel() == 1 && value.item() >= 1,
                 "{}: key '{}' must be a positive scalar step count, got {}", who, key,
                 value.describe());
      continue;
    }
    TIDE_CHECK(std::find(buffers.begin(), buffers.end(), name) != buffers.end(),
               "{}: unexpected key '{}' ({} has no state named '{}')", who, key, type_name(), name);
    TIDE_CHECK(value.shape() == params[i].shape(),
               "{}: key '{}' has shape {}, but parameter {} has shape {}", who, key, value.shape(),
               i, params[i].shape());
    TIDE_CHECK(state.count(fmt::format("state.{}.step", i)),
               "{}: key '{}' is present but 'state.{}.step' is missing", who, key, i);
  }

  // Apply.
  NoGradGuard no_grad;
  step_count_ = static_cast<int64_t>(step_count.item());
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = fmt::format("param_groups.{}.", g);
    groups_[g].lr = state.at(prefix + "lr").item();
    groups_[g].weight_decay = state.at(prefix + "weight_decay").item();
  }
  for (const auto& [name, value] : named_options())
    set_option(name, state.at("options." + name).item());
  for (size_t i = 0; i < state_.size(); ++i) {
    ParamState fresh;
    const std::string prefix = fmt::format("state.{}.", i);
    auto step = state.find(prefix + "step");
    if (step != state.end()) {
      fresh.step = static_cast<int64_t>(step->second.item());
      for (const std::string& name : buffers) {
        auto it = state.find(prefix + name);
        if (it != state.end()) fresh.buffers[name] = owned_copy(it->second, params[i]);
      }
    }
    state_[i] = std::move(fresh);
  }
}

// ===========================================================================
// SGD
// ===========================================================================

namespace {

std::vector<ParamGroup> one_group(std::vector<Tensor> params) {
  return {
      ParamGroup{.params = std::move(params), .lr = std::nullopt, .weight_decay = std::nullopt}};
}

void check_sgd_options(const SGDOptions& o) {
  TIDE_CHECK(o.lr >= 0, "SGD: invalid learning rate {} (must be >= 0)", o.lr);
  TIDE_CHECK(o.momentum >= 0, "SGD: invalid momentum {} (must be >= 0)", o.momentum);
  TIDE_CHECK(o.weight_decay >= 0, "SGD: invalid weight_decay {} (must be >= 0)", o.weight_decay);
  TIDE_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
             "SGD: nesterov momentum requires momentum > 0 and dampening = 0 (got momentum {}, "
             "dampening {})",
             o.momentum, o.dampening);
}

template <typename T, bool kWeightDecay, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_loop(int64_t n, T* __restrict p, const T* __restrict g, T* __restrict buf, double lr,
              double momentum, double dampening, double weight_decay) {
  const T wd = static_cast<T>(weight_decay), mom = static_cast<T>(momentum);
  const T keep = static_cast<T>(1 - dampening), neg_lr = static_cast<T>(-lr);
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i];
    if constexpr (kWeightDecay) d = d + wd * p[i];
    if constexpr (kMomentum) {
      const T b = kFirst ? d : buf[i] * mom + keep * d;  // the first step copies the gradient
      buf[i] = b;
      d = kNesterov ? d + mom * b : b;
    }
    p[i] = p[i] + neg_lr * d;
  }
}

template <typename T>
void sgd_fused(int64_t n, T* p, const T* g, T* buf, bool first, double lr, double momentum,
               double dampening, double weight_decay, bool nesterov) {
  with_flag(weight_decay != 0, [&](auto kWeightDecay) {
    with_flag(buf != nullptr, [&](auto kMomentum) {
      with_flag(first, [&](auto kFirst) {
        with_flag(nesterov, [&](auto kNesterov) {
          sgd_loop<T, kWeightDecay(), kMomentum(), kFirst(), kNesterov()>(
              n, p, g, buf, lr, momentum, dampening, weight_decay);
        });
      });
    });
  });
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : SGD(one_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer("SGD", (check_sgd_options(options), std::move(groups)), options.lr,
                options.weight_decay),
      options_(options) {}

void SGD::update(const ParamGroup& group, int64_t index, const Tensor& param, const Tensor& grad) {
  const double lr = *group.lr, wd = *group.weight_decay;
  const double momentum = options_.momentum, dampening = options_.dampening;
  ParamState& st = state_[index];
  const bool first = !st.buffers.count("momentum_buffer");

  if (fused_ok(param, grad)) {
    if (momentum != 0 && first) st.buffers["momentum_buffer"] = empty_like(param);
    dispatch_dtype(param.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<T>) {
        T* buf = momentum != 0 ? st.buffers["momentum_buffer"].data_ptr<T>() : nullptr;
        sgd_fused<T>(param.numel(), param.data_ptr<T>(), grad.data_ptr<T>(), buf, first, lr,
                     momentum, dampening, wd, options_.nesterov);
      }
    });
    param.storage()->bump_version();
    return;
  }

  // Generic path (any device or layout), in PyTorch's op order.
  Tensor d = grad;
  if (wd != 0) d = add(d, mul(param, wd));
  if (momentum != 0) {
    if (first) {
      st.buffers["momentum_buffer"] = kernels::clone(d);
    } else {
      Tensor& buf = st.buffers["momentum_buffer"];
      copy_(buf, add(mul(buf, momentum), mul(d, 1 - dampening)));
    }
    const Tensor& buf = st.buffers["momentum_buffer"];
    d = options_.nesterov ? add(d, mul(buf, momentum)) : buf;
  }
  add_(param, d, -lr);
}

std::vector<std::pair<std::string, double>> SGD::named_options() const {
  return {{"momentum", options_.momentum},
          {"dampening", options_.dampening},
          {"nesterov", options_.nesterov ? 1.0 : 0.0}};
}

void SGD::set_option(const std::string& name, double value) {
  if (name == "momentum") options_.momentum = value;
  if (name == "dampening") options_.dampening = value;
  if (name == "nesterov") options_.nesterov = value != 0;
}

// ===========================================================================
// Adam and AdamW
// ===========================================================================

namespace {

void check_adam_options(const AdamOptions& o, const char* name) {
  TIDE_CHECK(o.lr >= 0, "{}: invalid learning rate {} (must be >= 0)", name, o.lr);
  TIDE_CHECK(o.eps >= 0, "{}: invalid eps {} (must be >= 0)", name, o.eps);
  TIDE_CHECK(o.beta1 >= 0 && o.beta1 < 1, "{}: invalid beta1 {} (must be in [0, 1))", name,
             o.beta1);
  TIDE_CHECK(o.beta2 >= 0 && o.beta2 < 1, "{}: invalid beta2 {} (must be in [0, 1))", name,
             o.beta2);
  TIDE_CHECK(o.weight_decay >= 0, "{}: invalid weight_decay {} (must be >= 0)", name,
             o.weight_decay);
}

// The per-step constants of one Adam update, computed in double like
// PyTorch's Python-side scalars.
struct AdamConstants {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled, amsgrad;
  double step_size;   // lr / (1 - beta1^t)
  double bias2_sqrt;  // sqrt(1 - beta2^t)
};

// The numbers of one Adam step that change with the step count: doubles on
// the host path, 0-d tensors on the parameter's device for a captured step
// (kernel arguments would freeze at capture; see set_device_scalars).
template <typename Scalar>
struct AdamStepScalars {
  Scalar neg_step_size;  // -lr / (1 - beta1^t)
  Scalar bias2_sqrt;     // sqrt(1 - beta2^t)
  Scalar decay;          // AdamW: 1 - lr * weight_decay
  Scalar weight_decay;   // Adam: the L2 coefficient
};

// One Adam/AdamW update as tensor ops in PyTorch's op order, for any device
// and layout. The same ops whether the scalars are doubles or tensors, so
// both give the same rounding.
template <typename Scalar>
void adam_update_ops(const AdamStepScalars<Scalar>& s, const AdamOptions& options, bool decoupled,
                     bool has_weight_decay, const Tensor& param, const Tensor& grad, Tensor& m,
                     Tensor& v, Tensor& vmax) {
  Tensor g = grad;
  if (has_weight_decay) {
    if (decoupled)
      copy_(param, mul(param, s.decay));
    else
      g = add(g, mul(param, s.weight_decay));
  }
  copy_(m, add(mul(m, options.beta1), mul(g, 1 - options.beta1)));
  copy_(v, add(mul(v, options.beta2), mul(mul(g, 1 - options.beta2), g)));
  Tensor second = v;
  if (options.amsgrad) {
    copy_(vmax, maximum(vmax, v));
    second = vmax;
  }
  Tensor denom = add(div(sqrt(second), s.bias2_sqrt), options.eps);
  copy_(param, add(param, div(mul(m, s.neg_step_size), denom)));
}

// sqrt over a short block, in place. GCC only vectorizes std::sqrt under
// -fno-math-errno (otherwise each call keeps a branch to the errno-setting
// library sqrt), so on x86-64 this uses the SSE2 sqrt instructions directly;
// both are correctly rounded, so the results are the same bits.
template <typename T>
void sqrt_block(T* x, int64_t n) {
  int64_t i = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
  } else {
    for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
  }
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// The fused loop, one instantiation per combination of options, so the loop
// bodies have no branches and the compiler vectorizes them. It runs in blocks
// that stay in L1: moments first, then sqrt, then the parameter.
template <typename T, bool kL2, bool kDecoupled, bool kAmsgrad>
void adam_loop(int64_t n, T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
               T* __restrict vmax, const AdamConstants& c) {
  const T wd = static_cast<T>(c.weight_decay);
  const T decay = static_cast<T>(1 - c.lr * c.weight_decay);
  const T b1 = static_cast<T>(c.beta1), w1 = static_cast<T>(1 - c.beta1);
  const T b2 = static_cast<T>(c.beta2), w2 = static_cast<T>(1 - c.beta2);
  const T bias2_sqrt = static_cast<T>(c.bias2_sqrt), eps = static_cast<T>(c.eps);
  const T neg_step = static_cast<T>(-c.step_size);
  constexpr int64_t kBlock = 256;
  T root[kBlock];  // the second moment used in the denominator, then its sqrt
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    T* __restrict pb = p + start;
    const T* __restrict gb = g + start;
    T* __restrict mb = m + start;
    T* __restrict vb = v + start;
    for (int64_t i = 0; i < len; ++i) {
      T gi = gb[i];
      if constexpr (kL2) gi = gi + wd * pb[i];  // Adam: L2 penalty in the gradient
      const T vi = vb[i] * b2 + w2 * gi * gi;
      mb[i] = mb[i] * b1 + w1 * gi;
      vb[i] = vi;
      if constexpr (kAmsgrad) {
        const T vmax_i = vmax[start + i] < vi ? vi : vmax[start + i];
        vmax[start + i] = vmax_i;
        root[i] = vmax_i;
      } else {
        root[i] = vi;
      }
    }
    sqrt_block(root, len);
    for (int64_t i = 0; i < len; ++i) {
      T pi = pb[i];
      if constexpr (kDecoupled) pi = pi * decay;  // AdamW: decoupled decay
      const T denom = root[i] / bias2_sqrt + eps;
      pb[i] = pi + neg_step * mb[i] / denom;
    }
  }
}

template <typename T>
void adam_fused(int64_t n, T* p, const T* g, T* m, T* v, T* vmax, const AdamConstants& c) {
  const bool l2 = !c.decoupled && c.weight_decay != 0;
  const bool decoupled = c.decoupled && c.weight_decay != 0;
  with_flag(l2, [&](auto kL2) {
    with_flag(decoupled, [&](auto kDecoupled) {
      with_flag(vmax != nullptr, [&](auto kAmsgrad) {
        adam_loop<T, kL2(), kDecoupled(), kAmsgrad()>(n, p, g, m, v, vmax, c);
      });
    });
  });
}

AdamOptions to_adam(const AdamWOptions& o) {
  return {.lr = o.lr,
          .beta1 = o.beta1,
          .beta2 = o.beta2,
          .eps = o.eps,
          .weight_decay = o.weight_decay,
          .amsgrad = o.amsgrad};
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam(one_group(std::move(params)), options, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options)
    : Adam(std::move(groups), options, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options, bool decoupled)
    : Optimizer(decoupled ? "AdamW" : "Adam",
                (check_adam_options(options, decoupled ? "AdamW" : "Adam"), std::move(groups)),
                options.lr, options.weight_decay),
      options_(options),
      decoupled_(decoupled) {}

void Adam::update(const ParamGroup& group, int64_t index, const Tensor& param, const Tensor& grad) {
  ParamState& st = state_[index];
  if (device_scalars()) {
    if (!st.buffers.count("exp_avg")) {
      st.buffers["exp_avg"] = zeros_like(param);
      st.buffers["exp_avg_sq"] = zeros_like(param);
      if (options_.amsgrad) st.buffers["max_exp_avg_sq"] = zeros_like(param);
    }
    Tensor vmax = options_.amsgrad ? st.buffers["max_exp_avg_sq"] : Tensor();
    update_with_device_scalars(scalars_for(group_index(group), index, param, /*create=*/false),
                               *group.weight_decay, param, grad, st.buffers["exp_avg"],
                               st.buffers["exp_avg_sq"], vmax);
    return;
  }
  const int64_t t = st.step;  // already incremented by Optimizer::step
  AdamConstants c{.lr = *group.lr,
                  .beta1 = options_.beta1,
                  .beta2 = options_.beta2,
                  .eps = options_.eps,
                  .weight_decay = *group.weight_decay,
                  .decoupled = decoupled_,
                  .amsgrad = options_.amsgrad,
                  .step_size = 0,
                  .bias2_sqrt = 0};
  c.step_size = c.lr / (1 - std::pow(c.beta1, static_cast<double>(t)));
  c.bias2_sqrt = std::sqrt(1 - std::pow(c.beta2, static_cast<double>(t)));

  if (!st.buffers.count("exp_avg")) {
    st.buffers["exp_avg"] = zeros_like(param);
    st.buffers["exp_avg_sq"] = zeros_like(param);
    if (c.amsgrad) st.buffers["max_exp_avg_sq"] = zeros_like(param);
  }
  Tensor& m = st.buffers["exp_avg"];
  Tensor& v = st.buffers["exp_avg_sq"];
  Tensor vmax = c.amsgrad ? st.buffers["max_exp_avg_sq"] : Tensor();

  if (fused_ok(param, grad)) {
    dispatch_dtype(param.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<T>) {
        adam_fused<T>(param.numel(), param.data_ptr<T>(), grad.data_ptr<T>(), m.data_ptr<T>(),
                      v.data_ptr<T>(), c.amsgrad ? vmax.data_ptr<T>() : nullptr, c);
      }
    });
    param.storage()->bump_version();
    return;
  }

  // Generic path (any device or layout).
  const AdamStepScalars<double> host{.neg_step_size = -c.step_size,
                                     .bias2_sqrt = c.bias2_sqrt,
                                     .decay = 1 - c.lr * c.weight_decay,
                                     .weight_decay = c.weight_decay};
  adam_update_ops(host, options_, decoupled_, c.weight_decay != 0, param, grad, m, v, vmax);
}

// --- device scalars ----------------------------------------------------------

// Writes this step's scalars, in the dtype and on the device of each
// parameter that steps.
void Adam::refresh_device_scalars() {
  const auto& groups = param_groups();
  shared_scalars_.resize(groups.size());
  group_step_.assign(groups.size(), -1);
  int64_t index = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (const Tensor& param : groups[g].params) {
      const int64_t i = index++;
      if (!param.grad().defined()) continue;
      const int64_t t = state_[i].step;
      if (group_step_[g] < 0) group_step_[g] = t;  // the first stepping parameter's count
      fill_scalars(scalars_for(g, i, param, /*create=*/true), *groups[g].lr,
                   *groups[g].weight_decay, t);
    }
  }
}

// The set parameter `index` (of `group`) reads this step.
Adam::DeviceScalars& Adam::scalars_for(size_t group, int64_t index, const Tensor& param,
                                       bool create) {
  TIDE_CHECK(group < group_step_.size(),
             "{}.apply_step: no device scalars for parameter {}; call prepare_step() before "
             "apply_step()",
             type_name(), index);
  const bool shared = state_[index].step == group_step_[group];
  if (shared) {
    for (DeviceScalars& s : shared_scalars_[group])
      if (s.dtype == param.dtype() && s.device == param.device()) return s;
  } else if (auto it = own_scalars_.find(index); it != own_scalars_.end()) {
    return it->second;
  }
  TIDE_CHECK(create,
             "{}.apply_step: no device scalars for parameter {} ({}); call prepare_step() before "
             "apply_step()",
             type_name(), index, param.describe());
  const TensorOptions options{.dtype = param.dtype(), .device = param.device()};
  DeviceScalars fresh{param.dtype(),      param.device(),     empty({}, options),
                      empty({}, options), empty({}, options), empty({}, options)};
  if (shared) return shared_scalars_[group].emplace_back(std::move(fresh));
  return own_scalars_.emplace(index, std::move(fresh)).first->second;
}

// The same double arithmetic as the host path (AdamConstants); each fill
// rounds its value to the parameter dtype as the host path's scalars are
// rounded. A shared set is filled once per step.
void Adam::fill_scalars(DeviceScalars& s, double lr, double weight_decay, int64_t t) {
  if (s.filled_at == step_count()) return;
  s.filled_at = step_count();
  const double step_size = lr / (1 - std::pow(options_.beta1, static_cast<double>(t)));
  const double bias2_sqrt = std::sqrt(1 - std::pow(options_.beta2, static_cast<double>(t)));
  kernels::fill_(s.neg_step_size, -step_size);
  kernels::fill_(s.bias2_sqrt, bias2_sqrt);
  if (weight_decay != 0 && decoupled_) kernels::fill_(s.decay, 1 - lr * weight_decay);
  if (weight_decay != 0 && !decoupled_) kernels::fill_(s.weight_decay, weight_decay);
}

// The generic path with the step-dependent numbers read from the device.
void Adam::update_with_device_scalars(const DeviceScalars& s, double weight_decay,
                                      const Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                                      Tensor& vmax) const {
  const AdamStepScalars<Tensor> device{.neg_step_size = s.neg_step_size,
                                       .bias2_sqrt = s.bias2_sqrt,
                                       .decay = s.decay,
                                       .weight_decay = s.weight_decay};
  adam_update_ops(device, options_, decoupled_, weight_decay != 0, param, grad, m, v, vmax);
}

std::vector<std::pair<std::string, double>> Adam::named_options() const {
  return {{"beta1", options_.beta1},
          {"beta2", options_.beta2},
          {"eps", options_.eps},
          {"amsgrad", options_.amsgrad ? 1.0 : 0.0}};
}

void Adam::set_option(const std::string& name, double value) {
  if (name == "beta1") options_.beta1 = value;
  if (name == "beta2") options_.beta2 = value;
  if (name == "eps") options_.eps = value;
  if (name == "amsgrad") options_.amsgrad = value != 0;
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam(one_group(std::move(params)), to_adam(options), true) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Adam(std::move(groups), to_adam(options), true) {}

// ===========================================================================
// Gradient clipping
// ===========================================================================

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  TIDE_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be >= 0, got {}", max_norm);
  TIDE_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be > 0, got {}", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;

  // The norm of the per-gradient norms is the norm of everything together.
  const bool inf = std::isinf(norm_type);
  double total = 0;
  for (const Tensor& g : grads) {
    const double n = norm(g, norm_type).item();
    total = inf ? std::max(total, n) : total + std::pow(n, norm_type);
  }
  if (!inf) total = std::pow(total, 1.0 / norm_type);

  const double coef = max_norm / (total + 1e-6);
  if (coef < 1)
    for (const Tensor& g : grads) mul_(g, coef);
  return total;
}

Tensor clip_grad_norm_device_(const std::vector<Tensor>& params, double max_norm,
                              double norm_type) {
  TIDE_CHECK(max_norm >= 0, "clip_grad_norm_device_: max_norm must be >= 0, got {}", max_norm);
  TIDE_CHECK(norm_type > 0, "clip_grad_norm_device_: norm_type must be > 0, got {}", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return Tensor();

  // As clip_grad_norm_, with the per-gradient norms combined in float64 on
  // the device instead of in a host double.
  const bool inf = std::isinf(norm_type);
  Tensor total;
  for (const Tensor& g : grads) {
    TIDE_CHECK(g.device() == grads[0].device(),
               "clip_grad_norm_device_: the gradients are on {} and {}; they must share a device",
               grads[0].device(), g.device());
    const Tensor n = to(norm(g, norm_type), DType::Float64);
    const Tensor term = inf ? n : pow(n, norm_type);
    total = !total.defined() ? term : (inf ? maximum(total, term) : add(total, term));
  }
  if (!inf) total = pow(total, 1.0 / norm_type);

  // The host path scales only when coef < 1; multiplying by exactly 1 is the
  // same (and a NaN norm leaves the gradients alone in both).
  Tensor coef = div(max_norm, add(total, 1e-6));
  coef = where(lt(coef, 1.0), coef, 1.0);
  for (const Tensor& g : grads) copy_(g, mul(g, to(coef, g.dtype())));
  return total;
}

}  // namespace tide::nn
