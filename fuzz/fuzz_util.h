// Shared by the fuzz targets: the check that a reader never produced more data
// than its input could describe, and a crash that libFuzzer records.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tensor/tensor.h"

namespace tide::fuzz {

// A tensor read from `input_bytes` bytes holds at most `max_bytes_per_input_byte`
// bytes of data per input byte (e.g. 2 for F16 read as float32). Anything more
// means the reader believed a header over the file's own size: abort, which
// libFuzzer reports as a crash and saves the input.
inline void check_size(const Tensor& t, size_t input_bytes, size_t max_bytes_per_input_byte,
                       const char* what) {
  const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
  if (bytes > input_bytes * max_bytes_per_input_byte) {
    std::fprintf(stderr, "%s: a %zu-byte input produced %zu bytes of tensor data\n", what,
                 input_bytes, bytes);
    std::abort();
  }
}

}  // namespace tide::fuzz
