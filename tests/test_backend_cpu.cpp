// Tests for the CPU backend, calling the primitives directly with ArrayViews
// over host vectors. Every result is compared with an independent float64
// reference (closed forms, plain loops or central differences) written here.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/onednn.h"
#include "backends/cpu/threads.h"
#include "backends/philox.h"
#include "tensor/creation.h"
#include "tensor/kernels.h"

using namespace tide;

namespace {

Backend& backend() {
  return backend_for(Device::cpu());
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// bool tensors are stored one byte per element; std::vector<bool> is packed.
template <typename T>
using Storage = std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>;

// A host tensor: values plus the shape/strides an ArrayView sees them with.
template <typename T>
struct Host {
  std::vector<Storage<T>> values;
  Shape shape, strides;

  Host() = default;
  explicit Host(Shape s, T fill = T(0))
      : values(std::max<int64_t>(s.numel(), 1), Storage<T>(fill)),
        shape(s),
        strides(contiguous_strides(s)) {}
  ArrayView view() const {
    return {const_cast<Storage<T>*>(values.data()), dtype_of<T>, shape, strides};
  }
  // Element at a multi-index, honouring strides.
  double at(std::initializer_list<int64_t> index) const {
    int64_t off = 0, d = 0;
    for (int64_t i : index) off += i * strides[d++];
    return double(values[off]);
  }
};

// Deterministic pseudo-random doubles in [lo, hi).
std::vector<double> random_values(int64_t n, double lo, double hi, uint64_t seed = 1) {
  std::vector<double> v(n);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * double(s >> 11) / 9007199254740992.0;
  }
  return v;
}

template <typename T>
Host<T> from_values(Shape shape, const std::vector<double>& values) {
  Host<T> h(shape);
  for (size_t i = 0; i < values.size(); ++i) h.values[i] = Storage<T>(T(values[i]));
  return h;
}

template <typename T>
Host<T> random_host(Shape shape, double lo, double hi, uint64_t seed = 1) {
  return from_values<T>(shape, random_values(shape.numel(), lo, hi, seed));
}

// |got - want| <= tol * max(1, |want|), with NaN matching NaN.
bool close(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::abs(got - want) <= tol * std::max(1.0, std::abs(want));
}

// Runs fn with the given thread count, restoring the old one afterwards.
template <typename Fn>
void with_threads(int n, Fn&& fn) {
  int old = get_num_threads();
  set_num_threads(n);
  fn();
  set_num_threads(old);
}

// ---------------------------------------------------------------------------
// Reference formulas (float64)
// ---------------------------------------------------------------------------

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

double sigmoid_ref(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// Returns false if the op has no reference (a new op must add one here).
bool unary_ref(UnaryOp op, double x, double alpha, double beta, double& out) {
  switch (op) {
    case UnaryOp::Neg:
      out = -x;
      return true;
    case UnaryOp::Abs:
      out = std::fabs(x);
      return true;
    case UnaryOp::Sign:
      out = x > 0 ? 1 : (x < 0 ? -1 : 0);
      return true;
    case UnaryOp::Square:
      out = x * x;
      return true;
    case UnaryOp::Exp:
      out = std::exp(x);
      return true;
    case UnaryOp::Log:
      out = std::log(x);
      return true;
    case UnaryOp::Log1p:
      out = std::log1p(x);
      return true;
    case UnaryOp::Expm1:
      out = std::expm1(x);
      return true;
    case UnaryOp::Sqrt:
      out = std::sqrt(x);
      return true;
    case UnaryOp::Rsqrt:
      out = 1 / std::sqrt(x);
      return true;
    case UnaryOp::Reciprocal:
      out = 1 / x;
      return true;
    case UnaryOp::Sin:
      out = std::sin(x);
      return true;
    case UnaryOp::Cos:
      out = std::cos(x);
      return true;
    case UnaryOp::Tanh:
      out = std::tanh(x);
      return true;
    case UnaryOp::Sigmoid:
      out = sigmoid_ref(x);
      return true;
    case UnaryOp::Erf:
      out = std::erf(x);
      return true;
    case UnaryOp::Relu:
      out = std::isnan(x) ? x : std::max(x, 0.0);
      return true;
    case UnaryOp::Silu:
      out = x * sigmoid_ref(x);
      return true;
    case UnaryOp::GeluErf:
      out = x * 0.5 * (1 + std::erf(x / std::sqrt(2.0)));
      return true;
    case UnaryOp::GeluTanh:
      out = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
      return true;
    case UnaryOp::Elu:
      out = x > 0 ? x : alpha * (std::exp(x) - 1);
      return true;
    case UnaryOp::Selu:
      out = kSeluScale * (x > 0 ? x : kSeluAlpha * (std::exp(x) - 1));
      return true;
    case UnaryOp::Softplus:
      out = alpha * x > beta ? x : std::log1p(std::exp(alpha * x)) / alpha;
      return true;
    case UnaryOp::PowScalar:
      out = std::pow(x, alpha);
      return true;
    case UnaryOp::Clamp:
      out = std::isnan(x) ? x : std::min(std::max(x, alpha), beta);
      return true;
    case UnaryOp::Affine:
      out = alpha * x + beta;
      return true;
    case UnaryOp::LogicalNot:
      out = x == 0;
      return true;
  }
  return false;
}

// The forward function whose derivative a *Grad op computes (for the
// central-difference reference); false for ops that are not gradients.
bool grad_forward(BinaryOp op, double alpha, double beta, std::function<double(double)>& f) {
  auto of = [alpha, beta](UnaryOp u) {
    return [=](double x) {
      double y;
      unary_ref(u, x, alpha, beta, y);
      return y;
    };
  };
  switch (op) {
    case BinaryOp::ReluGrad:
      f = of(UnaryOp::Relu);
      return true;
    case BinaryOp::SiluGrad:
      f = of(UnaryOp::Silu);
      return true;
    case BinaryOp::GeluErfGrad:
      f = of(UnaryOp::GeluErf);
      return true;
    case BinaryOp::GeluTanhGrad:
      f = of(UnaryOp::GeluTanh);
      return true;
    case BinaryOp::EluGrad:
      f = of(UnaryOp::Elu);
      return true;
    case BinaryOp::SeluGrad:
      f = of(UnaryOp::Selu);
      return true;
    case BinaryOp::SoftplusGrad:
      f = of(UnaryOp::Softplus);
      return true;
    default:
      return false;
  }
}

double central_difference(const std::function<double(double)>& f, double x) {
  const double h = 1e-5;
  return (f(x + h) - f(x - h)) / (2 * h);
}

bool binary_ref(BinaryOp op, double a, double b, double alpha, double beta, double& out) {
  std::function<double(double)> f;
  if (grad_forward(op, alpha, beta, f)) {
    out = a * central_difference(f, b);
    return true;
  }
  switch (op) {
    case BinaryOp::Add:
      out = a + b;
      return true;
    case BinaryOp::Sub:
      out = a - b;
      return true;
    case BinaryOp::Mul:
      out = a * b;
      return true;
    case BinaryOp::Div:
      out = a / b;
      return true;
    case BinaryOp::Maximum:
      out = std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b);
      return true;
    case BinaryOp::Minimum:
      out = std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b);
      return true;
    case BinaryOp::Pow:
      out = std::pow(a, b);
      return true;
    case BinaryOp::Eq:
      out = a == b;
      return true;
    case BinaryOp::Ne:
      out = a != b;
      return true;
    case BinaryOp::Lt:
      out = a < b;
      return true;
    case BinaryOp::Le:
      out = a <= b;
      return true;
    case BinaryOp::Gt:
      out = a > b;
      return true;
    case BinaryOp::Ge:
      out = a >= b;
      return true;
    case BinaryOp::LogicalAnd:
      out = a != 0 && b != 0;
      return true;
    case BinaryOp::LogicalOr:
      out = a != 0 || b != 0;
      return true;
    case BinaryOp::SigmoidGradFromOutput:
      out = a * b * (1 - b);
      return true;
    case BinaryOp::TanhGradFromOutput:
      out = a * (1 - b * b);
      return true;
    case BinaryOp::SeluGradFromOutput: {
      // Recover x = selu^-1(y), then differentiate selu at x.
      const double scale = 1.0507009873554804934, alpha = 1.6732632423543772848;
      double x = b > 0 ? b / scale : std::log1p(b / (scale * alpha));
      out = a * (x > 0 ? scale : scale * alpha * std::exp(x));
      return true;
    }
    default:
      return false;
  }
}

constexpr UnaryOp kAllUnary[] = {
#define X(name, str) UnaryOp::name,
    TIDE_UNARY_OPS(X)
#undef X
};
constexpr BinaryOp kAllBinary[] = {
#define X(name, str) BinaryOp::name,
    TIDE_BINARY_OPS(X)
#undef X
};
constexpr ReduceOp kAllReduce[] = {
#define X(name, str) ReduceOp::name,
    TIDE_REDUCE_OPS(X)
#undef X
};
constexpr Epilogue kAllEpilogues[] = {
#define X(name, str) Epilogue::name,
    TIDE_EPILOGUE_OPS(X)
#undef X
};

// Parameters and an input range where each unary op is defined and smooth.
struct UnaryCase {
  double alpha = 0, beta = 0, lo = -3, hi = 3;
};

UnaryCase unary_case(UnaryOp op) {
  switch (op) {
    case UnaryOp::Log:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
      return {0, 0, 0.1, 4};
    case UnaryOp::Log1p:
      return {0, 0, -0.9, 4};
    case UnaryOp::Reciprocal:
      return {0, 0, 0.2, 4};
    case UnaryOp::Elu:
      return {0.7, 0};
    case UnaryOp::Softplus:
      return {2.0, 3.0};  // beta 2, threshold 3: both branches
    case UnaryOp::PowScalar:
      return {2.5, 0, 0.1, 3};
    case UnaryOp::Clamp:
      return {-1.0, 1.5};
    case UnaryOp::Affine:
      return {2.0, -0.5};
    default:
      return {};
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Registry, names, memory, threads
// ---------------------------------------------------------------------------

TEST_CASE("backend registry and op names", "[backend]") {
  CHECK(backend().device() == Device::cpu());
  CHECK(&backend_for(Device::cpu()) == &backend());
  CHECK(std::string(op_name(UnaryOp::GeluErf)) == "gelu");
  CHECK(std::string(op_name(BinaryOp::SigmoidGradFromOutput)) == "sigmoid_grad");
  CHECK(std::string(op_name(ReduceOp::Prod)) == "prod");
  CHECK(std::string(op_name(Epilogue::Selu)) == "selu");
  std::vector<std::string> names;
  for (UnaryOp op : kAllUnary) names.push_back(op_name(op));
  for (BinaryOp op : kAllBinary) names.push_back(op_name(op));
  auto sorted = names;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  for (const auto& n : names) CHECK(n != "?");
  // Without a registered CUDA backend, asking for one is an error.
  try {
    backend_for(Device::cuda(0));
    FAIL("expected tide::Error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("CUDA backend is not available"));
  }
}

TEST_CASE("allocate is aligned and reports impossible sizes", "[backend]") {
  for (size_t n : {size_t(0), size_t(1), size_t(63), size_t(1000), size_t(1) << 20}) {
    void* p = backend().allocate(n);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    std::memset(p, 0xab, n);
    backend().deallocate(p, n);
  }
  try {
    backend().allocate(size_t(1) << 60);
    FAIL("expected tide::Error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("allocate: cannot allocate 1152921504606846976 bytes"));
    CHECK_THAT(e.what(), Catch::Contains("GiB) on cpu"));
  }
  {
    // Less than the machine's memory but more than is available now (Linux
    // would overcommit it and kill the process when the pages are touched).
    const size_t physical = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
    std::ifstream meminfo("/proc/meminfo");
    std::string line;
    size_t available = 0;
    while (std::getline(meminfo, line)) {
      unsigned long long kib = 0;
      if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) available += kib * 1024;
      if (std::sscanf(line.c_str(), "SwapFree: %llu kB", &kib) == 1) available += kib * 1024;
    }
    const size_t request = available + (size_t{256} << 20);
    if (available > 0 && request < physical) {
      const size_t in_use = backend().memory_stats().bytes_in_use;
      try {
        backend().allocate(request);
        FAIL("expected tide::Error for " << request << " bytes");
      } catch (const Error& e) {
        CHECK_THAT(e.what(),
                   Catch::Contains("allocate: cannot allocate " + std::to_string(request)));
        CHECK_THAT(e.what(), Catch::Contains("GiB of memory available"));
      }
      CHECK(backend().memory_stats().bytes_in_use == in_use);
    } else {
      WARN("available-memory check skipped: " << available << " bytes available of " << physical);
    }
  }
  std::vector<char> host(100, 7), back(100, 0);
  void* p = backend().allocate(100);
  backend().copy_from_host(p, host.data(), 100);
  backend().copy_to_host(back.data(), p, 100);
  CHECK(back == host);
  backend().deallocate(p, 100);
}

TEST_CASE("memory statistics count bytes in use and the peak", "[backend]") {
  const MemoryStats before = backend().memory_stats();
  backend().reset_peak_memory_stats();
  void* a = backend().allocate(1000);
  void* b = backend().allocate(24);
  MemoryStats during = backend().memory_stats();
  CHECK(during.bytes_in_use == before.bytes_in_use + 1024);
  CHECK(during.peak_bytes_in_use >= during.bytes_in_use);
  CHECK(during.num_allocations == before.num_allocations + 2);
  backend().deallocate(a, 1000);
  backend().deallocate(b, 24);
  MemoryStats after = backend().memory_stats();
  CHECK(after.bytes_in_use == before.bytes_in_use);
  CHECK(after.peak_bytes_in_use >= before.bytes_in_use + 1024);
  {
    // A tensor's storage goes through the same allocator.
    Tensor t = zeros({256}, {.dtype = DType::Float64});
    CHECK(backend().memory_stats().bytes_in_use == before.bytes_in_use + 256 * 8);
  }
  CHECK(backend().memory_stats().bytes_in_use == before.bytes_in_use);
}

TEST_CASE("Philox's portable log and cosine match the math library", "[backend][random]") {
  // They replace std::log/std::cos in Box-Muller so every device computes the
  // same bits (backends/philox.h); here they are held to the library's values.
  std::vector<double> us = {1.0, 0.5, 0.75, 0.25, 0.125, 0.375, 0.625, 0.875, 0x1p-53, 1 - 0x1p-53};
  for (uint64_t c = 0; c < 200000; ++c) us.push_back(philox::uniform(99, c));
  for (double u : us) {
    INFO("u = " << u);
    if (u > 0) {
      double want = std::log(u);
      CHECK(std::abs(philox::portable_log(u) - want) <= 1e-15 * std::max(std::abs(want), 1e-300));
    }
    CHECK(std::abs(philox::portable_cos_2pi(u) - std::cos(2 * M_PI * u)) <= 1e-15);
  }
  CHECK(philox::portable_log(1.0) == 0.0);
  CHECK(philox::portable_cos_2pi(0.0) == 1.0);
  CHECK(philox::portable_cos_2pi(0.5) == -1.0);
}

TEST_CASE("large blocks are cached and handed out again", "[backend]") {
  auto& cpu = cpu::cpu_backend();
  cpu.empty_cache();
  CHECK(cpu.memory_stats().bytes_cached == 0);
  const size_t n = cpu::CpuBackend::kLargeBlock * 3 + 100;
  void* a = cpu.allocate(n);
  REQUIRE(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  std::memset(a, 1, n);
  cpu.deallocate(a, n);
  const size_t cached = cpu.memory_stats().bytes_cached;
  CHECK(cached >= n);
  CHECK(cached < n + std::bit_ceil(n) / 8);  // a size class is a 1/8 power-of-two step
  void* b = cpu.allocate(n - 50);            // same size class: the same block
  CHECK(b == a);
  CHECK(cpu.memory_stats().bytes_cached == 0);
  std::memset(b, 2, n - 50);
  cpu.deallocate(b, n - 50);
  cpu.empty_cache();
  CHECK(cpu.memory_stats().bytes_cached == 0);
  // Small blocks are never cached.
  void* c = cpu.allocate(1000);
  cpu.deallocate(c, 1000);
  CHECK(cpu.memory_stats().bytes_cached == 0);
}

TEST_CASE("thread count setting", "[backend]") {
  const int old = get_num_threads();
  CHECK(old >= 1);
  set_num_threads(1);
  CHECK(get_num_threads() == 1);
  set_num_threads(3);
  CHECK(get_num_threads() == 3);
  CHECK_THROWS_AS(set_num_threads(0), Error);
  set_num_threads(old);
}

// ---------------------------------------------------------------------------
// Unary
// ---------------------------------------------------------------------------

namespace {

// Checks one unary op for dtype T on n elements, with the input laid out with
// `input_stride` (1: contiguous, 2: every other element, 0: one broadcast value).
template <typename T>
void check_unary(UnaryOp op, int64_t n, int64_t input_stride, double tol) {
  const UnaryCase c = unary_case(op);
  const int64_t stored = input_stride == 0 ? 1 : n * input_stride;
  Host<T> src = random_host<T>({stored}, c.lo, c.hi, 7 + int(op));
  ArrayView in = src.view();
  in.shape = {n};
  in.strides = {input_stride};
  Host<T> dst({n});
  backend().unary(op, dst.view(), in, c.alpha, c.beta);
  int bad = 0;
  for (int64_t i = 0; i < n && bad < 5; ++i) {
    const double x = double(src.values[i * input_stride]);
    double want;
    REQUIRE(unary_ref(op, x, c.alpha, c.beta, want));
    if (!close(double(dst.values[i]), want, tol)) {
      ++bad;
      FAIL_CHECK(op_name(op) << " " << dtype_name(dtype_of<T>) << " n=" << n
                             << " stride=" << input_stride << " x=" << x << ": got "
                             << double(dst.values[i]) << ", want " << want);
    }
  }
}

}  // namespace

TEST_CASE("every unary op matches its float64 reference", "[backend][unary]") {
  // 100 elements take the plain loops; 40000 float32 elements take oneDNN
  // where it has the op.
  for (UnaryOp op : kAllUnary) {
    if (op == UnaryOp::LogicalNot) continue;
    for (int64_t stride : {1, 2, 0}) {
      check_unary<double>(op, 100, stride, 1e-12);
      check_unary<float>(op, 100, stride, 2e-6);
    }
    check_unary<float>(op, 40000, 1, 2e-6);
    check_unary<double>(op, 40000, 1, 1e-12);
  }
}

TEST_CASE("unary ops on NaN, zero and huge inputs match the reference", "[backend][unary]") {
  const std::vector<double> special = {kNaN, -100, -20, -1e-3, 0, 1e-3, 20, 100};
  for (UnaryOp op : kAllUnary) {
    if (op == UnaryOp::LogicalNot) continue;
    const UnaryCase c = unary_case(op);
    for (int64_t copies : {1, 2000}) {  // plain loops, then the oneDNN size
      const int64_t n = int64_t(special.size()) * copies;
      Host<float> x({n}), y({n});
      for (int64_t i = 0; i < n; ++i) x.values[i] = float(special[i % special.size()]);
      backend().unary(op, y.view(), x.view(), c.alpha, c.beta);
      for (size_t i = 0; i < special.size(); ++i) {
        double want;
        REQUIRE(unary_ref(op, double(x.values[i]), c.alpha, c.beta, want));
        want = double(float(want));  // what float32 can hold (overflow to inf)
        INFO(op_name(op) << " n=" << n << " x=" << x.values[i]);
        CHECK(close(double(y.values[i]), want, 2e-6));
      }
    }
  }
}

TEST_CASE("unary special values, integer and bool ops", "[backend][unary]") {
  SECTION("NaN and zero") {
    for (int64_t n : {3, 20000}) {  // plain loop and oneDNN sizes
      Host<float> x({n}, 0.f), y({n});
      x.values[0] = float(kNaN);
      x.values[1] = -0.0f;
      x.values[2] = -2.f;
      backend().unary(UnaryOp::Relu, y.view(), x.view(), 0, 0);
      CHECK(std::isnan(y.values[0]));
      CHECK(y.values[2] == 0.f);
      backend().unary(UnaryOp::Sign, y.view(), x.view(), 0, 0);
      CHECK(y.values[0] == 0.f);  // torch.sign(nan) == 0
      CHECK(y.values[1] == 0.f);
      CHECK(y.values[2] == -1.f);
      backend().unary(UnaryOp::Clamp, y.view(), x.view(), -1, 1);
      CHECK(std::isnan(y.values[0]));
      CHECK(y.values[2] == -1.f);
    }
  }
  SECTION("PowScalar special exponents") {
    Host<double> x = from_values<double>({4}, {0.5, 1.0, 2.0, 3.5}), y({4});
    for (double e : {2.0, 3.0, 1.0, 0.5, -0.5, -1.0, -2.0, 0.0, 1.7}) {
      backend().unary(UnaryOp::PowScalar, y.view(), x.view(), e, 0);
      for (int i = 0; i < 4; ++i) CHECK(close(y.values[i], std::pow(x.values[i], e), 1e-14));
    }
  }
  SECTION("int64") {
    Host<int64_t> x = from_values<int64_t>({5}, {-3, -1, 0, 2, 7}), y({5});
    backend().unary(UnaryOp::Neg, y.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<int64_t>{3, 1, 0, -2, -7});
    backend().unary(UnaryOp::Abs, y.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<int64_t>{3, 1, 0, 2, 7});
    backend().unary(UnaryOp::Sign, y.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<int64_t>{-1, -1, 0, 1, 1});
    backend().unary(UnaryOp::Square, y.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<int64_t>{9, 1, 0, 4, 49});
    for (UnaryOp op : kAllUnary) {
      if (op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Square)
        continue;
      CHECK_THROWS_AS(backend().unary(op, y.view(), x.view(), 1, 1), Error);
    }
  }
  SECTION("bool") {
    Host<bool> x({3}), y({3});
    x.values = {1, 0, 1};
    backend().unary(UnaryOp::LogicalNot, y.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<uint8_t>{0, 1, 0});
    CHECK_THROWS_AS(backend().unary(UnaryOp::Exp, y.view(), x.view(), 0, 0), Error);
    Host<float> f({3});
    CHECK_THROWS_WITH(backend().unary(UnaryOp::LogicalNot, f.view(), f.view(), 0, 0),
                      Catch::Contains("logical_not"));
  }
  SECTION("mismatched dtypes name the op") {
    Host<float> x({3});
    Host<double> y({3});
    CHECK_THROWS_WITH(
        backend().unary(UnaryOp::Exp, y.view(), x.view(), 0, 0),
        Catch::Contains("exp") && Catch::Contains("float32") && Catch::Contains("float64"));
  }
}

// ---------------------------------------------------------------------------
// Binary
// ---------------------------------------------------------------------------

namespace {

double binary_tolerance(BinaryOp op, bool is_double) {
  std::function<double(double)> f;
  if (grad_forward(op, 0, 0, f)) return is_double ? 1e-8 : 1e-5;  // central differences
  return is_double ? 1e-14 : 2e-6;
}

// a[i] op b[i] for a [rows, cols] problem; `layout` picks how b is laid out:
// 0 contiguous, 1 scalar broadcast (all strides 0), 2 row broadcast (b has one
// row, stride 0 on dim 0), 3 transposed storage.
template <typename T>
void check_binary(BinaryOp op, int64_t rows, int64_t cols, int layout) {
  const double alpha = op == BinaryOp::EluGrad ? 0.7 : 2.0;  // softplus: beta 2
  const double beta = 3.0;                                   // softplus: threshold 3
  const bool positive_a = op == BinaryOp::Pow;
  Host<T> a = random_host<T>({rows, cols}, positive_a ? 0.1 : -3, 3, 11 + int(op));
  Host<T> b;
  if (op == BinaryOp::SigmoidGradFromOutput) {
    b = random_host<T>({rows, cols}, 0.01, 0.99, 5);
  } else if (op == BinaryOp::TanhGradFromOutput) {
    b = random_host<T>({rows, cols}, -0.99, 0.99, 5);
  } else if (op == BinaryOp::SeluGradFromOutput) {
    b = random_host<T>({rows, cols}, -1.75, 3, 5);  // selu's range is (-1.7581, inf)
  } else {
    b = random_host<T>({rows, cols}, -3, 3, 5);
  }
  // Some exact ties and zeros for the comparisons and logical ops.
  for (int64_t i = 0; i < rows * cols; i += 7) a.values[i] = b.values[i];
  if (produces_bool(op))
    for (int64_t i = 3; i < rows * cols; i += 11) b.values[i] = 0;
  if (op == BinaryOp::Div)
    for (auto& v : b.values) v = v == T(0) ? T(1) : v;
  ArrayView bv = b.view();
  if (layout == 1) {
    bv.strides = {0, 0};
  } else if (layout == 2) {
    bv.strides = {0, 1};
  } else if (layout == 3) {
    bv.strides = {1, rows};  // b read as the transpose of a [cols, rows] buffer
  }
  auto b_at = [&](int64_t i, int64_t j) {
    return double(b.values[i * bv.strides[0] + j * bv.strides[1]]);
  };
  const bool to_bool = produces_bool(op);
  Host<T> out(to_bool ? Shape{1} : Shape{rows, cols});
  Host<bool> out_bool(to_bool ? Shape{rows, cols} : Shape{1});
  ArrayView dst = to_bool ? out_bool.view() : out.view();
  backend().binary(op, dst, a.view(), bv, alpha, beta);
  const double tol = binary_tolerance(op, std::is_same_v<T, double>);
  int bad = 0;
  for (int64_t i = 0; i < rows && bad < 5; ++i)
    for (int64_t j = 0; j < cols && bad < 5; ++j) {
      const double x = double(a.values[i * cols + j]), y = b_at(i, j);
      double want;
      REQUIRE(binary_ref(op, x, y, alpha, beta, want));
      const double got =
          to_bool ? double(out_bool.values[i * cols + j]) : double(out.values[i * cols + j]);
      if (!close(got, want, tol)) {
        ++bad;
        FAIL_CHECK(op_name(op) << " " << dtype_name(dtype_of<T>) << " layout " << layout
                               << " a=" << x << " b=" << y << ": got " << got << ", want " << want);
      }
    }
}

}  // namespace

TEST_CASE("every binary op matches its float64 reference", "[backend][binary]") {
  for (BinaryOp op : kAllBinary) {
    for (int layout = 0; layout < 4; ++layout) {
      check_binary<double>(op, 7, 9, layout);
      check_binary<float>(op, 7, 9, layout);
    }
    check_binary<float>(op, 128, 160, 0);  // above the oneDNN / threading sizes
    check_binary<float>(op, 128, 160, 2);
    check_binary<double>(op, 128, 160, 1);
  }
}

TEST_CASE("binary NaN rules, integers and bools", "[backend][binary]") {
  SECTION("NaN") {
    Host<float> a = from_values<float>({3}, {kNaN, 1, kNaN});
    Host<float> b = from_values<float>({3}, {1, kNaN, kNaN});
    Host<float> y({3});
    Host<bool> c({3});
    for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum}) {
      backend().binary(op, y.view(), a.view(), b.view(), 0, 0);
      for (float v : y.values) CHECK(std::isnan(v));
    }
    for (BinaryOp op : {BinaryOp::Eq, BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge}) {
      backend().binary(op, c.view(), a.view(), b.view(), 0, 0);
      CHECK(c.values == std::vector<uint8_t>{0, 0, 0});
    }
    backend().binary(BinaryOp::Ne, c.view(), a.view(), b.view(), 0, 0);
    CHECK(c.values == std::vector<uint8_t>{1, 1, 1});
  }
  SECTION("relu_grad is 0 at x == 0") {
    Host<double> g = from_values<double>({3}, {5, 5, 5}), x = from_values<double>({3}, {-1, 0, 2});
    Host<double> y({3});
    backend().binary(BinaryOp::ReluGrad, y.view(), g.view(), x.view(), 0, 0);
    CHECK(y.values == std::vector<double>{0, 0, 5});
  }
  SECTION("int64") {
    Host<int64_t> a = from_values<int64_t>({6}, {2, -3, 0, 7, 1, -1});
    Host<int64_t> b = from_values<int64_t>({6}, {10, 3, 5, 0, -4, -3});
    Host<int64_t> y({6});
    backend().binary(BinaryOp::Pow, y.view(), a.view(), b.view(), 0, 0);
    CHECK(y.values == std::vector<int64_t>{1024, -27, 0, 1, 1, -1});
    for (BinaryOp op : kAllBinary) {
      const bool int_ok = op <= BinaryOp::LogicalOr && op != BinaryOp::Div;
      Host<bool> yb({6});
      ArrayView dst = produces_bool(op) ? yb.view() : y.view();
      if (int_ok) {
        backend().binary(op, dst, a.view(), b.view(), 0, 0);
        for (int i = 0; i < 6; ++i) {
          double want;
          REQUIRE(binary_ref(op, double(a.values[i]), double(b.values[i]), 0, 0, want));
          const double got = produces_bool(op) ? double(yb.values[i]) : double(y.values[i]);
          if (op == BinaryOp::Pow) continue;  // integer pow truncates: checked above
          CHECK(got == want);
        }
      } else {
        CHECK_THROWS_WITH(backend().binary(op, dst, a.view(), b.view(), 0, 0),
                          Catch::Contains(op_name(op)) && Catch::Contains("int64"));
      }
    }
  }
  SECTION("bool") {
    Host<bool> a({4}), b({4}), y({4});
    a.values = {0, 0, 1, 1};
    b.values = {0, 1, 0, 1};
    backend().binary(BinaryOp::LogicalAnd, y.view(), a.view(), b.view(), 0, 0);
    CHECK(y.values == std::vector<uint8_t>{0, 0, 0, 1});
    backend().binary(BinaryOp::LogicalOr, y.view(), a.view(), b.view(), 0, 0);
    CHECK(y.values == std::vector<uint8_t>{0, 1, 1, 1});
    backend().binary(BinaryOp::Add, y.view(), a.view(), b.view(), 0, 0);
    CHECK(y.values == std::vector<uint8_t>{0, 1, 1, 1});
    backend().binary(BinaryOp::Lt, y.view(), a.view(), b.view(), 0, 0);
    CHECK(y.values == std::vector<uint8_t>{0, 1, 0, 0});
    CHECK_THROWS_AS(backend().binary(BinaryOp::Sub, y.view(), a.view(), b.view(), 0, 0), Error);
  }
  SECTION("dtype errors name the op and the dtypes") {
    Host<float> a({2});
    Host<double> b({2});
    CHECK_THROWS_WITH(backend().binary(BinaryOp::Add, a.view(), a.view(), b.view(), 0, 0),
                      Catch::Contains("add") && Catch::Contains("float64"));
    CHECK_THROWS_WITH(backend().binary(BinaryOp::Lt, a.view(), a.view(), a.view(), 0, 0),
                      Catch::Contains("lt"));
  }
}

// ---------------------------------------------------------------------------
// copy, fill, where
// ---------------------------------------------------------------------------

TEST_CASE("copy converts dtypes and handles strided and broadcast views", "[backend]") {
  SECTION("conversions") {
    Host<double> d = from_values<double>({4}, {-1.5, 0, 2.7, kNaN});
    Host<float> f({4});
    Host<int64_t> i({4});
    Host<bool> b({4});
    backend().copy(f.view(), d.view());
    CHECK(f.values[0] == -1.5f);
    CHECK(std::isnan(f.values[3]));
    backend().copy(b.view(), d.view());
    CHECK(b.values == std::vector<uint8_t>{1, 0, 1, 1});  // NaN is truthy, like PyTorch
    Host<double> d3 = from_values<double>({3}, {-1.5, 0, 2.7});
    Host<int64_t> i3({3});
    backend().copy(i3.view(), d3.view());
    CHECK(i3.values == std::vector<int64_t>{-1, 0, 2});  // truncation toward zero
    Host<double> back({4});
    backend().copy(back.view(), b.view());
    CHECK(back.values == std::vector<double>{1, 0, 1, 1});
  }
  SECTION("non-contiguous dst (a transposed view) and broadcast src") {
    Host<float> src = random_host<float>({3, 5}, -1, 1);
    Host<float> dst_storage({5, 3});
    ArrayView dst = dst_storage.view();
    dst.shape = {3, 5};
    dst.strides = {1, 3};
    backend().copy(dst, src.view());
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) CHECK(dst_storage.values[j * 3 + i] == src.values[i * 5 + j]);
    Host<float> row = random_host<float>({5}, -1, 1);
    ArrayView bcast = row.view();
    bcast.shape = {3, 5};
    bcast.strides = {0, 1};
    Host<double> out({3, 5});
    backend().copy(out.view(), bcast);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) CHECK(out.values[i * 5 + j] == double(row.values[j]));
  }
  SECTION("large copy (threaded)") {
    Host<float> src = random_host<float>({300, 400}, -1, 1);
    Host<float> dst_storage({400, 300});
    ArrayView dst = dst_storage.view();
    dst.shape = {300, 400};
    dst.strides = {1, 300};
    backend().copy(dst, src.view());
    bool ok = true;
    for (int i = 0; i < 300; ++i)
      for (int j = 0; j < 400; ++j)
        ok = ok && dst_storage.values[j * 300 + i] == src.values[i * 400 + j];
    CHECK(ok);
  }
}

TEST_CASE("fill writes only the viewed elements", "[backend]") {
  Host<double> storage({4, 6}, -7.0);
  ArrayView every_other = storage.view();
  every_other.shape = {4, 3};
  every_other.strides = {6, 2};
  backend().fill(every_other, 2.5);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j) CHECK(storage.values[i * 6 + j] == (j % 2 == 0 ? 2.5 : -7.0));
  Host<bool> b({5});
  backend().fill(b.view(), 3.0);
  CHECK(b.values == std::vector<uint8_t>(5, 1));
  Host<int64_t> scalar(Shape{});
  backend().fill(scalar.view(), 42);
  CHECK(scalar.values[0] == 42);
  Host<float> empty({0, 3});
  backend().fill(empty.view(), 1.0);  // nothing to do, no crash
}

TEST_CASE("where selects with a broadcast condition", "[backend]") {
  Host<bool> cond({3});
  cond.values = {1, 0, 1};
  ArrayView c = cond.view();
  c.shape = {2, 3};
  c.strides = {0, 1};
  Host<int64_t> a = from_values<int64_t>({2, 3}, {1, 2, 3, 4, 5, 6});
  Host<int64_t> b = from_values<int64_t>({2, 3}, {-1, -2, -3, -4, -5, -6});
  Host<int64_t> y({2, 3});
  backend().where(y.view(), c, a.view(), b.view());
  CHECK(y.values == std::vector<int64_t>{1, -2, 3, 4, -5, 6});
  CHECK_THROWS_AS(backend().where(y.view(), a.view(), a.view(), b.view()), Error);
}

// ---------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------

namespace {

// Reference reduction over the dims in `mask` of src (any strides), in double.
template <typename T>
std::vector<double> reduce_ref(ReduceOp op, const Host<T>& src, const ArrayView& view,
                               unsigned mask, Shape& out_shape) {
  const int r = view.rank();
  out_shape = view.shape;
  for (int d = 0; d < r; ++d)
    if (mask & (1u << d)) out_shape[d] = 1;
  std::vector<double> out(out_shape.numel());
  std::vector<bool> started(out.size(), false);
  const Shape out_strides = contiguous_strides(out_shape);
  for (int64_t flat = 0; flat < view.numel(); ++flat) {
    int64_t rest = flat, src_off = 0, out_off = 0;
    for (int d = r - 1; d >= 0; --d) {
      const int64_t i = rest % view.shape[d];
      rest /= view.shape[d];
      src_off += i * view.strides[d];
      if (!(mask & (1u << d))) out_off += i * out_strides[d];
    }
    const double x = double(src.values[src_off]);
    double& acc = out[out_off];
    if (!started[out_off]) {
      acc = x;
      started[out_off] = true;
      continue;
    }
    switch (op) {
      case ReduceOp::Sum:
        acc += x;
        break;
      case ReduceOp::Prod:
        acc *= x;
        break;
      case ReduceOp::Max:
        acc = std::isnan(acc) || std::isnan(x) ? kNaN : std::max(acc, x);
        break;
      case ReduceOp::Min:
        acc = std::isnan(acc) || std::isnan(x) ? kNaN : std::min(acc, x);
        break;
    }
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (!started[i]) out[i] = op == ReduceOp::Prod ? 1 : 0;
  return out;
}

template <typename T>
void check_reduce_all_masks(const Host<T>& src, const ArrayView& view, double tol) {
  const int r = view.rank();
  for (ReduceOp op : kAllReduce) {
    for (unsigned mask = 0; mask < (1u << r); ++mask) {
      Shape out_shape;
      const std::vector<double> want = reduce_ref(op, src, view, mask, out_shape);
      Host<T> dst(out_shape);
      backend().reduce(op, dst.view(), view);
      for (size_t i = 0; i < want.size(); ++i) {
        if (!close(double(dst.values[i]), want[i], tol)) {
          FAIL_CHECK(op_name(op) << " mask " << mask << " shape " << view.shape.str() << " i " << i
                                 << ": got " << double(dst.values[i]) << ", want " << want[i]);
          break;
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("reduce over every set of dims", "[backend][reduce]") {
  SECTION("contiguous float64 and float32") {
    Host<double> d = random_host<double>({3, 4, 5}, 0.5, 1.5);
    check_reduce_all_masks(d, d.view(), 1e-13);
    Host<float> f = random_host<float>({6, 1, 7, 9}, 0.5, 1.5);
    check_reduce_all_masks(f, f.view(), 1e-6);
  }
  SECTION("strided (permuted) input") {
    Host<double> d = random_host<double>({4, 5, 6}, 0.5, 1.5);
    ArrayView v = d.view();
    v.shape = {6, 4, 5};
    v.strides = {1, 30, 6};
    check_reduce_all_masks(d, v, 1e-13);
  }
  SECTION("large outer and inner reductions") {
    Host<float> f = random_host<float>({1000, 300}, -1, 1);
    check_reduce_all_masks(f, f.view(), 1e-5);
  }
  SECTION("int64 and bool") {
    Host<int64_t> i = from_values<int64_t>({2, 3}, {1, -2, 3, 4, 5, -6});
    check_reduce_all_masks(i, i.view(), 0);
    Host<bool> b({2, 3});
    b.values = {1, 0, 1, 1, 1, 1};
    Host<bool> any({2, 1}), all({2, 1});
    backend().reduce(ReduceOp::Max, any.view(), b.view());
    backend().reduce(ReduceOp::Min, all.view(), b.view());
    CHECK(any.values == std::vector<uint8_t>{1, 1});
    CHECK(all.values == std::vector<uint8_t>{0, 1});
    Host<int64_t> count({1, 3});
    backend().reduce(ReduceOp::Sum, count.view(), b.view());
    CHECK(count.values == std::vector<int64_t>{2, 1, 2});
  }
  SECTION("NaN propagates through max and min") {
    Host<float> f = random_host<float>({4, 50}, -1, 1);
    f.values[77] = float(kNaN);
    Host<float> m({4, 1});
    backend().reduce(ReduceOp::Max, m.view(), f.view());
    CHECK(!std::isnan(m.values[0]));
    CHECK(std::isnan(m.values[1]));
    backend().reduce(ReduceOp::Min, m.view(), f.view());
    CHECK(std::isnan(m.values[1]));
  }
  SECTION("empty dims") {
    Host<float> empty({3, 0});
    Host<float> sum({3, 1}, 9.f), prod({3, 1}, 9.f), max({3, 1});
    backend().reduce(ReduceOp::Sum, sum.view(), empty.view());
    backend().reduce(ReduceOp::Prod, prod.view(), empty.view());
    CHECK(sum.values == std::vector<float>{0, 0, 0});
    CHECK(prod.values == std::vector<float>{1, 1, 1});
    CHECK_THROWS_WITH(backend().reduce(ReduceOp::Max, max.view(), empty.view()),
                      Catch::Contains("max") && Catch::Contains("empty"));
    Host<float> kept_empty({0, 1});
    Host<float> src({0, 4});
    backend().reduce(ReduceOp::Max, kept_empty.view(), src.view());  // no outputs: nothing to do
  }
}

TEST_CASE("large float32 sums are accurate and thread-count independent", "[backend][reduce]") {
  const int64_t n = 10'000'000;
  Host<float> ones({n}, 0.1f);
  Host<float> sum(Shape{1});
  backend().reduce(ReduceOp::Sum, sum.view(), ones.view());
  const double exact = double(n) * double(0.1f);
  CHECK(sum.values[0] == float(exact));

  Host<float> x = random_host<float>({n}, -1, 1, 3);
  Host<float> one_thread(Shape{1}), two_threads(Shape{1});
  with_threads(1, [&] { backend().reduce(ReduceOp::Sum, one_thread.view(), x.view()); });
  with_threads(2, [&] { backend().reduce(ReduceOp::Sum, two_threads.view(), x.view()); });
  CHECK(std::memcmp(one_thread.values.data(), two_threads.values.data(), sizeof(float)) == 0);

  Host<float> m = random_host<float>({3000, 700}, -1, 1, 4);
  for (unsigned mask : {1u, 2u}) {
    Shape out_shape = m.shape;
    out_shape[mask == 1u ? 0 : 1] = 1;
    Host<float> r1(out_shape), r2(out_shape);
    with_threads(1, [&] { backend().reduce(ReduceOp::Sum, r1.view(), m.view()); });
    with_threads(2, [&] { backend().reduce(ReduceOp::Sum, r2.view(), m.view()); });
    CHECK(r1.values == r2.values);
  }
}

TEST_CASE("arg_reduce: first of ties, NaN wins", "[backend][reduce]") {
  Host<double> x = from_values<double>({2, 4}, {1, 3, 3, 0, 2, kNaN, 5, kNaN});
  Host<int64_t> idx({2, 1});
  backend().arg_reduce(true, idx.view(), x.view(), 1);
  CHECK(idx.values == std::vector<int64_t>{1, 1});
  backend().arg_reduce(false, idx.view(), x.view(), 1);
  CHECK(idx.values == std::vector<int64_t>{3, 1});
  Host<int64_t> cols({1, 4});
  Host<int64_t> ints = from_values<int64_t>({2, 4}, {1, 7, 7, 0, 2, 7, -1, 0});
  backend().arg_reduce(true, cols.view(), ints.view(), 0);
  CHECK(cols.values == std::vector<int64_t>{1, 0, 0, 0});
  backend().arg_reduce(false, cols.view(), ints.view(), 0);
  CHECK(cols.values == std::vector<int64_t>{0, 0, 1, 0});
  Host<float> big = random_host<float>({5000, 20}, -1, 1);
  big.values[1234 * 20 + 7] = 5.f;
  Host<int64_t> big_idx({1, 20});
  backend().arg_reduce(true, big_idx.view(), big.view(), 0);
  CHECK(big_idx.values[7] == 1234);
  Host<float> empty({0, 3});
  Host<int64_t> e({1, 3});
  CHECK_THROWS_AS(backend().arg_reduce(true, e.view(), empty.view(), 0), Error);
}

TEST_CASE("cumsum along each dim", "[backend][reduce]") {
  Host<double> x = random_host<double>({3, 4, 5}, -1, 1);
  for (int dim = 0; dim < 3; ++dim) {
    Host<double> y({3, 4, 5});
    backend().cumsum(y.view(), x.view(), dim);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 5; ++k) {
          double want = 0;
          const int idx[3] = {i, j, k};
          for (int t = 0; t <= idx[dim]; ++t) {
            int p[3] = {i, j, k};
            p[dim] = t;
            want += x.at({p[0], p[1], p[2]});
          }
          CHECK(close(y.at({i, j, k}), want, 1e-14));
        }
  }
  Host<bool> b({4});
  b.values = {1, 0, 1, 1};
  Host<int64_t> counts({4});
  backend().cumsum(counts.view(), b.view(), 0);
  CHECK(counts.values == std::vector<int64_t>{1, 1, 2, 3});
  // float32 accumulates in double: 1M x 0.1f stays accurate.
  Host<float> tenths({1'000'000}, 0.1f), running({1'000'000});
  backend().cumsum(running.view(), tenths.view(), 0);
  CHECK(running.values.back() == float(1e6 * double(0.1f)));
}

// ---------------------------------------------------------------------------
// Matmul
// ---------------------------------------------------------------------------

namespace {

double epilogue_ref(Epilogue e, double x) {
  switch (e) {
    case Epilogue::None:
      return x;
    case Epilogue::Relu:
      return std::max(x, 0.0);
    case Epilogue::Tanh:
      return std::tanh(x);
    case Epilogue::Sigmoid:
      return sigmoid_ref(x);
    case Epilogue::Selu:
      return kSeluScale * (x > 0 ? x : kSeluAlpha * (std::exp(x) - 1));
  }
  return kNaN;
}

// A matrix operand [batch, rows, cols], optionally stored transposed and/or
// broadcast over the batch (stride 0).
template <typename T>
struct MatrixArg {
  Host<T> storage;
  ArrayView view;
  double at(int64_t b, int64_t i, int64_t j) const {
    return double(storage.values[b * view.strides[0] + i * view.strides[1] + j * view.strides[2]]);
  }
};

template <typename T>
MatrixArg<T> make_matrix(int64_t batch, int64_t rows, int64_t cols, bool transposed, bool broadcast,
                         uint64_t seed) {
  const int64_t stored_batch = broadcast ? 1 : batch;
  MatrixArg<T> m;
  m.storage = random_host<T>({stored_batch * rows * cols}, -1, 1, seed);
  m.view = m.storage.view();
  m.view.shape = {batch, rows, cols};
  const int64_t bs = broadcast ? 0 : rows * cols;
  m.view.strides = transposed ? Shape{bs, 1, rows} : Shape{bs, cols, 1};
  return m;
}

template <typename T>
void check_matmul(int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool ba,
                  bool bb, bool with_bias, Epilogue epilogue, double tol) {
  const MatrixArg<T> a = make_matrix<T>(batch, m, k, ta, ba, 1);
  const MatrixArg<T> b = make_matrix<T>(batch, k, n, tb, bb, 2);
  Host<T> bias = random_host<T>({n}, -1, 1, 3);
  Host<T> dst({batch, m, n});
  backend().matmul(dst.view(), a.view, b.view, with_bias ? bias.view() : ArrayView{}, epilogue);
  int bad = 0;
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n && bad < 3; ++j) {
        double acc = with_bias ? double(bias.values[j]) : 0.0;
        for (int64_t kk = 0; kk < k; ++kk) acc += a.at(bi, i, kk) * b.at(bi, kk, j);
        const double want = epilogue_ref(epilogue, acc);
        const double got = double(dst.values[(bi * m + i) * n + j]);
        if (!close(got, want, tol * std::sqrt(double(k) + 1))) {
          ++bad;
          FAIL_CHECK("matmul " << dtype_name(dtype_of<T>) << " [" << batch << "," << m << "," << n
                               << "," << k << "] ta " << ta << " tb " << tb << " ba " << ba
                               << " bb " << bb << " bias " << with_bias << " " << op_name(epilogue)
                               << " at " << bi << "," << i << "," << j << ": got " << got
                               << ", want " << want);
        }
      }
}

}  // namespace

TEST_CASE("matmul matches a float64 reference", "[backend][matmul]") {
  // Small sizes take the plain loops, 96x80x72 (> 64^3) takes oneDNN for
  // float32. With K <= 256 oneDNN's work is cut one chunk per thread:
  // 300x70x200 by rows, 100x700x64 by columns. Above, chunks are cut by shape:
  // 300x70x600 into 80 rows (the last 60), 100x700x300 into 256 columns (the
  // last 188), each with its share of the bias.
  const int64_t sizes[][3] = {{2, 3, 4},      {17, 9, 13},    {96, 80, 72},   {1, 70, 300},
                              {300, 70, 200}, {100, 700, 64}, {300, 70, 600}, {100, 700, 300}};
  for (auto [m, n, k] : sizes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool ta = layout & 1, tb = layout & 2;
      check_matmul<float>(1, m, n, k, ta, tb, false, false, false, Epilogue::None, 1e-6);
      check_matmul<double>(1, m, n, k, ta, tb, false, false, false, Epilogue::None, 1e-14);
    }
    for (Epilogue e : kAllEpilogues) {
      check_matmul<float>(1, m, n, k, false, true, false, false, true, e, 1e-6);
      check_matmul<double>(1, m, n, k, false, false, false, false, true, e, 1e-14);
    }
  }
  SECTION("batched, with stride-0 broadcast batches") {
    for (bool ba : {false, true})
      for (bool bb : {false, true}) {
        check_matmul<float>(3, 5, 6, 7, false, false, ba, bb, true, Epilogue::Relu, 1e-6);
        check_matmul<float>(3, 64, 48, 96, ba, !bb, ba, bb, false, Epilogue::None, 1e-6);
        check_matmul<double>(3, 33, 20, 10, false, true, ba, bb, true, Epilogue::Tanh, 1e-14);
      }
  }
  SECTION("int64") {
    Host<int64_t> a = from_values<int64_t>({2, 3}, {1, 2, 3, 4, 5, 6});
    Host<int64_t> b = from_values<int64_t>({3, 2}, {7, 8, 9, 10, 11, 12});
    Host<int64_t> c({2, 2});
    backend().matmul(c.view(), a.view(), b.view(), ArrayView{}, Epilogue::None);
    CHECK(c.values == std::vector<int64_t>{58, 64, 139, 154});
  }
  SECTION("K = 0 gives bias or zeros") {
    Host<float> a({2, 0}), b({0, 3}), c({2, 3}, 5.f);
    backend().matmul(c.view(), a.view(), b.view(), ArrayView{}, Epilogue::None);
    CHECK(c.values == std::vector<float>(6, 0.f));
  }
  SECTION("shape and dtype errors") {
    Host<float> a({2, 3}), b({4, 2}), c({2, 2});
    CHECK_THROWS_WITH(backend().matmul(c.view(), a.view(), b.view(), ArrayView{}, Epilogue::None),
                      Catch::Contains("matmul"));
    Host<double> bd({3, 2});
    CHECK_THROWS_WITH(backend().matmul(c.view(), a.view(), bd.view(), ArrayView{}, Epilogue::None),
                      Catch::Contains("float64"));
  }
}

TEST_CASE("matmul results do not depend on the thread count", "[backend][matmul]") {
  // With K <= 256 the work is cut one chunk per thread (1, 2 and 3 threads
  // cut it in different places), above by shape; oneDNN rounds a long-K
  // product with a transposed a differently for different cuts, so both
  // layouts of a are checked. Row cuts, column cuts (100 rows, 2000 columns),
  // a narrow product cut for its memory traffic (N = 3), one chunk, the loops.
  const int64_t shapes[][3] = {{1000, 3, 2000}, {4, 4, 4096},    {256, 256, 256}, {64, 64, 64},
                               {100, 2000, 64}, {300, 70, 200},  {4000, 3, 64},   {1000, 64, 256},
                               {512, 64, 1024}, {100, 2000, 512}};
  for (auto [m, n, k] : shapes)
    for (bool ta : {false, true}) {
      const MatrixArg<float> a = make_matrix<float>(1, m, k, ta, false, 1);
      const MatrixArg<float> b = make_matrix<float>(1, k, n, false, false, 2);
      Host<float> c1({1, m, n}), c2({1, m, n}), c3({1, m, n});
      auto product = [&](Host<float>& c) {
        backend().matmul(c.view(), a.view, b.view, ArrayView{}, Epilogue::None);
      };
      with_threads(1, [&] { product(c1); });
      with_threads(2, [&] { product(c2); });
      with_threads(3, [&] { product(c3); });
      INFO("matmul " << m << "x" << k << " @ " << k << "x" << n << (ta ? ", a transposed" : ""));
      CHECK(std::memcmp(c1.values.data(), c2.values.data(), c1.values.size() * 4) == 0);
      CHECK(std::memcmp(c1.values.data(), c3.values.data(), c1.values.size() * 4) == 0);
    }
  SECTION("batched") {
    const Shape as{3, 200, 96}, bs{3, 96, 80}, cs{3, 200, 80};
    Host<float> a = random_host<float>(as, -1, 1, 3), b = random_host<float>(bs, -1, 1, 4);
    Host<float> c1(cs), c2(cs);
    with_threads(
        1, [&] { backend().matmul(c1.view(), a.view(), b.view(), ArrayView{}, Epilogue::None); });
    with_threads(
        2, [&] { backend().matmul(c2.view(), a.view(), b.view(), ArrayView{}, Epilogue::None); });
    CHECK(std::memcmp(c1.values.data(), c2.values.data(), c1.values.size() * 4) == 0);
  }
}

TEST_CASE("oneDNN plans: bounded cache, safe with concurrent callers", "[backend][matmul]") {
  // More distinct shapes than the cache holds: results stay right, size stays bounded.
  for (int64_t extra = 0; extra < 300; ++extra) {
    const int64_t n = cpu::onednn::kEltwiseMinElements + extra;
    Host<float> x = random_host<float>({n}, -2, 2, uint64_t(extra)), y({n});
    backend().unary(UnaryOp::Tanh, y.view(), x.view(), 0, 0);
    REQUIRE(close(y.values[n - 1], std::tanh(double(x.values[n - 1])), 2e-6));
  }
  CHECK(cpu::onednn::cached_plans() <= 256);
  // Two application threads running the same cached plans at once.
  auto worker = [](uint64_t seed, bool* ok) {
    Host<float> a = random_host<float>({64, 96}, -1, 1, seed),
                b = random_host<float>({96, 80}, -1, 1, seed + 1);
    Host<float> c({64, 80});
    *ok = true;
    for (int iter = 0; iter < 200 && *ok; ++iter) {
      backend().matmul(c.view(), a.view(), b.view(), ArrayView{}, Epilogue::None);
      double want = 0;
      for (int k = 0; k < 96; ++k) want += a.at({5, k}) * b.at({k, 7});
      *ok = close(c.at({5, 7}), want, 1e-5);
    }
  };
  bool ok1 = false, ok2 = false;
  std::thread t1(worker, 1, &ok1), t2(worker, 2, &ok2);
  t1.join();
  t2.join();
  CHECK(ok1);
  CHECK(ok2);
}

TEST_CASE("oneDNN plans built on one thread run on others", "[backend][matmul]") {
  // A transposed A with a long K (oneDNN copies A into a scratchpad): the
  // plan is built here, then two other threads run it at once, each with its
  // own scratchpad (user scratchpad mode), and must give the same bits.
  const int64_t m = 64, n = 96, k = 2048;
  Host<float> at = random_host<float>({k, m}, -1, 1, 11), b = random_host<float>({k, n}, -1, 1, 12);
  ArrayView a = at.view();
  a.shape = Shape{m, k};
  a.strides = Shape{1, m};
  Host<float> want({m, n});
  backend().matmul(want.view(), a, b.view(), ArrayView{}, Epilogue::None);
  double ref = 0;
  for (int64_t j = 0; j < k; ++j) ref += double(at.at({j, 3})) * b.at({j, 5});
  REQUIRE(close(want.at({3, 5}), ref, 1e-4));
  auto worker = [&](bool* same) {
    Host<float> c({m, n});
    *same = true;
    for (int iter = 0; iter < 50 && *same; ++iter) {
      backend().matmul(c.view(), a, b.view(), ArrayView{}, Epilogue::None);
      *same = c.values == want.values;
    }
  };
  bool same1 = false, same2 = false;
  std::thread t1(worker, &same1), t2(worker, &same2);
  t1.join();
  t2.join();
  CHECK(same1);
  CHECK(same2);
}

// ---------------------------------------------------------------------------
// linear_weight_grad
// ---------------------------------------------------------------------------

namespace {

// grad_out [m, n] and input [m, k], each stored row-major or transposed;
// checks weight_grad [n, k] and bias_grad [n] against float64 loops.
template <typename T>
void check_linear_weight_grad(int64_t m, int64_t n, int64_t k, bool transposed_grad,
                              bool transposed_input, bool with_bias, double tol) {
  const MatrixArg<T> g = make_matrix<T>(1, m, n, transposed_grad, false, 11);
  const MatrixArg<T> x = make_matrix<T>(1, m, k, transposed_input, false, 12);
  ArrayView gv = g.view, xv = x.view;  // drop the batch dim of make_matrix
  gv.shape = {m, n};
  gv.strides = {g.view.strides[1], g.view.strides[2]};
  xv.shape = {m, k};
  xv.strides = {x.view.strides[1], x.view.strides[2]};
  Host<T> dw({n, k}, T(5)), db({n}, T(5));  // 5: stale values must be overwritten
  backend().linear_weight_grad(dw.view(), with_bias ? db.view() : ArrayView{}, gv, xv);
  INFO("linear_weight_grad " << dtype_name(dtype_of<T>) << " [" << m << "," << n << "," << k
                             << "] transposed grad " << transposed_grad << " input "
                             << transposed_input << " bias " << with_bias);
  int bad = 0;
  for (int64_t o = 0; o < n; ++o) {
    for (int64_t i = 0; i < k && bad < 3; ++i) {
      double want = 0;
      for (int64_t r = 0; r < m; ++r) want += g.at(0, r, o) * x.at(0, r, i);
      const double got = double(dw.values[o * k + i]);
      if (!close(got, want, tol * std::sqrt(double(m) + 1))) {
        ++bad;
        FAIL_CHECK("weight_grad at " << o << "," << i << ": got " << got << ", want " << want);
      }
    }
    double want = 0;
    for (int64_t r = 0; r < m; ++r) want += g.at(0, r, o);
    const double got = double(db.values[o]);
    if (with_bias && !close(got, want, tol * std::sqrt(double(m) + 1)) && bad++ < 3)
      FAIL_CHECK("bias_grad at " << o << ": got " << got << ", want " << want);
    if (!with_bias) CHECK(db.values[o] == T(5));  // untouched
  }
}

}  // namespace

TEST_CASE("linear_weight_grad matches float64 loops", "[backend][matmul]") {
  // (batch M, out N, in K): the flow model's first layer [256, 64, 3], odd
  // sizes, and one above oneDNN's matmul threshold.
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {256, 64, 3}, {33, 9, 17}, {300, 65, 257}};
  for (auto [m, n, k] : sizes)
    for (int layout = 0; layout < 4; ++layout)
      for (bool with_bias : {true, false}) {
        const bool tg = layout & 1, tx = layout & 2;
        check_linear_weight_grad<float>(m, n, k, tg, tx, with_bias, 1e-6);
        check_linear_weight_grad<double>(m, n, k, tg, tx, with_bias, 1e-14);
      }
  SECTION("M = 0 gives zeros, K = 0 still sums the bias gradient") {
    check_linear_weight_grad<float>(0, 4, 3, false, false, true, 0);
    check_linear_weight_grad<double>(5, 4, 0, false, false, true, 1e-14);
  }
  SECTION("float32 results do not depend on the thread count") {
    Host<float> g = random_host<float>({1024, 64}, -1, 1, 1),
                x = random_host<float>({1024, 64}, -1, 1, 2);
    Host<float> dw1({64, 64}), db1({64}), dw2({64, 64}), db2({64});
    with_threads(1,
                 [&] { backend().linear_weight_grad(dw1.view(), db1.view(), g.view(), x.view()); });
    with_threads(2,
                 [&] { backend().linear_weight_grad(dw2.view(), db2.view(), g.view(), x.view()); });
    CHECK(dw1.values == dw2.values);
    CHECK(db1.values == db2.values);
  }
  SECTION("oneDNN's inner product (measured, not routed) agrees with the loops") {
    const int64_t m = 256, n = 64, k = 32;
    Host<float> g = random_host<float>({m, n}, -1, 1, 3), x = random_host<float>({m, k}, -1, 1, 4);
    Host<float> dw({n, k}), db({n});
    REQUIRE(cpu::onednn::try_linear_weight_grad(dw.view(), db.view(), g.view(), x.view()));
    for (int64_t o = 0; o < n; ++o) {
      double want_b = 0;
      for (int64_t r = 0; r < m; ++r) want_b += g.at({r, o});
      CHECK(close(db.values[o], want_b, 1e-6 * std::sqrt(double(m))));
      for (int64_t i = 0; i < k; i += 7) {
        double want = 0;
        for (int64_t r = 0; r < m; ++r) want += g.at({r, o}) * x.at({r, i});
        CHECK(close(dw.at({o, i}), want, 1e-6 * std::sqrt(double(m))));
      }
    }
    Host<float> gt = g;  // a transposed grad_out is left to the caller
    gt.shape = {m, n};
    gt.strides = {1, m};
    CHECK_FALSE(cpu::onednn::try_linear_weight_grad(dw.view(), db.view(), gt.view(), x.view()));
  }
  SECTION("shape, dtype and layout errors") {
    Host<float> g({4, 3}), x({4, 2}), dw({3, 2}), db({3});
    Host<float> x_short({5, 2}), dw_wrong({2, 3});
    CHECK_THROWS_WITH(backend().linear_weight_grad(dw.view(), db.view(), g.view(), x_short.view()),
                      Catch::Contains("linear_weight_grad") && Catch::Contains("[5, 2]"));
    CHECK_THROWS_WITH(backend().linear_weight_grad(dw_wrong.view(), db.view(), g.view(), x.view()),
                      Catch::Contains("weight_grad [2, 3]"));
    Host<double> xd({4, 2});
    CHECK_THROWS_WITH(backend().linear_weight_grad(dw.view(), db.view(), g.view(), xd.view()),
                      Catch::Contains("linear_weight_grad") && Catch::Contains("float64"));
    Host<float> db_long({4});
    CHECK_THROWS_WITH(backend().linear_weight_grad(dw.view(), db_long.view(), g.view(), x.view()),
                      Catch::Contains("bias_grad") && Catch::Contains("3 elements"));
    ArrayView dw_t = dw.view();  // a transposed output
    dw_t.strides = {1, 3};
    CHECK_THROWS_WITH(backend().linear_weight_grad(dw_t, db.view(), g.view(), x.view()),
                      Catch::Contains("weight_grad must be a contiguous"));
    // The tensor-level entry point checks before allocating.
    CHECK_THROWS_WITH(kernels::linear_weight_grad(zeros({4, 3}), zeros({5, 2}), true),
                      Catch::Contains("linear_weight_grad") && Catch::Contains("[5, 2]"));
    CHECK_THROWS_WITH(
        kernels::linear_weight_grad(zeros({4, 3}), zeros({4, 2}, {.dtype = DType::Float64}), true),
        Catch::Contains("linear_weight_grad") && Catch::Contains("float64"));
    Host<int64_t> gi({4, 3}), xi({4, 2}), dwi({3, 2});
    CHECK_THROWS_WITH(backend().linear_weight_grad(dwi.view(), ArrayView{}, gi.view(), xi.view()),
                      Catch::Contains("linear_weight_grad: unsupported dtype int64"));
  }
}

// ---------------------------------------------------------------------------
// Softmax and layer norm
// ---------------------------------------------------------------------------

namespace {

template <typename T>
void check_softmax(int64_t rows, int64_t cols, bool log, double tol) {
  Host<T> x = random_host<T>({rows, cols}, -5, 5);
  Host<T> y({rows, cols});
  backend().softmax(y.view(), x.view(), log);
  for (int64_t r = 0; r < rows; ++r) {
    double max = -INFINITY, sum = 0;
    for (int64_t c = 0; c < cols; ++c) max = std::max(max, x.at({r, c}));
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(x.at({r, c}) - max);
    for (int64_t c = 0; c < cols; ++c) {
      const double p = std::exp(x.at({r, c}) - max) / sum;
      const double want = log ? std::log(p) : p;
      if (!close(y.at({r, c}), want, tol)) {
        FAIL_CHECK("softmax log=" << log << " [" << rows << "," << cols << "] got " << y.at({r, c})
                                  << " want " << want);
        return;
      }
    }
  }
}

}  // namespace

TEST_CASE("softmax and log_softmax forward", "[backend][norm]") {
  for (bool log : {false, true}) {
    check_softmax<double>(5, 7, log, 1e-14);
    check_softmax<float>(5, 7, log, 1e-6);
    check_softmax<float>(64, 512, log, 1e-6);  // oneDNN size
    check_softmax<float>(4096, 8, log, 1e-6);  // many short rows
  }
  Host<float> x = from_values<float>({1, 3}, {-INFINITY, 0, 0}), y({1, 3});
  backend().softmax(y.view(), x.view(), false);
  CHECK(y.values == std::vector<float>{0, 0.5f, 0.5f});
}

TEST_CASE("softmax backward matches central differences", "[backend][norm]") {
  for (bool log : {false, true}) {
    const int64_t rows = 3, cols = 6;
    Host<double> x = random_host<double>({rows, cols}, -2, 2, 1);
    Host<double> g = random_host<double>({rows, cols}, -1, 1, 2);
    Host<double> y({rows, cols}), gx({rows, cols});
    backend().softmax(y.view(), x.view(), log);
    backend().softmax_backward(gx.view(), g.view(), y.view(), log);
    // L(x) = sum(g * softmax(x)); dL/dx numerically.
    auto loss = [&](const Host<double>& xs) {
      Host<double> ys({rows, cols});
      backend().softmax(ys.view(), xs.view(), log);
      double l = 0;
      for (int64_t i = 0; i < rows * cols; ++i) l += g.values[i] * ys.values[i];
      return l;
    };
    for (int64_t i = 0; i < rows * cols; ++i) {
      Host<double> xp = x, xm = x;
      xp.values[i] += 1e-6;
      xm.values[i] -= 1e-6;
      const double want = (loss(xp) - loss(xm)) / 2e-6;
      CHECK(close(gx.values[i], want, 1e-7));
    }
    // float32, also at a oneDNN forward size.
    Host<float> xf = random_host<float>({64, 512}, -3, 3, 4),
                gf = random_host<float>({64, 512}, -1, 1, 5);
    Host<float> yf({64, 512}), gxf({64, 512});
    backend().softmax(yf.view(), xf.view(), log);
    backend().softmax_backward(gxf.view(), gf.view(), yf.view(), log);
    for (int64_t r = 0; r < 64; r += 13) {
      double dot = 0, gsum = 0;
      for (int64_t c = 0; c < 512; ++c) {
        dot += gf.at({r, c}) * yf.at({r, c});
        gsum += gf.at({r, c});
      }
      for (int64_t c = 0; c < 512; ++c) {
        const double y = yf.at({r, c}), gg = gf.at({r, c});
        const double want = log ? gg - std::exp(y) * gsum : y * (gg - dot);
        CHECK(close(gxf.at({r, c}), want, 1e-5));
      }
    }
  }
}

TEST_CASE("layer_norm forward and backward", "[backend][norm]") {
  const int64_t rows = 4, cols = 7;
  const double eps = 1e-5;
  Host<double> x = random_host<double>({rows, cols}, -2, 3, 1);
  Host<double> w = random_host<double>({cols}, 0.5, 1.5, 2),
               b = random_host<double>({cols}, -1, 1, 3);
  Host<double> g = random_host<double>({rows, cols}, -1, 1, 4);

  auto forward = [&](const Host<double>& xs, const Host<double>& ws, const Host<double>& bs) {
    Host<double> y({rows, cols}), mean({rows}), rstd({rows});
    backend().layer_norm(y.view(), mean.view(), rstd.view(), xs.view(), ws.view(), bs.view(), eps);
    return y;
  };
  // Forward against the textbook formula.
  Host<double> y({rows, cols}), mean({rows}), rstd({rows});
  backend().layer_norm(y.view(), mean.view(), rstd.view(), x.view(), w.view(), b.view(), eps);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mu += x.at({r, c}) / cols;
    for (int64_t c = 0; c < cols; ++c) var += (x.at({r, c}) - mu) * (x.at({r, c}) - mu) / cols;
    CHECK(close(mean.values[r], mu, 1e-14));
    CHECK(close(rstd.values[r], 1 / std::sqrt(var + eps), 1e-12));
    for (int64_t c = 0; c < cols; ++c)
      CHECK(close(y.at({r, c}),
                  (x.at({r, c}) - mu) / std::sqrt(var + eps) * w.values[c] + b.values[c], 1e-12));
  }
  // Backward against central differences of L = sum(g * y).
  Host<double> gx({rows, cols}), gw({cols}), gb({cols});
  backend().layer_norm_backward(gx.view(), gw.view(), gb.view(), g.view(), x.view(), mean.view(),
                                rstd.view(), w.view());
  auto loss = [&](const Host<double>& xs, const Host<double>& ws, const Host<double>& bs) {
    Host<double> ys = forward(xs, ws, bs);
    double l = 0;
    for (int64_t i = 0; i < rows * cols; ++i) l += g.values[i] * ys.values[i];
    return l;
  };
  const double h = 1e-6;
  for (int64_t i = 0; i < rows * cols; ++i) {
    Host<double> xp = x, xm = x;
    xp.values[i] += h;
    xm.values[i] -= h;
    CHECK(close(gx.values[i], (loss(xp, w, b) - loss(xm, w, b)) / (2 * h), 1e-7));
  }
  for (int64_t j = 0; j < cols; ++j) {
    Host<double> wp = w, wm = w, bp = b, bm = b;
    wp.values[j] += h;
    wm.values[j] -= h;
    bp.values[j] += h;
    bm.values[j] -= h;
    CHECK(close(gw.values[j], (loss(x, wp, b) - loss(x, wm, b)) / (2 * h), 1e-7));
    CHECK(close(gb.values[j], (loss(x, w, bp) - loss(x, w, bm)) / (2 * h), 1e-7));
  }
  SECTION("without weight and bias; float32 against float64") {
    Host<float> xf = random_host<float>({300, 129}, -2, 3, 9),
                gf = random_host<float>({300, 129}, -1, 1, 8);
    Host<double> xd = random_host<double>({300, 129}, -2, 3, 9),
                 gd = random_host<double>({300, 129}, -1, 1, 8);
    for (auto& v : xd.values) v = double(float(v));
    for (auto& v : gd.values) v = double(float(v));
    Host<float> yf({300, 129}), mf({300}), rf({300}), gxf({300, 129});
    Host<double> yd({300, 129}), md({300}), rd({300}), gxd({300, 129});
    backend().layer_norm(yf.view(), mf.view(), rf.view(), xf.view(), ArrayView{}, ArrayView{}, eps);
    backend().layer_norm(yd.view(), md.view(), rd.view(), xd.view(), ArrayView{}, ArrayView{}, eps);
    backend().layer_norm_backward(gxf.view(), ArrayView{}, ArrayView{}, gf.view(), xf.view(),
                                  mf.view(), rf.view(), ArrayView{});
    backend().layer_norm_backward(gxd.view(), ArrayView{}, ArrayView{}, gd.view(), xd.view(),
                                  md.view(), rd.view(), ArrayView{});
    for (size_t i = 0; i < yf.values.size(); i += 17) {
      CHECK(close(yf.values[i], yd.values[i], 1e-5));
      CHECK(close(gxf.values[i], gxd.values[i], 1e-4));
    }
  }
}

// ---------------------------------------------------------------------------
// Indexing
// ---------------------------------------------------------------------------

TEST_CASE("index_select, gather and scatter_add", "[backend][index]") {
  Host<double> src = from_values<double>({3, 4}, {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23});
  SECTION("index_select") {
    Host<int64_t> rows = from_values<int64_t>({4}, {2, 0, 2, 1});
    Host<double> out0({4, 4});
    backend().index_select(out0.view(), src.view(), 0, rows.view());
    CHECK(out0.values ==
          std::vector<double>{20, 21, 22, 23, 0, 1, 2, 3, 20, 21, 22, 23, 10, 11, 12, 13});
    Host<int64_t> cols = from_values<int64_t>({2}, {3, 1});
    Host<double> out1({3, 2});
    backend().index_select(out1.view(), src.view(), 1, cols.view());
    CHECK(out1.values == std::vector<double>{3, 1, 13, 11, 23, 21});
    Host<int64_t> bad = from_values<int64_t>({2}, {1, 3});
    Host<double> out2({2, 4});
    CHECK_THROWS_WITH(backend().index_select(out2.view(), src.view(), 0, bad.view()),
                      Catch::Contains("index_select") && Catch::Contains("index 3"));
    Host<int64_t> negative = from_values<int64_t>({2}, {1, -1});
    CHECK_THROWS_WITH(backend().index_select(out2.view(), src.view(), 0, negative.view()),
                      Catch::Contains("index -1"));
  }
  SECTION("gather") {
    Host<int64_t> idx = from_values<int64_t>({3, 2}, {3, 0, 1, 1, 2, 0});
    Host<double> out({3, 2});
    backend().gather(out.view(), src.view(), 1, idx.view());
    CHECK(out.values == std::vector<double>{3, 0, 11, 11, 22, 20});
    Host<int64_t> idx0 = from_values<int64_t>({2, 4}, {2, 1, 0, 2, 0, 0, 1, 1});
    Host<double> out0({2, 4});
    backend().gather(out0.view(), src.view(), 0, idx0.view());
    CHECK(out0.values == std::vector<double>{20, 11, 2, 23, 0, 1, 12, 13});
    idx.values[4] = 4;
    CHECK_THROWS_WITH(backend().gather(out.view(), src.view(), 1, idx.view()),
                      Catch::Contains("gather") && Catch::Contains("index 4"));
  }
  SECTION("scatter_add accumulates duplicates") {
    Host<double> dst({3, 4}, 1.0);
    Host<int64_t> idx = from_values<int64_t>({2, 4}, {0, 2, 2, 0, 2, 2, 1, 0});
    Host<double> upd = from_values<double>({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
    backend().scatter_add(dst.view(), 0, idx.view(), upd.view());
    CHECK(dst.values == std::vector<double>{2, 1, 1, 13, 1, 1, 8, 1, 6, 9, 4, 1});
    Host<float> dst1({2, 3});
    Host<int64_t> idx1 = from_values<int64_t>({2, 4}, {0, 0, 2, 1, 1, 1, 1, 1});
    Host<float> upd1 = from_values<float>({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
    backend().scatter_add(dst1.view(), 1, idx1.view(), upd1.view());
    CHECK(dst1.values == std::vector<float>{3, 4, 3, 0, 26, 0});
    idx.values[3] = 3;
    Host<double> before = dst;
    CHECK_THROWS_WITH(backend().scatter_add(dst.view(), 0, idx.view(), upd.view()),
                      Catch::Contains("scatter_add") && Catch::Contains("index 3"));
    CHECK(dst.values == before.values);  // checked before anything is written
  }
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

namespace {

// Philox4x32-10 with the full 128-bit counter and 64-bit key of Random123,
// written independently of backends/philox.h for the known-answer tests.
std::array<uint32_t, 4> philox_full(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c[0], p1 = uint64_t(0xCD9E8D57u) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1],
         uint32_t(p0)};
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  return c;
}

}  // namespace

TEST_CASE("Philox known answers", "[backend][random]") {
  const philox::Block zero = philox::generate(0, 0);
  CHECK(zero.x[0] == 0x6627e8d5u);
  CHECK(zero.x[1] == 0xe169c58du);
  CHECK(zero.x[2] == 0xbc57ac4cu);
  CHECK(zero.x[3] == 0x9b00dbd8u);
  const auto ones =
      philox_full({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(ones == std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  // The test copy and the header agree wherever the header's counter reaches.
  for (uint64_t key : {uint64_t(0), uint64_t(0x0123456789abcdefull)})
    for (uint64_t ctr : {uint64_t(1), uint64_t(0xfedcba9876543210ull)}) {
      const philox::Block b = philox::generate(key, ctr);
      const auto f = philox_full({uint32_t(ctr), uint32_t(ctr >> 32), 0, 0},
                                 {uint32_t(key), uint32_t(key >> 32)});
      CHECK(std::array<uint32_t, 4>{b.x[0], b.x[1], b.x[2], b.x[3]} == f);
    }
}

TEST_CASE("random fills follow the documented element mapping", "[backend][random]") {
  const int64_t n = 1'000'000;
  const uint64_t seed = 1234, offset = 77;
  SECTION("uniform") {
    Host<double> u({n});
    backend().random(u.view(), Distribution::Uniform, -2, 3, seed, offset);
    double mean = 0, var = 0;
    for (double v : u.values) {
      REQUIRE(v >= -2);
      REQUIRE(v < 3);
      mean += v / n;
    }
    for (double v : u.values) var += (v - mean) * (v - mean) / n;
    CHECK(std::abs(mean - 0.5) < 0.01);
    CHECK(std::abs(var - 25.0 / 12) < 0.02);
    for (int64_t i : {0, 1, 999}) CHECK(u.values[i] == -2 + 5 * philox::uniform(seed, offset + i));
    // Element i depends only on offset + i.
    Host<double> shifted({10});
    backend().random(shifted.view(), Distribution::Uniform, -2, 3, seed, offset + 5);
    CHECK(shifted.values[0] == u.values[5]);
  }
  SECTION("normal") {
    Host<float> z({n});
    backend().random(z.view(), Distribution::Normal, 1.5, 2.0, seed, offset);
    double mean = 0, var = 0;
    for (float v : z.values) mean += double(v) / n;
    for (float v : z.values) var += (v - mean) * (v - mean) / n;
    CHECK(std::abs(mean - 1.5) < 0.01);
    CHECK(std::abs(std::sqrt(var) - 2.0) < 0.01);
    CHECK(z.values[3] == float(1.5 + 2.0 * philox::normal(seed, offset + 3)));
  }
  SECTION("bernoulli and randint") {
    Host<bool> b({n});
    backend().random(b.view(), Distribution::Bernoulli, 0.3, 0, seed, offset);
    const double p = std::accumulate(b.values.begin(), b.values.end(), 0.0) / n;
    CHECK(std::abs(p - 0.3) < 0.005);
    Host<int64_t> r({n});
    backend().random(r.view(), Distribution::RandInt, -3, 7, seed, offset);
    std::vector<int64_t> counts(10, 0);
    for (int64_t v : r.values) {
      REQUIRE(v >= -3);
      REQUIRE(v < 7);
      ++counts[v + 3];
    }
    for (int64_t c : counts) CHECK(std::abs(double(c) / n - 0.1) < 0.005);
    CHECK(r.values[0] == -3 + int64_t(std::floor(philox::uniform(seed, offset) * 10)));
    Host<float> rf({100});
    backend().random(rf.view(), Distribution::RandInt, 0, 5, seed, offset);
    for (float v : rf.values) CHECK((v >= 0 && v < 5 && v == std::floor(v)));
    CHECK_THROWS_AS(backend().random(b.view(), Distribution::Normal, 0, 1, seed, offset), Error);
    CHECK_THROWS_AS(backend().random(r.view(), Distribution::Uniform, 0, 1, seed, offset), Error);
  }
  SECTION("float32 uniform stays below b; threads do not matter") {
    Host<float> u1({n}), u2({n});
    with_threads(1, [&] { backend().random(u1.view(), Distribution::Uniform, 0, 1, seed, 0); });
    with_threads(2, [&] { backend().random(u2.view(), Distribution::Uniform, 0, 1, seed, 0); });
    CHECK(u1.values == u2.values);
    CHECK(*std::max_element(u1.values.begin(), u1.values.end()) < 1.0f);
  }
}
