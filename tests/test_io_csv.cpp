// The numeric CSV reader (nn/csv.h): header detection, delimiters, correct
// rounding, line and column numbers in every error, and the malformed files
// of tests/data/corpus/csv/.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/csv.h"
#include "test_io_util.h"
#include "tide.h"

using tide::DType;
using tide::Shape;
using tide::io::CsvHeader;
using tide::io::CsvOptions;
using tide::io::parse_csv;

TEST_CASE("csv: reads a numeric table with a detected header", "[io][csv]") {
  auto data = parse_csv("x,y\n0.5,-1.25\n1e-3,+2\n");
  REQUIRE(data.column_names == std::vector<std::string>{"x", "y"});
  REQUIRE(data.values.dtype() == DType::Float32);
  REQUIRE(data.values.shape() == Shape{2, 2});
  REQUIRE(data.values.to_vector<float>() == std::vector<float>{0.5f, -1.25f, 1e-3f, 2.f});

  SECTION("no header when the first row is numeric") {
    auto d = parse_csv("1,2,3\n4,5,6\n");
    REQUIRE(d.column_names.empty());
    REQUIRE(d.values.shape() == Shape{2, 3});
  }
  SECTION("forced header and forced no header") {
    auto d = parse_csv("1,2\n3,4\n", {.header = CsvHeader::Yes});
    REQUIRE(d.column_names == std::vector<std::string>{"1", "2"});
    REQUIRE(d.values.to_vector<float>() == std::vector<float>{3, 4});
    REQUIRE_THROWS_WITH(parse_csv("x,y\n1,2\n", {.header = CsvHeader::No}),
                        Catch::Contains("line 1, column 1: 'x' is not a number"));
  }
  SECTION("quoted header names lose their quotes") {
    auto d = parse_csv("\"time\",\"value\"\n0,1\n");
    REQUIRE(d.column_names == std::vector<std::string>{"time", "value"});
  }
}

TEST_CASE("csv: line endings, blank lines, spaces and delimiters", "[io][csv]") {
  auto crlf = parse_csv("a, b\r\n 1 , 2\r\n\r\n3,\t4\r\n\n");
  REQUIRE(crlf.column_names == std::vector<std::string>{"a", "b"});
  REQUIRE(crlf.values.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  auto semicolon = parse_csv("1;2\n3;4", {.delimiter = ';'});  // no final newline
  REQUIRE(semicolon.values.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  auto tabs = parse_csv("1\t2\n3\t4\n", {.delimiter = '\t'});
  REQUIRE(tabs.values.shape() == Shape{2, 2});
  auto one_column = parse_csv("5\n6\n7\n");
  REQUIRE(one_column.values.shape() == Shape{3, 1});
}

TEST_CASE("csv: numbers are rounded once, to the requested dtype", "[io][csv]") {
  auto d64 = parse_csv("0.1,1e-310,-2.5e300\n", {.dtype = DType::Float64});
  REQUIRE(d64.values.dtype() == DType::Float64);
  REQUIRE(d64.values.to_vector<double>() == std::vector<double>{0.1, 1e-310, -2.5e300});
  // Just above the midpoint between 1 and the next float: the correctly
  // rounded float is the upper neighbour, while going through double first
  // lands exactly on the midpoint and ties down to 1.
  auto d32 = parse_csv("1.00000005960464477539062501,0.1\n");
  std::vector<float> v = d32.values.to_vector<float>();
  REQUIRE(v[0] == std::nextafter(1.0f, 2.0f));
  REQUIRE(v[1] == 0.1f);
  // Underflow gives zero (or a subnormal); overflow is an error.
  auto tiny = parse_csv("1e-50,-1e-50\n");
  REQUIRE(tiny.values.to_vector<float>()[0] == 0.0f);
  REQUIRE(std::signbit(tiny.values.to_vector<float>()[1]));
  REQUIRE_THROWS_WITH(parse_csv("1e39\n"), Catch::Contains("'1e39' is out of range for float32"));
  REQUIRE(parse_csv("1e39\n", {.dtype = DType::Float64}).values.item() == 1e39);
}

TEST_CASE("csv: NaN and infinities only when allowed", "[io][csv]") {
  REQUIRE_THROWS_WITH(parse_csv("1,nan\n"),
                      Catch::Contains("line 1, column 2: non-finite value 'nan'") &&
                          Catch::Contains("allow_nonfinite"));
  auto d = parse_csv("nan,inf,-inf\n", {.allow_nonfinite = true});
  std::vector<float> v = d.values.to_vector<float>();
  REQUIRE(std::isnan(v[0]));
  REQUIRE(v[1] == std::numeric_limits<float>::infinity());
  REQUIRE(v[2] == -std::numeric_limits<float>::infinity());
}

TEST_CASE("csv: bad options and files", "[io][csv]") {
  REQUIRE_THROWS_WITH(parse_csv("1\n", {.dtype = DType::Int64}),
                      Catch::Contains("dtype must be float32 or float64, got int64"));
  tide::test::TempDir dir;
  REQUIRE_THROWS_WITH(tide::io::read_csv(dir / "none.csv"),
                      Catch::Contains("read_csv: cannot open") && Catch::Contains("none.csv"));
  tide::test::write_bytes(dir / "ok.csv", "x,y\n1,2\n3,4\n");
  auto d = tide::io::read_csv(dir / "ok.csv", {.dtype = DType::Float64});
  REQUIRE(d.column_names == std::vector<std::string>{"x", "y"});
  REQUIRE(d.values.to_vector<double>() == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("csv: every malformed file is refused with its line and column", "[io][csv][corpus]") {
  const std::vector<tide::test::CorpusCase> cases = {
      {"empty_file", {"the file is empty"}},
      {"blank_lines_only", {"the file is empty"}},
      {"header_only", {"has a header (line 1) but no data rows"}},
      {"ragged_row", {"line 3 has 3 cells, expected 2 (as on line 1)"}},
      {"short_row", {"line 2 has 2 cells, expected 3 (as on line 1)"}},
      {"non_numeric_cell", {"line 2, column 2: 'abc' is not a number"}},
      {"number_with_unit", {"line 2, column 2: '4kg' is not a number"}},
      {"nan_cell", {"line 3, column 2: non-finite value 'nan'"}},
      {"inf_cell", {"line 2, column 1: non-finite value '-inf'"}},
      {"empty_cell", {"line 1, column 2: empty cell"}},
      {"trailing_delimiter", {"line 1, column 3: empty cell"}},
      {"hex_number", {"line 2, column 2: '0x10' is not a number"}},
      {"float32_overflow", {"line 2, column 2: '1e39' is out of range for float32"}},
      {"two_header_rows", {"line 2, column 1: 'c' is not a number"}},
      {"semicolon_separated", {"line 2, column 1: '3;4' is not a number"}},
  };
  tide::test::check_bad_corpus(
      "csv", ".csv", "read_csv", cases,
      [](const std::filesystem::path& path) { return tide::io::read_csv(path); });
}
