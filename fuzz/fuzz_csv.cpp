// libFuzzer target: tide::io::parse_csv on arbitrary text.
//
// Each input is parsed twice: with the default options (what the seed files
// in tests/data/corpus/csv are written for), then with other options picked
// from the input's length (delimiter, header mode, dtype, NaN/Inf allowed), so
// every option is fuzzed without spending input bytes on them. A malformed
// table must give a tide::Error and nothing else; a table of more values than
// the text has bytes is a finding too (every cell takes at least one byte, so
// even float64 holds at most 8 bytes per input byte).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "nn/csv.h"

namespace {

void parse(std::string_view text, const tide::io::CsvOptions& options) {
  try {
    const tide::io::CsvData data = tide::io::parse_csv(text, options, "fuzz.csv");
    tide::fuzz::check_size(data.values, text.size(), 8, "parse_csv");
  } catch (const tide::Error&) {
    // Expected for bad input.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  parse(text, {});

  constexpr char kDelimiters[] = {',', ';', '\t', ' '};
  constexpr tide::io::CsvHeader kHeaders[] = {tide::io::CsvHeader::Auto, tide::io::CsvHeader::Yes,
                                              tide::io::CsvHeader::No};
  tide::io::CsvOptions options;
  options.delimiter = kDelimiters[size % 4];
  options.header = kHeaders[(size / 4) % 3];
  options.dtype = (size / 12) % 2 ? tide::DType::Float64 : tide::DType::Float32;
  options.allow_nonfinite = (size / 24) % 2 == 1;
  parse(text, options);
  return 0;
}
