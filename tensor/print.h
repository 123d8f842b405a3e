// Printing tensors: fmt::format("{}", t), std::cout << t, tide::to_string(t).
//
// The format follows PyTorch's repr, with the metadata always spelled out:
//
//   tensor([[ 1.0000, -2.0000],
//           [ 3.0000,  4.0000]], dtype=float32, shape=[2, 2])
//   tensor([ true, false], dtype=bool, shape=[2])
//   tensor(7, dtype=int64, shape=[])
//   tensor([], dtype=float32, shape=[0, 3])
//   tensor([0.5000, 1.5000], dtype=float64, shape=[2], requires_grad=true)
//   tensor([1.0000, 3.0000], dtype=float32, shape=[2], grad_fn=<mul>)
//
// Values:
//   - Nested brackets, one level per dim. Rows of the last dim are separated by
//     ",\n" and blocks of higher dims by one extra blank line per extra dim; the
//     continuation lines are indented to sit under the first element.
//   - Every element is right-aligned to the width of the widest printed one.
//   - Floats use fixed notation with `precision` decimals ("1.0000"), or
//     scientific notation ("1.0000e+08") for all elements when the largest
//     finite |value| is >= 1e8 or the smallest non-zero finite |value| is
//     < 1e-4. Non-finite values print as nan, inf and -inf.
//   - int64 prints in decimal, bool as true / false.
//   - A long row is wrapped before an element that would run past `line_width`.
// Summaries: a tensor with more than `threshold` elements shows only the first
// and last `edge_items` entries of every dim longer than 2 * edge_items, with
// "..." standing for the rest (a "..." element in a row, a "...," line for an
// outer dim).
// Metadata: ", dtype=<dtype>, shape=<shape>" always; ", device=cuda:0" when not
// on the CPU; ", grad_fn=<op name>" for a tensor produced by a recorded op, or
// ", requires_grad=true" for a leaf that requires grad.
// Any layout prints the same (non-contiguous views are read through their
// strides), and tensors on other devices are copied to the host first. An
// undefined Tensor() prints as "tensor(undefined)".
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <iosfwd>
#include <string>

#include "tensor/tensor.h"

namespace tide {

struct PrintOptions {
  int precision = 4;         // decimals of floating-point values
  int64_t threshold = 1000;  // summarise tensors with more elements than this
  int64_t edge_items = 3;    // entries kept at each end of a summarised dim
  int64_t line_width = 80;   // wrap rows longer than this many characters
};

std::string to_string(const Tensor& t, const PrintOptions& options = {});
std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace tide

template <>
struct fmt::formatter<tide::Tensor> : fmt::formatter<std::string> {
  auto format(const tide::Tensor& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(tide::to_string(t), ctx);
  }
};
