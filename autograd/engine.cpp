// The reverse-mode engine: collect the graph reachable from the outputs, run
// its nodes in reverse creation order once all their incoming gradients are
// summed, and deliver gradients to leaves (backward) or to the caller (grad).
#include <atomic>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/anomaly.h"
#include "autograd/autograd.h"
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

static std::atomic<uint64_t> g_next_sequence_nr{0};

// The inputs whose gradients the node running on this thread must produce
// (bit i for input i; inputs past 63 always count as needed). All bits set
// outside a backward pass.
static thread_local uint64_t t_needed_inputs = ~uint64_t{0};

bool needs_input_grad(size_t i) {
  return i >= 64 || ((t_needed_inputs >> i) & 1) != 0;
}

namespace {
// Sets t_needed_inputs for one node's backward, restoring the outer value
// (a backward closure may itself run a nested backward pass).
class NeededInputsScope {
 public:
  explicit NeededInputsScope(uint64_t mask) : previous_(t_needed_inputs) { t_needed_inputs = mask; }
  ~NeededInputsScope() { t_needed_inputs = previous_; }

 private:
  uint64_t previous_;
};
}  // namespace

Node::Node(const char* name) : name_(name), sequence_nr_(g_next_sequence_nr++) {}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  TIDE_CHECK(!released_,
             "backward: the graph through '{}' has already been freed by an earlier backward; "
             "pass retain_graph=true to backward through it twice",
             name());
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto storage = inputs[i].storage.lock();
    TIDE_CHECK(!storage || storage->version() == inputs[i].version,
               "backward: input {} of '{}' ({}{}) was modified in place after the op used it", i,
               name(), inputs[i].dtype, inputs[i].shape);
  }
  Tensor output;
  if (saved_output_.defined()) {
    TIDE_CHECK(saved_output_.storage()->version() == saved_output_version_,
               "backward: the output of '{}' ({}) was modified in place after the op saved it",
               name(), saved_output_.describe());
    // Re-attach the saved output to this node so that a differentiable
    // backward (create_graph) can propagate through its use of the output.
    output = detach(saved_output_);
    if (GradMode::is_enabled()) {
      AutogradMeta& meta = output.autograd_meta();
      meta.requires_grad = true;
      meta.grad_fn = shared_from_this();
    }
  }
  return backward_(grad_output, output);
}

void FunctionNode::release() {
  released_ = true;
  backward_ = nullptr;
  saved_output_ = Tensor();
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor leaf(leaf_);
  AutogradMeta& meta = leaf.autograd_meta();
  TIDE_CHECK(grad_output.shape() == leaf.shape() && grad_output.dtype() == leaf.dtype(),
             "backward: gradient {} does not match leaf {}", grad_output.describe(),
             leaf.describe());
  // With create_graph the accumulated gradient keeps its graph; otherwise it is
  // plain data that later steps (optimizers) may update in place.
  Tensor incoming = GradMode::is_enabled() ? grad_output : detach(grad_output);
  if (!meta.grad.defined()) {
    meta.grad = GradMode::is_enabled() ? incoming : kernels::clone(incoming);
  } else {
    meta.grad = add(meta.grad, incoming);
  }
  return {};
}

// ---------------------------------------------------------------------------
// Grad mode and recording
// ---------------------------------------------------------------------------

static thread_local bool t_grad_enabled = true;
bool GradMode::is_enabled() {
  return t_grad_enabled;
}
void GradMode::set_enabled(bool enabled) {
  t_grad_enabled = enabled;
}

bool needs_grad_any(const std::vector<Tensor>& tensors) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn()};
  // A leaf: reuse its accumulator while anything holds it, so that all uses of
  // the leaf in one graph meet in one node.
  AutogradMeta& meta = const_cast<Tensor&>(t).autograd_meta();
  // Threads recording graphs through the same leaf (one model shared by
  // several inference threads) would race on its accumulator slot.
  static std::mutex accumulator_mutex;
  std::lock_guard<std::mutex> lock(accumulator_mutex);
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    meta.grad_accumulator = acc;
  }
  return {acc};
}

void record(const char* name, const std::vector<Tensor>& inputs, Tensor& output,
            BackwardFn backward, SaveOutput save_output) {
  // Edges first: a leaf's accumulator created here must be older than the
  // node, so that sequence numbers order every node after its inputs' nodes.
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& in : inputs) edges.push_back(gradient_edge(in));
  Tensor saved = save_output == SaveOutput::Yes ? detach(output) : Tensor();
  auto node = std::make_shared<FunctionNode>(name, std::move(backward), std::move(saved));
  node->next_edges = std::move(edges);
  node->inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    if (in.defined()) {
      node->inputs.push_back({in.shape(), in.dtype(), in.storage(), in.storage()->version()});
    } else {
      node->inputs.push_back({});
    }
  }
  if (detect_anomaly_enabled()) [[unlikely]]
    detail::check_forward_anomaly(name, inputs, output, *node);
  AutogradMeta& meta = output.autograd_meta();
  meta.requires_grad = true;
  meta.grad_fn = std::move(node);
}

Tensor detach(const Tensor& x) {
  TIDE_CHECK(x.defined(), "detach: got an undefined tensor");
  return Tensor(
      std::make_shared<TensorImpl>(x.storage(), x.offset(), x.shape(), x.strides(), x.dtype()));
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

namespace {

struct Task {
  Node* node;
  bool operator<(const Task& other) const {
    return node->sequence_nr() < other.node->sequence_nr();
  }
};

// Runs the graph below `roots`. When `capture` is non-empty (grad()), the
// gradients arriving at those nodes are returned and leaves are not touched.
std::vector<Tensor> run_backward(const std::vector<Tensor>& outputs,
                                 const std::vector<Tensor>& grad_outputs,
                                 const std::vector<Edge>& capture, bool accumulate_into_leaves,
                                 bool retain_graph, bool create_graph, const char* api) {
  TIDE_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(),
             "{}: got {} gradients for {} outputs", api, grad_outputs.size(), outputs.size());
  std::unordered_map<Node*, Tensor> buffers;
  std::vector<Node*> roots;
  std::vector<std::shared_ptr<Node>> keep_alive;  // roots may be owned only by outputs

  auto accumulate = [&](Node* node, const Tensor& grad) {
    Tensor& slot = buffers[node];
    slot = slot.defined() ? add(slot, grad) : grad;
  };

  GradModeGuard mode(create_graph);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    TIDE_CHECK(out.defined(), "{}: output {} is undefined", api, i);
    TIDE_CHECK(out.requires_grad(), "{}: output {} ({}) does not require grad and has no grad_fn",
               api, i, out.describe());
    Tensor g = grad_outputs.empty() ? Tensor() : grad_outputs[i];
    if (!g.defined()) {
      TIDE_CHECK(out.numel() == 1,
                 "{}: output {} is {}, not a scalar; pass a gradient of the same shape", api, i,
                 out.describe());
      g = kernels::to_dtype(kernels::scalar_like(1.0, out), out.dtype());
      g = kernels::reshape(g, out.shape().vec());
    } else {
      TIDE_CHECK(g.shape() == out.shape() && g.dtype() == out.dtype(),
                 "{}: gradient {} does not match output {} ({})", api, g.describe(), i,
                 out.describe());
    }
    Edge edge = gradient_edge(out);
    keep_alive.push_back(edge.node);
    roots.push_back(edge.node.get());
    accumulate(edge.node.get(), g);
  }

  // Collect the reachable graph in post-order (every node after all the nodes
  // its edges lead to), with an explicit stack: graphs of long ODE solves are
  // too deep for recursion.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack;
  for (Node* root : roots) {
    if (!seen.insert(root).second) continue;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->next_edges.size()) {
        Node* child = node->next_edges[next++].node.get();
        if (child && seen.insert(child).second) stack.push_back({child, 0});
      } else {
        order.push_back(node);
        stack.pop_back();
      }
    }
  }

  // Which nodes must run: in backward() every node; in grad() only nodes from
  // which a captured node can be reached (others cannot affect the result).
  std::unordered_map<Node*, size_t> capture_index;
  for (size_t i = 0; i < capture.size(); ++i)
    if (capture[i].node) capture_index[capture[i].node.get()] = i;
  std::unordered_set<Node*> needed;
  for (Node* node : order) {  // post-order: successors are decided first
    bool need = accumulate_into_leaves || capture_index.count(node) > 0;
    for (const Edge& e : node->next_edges)
      if (e.node && needed.count(e.node.get())) need = true;
    if (need) needed.insert(node);
  }
  std::unordered_map<Node*, int> dependencies;
  for (Node* node : order) {
    if (!needed.count(node)) continue;
    for (const Edge& e : node->next_edges)
      if (e.node && needed.count(e.node.get())) ++dependencies[e.node.get()];
  }

  std::vector<Tensor> captured(capture.size());
  std::priority_queue<Task> ready;
  for (Node* root : roots)
    if (needed.count(root) && dependencies[root] == 0) {
      dependencies[root] = -1;  // queued
      ready.push({root});
    }

  while (!ready.empty()) {
    Node* node = ready.top().node;
    ready.pop();
    Tensor grad = std::move(buffers[node]);
    buffers.erase(node);
    auto hit = capture_index.find(node);
    if (hit != capture_index.end()) {
      // Every capture slot pointing at this node gets the same gradient.
      for (size_t i = 0; i < capture.size(); ++i)
        if (capture[i].node.get() == node) captured[i] = grad;
    }
    bool is_leaf_sink = dynamic_cast<AccumulateGrad*>(node) != nullptr;
    if (is_leaf_sink && !accumulate_into_leaves) continue;

    uint64_t needed_inputs = 0;
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      Node* next = node->next_edges[i].node.get();
      if (i >= 64 || (next && needed.count(next))) needed_inputs |= uint64_t{1} << (i & 63);
    }
    NeededInputsScope scope(needed_inputs);
    std::vector<Tensor> input_grads =
        detect_anomaly_enabled() ? detail::apply_checked(*node, grad) : node->apply(grad);
    if (!retain_graph) node->release();
    TIDE_CHECK(is_leaf_sink || input_grads.size() == node->next_edges.size(),
               "backward of '{}' returned {} gradients for {} inputs", node->name(),
               input_grads.size(), node->next_edges.size());
    for (size_t i = 0; i < input_grads.size(); ++i) {
      Node* next = node->next_edges[i].node.get();
      if (!next || !needed.count(next)) continue;
      const Tensor& g = input_grads[i];
      if (g.defined()) {
        const InputInfo& info = node->inputs[i];
        TIDE_CHECK(g.shape() == info.shape && g.dtype() == info.dtype,
                   "backward of '{}' produced a gradient {} for input {} of type {}{}",
                   node->name(), g.describe(), i, info.dtype, info.shape);
        accumulate(next, g);
      }
      if (--dependencies[next] == 0) {
        if (buffers.count(next)) {
          ready.push({next});
        } else {
          // Nothing flowed into this branch (all gradients undefined): skip
          // it, but still release its dependents' counts.
          std::vector<Node*> skip{next};
          while (!skip.empty()) {
            Node* s = skip.back();
            skip.pop_back();
            for (const Edge& e : s->next_edges) {
              Node* n = e.node.get();
              if (!n || !needed.count(n)) continue;
              if (--dependencies[n] == 0) {
                if (buffers.count(n))
                  ready.push({n});
                else
                  skip.push_back(n);
              }
            }
          }
        }
      }
    }
  }
  return captured;
}

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              bool retain_graph, bool create_graph) {
  run_backward(outputs, grad_outputs, {}, true, retain_graph || create_graph, create_graph,
               "backward");
}

void backward(const Tensor& output, const Tensor& grad_output, bool retain_graph,
              bool create_graph) {
  backward(std::vector<Tensor>{output}, std::vector<Tensor>{grad_output}, retain_graph,
           create_graph);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, GradOptions options) {
  std::vector<Edge> capture;
  capture.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    TIDE_CHECK(inputs[i].defined() && inputs[i].requires_grad(),
               "grad: input {} ({}) does not require grad", i, inputs[i].describe());
    capture.push_back(gradient_edge(inputs[i]));
  }
  std::vector<Tensor> result =
      run_backward(outputs, grad_outputs, capture, false,
                   options.retain_graph || options.create_graph, options.create_graph, "grad");
  for (size_t i = 0; i < result.size(); ++i) {
    if (result[i].defined()) continue;
    TIDE_CHECK(options.allow_unused,
               "grad: input {} ({}) was not used to compute the outputs; pass allow_unused=true", i,
               inputs[i].describe());
  }
  return result;
}

}  // namespace tide
