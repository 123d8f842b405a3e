// The op conformance suite: one set of cases, run against any backend.
//
// Every case draws its inputs on the CPU in float64 (rounded to values that
// float32 holds exactly, so both dtypes see the same numbers), computes the
// reference on the CPU backend in float64, then runs the op on the device
// under test (`--device cpu|cuda`, see main.cpp) in float32 and float64, with
// the inputs laid out contiguously, transposed, strided or broadcast there,
// copies the result back and compares it with the reference under the op's
// tolerance. On the CPU, where the float64 run *is* the reference, the cases
// also check the float64 reference against an independent loop or closed form
// where that is cheap.
//
// Failures are reported with everything needed to reproduce them without a
// debugger: op, dtype, shapes, layout, the worst element (index, value,
// expected, tolerance) and how many elements failed.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/kernels.h"  // kernels::unary/binary reach every backend op
#include "tide.h"

namespace tide::conformance {

// --- the device under test -----------------------------------------------------

Device device();
void set_device(Device device);
inline bool on_cpu() {
  return device().is_cpu();
}
// A full run (always on a GPU; on the CPU with --full) takes inputs of more
// than 64k elements in every layout. The default CPU run (conformance_cpu, in
// CI) takes them contiguous only, which keeps it to seconds.
bool full_run();
void set_full_run(bool full);
inline bool is_large(const Shape& shape) {
  return shape.numel() > 65536;
}
// Comparisons made so far (printed by main.cpp at the end).
int64_t& comparison_count();

// --- tolerances ----------------------------------------------------------------

// |actual - expected| <= atol + rtol * s, where s is |expected| elementwise, or
// max |expected| over the whole tensor when `normwise` (for results that are
// sums of many terms, where a small element can carry the error of a large
// one), plus `scale_factor * scale[i]` when a scale tensor is given (matmul:
// the elementwise bound u * K * (|A| @ |B|)).
struct Tol {
  double atol = 0;
  double rtol = 0;
  bool normwise = false;
};
// A tolerance for each floating dtype.
struct Tols {
  Tol f32;
  Tol f64;
  Tol for_dtype(DType dtype) const { return dtype == DType::Float64 ? f64 : f32; }
};

// Unit roundoffs: the relative error of one correctly rounded operation.
inline constexpr double kU32 = 5.9604644775390625e-8;   // 2^-24
inline constexpr double kU64 = 1.1102230246251565e-16;  // 2^-53
inline constexpr Tol kExact{0, 0};

// --- inputs ----------------------------------------------------------------------

// Where random inputs come from: uniform on [lo, hi], optionally kept away from
// zero (|x| >= min_abs, random sign), or integers in [lo, hi] (`discrete`, for
// ties in comparisons and arg max/min and for int64/bool inputs).
struct Domain {
  double lo = -3, hi = 3;
  double min_abs = 0;
  bool discrete = false;
};

// How an input is laid out on the device. Each has the same logical values.
enum class Layout {
  Contiguous,
  Transposed,  // the last two dims swapped in memory (rank >= 2)
  Strided,     // every second element of a larger buffer, offset 1 (rank >= 1)
  Broadcast,   // dim 0 expanded from size 1 with stride 0 (rank >= 2, dim 0 > 1)
};
const char* layout_name(Layout layout);
inline bool run_layout(const Shape& shape, Layout layout) {
  return !is_large(shape) || full_run() || layout == Layout::Contiguous;
}
// The layouts that apply to `shape` and run in this run.
std::vector<Layout> layouts_for(const Shape& shape);
// Whether `layout` makes sense for `shape` (falls back to no case if not).
bool layout_applies(Layout layout, const Shape& shape);
inline const std::vector<Layout>& all_layouts() {
  static const std::vector<Layout> layouts = {Layout::Contiguous, Layout::Transposed,
                                              Layout::Strided, Layout::Broadcast};
  return layouts;
}

// A random float64 CPU tensor of `shape` whose values float32 holds exactly.
// With Layout::Broadcast the values are constant along dim 0 (so the input can
// be a stride-0 expansion of one row).
Tensor random_values(const Shape& shape, const Domain& domain, Generator& gen,
                     Layout layout = Layout::Contiguous);
// The device tensor of dtype `dtype` holding `values` (a float64 CPU tensor)
// in `layout`. With requires_grad, the returned view is differentiable (a
// non-leaf whose gradient grad() can ask for).
Tensor on_device(const Tensor& values, DType dtype, Layout layout, bool requires_grad = false);
// A CPU float64 leaf with the same values, for the reference.
Tensor reference_input(const Tensor& values, bool requires_grad = false);

// --- checks ------------------------------------------------------------------------

// What a check is about, printed with every failure.
std::string describe_case(const std::string& op, DType dtype, const std::vector<Shape>& shapes,
                          const std::string& detail = "");

// Checks that `actual` (any device, any dtype) has `expected_dtype`, the shape
// of `expected` (a CPU float64 reference), lives on the device under test, and
// matches it within `tol` (NaN matches NaN, infinities must be equal).
void check_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                 DType expected_dtype, Tol tol, const Tensor& scale = {}, double scale_factor = 0);
// Bit-for-bit equality of two tensors of the same dtype (random numbers).
void check_identical(const std::string& what, const Tensor& actual, const Tensor& expected);
// A float64 loop reference given as host values: compares `reference` (the
// CPU float64 result) with them; only meaningful on the CPU.
void check_against_loop(const std::string& what, const Tensor& reference,
                        const std::vector<double>& loop_values, Tol tol);

// --- the case runner ----------------------------------------------------------------

// One input of a case.
struct Input {
  Tensor values;  // on the CPU: float64 when it follows the dtype, else its own dtype
  Layout layout = Layout::Contiguous;
  bool follows_dtype = true;   // converted to the dtype under test (false: indices, masks)
  bool differentiable = true;  // its gradient is checked (when it follows a float dtype)
};
using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// What to compare and how closely.
struct Check {
  std::string op;         // the op's name, for messages
  std::string detail;     // parameters worth printing (dims, keepdim, epilogue, ...)
  Tol tol;                // forward
  DType result_dtype;     // the dtype the device result must have
  bool backward = false;  // also compare the gradients of the inputs
  Tol backward_tol;       // for the gradients
  Tensor scale;           // optional elementwise error scale (see Tol)
  double scale_factor = 0;
};

// Runs `op` on the CPU in float64 (the reference) and on the device under test
// with the inputs converted to `dtype` and laid out as asked, and compares the
// results (and, with check.backward, the vector-Jacobian products for a random
// cotangent). Returns the float64 reference output.
Tensor run_case(const Op& op, const std::vector<Input>& inputs, DType dtype, const Check& check);

// Row-major values of any tensor, converted to double (copies from any device).
std::vector<double> host_values(const Tensor& x);

// The floating dtypes every float case runs in.
inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> dtypes = {DType::Float32, DType::Float64};
  return dtypes;
}

// Multi-index of flat position `flat` in a row-major `shape`.
std::vector<int64_t> unravel(int64_t flat, const Shape& shape);
// Flat row-major position of `index` in `shape`.
int64_t ravel(const std::vector<int64_t>& index, const Shape& shape);

}  // namespace tide::conformance
