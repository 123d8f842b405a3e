// Files Tide writes for other programs: this test writes them (and reads them
// back); tests/golden/check_tide_files.py then checks that NumPy, PyTorch and
// the `safetensors` package read the same values. CTest runs the two in order
// (tests/CMakeLists.txt) with TIDE_IO_INTEROP_DIR naming the folder; run alone,
// the test writes into a temporary folder.
//
// The values are closed formulas that the Python script restates.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/npy.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tensor/kernels.h"
#include "test_io_util.h"
#include "tide.h"

using tide::DType;
using tide::Shape;
using tide::Tensor;
using tide::io::SafetensorsDType;

namespace {

// f32[k] = k / 8 - 1, shape [2, 3]
Tensor f32_values() {
  std::vector<float> v(6);
  for (int k = 0; k < 6; ++k) v[k] = static_cast<float>(k / 8.0 - 1);
  return tide::from_vector(v, Shape{2, 3});
}
// f64[k] = k / 3 - 0.5, shape [4]
Tensor f64_values() {
  std::vector<double> v(4);
  for (int k = 0; k < 4; ++k) v[k] = k / 3.0 - 0.5;
  return tide::from_vector(v);
}
Tensor i64_values() {  // [INT64_MIN, -1, INT64_MAX]
  return tide::from_vector(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), -1,
                                                std::numeric_limits<int64_t>::max()});
}
Tensor bool_values() {  // k % 2 == 0, shape [5]
  std::vector<bool> v(5);
  for (int k = 0; k < 5; ++k) v[k] = k % 2 == 0;
  return tide::from_vector(v);
}
// half_source[k] = float32((k + 1) / 3) for k < 100, then special values:
// tiny, overflowing, -0, and exact ties for BF16 (1 + 2^-8, 1 + 3 * 2^-8) and
// for F16 (1 + 2^-11, 1 + 3 * 2^-11), which must round to the even neighbour.
Tensor half_source_f32() {
  std::vector<float> v;
  for (int k = 0; k < 100; ++k) v.push_back(static_cast<float>((k + 1) / 3.0));
  for (float s :
       {1e-6f, 70000.f, -0.0f, 65519.f, 1.00390625f, 1.01171875f, 1.00048828125f, 1.00146484375f})
    v.push_back(s);
  return tide::from_vector(v);
}
// half_source64[k] = (k + 1) / 7 * 1000, float64
Tensor half_source_f64() {
  std::vector<double> v;
  for (int k = 0; k < 100; ++k) v.push_back((k + 1) / 7.0 * 1000);
  return tide::from_vector(v);
}

}  // namespace

TEST_CASE("io: Tide writes the interchange files that Python checks", "[io][interop]") {
  tide::test::TempDir temp;
  std::filesystem::path dir = temp.path();
  if (const char* env = std::getenv("TIDE_IO_INTEROP_DIR")) {
    dir = env;
    std::filesystem::create_directories(dir);
  }

  // --- safetensors ---
  tide::io::TensorMap tensors = {
      {"f32", f32_values()},
      {"f64", f64_values()},
      {"i64", i64_values()},
      {"bool", bool_values()},
      {"scalar", tide::scalar(7.25)},
      {"empty", tide::zeros({0, 4})},
      {"transposed", tide::kernels::transpose(f32_values(), 0, 1)},
      {"net.0.wéight", tide::arange(3, {.dtype = DType::Float64})},
  };
  tide::io::MetadataMap metadata = {{"writer", "tide"}, {"ünï", "cødé"}};
  tide::io::write_safetensors(dir / "tide_dtypes.safetensors", tensors, metadata);
  tide::io::TensorMap halves = {{"w", half_source_f32()}, {"w64", half_source_f64()}};
  tide::io::write_safetensors(dir / "tide_f16.safetensors", halves, {},
                              {.float_dtype = SafetensorsDType::F16});
  tide::io::write_safetensors(dir / "tide_bf16.safetensors", {{"w", half_source_f32()}}, {},
                              {.float_dtype = SafetensorsDType::BF16});

  // --- npy ---
  tide::io::write_npy(dir / "tide_v1_f4.npy", f32_values());
  tide::io::write_npy(dir / "tide_v2_f8.npy", f64_values(), {.version = 2});
  tide::io::write_npy(dir / "tide_v3_i8.npy", i64_values(), {.version = 3});
  tide::io::write_npy(dir / "tide_b1.npy", bool_values());
  tide::io::write_npy(dir / "tide_scalar.npy", tide::scalar(7.25, {.dtype = DType::Float64}));
  tide::io::write_npy(dir / "tide_empty.npy", tide::zeros({0, 4}));
  tide::io::write_npy(dir / "tide_transposed.npy", tide::kernels::transpose(f32_values(), 0, 1));

  // --- a checkpoint (plain safetensors to any other tool) ---
  tide::Generator gen(11);
  tide::nn::Linear model({.in = 3, .out = 2, .generator = &gen});
  tide::nn::Adam adam(model.parameters());
  tide::nn::save_checkpoint(dir / "tide_checkpoint.safetensors",
                            {.model = &model, .optimizer = &adam, .generator = &gen, .step = 17});

  // Tide reads its own files back with the same values.
  auto file = tide::io::read_safetensors(dir / "tide_dtypes.safetensors");
  REQUIRE(file.metadata == metadata);
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(file.tensors.at(name).shape() == t.shape());
    REQUIRE(file.tensors.at(name).to_vector<double>() == t.to_vector<double>());
  }
  REQUIRE(tide::io::read_npy(dir / "tide_v3_i8.npy").to_vector<int64_t>() ==
          i64_values().to_vector<int64_t>());
  REQUIRE(tide::io::read_npy(dir / "tide_transposed.npy").shape() == Shape{3, 2});
  auto half = tide::io::read_safetensors(dir / "tide_f16.safetensors");
  std::vector<float> w = half.tensors.at("w").to_vector<float>();
  std::vector<float> src = half_source_f32().to_vector<float>();
  for (size_t i = 0; i < w.size(); ++i) {
    // within half an F16 ulp (relative 2^-11) for normal values below 65504
    if (std::fabs(src[i]) >= 6.2e-5f && std::fabs(src[i]) <= 65504.f)
      REQUIRE(std::fabs(w[i] - src[i]) <= std::fabs(src[i]) * std::ldexp(1.0, -11));
  }
}
