// Conformance of the memory primitives: host <-> device copies of every dtype,
// the strided dtype-converting `copy` (contiguous(), to(dtype), copy_ into
// views), `fill`, joins built on them, and the allocator's statistics.
#include <cmath>
#include <limits>

#include "conformance.h"

namespace tide::conformance {
namespace {

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> dtypes = {DType::Bool, DType::Int64, DType::Float32,
                                            DType::Float64};
  return dtypes;
}

// Values every dtype holds exactly when converted from float64: integers and
// halves with both signs, zero, and the float32 extremes.
Tensor conversion_values(const Shape& shape, Generator& gen, Layout layout = Layout::Contiguous) {
  return div(random_values(shape, {-40, 40, 0, true}, gen, layout), 2.0);
}

TEST_CASE("conformance: host-device round trips are exact for every dtype", "[memory]") {
  Generator gen(901);
  const std::vector<Shape> shapes = {{}, {0}, {1}, {7}, {3, 0}, {33, 17}, {70001}};
  for (DType dtype : all_dtypes()) {
    for (const Shape& shape : shapes) {
      Tensor host = to(random_values(shape, {-1e6, 1e6}, gen), dtype);
      if (dtype == DType::Float64) host = randn(shape, gen, {.dtype = dtype});  // full mantissa
      // Tensor::to (a plain copy) there, the differentiable tide::to back.
      const Tensor there = host.to(device());
      CHECK(there.device() == device());
      const Tensor back = to(there, Device::cpu());
      CHECK(back.device() == Device::cpu());
      // Compared on the CPU: the bits that went there came back.
      const Device tested = device();
      set_device(Device::cpu());
      check_identical(describe_case("to(" + tested.str() + ") and back", dtype, {shape}), back,
                      host);
      set_device(tested);
    }
  }
}

TEST_CASE("conformance: dtype conversions on the device", "[memory][copy]") {
  Generator gen(902);
  const std::vector<Shape> shapes = {{}, {0}, {7}, {33, 17}, {263, 269}};
  for (const Shape& shape : shapes) {
    for (Layout layout : layouts_for(shape)) {
      const Tensor values = conversion_values(shape, gen, layout);
      for (DType from : all_dtypes()) {
        for (DType to_dtype : all_dtypes()) {
          // Reference: the CPU converting the same values (float -> int64
          // truncates toward zero, nonzero -> true).
          const Tensor src_host = to(values, from);
          const Tensor expected = to(to(src_host, to_dtype), DType::Float64);
          const Tensor src = on_device(to(src_host, DType::Float64), from, layout);
          Tensor actual;
          try {
            actual = to(src, to_dtype);
            if (from == to_dtype) actual = contiguous(actual);  // the strided copy itself
          } catch (const std::exception& e) {
            FAIL_CHECK(fmt::format("to({}) from {}: threw {}", to_dtype, from, e.what()));
            continue;
          }
          check_close(describe_case(fmt::format("to({})", to_dtype), from, {shape},
                                    std::string("layout ") + layout_name(layout)),
                      actual, expected, to_dtype, kExact);
          if (on_cpu() && to_dtype == DType::Int64 && is_floating(from)) {
            std::vector<double> loop = host_values(values);
            for (double& v : loop) v = std::trunc(v);
            check_against_loop("to(int64) truncates", expected, loop, kExact);
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: float64 to float32 rounds to nearest even", "[memory][copy]") {
  // Values exactly between two float32 numbers, and ones that overflow.
  std::vector<double> v = {1.0 + std::ldexp(1.0, -24),      // halfway: rounds down to even
                           1.0 + 3 * std::ldexp(1.0, -24),  // halfway: rounds up to even
                           -1.0 - std::ldexp(1.0, -24),    1e39, -1e39, 1e-46, 0.1};
  const Tensor host = from_vector(v, Shape{static_cast<int64_t>(v.size())});
  const Tensor actual = to(to(host, device()), DType::Float32);
  std::vector<double> expected;
  for (double x : v) expected.push_back(static_cast<double>(static_cast<float>(x)));
  check_close(describe_case("to(float32) rounding", DType::Float64, {host.shape()}), actual,
              from_vector(expected, host.shape()), DType::Float32, kExact);
}

TEST_CASE("conformance: fill and copy_ into strided views", "[memory][copy]") {
  Generator gen(903);
  for (DType dtype : all_dtypes()) {
    // full() on the device, then fill_ and copy_ into every other column of a
    // matrix: the untouched columns must stay as they were.
    const Tensor base = full({33, 17}, 2.0, {.dtype = dtype, .device = device()});
    Tensor expected = full({33, 17}, 2.0, {.dtype = DType::Float64});
    fill_(slice(base, 1, 0, 17, 2), 0.0);
    fill_(slice(expected, 1, 0, 17, 2), 0.0);
    const Tensor src = conversion_values({33, 9}, gen);
    copy_(slice(base, 1, 0, 17, 2), on_device(src, dtype, Layout::Transposed));
    copy_(slice(expected, 1, 0, 17, 2), to(to(src, dtype), DType::Float64));
    // A broadcast source: one row into every row of a transposed view.
    const Tensor row = conversion_values({33}, gen);
    copy_(transpose(slice(base, 1, 1, 17, 2), 0, 1), on_device(row, dtype, Layout::Contiguous));
    copy_(transpose(slice(expected, 1, 1, 17, 2), 0, 1), to(to(row, dtype), DType::Float64));
    check_close(describe_case("fill_ and copy_ into views", dtype, {Shape{33, 17}}), base, expected,
                dtype, kExact);
  }
}

TEST_CASE("conformance: cat, stack and clone on the device", "[memory][copy]") {
  Generator gen(904);
  for (DType dtype : float_dtypes()) {
    const Tensor a = random_values({4, 5}, {}, gen), b = random_values({4, 3}, {}, gen);
    run_case(
        [](const std::vector<Tensor>& t) {
          return cat({t[0], t[1]}, 1);
        },
        {{a, Layout::Transposed}, {b, Layout::Strided}}, dtype,
        {.op = "cat",
         .tol = kExact,
         .result_dtype = dtype,
         .backward = true,
         .backward_tol = kExact});
    run_case(
        [](const std::vector<Tensor>& t) {
          return stack({t[0], t[1]}, 0);
        },
        {{a, Layout::Strided}, {a, Layout::Transposed}}, dtype,
        {.op = "stack",
         .tol = kExact,
         .result_dtype = dtype,
         .backward = true,
         .backward_tol = kExact});
    run_case([](const std::vector<Tensor>& t) { return clone(t[0]); }, {{a, Layout::Strided}},
             dtype,
             {.op = "clone",
              .tol = kExact,
              .result_dtype = dtype,
              .backward = true,
              .backward_tol = kExact});
  }
}

TEST_CASE("conformance: memory statistics track allocations", "[memory][stats]") {
  Backend& backend = backend_for(device());
  const size_t nbytes = 1 << 22;  // 4 MiB
  const MemoryStats before = backend.memory_stats();
  {
    const Tensor x = empty({static_cast<int64_t>(nbytes / 4)}, {.device = device()});
    const MemoryStats during = backend.memory_stats();
    INFO(fmt::format("in use before {}, during {}", before.bytes_in_use, during.bytes_in_use));
    CHECK(during.bytes_in_use >= before.bytes_in_use + nbytes);
    CHECK(during.peak_bytes_in_use >= during.bytes_in_use);
    CHECK(during.num_allocations > before.num_allocations);
  }
  const MemoryStats after = backend.memory_stats();
  INFO(fmt::format("in use before {}, after {}", before.bytes_in_use, after.bytes_in_use));
  CHECK(after.bytes_in_use <= before.bytes_in_use);
  // A caching allocator keeps the freed block; nothing is cached on the CPU.
  if (device().is_cuda()) {
    CHECK(after.bytes_cached >= nbytes);
  }
  backend.reset_peak_memory_stats();
  CHECK(backend.memory_stats().peak_bytes_in_use == backend.memory_stats().bytes_in_use);
}

}  // namespace
}  // namespace tide::conformance
