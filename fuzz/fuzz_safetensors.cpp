// libFuzzer target: tide::io::parse_safetensors on arbitrary bytes.
//
// A malformed file must give a tide::Error and nothing else: any other
// exception, a sanitizer report, a leak, or tensors larger than the file could
// hold (F16/BF16 are widened to float32: at most twice the file's bytes) is a
// finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const tide::io::SafetensorsFile file = tide::io::parse_safetensors(bytes, "fuzz.safetensors");
    for (const auto& [name, tensor] : file.tensors) {
      tide::fuzz::check_size(tensor, size, 2, "parse_safetensors");
    }
  } catch (const tide::Error&) {
    // Expected for bad input.
  }
  return 0;
}
