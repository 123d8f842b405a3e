// .npy reading and writing (nn/npy.h): golden files written by NumPy (every
// supported dtype, format versions 1.0, 2.0 and 3.0, Fortran order, 0-d and
// empty arrays), byte-identical output to NumPy's writer, header parsing, and
// every malformed file of tests/data/corpus/npy/ with its message.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "nn/npy.h"
#include "tensor/kernels.h"
#include "test_io_util.h"
#include "tide.h"

using tide::DType;
using tide::Shape;
using tide::Tensor;
using tide::test::TempDir;

namespace {

std::filesystem::path golden(const std::string& name) {
  return tide::test::data_dir() / "golden" / name;
}

// An .npy file in memory with a version-1.0 header (padded like NumPy).
std::string npy_file(const std::string& dict, const std::string& data) {
  std::string header = dict;
  size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xFF));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

// The arrays of tests/golden/make_io_golden.py, from its formulas.
Tensor v1_f4_values() {  // (4 i + j) / 4, shape (3, 4)
  std::vector<float> v(12);
  for (int k = 0; k < 12; ++k) v[k] = static_cast<float>(k) / 4;
  return tide::from_vector(v, Shape{3, 4});
}
Tensor v1_f8_values() {  // i / 7, shape (5,)
  std::vector<double> v(5);
  for (int i = 0; i < 5; ++i) v[i] = i / 7.0;
  return tide::from_vector(v);
}
Tensor v1_i8_values() {  // (3 i + j - 4) * 2^40, shape (2, 3)
  std::vector<int64_t> v(6);
  for (int k = 0; k < 6; ++k) v[k] = (k - 4) * (int64_t{1} << 40);
  return tide::from_vector(v, Shape{2, 3});
}
Tensor v1_b1_values() {  // i % 2 == 1, shape (7,)
  std::vector<bool> v(7);
  for (int i = 0; i < 7; ++i) v[i] = i % 2 == 1;
  return tide::from_vector(v);
}

}  // namespace

// ===========================================================================
// Golden files from NumPy
// ===========================================================================

TEST_CASE("npy: files written by NumPy load with the right values", "[io][npy]") {
  SECTION("float32, float64, int64 and bool, version 1.0") {
    Tensor f4 = tide::io::read_npy(golden("v1_f4.npy"));
    REQUIRE(f4.dtype() == DType::Float32);
    REQUIRE(f4.shape() == Shape{3, 4});
    REQUIRE(f4.to_vector<float>() == v1_f4_values().to_vector<float>());
    Tensor f8 = tide::io::read_npy(golden("v1_f8.npy"));
    REQUIRE(f8.dtype() == DType::Float64);
    REQUIRE(f8.to_vector<double>() == v1_f8_values().to_vector<double>());
    Tensor i8 = tide::io::read_npy(golden("v1_i8.npy"));
    REQUIRE(i8.dtype() == DType::Int64);
    REQUIRE(i8.shape() == Shape{2, 3});
    REQUIRE(i8.to_vector<int64_t>() == v1_i8_values().to_vector<int64_t>());
    Tensor b1 = tide::io::read_npy(golden("v1_b1.npy"));
    REQUIRE(b1.dtype() == DType::Bool);
    REQUIRE(b1.to_vector<bool>() == v1_b1_values().to_vector<bool>());
  }
  SECTION("float16 loads as float32 and int32 as int64") {
    Tensor f2 = tide::io::read_npy(golden("v1_f2.npy"));
    REQUIRE(f2.dtype() == DType::Float32);
    std::vector<float> v = f2.to_vector<float>();
    REQUIRE(v.size() == 6);
    for (int i = 0; i < 6; ++i) REQUIRE(v[i] == i / 8.0f - 1);  // exact in float16
    Tensor i4 = tide::io::read_npy(golden("v1_i4.npy"));
    REQUIRE(i4.dtype() == DType::Int64);
    std::vector<int64_t> w = i4.to_vector<int64_t>();
    REQUIRE(w.size() == 5);
    for (int i = 0; i < 5; ++i) REQUIRE(w[i] == (i - 2) * 100000);
  }
  SECTION("a Fortran-order array is transposed into row-major order") {
    Tensor f = tide::io::read_npy(golden("v1_fortran_f8.npy"));
    REQUIRE(f.shape() == Shape{2, 3, 4});
    REQUIRE(f.is_contiguous());
    std::vector<double> v = f.to_vector<double>();
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k) REQUIRE(v[(i * 3 + j) * 4 + k] == 100 * i + 10 * j + k);
  }
  SECTION("0-d and empty arrays") {
    Tensor s = tide::io::read_npy(golden("v1_scalar_f8.npy"));
    REQUIRE(s.dim() == 0);
    REQUIRE(s.item() == 2.25);
    Tensor e = tide::io::read_npy(golden("v1_empty_f4.npy"));
    REQUIRE(e.shape() == Shape{0, 3});
  }
  SECTION("format versions 2.0 and 3.0") {
    REQUIRE(tide::io::read_npy(golden("v2_f4.npy")).to_vector<float>() ==
            v1_f4_values().to_vector<float>());
    REQUIRE(tide::io::read_npy(golden("v3_f8.npy")).to_vector<double>() ==
            v1_f8_values().to_vector<double>());
  }
}

TEST_CASE("npy: Tide writes the same bytes as NumPy", "[io][npy]") {
  // NumPy's np.save output is the reference: identical bytes means NumPy
  // reads Tide's files exactly as its own.
  TempDir dir;
  struct Case {
    const char* golden;
    Tensor tensor;
    int version;
  };
  std::vector<Case> cases = {
      {"v1_f4.npy", v1_f4_values(), 0},
      {"v1_f8.npy", v1_f8_values(), 0},
      {"v1_i8.npy", v1_i8_values(), 0},
      {"v1_b1.npy", v1_b1_values(), 0},
      {"v1_scalar_f8.npy", tide::scalar(2.25, {.dtype = DType::Float64}), 0},
      {"v1_empty_f4.npy", tide::zeros({0, 3}), 0},
      {"v2_f4.npy", v1_f4_values(), 2},
      {"v3_f8.npy", v1_f8_values(), 3},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.golden) {
      auto path = dir / c.golden;
      tide::io::write_npy(path, c.tensor, {.version = c.version});
      REQUIRE(tide::test::read_bytes(path) == tide::test::read_bytes(golden(c.golden)));
    }
  }
}

TEST_CASE("npy: round trips through every version, dtype and layout", "[io][npy]") {
  TempDir dir;
  Tensor base =
      tide::from_vector(std::vector<double>{1.5, -2.25, 1e-300, 3e300, 0.0, -0.0}, Shape{2, 3});
  std::vector<Tensor> tensors = {
      base,
      tide::kernels::to_dtype(base, DType::Float32),
      tide::from_vector(std::vector<int64_t>{INT64_MIN, -1, 0, INT64_MAX}),
      tide::from_vector(std::vector<bool>{true, false, true}),
      tide::kernels::transpose(base, 0, 1),  // non-contiguous: written in logical order
      tide::scalar(7, {.dtype = DType::Int64}),
      tide::zeros({2, 0, 3}, {.dtype = DType::Float64}),
      tide::ones({1, 1, 1, 1, 1, 1, 1, 2}),  // 8 dims, Tide's maximum
  };
  for (int version : {1, 2, 3}) {
    for (size_t k = 0; k < tensors.size(); ++k) {
      const Tensor& t = tensors[k];
      INFO("version " << version << ", tensor " << k << ": " << t.describe());
      auto path = dir / "t.npy";
      tide::io::write_npy(path, t, {.version = version});
      Tensor back = tide::io::read_npy(path);
      REQUIRE(back.dtype() == t.dtype());
      REQUIRE(back.shape() == t.shape());
      REQUIRE(back.to_vector<double>() == t.to_vector<double>());
      // The data starts at a multiple of 64 bytes, like NumPy's files.
      std::string bytes = tide::test::read_bytes(path);
      int64_t nbytes = t.numel() * static_cast<int64_t>(tide::dtype_size(t.dtype()));
      REQUIRE((bytes.size() - static_cast<size_t>(nbytes)) % 64 == 0);
      REQUIRE(static_cast<int>(bytes[6]) == version);
    }
  }
  REQUIRE(dir.entries() == std::vector<std::string>{"t.npy"});
}

TEST_CASE("npy: the header parser accepts every spelling of a valid literal", "[io][npy]") {
  std::string data = raw_bytes(std::vector<float>{1, 2, 3, 4, 5, 6});
  for (const std::string& dict : {
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
           std::string("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}"),  // any order
           std::string("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}"),
           std::string("{ 'descr':'<f4','fortran_order':False,'shape':( 2 , 3 , ) }"),
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"),  // Py2
       }) {
    INFO(dict);
    Tensor t = tide::io::parse_npy(npy_file(dict, data));
    REQUIRE(t.shape() == Shape{2, 3});
    REQUIRE(t.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  }
  // Fortran order: the same bytes mean the transpose.
  Tensor f = tide::io::parse_npy(
      npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data));
  REQUIRE(f.to_vector<float>() == std::vector<float>{1, 3, 5, 2, 4, 6});
  // A 1-D Fortran array is the same as a C one.
  Tensor f1 = tide::io::parse_npy(
      npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }", data));
  REQUIRE(f1.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  // Bool bytes other than 0 and 1 become true.
  Tensor b = tide::io::parse_npy(npy_file(
      "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\x00\x01\x07", 3)));
  REQUIRE(b.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1});
}

// ===========================================================================
// Bad files
// ===========================================================================

TEST_CASE("npy: every malformed file is refused with a precise message", "[io][npy][corpus]") {
  const std::vector<tide::test::CorpusCase> cases = {
      {"empty_file", {"file has 0 bytes, too short"}},
      {"truncated_magic", {"file has 4 bytes"}},
      {"bad_magic", {"not an .npy file"}},
      {"not_npy_text", {"not an .npy file"}},
      {"version_1_1", {"unsupported .npy format version 1.1"}},
      {"version_4_0", {"unsupported .npy format version 4.0"}},
      {"header_length_past_end_of_file", {"header length 60000 runs past the end of the file"}},
      {"header_length_4GB_v2", {"header length 4294967295", "exceeds the limit"}},
      {"header_length_field_truncated_v2",
       {"too short for the 4-byte header length of version "
        "2.0"}},
      {"header_not_dict", {"unexpected character '[', expected '{'", "at file byte 10"}},
      {"header_missing_shape", {"missing key 'shape'"}},
      {"header_missing_descr", {"missing key 'descr'"}},
      {"header_extra_key", {"unexpected key 'x'"}},
      {"header_duplicate_key", {"key 'descr' appears twice"}},
      {"header_code_injection", {"unexpected character '_', expected a quoted string"}},
      {"header_unterminated_string", {"unterminated string"}},
      {"header_trailing_garbage", {"unexpected text after the closing '}'"}},
      {"header_non_ascii_byte", {"non-ASCII byte 0xe9"}},
      {"fortran_order_not_bool", {"expected True or False for 'fortran_order'"}},
      {"shape_not_tuple", {"shape (6) is a parenthesised integer, not a tuple"}},
      {"shape_list_not_tuple", {"unexpected character '[', expected '('"}},
      {"shape_negative", {"negative shape entry"}},
      {"shape_fractional", {"unexpected character '.', expected ',' or ')'"}},
      {"shape_entry_above_int64", {"shape entry does not fit in int64"}},
      {"shape_element_count_overflows",
       {"shape [4294967296, 4294967296] has more elements than fit in int64"}},
      {"shape_byte_count_overflows", {"needs more bytes than fit in int64"}},
      {"shape_terabytes_in_tiny_file",
       {"truncated data", "needs 1099511627776 bytes (file bytes 128..1099511627904)"}},
      {"shape_nine_dims", {"shape has 9 dimensions; Tide supports at most 8"}},
      {"big_endian_f4", {"big-endian data ('>f4') is not supported"}},
      {"big_endian_i8", {"big-endian data ('>i8') is not supported"}},
      {"unsupported_dtype_complex64", {"unsupported dtype '<c8'"}},
      {"unsupported_dtype_uint16", {"unsupported dtype '<u2'"}},
      {"unsupported_dtype_object_pickle", {"unsupported dtype '|O'"}},
      {"structured_dtype", {"structured (record) dtypes are not supported"}},
      {"truncated_data",
       {"truncated data", "needs 24 bytes (file bytes 128..152)", "ends at byte 147"}},
      {"data_length_mismatch_extra_bytes",
       {"data length mismatch", "needs 24 bytes", "28 bytes follow the header"}},
  };
  tide::test::check_bad_corpus(
      "npy", ".npy", "read_npy", cases,
      [](const std::filesystem::path& path) { return tide::io::read_npy(path); });
}

TEST_CASE("npy: bad writes throw tide::Error and leave nothing behind", "[io][npy]") {
  TempDir dir;
  REQUIRE_THROWS_WITH(tide::io::write_npy(dir / "x.npy", Tensor()),
                      Catch::Contains("write_npy") && Catch::Contains("undefined"));
  REQUIRE_THROWS_WITH(tide::io::write_npy(dir / "x.npy", tide::ones({2}), {.version = 4}),
                      Catch::Contains("format version must be 1, 2 or 3"));
  REQUIRE_THROWS_WITH(tide::io::write_npy(dir / "missing" / "x.npy", tide::ones({2})),
                      Catch::Contains("write_npy: cannot write"));
  REQUIRE_THROWS_WITH(tide::io::read_npy(dir / "x.npy"), Catch::Contains("read_npy: cannot open"));
  REQUIRE(dir.entries().empty());
}
