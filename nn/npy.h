// .npy: NumPy's single-array file format
// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
//
// Layout of a file:
//   bytes [0, 6)   the magic string "\x93NUMPY"
//   bytes 6, 7     format version major, minor: 1.0, 2.0 or 3.0
//   next 2 or 4    H, the header length, little-endian (2 bytes in 1.0, 4 after)
//   next H bytes   a Python dict literal, padded with spaces and ending in '\n':
//                    {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//                  (latin-1 in 1.0 and 2.0, UTF-8 in 3.0)
//   the rest       the elements, exactly numel * itemsize bytes
//
// The header is parsed by a small strict parser for exactly this kind of
// literal (never evaluated). Supported element types: '<f4', '<f8', '<i8',
// '|b1', plus '<f2' (read as float32) and '<i4' (read as int64). Big-endian
// data is refused. Fortran-order arrays are read correctly (transposed into
// Tide's row-major layout); Tide always writes C order.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace tide::io {

// Reads an array into a new contiguous CPU tensor.
Tensor read_npy(const std::filesystem::path& path);
// The same from bytes in memory; `name` labels error messages. For tests and
// fuzzers.
Tensor parse_npy(std::string_view bytes, const std::string& name = "<memory>");

struct NpyWriteOptions {
  // Format version to write: 1, 2 or 3; 0 picks 1.0 (2.0 only if the header
  // would not fit in 1.0's 2-byte length, which never happens for Tide's
  // shapes). NumPy reads all three.
  int version = 0;
};

// Writes a tensor (any device, any strides) atomically, in C order.
void write_npy(const std::filesystem::path& path, const Tensor& tensor,
               const NpyWriteOptions& options = {});

}  // namespace tide::io
