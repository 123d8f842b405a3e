// Autograd in two small steps.
//
// 1. Fit y = a*x^2 + b to a few points by plain gradient descent: build the
//    loss with tide ops, let tide::backward fill a.grad() and b.grad(), and
//    step the parameters against their gradients.
// 2. Take a gradient of a gradient: tide::grad with create_graph = true
//    returns a derivative that is itself differentiable.
#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "tide.h"

namespace {

// The curve the data comes from; gradient descent should recover it.
constexpr double kTrueA = 1.5;
constexpr double kTrueB = -0.5;

void fit_parabola() {
  fmt::print("== Fitting y = a*x^2 + b by gradient descent ==\n");

  // Eight points on the true curve, in float64.
  std::vector<double> xs, ys;
  for (int i = 0; i < 8; ++i) {
    double x = -1.0 + 2.0 * i / 7.0;
    xs.push_back(x);
    ys.push_back(kTrueA * x * x + kTrueB);
  }
  tide::Tensor x = tide::from_vector(xs);
  tide::Tensor y = tide::from_vector(ys);

  // The parameters: leaves that autograd computes gradients for.
  auto param = tide::TensorOptions{.dtype = tide::DType::Float64, .requires_grad = true};
  tide::Tensor a = tide::scalar(0.0, param);
  tide::Tensor b = tide::scalar(0.0, param);

  const double learning_rate = 0.5;
  const int steps = 100;
  for (int step = 0; step <= steps; ++step) {
    // Forward: mean squared error of the model's predictions.
    tide::Tensor prediction = a * tide::square(x) + b;
    tide::Tensor loss = tide::mean(tide::square(prediction - y));

    // Backward: fills a.grad() and b.grad() with d(loss)/da and d(loss)/db.
    tide::backward(loss);

    if (step % 10 == 0) fmt::print("step {:3d}  loss {:.6e}\n", step, loss.item());

    // The update is not part of the model, so autograd must not record it.
    tide::NoGradGuard no_grad;
    tide::add_(a, a.grad(), -learning_rate);  // a -= lr * dloss/da
    tide::add_(b, b.grad(), -learning_rate);
    // Gradients accumulate across backward calls; clear them for the next step.
    tide::zero_(a.grad());
    tide::zero_(b.grad());
  }

  fmt::print("fitted a = {:+.6f}   true a = {:+.6f}\n", a.item(), kTrueA);
  fmt::print("fitted b = {:+.6f}   true b = {:+.6f}\n\n", b.item(), kTrueB);
}

void gradient_of_gradient() {
  fmt::print("== Gradient of a gradient: f(x) = x^3 at x = 2 ==\n");
  tide::Tensor x = tide::scalar(2.0, {.dtype = tide::DType::Float64, .requires_grad = true});
  tide::Tensor f = x * x * x;

  // create_graph records the backward pass itself, so df/dx is a tensor with
  // its own history that can be differentiated again.
  tide::Tensor df = tide::grad({f}, {x}, {}, {.create_graph = true})[0];
  tide::Tensor d2f = tide::grad({df}, {x})[0];

  const double x0 = 2.0;
  fmt::print("df/dx   = {:.6f}   (3x^2 = {:.6f})\n", df.item(), 3 * x0 * x0);
  fmt::print("d2f/dx2 = {:.6f}   (6x   = {:.6f})\n", d2f.item(), 6 * x0);
}

}  // namespace

int main() {
  try {
    fit_parabola();
    gradient_of_gradient();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autograd_demo failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
