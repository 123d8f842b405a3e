// safetensors reading and writing (nn/safetensors.h): round trips, the exact
// byte layout of the reference writer, a golden file written by PyTorch's
// `safetensors` package, the 16-bit float conversions against a brute-force
// nearest-value search, and every malformed-file case of the corpus in
// tests/data/corpus/safetensors/ (made by tests/golden/make_io_golden.py).
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tensor/kernels.h"
#include "test_io_util.h"
#include "tide.h"

using tide::DType;
using tide::Shape;
using tide::Tensor;
using tide::io::SafetensorsDType;
using tide::test::TempDir;

namespace {

// A file in memory: the 8-byte little-endian length, the header, the data.
std::string st_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

std::filesystem::path golden(const std::string& name) {
  return tide::test::data_dir() / "golden" / name;
}

// --- an independent model of the 16-bit formats, for the conversion tests ---

// Decodes from the definition (sign, biased exponent, mantissa) in double.
double f16_value(uint16_t h) {
  int sign = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  double v;
  if (e == 0x1F)
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0)
    v = std::ldexp(m, -24);
  else
    v = std::ldexp(1024 + m, e - 25);
  return sign ? -v : v;
}
double bf16_value(uint16_t h) {
  int sign = h >> 15, e = (h >> 7) & 0xFF, m = h & 0x7F;
  double v;
  if (e == 0xFF)
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0)
    v = std::ldexp(m, -133);
  else
    v = std::ldexp(128 + m, e - 134);
  return sign ? -v : v;
}

// The correctly rounded 16-bit code of x: the nearest representable value,
// ties to the even code, and infinity from half an ulp past the largest
// finite value. Found by search over the (monotone) positive codes.
uint16_t nearest_code(double x, double (*value)(uint16_t), uint16_t max_finite) {
  uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  double a = std::fabs(x);
  double max = value(max_finite);
  double next_ulp = max - value(max_finite - 1);  // ulp at the top of the range
  if (a >= max + next_ulp / 2) return sign | static_cast<uint16_t>(max_finite + 1);  // inf
  // Largest code whose value is <= a.
  uint16_t lo = 0, hi = max_finite;
  while (lo < hi) {
    uint16_t mid = static_cast<uint16_t>((lo + hi + 1) / 2);
    if (value(mid) <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == max_finite) return sign | lo;
  double below = value(lo), above = value(lo + 1);
  uint16_t code;
  if (a - below < above - a)
    code = lo;
  else if (a - below > above - a)
    code = lo + 1;
  else
    code = (lo % 2 == 0) ? lo : lo + 1;  // tie: even mantissa
  return sign | code;
}

// Doubles that exercise rounding: random magnitudes over the whole range,
// exact ties, values next to the overflow threshold and the subnormals.
std::vector<double> conversion_inputs(bool for_f16) {
  std::vector<double> xs = {0.0,
                            -0.0,
                            1.0,
                            -1.0,
                            0.1,
                            1.0 / 3,
                            65504,
                            65519.99,
                            65520,
                            65536,
                            1e10,
                            -1e10,
                            std::ldexp(1.0, -24),
                            std::ldexp(1.0, -25),
                            std::ldexp(1.5, -25),
                            std::ldexp(1.0, -26),
                            std::ldexp(3.0, -25),
                            std::ldexp(1.0, -14),
                            std::ldexp(1023.5, -24),
                            3.4e38,
                            3.4028235e38,
                            std::ldexp(1.0, -133),
                            std::ldexp(1.0, -134),
                            std::ldexp(3.0, -135),
                            std::ldexp(1.0, 128) * 0.9999,
                            1e-300,
                            -1e-300,
                            1e300};
  auto value = for_f16 ? f16_value : bf16_value;
  uint16_t max_finite = for_f16 ? 0x7BFF : 0x7F7F;
  // Exact midpoints between neighbours (ties) and points just beside them.
  for (uint16_t c = 0; c < max_finite; c = static_cast<uint16_t>(c + 97)) {
    double mid = (value(c) + value(c + 1)) / 2;
    xs.push_back(mid);
    xs.push_back(std::nextafter(mid, 0.0));
    xs.push_back(std::nextafter(mid, 1e300));
    xs.push_back(-mid);
  }
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> exponent(for_f16 ? -30 : -140, for_f16 ? 17 : 129);
  std::uniform_real_distribution<double> mantissa(1, 2);
  for (int i = 0; i < 3000; ++i) {
    double x = std::ldexp(mantissa(rng), static_cast<int>(exponent(rng)));
    xs.push_back(i % 2 ? -x : x);
  }
  return xs;
}

}  // namespace

// ===========================================================================
// Round trips
// ===========================================================================

TEST_CASE("safetensors: round trip of every Tide dtype with metadata", "[io][safetensors]") {
  TempDir dir;
  std::vector<float> f32(6);
  for (int i = 0; i < 6; ++i) f32[i] = 0.25f * i - 1;
  std::vector<double> f64 = {1.0 / 3, -2.5e300, 4.9e-324, 0.0};
  std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -1, 0, 7,
                              std::numeric_limits<int64_t>::max()};
  std::vector<bool> flags = {true, false, false, true};

  tide::io::TensorMap tensors;
  tensors["layer.weight"] = tide::from_vector(f32, Shape{2, 3});
  tensors["f64"] = tide::from_vector(f64);
  tensors["i64"] = tide::from_vector(i64);
  tensors["flags"] = tide::from_vector(flags);
  tensors["scalar"] = tide::scalar(2.5, {.dtype = DType::Float64});
  tensors["empty"] = tide::zeros({0, 3});
  // A transposed (non-contiguous) view: written in its logical row-major order.
  tensors["transposed"] = tide::kernels::transpose(tide::from_vector(f32, Shape{2, 3}), 0, 1);
  tide::io::MetadataMap metadata = {{"format", "pt"}, {"epoch", "3"}, {"ünï", "cødé"}};

  auto path = dir / "model.safetensors";
  tide::io::write_safetensors(path, tensors, metadata);
  tide::io::SafetensorsFile file = tide::io::read_safetensors(path);

  REQUIRE(file.metadata == metadata);
  REQUIRE(file.tensors.size() == tensors.size());
  const auto& t = file.tensors;
  REQUIRE(t.at("layer.weight").dtype() == DType::Float32);
  REQUIRE(t.at("layer.weight").shape() == Shape{2, 3});
  REQUIRE(t.at("layer.weight").to_vector<float>() == f32);
  REQUIRE(t.at("f64").to_vector<double>() == f64);
  REQUIRE(t.at("i64").dtype() == DType::Int64);
  REQUIRE(t.at("i64").to_vector<int64_t>() == i64);
  REQUIRE(t.at("flags").dtype() == DType::Bool);
  REQUIRE(t.at("flags").to_vector<bool>() == flags);
  REQUIRE(t.at("scalar").dim() == 0);
  REQUIRE(t.at("scalar").item() == 2.5);
  REQUIRE(t.at("empty").shape() == Shape{0, 3});
  REQUIRE(t.at("transposed").shape() == Shape{3, 2});
  // transposed[i][j] = f32[j * 3 + i]
  std::vector<float> expected_t;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) expected_t.push_back(f32[j * 3 + i]);
  REQUIRE(t.at("transposed").to_vector<float>() == expected_t);
  REQUIRE(file.stored_dtypes.at("flags") == SafetensorsDType::BOOL);
  REQUIRE(file.stored_dtypes.at("f64") == SafetensorsDType::F64);
  // No temporary file is left next to the result.
  REQUIRE(dir.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: an empty map round-trips", "[io][safetensors]") {
  TempDir dir;
  tide::io::write_safetensors(dir / "e.safetensors", {});
  auto file = tide::io::read_safetensors(dir / "e.safetensors");
  REQUIRE(file.tensors.empty());
  REQUIRE(file.metadata.empty());
}

// ===========================================================================
// Byte layout: the same bytes as the reference serializer
// ===========================================================================

TEST_CASE("safetensors: writes the reference implementation's bytes", "[io][safetensors]") {
  TempDir dir;
  SECTION("one F32 tensor (safetensors' own test_serialization)") {
    // The expected bytes are those in the Rust crate's test: N = 64, the
    // compact JSON padded with spaces, then the six floats.
    tide::io::write_safetensors(dir / "a.safetensors",
                                {{"attn.0", tide::kernels::reshape(tide::arange(6), {1, 2, 3})}});
    std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
    header.append(64 - header.size(), ' ');
    std::vector<float> data = {0, 1, 2, 3, 4, 5};
    REQUIRE(tide::test::read_bytes(dir / "a.safetensors") == st_file(header, raw_bytes(data)));
  }
  SECTION("no tensors, with and without metadata (safetensors' test_empty)") {
    tide::io::write_safetensors(dir / "b.safetensors", {});
    REQUIRE(tide::test::read_bytes(dir / "b.safetensors") == st_file("{}      "));
    tide::io::write_safetensors(dir / "c.safetensors", {}, {{"framework", "pt"}});
    REQUIRE(tide::test::read_bytes(dir / "c.safetensors") ==
            st_file(R"({"__metadata__":{"framework":"pt"}}     )"));
  }
  SECTION("larger elements first, then by name, so every tensor is aligned") {
    tide::io::write_safetensors(dir / "d.safetensors",
                                {{"a", tide::from_vector(std::vector<bool>{true, false, true})},
                                 {"b", tide::tensor({1.5})},
                                 {"c", tide::tensor({2.f})},
                                 {"d", tide::from_vector(std::vector<int64_t>{-2})}});
    std::string header = R"({"b":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                         R"("d":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},)"
                         R"("c":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
                         R"("a":{"dtype":"BOOL","shape":[3],"data_offsets":[20,23]}})";
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string data = raw_bytes(std::vector<double>{1.5}) + raw_bytes(std::vector<int64_t>{-2}) +
                       raw_bytes(std::vector<float>{2.f}) + std::string("\x01\x00\x01", 3);
    REQUIRE(tide::test::read_bytes(dir / "d.safetensors") == st_file(header, data));
  }
}

TEST_CASE("safetensors: reads any key order, padding and BOOL bytes", "[io][safetensors]") {
  // Entries listed out of offset order, metadata last, extra whitespace and
  // padding: all allowed by the format.
  std::string header = R"({ "z": {"shape": [2], "data_offsets": [0, 8], "dtype": "F32"},)"
                       R"( "a": {"dtype": "BOOL", "shape": [3], "data_offsets": [8, 11]},)"
                       R"( "__metadata__": {"k": "v"} })";
  header += "        ";
  std::string data = raw_bytes(std::vector<float>{1.5f, -2.f}) + std::string("\x00\x02\xff", 3);
  auto file = tide::io::parse_safetensors(st_file(header, data));
  REQUIRE(file.tensors.at("z").to_vector<float>() == std::vector<float>{1.5f, -2.f});
  // Any nonzero byte is true, and is stored as a proper 1.
  REQUIRE(file.tensors.at("a").to_vector<bool>() == std::vector<bool>{false, true, true});
  REQUIRE(file.tensors.at("a").to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1});
  REQUIRE(file.metadata == tide::io::MetadataMap{{"k", "v"}});
  // "__metadata__": null is treated as absent, like the reference reader.
  auto nulled = tide::io::parse_safetensors(st_file(R"({"__metadata__":null})"));
  REQUIRE(nulled.metadata.empty());
}

// ===========================================================================
// Golden file from PyTorch's safetensors
// ===========================================================================

TEST_CASE("safetensors: a file written by PyTorch's safetensors loads", "[io][safetensors]") {
  // Formulas from tests/golden/make_io_golden.py.
  auto file = tide::io::read_safetensors(golden("pytorch_small.safetensors"));
  const auto& t = file.tensors;
  REQUIRE(t.size() == 11);
  REQUIRE(file.metadata.at("format") == "pt");
  REQUIRE(file.metadata.at("source") == "tide-golden");
  REQUIRE(file.metadata.at("note") == "ünïcode ok");

  REQUIRE(t.at("f32").shape() == Shape{2, 3});
  std::vector<float> f32 = t.at("f32").to_vector<float>();
  for (int k = 0; k < 6; ++k) REQUIRE(f32[k] == 0.5f * k - 1);

  REQUIRE(t.at("f64").dtype() == DType::Float64);
  std::vector<double> f64 = t.at("f64").to_vector<double>();
  for (int i = 0; i < 4; ++i) REQUIRE(f64[i] == i / 3.0);

  REQUIRE(t.at("i64").dtype() == DType::Int64);
  std::vector<int64_t> i64 = t.at("i64").to_vector<int64_t>();
  for (int i = 0; i < 6; ++i) REQUIRE(i64[i] == (i - 3) * int64_t{1000000007});

  REQUIRE(t.at("bool").dtype() == DType::Bool);
  std::vector<bool> flags = t.at("bool").to_vector<bool>();
  REQUIRE(flags.size() == 5);
  for (int i = 0; i < 5; ++i) REQUIRE(flags[i] == (i % 3 == 0));

  // BF16 and F16 load as float32.
  REQUIRE(file.stored_dtypes.at("bf16_exact") == SafetensorsDType::BF16);
  REQUIRE(t.at("bf16_exact").dtype() == DType::Float32);
  std::vector<float> bf_exact = t.at("bf16_exact").to_vector<float>();
  for (int i = 0; i < 8; ++i) REQUIRE(bf_exact[i] == 0.25f * i - 1);
  // Rounded values: PyTorch computed them in float32 and rounded to 16 bits;
  // the expected value is the nearest 16-bit value to the float32 result.
  std::vector<float> bf_rounded = t.at("bf16_rounded").to_vector<float>();
  for (int i = 0; i < 6; ++i) {
    float computed = static_cast<float>(i + 1) / 3.0f;
    INFO("bf16_rounded[" << i << "] = " << bf_rounded[i]);
    REQUIRE(bf_rounded[i] == bf16_value(nearest_code(computed, bf16_value, 0x7F7F)));
  }
  REQUIRE(file.stored_dtypes.at("f16_rounded") == SafetensorsDType::F16);
  std::vector<float> f16_rounded = t.at("f16_rounded").to_vector<float>();
  for (int k = 0; k < 4; ++k) {
    float computed = static_cast<float>(k) * 0.1f;
    REQUIRE(f16_rounded[k] == f16_value(nearest_code(computed, f16_value, 0x7BFF)));
  }
  std::vector<float> special = t.at("f16_special").to_vector<float>();
  REQUIRE(special[0] == std::numeric_limits<float>::infinity());
  REQUIRE(special[1] == -std::numeric_limits<float>::infinity());
  REQUIRE(special[2] == 65504.f);
  REQUIRE(special[3] == std::ldexp(1.f, -24));
  REQUIRE(special[4] == 0.f);
  REQUIRE(std::signbit(special[4]));
  REQUIRE(special[5] == 1 + std::ldexp(1.f, -10));

  REQUIRE(t.at("scalar").dim() == 0);
  REQUIRE(t.at("scalar").item() == 3.5);
  REQUIRE(t.at("empty").shape() == Shape{0, 3});
  std::vector<double> named = t.at("net.0.wéight").to_vector<double>();
  REQUIRE(named == std::vector<double>{0.5, 1.5, 2.5});
}

TEST_CASE("safetensors: a loaded file rewrites to an identical file", "[io][safetensors]") {
  // Tide's writer lays out like the reference writer, so an F32/F64/I64/BOOL
  // file from PyTorch survives read + write unchanged apart from the half
  // tensors; compare the full-precision tensors bitwise after a second read.
  TempDir dir;
  auto original = tide::io::read_safetensors(golden("pytorch_small.safetensors"));
  tide::io::write_safetensors(dir / "copy.safetensors", original.tensors, original.metadata);
  auto copy = tide::io::read_safetensors(dir / "copy.safetensors");
  REQUIRE(copy.metadata == original.metadata);
  for (const auto& [name, t] : original.tensors) {
    INFO(name);
    REQUIRE(copy.tensors.at(name).shape() == t.shape());
    REQUIRE(copy.tensors.at(name).dtype() == t.dtype());
    REQUIRE(copy.tensors.at(name).to_vector<double>() == t.to_vector<double>());
  }
}

// ===========================================================================
// 16-bit floats
// ===========================================================================

TEST_CASE("safetensors: F16 and BF16 decode every code exactly", "[io][safetensors][half]") {
  for (uint32_t code = 0; code < 65536; ++code) {
    auto h = static_cast<uint16_t>(code);
    double f16 = f16_value(h), bf16 = bf16_value(h);
    float got16 = tide::io::f16_to_float(h), gotbf = tide::io::bf16_to_float(h);
    if (std::isnan(f16)) {
      REQUIRE(std::isnan(got16));
    } else {
      INFO("f16 code " << code);
      REQUIRE(static_cast<double>(got16) == f16);
      REQUIRE(std::signbit(got16) == std::signbit(f16));
    }
    if (std::isnan(bf16)) {
      REQUIRE(std::isnan(gotbf));
    } else {
      INFO("bf16 code " << code);
      REQUIRE(static_cast<double>(gotbf) == bf16);
    }
  }
}

TEST_CASE("safetensors: F16 and BF16 encode to the nearest value, ties to even",
          "[io][safetensors][half]") {
  SECTION("F16 from float and from double") {
    for (double x : conversion_inputs(true)) {
      INFO("x = " << x);
      REQUIRE(tide::io::double_to_f16(x) == nearest_code(x, f16_value, 0x7BFF));
      // From float: the reference is the nearest to the float's own value.
      auto xf = static_cast<float>(x);
      if (std::isfinite(xf))
        REQUIRE(tide::io::float_to_f16(xf) == nearest_code(xf, f16_value, 0x7BFF));
    }
  }
  SECTION("BF16 from float and from double") {
    for (double x : conversion_inputs(false)) {
      INFO("x = " << x);
      REQUIRE(tide::io::double_to_bf16(x) == nearest_code(x, bf16_value, 0x7F7F));
      auto xf = static_cast<float>(x);
      if (std::isfinite(xf))
        REQUIRE(tide::io::float_to_bf16(xf) == nearest_code(xf, bf16_value, 0x7F7F));
    }
  }
  SECTION("double rounding is avoided") {
    // x lies just above the midpoint between two halves, but rounding it to
    // float first lands exactly on the midpoint, which then ties to even
    // (down): only a single rounding gives the upper neighbour.
    double mid = (f16_value(0x3C00) + f16_value(0x3C01)) / 2;  // 1 + 2^-11
    double x = mid + std::ldexp(1.0, -40);
    REQUIRE(static_cast<double>(static_cast<float>(x)) == mid);
    REQUIRE(tide::io::double_to_f16(x) == 0x3C01);
    REQUIRE(tide::io::float_to_f16(static_cast<float>(x)) == 0x3C00);
  }
  SECTION("infinities and NaN") {
    const float inf = std::numeric_limits<float>::infinity();
    REQUIRE(tide::io::float_to_f16(inf) == 0x7C00);
    REQUIRE(tide::io::float_to_f16(-inf) == 0xFC00);
    REQUIRE(tide::io::float_to_bf16(-inf) == 0xFF80);
    REQUIRE(std::isnan(tide::io::f16_to_float(tide::io::float_to_f16(std::nanf("")))));
    REQUIRE(std::isnan(tide::io::bf16_to_float(tide::io::float_to_bf16(std::nanf("")))));
    REQUIRE(std::isnan(
        tide::io::f16_to_float(tide::io::double_to_f16(std::numeric_limits<double>::quiet_NaN()))));
  }
}

TEST_CASE("safetensors: writing floats as F16 or BF16", "[io][safetensors][half]") {
  TempDir dir;
  std::vector<float> values = {0.1f, -1.f / 3, 1e-6f, 70000.f, 2.5f};
  std::vector<double> values64 = {0.1, -1.0 / 3, 1e-6, 70000, 2.5};
  tide::io::TensorMap tensors = {{"w", tide::from_vector(values)},
                                 {"w64", tide::from_vector(values64)},
                                 {"steps", tide::from_vector(std::vector<int64_t>{5})}};
  for (auto dtype : {SafetensorsDType::F16, SafetensorsDType::BF16}) {
    bool f16 = dtype == SafetensorsDType::F16;
    DYNAMIC_SECTION(tide::io::safetensors_dtype_name(dtype)) {
      auto path = dir / "half.safetensors";
      tide::io::write_safetensors(path, tensors, {}, {.float_dtype = dtype});
      auto file = tide::io::read_safetensors(path);
      REQUIRE(file.stored_dtypes.at("w") == dtype);
      REQUIRE(file.stored_dtypes.at("steps") == SafetensorsDType::I64);  // integers untouched
      REQUIRE(file.tensors.at("steps").to_vector<int64_t>() == std::vector<int64_t>{5});
      std::vector<float> w = file.tensors.at("w").to_vector<float>();
      std::vector<float> w64 = file.tensors.at("w64").to_vector<float>();
      for (size_t i = 0; i < values.size(); ++i) {
        double expected = f16 ? f16_value(nearest_code(values[i], f16_value, 0x7BFF))
                              : bf16_value(nearest_code(values[i], bf16_value, 0x7F7F));
        double expected64 = f16 ? f16_value(nearest_code(values64[i], f16_value, 0x7BFF))
                                : bf16_value(nearest_code(values64[i], bf16_value, 0x7F7F));
        REQUIRE(static_cast<double>(w[i]) == expected);
        REQUIRE(static_cast<double>(w64[i]) == expected64);
      }
      std::string bytes = tide::test::read_bytes(path);
      REQUIRE(bytes.find(f16 ? R"("dtype":"F16")" : R"("dtype":"BF16")") != std::string::npos);
    }
  }
  SECTION("float_dtype F64 widens float32 tensors") {
    tide::io::write_safetensors(dir / "wide.safetensors", tensors, {},
                                {.float_dtype = SafetensorsDType::F64});
    auto file = tide::io::read_safetensors(dir / "wide.safetensors");
    REQUIRE(file.tensors.at("w").dtype() == DType::Float64);
    std::vector<double> w = file.tensors.at("w").to_vector<double>();
    for (size_t i = 0; i < values.size(); ++i) REQUIRE(w[i] == static_cast<double>(values[i]));
  }
}

// ===========================================================================
// Bad files: every corpus case, with the message it must give
// ===========================================================================

TEST_CASE("safetensors: every malformed file is refused with a precise message",
          "[io][safetensors][corpus]") {
  const std::vector<tide::test::CorpusCase> cases = {
      {"empty_file", {"file has 0 bytes, fewer than the 8-byte"}},
      {"too_short_5_bytes", {"file has 5 bytes"}},
      {"header_length_u64_max", {"header length 18446744073709551615", "exceeds the limit"}},
      {"header_length_terabytes", {"header length 1099511627776", "exceeds the limit"}},
      {"header_length_over_100MB_limit", {"exceeds the limit of 100000000 bytes"}},
      {"header_length_past_end_of_file",
       {"header length 1000", "runs past the end of the file", "has 16 bytes"}},
      {"header_length_zero", {"header (bytes 8..8) is not valid JSON"}},
      {"header_not_json", {"is not valid JSON"}},
      {"header_truncated_json", {"is not valid JSON"}},
      {"header_trailing_garbage", {"is not valid JSON"}},
      {"header_json_array", {"header must be a JSON object, got array"}},
      {"header_json_string", {"header must be a JSON object, got string"}},
      {"header_invalid_utf8", {"not valid UTF-8", "0xff at file byte 11"}},
      {"header_overlong_utf8", {"not valid UTF-8", "0xc0 at file byte 10"}},
      {"header_deeply_nested", {"nested more than 16 levels"}},
      {"tensor_entry_not_object", {"tensor 'w': expected an object", "got a non-negative integer"}},
      {"missing_dtype", {"tensor 'w': missing field 'dtype'"}},
      {"missing_shape", {"tensor 'w': missing field 'shape'"}},
      {"missing_data_offsets", {"tensor 'w': missing field 'data_offsets'"}},
      {"unexpected_field", {"tensor 'w': unexpected field 'offsets'"}},
      {"dtype_not_string", {"tensor 'w': field 'dtype' must be a string"}},
      {"dtype_unknown_F31", {"tensor 'w': unknown dtype 'F31'"}},
      {"dtype_lowercase_f32", {"unknown dtype 'f32'"}},
      {"dtype_unsupported_I32", {"dtype 'I32' is valid safetensors but not supported by Tide"}},
      {"shape_not_array", {"tensor 'w': field 'shape' must be an array"}},
      {"shape_negative_entry", {"shape[0] must be a non-negative integer, got a negative integer"}},
      {"shape_fractional_entry", {"shape[0] must be a non-negative integer", "1.5"}},
      {"shape_entry_above_int64", {"shape[0] = 9223372036854775808 does not fit in int64"}},
      {"shape_entry_above_uint64", {"shape[0] must be a non-negative integer", "out-of-range"}},
      {"shape_element_count_overflows",
       {"shape [4294967296, 4294967296] has more elements than fit in int64"}},
      {"shape_byte_count_overflows", {"shape [2305843009213693952] of F64 needs more bytes"}},
      {"shape_nine_dims", {"shape has 9 dimensions; Tide supports at most 8"}},
      {"shape_terabytes_in_tiny_file",
       {"tensor 'w': data_offsets [0, 1099511627776]",
        "run past the end of the 8-byte data "
        "buffer"}},
      {"offsets_not_array", {"field 'data_offsets' must be an array"}},
      {"offsets_three_numbers", {"data_offsets must be [begin, end], got 3 numbers"}},
      {"offsets_negative", {"data_offsets[0] must be a non-negative integer"}},
      {"offsets_end_before_begin", {"data_offsets [8, 4] end before they begin"}},
      {"offsets_past_end_of_file",
       {"tensor 'w': data_offsets [0, 8]", "run past the end of the 4-byte data buffer",
        "file bytes"}},
      {"offsets_length_mismatch", {"data_offsets [0, 12] hold 12 bytes but F32 [2] needs 8"}},
      {"tensors_overlap",
       {"tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) overlap"}},
      {"gap_between_tensors", {"data buffer bytes [4, 8)", "gap before tensor 'b'"}},
      {"gap_at_start", {"data buffer bytes [0, 4)", "gap before tensor 'a'"}},
      {"trailing_bytes_after_last_tensor", {"bytes [4, 8)", "after the last tensor"}},
      {"data_without_tensors", {"bytes [0, 16)", "after the last tensor"}},
      {"duplicate_tensor_name", {"tensor name 'a' appears twice"}},
      {"duplicate_field_in_tensor", {"key 'dtype' appears twice"}},
      {"metadata_not_object", {"__metadata__ must be an object of strings, got string"}},
      {"metadata_value_not_string",
       {"__metadata__['epoch'] must be a string, got a non-negative integer (3)"}},
      {"metadata_value_nested_object", {"__metadata__['k'] must be a string, got object"}},
  };
  tide::test::check_bad_corpus(
      "safetensors", ".safetensors", "read_safetensors", cases,
      [](const std::filesystem::path& path) { return tide::io::read_safetensors(path); });
}

TEST_CASE("safetensors: offsets in messages are file offsets too", "[io][safetensors]") {
  // 8-byte length + 56-byte header: the data buffer starts at file byte 64.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  REQUIRE(header.size() == 56);
  std::string bytes = st_file(header, std::string(4, '\0'));
  REQUIRE_THROWS_WITH(tide::io::parse_safetensors(bytes, "mem.safetensors"),
                      Catch::Contains("'mem.safetensors'") &&
                          Catch::Contains("(file bytes 64..72)") &&
                          Catch::Contains("(file bytes 64..68)"));
}

TEST_CASE("safetensors: unreadable paths and bad writes throw tide::Error", "[io][safetensors]") {
  TempDir dir;
  REQUIRE_THROWS_WITH(
      tide::io::read_safetensors(dir / "missing.safetensors"),
      Catch::Contains("read_safetensors: cannot open") && Catch::Contains("missing.safetensors"));
  REQUIRE_THROWS_WITH(tide::io::read_safetensors(dir.path()),
                      Catch::Contains("is not a regular file"));

  Tensor w = tide::ones({2});
  REQUIRE_THROWS_WITH(
      tide::io::write_safetensors(dir / "no_such_dir" / "x.safetensors", {{"w", w}}),
      Catch::Contains("write_safetensors: cannot write") && Catch::Contains("no_such_dir"));
  REQUIRE_THROWS_WITH(tide::io::write_safetensors(dir / "x.safetensors", {{"w", Tensor()}}),
                      Catch::Contains("tensor 'w' is undefined"));
  REQUIRE_THROWS_WITH(tide::io::write_safetensors(dir / "x.safetensors", {{"__metadata__", w}}),
                      Catch::Contains("'__metadata__' is reserved"));
  REQUIRE_THROWS_WITH(
      tide::io::write_safetensors(dir / "x.safetensors", {{std::string("bad\xff"), w}}),
      Catch::Contains("tensor name 'bad\\xff' is not valid UTF-8 (byte 3)"));
  REQUIRE_THROWS_WITH(
      tide::io::write_safetensors(dir / "x.safetensors", {{"w", w}}, {{"k", std::string("\xc3")}}),
      Catch::Contains("metadata value"));
  REQUIRE_THROWS_WITH(tide::io::write_safetensors(dir / "x.safetensors", {{"w", w}}, {},
                                                  {.float_dtype = SafetensorsDType::I64}),
                      Catch::Contains("float_dtype must be a floating-point dtype, got I64"));
  // None of the failed writes left anything behind.
  REQUIRE(dir.entries().empty());
}
