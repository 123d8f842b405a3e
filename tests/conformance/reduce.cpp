// Conformance of the reductions (sum, prod, max, min over any set of dims,
// with and without keepdim, and the composites built on them), arg max/min and
// cumsum, with their gradients.
#include <cmath>
#include <limits>

#include "conformance.h"

namespace tide::conformance {
namespace {

// --- tolerances (documented in README "Conformance suite") ------------------------
// A sum of n terms computed in float32 by any blocking (CPU: double
// accumulators; a GPU: float tree reductions) is off by at most about
// (block length + log2 n) u * sum |x|, so sums are checked against
// scale = sum |x| over the same dims: 1e-5 (170 u) of it in float32, 1e-13 in
// float64. Relative tolerances would be wrong here: a sum of random signs can
// be far smaller than the terms it cancels.
constexpr double kSumScale32 = 1e-5, kSumScale64 = 1e-13;
// The reduced dims of the shapes below.
std::vector<Dims> dim_sets(int rank) {
  std::vector<Dims> sets = {{}};  // {} = all dims
  for (int mask = 1; mask < (1 << rank); ++mask) {
    Dims dims;
    for (int d = 0; d < rank; ++d)
      if (mask & (1 << d)) dims.push_back(d == rank - 1 && mask % 3 == 0 ? -1 : d);
    sets.push_back(dims);
  }
  return sets;
}

const std::vector<Shape>& reduce_shapes() {
  static const std::vector<Shape> shapes = {{7}, {33, 17}, {4, 5, 6}, {3, 0, 4}, {263, 269}};
  return shapes;
}

int64_t reduced_count(const Shape& shape, const Dims& dims) {
  if (dims.empty()) return shape.numel();
  int64_t n = 1;
  for (int64_t d : dims) n *= shape[wrap_dim(d, shape.size(), "conformance")];
  return n;
}

std::string dims_detail(const Dims& dims, bool keepdim) {
  return fmt::format("dims {{{}}}{}", fmt::join(dims, ", "), keepdim ? ", keepdim" : "");
}

// The float64 loop reference of sum/prod/max/min over `dims` (row-major order
// of the output is the same with and without keepdim).
std::vector<double> reduce_loop(const Tensor& values, const Dims& dims, ReduceOp op) {
  const Shape& shape = values.shape();
  std::vector<bool> reduced(shape.size(), dims.empty());
  for (int64_t d : dims) reduced[wrap_dim(d, shape.size(), "conformance")] = true;
  Shape out = shape;
  for (int d = 0; d < shape.size(); ++d)
    if (reduced[d]) out[d] = 1;
  const double init = op == ReduceOp::Sum    ? 0.0
                      : op == ReduceOp::Prod ? 1.0
                      : op == ReduceOp::Max  ? -std::numeric_limits<double>::infinity()
                                             : std::numeric_limits<double>::infinity();
  std::vector<double> acc(out.numel(), init);
  const std::vector<double> v = host_values(values);
  for (size_t i = 0; i < v.size(); ++i) {
    std::vector<int64_t> index = unravel(static_cast<int64_t>(i), shape);
    for (int d = 0; d < shape.size(); ++d)
      if (reduced[d]) index[d] = 0;
    double& a = acc[ravel(index, out)];
    switch (op) {
      case ReduceOp::Sum:
        a += v[i];
        break;
      case ReduceOp::Prod:
        a *= v[i];
        break;
      case ReduceOp::Max:
        a = std::max(a, v[i]);
        break;
      case ReduceOp::Min:
        a = std::min(a, v[i]);
        break;
    }
  }
  return acc;
}

TEST_CASE("conformance: sum, mean, prod, amax, amin over dim sets", "[reduce]") {
  static_assert(kNumReduceOps == 4, "add the new reduction to the conformance cases");
  Generator gen(401);
  for (const Shape& shape : reduce_shapes()) {
    const bool large = shape.numel() > 65536;
    for (Layout layout : layouts_for(shape)) {
      const Tensor x = random_values(shape, {}, gen, layout);
      const Tensor near_one = random_values(shape, {0.8, 1.25}, gen, layout);
      const Tensor ints = random_values(shape, {-2, 2, 0, true}, gen, layout);
      for (const Dims& dims : dim_sets(shape.size())) {
        const int64_t n = reduced_count(shape, dims);
        for (bool keepdim : {false, true}) {
          const std::string detail = dims_detail(dims, keepdim);
          const bool backward = !large || layout == Layout::Contiguous;
          for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
            const bool integral = dtype == DType::Int64;
            const double u = dtype == DType::Float64 ? kU64 : kU32;
            const double sum_scale = dtype == DType::Float64 ? kSumScale64 : kSumScale32;
            const Tensor& in = integral ? ints : x;
            const Tensor abs_sum = sum(abs(in), dims, keepdim);
            // sum, mean: against sum |x| (see above).
            Tensor reference =
                run_case([&](const std::vector<Tensor>& t) { return sum(t[0], dims, keepdim); },
                         {{in, layout}}, dtype,
                         {.op = "sum",
                          .detail = detail,
                          .tol = kExact,
                          .result_dtype = dtype,
                          .backward = backward,
                          .backward_tol = kExact,  // a broadcast: exact
                          .scale = integral ? Tensor() : abs_sum,
                          .scale_factor = sum_scale});
            if (on_cpu() && dtype == DType::Float64 && reference.defined())
              check_against_loop("sum " + detail, reference, reduce_loop(in, dims, ReduceOp::Sum),
                                 {0, 1e-13, true});
            if (!integral && n > 0)
              run_case([&](const std::vector<Tensor>& t) { return mean(t[0], dims, keepdim); },
                       {{in, layout}}, dtype,
                       {.op = "mean",
                        .detail = detail,
                        .tol = kExact,
                        .result_dtype = dtype,
                        .backward = backward,
                        .backward_tol = {0, 4 * u},
                        .scale = div(abs_sum, double(n)),
                        .scale_factor = sum_scale});
            // prod: factors near 1, so the relative error is about n u; at most
            // 300 of them (no overflow however they repeat), int64 at most 40.
            if (n <= (integral ? 40 : 300)) {
              const Tensor& factors = integral ? ints : near_one;
              reference =
                  run_case([&](const std::vector<Tensor>& t) { return prod(t[0], dims, keepdim); },
                           {{factors, layout}}, dtype,
                           {.op = "prod",
                            .detail = detail,
                            .tol = integral ? kExact : Tol{0, 2 * (n + 2) * u},
                            .result_dtype = dtype,
                            .backward = backward && n <= 300,
                            .backward_tol = {0, 4 * (n + 2) * u}});
              if (on_cpu() && dtype == DType::Float64 && reference.defined())
                check_against_loop("prod " + detail, reference,
                                   reduce_loop(factors, dims, ReduceOp::Prod), {0, 1e-12});
            }
            // amax, amin: a selection, exact. The gradient is split evenly
            // between ties (broadcast inputs repeat values): 1/count rounds.
            if (n > 0) {
              for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min}) {
                const bool is_max = op == ReduceOp::Max;
                reference = run_case(
                    [&](const std::vector<Tensor>& t) {
                      return is_max ? amax(t[0], dims, keepdim) : amin(t[0], dims, keepdim);
                    },
                    {{in, layout}}, dtype,
                    {.op = is_max ? "amax" : "amin",
                     .detail = detail,
                     .tol = kExact,
                     .result_dtype = dtype,
                     .backward = backward,
                     .backward_tol = {0, 64 * u, true}});
                if (on_cpu() && dtype == DType::Float64 && reference.defined())
                  check_against_loop(op_name(op) + (" " + detail), reference,
                                     reduce_loop(in, dims, op), kExact);
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: var, logsumexp and norm", "[reduce]") {
  Generator gen(402);
  for (const Shape& shape : reduce_shapes()) {
    if (shape.numel() == 0) continue;
    for (Layout layout : layouts_for(shape)) {
      const Tensor x = random_values(shape, {}, gen, layout);
      for (const Dims& dims : dim_sets(shape.size())) {
        const int64_t n = reduced_count(shape, dims);
        for (bool keepdim : {false, true}) {
          const std::string detail = dims_detail(dims, keepdim);
          const bool backward = shape.numel() <= 65536 || layout == Layout::Contiguous;
          for (DType dtype : float_dtypes()) {
            const bool f64 = dtype == DType::Float64;
            // var: sums of squares, checked against sum x^2 / (n - 1).
            if (n > 1)
              run_case([&](const std::vector<Tensor>& t) { return var(t[0], dims, 1, keepdim); },
                       {{x, layout}}, dtype,
                       {.op = "var",
                        .detail = detail,
                        .tol = kExact,
                        .result_dtype = dtype,
                        .backward = backward,
                        .backward_tol = {0, f64 ? 1e-12 : 1e-4, true},
                        .scale = div(sum(square(x), dims, keepdim), double(n - 1)),
                        .scale_factor = f64 ? kSumScale64 : kSumScale32});
            // logsumexp: max + log(sum exp(x - max)); |x| <= 3, so 1e-5 absolute
            // covers the float32 rounding of x - max and of the log.
            run_case([&](const std::vector<Tensor>& t) { return logsumexp(t[0], dims, keepdim); },
                     {{x, layout}}, dtype,
                     {.op = "logsumexp",
                      .detail = detail,
                      .tol = f64 ? Tol{1e-12, 1e-12} : Tol{2e-5, 1e-5},
                      .result_dtype = dtype,
                      .backward = backward,
                      .backward_tol = f64 ? Tol{1e-13, 1e-11} : Tol{1e-6, 1e-4}});
            // norm: a sum of non-negative terms, no cancellation.
            run_case([&](const std::vector<Tensor>& t) { return norm(t[0], 2, dims, keepdim); },
                     {{x, layout}}, dtype,
                     {.op = "norm",
                      .detail = detail,
                      .tol = f64 ? Tol{0, 1e-13} : Tol{0, 1e-5},
                      .result_dtype = dtype,
                      .backward = backward,
                      .backward_tol = f64 ? Tol{1e-14, 1e-12} : Tol{1e-7, 1e-5}});
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: argmax, argmin and max/min with indices", "[reduce][arg]") {
  Generator gen(403);
  const std::vector<Shape> shapes = {{7}, {33, 17}, {4, 5, 6}, {263, 269}};
  for (const Shape& shape : shapes) {
    for (Layout layout : layouts_for(shape)) {
      const Tensor smooth = random_values(shape, {}, gen, layout);
      const Tensor ties = random_values(shape, {-2, 2, 0, true}, gen, layout);
      for (int dim = -1; dim < shape.size(); ++dim) {
        if (dim == -1 && shape.size() == 1) continue;
        for (bool keepdim : {false, true}) {
          const std::string detail = fmt::format("dim {}{}", dim, keepdim ? ", keepdim" : "");
          for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
            for (const Tensor* values : {&smooth, &ties}) {
              if (dtype == DType::Int64 && values == &smooth) continue;
              const std::string kind = values == &ties ? " (ties: first index wins)" : "";
              for (bool is_max : {true, false}) {
                const char* name = is_max ? "argmax" : "argmin";
                const Tensor reference = run_case(
                    [&](const std::vector<Tensor>& t) {
                      return is_max ? argmax(t[0], dim, keepdim) : argmin(t[0], dim, keepdim);
                    },
                    {{*values, layout}}, dtype,
                    {.op = name,
                     .detail = detail + kind,
                     .tol = kExact,
                     .result_dtype = DType::Int64});
                // max(x, dim) returns both; its values carry the gradient.
                run_case(
                    [&](const std::vector<Tensor>& t) {
                      return (is_max ? max(t[0], dim, keepdim) : min(t[0], dim, keepdim)).indices;
                    },
                    {{*values, layout}}, dtype,
                    {.op = is_max ? "max(dim).indices" : "min(dim).indices",
                     .detail = detail + kind,
                     .tol = kExact,
                     .result_dtype = DType::Int64});
                run_case(
                    [&](const std::vector<Tensor>& t) {
                      return (is_max ? max(t[0], dim, keepdim) : min(t[0], dim, keepdim)).values;
                    },
                    {{*values, layout}}, dtype,
                    {.op = is_max ? "max(dim).values" : "min(dim).values",
                     .detail = detail + kind,
                     .tol = kExact,
                     .result_dtype = dtype,
                     .backward = values == &smooth &&
                                 (shape.numel() <= 65536 || layout == Layout::Contiguous),
                     .backward_tol = kExact});
                if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
                  // First index of the extreme along dim.
                  const int d = wrap_dim(dim, shape.size(), "conformance");
                  const std::vector<double> v = host_values(*values);
                  Shape out = shape;
                  out[d] = 1;
                  std::vector<double> best(out.numel(), 0), index(out.numel(), -1);
                  for (size_t i = 0; i < v.size(); ++i) {
                    std::vector<int64_t> at = unravel(static_cast<int64_t>(i), shape);
                    const int64_t k = at[d];
                    at[d] = 0;
                    const int64_t o = ravel(at, out);
                    if (index[o] < 0 || (is_max ? v[i] > best[o] : v[i] < best[o])) {
                      best[o] = v[i];
                      index[o] = static_cast<double>(k);
                    }
                  }
                  check_against_loop(std::string(name) + " " + detail + kind, reference, index,
                                     kExact);
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("conformance: reductions with NaN match the CPU", "[reduce][nan]") {
  // NaN counts as the maximum (backend.h); the device must agree with the CPU.
  Generator gen(404);
  Tensor x = random_values({5, 7}, {}, gen);
  std::vector<double> v = host_values(x);
  for (size_t i : {3u, 10u, 11u, 30u}) v[i] = std::numeric_limits<double>::quiet_NaN();
  x = from_vector(v, Shape{5, 7});
  for (DType dtype : float_dtypes()) {
    for (int dim : {0, 1}) {
      const Check exact{.op = "",
                        .detail = fmt::format("dim {}, with NaN", dim),
                        .tol = kExact,
                        .result_dtype = DType::Int64};
      Check c = exact;
      c.op = "argmax";
      const Tensor reference = run_case(
          [&](const std::vector<Tensor>& t) { return argmax(t[0], dim); }, {{x}}, dtype, c);
      c.op = "argmin";
      run_case([&](const std::vector<Tensor>& t) { return argmin(t[0], dim); }, {{x}}, dtype, c);
      c.result_dtype = dtype;
      c.op = "amax";
      run_case([&](const std::vector<Tensor>& t) { return amax(t[0], {dim}); }, {{x}}, dtype, c);
      c.op = "amin";
      run_case([&](const std::vector<Tensor>& t) { return amin(t[0], {dim}); }, {{x}}, dtype, c);
      c.op = "sum";
      c.tol = {1e-5, 1e-5};  // rows without NaN round differently in float32
      run_case([&](const std::vector<Tensor>& t) { return sum(t[0], {dim}); }, {{x}}, dtype, c);
      if (on_cpu() && dtype == DType::Float64 && reference.defined() && dim == 1) {
        // Row r: the first NaN if there is one, else the first maximum.
        std::vector<double> loop;
        for (int r = 0; r < 5; ++r) {
          int best = 0;
          for (int k = 0; k < 7; ++k) {
            const double a = v[r * 7 + k], b = v[r * 7 + best];
            if (std::isnan(b)) break;
            if (std::isnan(a) || a > b) best = k;
          }
          loop.push_back(best);
        }
        check_against_loop("argmax with NaN", reference, loop, kExact);
      }
    }
  }
}

TEST_CASE("conformance: cumsum", "[reduce][cumsum]") {
  Generator gen(405);
  const std::vector<Shape> shapes = {{7}, {33, 17}, {4, 5, 6}, {0, 3}, {263, 269}};
  for (const Shape& shape : shapes) {
    for (Layout layout : layouts_for(shape)) {
      const Tensor x = random_values(shape, {}, gen, layout);
      const Tensor ints = random_values(shape, {-20, 20, 0, true}, gen, layout);
      for (int dim = 0; dim < shape.size(); ++dim) {
        const int64_t length = shape[dim];
        for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
          const bool integral = dtype == DType::Int64;
          const double u = dtype == DType::Float64 ? kU64 : kU32;
          const Tensor& in = integral ? ints : x;
          // A running sum of `length` terms: at most (length + 1) u * cumsum |x|.
          const Tensor reference =
              run_case([&](const std::vector<Tensor>& t) { return cumsum(t[0], dim); },
                       {{in, layout}}, dtype,
                       {.op = "cumsum",
                        .detail = fmt::format("dim {}", dim),
                        .tol = kExact,
                        .result_dtype = dtype,
                        .backward = shape.numel() <= 65536 || layout == Layout::Contiguous,
                        .backward_tol = {0, 2 * (length + 1) * u, true},
                        .scale = integral ? Tensor() : cumsum(abs(in), dim),
                        .scale_factor = 2 * (length + 1) * u});
          if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
            const std::vector<double> v = host_values(in);
            std::vector<double> loop(v.size());
            for (size_t i = 0; i < v.size(); ++i) {
              std::vector<int64_t> at = unravel(static_cast<int64_t>(i), shape);
              loop[i] = v[i];
              if (at[dim] > 0) {
                at[dim] -= 1;
                loop[i] += loop[ravel(at, shape)];
              }
            }
            check_against_loop(fmt::format("cumsum dim {}", dim), reference, loop,
                               {0, 1e-13, true});
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tide::conformance
