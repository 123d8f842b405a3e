#include "tensor/creation.h"

#include <cmath>

#include "backends/philox.h"
#include "tensor/kernels.h"

namespace tide {

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}
void manual_seed(uint64_t seed) {
  default_generator().manual_seed(seed);
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  bool requires_grad = options.requires_grad;
  options.requires_grad = false;
  Tensor out = empty(shape, options);
  backend_for(options.device).fill(out.view(), value);
  if (requires_grad) out.set_requires_grad(true);
  return out;
}
Tensor zeros(const Shape& shape, TensorOptions options) {
  return full(shape, 0.0, options);
}
Tensor ones(const Shape& shape, TensorOptions options) {
  return full(shape, 1.0, options);
}
Tensor scalar(double value, TensorOptions options) {
  return full({}, value, options);
}

static TensorOptions options_like(const Tensor& x) {
  return {.dtype = x.dtype(), .device = x.device()};
}
Tensor zeros_like(const Tensor& x) {
  return zeros(x.shape(), options_like(x));
}
Tensor ones_like(const Tensor& x) {
  return ones(x.shape(), options_like(x));
}
Tensor full_like(const Tensor& x, double value) {
  return full(x.shape(), value, options_like(x));
}
Tensor empty_like(const Tensor& x) {
  return empty(x.shape(), options_like(x));
}

// Ranges are computed on the host in double, then copied to the device in the
// requested dtype: value i is exactly start + i * step.
static Tensor from_doubles(const std::vector<double>& values, const Shape& shape,
                           TensorOptions options) {
  bool requires_grad = options.requires_grad;
  Tensor host = empty(shape, {.dtype = DType::Float64});
  std::copy(values.begin(), values.end(), host.data_ptr<double>());
  Tensor out = kernels::to_device(kernels::to_dtype(host, options.dtype), options.device);
  if (requires_grad) out.set_requires_grad(true);
  return out;
}

Tensor arange(double end, TensorOptions options) {
  return arange(0, end, 1, options);
}

Tensor arange(double start, double end, double step, TensorOptions options) {
  TIDE_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
             "arange: invalid range start={} end={} step={}", start, end, step);
  double count = std::ceil((end - start) / step);
  TIDE_CHECK(count < 1e12, "arange: range start={} end={} step={} is too long", start, end, step);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<double>(i) * step;
  return from_doubles(values, {n}, options);
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions options) {
  TIDE_CHECK(steps >= 0, "linspace: steps must be non-negative, got {}", steps);
  std::vector<double> values(static_cast<size_t>(steps));
  double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
  // Fill from both ends so that the last value is exactly `end` (as NumPy does);
  // a single step is just `start`.
  for (int64_t i = 0; i < steps; ++i)
    values[i] = i < steps / 2 || steps == 1 ? start + step * static_cast<double>(i)
                                            : end - step * static_cast<double>(steps - 1 - i);
  return from_doubles(values, {steps}, options);
}

Tensor eye(int64_t n, TensorOptions options) {
  return eye(n, n, options);
}

Tensor eye(int64_t n, int64_t m, TensorOptions options) {
  TIDE_CHECK(n >= 0 && m >= 0, "eye: sizes must be non-negative, got {} x {}", n, m);
  std::vector<double> values(static_cast<size_t>(n * m), 0.0);
  for (int64_t i = 0; i < std::min(n, m); ++i) values[i * m + i] = 1.0;
  return from_doubles(values, {n, m}, options);
}

template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions options) {
  TIDE_CHECK(shape.numel() == static_cast<int64_t>(data.size()),
             "from_vector: {} values do not fill shape {}", data.size(), shape);
  bool requires_grad = options.requires_grad;
  Tensor host = empty(shape, {.dtype = dtype_of<T>});
  T* dst = host.numel() ? host.data_ptr<T>() : nullptr;
  for (size_t i = 0; i < data.size(); ++i) dst[i] = data[i];
  Tensor out = kernels::to_device(kernels::to_dtype(host, options.dtype), options.device);
  if (requires_grad) out.set_requires_grad(true);
  return out;
}
template Tensor from_vector(const std::vector<bool>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector(const std::vector<double>&, const Shape&, TensorOptions);

// ---------------------------------------------------------------------------
// Random tensors
// ---------------------------------------------------------------------------

static Tensor random_fill(const char* op, const Shape& shape, Distribution dist, double a, double b,
                          Generator& gen, TensorOptions options) {
  // Checked here, before the generator advances, so a refused call leaves the
  // stream untouched (and the message names the caller).
  bool dtype_ok = dist == Distribution::Bernoulli ? true
                  : dist == Distribution::RandInt ? options.dtype != DType::Bool
                                                  : is_floating(options.dtype);
  TIDE_CHECK(dtype_ok, "{}: cannot produce a {} tensor", op, options.dtype);
  bool requires_grad = options.requires_grad;
  options.requires_grad = false;
  Tensor out = empty(shape, options);
  uint64_t offset = gen.advance(static_cast<uint64_t>(out.numel()));
  backend_for(options.device).random(out.view(), dist, a, b, gen.seed(), offset);
  if (requires_grad) out.set_requires_grad(true);
  return out;
}

Tensor rand(const Shape& shape, Generator& gen, TensorOptions options) {
  return random_fill("rand", shape, Distribution::Uniform, 0.0, 1.0, gen, options);
}
Tensor randn(const Shape& shape, Generator& gen, TensorOptions options) {
  return random_fill("randn", shape, Distribution::Normal, 0.0, 1.0, gen, options);
}
Tensor uniform(const Shape& shape, double low, double high, Generator& gen, TensorOptions options) {
  TIDE_CHECK(low <= high, "uniform: low {} is greater than high {}", low, high);
  return random_fill("uniform", shape, Distribution::Uniform, low, high, gen, options);
}
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, TensorOptions options) {
  TIDE_CHECK(std >= 0, "normal: std must be non-negative, got {}", std);
  return random_fill("normal", shape, Distribution::Normal, mean, std, gen, options);
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen,
               TensorOptions options) {
  TIDE_CHECK(low < high, "randint: empty range [{}, {})", low, high);
  return random_fill("randint", shape, Distribution::RandInt, static_cast<double>(low),
                     static_cast<double>(high), gen, options);
}
Tensor bernoulli(const Shape& shape, double p, Generator& gen, TensorOptions options) {
  TIDE_CHECK(p >= 0 && p <= 1, "bernoulli: probability {} is outside [0, 1]", p);
  return random_fill("bernoulli", shape, Distribution::Bernoulli, p, 0.0, gen, options);
}

Tensor randperm(int64_t n, Generator& gen, TensorOptions options) {
  TIDE_CHECK(n >= 0, "randperm: n must be non-negative, got {}", n);
  // Fisher-Yates on the host; step i draws its swap partner from block offset+i.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  uint64_t offset = gen.advance(static_cast<uint64_t>(n));
  for (int64_t i = n - 1; i > 0; --i) {
    double u = philox::uniform(gen.seed(), offset + static_cast<uint64_t>(i));
    auto j = static_cast<int64_t>(u * static_cast<double>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return from_vector(perm, {n}, options);
}

}  // namespace tide
