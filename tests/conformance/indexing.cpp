// Conformance of the indexing primitives: index_select, gather and
// scatter_add (with repeated indices, which must accumulate), their gradients,
// and their bounds checks, which must throw tide::Error on every device.
#include "conformance.h"

namespace tide::conformance {
namespace {

// Selections are exact; scatter_add sums colliding contributions, in index
// order on the CPU and possibly atomically (any order) on a GPU, so float
// sums get the normwise tolerance of a short sum.
constexpr Tols kScatter{{1e-6, 1e-6, true}, {1e-14, 1e-14, true}};

Tensor indices(int64_t high, const Shape& shape, Generator& gen) {
  return randint(0, high, shape, gen);  // int64; repeats are likely
}

const std::vector<DType>& value_dtypes() {
  static const std::vector<DType> dtypes = {DType::Float32, DType::Float64, DType::Int64};
  return dtypes;
}

Domain domain_for(DType dtype) {
  return dtype == DType::Int64 ? Domain{-20, 20, 0, true} : Domain{};
}

TEST_CASE("conformance: index_select", "[indexing]") {
  struct Case {
    Shape x;
    int dim;
    int64_t count;
  };
  const std::vector<Case> cases = {{{7}, 0, 5},         {{7}, 0, 0},       {{33, 17}, 0, 40},
                                   {{33, 17}, 1, 3},    {{4, 5, 6}, 1, 9}, {{4, 5, 6}, -1, 1},
                                   {{263, 269}, 0, 300}};
  Generator gen(701);
  for (const Case& c : cases) {
    const int d = wrap_dim(c.dim, c.x.size(), "conformance");
    for (Layout layout : layouts_for(c.x)) {
      for (DType dtype : value_dtypes()) {
        const Tensor x = random_values(c.x, domain_for(dtype), gen, layout);
        const Tensor index = indices(c.x[d], {c.count}, gen);
        // The index itself strided too, when the values are.
        const Layout index_layout =
            layout == Layout::Strided ? Layout::Strided : Layout::Contiguous;
        const Tensor reference =
            run_case([&](const std::vector<Tensor>& t) { return index_select(t[0], c.dim, t[1]); },
                     {{x, layout}, {index, index_layout, false, false}}, dtype,
                     {.op = "index_select",
                      .detail = fmt::format("dim {}, {} indices", c.dim, c.count),
                      .tol = kExact,
                      .result_dtype = dtype,
                      .backward = c.x.numel() <= 65536 || layout == Layout::Contiguous,
                      .backward_tol = kScatter.for_dtype(dtype)});
        if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
          const std::vector<double> v = host_values(x);
          const std::vector<int64_t> idx = index.to_vector<int64_t>();
          Shape out = c.x;
          out[d] = c.count;
          std::vector<double> loop(out.numel());
          for (int64_t i = 0; i < out.numel(); ++i) {
            std::vector<int64_t> at = unravel(i, out);
            at[d] = idx[at[d]];
            loop[i] = v[ravel(at, c.x)];
          }
          check_against_loop("index_select", reference, loop, kExact);
        }
      }
    }
  }
}

TEST_CASE("conformance: gather and scatter_add", "[indexing]") {
  struct Case {
    Shape x, index;
    int dim;
  };
  // The index may be smaller than the input in every dim but `dim`, and
  // larger along it (repeats accumulate in scatter_add).
  const std::vector<Case> cases = {{{7}, {5}, 0},
                                   {{7}, {0}, 0},
                                   {{33, 17}, {40, 17}, 0},
                                   {{33, 17}, {20, 5}, 1},
                                   {{4, 5, 6}, {3, 9, 6}, 1},
                                   {{4, 5, 6}, {4, 5, 2}, -1},
                                   {{263, 269}, {263, 269}, 1}};
  Generator gen(702);
  for (const Case& c : cases) {
    const int d = wrap_dim(c.dim, c.x.size(), "conformance");
    for (Layout layout : layouts_for(c.x)) {
      if (!layout_applies(layout, c.index)) continue;
      const bool backward = c.x.numel() <= 65536 || layout == Layout::Contiguous;
      for (DType dtype : value_dtypes()) {
        const Tensor x = random_values(c.x, domain_for(dtype), gen, layout);
        const Tensor index = indices(c.x[d], c.index, gen);
        const Tensor src = random_values(c.index, domain_for(dtype), gen, layout);
        const std::string detail = fmt::format("dim {}, index {}", c.dim, c.index);
        const Input index_input{index, layout == Layout::Broadcast ? Layout::Contiguous : layout,
                                false, false};
        Tensor reference =
            run_case([&](const std::vector<Tensor>& t) { return gather(t[0], c.dim, t[1]); },
                     {{x, layout}, index_input}, dtype,
                     {.op = "gather",
                      .detail = detail,
                      .tol = kExact,
                      .result_dtype = dtype,
                      .backward = backward,
                      .backward_tol = kScatter.for_dtype(dtype)});
        std::vector<double> loop;
        const std::vector<double> v = host_values(x), sv = host_values(src);
        const std::vector<int64_t> idx = index.to_vector<int64_t>();
        if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
          for (int64_t i = 0; i < c.index.numel(); ++i) {
            std::vector<int64_t> at = unravel(i, c.index);
            at[d] = idx[i];
            loop.push_back(v[ravel(at, c.x)]);
          }
          check_against_loop("gather", reference, loop, kExact);
        }
        reference = run_case(
            [&](const std::vector<Tensor>& t) { return scatter_add(t[0], c.dim, t[1], t[2]); },
            {{x, layout}, index_input, {src, layout}}, dtype,
            {.op = "scatter_add",
             .detail = detail,
             .tol = dtype == DType::Int64 ? kExact : kScatter.for_dtype(dtype),
             .result_dtype = dtype,
             .backward = backward,
             .backward_tol = kExact});
        if (on_cpu() && dtype == DType::Float64 && reference.defined()) {
          loop = v;
          for (int64_t i = 0; i < c.index.numel(); ++i) {
            std::vector<int64_t> at = unravel(i, c.index);
            at[d] = idx[i];
            loop[ravel(at, c.x)] += sv[i];
          }
          check_against_loop("scatter_add", reference, loop, {1e-14, 1e-14, true});
        }
      }
    }
  }
}

TEST_CASE("conformance: out-of-range indices throw tide::Error naming the op",
          "[indexing][errors]") {
  // On a GPU the check needs the indices: the backend must still throw (not
  // read out of bounds, not crash later), and the error must name the op.
  const Tensor x = to(arange(12.0, {.dtype = DType::Float32}), device());
  const Tensor m = reshape(x, {3, 4});
  const Tensor bad = to(tensor({int64_t{0}, int64_t{12}}), device());
  const Tensor bad2 =
      to(reshape(tensor({int64_t{0}, int64_t{1}, int64_t{2}, int64_t{4}}), {1, 4}), device());
  const Tensor negative = to(tensor({int64_t{-1}}), device());
  REQUIRE_THROWS_WITH(index_select(x, 0, bad), Catch::Contains("index_select"));
  REQUIRE_THROWS_WITH(index_select(x, 0, negative), Catch::Contains("index_select"));
  REQUIRE_THROWS_WITH(gather(m, 1, bad2), Catch::Contains("gather"));
  REQUIRE_THROWS_WITH(scatter_add(m, 1, bad2, ones({1, 4}, {.device = device()})),
                      Catch::Contains("scatter_add"));
  // The device is still usable afterwards.
  CHECK(sum(x).item() == 66.0);
}

}  // namespace
}  // namespace tide::conformance
