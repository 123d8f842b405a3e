#include "nn/csv.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "nn/atomic_file.h"
#include "tensor/creation.h"

namespace tide::io {

namespace {

// One line of the file, split into cells.
struct Row {
  int64_t line = 0;  // 1-based
  std::vector<std::string_view> cells;
};

// Spaces and tabs around a cell are ignored (unless one of them is the
// delimiter itself).
std::string_view trim(std::string_view s, char delimiter) {
  auto is_space = [&](char c) { return (c == ' ' || c == '\t') && c != delimiter; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<Row> split_rows(std::string_view text, char delimiter) {
  std::vector<Row> rows;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view content = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    if (trim(content, delimiter).empty() && content.find(delimiter) == std::string_view::npos)
      continue;  // a blank line
    Row row{line, {}};
    size_t start = 0;
    while (true) {
      size_t cut = content.find(delimiter, start);
      if (cut == std::string_view::npos) {
        row.cells.push_back(trim(content.substr(start), delimiter));
        break;
      }
      row.cells.push_back(trim(content.substr(start, cut - start), delimiter));
      start = cut + 1;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// Parses a whole cell as T (float or double, correctly rounded), accepting a
// leading '+'. Returns false if the cell is not entirely a number.
template <typename T>
bool parse_number(std::string_view cell, T& value, bool& out_of_range) {
  out_of_range = false;
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  if (cell.empty()) return false;
  const char* end = cell.data() + cell.size();
  auto [ptr, ec] = std::from_chars(cell.data(), end, value);
  if (ec == std::errc::result_out_of_range && ptr == end) {
    // Too large is an error; too small (1e-50 as float32) underflows to a
    // signed zero or a subnormal, as NumPy and every C library do.
    std::string copy(cell);
    long double wide = std::strtold(copy.c_str(), nullptr);
    if (std::fabs(wide) < 1) {
      value = static_cast<T>(wide);
      return true;
    }
    out_of_range = true;
    return true;
  }
  return ec == std::errc() && ptr == end;
}

template <typename T>
Tensor parse_values(const std::vector<Row>& rows, size_t first, size_t cols,
                    const CsvOptions& options, const std::string& where) {
  const int64_t nrows = static_cast<int64_t>(rows.size() - first);
  std::vector<T> values;
  values.reserve(static_cast<size_t>(nrows) * cols);
  for (size_t r = first; r < rows.size(); ++r) {
    const Row& row = rows[r];
    TIDE_CHECK(row.cells.size() == cols,
               "read_csv: '{}': line {} has {} cells, expected {} (as on line {})", where, row.line,
               row.cells.size(), cols, rows[0].line);
    for (size_t c = 0; c < cols; ++c) {
      std::string_view cell = row.cells[c];
      TIDE_CHECK(!cell.empty(), "read_csv: '{}': line {}, column {}: empty cell", where, row.line,
                 c + 1);
      T value{};
      bool out_of_range = false;
      TIDE_CHECK(parse_number(cell, value, out_of_range),
                 "read_csv: '{}': line {}, column {}: '{}' is not a number", where, row.line, c + 1,
                 cell);
      TIDE_CHECK(!out_of_range, "read_csv: '{}': line {}, column {}: '{}' is out of range for {}",
                 where, row.line, c + 1, cell, dtype_of<T>);
      TIDE_CHECK(options.allow_nonfinite || std::isfinite(value),
                 "read_csv: '{}': line {}, column {}: non-finite value '{}' (set "
                 "CsvOptions::allow_nonfinite to accept NaN and infinities)",
                 where, row.line, c + 1, cell);
      values.push_back(value);
    }
  }
  return from_vector(values, Shape{nrows, static_cast<int64_t>(cols)});
}

// Header names may be quoted ("x"); the quotes are not part of the name.
std::string unquote(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

}  // namespace

CsvData parse_csv(std::string_view text, const CsvOptions& options, const std::string& name) {
  TIDE_CHECK(options.dtype == DType::Float32 || options.dtype == DType::Float64,
             "read_csv: '{}': dtype must be float32 or float64, got {}", name, options.dtype);
  TIDE_CHECK(options.delimiter != '\n' && options.delimiter != '\r' && options.delimiter != '\0',
             "read_csv: '{}': invalid delimiter", name);
  std::vector<Row> rows = split_rows(text, options.delimiter);
  TIDE_CHECK(!rows.empty(), "read_csv: '{}': the file is empty (no rows)", name);

  bool has_header = options.header == CsvHeader::Yes;
  if (options.header == CsvHeader::Auto) {
    for (std::string_view cell : rows[0].cells) {
      double value;
      bool out_of_range;
      // An empty cell is a hole in a data row, not a column name.
      if (!cell.empty() && !parse_number(cell, value, out_of_range)) has_header = true;
    }
  }
  CsvData data;
  if (has_header) {
    for (std::string_view cell : rows[0].cells) data.column_names.push_back(unquote(cell));
  }
  const size_t first = has_header ? 1 : 0;
  TIDE_CHECK(rows.size() > first,
             "read_csv: '{}': the file has a header (line {}) but no data "
             "rows",
             name, rows[0].line);
  const size_t cols = rows[0].cells.size();
  data.values = options.dtype == DType::Float64
                    ? parse_values<double>(rows, first, cols, options, name)
                    : parse_values<float>(rows, first, cols, options, name);
  return data;
}

CsvData read_csv(const std::filesystem::path& path, const CsvOptions& options) {
  InputFile file(path, "read_csv");
  std::string text = file.read_string(0, file.size(), "the file");
  return parse_csv(text, options, path.string());
}

}  // namespace tide::io
