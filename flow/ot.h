// Optimal transport between minibatches (shared/reference/flow-matching.md,
// section 5), written in C++ with no external solver:
//
// - solve_assignment: the exact minimum-cost assignment (the shortest
//   augmenting path method of Jonker and Volgenant, O(n^2 m), in float64).
// - sinkhorn: entropic OT, log-domain stabilised, returning a plan.
// - ot_coupling: pairs a source batch x0 with a data batch x1 under the
//   squared Euclidean cost, either as a permutation (exact assignment: every
//   point used once, x0 kept in order) or by resampling the plan like
//   torchcfm's OTPlanSampler (B cells drawn with replacement from the
//   flattened plan). The two are different and named separately.
//
// Everything here runs on the host in float64; tensors from other devices or
// dtypes are copied and converted.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace tide::flow {

// ---------------------------------------------------------------------------
// Exact assignment
// ---------------------------------------------------------------------------

struct Assignment {
  std::vector<int64_t> column_of_row;  // row i is matched to column_of_row[i]
  double cost = 0;                     // sum of cost(i, column_of_row[i])
};

// Minimum-cost assignment of every row of a rows x cols cost matrix (row-major,
// rows <= cols, finite entries) to a distinct column, in O(rows^2 cols) time.
// Deterministic: when the search meets equally near columns it takes a free
// one first, then the lowest index (so all-equal costs give the identity).
Assignment solve_assignment(std::span<const double> cost, int64_t rows, int64_t cols);
// The same for a 2-D tensor [rows, cols].
Assignment solve_assignment(const Tensor& cost);

// ---------------------------------------------------------------------------
// Entropic OT
// ---------------------------------------------------------------------------

struct SinkhornOptions {
  double epsilon = 0.05;          // entropic regularisation (POT's `reg`)
  int64_t max_iterations = 1000;  // POT's numItermax default
  double tolerance = 1e-9;        // on the L1 error of the row marginals
};

struct SinkhornResult {
  Tensor plan;                // float64 [n, m], columns summing exactly to b
  int64_t iterations = 0;     // full (row and column) updates performed
  double marginal_error = 0;  // sum_i |sum_j plan(i, j) - a_i| at the end
  bool converged = false;     // marginal_error <= tolerance
};

// Minimises <P, C> - epsilon * H(P) over plans with marginals a and b (each
// summing to 1), by alternating updates of the dual potentials f, g:
//   f_i = eps log a_i - eps logsumexp_j((g_j - C_ij) / eps), and likewise g,
// with P_ij = exp((f_i + g_j - C_ij) / eps). Working with potentials instead of
// the kernel exp(-C / eps) keeps small epsilon from underflowing.
SinkhornResult sinkhorn(const Tensor& cost, const std::vector<double>& a,
                        const std::vector<double>& b, const SinkhornOptions& options = {});
// Uniform marginals 1/n and 1/m.
SinkhornResult sinkhorn(const Tensor& cost, const SinkhornOptions& options = {});

// ---------------------------------------------------------------------------
// Minibatch coupling
// ---------------------------------------------------------------------------

// C_ij = ||x_i - y_j||^2 for x [n, ...] and y [m, ...] with the same trailing
// shape (rows are flattened), as float64 [n, m]. Computed as a sum of squared
// differences, not |x|^2 + |y|^2 - 2 x.y, so it is exact for nearby points.
Tensor squared_distances(const Tensor& x, const Tensor& y);

enum class OTSolver { Exact, Sinkhorn };
enum class CouplingMode {
  PlanResample,  // draw B (i, j) cells from the plan, with replacement (torchcfm)
  Permutation,   // the exact assignment itself: x0 in order, x1 permuted
};

struct OTCouplingOptions {
  OTSolver solver = OTSolver::Exact;
  CouplingMode mode = CouplingMode::PlanResample;
  SinkhornOptions sinkhorn = {};  // used by OTSolver::Sinkhorn
};

// Row indices into x0 and x1 (int64 [B]): pair k is (x0[source[k]], x1[target[k]]).
struct Coupling {
  Tensor source_index;
  Tensor target_index;
};

// Couples two batches of equal shape [B, ...] under the squared Euclidean cost.
// Permutation mode needs the exact solver and uses no randomness; plan
// resampling draws B uniforms from gen.
Coupling ot_coupling(const Tensor& x0, const Tensor& x1, const OTCouplingOptions& options,
                     Generator& gen);

// Draws `count` cells of a plan [n, m] with replacement, each with probability
// proportional to its mass; cell k of the row-major flattening is the pair
// (k / m, k % m). A plan whose total mass is below 1e-8 is replaced by the
// uniform plan (torchcfm's fallback); negative or non-finite entries throw.
Coupling sample_plan(const Tensor& plan, int64_t count, Generator& gen);

}  // namespace tide::flow
