// Minibatch optimal transport (flow/ot.h) and the exact W2 metric built on it
// (flow/metrics.h). References: brute force over all permutations, textbook
// cases, a plain (kernel-domain) Sinkhorn written here in float64, the
// entropic-gap bound 0 <= <P_eps, C> - OT <= eps log n, sorted matching in 1-D
// and W2 between shifted copies.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <vector>

#include "autograd/ops.h"
#include "flow/metrics.h"
#include "flow/ot.h"

using namespace tide;
using namespace tide::flow;

namespace {

std::vector<double> random_costs(int64_t rows, int64_t cols, uint64_t seed) {
  Generator gen(seed);
  return uniform({rows * cols}, -1.0, 3.0, gen, {.dtype = DType::Float64}).to_vector<double>();
}

// The minimum over all injective assignments of rows to columns.
double brute_force_min(const std::vector<double>& c, int64_t rows, int64_t cols) {
  std::vector<int64_t> columns(cols);
  std::iota(columns.begin(), columns.end(), 0);
  double best = std::numeric_limits<double>::infinity();
  // Every permutation of the columns; its first `rows` entries are an injection.
  do {
    double s = 0;
    for (int64_t i = 0; i < rows; ++i) s += c[i * cols + columns[i]];
    best = std::min(best, s);
  } while (std::next_permutation(columns.begin(), columns.end()));
  return best;
}

void require_valid_assignment(const Assignment& a, const std::vector<double>& c, int64_t rows,
                              int64_t cols) {
  REQUIRE(static_cast<int64_t>(a.column_of_row.size()) == rows);
  std::vector<int> used(cols, 0);
  double s = 0;
  for (int64_t i = 0; i < rows; ++i) {
    int64_t j = a.column_of_row[i];
    REQUIRE((j >= 0 && j < cols));
    REQUIRE(used[j]++ == 0);
    s += c[i * cols + j];
  }
  REQUIRE(a.cost == Approx(s).margin(1e-12));
}

double plan_cost(const Tensor& plan, const Tensor& cost) {
  std::vector<double> p = plan.to_vector<double>(), c = cost.to_vector<double>();
  double s = 0;
  for (size_t k = 0; k < p.size(); ++k) s += p[k] * c[k];
  return s;
}

}  // namespace

// ===========================================================================
// Exact assignment
// ===========================================================================

TEST_CASE("assignment: optimal against brute force for n <= 7", "[flow][ot]") {
  for (int64_t n = 1; n <= 7; ++n) {
    for (uint64_t trial = 0; trial < 6; ++trial) {
      INFO("n = " << n << ", trial " << trial);
      std::vector<double> c = random_costs(n, n, 100 * n + trial);
      Assignment a = solve_assignment(c, n, n);
      require_valid_assignment(a, c, n, n);
      CHECK(a.cost == Approx(brute_force_min(c, n, n)).margin(1e-12));
    }
  }
}

TEST_CASE("assignment: rectangular (rows < cols) against brute force", "[flow][ot]") {
  for (auto [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 4}, {2, 5}, {3, 6}, {4, 7}}) {
    for (uint64_t trial = 0; trial < 4; ++trial) {
      INFO(rows << " x " << cols << ", trial " << trial);
      std::vector<double> c = random_costs(rows, cols, 1000 + 10 * rows + trial);
      Assignment a = solve_assignment(c, rows, cols);
      require_valid_assignment(a, c, rows, cols);
      CHECK(a.cost == Approx(brute_force_min(c, rows, cols)).margin(1e-12));
    }
  }
}

TEST_CASE("assignment: ties, known cases and determinism", "[flow][ot]") {
  SECTION("integer costs with many ties are still optimal") {
    for (uint64_t trial = 0; trial < 10; ++trial) {
      Generator gen(2000 + trial);
      std::vector<int64_t> ints = randint(0, 3, {36}, gen).to_vector<int64_t>();
      std::vector<double> c(ints.begin(), ints.end());
      Assignment a = solve_assignment(c, 6, 6);
      require_valid_assignment(a, c, 6, 6);
      CHECK(a.cost == brute_force_min(c, 6, 6));
      // Deterministic: the same input gives the same matching.
      CHECK(solve_assignment(c, 6, 6).column_of_row == a.column_of_row);
    }
  }
  SECTION("all costs equal: the lowest-index choice at every step is the identity") {
    std::vector<double> c(25, 1.5);
    Assignment a = solve_assignment(c, 5, 5);
    CHECK(a.column_of_row == std::vector<int64_t>{0, 1, 2, 3, 4});
    CHECK(a.cost == 7.5);
  }
  SECTION("textbook cases") {
    // The anti-diagonal is cheaper.
    Assignment a = solve_assignment(tensor({5.0, 1.0, 1.0, 5.0}, {2, 2}));
    CHECK(a.column_of_row == std::vector<int64_t>{1, 0});
    CHECK(a.cost == 2.0);
    // Greedy (row 1 takes its 0 first) is not optimal here: 1 + 2 + 2 = 5.
    Assignment b = solve_assignment(tensor({4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0}, {3, 3}));
    CHECK(b.column_of_row == std::vector<int64_t>{1, 0, 2});
    CHECK(b.cost == 5.0);
    // One row picks its cheapest column; negative costs are fine.
    Assignment c = solve_assignment(tensor({3.0, -2.0, 7.0, -1.0}, {1, 4}));
    CHECK(c.column_of_row == std::vector<int64_t>{1});
    // float32 input is converted.
    CHECK(solve_assignment(tensor({2.f, 1.f, 1.f, 2.f}, {2, 2})).cost == 2.0);
    // Empty problems are trivial.
    CHECK(solve_assignment(std::vector<double>{}, 0, 0).column_of_row.empty());
  }
}

TEST_CASE("assignment: errors", "[flow][ot]") {
  std::vector<double> c(6, 1.0);
  REQUIRE_THROWS_AS(solve_assignment(c, 3, 2), Error);
  REQUIRE_THROWS_WITH(solve_assignment(c, 3, 2), Catch::Contains("solve_assignment") &&
                                                     Catch::Contains("rows (3)") &&
                                                     Catch::Contains("columns (2)"));
  REQUIRE_THROWS_WITH(solve_assignment(c, 2, 2),
                      Catch::Contains("6 costs") && Catch::Contains("2 x 2"));
  c[4] = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(solve_assignment(c, 2, 3), Catch::Contains("cost(1, 1)"));
  REQUIRE_THROWS_WITH(solve_assignment(zeros({2, 2, 2})),
                      Catch::Contains("solve_assignment") && Catch::Contains("[2, 2, 2]"));
}

// ===========================================================================
// Sinkhorn
// ===========================================================================

TEST_CASE("sinkhorn: marginals and agreement with a plain float64 Sinkhorn", "[flow][ot]") {
  const int64_t n = 5, m = 7;
  Generator gen(3000);
  Tensor cost = uniform({n, m}, 0.0, 2.0, gen, {.dtype = DType::Float64});
  std::vector<double> a = {0.1, 0.3, 0.2, 0.25, 0.15};
  std::vector<double> b(m, 1.0 / m);
  const double eps = 0.5;
  SinkhornResult r =
      sinkhorn(cost, a, b, {.epsilon = eps, .max_iterations = 5000, .tolerance = 1e-13});
  REQUIRE(r.converged);
  REQUIRE(r.marginal_error <= 1e-13);
  std::vector<double> p = r.plan.to_vector<double>();
  for (int64_t i = 0; i < n; ++i) {
    double row = 0;
    for (int64_t j = 0; j < m; ++j) row += p[i * m + j];
    CHECK(row == Approx(a[i]).margin(1e-12));
  }
  for (int64_t j = 0; j < m; ++j) {
    double col = 0;
    for (int64_t i = 0; i < n; ++i) col += p[i * m + j];
    CHECK(col == Approx(b[j]).margin(1e-12));
  }
  // Reference: kernel-domain Sinkhorn u = a / (K v), v = b / (K^T u), stable
  // at this epsilon.
  std::vector<double> c = cost.to_vector<double>(), K(n * m), u(n, 1.0), v(m, 1.0);
  for (size_t k = 0; k < K.size(); ++k) K[k] = std::exp(-c[k] / eps);
  for (int it = 0; it < 5000; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < m; ++j) s += K[i * m + j] * v[j];
      u[i] = a[i] / s;
    }
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += K[i * m + j] * u[i];
      v[j] = b[j] / s;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      CHECK(p[i * m + j] == Approx(u[i] * K[i * m + j] * v[j]).margin(1e-12));
}

TEST_CASE("sinkhorn: the entropic cost converges to the exact OT cost", "[flow][ot]") {
  const int64_t n = 6;
  Generator gen(3100);
  Tensor x = randn({n, 2}, gen, {.dtype = DType::Float64});
  Tensor y = randn({n, 2}, gen, {.dtype = DType::Float64});
  Tensor cost = squared_distances(x, y);
  std::vector<double> c = cost.to_vector<double>();
  const double max_cost = *std::max_element(c.begin(), c.end());
  double exact = solve_assignment(cost).cost / n;  // the permutation plan has mass 1/n per cell
  double previous_gap = std::numeric_limits<double>::infinity();
  for (double eps : {1.0, 0.3, 0.1, 0.03, 0.01}) {
    INFO("epsilon " << eps);
    // Small epsilon converges slowly (as in POT); the rows may still be off by
    // delta in L1, which moves the cost by at most delta * max C.
    SinkhornResult r =
        sinkhorn(cost, {.epsilon = eps, .max_iterations = 20000, .tolerance = 1e-12});
    if (eps == 1.0) REQUIRE(r.converged);
    REQUIRE(r.marginal_error < 1e-4);
    double slack = r.marginal_error * max_cost + 1e-9;
    double gap = plan_cost(r.plan, cost) - exact;
    // 0 <= <P_eps, C> - OT <= eps * log n for uniform marginals.
    CHECK(gap >= -slack);
    CHECK(gap <= eps * std::log(static_cast<double>(n)) + slack);
    CHECK(gap <= previous_gap + slack);
    previous_gap = gap;
  }
  CHECK(std::abs(previous_gap) < 0.01 * std::log(6.0));
}

TEST_CASE("sinkhorn: small epsilon does not underflow; reports non-convergence", "[flow][ot]") {
  // exp(-C / eps) underflows to 0 for C / eps > ~745; the log-domain updates
  // do not care.
  Tensor cost = tensor({0.0, 10.0, 10.0, 0.0}, {2, 2});
  SinkhornResult r = sinkhorn(cost, {.epsilon = 1e-3, .max_iterations = 100, .tolerance = 1e-12});
  REQUIRE(r.converged);
  std::vector<double> p = r.plan.to_vector<double>();
  CHECK(p[0] == Approx(0.5));
  CHECK(p[3] == Approx(0.5));
  CHECK(p[1] == Approx(0.0).margin(1e-300));
  for (double v : p) CHECK(std::isfinite(v));

  Generator gen(3200);
  Tensor hard = uniform({8, 8}, 0.0, 1.0, gen, {.dtype = DType::Float64});
  SinkhornResult capped =
      sinkhorn(hard, {.epsilon = 1e-3, .max_iterations = 2, .tolerance = 1e-14});
  CHECK_FALSE(capped.converged);
  CHECK(capped.iterations == 2);
  CHECK(capped.marginal_error > 1e-14);
}

TEST_CASE("sinkhorn: errors", "[flow][ot]") {
  Tensor cost = zeros({2, 3}, {.dtype = DType::Float64});
  REQUIRE_THROWS_WITH(sinkhorn(cost, {0.5, 0.5}, {0.5, 0.5}),
                      Catch::Contains("sinkhorn") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(sinkhorn(cost, {0.5, 0.6}, {0.2, 0.3, 0.5}), Catch::Contains("sums to 1.1"));
  REQUIRE_THROWS_WITH(sinkhorn(cost, {.epsilon = 0.0, .max_iterations = 10, .tolerance = 1e-9}),
                      Catch::Contains("epsilon"));
  REQUIRE_THROWS_WITH(sinkhorn(zeros({4})), Catch::Contains("sinkhorn") && Catch::Contains("[4]"));
}

// ===========================================================================
// Coupling
// ===========================================================================

TEST_CASE("squared_distances: against a loop, rows flattened", "[flow][ot]") {
  Generator gen(4000);
  Tensor x = randn({3, 2, 2}, gen), y = randn({4, 2, 2}, gen, {.dtype = DType::Float64});
  Tensor d = squared_distances(x, y);
  REQUIRE(d.shape() == Shape{3, 4});
  REQUIRE(d.dtype() == DType::Float64);
  std::vector<float> xs = x.to_vector<float>();
  std::vector<double> ys = y.to_vector<double>(), ds = d.to_vector<double>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k)
        s += (xs[i * 4 + k] - ys[j * 4 + k]) * (xs[i * 4 + k] - ys[j * 4 + k]);
      CHECK(ds[i * 4 + j] == Approx(s).epsilon(1e-14));
    }
  // No cancellation between nearby points far from the origin.
  Tensor far = tensor({1e8, 1e8 + 1e-3}, {2, 1});
  // (1e8 + 1e-3 is stored with an error of ~1e-8, so the squared gap is
  // 1e-6 to ~2e-5 relative; the expanded form would lose it entirely.)
  CHECK(squared_distances(far, far).to_vector<double>()[1] == Approx(1e-6).epsilon(1e-4));
  REQUIRE_THROWS_WITH(squared_distances(zeros({3, 2}), zeros({3, 3})),
                      Catch::Contains("squared_distances") && Catch::Contains("[3, 2]") &&
                          Catch::Contains("[3, 3]"));
}

TEST_CASE("ot_coupling: the permutation is the exact assignment", "[flow][ot]") {
  const int64_t n = 7;
  Generator data(4100);
  Tensor x0 = randn({n, 2}, data), x1 = randn({n, 2}, data);
  // The cost computed here, the optimum by brute force.
  std::vector<float> a = x0.to_vector<float>(), b = x1.to_vector<float>();
  std::vector<double> c(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double dx = double(a[2 * i]) - b[2 * j], dy = double(a[2 * i + 1]) - b[2 * j + 1];
      c[i * n + j] = dx * dx + dy * dy;
    }
  Generator gen(1);
  GeneratorState before = gen.state();
  Coupling p = ot_coupling(
      x0, x1, {.solver = OTSolver::Exact, .mode = CouplingMode::Permutation, .sinkhorn = {}}, gen);
  CHECK(gen.state() == before);  // no randomness
  std::vector<int64_t> src = p.source_index.to_vector<int64_t>(),
                       dst = p.target_index.to_vector<int64_t>();
  double total = 0;
  std::vector<int64_t> sorted = dst;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < n; ++i) {
    CHECK(src[i] == i);
    CHECK(sorted[i] == i);  // every x1 row used once
    total += c[i * n + dst[i]];
  }
  CHECK(total == Approx(brute_force_min(c, n, n)).margin(1e-9));
}

TEST_CASE("ot_coupling: plan resampling draws pairs from the plan", "[flow][ot]") {
  const int64_t n = 16;
  Generator data(4200);
  Tensor x0 = randn({n, 3}, data, {.dtype = DType::Float64});
  Tensor x1 = randn({n, 3}, data, {.dtype = DType::Float64});
  Assignment exact = solve_assignment(squared_distances(x0, x1));

  SECTION("exact plan: only pairs of the assignment, drawn with replacement") {
    Generator g1(5), g2(5);
    Coupling c = ot_coupling(x0, x1, {}, g1);  // torchcfm's default: exact, resampled
    std::vector<int64_t> src = c.source_index.to_vector<int64_t>(),
                         dst = c.target_index.to_vector<int64_t>();
    REQUIRE(src.size() == static_cast<size_t>(n));
    for (size_t k = 0; k < src.size(); ++k) CHECK(dst[k] == exact.column_of_row[src[k]]);
    // The same draws as resampling the dense plan (permutation / n).
    std::vector<double> dense(n * n, 0.0);
    for (int64_t i = 0; i < n; ++i) dense[i * n + exact.column_of_row[i]] = 1.0 / n;
    Coupling d = sample_plan(from_vector(dense, {n, n}), n, g2);
    CHECK(d.source_index.to_vector<int64_t>() == src);
    CHECK(d.target_index.to_vector<int64_t>() == dst);
    // Deterministic per seed.
    Generator g3(5);
    CHECK(ot_coupling(x0, x1, {}, g3).source_index.to_vector<int64_t>() == src);
  }
  SECTION("frequencies follow the plan") {
    Tensor plan = tensor({0.1, 0.0, 0.2, 0.3, 0.25, 0.15}, {2, 3});
    const int64_t draws = 40000;
    Generator g(6);
    Coupling c = sample_plan(plan, draws, g);
    std::map<std::pair<int64_t, int64_t>, int64_t> counts;
    std::vector<int64_t> src = c.source_index.to_vector<int64_t>(),
                         dst = c.target_index.to_vector<int64_t>();
    for (int64_t k = 0; k < draws; ++k) counts[{src[k], dst[k]}]++;
    std::vector<double> p = plan.to_vector<double>();
    for (int64_t cell = 0; cell < 6; ++cell) {
      double expected = p[cell] * draws;
      double observed = static_cast<double>(counts[{cell / 3, cell % 3}]);
      double sd = std::sqrt(draws * p[cell] * (1 - p[cell]));
      INFO("cell " << cell);
      CHECK(std::abs(observed - expected) <= 5 * sd);
    }
    CHECK(counts[{0, 1}] == 0);  // zero mass is never drawn
  }
  SECTION("a plan of (numerically) zero mass falls back to uniform pairs") {
    Generator g(7);
    Coupling c = sample_plan(zeros({2, 2}, {.dtype = DType::Float64}), 4000, g);
    std::vector<int64_t> src = c.source_index.to_vector<int64_t>();
    double ones = std::count(src.begin(), src.end(), 1);
    CHECK(ones / 4000 == Approx(0.5).margin(0.05));
  }
  SECTION("Sinkhorn plans are resampled; large epsilon approaches independence") {
    Generator g(8);
    OTCouplingOptions options{
        .solver = OTSolver::Sinkhorn,
        .mode = CouplingMode::PlanResample,
        .sinkhorn = {.epsilon = 1e6, .max_iterations = 100, .tolerance = 1e-9}};
    Coupling c = ot_coupling(x0, x1, options, g);
    REQUIRE(c.source_index.shape() == Shape{n});
    // With a huge epsilon the plan is uniform: targets need not follow the assignment.
    std::vector<int64_t> src = c.source_index.to_vector<int64_t>(),
                         dst = c.target_index.to_vector<int64_t>();
    int64_t off_assignment = 0;
    for (int64_t k = 0; k < n; ++k) off_assignment += dst[k] != exact.column_of_row[src[k]];
    CHECK(off_assignment > 0);
  }
}

TEST_CASE("ot_coupling and sample_plan: errors", "[flow][ot]") {
  Generator gen(9);
  REQUIRE_THROWS_WITH(
      ot_coupling(zeros({4, 2}), zeros({5, 2}), {}, gen),
      Catch::Contains("ot_coupling") && Catch::Contains("[4, 2]") && Catch::Contains("[5, 2]"));
  OTCouplingOptions bad{
      .solver = OTSolver::Sinkhorn, .mode = CouplingMode::Permutation, .sinkhorn = {}};
  REQUIRE_THROWS_WITH(ot_coupling(zeros({4, 2}), zeros({4, 2}), bad, gen),
                      Catch::Contains("permutation") && Catch::Contains("exact"));
  REQUIRE_THROWS_WITH(sample_plan(tensor({0.5, -0.1, 0.3, 0.3}, {2, 2}), 3, gen),
                      Catch::Contains("sample_plan") && Catch::Contains("(0, 1)"));
  REQUIRE_THROWS_WITH(sample_plan(zeros({3}), 3, gen), Catch::Contains("[3]"));
}

// ===========================================================================
// W2
// ===========================================================================

TEST_CASE("wasserstein2: closed forms", "[flow][ot][metrics]") {
  SECTION("a shifted, shuffled copy is at distance |shift|") {
    Generator gen(5000);
    Tensor x = randn({40, 2}, gen, {.dtype = DType::Float64});
    Tensor y = add(index_select(x, 0, randperm(40, gen)), tensor({1.5, -2.0}, {1, 2}));
    CHECK(wasserstein2(x, y) == Approx(2.5).epsilon(1e-12));
    CHECK(wasserstein2(x, x) == 0.0);
  }
  SECTION("in 1-D the sorted matching is optimal") {
    Generator gen(5001);
    std::vector<double> a = randn({30}, gen, {.dtype = DType::Float64}).to_vector<double>();
    std::vector<double> b = rand({30}, gen, {.dtype = DType::Float64}).to_vector<double>();
    Tensor x = from_vector(a, {30, 1}), y = from_vector(b, {30, 1});
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    double s = 0;
    for (int i = 0; i < 30; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
    CHECK(wasserstein2(x, y) == Approx(std::sqrt(s / 30)).epsilon(1e-12));
  }
  SECTION("small sets against brute force") {
    Generator gen(5002);
    Tensor x = randn({6, 3}, gen), y = randn({6, 3}, gen);
    std::vector<double> c = squared_distances(x, y).to_vector<double>();
    CHECK(wasserstein2(x, y) == Approx(std::sqrt(brute_force_min(c, 6, 6) / 6)).epsilon(1e-12));
  }
  REQUIRE_THROWS_WITH(wasserstein2(zeros({3, 2}), zeros({4, 2})), Catch::Contains("wasserstein2") &&
                                                                      Catch::Contains("[3, 2]") &&
                                                                      Catch::Contains("[4, 2]"));
}
