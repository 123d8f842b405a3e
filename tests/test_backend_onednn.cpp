// Tests for the oneDNN paths of the CPU backend (backends/cpu/onednn.h):
// binary, eltwise backward and layer norm. Each case uses inputs large enough
// to take the path, proves that it ran (a new plan built, and the try_*
// function accepting the arguments), and compares the result with a
// float64 reference computed here, with the plain loops (oneDNN switched off)
// where the two must agree exactly, and across thread counts 1 and 2.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/onednn.h"
#include "backends/cpu/threads.h"

using namespace tide;
namespace onednn = tide::cpu::onednn;

namespace {

Backend& backend() {
  return backend_for(Device::cpu());
}

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A float32 host buffer and the view (shape, strides) the backend sees.
struct Host {
  std::vector<float> values;
  Shape shape, strides;

  explicit Host(Shape s) : values(std::max<int64_t>(s.numel(), 1)), shape(s) {
    strides = contiguous_strides(s);
  }
  ArrayView view() const {
    return {const_cast<float*>(values.data()), DType::Float32, shape, strides};
  }
  // The same buffer broadcast to `to`: stride 0 where this has size 1.
  ArrayView broadcast_to(const Shape& to) const {
    ArrayView v = view();
    v.shape = to;
    for (int d = 0; d < to.size(); ++d)
      if (shape[d] == 1 && to[d] != 1) v.strides[d] = 0;
    return v;
  }
  // Element i of `v`'s flat (row-major) index when v views this buffer.
  double at(const ArrayView& v, int64_t flat) const {
    int64_t off = 0;
    for (int d = v.rank() - 1; d >= 0; --d) {
      off += (flat % v.shape[d]) * v.strides[d];
      flat /= v.shape[d];
    }
    return values[off];
  }
};

// Deterministic pseudo-random values in [lo, hi).
Host random_host(Shape shape, double lo, double hi, uint64_t seed) {
  Host h(shape);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (float& x : h.values) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = float(lo + (hi - lo) * double(s >> 11) / 9007199254740992.0);
  }
  return h;
}

// |got - want| <= tol * max(1, |want|); NaN matches NaN, infinities match exactly.
bool close(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::abs(got - want) <= tol * std::max(1.0, std::abs(want));
}

bool same_bits(const Host& a, const Host& b) {
  return a.values.size() == b.values.size() &&
         std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0;
}

template <typename Fn>
void with_threads(int n, Fn&& fn) {
  const int old = get_num_threads();
  set_num_threads(n);
  fn();
  set_num_threads(old);
}

// Runs fn on the plain loops (oneDNN off).
template <typename Fn>
void with_loops(Fn&& fn) {
  onednn::set_enabled(false);
  fn();
  onednn::set_enabled(true);
}

// Rows of 64 that make at least `min_elements` elements.
int64_t rows_for(int64_t min_elements, int64_t row = 64) {
  return (min_elements + row - 1) / row + 3;
}

double binary_ref(BinaryOp op, double x, double y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    default:
      return x / y;
  }
}

}  // namespace

// try_binary is implemented but not routed (slower than the loops, numbers in
// onednn.h), so this calls it directly.
TEST_CASE("oneDNN binary: add, sub, mul, div in every broadcast layout", "[backend][onednn]") {
  const int64_t rows = rows_for(65536), cols = 64;
  const Shape shape{rows, cols};
  // b's shape for each layout; "swapped" broadcasts a instead (oneDNN wants
  // its second input broadcast, so add and mul swap the inputs).
  struct Layout {
    const char* name;
    Shape small;
    bool broadcast_a;
  };
  const Layout layouts[] = {{"same", shape, false},
                            {"row", {1, cols}, false},
                            {"column", {rows, 1}, false},
                            {"scalar", {1, 1}, false},
                            {"row, swapped", {1, cols}, true}};
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    for (const Layout& layout : layouts) {
      INFO(op_name(op) << ", layout " << layout.name);
      Host full = random_host(shape, 0.5, 2, 1), small = random_host(layout.small, -2, -0.5, 2);
      // IEEE special values where they matter: NaN, +-Inf, signed zeros.
      full.values[0] = float(kNaN);
      full.values[1] = float(kInf);
      full.values[2] = float(-kInf);
      full.values[3] = 0.f;
      small.values[0] = -0.f;
      const ArrayView big = full.view(), bc = small.broadcast_to(shape);
      const ArrayView a = layout.broadcast_a ? bc : big, b = layout.broadcast_a ? big : bc;
      const Host& ha = layout.broadcast_a ? small : full;
      const Host& hb = layout.broadcast_a ? full : small;
      // sub and div cannot swap their inputs, so a broadcast a stays on the loops.
      const bool accepted = !layout.broadcast_a || op == BinaryOp::Add || op == BinaryOp::Mul;
      Host out(shape), loops(shape), one(shape), two(shape);
      const size_t plans = onednn::plans_built();
      REQUIRE(onednn::try_binary(op, out.view(), a, b) == accepted);
      if (!accepted) continue;
      // A new plan, except for the swapped layout, which runs the unswapped one's.
      CHECK(onednn::plans_built() == plans + (layout.broadcast_a ? 0 : 1));
      for (int64_t i = 0; i < shape.numel(); ++i) {
        const double want = binary_ref(op, ha.at(a, i), hb.at(b, i));
        INFO("element " << i);
        REQUIRE(close(out.values[i], want, 1e-6));
      }
      // Correctly rounded IEEE ops: exactly the loops' bits, for any thread count.
      with_loops([&] { backend().binary(op, loops.view(), a, b, 0, 0); });
      with_threads(1, [&] { CHECK(onednn::try_binary(op, one.view(), a, b)); });
      with_threads(2, [&] { CHECK(onednn::try_binary(op, two.view(), a, b)); });
      CHECK(same_bits(out, loops));
      CHECK(same_bits(one, two));
    }
  }
}

TEST_CASE("oneDNN binary: maximum and minimum stay on the loops and propagate NaN",
          "[backend][onednn]") {
  // oneDNN 2.6's binary_max returns the number for max(NaN, 1); Tide returns NaN.
  const Shape shape{rows_for(1 << 16), 64};
  Host a = random_host(shape, -1, 1, 3), b = random_host(shape, -1, 1, 4), out(shape);
  a.values[5] = float(kNaN);
  b.values[7] = float(kNaN);
  for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum}) {
    INFO(op_name(op));
    CHECK_FALSE(onednn::try_binary(op, out.view(), a.view(), b.view()));
    backend().binary(op, out.view(), a.view(), b.view(), 0, 0);
    CHECK(std::isnan(out.values[5]));
    CHECK(std::isnan(out.values[7]));
    const double x = a.values[9], y = b.values[9];
    CHECK(out.values[9] == (op == BinaryOp::Maximum ? std::max(x, y) : std::min(x, y)));
  }
}

namespace {

// g * gelu'(x) in float64, in the erf and the tanh form.
double gelu_grad_ref(BinaryOp op, double g, double x) {
  if (op == BinaryOp::GeluErfGrad) {
    const double cdf = 0.5 * (1 + std::erf(x / std::sqrt(2.0)));
    const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
    return g * (cdf + x * pdf);
  }
  constexpr double kSqrt2OverPi = 0.79788456080286535588, kKappa = 0.044715;
  const double t = std::tanh(kSqrt2OverPi * (x + kKappa * x * x * x));
  const double d_inner = kSqrt2OverPi * (1 + 3 * kKappa * x * x);
  return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner);
}

}  // namespace

TEST_CASE("oneDNN eltwise backward: gelu gradients against float64", "[backend][onednn]") {
  const Shape shape{rows_for(onednn::kEltwiseBackwardMinElements), 64};
  for (BinaryOp op : {BinaryOp::GeluErfGrad, BinaryOp::GeluTanhGrad}) {
    INFO(op_name(op));
    Host g = random_host(shape, -2, 2, 5), x = random_host(shape, -6, 6, 6);
    // The edges: x = +-0, NaN, +-Inf (NaN in both the loops and the
    // reference: inf * pdf(inf) = inf * 0), an infinite or NaN gradient.
    const float specials[] = {0.f, -0.f, float(kNaN), float(kInf), float(-kInf), -1.f, -1.f};
    for (int i = 0; i < 7; ++i) x.values[i] = specials[i];
    g.values[5] = float(kInf);
    g.values[6] = float(kNaN);
    Host out(shape), loops(shape), one(shape), two(shape);
    const size_t plans = onednn::plans_built();
    backend().binary(op, out.view(), g.view(), x.view(), 0, 0);
    // Routed to oneDNN: a plan per chunk (one chunk per thread), built once.
    const size_t routed = onednn::plans_built();
    CHECK(routed > plans);
    backend().binary(op, out.view(), g.view(), x.view(), 0, 0);
    CHECK(onednn::plans_built() == routed);
    CHECK(onednn::try_eltwise_backward(op, out.view(), g.view(), x.view()));
    with_loops([&] { backend().binary(op, loops.view(), g.view(), x.view(), 0, 0); });
    for (int64_t i = 0; i < shape.numel(); ++i) {
      INFO("element " << i << ": g = " << g.values[i] << ", x = " << x.values[i]);
      REQUIRE(close(out.values[i], gelu_grad_ref(op, g.values[i], x.values[i]), 2e-6));
      // Where the loops give NaN or Inf, oneDNN gives the same.
      if (!std::isfinite(loops.values[i])) REQUIRE(close(out.values[i], loops.values[i], 0));
    }
    with_threads(1, [&] { backend().binary(op, one.view(), g.view(), x.view(), 0, 0); });
    with_threads(2, [&] { backend().binary(op, two.view(), g.view(), x.view(), 0, 0); });
    CHECK(same_bits(one, two));
  }
}

TEST_CASE("oneDNN eltwise backward: relu_grad stays on the loops, 0 for any g below 0",
          "[backend][onednn]") {
  // oneDNN's relu backward computes g * 0 there: NaN for an infinite g.
  const Shape shape{rows_for(onednn::kEltwiseBackwardMinElements), 64};
  Host g = random_host(shape, -2, 2, 13), x = random_host(shape, -1, 1, 14), out(shape);
  g.values[0] = float(kInf);
  g.values[1] = float(kNaN);
  x.values[0] = x.values[1] = -1.f;
  x.values[2] = 0.f;
  x.values[3] = float(kNaN);
  // Nor do the other *Grad ops (slower in oneDNN, or another definition).
  for (BinaryOp op : {BinaryOp::ReluGrad, BinaryOp::EluGrad, BinaryOp::SeluGrad,
                      BinaryOp::TanhGradFromOutput, BinaryOp::SigmoidGradFromOutput})
    CHECK_FALSE(onednn::try_eltwise_backward(op, out.view(), g.view(), x.view()));
  backend().binary(BinaryOp::ReluGrad, out.view(), g.view(), x.view(), 0, 0);
  CHECK(out.values[0] == 0.f);
  CHECK(out.values[1] == 0.f);
  CHECK(out.values[2] == 0.f);
  CHECK(out.values[3] == g.values[3]);  // NaN x: g passes, like threshold_backward
  for (int64_t i = 4; i < shape.numel(); ++i)
    REQUIRE(out.values[i] == (x.values[i] <= 0 ? 0.f : g.values[i]));
}

namespace {

// Layer norm of one row in float64, the variance around the mean.
struct RowStats {
  double mean, rstd;
};

RowStats row_stats(const float* x, int64_t c, double eps) {
  double sum = 0, sq = 0;
  for (int64_t j = 0; j < c; ++j) sum += x[j];
  const double m = sum / double(c);
  for (int64_t j = 0; j < c; ++j) sq += (x[j] - m) * (x[j] - m);
  return {m, 1 / std::sqrt(sq / double(c) + eps)};
}

}  // namespace

// The forward is routed with a weight from kLayerNormMinElements; the
// backward is not (slower, see onednn.h), so it is called directly here.
TEST_CASE("oneDNN layer norm: forward and backward against float64", "[backend][onednn]") {
  const double eps = 1e-5;
  for (int64_t c : {64, 256}) {
    const int64_t rows = rows_for(onednn::kLayerNormMinElements, c);
    const Shape shape{rows, c};
    // A large row mean: the variance must be taken around it, not as E[x^2] - m^2.
    Host x = random_host(shape, -1, 1, 7), g = random_host(shape, -1, 1, 8);
    for (int64_t j = 0; j < c; ++j) x.values[j] += 1000.f;
    for (int64_t j = 0; j < c; ++j) x.values[c + j] = 0.25f;  // a constant row: var = 0
    const Host w = random_host({c}, 0.5, 1.5, 9), b = random_host({c}, -1, 1, 10);
    for (bool affine : {true, false}) {
      INFO("row length " << c << (affine ? ", with weight and bias" : ", no weight or bias"));
      const ArrayView vw = affine ? w.view() : ArrayView{}, vb = affine ? b.view() : ArrayView{};
      Host y(shape), mean({rows}), rstd({rows}), gx(shape);
      const size_t plans = onednn::plans_built();
      backend().layer_norm(y.view(), mean.view(), rstd.view(), x.view(), vw, vb, eps);
      // Only the affine form is routed (a plan per chunk).
      if (affine) {
        CHECK(onednn::plans_built() > plans);
      } else {
        CHECK(onednn::plans_built() == plans);
      }
      // oneDNN whatever the routing.
      Host yd(shape), meand({rows}), rstdd({rows});
      REQUIRE(onednn::try_layer_norm(yd.view(), meand.view(), rstdd.view(), x.view(), vw, vb, eps));
      REQUIRE(onednn::try_layer_norm_backward(gx.view(), g.view(), x.view(), meand.view(),
                                              rstdd.view(), vw));
      for (int64_t r = 0; r < rows; ++r) {
        INFO("row " << r);
        const float* xr = x.values.data() + r * c;
        const float* gr = g.values.data() + r * c;
        const RowStats s = row_stats(xr, c, eps);
        for (const Host* m : {&mean, &meand}) REQUIRE(close(m->values[r], s.mean, 1e-6));
        for (const Host* rs : {&rstd, &rstdd}) REQUIRE(close(rs->values[r], s.rstd, 1e-5));
        double sum_dy = 0, sum_dy_xhat = 0;
        // float32 rounding of the mean itself (ulp(1000) / 2) shifts every xhat,
        // and the loop's own rounding of x - mean adds as much again (an -O1
        // sanitizer build, which does not vectorise, rounds differently).
        const double tol = 2e-5 + 4 * std::abs(s.mean) * s.rstd * 6e-8;
        for (int64_t j = 0; j < c; ++j) {
          const double xhat = (xr[j] - s.mean) * s.rstd;
          const double wj = affine ? w.values[j] : 1, bj = affine ? b.values[j] : 0;
          REQUIRE(close(y.values[r * c + j], xhat * wj + bj, tol));
          REQUIRE(close(yd.values[r * c + j], xhat * wj + bj, tol));
          sum_dy += gr[j] * wj;
          sum_dy_xhat += gr[j] * wj * xhat;
        }
        for (int64_t j = 0; j < c; ++j) {
          const double xhat = (xr[j] - s.mean) * s.rstd;
          const double dy = gr[j] * (affine ? w.values[j] : 1);
          const double want = s.rstd * (dy - sum_dy / c - xhat * sum_dy_xhat / c);
          // The gradient scales with rstd (316 for the constant row).
          REQUIRE(close(gx.values[r * c + j], want, 1e-5 * std::max(1.0, s.rstd)));
        }
      }
      // Each row is one thread's work: the same bits for 1 and 2 threads.
      Host y1(shape), y2(shape), m1({rows}), m2({rows}), r1({rows}), r2({rows}), gx1(shape),
          gx2(shape);
      with_threads(1, [&] {
        CHECK(onednn::try_layer_norm(y1.view(), m1.view(), r1.view(), x.view(), vw, vb, eps));
        CHECK(onednn::try_layer_norm_backward(gx1.view(), g.view(), x.view(), m1.view(), r1.view(),
                                              vw));
      });
      with_threads(2, [&] {
        CHECK(onednn::try_layer_norm(y2.view(), m2.view(), r2.view(), x.view(), vw, vb, eps));
        CHECK(onednn::try_layer_norm_backward(gx2.view(), g.view(), x.view(), m2.view(), r2.view(),
                                              vw));
      });
      CHECK(same_bits(y1, y2));
      CHECK(same_bits(m1, m2));
      CHECK(same_bits(r1, r2));
      CHECK(same_bits(gx1, gx2));
    }
  }
}

TEST_CASE("oneDNN paths are skipped when switched off, below the thresholds, for float64",
          "[backend][onednn]") {
  const Shape small{4, 64};
  Host a = random_host(small, -1, 1, 11), b = random_host(small, -1, 1, 12), out(small);
  const size_t plans = onednn::plans_built();
  backend().binary(BinaryOp::GeluErfGrad, out.view(), a.view(), b.view(), 0, 0);
  CHECK(onednn::plans_built() == plans);  // 256 elements: the loops
  CHECK(close(out.values[3], gelu_grad_ref(BinaryOp::GeluErfGrad, a.values[3], b.values[3]), 1e-6));
  // Add is not routed at any size.
  const Shape big{1 << 16};
  Host x = random_host(big, -1, 1, 13), y = random_host(big, -1, 1, 14), z(big);
  backend().binary(BinaryOp::Add, z.view(), x.view(), y.view(), 0, 0);
  CHECK(onednn::plans_built() == plans);
  CHECK(z.values[100] == x.values[100] + y.values[100]);
  // Switched off, every try_* declines.
  CHECK(onednn::try_eltwise_backward(BinaryOp::GeluErfGrad, z.view(), x.view(), y.view()));
  onednn::set_enabled(false);
  CHECK_FALSE(onednn::enabled());
  CHECK_FALSE(onednn::try_eltwise_backward(BinaryOp::GeluErfGrad, z.view(), x.view(), y.view()));
  CHECK_FALSE(onednn::try_binary(BinaryOp::Add, z.view(), x.view(), y.view()));
  onednn::set_enabled(true);
  // float64 never goes to oneDNN.
  const size_t before = onednn::plans_built();
  std::vector<double> xd(1 << 16, 1.5), gd(1 << 16, 2.0), zd(1 << 16);
  const Shape strides = contiguous_strides(big);
  backend().binary(BinaryOp::GeluErfGrad, {zd.data(), DType::Float64, big, strides},
                   {gd.data(), DType::Float64, big, strides},
                   {xd.data(), DType::Float64, big, strides}, 0, 0);
  CHECK(onednn::plans_built() == before);
  CHECK(close(zd[100], gelu_grad_ref(BinaryOp::GeluErfGrad, 2.0, 1.5), 1e-12));
}
