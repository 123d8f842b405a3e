// Conformance of the normalisation primitives: softmax and log-softmax along
// any dim (the backend sees the last dim of a contiguous tensor) and layer
// norm with and without weight and bias, with gradients.
#include <cmath>

#include "conformance.h"

namespace tide::conformance {
namespace {

// --- tolerances (documented in README "Conformance suite") ------------------------
// softmax: exp(x - max) / sum: the sum of a row of C terms is off by about
// (block length + log2 C) u relative, so 1e-5 relative (plus 1e-7 absolute
// for outputs near 0) holds for rows up to 70,001 long in float32.
// log_softmax: x - max - log(sum), absolute error about u (|x| + log C): 2e-5.
constexpr Tols kSoftmax{{1e-7, 1e-5}, {1e-15, 1e-12}};
constexpr Tols kLogSoftmax{{2e-5, 1e-6}, {1e-12, 1e-12}};
// layer_norm outputs are O(1); mean and variance are sums over the row, and
// the inputs have mean ~1 (domain [-1, 3]) so a one-pass E[x^2] - E[x]^2
// variance in float32 loses digits and fails, as it should. On top: 16 u
// times the row's conditioning max|x| * rstd (see the case).
constexpr Tols kLayerNorm{{2e-5, 1e-5}, {1e-12, 1e-12}};
// Gradients (weight and bias gradients sum over every row): normwise.
constexpr Tols kNormGrad{{1e-7, 1e-4, true}, {1e-15, 1e-11, true}};

TEST_CASE("conformance: softmax and log_softmax along every dim", "[nn][softmax]") {
  // Long rows (70,001, 10,007) exceed one GPU block; [70001, 2] is many tiny rows.
  const std::vector<Shape> shapes = {{7},       {1, 1},     {33, 17},   {4, 5, 6},
                                     {2, 0, 3}, {7, 10007}, {1, 70001}, {70001, 2}};
  Generator gen(601);
  for (const Shape& shape : shapes) {
    const bool large = shape.numel() > 65536;
    for (Layout layout : layouts_for(shape)) {
      if (large && layout != Layout::Contiguous && layout != Layout::Transposed) continue;
      const Tensor x = random_values(shape, {-5, 5}, gen, layout);
      for (int dim = 0; dim < shape.size(); ++dim) {
        if (large && dim != shape.size() - 1 && layout != Layout::Contiguous) continue;
        for (bool log : {false, true}) {
          for (DType dtype : float_dtypes()) {
            const Tensor reference = run_case(
                [&](const std::vector<Tensor>& t) {
                  return log ? log_softmax(t[0], dim) : softmax(t[0], dim);
                },
                {{x, layout}}, dtype,
                {.op = log ? "log_softmax" : "softmax",
                 .detail = fmt::format("dim {}", dim),
                 .tol = (log ? kLogSoftmax : kSoftmax).for_dtype(dtype),
                 .result_dtype = dtype,
                 .backward = !large || layout == Layout::Contiguous,
                 .backward_tol = kNormGrad.for_dtype(dtype)});
            if (on_cpu() && dtype == DType::Float64 && reference.defined() && shape.size() == 2 &&
                dim == 1) {
              const std::vector<double> v = host_values(x);
              const int64_t rows = shape[0], cols = shape[1];
              std::vector<double> loop(v.size());
              for (int64_t r = 0; r < rows; ++r) {
                double m = -INFINITY, s = 0;
                for (int64_t c = 0; c < cols; ++c) m = std::max(m, v[r * cols + c]);
                for (int64_t c = 0; c < cols; ++c) s += std::exp(v[r * cols + c] - m);
                for (int64_t c = 0; c < cols; ++c)
                  loop[r * cols + c] =
                      log ? v[r * cols + c] - m - std::log(s) : std::exp(v[r * cols + c] - m) / s;
              }
              check_against_loop(log ? "log_softmax" : "softmax", reference, loop, {1e-14, 1e-11});
            }
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: layer_norm with and without weight and bias", "[nn][layer_norm]") {
  struct Case {
    Shape x;
    int normalized_dims;
  };
  // C = 1031 exceeds 1024 threads per block; [70001, 2] is flow matching's d = 2.
  // (No empty input: the CPU backend's layer_norm refuses zero rows, reported
  // in issue 5's notes.)
  const std::vector<Case> cases = {{{7}, 1},        {{33, 17}, 1},   {{4, 5, 6}, 1},
                                   {{4, 5, 6}, 2},  {{64, 1031}, 1}, {{1, 70001}, 1},
                                   {{70001, 2}, 1}, {{3, 1}, 1}};
  Generator gen(602);
  for (const Case& c : cases) {
    const bool large = c.x.numel() > 65536;
    Dims normalized;
    for (int d = c.x.size() - c.normalized_dims; d < c.x.size(); ++d) normalized.push_back(c.x[d]);
    Shape param_shape(normalized);
    Dims reduced;  // the normalised dims, counted from the end
    for (int d = 0; d < c.normalized_dims; ++d) reduced.push_back(-1 - d);
    for (Layout layout : layouts_for(c.x)) {
      if (large && layout != Layout::Contiguous) continue;
      const Tensor x = random_values(c.x, {-1, 3}, gen, layout);
      const Tensor w = random_values(param_shape, {0.5, 1.5}, gen);
      const Tensor b = random_values(param_shape, {-0.5, 0.5}, gen);
      // Rounding x - mean costs u * max |x| per element, which the
      // normalisation multiplies by rstd: rows whose values nearly agree
      // (d = 2: x0 ~ x1) are ill-conditioned in any float32 implementation.
      const Tensor conditioning =
          mul(mul(amax(abs(x), reduced, true), rsqrt(add(var(x, reduced, 0, true), 1e-5))),
              ones_like(x));
      for (int affine = 0; affine < 3; ++affine) {  // none, weight, weight and bias
        std::vector<Input> inputs = {{x, layout}};
        if (affine >= 1) inputs.push_back({w});
        if (affine >= 2) inputs.push_back({b});
        const std::string detail = fmt::format("normalized {}, {}", param_shape,
                                               affine == 0   ? "no weight"
                                               : affine == 1 ? "weight"
                                                             : "weight and bias");
        for (DType dtype : float_dtypes()) {
          const Tensor reference = run_case(
              [&](const std::vector<Tensor>& t) {
                return layer_norm(t[0], normalized, affine >= 1 ? t[1] : Tensor(),
                                  affine >= 2 ? t[2] : Tensor(), 1e-5);
              },
              inputs, dtype,
              {.op = "layer_norm",
               .detail = detail,
               .tol = kLayerNorm.for_dtype(dtype),
               .result_dtype = dtype,
               // With one element per row the gradient is exactly 0 and only
               // rounding, times rstd = 1/sqrt(eps) = 316, remains.
               .backward = param_shape.numel() > 1,
               .backward_tol = kNormGrad.for_dtype(dtype),
               .scale = affine >= 1 ? mul(conditioning, abs(w)) : conditioning,
               .scale_factor = 16 * (dtype == DType::Float64 ? kU64 : kU32)});
          if (on_cpu() && dtype == DType::Float64 && reference.defined() && c.x.numel() > 0) {
            const std::vector<double> v = host_values(x), wv = host_values(w), bv = host_values(b);
            const int64_t cols = param_shape.numel(), rows = c.x.numel() / cols;
            std::vector<double> loop(v.size());
            for (int64_t r = 0; r < rows; ++r) {
              double mean = 0, var = 0;
              for (int64_t k = 0; k < cols; ++k) mean += v[r * cols + k];
              mean /= cols;
              for (int64_t k = 0; k < cols; ++k) var += std::pow(v[r * cols + k] - mean, 2);
              var /= cols;  // biased, like PyTorch
              for (int64_t k = 0; k < cols; ++k) {
                double y = (v[r * cols + k] - mean) / std::sqrt(var + 1e-5);
                if (affine >= 1) y *= wv[k];
                if (affine >= 2) y += bv[k];
                loop[r * cols + k] = y;
              }
            }
            check_against_loop("layer_norm " + detail, reference, loop, {1e-12, 1e-10});
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tide::conformance
