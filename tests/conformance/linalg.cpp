// Conformance of matmul (1-D, 2-D, batched with broadcast batch dims, any
// operand layout) and linear with bias and every activation epilogue, with
// gradients; and linear_weight_grad, the primitive behind linear's weight and
// bias gradients (cuBLASLt's BGRADB epilogue on CUDA).
#include <cmath>

#include "conformance.h"

namespace tide::conformance {
namespace {

// --- tolerances (documented in README "Conformance suite") ------------------------
// A dot product of length K in any summation order is off by at most
// K u sum_k |a_ik b_kj| (Higham, Accuracy and Stability, 3.1), so element
// (i, j) is checked against scale = (|A| @ |B|)_ij times 2 (K + 2) u.
// This assumes true float32 arithmetic: a backend that multiplies float32 in
// TF32 (10-bit mantissa, u = 2^-11) by default fails, as it should, because
// the op's definition is float32.
double matmul_factor(int64_t k, DType dtype) {
  return 2.0 * static_cast<double>(k + 2) * (dtype == DType::Float64 ? kU64 : kU32);
}
// Gradients are matmuls too (of the cotangent, |w| <= 1): normwise, with room
// for the longer inner dimension of the weight gradient (the batch).
Tol matmul_grad_tol(int64_t inner, DType dtype) {
  return {0, 4.0 * static_cast<double>(inner + 2) * (dtype == DType::Float64 ? kU64 : kU32), true};
}

struct MatmulShapes {
  Shape a, b;
  const char* what;
};

const std::vector<MatmulShapes>& matmul_shapes() {
  static const std::vector<MatmulShapes> cases = {
      {{5}, {5}, "1-D dot"},
      {{5}, {5, 3}, "1-D @ 2-D"},
      {{4, 5}, {5}, "2-D @ 1-D"},
      {{1, 1}, {1, 1}, "1x1x1"},
      {{7, 5}, {5, 3}, "odd sizes"},
      {{33, 17}, {17, 65}, "odd sizes"},
      {{64, 64}, {64, 64}, "square"},
      {{129, 257}, {257, 67}, "large K"},
      {{0, 5}, {5, 3}, "M = 0"},
      {{4, 0}, {0, 3}, "K = 0 (zeros)"},
      {{4, 5}, {5, 0}, "N = 0"},
      {{3, 4, 5}, {3, 5, 6}, "batched"},
      {{2, 1, 4, 5}, {3, 5, 6}, "broadcast batch dims"},
      {{4, 5}, {2, 5, 6}, "2-D @ batched"},
      {{2, 3, 4, 5}, {5}, "batched @ 1-D"},
      {{5}, {2, 5, 3}, "1-D @ batched"},
      {{300, 257}, {257, 300}, "> 64k elements in and out"},
  };
  return cases;
}

// The inner dimension of a @ b.
int64_t inner_dim(const Shape& a) {
  return a.size() == 0 ? 1 : a[a.size() - 1];
}

TEST_CASE("conformance: matmul", "[linalg][matmul]") {
  Generator gen(501);
  for (const MatmulShapes& s : matmul_shapes()) {
    const int64_t k = inner_dim(s.a);
    const bool large = s.a.numel() > 65536;
    for (Layout layout : all_layouts()) {
      // Transposed operands are how A^T B and A B^T reach the backend
      // (cuBLAS transpose flags); try them on a, on b and on both.
      for (int which = 0; which < 3; ++which) {
        const bool on_a = which != 1, on_b = which != 0;
        if (large && layout != Layout::Contiguous && layout != Layout::Transposed) continue;
        if (!run_layout(s.a, layout)) continue;
        const Layout la = on_a && layout_applies(layout, s.a) ? layout : Layout::Contiguous;
        const Layout lb = on_b && layout_applies(layout, s.b) ? layout : Layout::Contiguous;
        if (layout == Layout::Contiguous ? which > 0
                                         : (la == Layout::Contiguous && lb == Layout::Contiguous))
          continue;
        if (layout != Layout::Contiguous && which == 2 && (la != layout || lb != layout))
          continue;  // "both" only where both take the layout
        const Tensor a = random_values(s.a, {}, gen, la);
        const Tensor b = random_values(s.b, {}, gen, lb);
        const Tensor scale = matmul(abs(a), abs(b));
        for (DType dtype : float_dtypes()) {
          const Tensor reference = run_case(
              [](const std::vector<Tensor>& t) { return matmul(t[0], t[1]); }, {{a, la}, {b, lb}},
              dtype,
              {.op = "matmul",
               .detail = s.what,
               .tol = kExact,
               .result_dtype = dtype,
               .backward = !large || (la == Layout::Contiguous && lb == Layout::Contiguous),
               .backward_tol = matmul_grad_tol(std::max<int64_t>(k, 300), dtype),
               .scale = scale,
               .scale_factor = matmul_factor(k, dtype)});
          if (on_cpu() && dtype == DType::Float64 && reference.defined() && !large &&
              s.a.size() == 2 && s.b.size() == 2) {
            const std::vector<double> av = host_values(a), bv = host_values(b);
            const int64_t m = s.a[0], n = s.b[1];
            std::vector<double> loop(m * n, 0.0);
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j)
                for (int64_t p = 0; p < k; ++p) loop[i * n + j] += av[i * k + p] * bv[p * n + j];
            check_against_loop(fmt::format("matmul {}", s.what), reference, loop,
                               {1e-13, 1e-12, true});
          }
        }
      }
    }
  }
}

// The activation applied by a fused epilogue, in float64.
double epilogue_ref(Epilogue e, double x) {
  switch (e) {
    case Epilogue::None:
      return x;
    case Epilogue::Relu:
      return x > 0 ? x : 0;
    case Epilogue::Tanh:
      return std::tanh(x);
    case Epilogue::Sigmoid:
      return 1 / (1 + std::exp(-x));
    case Epilogue::Selu:
      return 1.0507009873554804934193349852946 *
             (x > 0 ? x : 1.6732632423543772848170429916717 * std::expm1(x));
  }
  return x;
}

TEST_CASE("conformance: linear with bias and activation epilogues", "[linalg][linear]") {
  static_assert(kNumEpilogues == 5, "add the new epilogue to the conformance cases");
  struct LinearShapes {
    Shape x;
    int64_t out;
  };
  // Flow-matching shapes among them: d + 1 = 3 inputs, width 64, batch 256.
  const std::vector<LinearShapes> cases = {{{1, 3}, 64},     {{256, 3}, 64}, {{33, 17}, 9},
                                           {{2, 5, 17}, 31}, {{0, 17}, 9},   {{4, 0}, 5},
                                           {{300, 257}, 65}};
  Generator gen(502);
  for (const LinearShapes& s : cases) {
    const int64_t in = s.x[s.x.size() - 1];
    const bool large = s.x.numel() > 65536;
    for (int e = 0; e < kNumEpilogues; ++e) {
      const Epilogue epilogue = static_cast<Epilogue>(e);
      for (bool with_bias : {true, false}) {
        // x contiguous or transposed; the weight [out, in] is used transposed.
        for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Strided}) {
          if (!layout_applies(layout, s.x) || !run_layout(s.x, layout)) continue;
          const Tensor x = random_values(s.x, {}, gen, layout);
          const Tensor w = random_values({s.out, in}, {-0.5, 0.5}, gen);
          const Tensor b = random_values({s.out}, {-0.5, 0.5}, gen);
          Tensor scale = matmul(abs(x), transpose(abs(w), 0, 1));
          if (with_bias) scale = add(scale, abs(b));
          for (DType dtype : float_dtypes()) {
            // The epilogue's own error (Lipschitz <= 1.76 for SELU) on top of
            // the matmul bound.
            const Tol act = dtype == DType::Float64 ? Tol{1e-14, 1e-13} : Tol{1e-6, 1e-5};
            std::vector<Input> inputs = {{x, layout}, {w}};
            if (with_bias) inputs.push_back({b});
            const std::string detail =
                fmt::format("epilogue {}{}", op_name(epilogue), with_bias ? ", bias" : "");
            const Tensor reference = run_case(
                [&](const std::vector<Tensor>& t) {
                  return linear(t[0], t[1], with_bias ? t[2] : Tensor(), epilogue);
                },
                inputs, dtype,
                {.op = "linear",
                 .detail = detail,
                 .tol = act,
                 .result_dtype = dtype,
                 .backward = true,
                 .backward_tol = matmul_grad_tol(
                     std::max<int64_t>(in, s.x.numel() / std::max<int64_t>(in, 1)), dtype),
                 .scale = scale,
                 .scale_factor = 1.76 * matmul_factor(in + 1, dtype)});
            // The fused op equals the unfused composition on the device too.
            run_case(
                [&](const std::vector<Tensor>& t) {
                  Tensor y = matmul(t[0], transpose(t[1], 0, 1));
                  if (with_bias) y = add(y, t[2]);
                  switch (epilogue) {
                    case Epilogue::None:
                      return y;
                    case Epilogue::Relu:
                      return relu(y);
                    case Epilogue::Tanh:
                      return tanh(y);
                    case Epilogue::Sigmoid:
                      return sigmoid(y);
                    case Epilogue::Selu:
                      return selu(y);
                  }
                  return y;
                },
                inputs, dtype,
                {.op = "linear (unfused)",
                 .detail = detail,
                 .tol = act,
                 .result_dtype = dtype,
                 .scale = scale,
                 .scale_factor = 1.76 * matmul_factor(in + 1, dtype)});
            if (on_cpu() && dtype == DType::Float64 && reference.defined() && s.x.size() == 2) {
              const std::vector<double> xv = host_values(x), wv = host_values(w),
                                        bv = host_values(b);
              const int64_t rows = s.x[0];
              std::vector<double> loop(rows * s.out);
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t o = 0; o < s.out; ++o) {
                  double acc = with_bias ? bv[o] : 0.0;
                  for (int64_t i = 0; i < in; ++i) acc += xv[r * in + i] * wv[o * in + i];
                  loop[r * s.out + o] = epilogue_ref(epilogue, acc);
                }
              check_against_loop("linear " + detail, reference, loop, {1e-13, 1e-12});
            }
          }
        }
      }
    }
  }
}

struct LinearSizes {
  int64_t m, n, k;  // batch, out, in
};

// Float64 loops for a Linear layer's weight gradients from grad_out [M, N]
// and input [M, K]: {dW [N, K] row-major, db [N]}.
std::pair<std::vector<double>, std::vector<double>> weight_grad_loops(const Tensor& g,
                                                                      const Tensor& x) {
  const std::vector<double> gv = host_values(g), xv = host_values(x);
  const int64_t m = g.size(0), n = g.size(1), k = x.size(1);
  std::vector<double> dw(n * k, 0.0), db(n, 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t o = 0; o < n; ++o) {
      db[o] += gv[r * n + o];
      for (int64_t i = 0; i < k; ++i) dw[o * k + i] += gv[r * n + o] * xv[r * k + i];
    }
  return {dw, db};
}

TEST_CASE("conformance: linear_weight_grad (weight and bias gradients in one call)",
          "[linalg][linear]") {
  // The flow model's layers (batch 256, width 64, d + 1 = 3 inputs), odd
  // sizes, M = 0 and K = 0, and > 64k elements.
  const std::vector<LinearSizes> cases = {{1, 1, 1},  {256, 64, 3}, {256, 64, 64},  {33, 9, 17},
                                          {0, 9, 17}, {4, 5, 0},    {1024, 64, 64}, {300, 65, 257}};
  Generator gen(503);
  for (const LinearSizes& s : cases) {
    for (Layout layout : {Layout::Contiguous, Layout::Transposed, Layout::Strided}) {
      const Shape gs{s.m, s.n}, xs{s.m, s.k};
      if (!layout_applies(layout, gs) || !run_layout(gs, layout) || !run_layout(xs, layout))
        continue;
      const Tensor g = random_values(gs, {-1, 1}, gen, layout);
      const Tensor x = random_values(xs, {}, gen, layout);
      // Higham's bound for sums of M products (or M terms for the bias).
      const Tensor dw_scale = matmul(transpose(abs(g), 0, 1), abs(x));
      const Tensor db_scale = sum(abs(g), {0});
      const std::vector<Input> inputs = {{g, layout, true, false}, {x, layout, true, false}};
      for (DType dtype : float_dtypes()) {
        for (bool bias_part : {false, true}) {
          const Tensor reference = run_case(
              [&](const std::vector<Tensor>& t) {
                const auto grads = kernels::linear_weight_grad(t[0], t[1], /*with_bias=*/true);
                return bias_part ? grads.grad_bias : grads.grad_weight;
              },
              inputs, dtype,
              {.op = "linear_weight_grad",
               .detail = bias_part ? "bias_grad" : "weight_grad",
               .tol = kExact,
               .result_dtype = dtype,
               .scale = bias_part ? db_scale : dw_scale,
               .scale_factor = matmul_factor(s.m, dtype)});
          if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
            const auto [dw, db] = weight_grad_loops(g, x);
            check_against_loop(fmt::format("linear_weight_grad [{}, {}, {}]", s.m, s.n, s.k),
                               reference, bias_part ? db : dw, {1e-13, 1e-12, true});
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: linear's first-order weight gradients equal the create_graph composite",
          "[linalg][linear]") {
  // First order, linear's backward takes linear_weight_grad; with
  // create_graph it takes the differentiable matmul and sum. Both must give
  // the loops' dW = gz^T x, db = sum(gz) (epilogue None: gz is the cotangent).
  Generator gen(504);
  for (const LinearSizes& s : std::vector<LinearSizes>{{256, 64, 3}, {33, 9, 17}, {300, 65, 257}}) {
    const Tensor x = random_values({s.m, s.k}, {}, gen);
    const Tensor w = random_values({s.n, s.k}, {-0.5, 0.5}, gen);
    const Tensor b = random_values({s.n}, {-0.5, 0.5}, gen);
    const Tensor c = random_values({s.m, s.n}, {-1, 1}, gen);
    const auto [dw_loop, db_loop] = weight_grad_loops(c, x);
    const Tensor dw_ref = from_vector(dw_loop, {s.n, s.k});
    const Tensor db_ref = from_vector(db_loop, {s.n});
    const Tensor dw_scale = matmul(transpose(abs(c), 0, 1), abs(x));
    const Tensor db_scale = sum(abs(c), {0});
    for (DType dtype : float_dtypes()) {
      const Tensor xd = on_device(x, dtype, Layout::Contiguous, true);
      const Tensor wd = on_device(w, dtype, Layout::Contiguous, true);
      const Tensor bd = on_device(b, dtype, Layout::Contiguous, true);
      const Tensor cd = on_device(c, dtype, Layout::Contiguous);
      for (bool create_graph : {false, true}) {
        const Tensor y = linear(xd, wd, bd);
        const std::vector<Tensor> grads = grad({y}, {wd, bd}, {cd}, {.create_graph = create_graph});
        const std::string what = describe_case(
            "linear backward", dtype, {{s.m, s.k}, {s.n, s.k}},
            create_graph ? "create_graph (composite)" : "first order (linear_weight_grad)");
        check_close(what + ": weight gradient", grads[0], dw_ref, dtype, kExact, dw_scale,
                    matmul_factor(s.m, dtype));
        check_close(what + ": bias gradient", grads[1], db_ref, dtype, kExact, db_scale,
                    matmul_factor(s.m, dtype));
      }
    }
  }
}

}  // namespace
}  // namespace tide::conformance
