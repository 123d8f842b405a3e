#include "autograd/anomaly.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>
#include <mutex>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/kernels.h"

namespace tide {

namespace detail {
std::atomic<bool> g_detect_anomaly{false};
}

void set_detect_anomaly(bool enabled) {
  detail::g_detect_anomaly.store(enabled, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Module scopes
// ---------------------------------------------------------------------------

namespace {

thread_local std::vector<std::string> t_module_scopes;
thread_local const Node* t_backward_node = nullptr;

// Module paths are few and live as long as the nodes that point at them, so
// they are interned once and never freed (a Node keeps a plain const char*).
const char* intern(const std::string& path) {
  static std::mutex mutex;
  static std::unordered_set<std::string> paths;
  std::lock_guard<std::mutex> lock(mutex);
  return paths.insert(path).first->c_str();
}

}  // namespace

void ModuleScope::push(std::string name) {
  t_module_scopes.push_back(std::move(name));
  pushed_ = true;
}

void ModuleScope::pop() {
  t_module_scopes.pop_back();
}

std::string current_module_path() {
  return fmt::format("{}", fmt::join(t_module_scopes, "."));
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

namespace detail {

BackwardNodeScope::BackwardNodeScope(const Node* node) : previous_(t_backward_node) {
  t_backward_node = node;
}
BackwardNodeScope::~BackwardNodeScope() {
  t_backward_node = previous_;
}

namespace {

struct NonFinite {
  int64_t nan = 0;
  int64_t inf = 0;
  bool any() const { return nan > 0 || inf > 0; }
};

// Counts NaN and +-Inf elements with ordinary kernels (so it works on any
// device): x != x is true exactly for NaN, |x| == inf for the infinities.
NonFinite count_non_finite(const Tensor& x) {
  if (!x.defined() || !x.is_floating_point() || x.numel() == 0) return {};
  auto count = [](const Tensor& mask) {
    return static_cast<int64_t>(kernels::reduce(ReduceOp::Sum, mask, {}, false).item());
  };
  NonFinite result;
  result.nan = count(kernels::binary(BinaryOp::Ne, x, x));
  const double inf = std::numeric_limits<double>::infinity();
  result.inf = count(
      kernels::binary(BinaryOp::Eq, kernels::unary(UnaryOp::Abs, x), kernels::scalar_like(inf, x)));
  return result;
}

// "NaN (2 of 6 elements)", "Inf (1 of 6 elements)", "NaN and Inf (...)".
std::string describe_non_finite(const NonFinite& bad, int64_t numel) {
  const char* what = bad.nan > 0 && bad.inf > 0 ? "NaN and Inf" : bad.nan > 0 ? "NaN" : "Inf";
  return fmt::format("{} ({} of {} elements)", what, bad.nan + bad.inf, numel);
}

std::string where_created(const char* module_path) {
  if (module_path == nullptr) return "outside any module";
  return fmt::format("in module '{}'", module_path);
}

// "float32[2, 3]" for each input, noting the ones that already held NaN/Inf;
// sets `any_bad` when one did.
std::string describe_inputs(const std::vector<Tensor>& inputs, bool& any_bad) {
  std::vector<std::string> parts;
  any_bad = false;
  for (const Tensor& in : inputs) {
    if (!in.defined()) {
      parts.push_back("undefined");
      continue;
    }
    std::string part = fmt::format("{}{}", in.dtype(), in.shape());
    NonFinite bad = count_non_finite(in);
    if (bad.any()) {
      part += " holding " + describe_non_finite(bad, in.numel());
      any_bad = true;
    }
    parts.push_back(std::move(part));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

void check_forward_anomaly(const char* op, const std::vector<Tensor>& inputs, const Tensor& output,
                           Node& node) {
  // Remember where the node was made, for a later backward message.
  node.module_path = t_module_scopes.empty() ? nullptr : intern(current_module_path());

  NonFinite bad = count_non_finite(output);
  if (!bad.any()) return;
  bool inputs_bad = false;
  std::string input_text = describe_inputs(inputs, inputs_bad);
  // Forward ops also run inside a differentiable backward (create_graph).
  const std::string pass =
      t_backward_node == nullptr
          ? std::string("in the forward pass")
          : fmt::format("while computing the backward of '{}' (created {})",
                        t_backward_node->name(), where_created(t_backward_node->module_path));
  fail("detect_anomaly: '{}' {} produced {} in its output {}{}, {}; its inputs: ({}){}", op,
       where_created(node.module_path), describe_non_finite(bad, output.numel()), output.dtype(),
       output.shape(), pass, input_text,
       inputs_bad ? "; the NaN/Inf came in through an input (from outside the recorded graph: "
                    "data, or ops on tensors that need no gradient)"
                  : "");
}

void check_backward_anomaly(const Node& node, const std::vector<Tensor>& input_grads) {
  const size_t n = std::min(input_grads.size(), node.inputs.size());
  for (size_t i = 0; i < n; ++i) {
    NonFinite bad = count_non_finite(input_grads[i]);
    if (!bad.any()) continue;
    std::vector<std::string> shapes;
    for (const InputInfo& info : node.inputs)
      shapes.push_back(fmt::format("{}{}", info.dtype, info.shape));
    fail(
        "detect_anomaly: the backward of '{}' (created {}) returned {} in the gradient for its "
        "input {} ({}{}); the forward op's inputs: ({})",
        node.name(), where_created(node.module_path),
        describe_non_finite(bad, input_grads[i].numel()), i, node.inputs[i].dtype,
        node.inputs[i].shape, fmt::join(shapes, ", "));
  }
}

std::vector<Tensor> apply_checked(Node& node, const Tensor& grad_output) {
  BackwardNodeScope scope(&node);
  std::vector<Tensor> input_grads = node.apply(grad_output);
  check_backward_anomaly(node, input_grads);
  return input_grads;
}

}  // namespace detail

}  // namespace tide
