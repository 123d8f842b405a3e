// matmul and linear (autograd/ops_linalg.cpp): numpy.matmul semantics against
// a float64 triple loop written here, float32 against float64, gradients
// against finite differences, and the fused linear (bias + epilogue) against
// the same computation composed from separate ops.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

using namespace tide;

namespace {

Tensor random64(const Shape& shape, uint64_t seed, double low = -2, double high = 2,
                bool requires_grad = true) {
  Generator gen(seed);
  return uniform(shape, low, high, gen, {.dtype = DType::Float64, .requires_grad = requires_grad});
}

// A random leaf of the given dtype (drawn in float64, then converted).
Tensor random_leaf(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = detach(to(random64(shape, seed, -2, 2, false), dtype));
  t.set_requires_grad(true);
  return t;
}

struct HostArray {
  std::vector<double> data;
  std::vector<int64_t> shape;
};

// numpy.matmul on row-major data: 1-D operands become a row (left) or a column
// (right) and that dim is dropped from the result; batch dims broadcast.
HostArray host_matmul(HostArray a, HostArray b) {
  bool a_vector = a.shape.size() == 1, b_vector = b.shape.size() == 1;
  if (a_vector) a.shape.insert(a.shape.begin(), 1);
  if (b_vector) b.shape.push_back(1);
  int64_t m = a.shape[a.shape.size() - 2], k = a.shape.back(), n = b.shape.back();
  REQUIRE(b.shape[b.shape.size() - 2] == k);
  std::vector<int64_t> a_batch(a.shape.begin(), a.shape.end() - 2);
  std::vector<int64_t> b_batch(b.shape.begin(), b.shape.end() - 2);
  size_t rank = std::max(a_batch.size(), b_batch.size());
  // Left-pad the batch shapes with 1s, then broadcast.
  a_batch.insert(a_batch.begin(), rank - a_batch.size(), 1);
  b_batch.insert(b_batch.begin(), rank - b_batch.size(), 1);
  std::vector<int64_t> batch(rank);
  int64_t batch_count = 1;
  for (size_t i = 0; i < rank; ++i) {
    REQUIRE((a_batch[i] == b_batch[i] || a_batch[i] == 1 || b_batch[i] == 1));
    batch[i] = std::max(a_batch[i], b_batch[i]);
    batch_count *= batch[i];
  }
  HostArray out;
  out.data.assign(static_cast<size_t>(batch_count * m * n), 0.0);
  for (int64_t t = 0; t < batch_count; ++t) {
    // The batch index of t, and the matching (broadcast) batch of a and b.
    int64_t rest = t, a_off = 0, b_off = 0, a_stride = 1, b_stride = 1;
    for (int i = static_cast<int>(rank) - 1; i >= 0; --i) {
      int64_t idx = rest % batch[i];
      rest /= batch[i];
      a_off += (a_batch[i] == 1 ? 0 : idx) * a_stride;
      b_off += (b_batch[i] == 1 ? 0 : idx) * b_stride;
      a_stride *= a_batch[i];
      b_stride *= b_batch[i];
    }
    const double* pa = a.data.data() + a_off * m * k;
    const double* pb = b.data.data() + b_off * k * n;
    double* po = out.data.data() + t * m * n;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += pa[i * k + p] * pb[p * n + j];
        po[i * n + j] = acc;
      }
  }
  out.shape = batch;
  if (!a_vector) out.shape.push_back(m);
  if (!b_vector) out.shape.push_back(n);
  return out;
}

void require_close(const std::vector<double>& actual, const std::vector<double>& expected,
                   double tol) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("element " << i << ": " << actual[i] << " vs expected " << expected[i]);
    REQUIRE(std::abs(actual[i] - expected[i]) <= tol * (1 + std::abs(expected[i])));
  }
}

void require_close(const Tensor& actual, const Tensor& expected, double tol) {
  REQUIRE(actual.shape() == expected.shape());
  require_close(actual.to_vector<double>(), expected.to_vector<double>(), tol);
}

struct MatmulCase {
  Shape a, b, out;
};

// Every numpy.matmul rank combination, including broadcast batch dims.
std::vector<MatmulCase> matmul_cases() {
  return {
      {{4}, {4}, {}},                           // dot product
      {{3, 4}, {4}, {3}},                       // matrix @ vector
      {{4}, {4, 2}, {2}},                       // vector @ matrix
      {{3, 4}, {4, 2}, {3, 2}},                 // matrix @ matrix
      {{2, 3, 4}, {4}, {2, 3}},                 // batch @ vector
      {{4}, {2, 4, 3}, {2, 3}},                 // vector @ batch
      {{2, 3, 4}, {4, 2}, {2, 3, 2}},           // batch @ matrix
      {{2, 1, 3, 4}, {5, 4, 2}, {2, 5, 3, 2}},  // broadcast batch dims
      {{1, 3, 4}, {2, 4, 1}, {2, 3, 1}},
  };
}

Tensor apply_epilogue(const Tensor& z, Epilogue e) {
  switch (e) {
    case Epilogue::None:
      return z;
    case Epilogue::Relu:
      return relu(z);
    case Epilogue::Tanh:
      return tanh(z);
    case Epilogue::Sigmoid:
      return sigmoid(z);
    case Epilogue::Selu:
      return selu(z);
  }
  return z;
}

// The unfused reference: matmul, then add, then the activation.
Tensor composed_linear(const Tensor& x, const Tensor& w, const Tensor& b, Epilogue e) {
  Tensor z = matmul(x, transpose(w, 0, 1));
  if (b.defined()) z = add(z, b);
  return apply_epilogue(z, e);
}

const std::vector<Epilogue> kEpilogues = {Epilogue::None, Epilogue::Relu, Epilogue::Tanh,
                                          Epilogue::Sigmoid, Epilogue::Selu};

}  // namespace

TEST_CASE("matmul follows numpy.matmul and matches a float64 triple loop", "[linalg]") {
  uint64_t seed = 1;
  for (const MatmulCase& c : matmul_cases()) {
    INFO(c.a.str() << " @ " << c.b.str());
    Tensor a = random64(c.a, seed++, -2, 2, false);
    Tensor b = random64(c.b, seed++, -2, 2, false);
    HostArray expected =
        host_matmul({a.to_vector<double>(), c.a.vec()}, {b.to_vector<double>(), c.b.vec()});
    REQUIRE(Shape(expected.shape) == c.out);  // the test's own reference agrees with numpy
    Tensor out = matmul(a, b);
    REQUIRE(out.shape() == c.out);
    REQUIRE(out.dtype() == DType::Float64);
    require_close(out.to_vector<double>(), expected.data, 1e-13);
    // float32 agrees with float64 to float32 precision.
    Tensor out32 = matmul(to(a, DType::Float32), to(b, DType::Float32));
    REQUIRE(out32.dtype() == DType::Float32);
    REQUIRE(out32.shape() == c.out);
    require_close(out32.to_vector<double>(), expected.data, 1e-5);
  }
}

TEST_CASE("matmul of non-contiguous and larger operands", "[linalg]") {
  // Transposed views on both sides, and sizes past any small-matrix fast path.
  Tensor a = random64({67, 45}, 20, -1, 1, false);
  Tensor b = random64({33, 67}, 21, -1, 1, false);
  Tensor at = transpose(a, 0, 1);  // [45, 67]
  Tensor bt = transpose(b, 0, 1);  // [67, 33]
  HostArray expected = host_matmul({contiguous(at).to_vector<double>(), {45, 67}},
                                   {contiguous(bt).to_vector<double>(), {67, 33}});
  require_close(matmul(at, bt).to_vector<double>(), expected.data, 1e-12);
  require_close(matmul(to(at, DType::Float32), to(bt, DType::Float32)).to_vector<double>(),
                expected.data, 1e-5);
  // A batch whose matrices are strided (a permuted 3-D tensor).
  Tensor c = random64({4, 2, 3}, 22, -1, 1, false);
  Tensor cp = permute(c, {1, 0, 2});  // [2, 4, 3]
  Tensor d = random64({2, 3, 5}, 23, -1, 1, false);
  HostArray e = host_matmul({contiguous(cp).to_vector<double>(), {2, 4, 3}},
                            {d.to_vector<double>(), {2, 3, 5}});
  require_close(matmul(cp, d).to_vector<double>(), e.data, 1e-13);
}

TEST_CASE("matmul gradients, first and second order", "[linalg][grad]") {
  uint64_t seed = 100;
  for (const MatmulCase& c : matmul_cases()) {
    INFO(c.a.str() << " @ " << c.b.str());
    Tensor a = random64(c.a, seed++);
    Tensor b = random64(c.b, seed++);
    DifferentiableFn fn = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    CHECK(gradcheck(fn, {a, b}));
    CHECK(gradgradcheck(fn, {a, b}));
  }
  INFO("transposed operands; one operand without grad");
  Tensor a = random64({4, 3}, 200);
  Tensor b = random64({2, 4}, 201);
  DifferentiableFn strided = [](const std::vector<Tensor>& in) {
    return matmul(transpose(in[0], 0, 1), transpose(in[1], 0, 1));
  };
  CHECK(gradcheck(strided, {a, b}));
  CHECK(gradgradcheck(strided, {a, b}));
  Tensor constant = random64({3, 2}, 202, -2, 2, false);
  DifferentiableFn one_side = [&](const std::vector<Tensor>& in) {
    return matmul(in[0], constant);
  };
  CHECK(gradcheck(one_side, {random64({2, 3}, 203)}));
  CHECK(gradgradcheck(one_side, {random64({2, 3}, 203)}));
}

TEST_CASE("matmul rejects mismatched operands, naming both shapes", "[linalg]") {
  Tensor a = random64({2, 3}, 30, -1, 1, false);
  Tensor b = random64({4, 5}, 31, -1, 1, false);
  REQUIRE_THROWS_AS(matmul(a, b), Error);
  REQUIRE_THROWS_WITH(matmul(a, b), Catch::StartsWith("matmul") && Catch::Contains("[2, 3]") &&
                                        Catch::Contains("[4, 5]"));
  Tensor v = random64({4}, 32, -1, 1, false);
  REQUIRE_THROWS_WITH(matmul(a, v), Catch::StartsWith("matmul") && Catch::Contains("[2, 3]") &&
                                        Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(matmul(v, a), Catch::StartsWith("matmul") && Catch::Contains("[4]") &&
                                        Catch::Contains("[2, 3]"));
  // Batch dims that do not broadcast.
  Tensor p = random64({2, 3, 4}, 33, -1, 1, false);
  Tensor q = random64({3, 4, 5}, 34, -1, 1, false);
  REQUIRE_THROWS_WITH(matmul(p, q), Catch::Contains("matmul"));
  // 0-d operands.
  Tensor s = scalar(2.0, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(matmul(s, a), Catch::StartsWith("matmul"));
}

TEST_CASE("linear with each epilogue matches matmul + add + activation", "[linalg]") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    double tol = dtype == DType::Float64 ? 1e-12 : 1e-5;
    for (Epilogue e : kEpilogues) {
      for (bool with_bias : {true, false}) {
        INFO(dtype_name(dtype) << " epilogue " << op_name(e) << " bias " << with_bias);
        Tensor x = random_leaf({5, 4}, 40, dtype);
        Tensor w = random_leaf({3, 4}, 41, dtype);
        Tensor b = with_bias ? random_leaf({3}, 42, dtype) : Tensor();
        Tensor fused = linear(x, w, b, e);
        Tensor reference = composed_linear(x, w, b, e);
        REQUIRE(fused.dtype() == dtype);
        require_close(fused, reference, tol);
        Tensor gy = to(random64({5, 3}, 43, -1, 1, false), dtype);
        std::vector<Tensor> wrt{x, w};
        if (with_bias) wrt.push_back(b);
        std::vector<Tensor> g_fused = grad({fused}, wrt, {gy});
        std::vector<Tensor> g_ref = grad({reference}, wrt, {gy});
        for (size_t i = 0; i < wrt.size(); ++i) {
          INFO("gradient " << i);
          require_close(g_fused[i], g_ref[i], tol);
        }
      }
    }
  }
}

TEST_CASE("linear handles 1-D and batched inputs", "[linalg]") {
  Tensor w = random64({3, 4}, 50);
  Tensor b = random64({3}, 51);
  for (Shape shape : {Shape{4}, Shape{2, 3, 4}, Shape{2, 1, 2, 4}}) {
    INFO("input " << shape.str());
    Tensor x = random64(shape, 52);
    Shape out_shape = shape;
    out_shape[out_shape.size() - 1] = 3;
    for (Epilogue e : kEpilogues) {
      INFO("epilogue " << op_name(e));
      Tensor fused = linear(x, w, b, e);
      REQUIRE(fused.shape() == out_shape);
      Tensor reference = composed_linear(x, w, b, e);
      require_close(fused, reference, 1e-12);
      Tensor gy = random64(out_shape, 53, -1, 1, false);
      std::vector<Tensor> g_fused = grad({fused}, {x, w, b}, {gy});
      std::vector<Tensor> g_ref = grad({reference}, {x, w, b}, {gy});
      for (size_t i = 0; i < 3; ++i) require_close(g_fused[i], g_ref[i], 1e-12);
    }
  }
}

TEST_CASE("linear gradients with each epilogue, first and second order", "[linalg][grad]") {
  Tensor x = random64({3, 4}, 60);
  Tensor w = random64({2, 4}, 61);
  Tensor b = random64({2}, 62);
  // The finite differences must not straddle relu's (or selu's) kink at 0:
  // check the pre-activations are well away from it at these inputs.
  {
    NoGradGuard no_grad;
    for (double z : add(matmul(x, transpose(w, 0, 1)), b).to_vector<double>())
      REQUIRE(std::abs(z) > 1e-2);
  }
  for (Epilogue e : kEpilogues) {
    INFO("epilogue " << op_name(e));
    DifferentiableFn fn = [e](const std::vector<Tensor>& in) {
      return linear(in[0], in[1], in[2], e);
    };
    CHECK(gradcheck(fn, {x, w, b}));
    CHECK(gradgradcheck(fn, {x, w, b}));
    DifferentiableFn no_bias = [e](const std::vector<Tensor>& in) {
      return linear(in[0], in[1], {}, e);
    };
    CHECK(gradcheck(no_bias, {x, w}));
    CHECK(gradgradcheck(no_bias, {x, w}));
  }
  INFO("non-contiguous batched input");
  Tensor xb = random64({4, 2, 2}, 63);
  DifferentiableFn strided = [](const std::vector<Tensor>& in) {
    return linear(permute(in[0], {1, 0, 2}), in[1], in[2], Epilogue::Tanh);
  };
  CHECK(gradcheck(strided, {xb, random64({3, 2}, 64), random64({3}, 65)}));
  CHECK(gradgradcheck(strided, {xb, random64({3, 2}, 64), random64({3}, 65)}));
}

TEST_CASE("linear rejects mismatched arguments", "[linalg]") {
  Tensor x = random64({2, 4}, 70);
  Tensor w = random64({3, 5}, 71);
  REQUIRE_THROWS_AS(linear(x, w), Error);
  REQUIRE_THROWS_WITH(linear(x, w), Catch::StartsWith("linear") && Catch::Contains("[2, 4]") &&
                                        Catch::Contains("[3, 5]"));
  REQUIRE_THROWS_WITH(linear(x, random64({4}, 72)),
                      Catch::StartsWith("linear") && Catch::Contains("weight"));
  REQUIRE_THROWS_WITH(linear(x, random64({3, 4}, 73), random64({2}, 74)),
                      Catch::Contains("bias") && Catch::Contains("[2]"));
}
