#include "nn/container.h"

#include <string>

#include "autograd/anomaly.h"
#include "nn/activation.h"
#include "nn/linear.h"

namespace tide::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& module : modules) append(module);
}

void Sequential::append(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);  // checks for null
  modules_.push_back(std::move(module));
}

const std::shared_ptr<Module>& Sequential::operator[](size_t index) const {
  TIDE_CHECK(index < modules_.size(), "Sequential: index {} is out of range for {} children", index,
             modules_.size());
  return modules_[index];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (size_t i = 0; i < modules_.size(); ++i) {
    // Fuse "Linear, activation" when the activation exists as a matmul epilogue.
    if (fuse_activations_ && i + 1 < modules_.size()) {
      auto* layer = dynamic_cast<Linear*>(modules_[i].get());
      auto* activation = dynamic_cast<Activation*>(modules_[i + 1].get());
      if (layer != nullptr && activation != nullptr && activation->epilogue() != Epilogue::None) {
        ModuleScope scope(i);  // anomaly messages name the Linear's index
        y = layer->forward(y, activation->epilogue());
        ++i;  // the activation has been applied
        continue;
      }
    }
    ModuleScope scope(i);
    y = modules_[i]->forward(y);
  }
  return y;
}

}  // namespace tide::nn
