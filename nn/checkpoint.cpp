#include "nn/checkpoint.h"

#include <bit>
#include <set>
#include <vector>

#include "nn/safetensors.h"
#include "tensor/creation.h"

namespace tide::nn {

namespace {

constexpr const char* kFormat = "checkpoint";
constexpr const char* kVersion = "1";

// The parts of a checkpoint: a name in tide.parts and a tensor-name prefix.
constexpr const char* kModel = "model";
constexpr const char* kOptim = "optim";
constexpr const char* kEma = "ema";
constexpr const char* kSched = "sched";
constexpr const char* kGenerator = "generator";

// A 0-d int64 tensor (built from the integer directly: a double could not
// hold every int64).
Tensor int64_scalar(int64_t value) {
  return from_vector(std::vector<int64_t>{value}, Shape{});
}

void add_part(io::TensorMap& out, const std::string& prefix, const StateDict& state) {
  for (const auto& [key, value] : state) out.emplace(prefix + "." + key, value);
}

// The tensors under "prefix." with the prefix removed.
StateDict take_part(const io::TensorMap& tensors, const std::string& prefix) {
  StateDict part;
  const std::string p = prefix + ".";
  for (const auto& [key, value] : tensors)
    if (key.compare(0, p.size(), p) == 0) part.emplace(key.substr(p.size()), value);
  return part;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

std::set<std::string> split(const std::string& text) {
  std::set<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.insert(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A 0-d int64 tensor from the file, by name.
int64_t read_int64(const std::string& where, const io::TensorMap& tensors,
                   const std::string& name) {
  auto it = tensors.find(name);
  TIDE_CHECK(it != tensors.end(), "load_checkpoint: '{}': missing tensor '{}'", where, name);
  const Tensor& t = it->second;
  TIDE_CHECK(t.dtype() == DType::Int64 && t.dim() == 0,
             "load_checkpoint: '{}': tensor '{}' must be a 0-d int64, got {}", where, name,
             t.describe());
  return t.to_vector<int64_t>()[0];
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint) {
  const std::string where = path.string();
  io::TensorMap tensors;
  io::MetadataMap metadata;
  for (const auto& [key, value] : checkpoint.metadata) {
    TIDE_CHECK(key.rfind("tide.", 0) != 0,
               "save_checkpoint: '{}': metadata key '{}' is reserved (keys starting with "
               "'tide.' are Tide's own)",
               where, key);
    metadata[key] = value;
  }

  std::vector<std::string> parts;
  if (checkpoint.model) {
    add_part(tensors, kModel, checkpoint.model->state_dict());
    parts.push_back(kModel);
  }
  if (checkpoint.optimizer) {
    add_part(tensors, kOptim, checkpoint.optimizer->state_dict());
    metadata["tide.optimizer"] = checkpoint.optimizer->type_name();
    parts.push_back(kOptim);
  }
  if (checkpoint.ema) {
    add_part(tensors, kEma, checkpoint.ema->state_dict());
    parts.push_back(kEma);
  }
  if (checkpoint.scheduler) {
    add_part(tensors, kSched, checkpoint.scheduler->state_dict());
    metadata["tide.scheduler"] = checkpoint.scheduler->type_name();
    parts.push_back(kSched);
  }
  if (checkpoint.generator) {
    // uint64 has no Tide dtype; int64 holds the same 64 bits.
    GeneratorState state = checkpoint.generator->state();
    tensors["generator.seed"] = int64_scalar(std::bit_cast<int64_t>(state.seed));
    tensors["generator.offset"] = int64_scalar(std::bit_cast<int64_t>(state.offset));
    parts.push_back(kGenerator);
  }
  tensors["step"] = int64_scalar(checkpoint.step);
  metadata["tide.format"] = std::string(kFormat);
  metadata["tide.version"] = std::string(kVersion);
  metadata["tide.parts"] = join(parts);
  io::write_safetensors(path, tensors, metadata);
}

void load_checkpoint(const std::filesystem::path& path, Checkpoint& checkpoint) {
  const std::string where = path.string();
  io::SafetensorsFile file = io::read_safetensors(path);
  const io::MetadataMap& meta = file.metadata;
  auto meta_value = [&](const std::string& key) -> std::string {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  TIDE_CHECK(meta_value("tide.format") == kFormat,
             "load_checkpoint: '{}' is not a Tide checkpoint (its metadata has no "
             "tide.format = \"checkpoint\"); to read plain tensors use io::read_safetensors",
             where);
  TIDE_CHECK(meta_value("tide.version") == kVersion,
             "load_checkpoint: '{}': unsupported checkpoint version '{}' (this Tide reads "
             "version {})",
             where, meta_value("tide.version"), kVersion);
  const std::set<std::string> parts = split(meta_value("tide.parts"));

  // Every tensor must belong to a known part: anything else means the file
  // was not written by save_checkpoint (or was edited).
  for (const auto& [name, _] : file.tensors) {
    bool known = name == "step";
    for (const char* part : {kModel, kOptim, kEma, kSched, kGenerator}) {
      std::string prefix = std::string(part) + ".";
      if (name.compare(0, prefix.size(), prefix) == 0) {
        TIDE_CHECK(parts.count(part),
                   "load_checkpoint: '{}': tensor '{}' belongs to part '{}', "
                   "which tide.parts does not list",
                   where, name, part);
        known = true;
      }
    }
    TIDE_CHECK(known, "load_checkpoint: '{}': unexpected tensor '{}'", where, name);
  }

  auto require_part = [&](const char* part, const char* what) {
    TIDE_CHECK(parts.count(part),
               "load_checkpoint: '{}': the checkpoint has no {} (saved parts: {})", where, what,
               meta_value("tide.parts").empty() ? "none" : meta_value("tide.parts"));
  };
  // Errors from the objects' own loaders get the file and part as context.
  auto with_context = [&](const char* part, const auto& load) {
    try {
      load();
    } catch (const Error& e) {
      fail("load_checkpoint: '{}': {}: {}", where, part, e.what());
    }
  };

  if (checkpoint.model) {
    require_part(kModel, "model");
    with_context(kModel,
                 [&] { checkpoint.model->load_state_dict(take_part(file.tensors, kModel)); });
  }
  if (checkpoint.optimizer) {
    require_part(kOptim, "optimizer state");
    std::string saved = meta_value("tide.optimizer");
    TIDE_CHECK(saved == checkpoint.optimizer->type_name(),
               "load_checkpoint: '{}': the checkpoint holds {} state, but the optimizer is {}",
               where, saved, checkpoint.optimizer->type_name());
    with_context(kOptim,
                 [&] { checkpoint.optimizer->load_state_dict(take_part(file.tensors, kOptim)); });
  }
  if (checkpoint.ema) {
    require_part(kEma, "EMA");
    with_context(kEma, [&] { checkpoint.ema->load_state_dict(take_part(file.tensors, kEma)); });
  }
  if (checkpoint.scheduler) {
    require_part(kSched, "scheduler state");
    std::string saved = meta_value("tide.scheduler");
    TIDE_CHECK(saved == checkpoint.scheduler->type_name(),
               "load_checkpoint: '{}': the checkpoint holds {} state, but the scheduler is {}",
               where, saved, checkpoint.scheduler->type_name());
    with_context(kSched,
                 [&] { checkpoint.scheduler->load_state_dict(take_part(file.tensors, kSched)); });
  }
  if (checkpoint.generator) {
    require_part(kGenerator, "generator state");
    GeneratorState state;
    state.seed = std::bit_cast<uint64_t>(read_int64(where, file.tensors, "generator.seed"));
    state.offset = std::bit_cast<uint64_t>(read_int64(where, file.tensors, "generator.offset"));
    checkpoint.generator->set_state(state);
  }
  checkpoint.step = read_int64(where, file.tensors, "step");
  checkpoint.metadata.clear();
  for (const auto& [key, value] : meta)
    if (key.rfind("tide.", 0) != 0) checkpoint.metadata[key] = value;
}

}  // namespace tide::nn
