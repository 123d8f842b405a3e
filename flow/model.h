// Velocity-field models for flow matching, and the model files that carry
// them between `tide train`, `tide sample`, `tide loglik` and PyTorch.
//
// A VelocityField is an nn::Module with a two-input forward v(x, t): x is a
// batch of states [B, d] and t one time per row [B] (t = 0 the source, t = 1
// the data; shared/reference/flow-matching.md, section 1). as_fn() adapts it to
// the VelocityFn of flow/ode.h, which the solvers and flow/likelihood.h take.
//
// VelocityMLP is the reference 2-D network (reference section 8, torchcfm's
// `MLP(dim, w=64, time_varying=True)`): one child "net" built by nn::mlp with
// dim + 1 inputs, and t appended as the LAST input column. Its parameter names
// are therefore "net.0.weight", "net.0.bias", "net.2.weight", ..., exactly a
// torchcfm state dict's, so PyTorch weights load by name.
//
// Model files are safetensors (nn/safetensors.h) whose "__metadata__" records
// the architecture next to the weights:
//
//   "tide.arch"          "mlp"
//   "tide.dim"           "2"        the data dimension d
//   "tide.width"         "64"
//   "tide.hidden_layers" "3"        the number of activations
//   "tide.activation"    "selu"
//
// plus whatever the caller adds (train_cfm's TrainResult::metadata records the
// path, matcher and source, e.g. "tide.path" = "ve", "tide.source" =
// "gaussian", "tide.source_std" = "10", "tide.sigma_max" = "10"). So
// load_model(path) rebuilds the model from the file alone; a PyTorch state dict
// (no such metadata) loads with the architecture given explicitly.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "flow/likelihood.h"
#include "flow/ode.h"
#include "nn/container.h"
#include "nn/module.h"
#include "nn/safetensors.h"

namespace tide::flow {

// The free-form string metadata of a model file.
using ModelMetadata = io::MetadataMap;

// --- VelocityField -----------------------------------------------------------

// The base of every learned velocity field v_theta(x, t).
//
// Contract for subclasses:
//   forward(x, t) requires x [B, d] floating point (d == dim()) and t [B] of
//   x's dtype and device; ensures a result [B, d] of x's dtype, differentiable
//   with respect to x and the parameters. It must not read t's gradient (t
//   never requires one) and must treat each row independently (the exact
//   divergence in flow/likelihood.h replicates the batch).
class VelocityField : public nn::Module {
 public:
  virtual Tensor forward(const Tensor& x, const Tensor& t) = 0;
  Tensor operator()(const Tensor& x, const Tensor& t) { return forward(x, t); }
  using nn::Module::forward;
  using nn::Module::operator();

  // The data dimension d.
  virtual int64_t dim() const = 0;

  // The architecture as model-file metadata ("tide.arch" and its options), so
  // that load_model(path) can rebuild it. Empty for a field that does not
  // describe itself: save_model still writes its weights, and they load into
  // an existing instance with load_weights.
  virtual ModelMetadata architecture() const { return {}; }

  // This field as a flow/ode.h VelocityFn. The function refers to this module
  // (no copy): the module must outlive it.
  VelocityFn as_fn();

  // v(x, t) and the exact divergence div v = trace(dv/dx) per row ([B], of
  // dtype `accumulate`), as values without a graph: what log-likelihoods
  // need. The default replicates the batch d times and takes one reverse pass
  // (flow/likelihood.h exact_divergence); a field that knows its structure
  // overrides it with something cheaper.
  virtual VelocityDivergence velocity_and_divergence(const Tensor& x, const Tensor& t,
                                                     DType accumulate);

  // The dtype and device of the parameters (the first parameter's; float32 on
  // the CPU for a field without parameters).
  DType dtype() const;
  Device device() const;
};

// --- VelocityMLP ---------------------------------------------------------------

struct VelocityMLPOptions {
  int64_t dim = 2;                  // data dimension d: input d + 1, output d
  int64_t width = 64;               // hidden units per layer
  int64_t hidden_layers = 3;        // activations (Linear layers: + 1)
  std::string activation = "selu";  // any nn::make_activation name
  Generator* generator = nullptr;   // initial values; null: default_generator()
};

// torchcfm's MLP with time appended: v(x, t) = net(concat(x, t)), where
//   net = Linear(d + 1, W), [act, Linear(W, W)] x (L - 1), act, Linear(W, d).
// Linear + activation pairs run fused (nn::Sequential), one matmul each.
//   auto model = std::make_shared<VelocityMLP>(VelocityMLPOptions{.dim = 2});
//   Tensor v = (*model)(x, t);  // x [B, 2], t [B]
class VelocityMLP : public VelocityField {
 public:
  explicit VelocityMLP(const VelocityMLPOptions& options = {});

  // x [B, d]; t [B] (also accepted: [B, 1], or one time as a 0-d or [1]
  // tensor, broadcast over the batch). t is converted to x's dtype.
  Tensor forward(const Tensor& x, const Tensor& t) override;
  // The torchcfm calling convention: input [B, d + 1] with t as the last
  // column.
  Tensor forward(const Tensor& xt) override { return net_->forward(xt); }

  int64_t dim() const override { return options_.dim; }
  ModelMetadata architecture() const override;

  // Forward-mode: carries the d tangents dh/dx_i ([B, d, W]) through the
  // layers next to h, so the divergence costs one evaluation plus d tangent
  // matrix products per hidden layer, with no graph and no weight gradients.
  // The last layer only needs the diagonal: div = sum_i <T_i, W_last[i]>.
  VelocityDivergence velocity_and_divergence(const Tensor& x, const Tensor& t,
                                             DType accumulate) override;
  const VelocityMLPOptions& options() const { return options_; }
  const std::shared_ptr<nn::Sequential>& net() const { return net_; }
  std::string type_name() const override { return "VelocityMLP"; }

 protected:
  std::string extra_repr() const override;

 private:
  // [x, t] as the net's input [B, d + 1], after checking both.
  Tensor input_with_time(const Tensor& x, const Tensor& t) const;

  VelocityMLPOptions options_;
  std::shared_ptr<nn::Sequential> net_;
};

// Reads the architecture keys of `metadata` (tide.dim, tide.width,
// tide.hidden_layers, tide.activation; tide.arch must be "mlp"). Throws
// tide::Error naming `file` (for the message) and the missing or malformed key.
VelocityMLPOptions mlp_options_from_metadata(const ModelMetadata& metadata,
                                             const std::string& file = "<metadata>");

// --- architectures by name ------------------------------------------------------

// Builds a field from a model file's metadata (its "tide.*" keys).
using ArchitectureFactory =
    std::function<std::shared_ptr<VelocityField>(const ModelMetadata& metadata)>;

// Makes load_model(path) able to rebuild files whose "tide.arch" is `name`
// (the custom field's architecture() must write that name). "mlp" is built in.
// Registering a name again replaces its factory.
void register_architecture(const std::string& name, ArchitectureFactory factory);

// --- model files -------------------------------------------------------------

struct LoadedModel {
  std::shared_ptr<VelocityField> model;
  ModelMetadata metadata;  // the file's whole __metadata__
};

// Writes the model's parameters and buffers (its state_dict, under their
// dotted names) atomically to a safetensors file, with the architecture
// (model.architecture()) and `extra` in __metadata__ ("format" = "pt" too, so
// Python's safetensors.torch loads it). Keys of `extra` override the others.
void save_model(const std::filesystem::path& path, const VelocityField& model,
                const ModelMetadata& extra = {});

// Rebuilds the model described by the file's metadata ("tide.arch" and its
// keys) and loads its weights (strict: every parameter, no extra tensors). The
// model takes the dtype of the stored weights (float32, or float64 for F64
// files). Throws tide::Error naming the file and the missing key, or listing
// the mismatched tensors.
LoadedModel load_model(const std::filesystem::path& path);

// A state dict without architecture metadata (a torchcfm checkpoint saved with
// safetensors.torch.save_file(model.state_dict(), ...)): builds a VelocityMLP
// from `arch` and loads strictly. Any metadata in the file is returned but not
// used. A mismatch throws tide::Error naming the file and listing every
// missing, unexpected and mis-shaped key with both shapes.
LoadedModel load_model(const std::filesystem::path& path, const VelocityMLPOptions& arch);

// Loads a model file's weights into an existing field (strict), e.g. a custom
// field that did not register its architecture. Returns the file's metadata.
ModelMetadata load_weights(const std::filesystem::path& path, VelocityField& model);

// The standard deviation of the Gaussian source a model was trained with:
// "tide.source_std" when present, else "tide.sigma_max" for the VE path, else 1.
double source_std_from_metadata(const ModelMetadata& metadata);

}  // namespace tide::flow
