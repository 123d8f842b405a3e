// Checks that an installed Tide works from a separate project: both include
// styles resolve, and a small second-order autograd result matches its closed
// form. Exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>

#include "tensor/tensor.h"  // a single layer header, by its directory
#include "tide.h"           // the umbrella header

int main() {
  // f(x) = x^3 + 2x at x = 1.5:  f' = 3x^2 + 2,  f'' = 6x.
  const double x0 = 1.5;
  tide::Tensor x = tide::scalar(x0, {.dtype = tide::DType::Float64, .requires_grad = true});
  tide::Tensor f = x * x * x + 2.0 * x;

  tide::Tensor df = tide::grad({f}, {x}, {}, {.create_graph = true})[0];
  tide::Tensor d2f = tide::grad({df}, {x})[0];

  const double expected_df = 3 * x0 * x0 + 2;
  const double expected_d2f = 6 * x0;
  std::printf("f'(x) = %.12f (expected %.12f)\n", df.item(), expected_df);
  std::printf("f''(x) = %.12f (expected %.12f)\n", d2f.item(), expected_d2f);
  if (std::abs(df.item() - expected_df) > 1e-12 || std::abs(d2f.item() - expected_d2f) > 1e-12) {
    std::printf("MISMATCH\n");
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
