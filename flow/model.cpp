#include "flow/model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <mutex>

#include "autograd/anomaly.h"
#include "nn/activation.h"
#include "nn/linear.h"
#include "nn/mlp.h"

namespace tide::flow {

// ---------------------------------------------------------------------------
// VelocityField
// ---------------------------------------------------------------------------

VelocityFn VelocityField::as_fn() {
  return [this](const Tensor& x, const Tensor& t) { return forward(x, t); };
}

VelocityDivergence VelocityField::velocity_and_divergence(const Tensor& x, const Tensor& t,
                                                          DType accumulate) {
  return exact_divergence(as_fn(), x, t, accumulate);
}

DType VelocityField::dtype() const {
  auto params = parameters();
  return params.empty() ? DType::Float32 : params.front().dtype();
}

Device VelocityField::device() const {
  auto params = parameters();
  return params.empty() ? Device::cpu() : params.front().device();
}

// ---------------------------------------------------------------------------
// VelocityMLP
// ---------------------------------------------------------------------------

VelocityMLP::VelocityMLP(const VelocityMLPOptions& options) : options_(options) {
  TIDE_CHECK(options.dim > 0 && options.width > 0 && options.hidden_layers >= 0,
             "VelocityMLP: need dim, width > 0 and hidden_layers >= 0, got dim={}, width={}, "
             "hidden_layers={}",
             options.dim, options.width, options.hidden_layers);
  // Input: x with t as the last column (torchcfm's time_varying layout).
  net_ = register_module("net", nn::mlp({.in = options.dim + 1,
                                         .out = options.dim,
                                         .width = options.width,
                                         .hidden_layers = options.hidden_layers,
                                         .activation = options.activation,
                                         .generator = options.generator}));
}

Tensor VelocityMLP::input_with_time(const Tensor& x, const Tensor& t) const {
  TIDE_CHECK(x.defined() && t.defined(), "VelocityMLP: x and t must be defined tensors");
  TIDE_CHECK(x.dim() == 2 && x.size(1) == options_.dim,
             "VelocityMLP: x must be [B, {}] (the model's dim), got {}", options_.dim, x.shape());
  const int64_t batch = x.size(0);
  Tensor time = t.dtype() == x.dtype() ? t : tide::to(t, x.dtype());
  if (time.numel() == 1 && batch != 1) {
    // One time shared by the batch: a broadcast column, no copy until cat.
    time = expand(reshape(time, {1, 1}), {batch, 1});
  } else {
    TIDE_CHECK((time.dim() == 1 && time.size(0) == batch) ||
                   (time.dim() == 2 && time.size(0) == batch && time.size(1) == 1),
               "VelocityMLP: t must be [B] (one time per row of x {}), [B, 1] or a single "
               "time, got {}",
               x.shape(), t.shape());
    if (time.dim() == 1) time = unsqueeze(time, 1);
  }
  return cat({x, time}, 1);
}

Tensor VelocityMLP::forward(const Tensor& x, const Tensor& t) {
  Tensor input = input_with_time(x, t);
  ModuleScope scope("net");  // anomaly messages name "net.2", like the parameters
  return net_->forward(input);
}

VelocityDivergence VelocityMLP::velocity_and_divergence(const Tensor& x, const Tensor& t,
                                                        DType accumulate) {
  TIDE_CHECK(is_floating(accumulate),
             "VelocityMLP::velocity_and_divergence: accumulate dtype must be floating, got {}",
             accumulate);
  // Only chains of Linear and elementwise activations are handled here.
  const size_t n = net_->size();
  for (size_t i = 0; i < n; ++i) {
    const auto& m = (*net_)[i];
    bool is_linear = dynamic_cast<nn::Linear*>(m.get()) != nullptr;
    if (!is_linear && dynamic_cast<nn::Activation*>(m.get()) == nullptr)
      return VelocityField::velocity_and_divergence(x, t, accumulate);
  }
  NoGradGuard no_grad;
  Tensor h = input_with_time(x, t);
  const int64_t batch = x.size(0), d = options_.dim;
  // tangent [d, B, features]: block i holds dh/dx_i for every row. Tangent
  // index first, so the per-row activation slope [B, features] broadcasts
  // over whole contiguous blocks and the products are one [d*B, in] matmul.
  Tensor tangent;  // undefined before the first Linear
  Tensor divergence;
  for (size_t i = 0; i < n; ++i) {
    const auto& m = (*net_)[i];
    if (auto* linear = dynamic_cast<nn::Linear*>(m.get())) {
      const Tensor& w = linear->weight();  // [out, in]
      const int64_t out = w.size(0), in = w.size(1);
      if (i + 1 == n) {
        // The output layer: only dv_i/dx_i is needed, <W[i, :], tangent i>,
        // as d products [B, in] @ [in, 1].
        if (!tangent.defined()) {
          // A single Linear: the Jacobian is W[:, :d], the same for every row.
          Tensor eye_d = eye(d, {.dtype = w.dtype(), .device = w.device()});
          divergence = expand(reshape(sum(mul(slice(w, 1, 0, d), eye_d)), {1}), {batch});
        } else {
          Tensor diagonal = matmul(tangent, unsqueeze(w, 2));  // [d, B, 1]
          divergence = sum(tide::to(diagonal, accumulate), {0, 2});
        }
        h = linear->forward(h);
        continue;
      }
      if (!tangent.defined()) {
        // d(W [x, t] + b)/dx_i is column i of W, the same for every row.
        // Copied to [d, 1, out] first, so that the kernels below read it
        // along unit strides (a transposed view would make them scalar).
        Tensor columns = contiguous(transpose(slice(w, 1, 0, d), 0, 1));
        tangent = expand(unsqueeze(columns, 1), {d, batch, out});
      } else {
        tangent =
            reshape(matmul(reshape(tangent, {d * batch, in}), transpose(w, 0, 1)), {d, batch, out});
      }
      // "Linear, activation" with a matmul epilogue: fuse the activation
      // into the matmul (as Sequential does) and scale the tangents by f'
      // computed from its output, in one kernel over the d tangents.
      auto* next = dynamic_cast<nn::Activation*>((*net_)[i + 1].get());
      if (next != nullptr && next->epilogue() != Epilogue::None) {
        h = linear->forward(h, next->epilogue());
        tangent = epilogue_grad(next->epilogue(), tangent, h);
        ++i;
      } else {
        h = linear->forward(h);
      }
    } else {
      auto& activation = static_cast<nn::Activation&>(*m);
      Tensor y = activation.forward(h);
      if (tangent.defined()) tangent = activation.jvp(h, y, tangent);
      h = y;
    }
  }
  return {h, tide::to(divergence, accumulate)};
}

ModelMetadata VelocityMLP::architecture() const {
  return {{"tide.arch", "mlp"},
          {"tide.dim", std::to_string(options_.dim)},
          {"tide.width", std::to_string(options_.width)},
          {"tide.hidden_layers", std::to_string(options_.hidden_layers)},
          {"tide.activation", options_.activation}};
}

std::string VelocityMLP::extra_repr() const {
  return fmt::format("dim={}, width={}, hidden_layers={}, activation={}", options_.dim,
                     options_.width, options_.hidden_layers, options_.activation);
}

namespace {

const std::string& require_key(const ModelMetadata& metadata, const std::string& key,
                               const std::string& file) {
  auto it = metadata.find(key);
  TIDE_CHECK(it != metadata.end(),
             "load_model: '{}' has no \"{}\" in its __metadata__; a file written by save_model "
             "records the architecture, and a PyTorch state dict needs it given explicitly "
             "(--arch mlp --dim D --width W --hidden-layers L --activation A)",
             file, key);
  return it->second;
}

int64_t parse_positive(const ModelMetadata& metadata, const std::string& key,
                       const std::string& file, int64_t min_value) {
  const std::string& text = require_key(metadata, key, file);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  TIDE_CHECK(ec == std::errc() && end == text.data() + text.size() && value >= min_value,
             "load_model: '{}': metadata \"{}\" = \"{}\" is not an integer >= {}", file, key, text,
             min_value);
  return value;
}

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::string, ArchitectureFactory>& registry() {
  static std::map<std::string, ArchitectureFactory> factories = {
      {"mlp", [](const ModelMetadata& metadata) -> std::shared_ptr<VelocityField> {
         return std::make_shared<VelocityMLP>(mlp_options_from_metadata(metadata));
       }}};
  return factories;
}

// Loads the file's tensors into `model` strictly, converting the model to the
// stored floating dtype first; errors are prefixed with the file name.
void load_tensors_into(const io::SafetensorsFile& file, VelocityField& model,
                       const std::string& name) {
  for (const auto& [key, tensor] : file.tensors) {
    if (tensor.is_floating_point()) {
      if (tensor.dtype() != model.dtype()) model.to(tensor.dtype());
      break;
    }
  }
  try {
    model.load_state_dict(file.tensors, /*strict=*/true);
  } catch (const Error& e) {
    fail("load_model: '{}' does not match the architecture {}: {}", name, model.repr(), e.what());
  }
}

}  // namespace

VelocityMLPOptions mlp_options_from_metadata(const ModelMetadata& metadata,
                                             const std::string& file) {
  const std::string& arch = require_key(metadata, "tide.arch", file);
  TIDE_CHECK(arch == "mlp", "load_model: '{}': \"tide.arch\" is \"{}\", not \"mlp\"", file, arch);
  VelocityMLPOptions options;
  options.dim = parse_positive(metadata, "tide.dim", file, 1);
  options.width = parse_positive(metadata, "tide.width", file, 1);
  options.hidden_layers = parse_positive(metadata, "tide.hidden_layers", file, 0);
  options.activation = require_key(metadata, "tide.activation", file);
  try {
    nn::make_activation(options.activation);
  } catch (const Error& e) {
    fail("load_model: '{}': metadata \"tide.activation\" = \"{}\" is not an activation: {}", file,
         options.activation, e.what());
  }
  return options;
}

void register_architecture(const std::string& name, ArchitectureFactory factory) {
  TIDE_CHECK(!name.empty() && factory, "register_architecture: need a name and a factory");
  std::lock_guard lock(registry_mutex());
  registry()[name] = std::move(factory);
}

// ---------------------------------------------------------------------------
// Model files
// ---------------------------------------------------------------------------

void save_model(const std::filesystem::path& path, const VelocityField& model,
                const ModelMetadata& extra) {
  ModelMetadata metadata = model.architecture();
  metadata["format"] = "pt";
  for (const auto& [key, value] : extra) metadata[key] = value;
  io::write_safetensors(path, model.state_dict(), metadata);
}

LoadedModel load_model(const std::filesystem::path& path) {
  io::SafetensorsFile file = io::read_safetensors(path);
  const std::string name = path.string();
  const std::string& arch = require_key(file.metadata, "tide.arch", name);
  ArchitectureFactory factory;
  std::vector<std::string> known;
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(arch);
    if (it != registry().end()) factory = it->second;
    for (const auto& [key, value] : registry()) known.push_back(key);
  }
  TIDE_CHECK(factory != nullptr,
             "load_model: '{}': unknown architecture \"tide.arch\" = \"{}\" (known: {}; a custom "
             "field must be registered with register_architecture)",
             name, arch, fmt::join(known, ", "));
  std::shared_ptr<VelocityField> model;
  if (arch == "mlp") {
    // Built here (not through the factory) so that errors name the file.
    model = std::make_shared<VelocityMLP>(mlp_options_from_metadata(file.metadata, name));
  } else {
    model = factory(file.metadata);
    TIDE_CHECK(model != nullptr, "load_model: '{}': the factory for \"{}\" returned no model", name,
               arch);
  }
  load_tensors_into(file, *model, name);
  return {model, std::move(file.metadata)};
}

LoadedModel load_model(const std::filesystem::path& path, const VelocityMLPOptions& arch) {
  io::SafetensorsFile file = io::read_safetensors(path);
  auto model = std::make_shared<VelocityMLP>(arch);
  load_tensors_into(file, *model, path.string());
  return {model, std::move(file.metadata)};
}

ModelMetadata load_weights(const std::filesystem::path& path, VelocityField& model) {
  io::SafetensorsFile file = io::read_safetensors(path);
  load_tensors_into(file, model, path.string());
  return std::move(file.metadata);
}

double source_std_from_metadata(const ModelMetadata& metadata) {
  for (const char* key : {"tide.source_std", "tide.sigma_max"}) {
    auto it = metadata.find(key);
    if (it == metadata.end()) continue;
    try {
      size_t used = 0;
      double value = std::stod(it->second, &used);
      if (used == it->second.size() && value > 0) return value;
    } catch (const std::exception&) {
    }
    fail("source_std_from_metadata: \"{}\" = \"{}\" is not a positive number", key, it->second);
  }
  return 1.0;
}

}  // namespace tide::flow
