// Exact log-likelihoods of a continuous normalizing flow, the divergence
// estimators they need, and bits per dimension.
//
// For the flow dx/dt = v(x, t) (t = 0 the source p0, t = 1 the data), the
// log-density along a trajectory obeys d/dt log p_t(x_t) = -div v(x_t, t), so
//
//     log p1(x1) = log p0(x0) - integral_0^1 div v(x_t, t) dt
//
// (shared/reference/flow-matching.md, section 7). log_likelihood() integrates
// the augmented state (x, l) with dl/dt = div v from t = 1 down to t = 0,
// starting at (x1, 0); then log p1(x1) = log p0(x(0)) + l(0).
// sample_with_log_likelihood() integrates the same system forward from a
// source sample, giving each generated point and its log-density in one solve.
//
// Divergence, and what it costs per evaluation of the augmented system:
//   Exact, for a model that knows its structure (VelocityField::
//     velocity_and_divergence; VelocityMLP): one forward pass on the B rows
//     that also carries the d tangent directions dx/dx_i forward through the
//     layers (forward-mode differentiation), so the trace needs one evaluation
//     plus d tangent passes' worth of matrix products, with no graph and no
//     weight gradients. The log_likelihood(VelocityField&, ...) overloads use it.
//   Exact, for any VelocityFn: the batch is replicated d times ([d*B, d]), the field evaluated once
//     on it, and ONE reverse pass with the block one-hot cotangent (block i
//     holds e_i in every row) yields all d vector-Jacobian products; the trace
//     is the sum of their diagonal entries. Arithmetic: d forward + d backward
//     passes' worth, like the usual loop of d autograd.grad calls, but as one
//     large batched pass (better matrix shapes, one graph walk instead of d),
//     and d times the activation memory of a plain evaluation. Exact and
//     deterministic; right for small d (the 2-D and tabular cases).
//   Hutchinson: div v = E[e^T (dv/dx) e] for probes e with E[e e^T] = I. With
//     K probes the batch is replicated K times and one reverse pass gives K
//     unbiased estimates per sample. Cost ~K passes regardless of d, so it is
//     the choice for large d; the probes are drawn once per solve and held
//     fixed over every step and stage (the augmented ODE stays deterministic,
//     which adaptive step control needs), and the spread of the K estimates
//     gives a standard error per sample.
#pragma once

#include <cstdint>
#include <functional>

#include "flow/ode.h"
#include "tensor/generator.h"

namespace tide::flow {

// log p0 of a batch of source points x0 [B, d]: a [B] float64 tensor.
using LogDensityFn = std::function<Tensor(const Tensor& x0)>;

// log N(x; 0, sigma^2 I) per row of x [B, d], computed in float64: the standard
// normal source by default, N(0, sigma_max^2 I) for the variance-exploding path.
Tensor normal_log_density(const Tensor& x, double sigma = 1.0);

enum class Divergence { Exact, Hutchinson };
enum class ProbeKind { Rademacher, Gaussian };

struct LikelihoodOptions {
  // The ODE solver for the augmented state (see SolveOptions).
  Solver solver = Solver::Dopri5;
  int64_t steps = 100;  // fixed-step solvers
  double rtol = 1e-5;   // dopri5; the error control covers x and the log-density
  double atol = 1e-5;
  int64_t max_steps = 100000;
  Divergence divergence = Divergence::Exact;
  // Hutchinson: the number of probes K per sample (K >= 2 for a standard error).
  int64_t probes = 1;
  ProbeKind probe_kind = ProbeKind::Rademacher;
  // Accumulate the divergence and its time integral in float64 even when the
  // state x is float32 (the vector-Jacobian products themselves are computed in
  // the state's dtype). The returned log_p is float64 either way.
  bool accumulate_float64 = true;
  // Hutchinson probes come from `generator` when given, else Generator(seed).
  uint64_t seed = 0;
  Generator* generator = nullptr;
  // The source density: N(0, source_std^2 I) unless source_log_density is set.
  double source_std = 1.0;
  LogDensityFn source_log_density = {};
  // Record the graph through the solve (and differentiate the divergence with
  // create_graph), so log_p can be differentiated with respect to the field's
  // parameters, e.g. for maximum-likelihood training. Costs memory per step.
  bool keep_graph = false;
  // Fixed-step solvers only: integrate with the static, capturable step of
  // SolveOptions::cuda_graph (the time is read from a device tensor; on a
  // CUDA device one step of the augmented system is captured as a CUDA graph
  // and replayed `steps` times; on the CPU it runs eagerly). Same results as
  // without. dopri5 and keep_graph refuse it with tide::Error.
  bool cuda_graph = false;
};

struct LikelihoodResult {
  Tensor log_p;           // [B] float64: log p1(x1), in nats
  Tensor standard_error;  // [B] float64, Hutchinson only: the standard error of
                          // log_p over the K probes (NaN for K = 1)
  Tensor x0;              // [B, d]: the source end of each trajectory
  Tensor x1;              // [B, d]: the data end (the input, or the sample)
  Tensor log_p0;          // [B] float64: log p0(x0)
  int64_t nfe = 0;        // evaluations of the augmented system (each one field
                          // call on a d*B- or K*B-row batch)
  int64_t steps = 0;
  int64_t rejected = 0;
};

// log p1(x1) for a batch x1 [B, d]: integrates from t = 1 down to t = 0.
LikelihoodResult log_likelihood(const VelocityFn& velocity, const Tensor& x1,
                                const LikelihoodOptions& options = {});

// Samples x1 by integrating from x0 [B, d] (drawn from p0 by the caller) at
// t = 0 up to t = 1, with log p1(x1) = log p0(x0) - integral of div v from the
// same integration.
LikelihoodResult sample_with_log_likelihood(const VelocityFn& velocity, const Tensor& x0,
                                            const LikelihoodOptions& options = {});

// --- The divergence estimators, one evaluation at a time -------------------

struct VelocityDivergence {
  Tensor velocity;    // v(x, t) [B, d], x's dtype
  Tensor divergence;  // exact: [B]; Hutchinson: [B, K], one estimate per probe
};

class VelocityField;  // flow/model.h

// The same two integrations for a model: exact divergences come from
// model.velocity_and_divergence() (VelocityMLP's forward-mode pass) unless
// options.keep_graph asks for a differentiable result; Hutchinson and
// keep_graph go through model.as_fn() like the overloads above.
LikelihoodResult log_likelihood(VelocityField& model, const Tensor& x1,
                                const LikelihoodOptions& options = {});
LikelihoodResult sample_with_log_likelihood(VelocityField& model, const Tensor& x0,
                                            const LikelihoodOptions& options = {});

// v and div v at x [B, d], t [B], in one replicated evaluation and one reverse
// pass. The divergence has dtype `accumulate` (float64 or x's dtype).
// create_graph keeps both differentiable (w.r.t. x and the field's parameters).
VelocityDivergence exact_divergence(const VelocityFn& velocity, const Tensor& x, const Tensor& t,
                                    DType accumulate, bool create_graph = false);

// Hutchinson estimates e_k^T (dv/dx) e_k for the probes [K, B, d] (x's dtype).
VelocityDivergence hutchinson_divergence(const VelocityFn& velocity, const Tensor& x,
                                         const Tensor& t, const Tensor& probes, DType accumulate,
                                         bool create_graph = false);

// K probes per sample, [K, B, d]: Rademacher (+-1) or standard Gaussian.
Tensor draw_probes(int64_t probes, int64_t batch, int64_t dim, ProbeKind kind, Generator& gen,
                   DType dtype = DType::Float32);

// --- Bits per dimension (reference section 7.4) ----------------------------

// Uniform dequantisation of 8-bit data: pixel values k in {0, ..., 255} (any
// dtype) become y = (k + u) / 256 with u ~ U[0, 1), so y lies in [0, 1).
Tensor dequantize_uniform(const Tensor& pixels, Generator& gen, DType dtype = DType::Float32);

// Bits per dimension of 8-bit data, per sample, from the log-densities log_p
// [B] (nats) of its dequantised values y = (k + u) / levels after rescaling to
// an interval of width `scaled_width` (z = scaled_width * y + shift):
//   bits/dim = -(log p(z) + D ln(scaled_width)) / (D ln 2) + log2(levels),
// so +8 for a model of [0, 1) data, +7 for [-1, 1). Returns [B] float64. (The
// scalar form of the same formula is metrics.h's dequantized_nll.)
Tensor dequantized_bits_per_dim(const Tensor& log_p, int64_t dims, double scaled_width = 1.0,
                                double levels = 256);

}  // namespace tide::flow
