// StepGraph (see step_graph.h).
#include "flow/step_graph.h"

#include <exception>
#include <utility>

#include "autograd/anomaly.h"

namespace tide::flow {

StepGraph::StepGraph(std::string op, Device device, bool use_graph)
    : op_(std::move(op)), device_(device), use_graph_(use_graph && device.is_cuda()) {}

void StepGraph::run(const std::function<void()>& step) {
  if (!use_graph_) {
    step();
    return;
  }
  if (!graph_) {
    TIDE_CHECK(!detect_anomaly_enabled(),
               "{}: cuda_graph cannot capture a step while anomaly detection is on (it reads "
               "every op's output on the host); turn one of them off",
               op_);
    Backend& backend = backend_for(device_);
    backend.begin_capture();
    try {
      step();
    } catch (const std::exception& e) {
      // Close the capture so the device stays usable, then report the step's error.
      try {
        backend.end_capture();
      } catch (const std::exception&) {
      }
      fail(
          "{}: capturing the step as a CUDA graph on {} failed: {} (set cuda_graph = false to "
          "run it eagerly)",
          op_, device_, e.what());
    }
    graph_ = backend.end_capture();
  }
  graph_->replay();
}

}  // namespace tide::flow
