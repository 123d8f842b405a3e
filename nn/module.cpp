#include "nn/module.h"

#include <algorithm>

#include "tensor/kernels.h"

namespace tide::nn {

Tensor Module::forward(const Tensor&) {
  fail("{}: this module has no one-input forward(x)", type_name());
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

void Module::check_new_name(const std::string& name) const {
  TIDE_CHECK(!name.empty() && name.find('.') == std::string::npos,
             "{}: invalid name '{}' (names must be non-empty and contain no '.')", type_name(),
             name);
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  TIDE_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_),
             "{}: the name '{}' is already registered", type_name(), name);
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad) {
  check_new_name(name);
  TIDE_CHECK(value.defined(), "{}: parameter '{}' is undefined", type_name(), name);
  TIDE_CHECK(value.is_leaf(), "{}: parameter '{}' must be a leaf tensor (detach it first)",
             type_name(), name);
  if (requires_grad) value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name);
  TIDE_CHECK(child != nullptr, "{}: child module '{}' is null", type_name(), name);
  children_.emplace_back(name, std::move(child));
}

// ---------------------------------------------------------------------------
// Traversal
// ---------------------------------------------------------------------------

void Module::collect(const std::string& prefix, bool recurse, bool buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_)
    out.emplace_back(prefix + name, tensor);
  if (!recurse) return;
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", true, buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", recurse, false, out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", recurse, true, out);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers()) out[name] = t;
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  StateDict own = state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, mine] : own) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
    } else if (!it->second.defined() || it->second.shape() != mine.shape()) {
      mismatched.push_back(fmt::format("{} (expected {}, got {})", name, mine.shape(),
                                       it->second.defined() ? it->second.shape().str() : "undefined"));
    }
  }
  for (const auto& [name, t] : state)
    if (!own.count(name)) unexpected.push_back(name);
  bool bad = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (bad) {
    std::string message = fmt::format("load_state_dict: cannot load into {}", type_name());
    if (!missing.empty()) message += fmt::format("; missing keys: {}", fmt::join(missing, ", "));
    if (!unexpected.empty())
      message += fmt::format("; unexpected keys: {}", fmt::join(unexpected, ", "));
    if (!mismatched.empty())
      message += fmt::format("; shape mismatches: {}", fmt::join(mismatched, ", "));
    throw Error(message);
  }
  NoGradGuard no_grad;
  for (auto& [name, mine] : own) {
    auto it = state.find(name);
    if (it == state.end()) continue;
    Tensor value = kernels::to_device(it->second, mine.device());
    kernels::copy_(mine, value);  // converts the dtype
  }
}

// ---------------------------------------------------------------------------
// Modes and placement
// ---------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  on_train_changed();
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(DType dtype) {
  TIDE_CHECK(is_floating(dtype), "{}.to: parameters must stay floating point, got {}",
             type_name(), dtype);
  for (auto* list : {&parameters_, &buffers_})
    for (auto& [name, t] : *list)
      if (t.is_floating_point()) t.set_data(kernels::to_dtype(t, dtype));
  for (auto& [name, child] : children_) child->to(dtype);
}

void Module::to(Device device) {
  for (auto* list : {&parameters_, &buffers_})
    for (auto& [name, t] : *list) t.set_data(kernels::to_device(t, device));
  for (auto& [name, child] : children_) child->to(device);
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.set_grad(Tensor());
}

std::string Module::repr() const {
  std::string out;
  repr_into(out, 0);
  return out;
}

void Module::repr_into(std::string& out, int indent) const {
  out += type_name() + "(" + extra_repr();
  if (children_.empty()) {
    out += ")";
    return;
  }
  out += "\n";
  for (const auto& [name, child] : children_) {
    out += std::string(indent + 2, ' ') + "(" + name + "): ";
    child->repr_into(out, indent + 2);
    out += "\n";
  }
  out += std::string(indent, ' ') + ")";
}

}  // namespace tide::nn
