// Printing works in two passes over the elements that will be shown: the first
// turns every shown element into text (so that the notation and the column
// width can be chosen from all of them), the second lays the texts out in
// nested brackets.
#include "tensor/print.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <vector>

// Only Node::name(), an inline accessor, is used from the autograd layer: the
// tensor library takes no link dependency on it.
#include "autograd/node.h"
#include "tensor/kernels.h"

namespace tide {

namespace {

constexpr int64_t kEllipsis = -1;  // marks the "..." entry in a list of shown indices

class Printer {
 public:
  Printer(const Tensor& host, const PrintOptions& options) : t_(host), options_(options) {
    bool summarize = t_.numel() > options_.threshold;
    for (int d = 0; d < t_.dim(); ++d) {
      int64_t n = t_.shape()[d], edge = options_.edge_items;
      std::vector<int64_t> indices;
      if (summarize && n > 2 * edge) {
        for (int64_t i = 0; i < edge; ++i) indices.push_back(i);
        indices.push_back(kEllipsis);
        for (int64_t i = n - edge; i < n; ++i) indices.push_back(i);
      } else {
        for (int64_t i = 0; i < n; ++i) indices.push_back(i);
      }
      shown_.push_back(std::move(indices));
    }
  }

  std::string values() {
    dispatch_dtype(t_.dtype(), [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> values;
      collect<T>(0, t_.offset(), values);
      cells_ = format_cells(values);
    });
    for (const std::string& cell : cells_) width_ = std::max(width_, cell.size());
    if (t_.dim() == 0) return cells_[0];
    std::string out;
    size_t next = 0;
    layout(0, next, out);
    return out;
  }

 private:
  // Pass 1: the shown elements in row-major order, read through the strides.
  template <typename T>
  void collect(int d, int64_t offset, std::vector<T>& values) const {
    if (d == t_.dim()) {
      values.push_back(static_cast<const T*>(t_.storage()->data())[offset]);
      return;
    }
    for (int64_t i : shown_[d])
      if (i != kEllipsis) collect<T>(d + 1, offset + i * t_.strides()[d], values);
  }

  std::vector<std::string> format_cells(const std::vector<bool>& values) const {
    std::vector<std::string> cells;
    for (bool v : values) cells.push_back(v ? "true" : "false");
    return cells;
  }

  std::vector<std::string> format_cells(const std::vector<int64_t>& values) const {
    std::vector<std::string> cells;
    for (int64_t v : values) cells.push_back(fmt::format("{}", v));
    return cells;
  }

  template <typename T>
  std::vector<std::string> format_cells(const std::vector<T>& values) const {
    // One notation for the whole tensor, so that columns line up.
    double max_abs = 0, min_nonzero_abs = INFINITY;
    for (T v : values) {
      double a = std::abs(static_cast<double>(v));
      if (!std::isfinite(a)) continue;
      max_abs = std::max(max_abs, a);
      if (a > 0) min_nonzero_abs = std::min(min_nonzero_abs, a);
    }
    bool scientific = max_abs >= 1e8 || min_nonzero_abs < 1e-4;
    std::vector<std::string> cells;
    for (T v : values) {
      double x = static_cast<double>(v);
      if (std::isnan(x)) {
        cells.push_back("nan");
      } else if (std::isinf(x)) {
        cells.push_back(x > 0 ? "inf" : "-inf");
      } else if (scientific) {
        cells.push_back(fmt::format("{:.{}e}", x, options_.precision));
      } else {
        cells.push_back(fmt::format("{:.{}f}", x, options_.precision));
      }
    }
    return cells;
  }

  std::string padded(const std::string& cell) const {
    return std::string(width_ - std::min(width_, cell.size()), ' ') + cell;
  }

  // Pass 2: the brackets of dim d. "tensor(" is 7 characters, so the '[' of
  // dim d sits in column 7 + d and its elements start in column 8 + d.
  void layout(int d, size_t& next, std::string& out) const {
    const size_t indent = 8 + static_cast<size_t>(d);
    const std::vector<int64_t>& indices = shown_[d];
    out += '[';
    if (d == t_.dim() - 1) {
      // A row of elements, wrapped before an element that would run past
      // line_width (counting the ',' or ']' that follows it).
      size_t column = indent;
      for (size_t k = 0; k < indices.size(); ++k) {
        std::string text = indices[k] == kEllipsis ? "..." : padded(cells_[next++]);
        if (k > 0) {
          bool fits = column + 2 + text.size() + 1 <= static_cast<size_t>(options_.line_width);
          out += fits ? ", " : ",\n" + std::string(indent, ' ');
          column = fits ? column + 2 : indent;
        }
        out += text;
        column += text.size();
      }
    } else {
      // Blocks of dim d + 1, one blank line between them per extra dim.
      std::string separator =
          "," + std::string(static_cast<size_t>(t_.dim() - d - 1), '\n') + std::string(indent, ' ');
      for (size_t k = 0; k < indices.size(); ++k) {
        if (k > 0) out += separator;
        if (indices[k] == kEllipsis) {
          out += "...";
        } else {
          layout(d + 1, next, out);
        }
      }
    }
    out += ']';
  }

  const Tensor& t_;
  const PrintOptions& options_;
  std::vector<std::vector<int64_t>> shown_;  // per dim: the indices shown, or kEllipsis
  std::vector<std::string> cells_;           // shown elements as text, row-major
  size_t width_ = 0;
};

}  // namespace

std::string to_string(const Tensor& t, const PrintOptions& options) {
  if (!t.defined()) return "tensor(undefined)";
  std::string body;
  if (t.numel() == 0) {
    body = "[]";
  } else {
    // Other devices: read a host copy (to_device makes it contiguous).
    Tensor host = t.device().is_cpu() ? t : kernels::to_device(t, Device::cpu());
    body = Printer(host, options).values();
  }
  std::string out = fmt::format("tensor({}, dtype={}, shape={}", body, t.dtype(), t.shape());
  if (!t.device().is_cpu()) out += fmt::format(", device={}", t.device());
  if (t.grad_fn()) {
    out += fmt::format(", grad_fn=<{}>", t.grad_fn()->name());
  } else if (t.requires_grad()) {
    out += ", requires_grad=true";
  }
  out += ')';
  return out;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << to_string(t);
}

}  // namespace tide
