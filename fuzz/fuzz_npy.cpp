// libFuzzer target: tide::io::parse_npy on arbitrary bytes.
//
// A malformed file must give a tide::Error and nothing else: any other
// exception, a sanitizer report, a leak, or a tensor larger than the file
// could hold ('<f2' and '<i4' are widened: at most twice the file's bytes) is
// a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "nn/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const tide::Tensor tensor = tide::io::parse_npy(bytes, "fuzz.npy");
    tide::fuzz::check_size(tensor, size, 2, "parse_npy");
  } catch (const tide::Error&) {
    // Expected for bad input.
  }
  return 0;
}
