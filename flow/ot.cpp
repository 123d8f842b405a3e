#include "flow/ot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "tensor/creation.h"

namespace tide::flow {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string describe(const Tensor& x) {
  return x.defined() ? x.describe() : std::string("an undefined tensor");
}

// A 2-D tensor's values as row-major float64.
std::vector<double> matrix_values(const char* op, const Tensor& m, const char* name) {
  TIDE_CHECK(m.defined() && m.dim() == 2 && m.dtype() != DType::Bool,
             "{}: {} must be a numeric 2-D tensor, got {}", op, name, describe(m));
  return m.to_vector<double>();
}

double log_sum_exp(const std::vector<double>& v) {
  double top = *std::max_element(v.begin(), v.end());
  if (top == -kInf) return -kInf;
  double s = 0;
  for (double x : v) s += std::exp(x - top);
  return top + std::log(s);
}

}  // namespace

// ---------------------------------------------------------------------------
// Exact assignment
// ---------------------------------------------------------------------------

Assignment solve_assignment(std::span<const double> cost, int64_t rows, int64_t cols) {
  TIDE_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(cost.size()) == rows * cols,
             "solve_assignment: {} costs do not form a {} x {} matrix", cost.size(), rows, cols);
  TIDE_CHECK(rows <= cols, "solve_assignment: more rows ({}) than columns ({}); transpose the cost",
             rows, cols);
  for (size_t k = 0; k < cost.size(); ++k)
    TIDE_CHECK(std::isfinite(cost[k]), "solve_assignment: cost({}, {}) = {} is not finite",
               k / cols, k % cols, cost[k]);

  // Rows are matched one at a time. Matching row r runs Dijkstra on the reduced
  // costs cost(i, j) - u[i] - v[j] >= 0, from r through the current matching
  // (column j -> its row), until the nearest free column is reached; flipping
  // the matching along that path assigns r and keeps every other row matched.
  // The duals u, v are then shifted so that all reduced costs stay >= 0 and
  // the matched ones 0 (which proves optimality). This is the shortest
  // augmenting path method of Jonker and Volgenant in the form of Crouse
  // (IEEE TAES 2016), which also underlies scipy's linear_sum_assignment.
  std::vector<double> u(rows, 0.0), v(cols, 0.0);
  std::vector<int64_t> col_of_row(rows, -1), row_of_col(cols, -1);
  std::vector<double> distance(cols);    // shortest path length to each column
  std::vector<int64_t> came_from(cols);  // the row the shortest path arrives from
  std::vector<int64_t> unvisited(cols);  // columns not yet reached for good
  std::vector<char> row_visited(rows), col_visited(cols);

  // Warm start for square problems (Jonker and Volgenant's column reduction):
  // v[j] = the column's minimum keeps every reduced cost >= 0, and each row
  // that is the minimum of a still-free column is matched to it at once, so
  // only the remaining rows need a search. (Rectangular problems start from
  // v = 0: there a column left unmatched must keep v[j] = 0 to be optimal.)
  if (rows == cols) {
    for (int64_t j = 0; j < cols; ++j) {
      int64_t argmin = 0;
      for (int64_t k = 1; k < rows; ++k)
        if (cost[k * cols + j] < cost[argmin * cols + j]) argmin = k;
      v[j] = cost[argmin * cols + j];
      if (col_of_row[argmin] < 0) {
        col_of_row[argmin] = j;
        row_of_col[j] = argmin;
      }
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    if (col_of_row[r] >= 0) continue;  // matched by the warm start
    std::fill(distance.begin(), distance.end(), kInf);
    std::fill(row_visited.begin(), row_visited.end(), 0);
    std::fill(col_visited.begin(), col_visited.end(), 0);
    std::iota(unvisited.begin(), unvisited.end(), 0);
    int64_t remaining = cols, i = r, sink = -1;
    double reached = 0;  // length of the path to the last column settled
    while (sink < 0) {
      row_visited[i] = 1;
      const double* row = cost.data() + i * cols;
      int64_t best = -1;
      double lowest = kInf;
      for (int64_t k = 0; k < remaining; ++k) {
        int64_t j = unvisited[k];
        double d = reached + row[j] - u[i] - v[j];
        if (d < distance[j]) {
          distance[j] = d;
          came_from[j] = i;
        }
        // Deterministic ties: prefer a free column (it ends the search), then
        // the lowest column index.
        if (best < 0 || distance[j] < lowest ||
            (distance[j] == lowest &&
             std::pair(row_of_col[j] >= 0, j) <
                 std::pair(row_of_col[unvisited[best]] >= 0, unvisited[best]))) {
          lowest = distance[j];
          best = k;
        }
      }
      reached = lowest;
      int64_t j = unvisited[best];
      col_visited[j] = 1;
      unvisited[best] = unvisited[--remaining];
      if (row_of_col[j] < 0) {
        sink = j;
      } else {
        i = row_of_col[j];
      }
    }
    // Shift the duals of everything the search settled.
    u[r] += reached;
    for (int64_t k = 0; k < rows; ++k)
      if (row_visited[k] && k != r) u[k] += reached - distance[col_of_row[k]];
    for (int64_t j = 0; j < cols; ++j)
      if (col_visited[j]) v[j] -= reached - distance[j];
    // Flip the matching along the path back from the sink to row r.
    for (int64_t j = sink;;) {
      int64_t k = came_from[j];
      row_of_col[j] = k;
      std::swap(col_of_row[k], j);
      if (k == r) break;
    }
  }

  Assignment result;
  result.column_of_row = std::move(col_of_row);
  for (int64_t k = 0; k < rows; ++k) result.cost += cost[k * cols + result.column_of_row[k]];
  return result;
}

Assignment solve_assignment(const Tensor& cost) {
  std::vector<double> values = matrix_values("solve_assignment", cost, "cost");
  return solve_assignment(values, cost.size(0), cost.size(1));
}

// ---------------------------------------------------------------------------
// Sinkhorn
// ---------------------------------------------------------------------------

SinkhornResult sinkhorn(const Tensor& cost, const std::vector<double>& a,
                        const std::vector<double>& b, const SinkhornOptions& options) {
  std::vector<double> c = matrix_values("sinkhorn", cost, "cost");
  const int64_t n = cost.size(0), m = cost.size(1);
  TIDE_CHECK(n > 0 && m > 0, "sinkhorn: the cost matrix {} is empty", cost.describe());
  TIDE_CHECK(static_cast<int64_t>(a.size()) == n && static_cast<int64_t>(b.size()) == m,
             "sinkhorn: marginals of sizes {} and {} do not match the cost matrix {}", a.size(),
             b.size(), cost.describe());
  TIDE_CHECK(options.epsilon > 0, "sinkhorn: epsilon must be positive, got {}", options.epsilon);
  TIDE_CHECK(options.max_iterations >= 1, "sinkhorn: max_iterations must be at least 1, got {}",
             options.max_iterations);
  auto check_marginal = [](const std::vector<double>& w, const char* name) {
    double total = 0;
    for (double x : w) {
      TIDE_CHECK(std::isfinite(x) && x > 0, "sinkhorn: marginal {} has an entry {} (must be > 0)",
                 name, x);
      total += x;
    }
    TIDE_CHECK(std::abs(total - 1.0) < 1e-9, "sinkhorn: marginal {} sums to {}, not 1", name,
               total);
  };
  check_marginal(a, "a");
  check_marginal(b, "b");
  for (double x : c)
    TIDE_CHECK(std::isfinite(x), "sinkhorn: the cost has a non-finite entry {}", x);

  const double eps = options.epsilon;
  std::vector<double> f(n, 0.0), g(m, 0.0), row_lse(n), scratch(std::max(n, m));
  std::vector<double> log_a(n), log_b(m);
  for (int64_t i = 0; i < n; ++i) log_a[i] = std::log(a[i]);
  for (int64_t j = 0; j < m; ++j) log_b[j] = std::log(b[j]);

  // row_lse[i] = logsumexp_j((g_j - C_ij) / eps), so that row i of the plan
  // sums to exp(f_i / eps + row_lse[i]).
  auto update_row_lse = [&] {
    scratch.resize(m);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < m; ++j) scratch[j] = (g[j] - c[i * m + j]) / eps;
      row_lse[i] = log_sum_exp(scratch);
    }
  };
  auto row_error = [&] {
    double err = 0;
    for (int64_t i = 0; i < n; ++i) err += std::abs(std::exp(f[i] / eps + row_lse[i]) - a[i]);
    return err;
  };

  SinkhornResult result;
  update_row_lse();
  for (result.iterations = 0; result.iterations < options.max_iterations;) {
    for (int64_t i = 0; i < n; ++i) f[i] = eps * (log_a[i] - row_lse[i]);
    scratch.resize(n);
    for (int64_t j = 0; j < m; ++j) {
      for (int64_t i = 0; i < n; ++i) scratch[i] = (f[i] - c[i * m + j]) / eps;
      g[j] = eps * (log_b[j] - log_sum_exp(scratch));
    }
    ++result.iterations;
    // The columns are now exact; the rows tell how far from convergence we are.
    update_row_lse();
    result.marginal_error = row_error();
    if (result.marginal_error <= options.tolerance) {
      result.converged = true;
      break;
    }
  }

  std::vector<double> plan(static_cast<size_t>(n * m));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) plan[i * m + j] = std::exp((f[i] + g[j] - c[i * m + j]) / eps);
  result.plan = from_vector(plan, {n, m});
  return result;
}

SinkhornResult sinkhorn(const Tensor& cost, const SinkhornOptions& options) {
  TIDE_CHECK(cost.defined() && cost.dim() == 2, "sinkhorn: cost must be a 2-D tensor, got {}",
             describe(cost));
  std::vector<double> a(cost.size(0), 1.0 / static_cast<double>(cost.size(0)));
  std::vector<double> b(cost.size(1), 1.0 / static_cast<double>(cost.size(1)));
  return sinkhorn(cost, a, b, options);
}

// ---------------------------------------------------------------------------
// Coupling
// ---------------------------------------------------------------------------

Tensor squared_distances(const Tensor& x, const Tensor& y) {
  TIDE_CHECK(x.defined() && y.defined() && x.dim() >= 1 && y.dim() >= 1,
             "squared_distances: need two tensors [n, ...], got {} and {}", describe(x),
             describe(y));
  TIDE_CHECK(x.dtype() != DType::Bool && y.dtype() != DType::Bool,
             "squared_distances: bool tensors {} and {}", x.describe(), y.describe());
  bool same_trailing = x.dim() == y.dim();
  for (int d = 1; same_trailing && d < x.dim(); ++d) same_trailing = x.size(d) == y.size(d);
  TIDE_CHECK(same_trailing, "squared_distances: the points of {} and {} have different shapes",
             x.describe(), y.describe());
  const int64_t n = x.size(0), m = y.size(0);
  const int64_t d = n > 0 ? x.numel() / n : (m > 0 ? y.numel() / m : 0);
  std::vector<double> xs = x.to_vector<double>(), ys = y.to_vector<double>();
  std::vector<double> out(static_cast<size_t>(n * m));
  for (int64_t i = 0; i < n; ++i) {
    const double* xi = xs.data() + i * d;
    for (int64_t j = 0; j < m; ++j) {
      const double* yj = ys.data() + j * d;
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += (xi[k] - yj[k]) * (xi[k] - yj[k]);
      out[i * m + j] = s;
    }
  }
  return from_vector(out, {n, m});
}

Coupling sample_plan(const Tensor& plan, int64_t count, Generator& gen) {
  std::vector<double> p = matrix_values("sample_plan", plan, "plan");
  const int64_t n = plan.size(0), m = plan.size(1);
  TIDE_CHECK(n > 0 && m > 0, "sample_plan: the plan {} is empty", plan.describe());
  TIDE_CHECK(count >= 0, "sample_plan: count must be non-negative, got {}", count);
  std::vector<double> cumulative(p.size());
  double total = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    TIDE_CHECK(std::isfinite(p[k]) && p[k] >= 0,
               "sample_plan: plan entry ({}, {}) = {} is negative or not finite", k / m, k % m,
               p[k]);
    total += p[k];
    cumulative[k] = total;
  }
  if (total < 1e-8) {  // torchcfm falls back to the uniform plan (independent pairs)
    std::iota(cumulative.begin(), cumulative.end(), 1.0);
    total = static_cast<double>(cumulative.size());
  }
  std::vector<double> u = rand({count}, gen, {.dtype = DType::Float64}).to_vector<double>();
  std::vector<int64_t> source(count), target(count);
  for (int64_t k = 0; k < count; ++k) {
    // Inverse CDF: the first cell whose cumulative mass exceeds u * total.
    // Cells of zero mass are never chosen; rounding past the end picks the
    // last cell that has mass.
    auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u[k] * total);
    if (it == cumulative.end())
      it = std::lower_bound(cumulative.begin(), cumulative.end(), cumulative.back());
    int64_t cell = it - cumulative.begin();
    source[k] = cell / m;
    target[k] = cell % m;
  }
  return {from_vector(source, {count}), from_vector(target, {count})};
}

Coupling ot_coupling(const Tensor& x0, const Tensor& x1, const OTCouplingOptions& options,
                     Generator& gen) {
  TIDE_CHECK(x0.defined() && x1.defined() && x0.dim() >= 1 && x0.shape() == x1.shape(),
             "ot_coupling: x0 and x1 must have the same shape [B, ...], got {} and {}",
             describe(x0), describe(x1));
  const int64_t n = x0.size(0);
  TIDE_CHECK(n > 0, "ot_coupling: the batches {} are empty", x0.describe());
  Tensor cost = squared_distances(x0, x1);

  if (options.solver == OTSolver::Sinkhorn) {
    TIDE_CHECK(options.mode == CouplingMode::PlanResample,
               "ot_coupling: the permutation coupling needs the exact solver (Sinkhorn plans are "
               "not permutations)");
    return sample_plan(sinkhorn(cost, options.sinkhorn).plan, n, gen);
  }

  Assignment assignment = solve_assignment(cost);
  if (options.mode == CouplingMode::Permutation) {
    std::vector<int64_t> source(n);
    std::iota(source.begin(), source.end(), 0);
    return {from_vector(source, {n}), from_vector(assignment.column_of_row, {n})};
  }
  // Resampling the exact plan (the permutation scaled by 1/n): its row-major
  // flattening has exactly one cell of mass 1/n per row, in row order, so the
  // inverse CDF of u is row floor(u * n). This is what sample_plan would
  // return for the dense plan, without building it.
  std::vector<double> u = rand({n}, gen, {.dtype = DType::Float64}).to_vector<double>();
  std::vector<int64_t> source(n), target(n);
  for (int64_t k = 0; k < n; ++k) {
    int64_t i = std::min<int64_t>(static_cast<int64_t>(u[k] * static_cast<double>(n)), n - 1);
    source[k] = i;
    target[k] = assignment.column_of_row[i];
  }
  return {from_vector(source, {n}), from_vector(target, {n})};
}

}  // namespace tide::flow
