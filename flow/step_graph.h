// StepGraph: runs one step of a loop (a training step, an ODE solver step)
// either eagerly or as a CUDA Graph captured on its first run and replayed on
// every later one (the cuda_graph options of flow/trainer.h, flow/ode.h and
// flow/likelihood.h).
//
// What a step must do to be captured (shared/reference/backends.md, section 9):
//   - read and write only tensors that outlive the graph and never move
//     (static inputs, parameters, optimizer state), because a replay uses the
//     addresses of the capture;
//   - take every number that changes between steps (a time, a step size, a
//     learning rate) from a tensor on the device, refreshed with a fill before
//     run(); kernel arguments are frozen at capture;
//   - never wait for the device (no item(), to_vector() or printing), and
//     change no host state that later steps depend on: the host code runs only
//     once, while capturing.
// Run the step eagerly at least once before the first capture (a warm-up):
// lazily created state (optimizer moments, matmul plans, gradients) must exist
// before the capture so that it is not created inside it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backends/backend.h"

namespace tide::flow {

class StepGraph {
 public:
  // use_graph on a CUDA device: capture and replay; otherwise (off, or the
  // CPU, which has no graphs) run() calls the step itself. `op` names the
  // caller in error messages ("train_cfm", "solve").
  StepGraph(std::string op, Device device, bool use_graph);

  // Runs the step once: replays the graph, capturing it first if needed; or
  // calls `step` when graphs are off. A step that fails while being captured
  // (e.g. it reads a value on the host) ends the capture and throws
  // tide::Error naming `op`.
  void run(const std::function<void()>& step);

  // Whether run() captures and replays (false on the CPU or when off).
  bool uses_graph() const { return use_graph_; }
  // Whether the graph has been captured.
  bool captured() const { return graph_ != nullptr; }

 private:
  std::string op_;
  Device device_;
  bool use_graph_;
  std::unique_ptr<DeviceGraph> graph_;
};

}  // namespace tide::flow
