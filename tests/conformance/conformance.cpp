// The helpers shared by the conformance cases: inputs in every layout on the
// device under test, and comparisons that say exactly what went wrong.
#include "conformance.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace tide::conformance {

namespace {

Device g_device = Device::cpu();
bool g_full_run = false;

std::string shape_list(const std::vector<Shape>& shapes) {
  std::vector<std::string> parts;
  for (const Shape& s : shapes) parts.push_back(s.str());
  return fmt::format("{}", fmt::join(parts, " x "));
}

std::string index_string(int64_t flat, const Shape& shape) {
  if (shape.empty()) return "[]";
  return fmt::format("[{}]", fmt::join(unravel(flat, shape), ", "));
}

// A value written into the parts of a strided buffer that the view skips: a
// kernel that reads them gives NaN (floats) or a wild number (int64).
double poison_value(DType dtype) {
  switch (dtype) {
    case DType::Float32:
    case DType::Float64:
      return std::numeric_limits<double>::quiet_NaN();
    case DType::Int64:
      return -7777;
    case DType::Bool:
      return 1;
  }
  return 0;
}

Tensor to_test_device(const Tensor& host) {
  // clone: on the CPU, to() returns its argument, and inputs must never share
  // storage with the reference's.
  return clone(to(host, device()));
}

}  // namespace

Device device() {
  return g_device;
}
void set_device(Device d) {
  g_device = d;
}
bool full_run() {
  return g_full_run;
}
void set_full_run(bool full) {
  g_full_run = full;
}
int64_t& comparison_count() {
  static int64_t count = 0;
  return count;
}

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::Transposed:
      return "transposed";
    case Layout::Strided:
      return "strided";
    case Layout::Broadcast:
      return "broadcast";
  }
  return "?";
}

bool layout_applies(Layout layout, const Shape& shape) {
  switch (layout) {
    case Layout::Contiguous:
      return true;
    case Layout::Transposed:
      return shape.size() >= 2;
    case Layout::Strided:
      return shape.size() >= 1;
    case Layout::Broadcast:
      return shape.size() >= 2 && shape[0] > 1;
  }
  return false;
}

std::vector<Layout> layouts_for(const Shape& shape) {
  std::vector<Layout> out;
  for (Layout layout : all_layouts())
    if (layout_applies(layout, shape) && run_layout(shape, layout)) out.push_back(layout);
  return out;
}

std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (int d = shape.size() - 1; d >= 0; --d) {
    const int64_t n = std::max<int64_t>(shape[d], 1);
    index[d] = flat % n;
    flat /= n;
  }
  return index;
}

int64_t ravel(const std::vector<int64_t>& index, const Shape& shape) {
  int64_t flat = 0;
  for (int d = 0; d < shape.size(); ++d) flat = flat * shape[d] + index[d];
  return flat;
}

Tensor random_values(const Shape& shape, const Domain& domain, Generator& gen, Layout layout) {
  if (layout == Layout::Broadcast && layout_applies(layout, shape)) {
    Shape row = shape;
    row[0] = 1;
    return contiguous(expand(random_values(row, domain, gen), shape.vec()));
  }
  const TensorOptions f64{.dtype = DType::Float64};
  Tensor x;
  if (domain.discrete) {
    x = to(
        randint(static_cast<int64_t>(domain.lo), static_cast<int64_t>(domain.hi) + 1, shape, gen),
        DType::Float64);
  } else if (domain.min_abs > 0) {
    Tensor magnitude = uniform(shape, domain.min_abs, domain.hi, gen, f64);
    Tensor negative = bernoulli(shape, 0.5, gen, {.dtype = DType::Bool});
    x = where(negative, neg(magnitude), magnitude);
  } else {
    x = uniform(shape, domain.lo, domain.hi, gen, f64);
  }
  // Values float32 holds exactly: the float32 and float64 runs see the same input.
  return to(to(x, DType::Float32), DType::Float64);
}

Tensor on_device(const Tensor& values, DType dtype, Layout layout, bool requires_grad) {
  TIDE_CHECK(layout_applies(layout, values.shape()), "conformance: layout {} does not apply to {}",
             layout_name(layout), values.shape());
  const Tensor cast = to(values, dtype);
  const bool grad = requires_grad && is_floating(dtype);
  switch (layout) {
    case Layout::Contiguous: {
      Tensor buffer = to_test_device(cast);
      if (grad) buffer.set_requires_grad(true);
      return buffer;
    }
    case Layout::Transposed: {
      Tensor buffer = to_test_device(contiguous(transpose(cast, -1, -2)));
      if (grad) buffer.set_requires_grad(true);
      return transpose(buffer, -1, -2);
    }
    case Layout::Strided: {
      const int64_t n = cast.size(-1);
      Shape big = cast.shape();
      big[big.size() - 1] = 2 * n + 1;
      Tensor host = full(big, poison_value(dtype), {.dtype = dtype});
      copy_(slice(host, -1, 1, 2 * n + 1, 2), cast);
      Tensor buffer = to_test_device(host);
      if (grad) buffer.set_requires_grad(true);
      return slice(buffer, -1, 1, 2 * n + 1, 2);
    }
    case Layout::Broadcast: {
      Tensor buffer = to_test_device(contiguous(slice(cast, 0, 0, 1)));
      if (grad) buffer.set_requires_grad(true);
      return expand(buffer, cast.shape().vec());
    }
  }
  return {};
}

Tensor reference_input(const Tensor& values, bool requires_grad) {
  Tensor x = clone(values);
  if (requires_grad) x.set_requires_grad(true);
  return x;
}

std::string describe_case(const std::string& op, DType dtype, const std::vector<Shape>& shapes,
                          const std::string& detail) {
  std::string text = fmt::format("{} {} on {}: {}", op, dtype, device(), shape_list(shapes));
  if (!detail.empty()) text += ", " + detail;
  return text;
}

std::vector<double> host_values(const Tensor& x) {
  return x.to_vector<double>();
}

void check_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                 DType expected_dtype, Tol tol, const Tensor& scale, double scale_factor) {
  ++comparison_count();
  INFO(what);
  if (!actual.defined()) {
    FAIL_CHECK("the result is undefined");
    return;
  }
  if (actual.device() != device() || actual.dtype() != expected_dtype ||
      actual.shape() != expected.shape()) {
    FAIL_CHECK(fmt::format("result is {} on {}, expected {}{} on {}", actual.describe(),
                           actual.device(), expected_dtype, expected.shape(), device()));
    return;
  }
  const std::vector<double> a = host_values(actual);
  const std::vector<double> e = host_values(expected);
  const std::vector<double> s = scale.defined() ? host_values(scale) : std::vector<double>{};
  double max_abs = 0;
  for (double v : e)
    if (std::isfinite(v)) max_abs = std::max(max_abs, std::abs(v));

  int64_t failures = 0, worst = -1;
  double worst_ratio = -1, worst_allowed = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    bool ok;
    double allowed = 0, ratio = 0;
    if (std::isnan(e[i])) {
      ok = std::isnan(a[i]);
      ratio = ok ? 0 : std::numeric_limits<double>::infinity();
    } else if (std::isinf(e[i])) {
      ok = a[i] == e[i];
      ratio = ok ? 0 : std::numeric_limits<double>::infinity();
    } else {
      allowed = tol.atol + tol.rtol * (tol.normwise ? max_abs : std::abs(e[i])) +
                (s.empty() ? 0.0 : scale_factor * s[i]);
      const double diff = std::abs(a[i] - e[i]);
      ok = diff <= allowed;  // false for NaN
      ratio = std::isnan(diff) ? std::numeric_limits<double>::infinity()
                               : diff / std::max(allowed, 1e-300);
    }
    if (!ok) ++failures;
    if (!ok && ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = static_cast<int64_t>(i);
      worst_allowed = allowed;
    }
  }
  if (failures == 0) {
    SUCCEED();
    return;
  }
  FAIL_CHECK(fmt::format(
      "{} of {} elements outside tolerance (atol {:.1e}, rtol {:.1e}{}{}); worst at {}: got "
      "{:.17g}, expected {:.17g}, |diff| {:.3e} > allowed {:.3e}",
      failures, e.size(), tol.atol, tol.rtol, tol.normwise ? " of max |expected|" : "",
      s.empty() ? "" : fmt::format(", + {:.1e} x scale", scale_factor),
      index_string(worst, expected.shape()), a[worst], e[worst], std::abs(a[worst] - e[worst]),
      worst_allowed));
}

void check_identical(const std::string& what, const Tensor& actual, const Tensor& expected) {
  ++comparison_count();
  INFO(what);
  if (actual.device() != device() || actual.dtype() != expected.dtype() ||
      actual.shape() != expected.shape()) {
    FAIL_CHECK(fmt::format("result is {} on {}, expected {} on {}", actual.describe(),
                           actual.device(), expected.describe(), device()));
    return;
  }
  std::string problem;
  dispatch_dtype(actual.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const std::vector<T> a = actual.to_vector<T>();
    const std::vector<T> e = expected.to_vector<T>();
    int64_t differ = 0, first = -1;
    uint64_t max_ulps = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const T ai = a[i], ei = e[i];  // copies: std::vector<bool> has no element addresses
      if (std::memcmp(&ai, &ei, sizeof(T)) == 0) continue;
      if (first < 0) first = static_cast<int64_t>(i);
      ++differ;
      if constexpr (std::is_floating_point_v<T>) {
        // Distance in units in the last place (same-sign values).
        using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
        Bits ba, be;
        std::memcpy(&ba, &ai, sizeof(T));
        std::memcpy(&be, &ei, sizeof(T));
        max_ulps = std::max<uint64_t>(max_ulps, static_cast<uint64_t>(ba > be ? ba - be : be - ba));
      }
    }
    if (differ == 0) return;
    problem = fmt::format(
        "{} of {} elements differ in their bits; first at {}: got {:.17g}, expected {:.17g}",
        differ, a.size(), index_string(first, actual.shape()), static_cast<double>(a[first]),
        static_cast<double>(e[first]));
    if (max_ulps > 0)
      problem += fmt::format(
          " (largest difference {} ulp; a 1-ulp difference usually means "
          "FMA contraction or a device log/cos that differs from the host's)",
          max_ulps);
  });
  if (problem.empty())
    SUCCEED();
  else
    FAIL_CHECK(problem);
}

void check_against_loop(const std::string& what, const Tensor& reference,
                        const std::vector<double>& loop_values, Tol tol) {
  ++comparison_count();
  INFO(what + " (CPU float64 reference vs an independent float64 loop)");
  const std::vector<double> r = host_values(reference);
  if (r.size() != loop_values.size()) {
    FAIL_CHECK(fmt::format("reference has {} elements, the loop {}", r.size(), loop_values.size()));
    return;
  }
  double max_abs = 0;
  for (double v : loop_values)
    if (std::isfinite(v)) max_abs = std::max(max_abs, std::abs(v));
  for (size_t i = 0; i < r.size(); ++i) {
    const double e = loop_values[i];
    const bool same_special = (std::isnan(e) && std::isnan(r[i])) || (std::isinf(e) && r[i] == e);
    const double allowed = tol.atol + tol.rtol * (tol.normwise ? max_abs : std::abs(e));
    if (!same_special && !(std::abs(r[i] - e) <= allowed)) {
      FAIL_CHECK(fmt::format("element {}: reference {:.17g}, loop {:.17g}, allowed {:.3e}",
                             index_string(static_cast<int64_t>(i), reference.shape()), r[i], e,
                             allowed));
      return;
    }
  }
  SUCCEED();
}

Tensor run_case(const Op& op, const std::vector<Input>& inputs, DType dtype, const Check& check) {
  std::vector<Shape> shapes;
  std::vector<std::string> layouts;
  for (const Input& in : inputs) {
    shapes.push_back(in.values.shape());
    layouts.push_back(layout_name(in.layout));
  }
  std::string detail = check.detail;
  detail += fmt::format("{}layouts {}", detail.empty() ? "" : ", ", fmt::join(layouts, "/"));
  const std::string what = describe_case(check.op, dtype, shapes, detail);
  const bool backward = check.backward && is_floating(dtype);
  auto wants_grad = [&](const Input& in) {
    return backward && in.follows_dtype && in.differentiable;
  };

  std::vector<Tensor> ref_inputs, dev_inputs;
  for (const Input& in : inputs) {
    ref_inputs.push_back(reference_input(in.values, wants_grad(in)));
    dev_inputs.push_back(on_device(in.values, in.follows_dtype ? dtype : in.values.dtype(),
                                   in.layout, wants_grad(in)));
  }
  Tensor reference, result;
  try {
    reference = op(ref_inputs);
  } catch (const std::exception& e) {
    FAIL_CHECK(what + ": the CPU float64 reference threw: " + e.what());
    return {};
  }
  try {
    result = op(dev_inputs);
  } catch (const std::exception& e) {
    FAIL_CHECK(what + ": threw: " + e.what());
    return reference;
  }
  check_close(what, result, reference, check.result_dtype, check.tol, check.scale,
              check.scale_factor);
  if (!backward || !reference.requires_grad()) return reference;

  // A random cotangent: grad() then gives w^T J for every input.
  Generator gen(static_cast<uint64_t>(comparison_count()));
  const Tensor w = random_values(reference.shape(), {-1, 1}, gen);
  std::vector<Tensor> ref_wrt, dev_wrt;
  std::vector<size_t> which;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!wants_grad(inputs[i])) continue;
    ref_wrt.push_back(ref_inputs[i]);
    dev_wrt.push_back(dev_inputs[i]);
    which.push_back(i);
  }
  try {
    const std::vector<Tensor> ref_grads = grad({reference}, ref_wrt, {w}, {.allow_unused = true});
    const std::vector<Tensor> dev_grads =
        grad({result}, dev_wrt, {to(to(w, dtype), device())}, {.allow_unused = true});
    for (size_t k = 0; k < which.size(); ++k) {
      if (!ref_grads[k].defined()) continue;
      check_close(fmt::format("{}: gradient of input {}", what, which[k]), dev_grads[k],
                  ref_grads[k], dtype, check.backward_tol);
    }
  } catch (const std::exception& e) {
    FAIL_CHECK(what + ": backward threw: " + e.what());
  }
  return reference;
}

}  // namespace tide::conformance
