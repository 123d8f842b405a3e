// A reader for numeric CSV data sets: every cell a number, every row the same
// length, an optional header row of column names.
//
//   x,y          <- header (detected, or forced with CsvHeader::Yes/No)
//   0.5,-1.25
//   1e-3,2
//
// gives a float32 (or float64) tensor of shape [rows, cols]. Problems are
// reported with their line and column: ragged rows, cells that are not
// numbers, empty cells, and NaN/Inf cells (refused unless allow_nonfinite),
// as well as a file with no data rows. Blank lines are skipped; CRLF line
// endings are accepted.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace tide::io {

enum class CsvHeader {
  Auto,  // the first row is a header if any of its non-empty cells is not a number
  Yes,   // the first row is always a header
  No,    // every row is data
};

struct CsvOptions {
  char delimiter = ',';
  CsvHeader header = CsvHeader::Auto;
  DType dtype = DType::Float32;  // Float32 or Float64
  // NaN and infinities are almost always a data-preparation bug, so they are
  // refused unless asked for.
  bool allow_nonfinite = false;
};

struct CsvData {
  Tensor values;                          // [rows, cols], on the CPU
  std::vector<std::string> column_names;  // empty when there is no header
};

CsvData read_csv(const std::filesystem::path& path, const CsvOptions& options = {});
// The same from text in memory; `name` labels error messages.
CsvData parse_csv(std::string_view text, const CsvOptions& options = {},
                  const std::string& name = "<memory>");

}  // namespace tide::io
