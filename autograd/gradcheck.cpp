#include "autograd/gradcheck.h"

#include <cmath>

#include "tensor/kernels.h"

namespace tide {

namespace {

// Evaluates fn on copies of the inputs with element k of input i shifted by
// delta; returns the flattened float64 output. Grad mode stays on and the copy
// keeps requires_grad, because gradgradcheck's function calls grad() inside.
std::vector<double> evaluate_shifted(const DifferentiableFn& fn, const std::vector<Tensor>& inputs,
                                     size_t i, int64_t k, double delta) {
  std::vector<Tensor> shifted;
  for (size_t j = 0; j < inputs.size(); ++j) {
    if (j != i) {
      shifted.push_back(inputs[j]);
      continue;
    }
    Tensor copy = kernels::clone(inputs[j]);
    copy.data_ptr<double>()[k] += delta;
    if (inputs[j].requires_grad()) copy.set_requires_grad(true);
    shifted.push_back(copy);
  }
  return fn(shifted).to_vector<double>();
}

void check_inputs(const std::vector<Tensor>& inputs, const char* api) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    TIDE_CHECK(x.defined() && x.dtype() == DType::Float64 && x.device().is_cpu(),
               "{}: input {} must be a float64 CPU tensor, got {}", api, i, x.describe());
  }
}

}  // namespace

bool gradcheck(const DifferentiableFn& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options) {
  check_inputs(inputs, "gradcheck");
  std::vector<Tensor> checked;
  std::vector<size_t> checked_index;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].requires_grad()) checked.push_back(inputs[i]), checked_index.push_back(i);
  TIDE_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  Tensor out = fn(inputs);
  TIDE_CHECK(out.dtype() == DType::Float64, "gradcheck: the function must return float64, got {}",
             out.describe());
  int64_t m = out.numel();
  // Analytic Jacobian, one row (output element) at a time: J[j, :] = grad of
  // out[j] with respect to every checked input.
  std::vector<std::vector<std::vector<double>>> analytic(checked.size());
  for (size_t c = 0; c < checked.size(); ++c)
    analytic[c].assign(static_cast<size_t>(m),
                       std::vector<double>(static_cast<size_t>(checked[c].numel()), 0.0));
  for (int64_t j = 0; j < m; ++j) {
    if (!out.requires_grad()) break;  // constant function: Jacobian is zero
    std::vector<double> onehot(static_cast<size_t>(m), 0.0);
    onehot[j] = 1.0;
    Tensor seed = from_vector(onehot, out.shape());
    std::vector<Tensor> grads =
        grad({out}, checked, {seed}, {.retain_graph = true, .allow_unused = true});
    for (size_t c = 0; c < checked.size(); ++c) {
      if (!grads[c].defined()) continue;
      TIDE_CHECK(grads[c].shape() == checked[c].shape(),
                 "gradcheck: gradient {} does not match input {}", grads[c].describe(),
                 checked[c].describe());
      analytic[c][j] = kernels::to_dtype(grads[c], DType::Float64).to_vector<double>();
    }
  }
  // Numeric Jacobian by central differences, compared column by column.
  for (size_t c = 0; c < checked.size(); ++c) {
    size_t i = checked_index[c];
    Tensor base = kernels::contiguous(inputs[i]);
    for (int64_t k = 0; k < inputs[i].numel(); ++k) {
      std::vector<double> plus = evaluate_shifted(fn, inputs, i, k, options.eps);
      std::vector<double> minus = evaluate_shifted(fn, inputs, i, k, -options.eps);
      for (int64_t j = 0; j < m; ++j) {
        double numeric = (plus[j] - minus[j]) / (2 * options.eps);
        double a = analytic[c][j][k];
        bool close = std::abs(a - numeric) <= options.atol + options.rtol * std::abs(numeric);
        TIDE_CHECK(close || (std::isnan(a) && std::isnan(numeric)),
                   "gradcheck: d output[{}] / d input {}[{}]: analytic {:.10g}, numeric {:.10g} "
                   "(input {})",
                   j, i, k, a, numeric, inputs[i].describe());
      }
    }
  }
  return true;
}

bool gradgradcheck(const DifferentiableFn& fn, const std::vector<Tensor>& inputs,
                   GradcheckOptions options) {
  check_inputs(inputs, "gradgradcheck");
  Tensor out = fn(inputs);
  // A fixed random cotangent v, itself an input of the checked function.
  Generator gen(1234);
  Tensor v = randn(out.shape(), gen, {.dtype = DType::Float64, .requires_grad = true});
  std::vector<Tensor> all = inputs;
  all.push_back(v);
  size_t n = inputs.size();
  DifferentiableFn vjp = [fn, n](const std::vector<Tensor>& args) {
    std::vector<Tensor> xs(args.begin(), args.begin() + static_cast<long>(n));
    std::vector<Tensor> wrt;
    for (const Tensor& x : xs)
      if (x.requires_grad()) wrt.push_back(x);
    Tensor y = fn(xs);
    std::vector<Tensor> flat;
    if (y.requires_grad()) {
      std::vector<Tensor> grads =
          grad({y}, wrt, {args[n]}, {.create_graph = true, .allow_unused = true});
      for (size_t c = 0; c < grads.size(); ++c)
        flat.push_back(reshape(grads[c].defined() ? grads[c] : zeros_like(wrt[c]), {-1}));
    } else {
      for (const Tensor& x : wrt) flat.push_back(reshape(zeros_like(x), {-1}));
    }
    return cat(flat, 0);
  };
  return gradcheck(vjp, all, options);
}

}  // namespace tide
