// Training checkpoints: everything needed to resume a run, in one safetensors
// file written atomically (a crash mid-save leaves the previous checkpoint).
//
// Tensors in the file, by prefix:
//   model.<name>        the model's state_dict (parameters and buffers)
//   optim.<key>         the optimizer's state_dict (moments, step counts, lrs)
//   ema.<key>           the EMA's state_dict (shadow weights, update count)
//   sched.<key>         the learning-rate scheduler's state_dict
//   generator.seed      the Generator's (seed, offset), as 0-d int64 tensors
//   generator.offset      holding the uint64 bit patterns
//   step                the training step, a 0-d int64 tensor
// and in the metadata: tide.format = "checkpoint", tide.version = "1",
// tide.parts (which of the parts above are present), the optimizer and
// scheduler type names, plus any user metadata.
//
// Resuming from a checkpoint continues bit-identically: same parameters, same
// optimizer moments, same random numbers as a run that never stopped.
//
//   nn::save_checkpoint("ckpt.safetensors", {.model = &model, .optimizer = &opt,
//                                             .ema = &ema, .generator = &gen, .step = step});
//   nn::Checkpoint resume{.model = &model, .optimizer = &opt, .ema = &ema, .generator = &gen};
//   nn::load_checkpoint("ckpt.safetensors", resume);  // resume.step is the saved step
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "nn/ema.h"
#include "nn/lr_scheduler.h"
#include "nn/module.h"
#include "nn/optimizer.h"
#include "tensor/generator.h"

namespace tide::nn {

// The objects a checkpoint saves from or loads into. Every pointer is
// optional; null parts are not saved (or not loaded).
struct Checkpoint {
  Module* model = nullptr;
  Optimizer* optimizer = nullptr;
  EMA* ema = nullptr;
  LRScheduler* scheduler = nullptr;
  Generator* generator = nullptr;
  int64_t step = 0;
  // Free-form strings saved alongside (a config, a git hash). Keys starting
  // with "tide." are reserved.
  std::map<std::string, std::string> metadata;
};

// Saves every non-null part, the step and the metadata, atomically.
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint);

// Loads into every non-null part of `checkpoint` and sets its step and
// metadata from the file. Each requested part must be in the file (parts in
// the file that are not requested are ignored, e.g. loading only the model
// for evaluation). The model is loaded strictly: missing, unexpected or
// mismatched keys are all listed in the error. The optimizer and scheduler
// must be of the types that were saved. Errors name the file and the part;
// a part that fails may leave the parts before it already loaded.
void load_checkpoint(const std::filesystem::path& path, Checkpoint& checkpoint);

}  // namespace tide::nn
