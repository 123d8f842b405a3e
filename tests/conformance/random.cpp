// Conformance of the random primitive: for the same generator state and
// shape, every device must produce bit-identical numbers (issue 5), so a seed
// reproduces a run whether it trained on a CPU or a GPU.
//
// On the CPU the fills are also checked against backends/philox.h evaluated
// here element by element, the definition every backend implements.
#include <cmath>
#include <limits>

#include "backends/philox.h"
#include "conformance.h"

namespace tide::conformance {
namespace {

struct RandomCase {
  std::string name;
  DType dtype;
  // Draws on `options.device` from `gen`.
  std::function<Tensor(const Shape&, Generator&, TensorOptions)> draw;
  // Element i from the Philox block (seed, offset + i), in float64; empty
  // where the conversion is not a plain formula (randperm).
  std::function<double(uint64_t seed, uint64_t counter)> element;
};

std::vector<RandomCase> random_cases() {
  std::vector<RandomCase> cases;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const bool f32 = dtype == DType::Float32;
    auto round = [f32](double v) { return f32 ? double(float(v)) : v; };
    cases.push_back({"rand", dtype,
                     [](const Shape& s, Generator& g, TensorOptions o) { return rand(s, g, o); },
                     [round](uint64_t k, uint64_t c) { return round(philox::uniform(k, c)); }});
    cases.push_back(
        {"uniform(-2, 3)", dtype,
         [](const Shape& s, Generator& g, TensorOptions o) { return uniform(s, -2, 3, g, o); },
         [round](uint64_t k, uint64_t c) { return round(-2 + 5 * philox::uniform(k, c)); }});
    cases.push_back({"randn", dtype,
                     [](const Shape& s, Generator& g, TensorOptions o) { return randn(s, g, o); },
                     [round](uint64_t k, uint64_t c) { return round(philox::normal(k, c)); }});
    cases.push_back(
        {"normal(0.5, 2)", dtype,
         [](const Shape& s, Generator& g, TensorOptions o) { return normal(s, 0.5, 2, g, o); },
         [round](uint64_t k, uint64_t c) { return round(0.5 + 2 * philox::normal(k, c)); }});
  }
  for (DType dtype : {DType::Float32, DType::Int64, DType::Bool}) {
    cases.push_back(
        {"bernoulli(0.3)", dtype,
         [](const Shape& s, Generator& g, TensorOptions o) { return bernoulli(s, 0.3, g, o); },
         [](uint64_t k, uint64_t c) { return double(philox::uniform(k, c) < 0.3); }});
  }
  for (DType dtype : {DType::Int64, DType::Float32}) {
    cases.push_back(
        {"randint(-5, 17)", dtype,
         [](const Shape& s, Generator& g, TensorOptions o) { return randint(-5, 17, s, g, o); },
         [](uint64_t k, uint64_t c) { return -5 + std::floor(philox::uniform(k, c) * 22); }});
  }
  cases.push_back(
      {"randperm", DType::Int64,
       [](const Shape& s, Generator& g, TensorOptions o) { return randperm(s.numel(), g, o); },
       nullptr});
  return cases;
}

TEST_CASE("conformance: random numbers are bit-identical to the CPU's", "[random]") {
  const std::vector<Shape> shapes = {{0}, {1}, {7}, {3, 5}, {70001}};
  // Seeds that use the high key word; offsets around the 32-bit carry of the
  // counter (element i uses block offset + i).
  const std::vector<GeneratorState> states = {
      {0, 0}, {123456789, 17}, {0x8000000000000007ull, (1ull << 32) - 5}};
  for (const RandomCase& c : random_cases()) {
    for (const GeneratorState& state : states) {
      for (const Shape& shape : shapes) {
        if (c.name == "randperm" && shape.size() != 1) continue;
        const std::string what =
            describe_case(c.name, c.dtype, {shape},
                          fmt::format("seed {:#x}, offset {}", state.seed, state.offset));
        Generator on_host, on_dev;
        on_host.set_state(state);
        on_dev.set_state(state);
        Tensor expected, actual;
        try {
          expected = c.draw(shape, on_host, {.dtype = c.dtype});
          actual = c.draw(shape, on_dev, {.dtype = c.dtype, .device = device()});
        } catch (const std::exception& e) {
          FAIL_CHECK(what + ": threw: " + e.what());
          continue;
        }
        check_identical(what, actual, expected);
        // Both generators advanced by the same number of blocks.
        CHECK(on_dev.state() == on_host.state());
        if (on_cpu() && c.element) {
          std::vector<double> loop(shape.numel());
          for (size_t i = 0; i < loop.size(); ++i)
            loop[i] = c.element(state.seed, state.offset + i);
          check_against_loop(what + " vs backends/philox.h", expected, loop, kExact);
        }
      }
    }
  }
}

TEST_CASE("conformance: random draws feed ops on the device", "[random]") {
  // A draw made on the device is an ordinary device tensor: its moments are
  // right (catches a fill that writes only part of the buffer).
  Generator gen(801);
  const Tensor x = randn({70001}, gen, {.device = device()});
  const Tensor m = mean(x);
  const Tensor s = std(x);
  CHECK(m.device() == device());
  CHECK(std::abs(m.item()) < 0.02);  // 5.3 standard errors of the mean
  CHECK(std::abs(s.item() - 1) < 0.02);
}

}  // namespace
}  // namespace tide::conformance
