// The only place Tide talks to oneDNN. Each try_* function runs a float32
// primitive through oneDNN when the arguments suit it and returns false
// otherwise, so the caller falls back to its plain loop.
//
// Creating a oneDNN primitive costs tens of microseconds and executing one
// about a microsecond, so:
//   - callers only come here above the size thresholds below (smaller work is
//     faster in the plain loops);
//   - built primitives live in an LRU cache keyed by everything that defines
//     them (op kind, algorithm, dims, strides, alpha/beta, post-op chain), and
//     a primitive oneDNN cannot build is remembered as such.
#pragma once

#include <cstdint>

#include "backends/backend.h"

namespace tide::cpu::onednn {

// Below these sizes the plain loops win (measured on a 2-core AVX-512 Xeon;
// see the backend report). Elementwise: in elements. Matmul: M * N * K.
// Softmax: in elements, and rows must be at least kSoftmaxMinRow long.
inline constexpr int64_t kEltwiseMinElements = 8192;
inline constexpr int64_t kMatmulMinWork = 8192;
// Matmul chunks (onednn.cpp). Up to K = kMatmulSplitExactK every cut of a
// product's rows or columns gives the full product's bits (checked for K of 1
// to 256, plain and transposed operands, cuts into 2 to 16 pieces), so it is
// cut one chunk per thread, each at least kMatmulSplitWork multiply-adds.
// Longer products are cut by shape alone, so that results do not depend on
// the thread count: about kMatmulChunkWork multiply-adds per chunk, as rows
// (64 to 512, at least M / 4) or, for M < 128, 256 columns.
inline constexpr int64_t kMatmulSplitExactK = 256;
inline constexpr int64_t kMatmulSplitWork = int64_t{1} << 18;
inline constexpr int64_t kMatmulChunkWork = int64_t{1} << 19;
inline constexpr int64_t kMatmulChunkRows = 64;
inline constexpr int64_t kMatmulChunkCols = 256;
inline constexpr int64_t kSoftmaxMinElements = 65536;
inline constexpr int64_t kSoftmaxMinRow = 256;
// The thresholds below were measured with bench/bench_onednn.cpp (loops and
// oneDNN interleaved in one run, min of 30 reps, 2 threads, loaded 2-core
// AVX-512 Xeon); oneDNN / loops time at 1K, 16K (256x64), 64K and 1M elements.
//
// gelu_grad 0.80 / 0.65 / 0.62 / 0.60, gelu_tanh_grad 0.85 / 0.69 / 0.60 /
// 0.63 (one run under heavier load: 1.07 / 0.94 / 0.90 / 0.94 for gelu_grad),
// so from 8K elements.
inline constexpr int64_t kEltwiseBackwardMinElements = 8192;
// Layer norm forward with a weight: 12.9 / 1.16 / 0.98 / 0.93 (rows of 64 up
// to 64K, [4096, 256] at 1M; [256, 256]: 0.99). Without weight and bias:
// 14.4 / 1.11 / 0.95 / 1.10, so only the weighted form is routed, from 64K.
inline constexpr int64_t kLayerNormMinElements = 65536;
// Every primitive runs on one thread; larger work is cut into chunks, one
// primitive per chunk on Tide's pool (thread_pool.h), of at least this many
// elements (eltwise, softmax, layer norm; matmul: see above).
inline constexpr int64_t kEltwiseMinParallel = 4096;

// Implemented and tested but not routed, because the loops are as fast or
// faster (numbers as above):
//   - try_binary: add 6.8 / 1.16 / 1.15 / 0.99 (4M: 1.84), mul 7.3 / 1.20 /
//     1.03 / 1.02, div 3.1 / 1.00 / 1.06 / 1.00; broadcast [M, N] + [N]
//     6.1 / 1.49 / 2.42 / 0.92 (4M: 0.99), [M, N] + [M, 1] 7.2 / 2.27 / 1.99 /
//     0.97 (4M: 1.04). Memory bound: one call costs more than it saves.
//   - try_layer_norm_backward: 31 / 1.58 / 1.72 / 1.75 with a weight,
//     37 / 1.65 / 1.88 / 1.88 without (oneDNN 2.6 runs its generic
//     "simple_layer_normalization" code here).
//   - eltwise backward of elu: 1.5 / 1.04 / 0.99 / 1.03 (a tie); of tanh and
//     sigmoid from the output: 6.3 / 1.88 / 2.24 / 1.17 and 5.8 / 1.91 / 2.04 /
//     1.02 (one multiply per element: the call costs more).
// Not routed because oneDNN 2.6's definitions differ from Tide's:
//   - Maximum / Minimum and reduce Max / Min: binary_max and reduction_max
//     return the number when one operand is NaN (vmaxps); Tide propagates NaN,
//     like PyTorch.
//   - reduce Sum / Prod: oneDNN accumulates float32 sums in float32 and splits
//     them by thread; Tide promises float32 sums accumulated in double and
//     results independent of the thread count (reduce.cpp).
//   - ReluGrad: relu backward gives g * 0 = NaN for an infinite or NaN g where
//     x < 0; Tide (and PyTorch's threshold_backward) gives 0.
//   - SeluGrad: needs elu backward plus a scaling pass (eltwise backward takes
//     no post-ops in 2.6).
//
// try_binary, try_eltwise_backward and the layer norm functions take any size:
// the callers apply the thresholds, so the benchmark can time them anywhere.

bool try_unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha, double beta);
bool try_matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
                Epilogue epilogue);
bool try_softmax(const ArrayView& dst, const ArrayView& src, bool log);

// Add, Sub, Mul, Div of float32 tensors: contiguous dst; each input
// contiguous or broadcast (stride 0) in some dims. Elementwise, so the result
// is the same for any thread count.
bool try_binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b);
// GeluErfGrad and GeluTanhGrad (the *Grad ops where oneDNN's eltwise backward
// is faster): grad_src = grad_dst * f'(x), all contiguous.
bool try_eltwise_backward(BinaryOp op, const ArrayView& grad_src, const ArrayView& grad_dst,
                          const ArrayView& x);
// Layer norm over the last dim of a contiguous float32 tensor; weight and bias
// may be null. Writes mean and rstd like the loops do. Each row is one
// thread's work, so the result does not depend on the thread count.
bool try_layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                    const ArrayView& x, const ArrayView& weight, const ArrayView& bias, double eps);
// grad_x only. The weight and bias gradients would stay in the loops: oneDNN
// sums them per thread, so they would depend on the thread count.
bool try_layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_dst, const ArrayView& x,
                             const ArrayView& mean, const ArrayView& rstd, const ArrayView& weight);

// The weight gradients of a Linear layer through inner_product backward
// weights: weight_grad[N, K] = grad_out[M, N]^T @ input[M, K] and, when
// bias_grad.data is set, bias_grad[N] = the row sum of grad_out. Contiguous
// float32 only. Not routed (see the note at the end of matmul.cpp for the
// measurements); the benchmark and tests call it directly.
bool try_linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                            const ArrayView& grad_out, const ArrayView& input);

// Off sends every op to the plain loops (on by default); for benchmarks and
// tests that compare the two paths.
void set_enabled(bool enabled);
bool enabled();

// Number of primitives (and known failures) currently cached; for tests.
size_t cached_plans();
// Number of plans built (or found unbuildable) since the program started; for
// tests: it grows when a call took a oneDNN path with a new key, even when the
// cache is full.
size_t plans_built();

}  // namespace tide::cpu::onednn
