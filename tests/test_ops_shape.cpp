// Shape ops: views, copies, joins and indexing (autograd/ops_shape.cpp).
//
// Values are checked against float64 loops on the host: each view is compared
// element by element with the input element it should show (computed here by
// index arithmetic), views must share their base's storage (a write through
// the view appears in the base), and every differentiable op passes gradcheck
// and gradgradcheck, also on non-contiguous inputs.
#include <catch2/catch.hpp>

#include <functional>
#include <set>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tensor/kernels.h"

using namespace tide;
using Catch::Contains;

namespace {

using Index = std::vector<int64_t>;

// 0, 1, 2, ... as float64: distinct values show where each element of a view
// came from.
Tensor iota(const Shape& shape) {
  std::vector<double> values(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i);
  return from_vector(values, shape);
}

Tensor randn64(const Shape& shape, uint64_t seed, bool requires_grad = true) {
  Generator gen(seed);
  return randn(shape, gen, {.dtype = DType::Float64, .requires_grad = requires_grad});
}

Tensor index_tensor(const std::vector<int64_t>& values, const Shape& shape) {
  return from_vector(values, shape);
}

// Row-major flat index <-> multi-index.
Index unravel(int64_t flat, const Shape& shape) {
  Index index(static_cast<size_t>(shape.size()));
  for (int i = shape.size() - 1; i >= 0; --i) {
    index[i] = flat % shape[i];
    flat /= shape[i];
  }
  return index;
}
int64_t ravel(const Index& index, const Shape& shape) {
  int64_t flat = 0;
  for (int i = 0; i < shape.size(); ++i) flat = flat * shape[i] + index[i];
  return flat;
}

// Checks out's shape, and that out[i] == x[in_index(i)] for every element, where
// in_index maps an output multi-index to the input multi-index it shows.
void check_values(const Tensor& out, const Shape& expected_shape, const Tensor& x,
                  const std::function<Index(const Index&)>& in_index) {
  REQUIRE(out.shape() == expected_shape);
  std::vector<double> xs = x.to_vector<double>();
  std::vector<double> os = out.to_vector<double>();
  REQUIRE(static_cast<int64_t>(os.size()) == expected_shape.numel());
  for (int64_t o = 0; o < out.numel(); ++o) {
    Index in = in_index(unravel(o, expected_shape));
    INFO("output element " << o);
    REQUIRE(os[o] == xs[ravel(in, x.shape())]);
  }
}

// `v` must be a view of `base` (an iota): filling v with -1 must change exactly
// the elements of base that v showed, and nothing else.
void check_writes_through(const Tensor& base, const Tensor& v) {
  REQUIRE(v.storage() == base.storage());
  std::vector<double> before = base.to_vector<double>();
  std::vector<double> shown = v.to_vector<double>();
  std::set<double> shown_set(shown.begin(), shown.end());
  kernels::fill_(v, -1.0);
  std::vector<double> after = base.to_vector<double>();
  for (size_t i = 0; i < after.size(); ++i) {
    INFO("base element " << i);
    REQUIRE(after[i] == (shown_set.count(before[i]) ? -1.0 : before[i]));
  }
  kernels::copy_(base, from_vector(before, base.shape()));  // restore
}

// First and second derivatives against finite differences.
void check_grads(const DifferentiableFn& fn, const std::vector<Tensor>& inputs) {
  REQUIRE(gradcheck(fn, inputs));
  REQUIRE(gradgradcheck(fn, inputs));
}

}  // namespace

// ---------------------------------------------------------------------------
// reshape / view
// ---------------------------------------------------------------------------

TEST_CASE("reshape and view: values, shared storage, copies", "[ops][shape]") {
  Tensor x = iota({2, 3, 4});
  Tensor y = reshape(x, {4, -1});
  check_values(y, {4, 6}, x, [&](const Index& i) { return unravel(ravel(i, {4, 6}), x.shape()); });
  check_writes_through(x, y);
  Tensor v = view(x, {-1});
  check_values(v, {24}, x, [&](const Index& i) { return unravel(i[0], x.shape()); });
  check_writes_through(x, v);
  check_writes_through(x, view(x, {2, 1, 12}));

  SECTION("a transposed tensor cannot be flattened by view, but reshape copies") {
    Tensor m = iota({3, 4});
    Tensor t = transpose(m, 0, 1);  // [4, 3], strides [1, 4]
    REQUIRE_THROWS_AS(view(t, {12}), Error);
    REQUIRE_THROWS_WITH(view(t, {12}), Contains("view: cannot view") && Contains("[4, 3]"));
    Tensor r = reshape(t, {12});
    REQUIRE(r.storage() != m.storage());
    check_values(r, {12}, m, [](const Index& i) { return Index{i[0] % 3, i[0] / 3}; });
    // Splitting a dim of a transposed tensor is still a view.
    Tensor s = view(t, {2, 2, 3});
    check_values(s, {2, 2, 3}, m, [](const Index& i) { return Index{i[2], i[0] * 2 + i[1]}; });
    check_writes_through(m, s);
  }
  SECTION("zero-size tensors") {
    Tensor e = zeros({0, 3}, {.dtype = DType::Float64});
    REQUIRE(reshape(e, {3, 0}).shape() == Shape{3, 0});
    REQUIRE(reshape(e, {-1, 6}).shape() == Shape{0, 6});
    REQUIRE_THROWS_WITH(reshape(e, {-1, 0}), Contains("reshape") && Contains("invalid"));
  }
  SECTION("errors") {
    REQUIRE_THROWS_AS(reshape(x, {5, 5}), Error);
    REQUIRE_THROWS_WITH(reshape(x, {5, 5}),
                        Contains("reshape") && Contains("[5, 5]") && Contains("24 elements"));
    REQUIRE_THROWS_WITH(reshape(x, {-1, -1}), Contains("only one dimension can be -1"));
    REQUIRE_THROWS_WITH(view(x, {7, -1}), Contains("view") && Contains("24 elements"));
    REQUIRE_THROWS_WITH(reshape(x, {-2, 12}), Contains("reshape: invalid size -2"));
  }
}

TEST_CASE("reshape and view: gradients", "[ops][shape][grad]") {
  Tensor x = randn64({2, 3, 2}, 1);
  check_grads([](const std::vector<Tensor>& in) { return reshape(in[0], {3, -1}); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return view(in[0], {12}); }, {x});
  // Non-contiguous input: reshape has to copy, and the gradient must still map back.
  Tensor m = randn64({3, 4}, 2);
  check_grads([](const std::vector<Tensor>& in) { return reshape(transpose(in[0], 0, 1), {-1}); },
              {m});
  check_grads(
      [](const std::vector<Tensor>& in) {
        return view(transpose(in[0], 0, 1), {2, 2, 3});
      },
      {m});
}

// ---------------------------------------------------------------------------
// permute / transpose
// ---------------------------------------------------------------------------

TEST_CASE("permute and transpose: values and shared storage", "[ops][shape]") {
  Tensor x = iota({2, 3, 4});
  Tensor p = permute(x, {2, 0, -2});  // -2 is dim 1
  check_values(p, {4, 2, 3}, x, [](const Index& i) { return Index{i[1], i[2], i[0]}; });
  check_writes_through(x, p);
  REQUIRE_FALSE(p.is_contiguous());

  Tensor t = transpose(x, -1, 0);
  check_values(t, {4, 3, 2}, x, [](const Index& i) { return Index{i[2], i[1], i[0]}; });
  check_writes_through(x, t);

  SECTION("errors") {
    REQUIRE_THROWS_AS(permute(x, {0, 0, 1}), Error);
    REQUIRE_THROWS_WITH(permute(x, {0, 0, 1}), Contains("permute: dim 0 appears twice"));
    REQUIRE_THROWS_WITH(permute(x, {1, 0}),
                        Contains("permute: 2 dims given") && Contains("rank 3"));
    REQUIRE_THROWS_WITH(permute(x, {0, 1, 3}), Contains("permute: dim 3 is out of range"));
    REQUIRE_THROWS_WITH(transpose(x, 0, -4), Contains("transpose: dim -4 is out of range"));
  }
}

TEST_CASE("permute and transpose: gradients", "[ops][shape][grad]") {
  Tensor x = randn64({2, 3, 2}, 3);
  check_grads([](const std::vector<Tensor>& in) { return permute(in[0], {1, 2, 0}); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return transpose(in[0], 0, -1); }, {x});
  // A permute of a non-contiguous view, made contiguous so the layout matters.
  check_grads(
      [](const std::vector<Tensor>& in) {
        return contiguous(permute(transpose(in[0], 0, 1), {2, 1, 0}));
      },
      {x});
}

// ---------------------------------------------------------------------------
// slice / narrow / select
// ---------------------------------------------------------------------------

TEST_CASE("slice, narrow and select: values and shared storage", "[ops][shape]") {
  Tensor x = iota({4, 5});

  SECTION("slice with a step, negative bounds and clamping") {
    Tensor s = slice(x, 1, 1, 5, 2);  // columns 1, 3
    check_values(s, {4, 2}, x, [](const Index& i) { return Index{i[0], 1 + 2 * i[1]}; });
    check_writes_through(x, s);
    Tensor n = slice(x, -2, -3, -1);  // rows 1, 2
    check_values(n, {2, 5}, x, [](const Index& i) { return Index{1 + i[0], i[1]}; });
    check_writes_through(x, n);
    Tensor c = slice(x, 1, -100, 100, 3);  // clamped to [0, 5): columns 0, 3
    check_values(c, {4, 2}, x, [](const Index& i) { return Index{i[0], 3 * i[1]}; });
    // Empty results: start at the end, or end before start.
    REQUIRE(slice(x, 0, 4, 10).shape() == Shape{0, 5});
    REQUIRE(slice(x, 1, 3, 1).shape() == Shape{4, 0});
  }
  SECTION("narrow") {
    Tensor n = narrow(x, -1, -3, 2);  // columns 2, 3
    check_values(n, {4, 2}, x, [](const Index& i) { return Index{i[0], 2 + i[1]}; });
    check_writes_through(x, n);
    REQUIRE(narrow(x, 0, 4, 0).shape() == Shape{0, 5});
  }
  SECTION("select") {
    Tensor s = select(x, 1, -2);  // column 3
    check_values(s, {4}, x, [](const Index& i) { return Index{i[0], 3}; });
    check_writes_through(x, s);
    Tensor r = select(select(x, 0, 2), 0, 4);
    REQUIRE(r.dim() == 0);
    REQUIRE(r.item() == 14.0);
  }
  SECTION("views of non-contiguous tensors") {
    Tensor t = transpose(x, 0, 1);    // [5, 4]
    Tensor s = slice(t, 0, 1, 5, 3);  // t rows 1, 4 = x columns 1, 4
    check_values(s, {2, 4}, x, [](const Index& i) { return Index{i[1], 1 + 3 * i[0]}; });
    check_writes_through(x, s);
    Tensor sel = select(t, 1, 2);  // x row 2
    check_values(sel, {5}, x, [](const Index& i) { return Index{2, i[0]}; });
  }
  SECTION("errors") {
    REQUIRE_THROWS_AS(narrow(x, 0, 3, 2), Error);
    REQUIRE_THROWS_WITH(
        narrow(x, 0, 3, 2),
        Contains("narrow: start 3 and length 2 are out of range") && Contains("size 4"));
    REQUIRE_THROWS_WITH(narrow(x, 1, -6, 1), Contains("narrow") && Contains("out of range"));
    REQUIRE_THROWS_WITH(narrow(x, 2, 0, 1), Contains("narrow: dim 2 is out of range"));
    REQUIRE_THROWS_AS(select(x, 0, 4), Error);
    REQUIRE_THROWS_WITH(select(x, 0, 4),
                        Contains("select: index 4 is out of range") && Contains("dim 0 of size 4"));
    REQUIRE_THROWS_WITH(select(x, 1, -6), Contains("select: index -6 is out of range"));
    REQUIRE_THROWS_WITH(select(x, 2, 0), Contains("select: dim 2 is out of range"));
    REQUIRE_THROWS_WITH(slice(x, 0, 0, 2, 0), Contains("slice: step must be positive"));
    REQUIRE_THROWS_WITH(slice(scalar(1.0), 0, 0, 1), Contains("slice: cannot slice a 0-d"));
    REQUIRE_THROWS_WITH(select(zeros({2, 0}), 1, 0), Contains("select: index 0 is out of range"));
  }
}

TEST_CASE("slice, narrow and select: gradients", "[ops][shape][grad]") {
  Tensor x = randn64({4, 3}, 4);
  check_grads([](const std::vector<Tensor>& in) { return slice(in[0], 0, 1, 4, 2); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return slice(in[0], -1, -2, 100); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return narrow(in[0], 1, 1, 2); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return select(in[0], 0, -1); }, {x});
  // Non-contiguous inputs.
  check_grads(
      [](const std::vector<Tensor>& in) { return slice(transpose(in[0], 0, 1), 1, 0, 3, 2); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return select(transpose(in[0], 0, 1), 1, 2); },
              {x});
  // Overlapping picks of one input: their gradients add up.
  check_grads(
      [](const std::vector<Tensor>& in) {
        return mul(slice(in[0], 0, 0, 3), slice(in[0], 0, 1, 4));
      },
      {x});
}

TEST_CASE("slice: gradient of an empty slice is zero", "[ops][shape][grad]") {
  Tensor x = randn64({3, 2}, 5);
  Tensor s = slice(x, 0, 2, 2);
  REQUIRE(s.shape() == Shape{0, 2});
  backward(sum(s));
  REQUIRE(x.grad().shape() == x.shape());
  for (double g : x.grad().to_vector<double>()) REQUIRE(g == 0.0);
}

// ---------------------------------------------------------------------------
// expand / broadcast_to
// ---------------------------------------------------------------------------

TEST_CASE("expand and broadcast_to: values and shared storage", "[ops][shape]") {
  Tensor x = iota({3, 1});
  Tensor e = expand(x, {2, 3, 4});
  check_values(e, {2, 3, 4}, x, [](const Index& i) { return Index{i[1], 0}; });
  REQUIRE(e.storage() == x.storage());
  REQUIRE(e.strides()[0] == 0);
  REQUIRE(e.strides()[2] == 0);
  Tensor k = expand(x, {-1, 5});  // -1 keeps the size
  check_values(k, {3, 5}, x, [](const Index& i) { return Index{i[0], 0}; });
  check_values(broadcast_to(x, {3, 2}), {3, 2}, x, [](const Index& i) { return Index{i[0], 0}; });
  REQUIRE(expand(x, {3, 0}).shape() == Shape{3, 0});

  SECTION("errors") {
    REQUIRE_THROWS_AS(expand(x, {4, 2}), Error);
    REQUIRE_THROWS_WITH(expand(x, {4, 2}),
                        Contains("expand: cannot expand float64[3, 1] to shape [4, 2]"));
    REQUIRE_THROWS_WITH(expand(x, {5}), Contains("expand") && Contains("[5]"));
    REQUIRE_THROWS_WITH(expand(x, {-1, 3, 1}), Contains("expand: -1 is not allowed"));
    REQUIRE_THROWS_WITH(expand(x, {3, -2}), Contains("expand: invalid size -2"));
    // 2^32 * 2^32 * 4 elements wrap around int64 to 0: refused, not a view
    // whose sum would silently be 0.
    const int64_t big = int64_t(1) << 32;
    REQUIRE_THROWS_WITH(expand(x, {big, big, 3, 4}),
                        Contains("expand: shape [4294967296, 4294967296, 3, 4] has more than "
                                 "2^63 elements"));
    REQUIRE_THROWS_WITH(broadcast_to(x, {big, big, 3, 4}), Contains("more than 2^63 elements"));
    // The largest count that fits is still a valid (stride-0) view.
    REQUIRE(expand(x, {big, big / 8, 3, 1}).numel() == big * (big / 8) * 3);
  }
}

TEST_CASE("expand: gradients sum over broadcast dims", "[ops][shape][grad]") {
  Tensor x = randn64({3, 1}, 6);
  check_grads([](const std::vector<Tensor>& in) { return expand(in[0], {2, 3, 4}); }, {x});
  Tensor y = randn64({2, 3}, 7);
  check_grads(
      [](const std::vector<Tensor>& in) {
        return broadcast_to(unsqueeze(transpose(in[0], 0, 1), 1), {3, 2, 2});
      },
      {y});
}

TEST_CASE("sum_to: values and errors", "[ops][shape]") {
  Tensor x = iota({2, 3, 4});
  Tensor s = sum_to(x, {3, 1});
  REQUIRE(s.shape() == Shape{3, 1});
  std::vector<double> xs = x.to_vector<double>(), ss = s.to_vector<double>();
  for (int64_t j = 0; j < 3; ++j) {
    double expected = 0;
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 4; ++k) expected += xs[ravel({i, j, k}, x.shape())];
    REQUIRE(ss[j] == expected);
  }
  REQUIRE_THROWS_WITH(sum_to(x, {2, 3}), Contains("sum_to") && Contains("[2, 3]"));
  check_grads(
      [](const std::vector<Tensor>& in) {
        return sum_to(in[0], {1, 3});
      },
      {randn64({2, 2, 3}, 8)});
}

// ---------------------------------------------------------------------------
// squeeze / unsqueeze / flatten
// ---------------------------------------------------------------------------

TEST_CASE("squeeze, unsqueeze and flatten: values and shared storage", "[ops][shape]") {
  Tensor x = iota({2, 1, 3, 1});
  Tensor all = squeeze(x);
  check_values(all, {2, 3}, x, [](const Index& i) { return Index{i[0], 0, i[1], 0}; });
  check_writes_through(x, all);
  Tensor one = squeeze(x, -1);
  check_values(one, {2, 1, 3}, x, [](const Index& i) { return Index{i[0], 0, i[2], 0}; });
  REQUIRE(squeeze(x, 2).shape() == x.shape());  // not size 1: a no-op (PyTorch)
  REQUIRE(squeeze(scalar(2.0)).dim() == 0);

  Tensor m = iota({2, 3});
  Tensor u = unsqueeze(m, -1);
  check_values(u, {2, 3, 1}, m, [](const Index& i) { return Index{i[0], i[1]}; });
  check_writes_through(m, u);
  check_values(unsqueeze(m, 1), {2, 1, 3}, m, [](const Index& i) { return Index{i[0], i[2]}; });
  REQUIRE(unsqueeze(scalar(1.0), 0).shape() == Shape{1});
  // unsqueeze of a non-contiguous view stays a view.
  Tensor ut = unsqueeze(transpose(m, 0, 1), 1);
  check_values(ut, {3, 1, 2}, m, [](const Index& i) { return Index{i[2], i[0]}; });
  check_writes_through(m, ut);

  Tensor y = iota({2, 3, 4});
  Tensor f = flatten(y, 1);
  check_values(f, {2, 12}, y, [](const Index& i) { return Index{i[0], i[1] / 4, i[1] % 4}; });
  check_writes_through(y, f);
  REQUIRE(flatten(y).shape() == Shape{24});
  REQUIRE(flatten(y, 0, -2).shape() == Shape{6, 4});
  REQUIRE(flatten(scalar(3.0)).shape() == Shape{1});
  Tensor ft = flatten(transpose(y, 0, 2));  // a copy: values in transposed order
  check_values(ft, {24}, y, [](const Index& i) {
    Index t = unravel(i[0], {4, 3, 2});
    return Index{t[2], t[1], t[0]};
  });

  SECTION("errors") {
    REQUIRE_THROWS_WITH(squeeze(x, 4), Contains("squeeze: dim 4 is out of range"));
    REQUIRE_THROWS_WITH(unsqueeze(m, 3), Contains("unsqueeze: dim 3 is out of range"));
    REQUIRE_THROWS_WITH(unsqueeze(m, -4), Contains("unsqueeze: dim -4 is out of range"));
    REQUIRE_THROWS_WITH(flatten(y, 2, 1), Contains("flatten: start_dim 2 is after end_dim 1"));
  }
}

TEST_CASE("squeeze, unsqueeze and flatten: gradients", "[ops][shape][grad]") {
  Tensor x = randn64({2, 1, 3}, 9);
  check_grads([](const std::vector<Tensor>& in) { return squeeze(in[0]); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return squeeze(in[0], 1); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return unsqueeze(in[0], 0); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return flatten(in[0]); }, {x});
  check_grads([](const std::vector<Tensor>& in) { return flatten(transpose(in[0], 0, 2), 1); },
              {x});
  check_grads([](const std::vector<Tensor>& in) { return unsqueeze(transpose(in[0], 0, 2), 2); },
              {x});
}

TEST_CASE("view ops that change nothing still return a new tensor", "[ops][shape][grad]") {
  // squeeze of a dim that is not 1 and expand to the same shape used to return
  // the input itself and record a node on it, turning a leaf into a non-leaf.
  Tensor x = randn64({3}, 10);
  Tensor s = squeeze(x, 0);
  Tensor e = expand(x, {3});
  Tensor t = transpose(scalar(2.0, {.dtype = DType::Float64, .requires_grad = true}), 0, 0);
  REQUIRE(x.is_leaf());
  REQUIRE(s.impl() != x.impl());
  REQUIRE(e.impl() != x.impl());
  REQUIRE(t.grad_fn() != nullptr);
  backward(sum(add(s, e)));
  for (double g : x.grad().to_vector<double>()) REQUIRE(g == 2.0);
}

// ---------------------------------------------------------------------------
// contiguous / clone / to
// ---------------------------------------------------------------------------

TEST_CASE("contiguous, clone and to: values and storage", "[ops][shape]") {
  Tensor x = iota({3, 4});
  Tensor t = transpose(x, 0, 1);
  Tensor c = contiguous(t);
  REQUIRE(c.is_contiguous());
  REQUIRE(c.storage() != x.storage());
  check_values(c, {4, 3}, x, [](const Index& i) { return Index{i[1], i[0]}; });
  REQUIRE(contiguous(x).impl() == x.impl());  // already contiguous: no copy
  Tensor k = clone(x);
  REQUIRE(k.storage() != x.storage());
  check_values(k, {3, 4}, x, [](const Index& i) { return i; });
  Tensor f = to(t, DType::Float32);
  REQUIRE(f.dtype() == DType::Float32);
  check_values(f, {4, 3}, x, [](const Index& i) { return Index{i[1], i[0]}; });

  Tensor g = randn64({3, 2}, 11);
  check_grads([](const std::vector<Tensor>& in) { return contiguous(transpose(in[0], 0, 1)); },
              {g});
  check_grads([](const std::vector<Tensor>& in) { return clone(transpose(in[0], 0, 1)); }, {g});
  // The gradient of a dtype conversion comes back in the input's dtype.
  // (Not gradchecked: finite differences through float32 are too coarse.)
  Tensor w = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  backward(sum(mul(to(transpose(g, 0, 1), DType::Float32), to(w, DType::Float32))));
  REQUIRE(g.grad().dtype() == DType::Float64);
  REQUIRE(g.grad().to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
  REQUIRE_THROWS_WITH(to(g, DType::Int64), Contains("to: cannot convert float64[3, 2]"));
}

// ---------------------------------------------------------------------------
// cat / stack
// ---------------------------------------------------------------------------

TEST_CASE("cat and stack: values", "[ops][shape]") {
  Tensor a = iota({2, 3});
  Tensor b = add(iota({2, 2}), 100.0);
  Tensor c = cat({a, b}, -1);
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> cv = c.to_vector<double>();
  REQUIRE(c.shape() == Shape{2, 5});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      REQUIRE(cv[i * 5 + j] == (j < 3 ? av[i * 3 + j] : bv[i * 2 + (j - 3)]));

  SECTION("non-contiguous inputs and dtype promotion") {
    Tensor t = transpose(iota({3, 2}), 0, 1);  // [2, 3]
    Tensor i = from_vector(std::vector<int64_t>{7, 8, 9}, {1, 3});
    Tensor r = cat({t, i}, 0);
    REQUIRE(r.dtype() == DType::Float64);
    std::vector<double> rv = r.to_vector<double>();
    std::vector<double> expected{0, 2, 4, 1, 3, 5, 7, 8, 9};  // t row by row, then i
    REQUIRE(rv == expected);
  }
  SECTION("zero-size inputs") {
    Tensor empty_rows = zeros({0, 3}, {.dtype = DType::Float64});
    Tensor r = cat({empty_rows, a, empty_rows}, 0);
    check_values(r, {2, 3}, a, [](const Index& i) { return i; });
    REQUIRE(cat({empty_rows, empty_rows}, 0).shape() == Shape{0, 3});
    REQUIRE(cat({zeros({2, 0}), zeros({2, 0})}, 1).shape() == Shape{2, 0});
  }
  SECTION("stack") {
    Tensor s = stack({a, mul(a, 2.0), mul(a, 3.0)}, 1);  // [2, 3, 3]
    REQUIRE(s.shape() == Shape{2, 3, 3});
    std::vector<double> sv = s.to_vector<double>();
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t j = 0; j < 3; ++j)
          REQUIRE(sv[ravel({i, k, j}, s.shape())] == (k + 1) * av[i * 3 + j]);
    REQUIRE(stack({a, a}, -1).shape() == Shape{2, 3, 2});
    REQUIRE(stack({scalar(1.0), scalar(2.0)}).shape() == Shape{2});
  }
  SECTION("errors") {
    REQUIRE_THROWS_AS(cat({a, zeros({3, 2}, {.dtype = DType::Float64})}, 1), Error);
    REQUIRE_THROWS_WITH(cat({a, zeros({3, 2}, {.dtype = DType::Float64})}, 1),
                        Contains("cat: tensor 1 is float64[3, 2] but tensor 0 is float64[2, 3]"));
    REQUIRE_THROWS_WITH(cat({a, zeros({2})}, 0), Contains("cat: tensor 1 is float32[2]"));
    REQUIRE_THROWS_WITH(cat({}, 0), Contains("cat: expected at least one tensor"));
    REQUIRE_THROWS_WITH(cat({a, a}, 2), Contains("cat: dim 2 is out of range"));
    REQUIRE_THROWS_WITH(cat({scalar(1.0)}, 0), Contains("cat: zero-dimensional"));
    REQUIRE_THROWS_WITH(cat({a, Tensor()}, 0), Contains("cat: tensor 1 is undefined"));
    REQUIRE_THROWS_WITH(stack({a, b}), Contains("stack: tensor 1 is float64[2, 2]") &&
                                           Contains("tensor 0 is float64[2, 3]"));
    REQUIRE_THROWS_WITH(stack({}), Contains("stack: expected at least one tensor"));
    REQUIRE_THROWS_WITH(stack({a}, 3), Contains("stack: dim 3 is out of range"));
  }
}

TEST_CASE("cat and stack: gradients", "[ops][shape][grad]") {
  Tensor a = randn64({2, 3}, 12), b = randn64({2, 1}, 13), c = randn64({3, 2}, 14);
  check_grads([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 1); }, {a, b});
  // Non-contiguous input, the same tensor twice, and an input without grad.
  Tensor constant = randn64({2, 2}, 15, /*requires_grad=*/false);
  check_grads(
      [constant](const std::vector<Tensor>& in) {
        return cat({transpose(in[1], 0, 1), in[0], constant, in[0]}, -1);
      },
      {a, c});
  check_grads(
      [](const std::vector<Tensor>& in) {
        return stack({in[0], mul(in[0], in[1])}, 1);
      },
      {a, randn64({2, 3}, 16)});
}

TEST_CASE("cat: gradient of a promoted input keeps its dtype", "[ops][shape][grad]") {
  Tensor a = ones({2}, {.dtype = DType::Float32, .requires_grad = true});
  Tensor b = randn64({3}, 17);
  Tensor c = cat({a, b});
  REQUIRE(c.dtype() == DType::Float64);
  Tensor weights = from_vector(std::vector<double>{1, 2, 3, 4, 5});
  backward(sum(mul(c, weights)));
  REQUIRE(a.grad().dtype() == DType::Float32);
  REQUIRE(a.grad().to_vector<double>() == std::vector<double>{1, 2});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{3, 4, 5});
}

TEST_CASE("scatter_add: gradient of a converted source keeps its dtype", "[ops][shape][grad]") {
  Tensor x = randn64({2, 3}, 29);
  Tensor src = ones({2, 2}, {.dtype = DType::Float32, .requires_grad = true});
  Tensor idx = index_tensor({2, 2, 0, 1}, {2, 2});
  Tensor out = scatter_add(x, 1, idx, src);
  REQUIRE(out.dtype() == DType::Float64);
  std::vector<double> wv{1, 2, 3, 4, 5, 6};
  backward(sum(mul(out, from_vector(wv, {2, 3}))));
  // d out[i, idx[i, j]] / d src[i, j] = 1, so src's gradient is w gathered at idx.
  REQUIRE(src.grad().dtype() == DType::Float32);
  REQUIRE(src.grad().to_vector<double>() == std::vector<double>{3, 3, 4, 5});
  REQUIRE(x.grad().to_vector<double>() == wv);
}

// ---------------------------------------------------------------------------
// split / chunk
// ---------------------------------------------------------------------------

namespace {
// The sizes of pieces along dim.
std::vector<int64_t> piece_sizes(const std::vector<Tensor>& pieces, int dim) {
  std::vector<int64_t> sizes;
  for (const Tensor& p : pieces) sizes.push_back(p.shape()[dim]);
  return sizes;
}
}  // namespace

TEST_CASE("split and chunk: sizes, values and shared storage", "[ops][shape]") {
  Tensor x = iota({5, 2});
  std::vector<Tensor> pieces = split(x, 2);
  REQUIRE(piece_sizes(pieces, 0) == std::vector<int64_t>{2, 2, 1});
  int64_t start = 0;
  for (const Tensor& p : pieces) {
    check_values(p, {p.shape()[0], 2}, x, [start](const Index& i) {
      return Index{start + i[0], i[1]};
    });
    check_writes_through(x, p);
    start += p.shape()[0];
  }
  std::vector<Tensor> by_sizes = split(x, Dims{1, 0, 4}, -2);
  REQUIRE(piece_sizes(by_sizes, 0) == std::vector<int64_t>{1, 0, 4});
  check_values(by_sizes[2], {4, 2}, x, [](const Index& i) { return Index{1 + i[0], i[1]}; });
  REQUIRE(piece_sizes(split(x, 1, 1), 1) == std::vector<int64_t>{1, 1});
  REQUIRE(piece_sizes(split(x, 7), 0) == std::vector<int64_t>{5});

  // chunk: pieces of ceil(n / chunks), so possibly fewer than asked for.
  REQUIRE(piece_sizes(chunk(x, 3), 0) == std::vector<int64_t>{2, 2, 1});
  REQUIRE(piece_sizes(chunk(x, 4), 0) == std::vector<int64_t>{2, 2, 1});
  REQUIRE(piece_sizes(chunk(x, 5), 0) == std::vector<int64_t>{1, 1, 1, 1, 1});
  REQUIRE(piece_sizes(chunk(x, 9), 0) == std::vector<int64_t>{1, 1, 1, 1, 1});
  REQUIRE(piece_sizes(chunk(iota({6}), 4), 0) == std::vector<int64_t>{2, 2, 2});
  std::vector<Tensor> cols = chunk(transpose(x, 0, 1), 2, 1);  // a non-contiguous input
  REQUIRE(piece_sizes(cols, 1) == std::vector<int64_t>{3, 2});
  check_values(cols[1], {2, 2}, x, [](const Index& i) { return Index{3 + i[1], i[0]}; });
  check_writes_through(x, cols[1]);

  SECTION("zero-size dims") {
    Tensor e = zeros({0, 3});
    REQUIRE(piece_sizes(split(e, 2), 0) == std::vector<int64_t>{0});
    REQUIRE(piece_sizes(split(e, 0), 0) == std::vector<int64_t>{0});
    REQUIRE(piece_sizes(chunk(e, 3), 0) == std::vector<int64_t>{0, 0, 0});
    REQUIRE(piece_sizes(split(e, Dims{0, 0}), 0) == std::vector<int64_t>{0, 0});
    REQUIRE(piece_sizes(split(e, 2, 1), 1) == std::vector<int64_t>{2, 1});
  }
  SECTION("errors") {
    REQUIRE_THROWS_AS(split(x, 0), Error);
    REQUIRE_THROWS_WITH(split(x, 0), Contains("split: split_size must be positive, got 0"));
    REQUIRE_THROWS_WITH(
        split(x, Dims{2, 2}),
        Contains("split: sizes [2, 2] sum to 4 but dim 0 of float64[5, 2] has size 5"));
    REQUIRE_THROWS_WITH(split(x, Dims{6, -1}), Contains("split: sizes [6, -1] contain a negative"));
    REQUIRE_THROWS_WITH(split(x, 1, 2), Contains("split: dim 2 is out of range"));
    REQUIRE_THROWS_WITH(chunk(x, 0), Contains("chunk: the number of chunks must be positive"));
    REQUIRE_THROWS_WITH(split(scalar(1.0), 1), Contains("split: cannot split a 0-d tensor"));
  }
}

TEST_CASE("split and chunk: gradients", "[ops][shape][grad]") {
  Tensor x = randn64({5, 2}, 18);
  auto flat_cat = [](const std::vector<Tensor>& pieces) {
    std::vector<Tensor> flat;
    for (const Tensor& p : pieces) flat.push_back(reshape(p, {-1}));
    return cat(flat);
  };
  check_grads([flat_cat](const std::vector<Tensor>& in) { return flat_cat(split(in[0], 2)); }, {x});
  check_grads(
      [flat_cat](const std::vector<Tensor>& in) {
        return flat_cat(split(in[0], Dims{3, 2}));
      },
      {x});
  check_grads(
      [flat_cat](const std::vector<Tensor>& in) {
        return flat_cat(chunk(transpose(in[0], 0, 1), 3, 1));
      },
      {x});
  // Only one piece used: the others get zero gradient.
  check_grads([](const std::vector<Tensor>& in) { return mul(chunk(in[0], 2)[1], 3.0); }, {x});
}

// ---------------------------------------------------------------------------
// index_select / gather / scatter_add
// ---------------------------------------------------------------------------

TEST_CASE("index_select: values", "[ops][shape][index]") {
  Tensor x = iota({3, 4});
  Tensor idx = index_tensor({3, 0, 3}, {3});
  Tensor r = index_select(x, -1, idx);
  check_values(r, {3, 3}, x, [](const Index& i) {
    const int64_t cols[] = {3, 0, 3};
    return Index{i[0], cols[i[1]]};
  });
  Tensor t = index_select(transpose(x, 0, 1), 1, index_tensor({2, 1}, {2}));  // non-contiguous
  check_values(t, {4, 2}, x, [](const Index& i) { return Index{2 - i[1], i[0]}; });
  REQUIRE(index_select(x, 0, index_tensor({}, {0})).shape() == Shape{0, 4});
  REQUIRE(index_select(scalar(5.0), 0, index_tensor({0}, {1})).item() == 5.0);

  SECTION("errors") {
    REQUIRE_THROWS_AS(index_select(x, 0, index_tensor({3}, {1})), Error);
    REQUIRE_THROWS_WITH(index_select(x, 0, index_tensor({3}, {1})),
                        Contains("index_select") && Contains("index 3 is out of bounds"));
    REQUIRE_THROWS_WITH(index_select(x, 1, index_tensor({-1}, {1})),
                        Contains("index_select") && Contains("index -1 is out of bounds"));
    REQUIRE_THROWS_WITH(index_select(x, 0, from_vector(std::vector<double>{0})),
                        Contains("index_select: index must be int64, got float64[1]"));
    REQUIRE_THROWS_WITH(index_select(x, 0, index_tensor({0, 1}, {1, 2})),
                        Contains("index_select: index must be 0-d or 1-d"));
    REQUIRE_THROWS_WITH(index_select(x, 2, idx), Contains("index_select: dim 2 is out of range"));
  }
}

TEST_CASE("gather and scatter_add: values", "[ops][shape][index]") {
  Tensor x = iota({3, 4});
  std::vector<int64_t> iv{0, 2, 2, 1, 0, 1};  // [3, 2], values in [0, 3) along dim 0
  Tensor idx = index_tensor(iv, {3, 2});

  SECTION("gather along each dim") {
    check_values(gather(x, 0, idx), {3, 2}, x, [&](const Index& i) {
      return Index{iv[i[0] * 2 + i[1]], i[1]};
    });
    check_values(gather(x, 1, idx), {3, 2}, x, [&](const Index& i) {
      return Index{i[0], iv[i[0] * 2 + i[1]]};
    });
    Tensor t = transpose(x, 0, 1);  // [4, 3], non-contiguous
    check_values(gather(t, -1, idx), {3, 2}, x, [&](const Index& i) {
      return Index{iv[i[0] * 2 + i[1]], i[0]};
    });
  }
  SECTION("scatter_add accumulates repeated indices") {
    Tensor src = add(iota({3, 2}), 10.0);
    Tensor r = scatter_add(x, 1, idx, src);
    std::vector<double> expected = x.to_vector<double>(), sv = src.to_vector<double>();
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 2; ++j) expected[i * 4 + iv[i * 2 + j]] += sv[i * 2 + j];
    REQUIRE(r.to_vector<double>() == expected);
    REQUIRE(x.to_vector<double>() == iota({3, 4}).to_vector<double>());  // x is unchanged

    std::vector<double> expected0 = x.to_vector<double>();
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 2; ++j) expected0[iv[i * 2 + j] * 4 + j] += sv[i * 2 + j];
    REQUIRE(scatter_add(x, 0, idx, src).to_vector<double>() == expected0);
  }
  SECTION("errors") {
    Tensor bad = index_tensor({0, 4}, {1, 2});
    REQUIRE_THROWS_AS(gather(x, 1, bad), Error);
    REQUIRE_THROWS_WITH(gather(x, 1, bad),
                        Contains("gather") && Contains("index 4 is out of bounds"));
    REQUIRE_THROWS_WITH(gather(x, 0, from_vector(std::vector<float>{0, 1}, {1, 2})),
                        Contains("gather: index must be int64, got float32[1, 2]"));
    REQUIRE_THROWS_WITH(
        gather(x, 0, index_tensor({0, 1}, {2})),
        Contains("gather: index int64[2] must have the rank of input float64[3, 4]"));
    REQUIRE_THROWS_WITH(
        gather(x, 0, index_tensor({0, 0, 0, 0, 0}, {1, 5})),
        Contains("gather: index int64[1, 5] is larger than input float64[3, 4] in dim 1"));
    REQUIRE_THROWS_WITH(gather(x, 2, idx), Contains("gather: dim 2 is out of range"));
    REQUIRE_THROWS_WITH(scatter_add(x, 1, bad, ones({1, 2}, {.dtype = DType::Float64})),
                        Contains("scatter_add") && Contains("index 4 is out of bounds"));
    REQUIRE_THROWS_WITH(scatter_add(x, 1, idx, ones({2, 2}, {.dtype = DType::Float64})),
                        Contains("scatter_add: index int64[3, 2] and src float64[2, 2]"));
    REQUIRE_THROWS_WITH(scatter_add(x, 1, to(idx, DType::Float32), ones({3, 2})),
                        Contains("scatter_add: index must be int64"));
  }
}

TEST_CASE("index_select, gather and scatter_add: gradients", "[ops][shape][index][grad]") {
  Tensor x = randn64({3, 4}, 19);
  Tensor rows = index_tensor({2, 0, 2, 1}, {4});  // repeats: gradients must add up
  Tensor idx = index_tensor({0, 2, 2, 1, 0, 1}, {3, 2});
  check_grads([rows](const std::vector<Tensor>& in) { return index_select(in[0], 0, rows); }, {x});
  check_grads(
      [rows](const std::vector<Tensor>& in) {
        return index_select(transpose(in[0], 0, 1), 1, narrow(rows, 0, 0, 2));
      },
      {x});
  check_grads([idx](const std::vector<Tensor>& in) { return gather(in[0], 0, idx); }, {x});
  check_grads(
      [idx](const std::vector<Tensor>& in) { return gather(transpose(in[0], 0, 1), 1, idx); }, {x});
  Tensor src = randn64({3, 2}, 20);
  check_grads([idx](const std::vector<Tensor>& in) { return scatter_add(in[0], 1, idx, in[1]); },
              {x, src});
  // Second order through a product, so the second derivative is not zero.
  check_grads(
      [idx](const std::vector<Tensor>& in) {
        Tensor g = gather(in[0], 1, idx);
        return scatter_add(in[0], 1, idx, mul(g, g));
      },
      {x});
}

// ---------------------------------------------------------------------------
// masked_fill / masked_select
// ---------------------------------------------------------------------------

TEST_CASE("masked_fill and masked_select: values", "[ops][shape][index]") {
  Tensor x = iota({3, 4});
  std::vector<bool> mv{true, false, false, true};
  Tensor mask = from_vector(mv, {1, 4});  // broadcasts over rows
  Tensor f = masked_fill(x, mask, -5.0);
  REQUIRE(f.shape() == x.shape());
  std::vector<double> xv = x.to_vector<double>(), fv = f.to_vector<double>();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) REQUIRE(fv[i * 4 + j] == (mv[j] ? -5.0 : xv[i * 4 + j]));
  Tensor xi = from_vector(std::vector<int64_t>{1, 2, 3, 4}, {4});
  REQUIRE(masked_fill(xi, from_vector(mv), 9).to_vector<int64_t>() ==
          std::vector<int64_t>{9, 2, 3, 9});
  REQUIRE(masked_fill(xi, from_vector(mv), 9).dtype() == DType::Int64);

  Tensor s = masked_select(transpose(x, 0, 1), transpose(mask, 0, 1));  // [4, 3] by [4, 1]
  std::vector<double> expected;
  for (int64_t j = 0; j < 4; ++j)
    for (int64_t i = 0; i < 3; ++i)
      if (mv[j]) expected.push_back(xv[i * 4 + j]);
  REQUIRE(s.shape() == Shape{6});
  REQUIRE(s.to_vector<double>() == expected);
  // The input broadcasts too: a column against a full mask.
  Tensor col = iota({3, 1});
  std::vector<bool> full_mask{true, false, true, true, false, false};
  Tensor picked = masked_select(col, from_vector(full_mask, {3, 2}));
  REQUIRE(picked.to_vector<double>() == std::vector<double>{0, 1, 1});
  REQUIRE(masked_select(x, from_vector(std::vector<bool>(12, false), {3, 4})).shape() == Shape{0});

  SECTION("errors") {
    REQUIRE_THROWS_AS(masked_fill(x, ones({3, 4}), 0), Error);
    REQUIRE_THROWS_WITH(masked_fill(x, ones({3, 4}), 0),
                        Contains("masked_fill: mask must be bool, got float32[3, 4]"));
    REQUIRE_THROWS_WITH(masked_fill(iota({1, 4}), expand(mask, {3, 4}), 0),
                        Contains("masked_fill: mask bool[3, 4] does not broadcast"));
    REQUIRE_THROWS_WITH(masked_fill(x, from_vector(std::vector<bool>{true, false}), 0),
                        Contains("masked_fill: shapes [3, 4] and [2] cannot be broadcast"));
    REQUIRE_THROWS_WITH(masked_select(x, x), Contains("masked_select: mask must be bool"));
  }
}

TEST_CASE("masked_fill and masked_select: gradients", "[ops][shape][index][grad]") {
  Tensor x = randn64({3, 4}, 21);
  Tensor mask = from_vector(std::vector<bool>{true, false, false, true}, {1, 4});
  check_grads([mask](const std::vector<Tensor>& in) { return masked_fill(in[0], mask, 2.0); }, {x});
  check_grads(
      [mask](const std::vector<Tensor>& in) {
        return masked_fill(transpose(in[0], 0, 1), transpose(mask, 0, 1), 0.0);
      },
      {x});
  check_grads([mask](const std::vector<Tensor>& in) { return masked_select(in[0], mask); }, {x});
  // A broadcast input: gradients of repeated elements sum.
  Tensor big_mask = from_vector(std::vector<bool>{true, true, false, true, true, false}, {3, 2});
  check_grads([big_mask](const std::vector<Tensor>& in) { return masked_select(in[0], big_mask); },
              {randn64({3, 1}, 22)});
  check_grads(
      [mask](const std::vector<Tensor>& in) {
        Tensor y = masked_fill(in[0], mask, 1.0);
        return mul(y, y);
      },
      {x});
}

TEST_CASE("indexing ops detect an index modified before backward", "[ops][shape][index][grad]") {
  Tensor x = randn64({3, 4}, 23);
  Tensor idx = index_tensor({0, 2, 1}, {3});
  Tensor y = index_select(x, 1, idx);
  kernels::fill_(idx, 0);  // overwrites the saved index
  REQUIRE_THROWS_WITH(backward(sum(y)), Contains("modified in place") && Contains("index_select"));
}

TEST_CASE("shape ops: backward through zero-size tensors", "[ops][shape][grad]") {
  Tensor x = randn64({0, 3}, 24);
  Tensor mask = from_vector(std::vector<bool>{true, false, true}, {1, 3});
  std::vector<Tensor> outputs = {
      reshape(x, {3, 0}),
      permute(x, {1, 0}),
      slice(x, 1, 0, 2),
      select(x, 1, 2),
      expand(unsqueeze(x, 0), {2, 0, 3}),
      squeeze(x),
      flatten(x),
      cat({x, x}),
      stack({x, x}, 2),
      split(x, 2, 1)[1],
      index_select(x, 1, index_tensor({2, 0}, {2})),
      gather(x, 1, zeros({0, 2}, {.dtype = DType::Int64})),
      scatter_add(x, 1, zeros({0, 2}, {.dtype = DType::Int64}), randn64({0, 2}, 25)),
      masked_fill(x, mask, 1.0),
      masked_select(x, mask),
  };
  for (const Tensor& out : outputs) {
    REQUIRE(out.numel() == 0);
    backward(sum(out));
  }
  REQUIRE(x.grad().shape() == x.shape());

  // A zero-size piece next to a non-empty one gets an empty gradient, and
  // the non-empty one its full gradient.
  Tensor a = randn64({2, 0}, 26);
  Tensor b = randn64({2, 2}, 27);
  backward(sum(mul(cat({a, b}, 1), 3.0)));
  REQUIRE(a.grad().shape() == Shape{2, 0});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{3, 3, 3, 3});
  Tensor c = randn64({2, 3}, 28);
  backward(sum(index_select(c, 1, index_tensor({}, {0}))));
  REQUIRE(c.grad().to_vector<double>() == std::vector<double>(6, 0.0));
}
