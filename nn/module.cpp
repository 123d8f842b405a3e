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
  if (value.requires_grad() != requires_grad) value.set_requires_grad(requires_grad);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  TIDE_CHECK(value.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  // A buffer is state, not part of any graph: keep a detached alias of a
  // computed tensor (so that to() can later replace its data in place).
  if (!value.is_leaf()) value = detach(value);
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
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", true, buffers, out);
}

namespace {
// A tensor shared by two modules (tied weights, or one child registered twice)
// is listed once, under its first name, like PyTorch's remove_duplicate: an
// optimizer must not update it twice, nor num_parameters count it twice.
std::vector<std::pair<std::string, Tensor>> without_duplicates(
    std::vector<std::pair<std::string, Tensor>> list) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& entry : list) {
    bool seen = std::any_of(out.begin(), out.end(), [&](const auto& kept) {
      return kept.second.impl() == entry.second.impl();
    });
    if (!seen) out.push_back(std::move(entry));
  }
  return out;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", recurse, false, out);
  return without_duplicates(std::move(out));
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", recurse, true, out);
  return without_duplicates(std::move(out));
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
  // Every name, tied tensors included (PyTorch keeps both names too). The
  // entries are detached aliases: they share the data but carry no autograd
  // state, so they can be read or written without recording a graph.
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", true, false, all);
  collect("", true, true, all);
  StateDict out;
  for (auto& [name, t] : all) out[name] = detach(t);
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
      mismatched.push_back(
          fmt::format("{} (expected {}, got {})", name, mine.shape(),
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
    // Loading a module's own state into itself: nothing to copy (and a copy
    // onto the same memory is not allowed by the backend contract).
    if (it->second.storage() == mine.storage() && it->second.offset() == mine.offset()) continue;
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

namespace {
// Replaces t's data by convert(t) in place (every handle to t sees the new
// data) and converts an existing gradient the same way, as PyTorch's
// Module.to does, so that a step taken after the move still finds it.
template <typename Convert>
void convert_in_place(Tensor& t, Convert convert) {
  Tensor grad = t.autograd_meta_if_any() ? t.grad() : Tensor();
  Tensor converted = convert(t);
  if (converted.impl() == t.impl()) return;  // already in that dtype/device
  t.set_data(converted);
  if (grad.defined()) t.set_grad(convert(grad));
}
}  // namespace

void Module::to(DType dtype) {
  TIDE_CHECK(is_floating(dtype), "{}.to: parameters must stay floating point, got {}", type_name(),
             dtype);
  for (auto* list : {&parameters_, &buffers_})
    for (auto& [name, t] : *list)
      if (t.is_floating_point())
        convert_in_place(t, [&](const Tensor& x) { return kernels::to_dtype(x, dtype); });
  for (auto& [name, child] : children_) child->to(dtype);
}

void Module::to(Device device) {
  for (auto* list : {&parameters_, &buffers_})
    for (auto& [name, t] : *list)
      convert_in_place(t, [&](const Tensor& x) { return kernels::to_device(x, device); });
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
  std::string extra = extra_repr();
  out += type_name() + "(";
  if (children_.empty()) {
    out += extra + ")";
    return;
  }
  // With children, PyTorch puts the extra text on a line of its own.
  std::string pad(indent + 2, ' ');
  out += "\n";
  if (!extra.empty()) out += pad + extra + "\n";
  for (const auto& [name, child] : children_) {
    out += pad + "(" + name + "): ";
    child->repr_into(out, indent + 2);
    out += "\n";
  }
  out += std::string(indent, ' ') + ")";
}

std::string repr_float(double value) {
  std::string text = fmt::format("{}", value);  // the shortest text that round-trips
  // Python always shows a float as a float: "1.0", not "1".
  if (text.find_first_of(".eEni") == std::string::npos) text += ".0";
  return text;
}

}  // namespace tide::nn
