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
inline constexpr int64_t kMatmulMinParallelWork = 64 * 64 * 64;  // else one thread
inline constexpr int64_t kSoftmaxMinElements = 65536;
inline constexpr int64_t kSoftmaxMinRow = 256;
// Binary, eltwise backward, layer norm: in elements (PROVISIONAL).
inline constexpr int64_t kBinaryMinElements = 8192;
inline constexpr int64_t kEltwiseBackwardMinElements = 8192;
inline constexpr int64_t kLayerNormMinElements = 8192;
inline constexpr int64_t kLayerNormMinRow = 64;
// Below these sizes a oneDNN primitive runs on one thread.
inline constexpr int64_t kBinaryMinParallel = 32768;
inline constexpr int64_t kEltwiseMinParallel = 4096;

// Binary (try_binary), eltwise backward (try_eltwise_backward) and layer norm:
// the callers apply the thresholds (in binary.cpp and normalization.cpp, with
// the measured numbers), so a benchmark can time these at any size.
//
// Not routed, with the reason:
//   - Maximum / Minimum and reduce Max / Min: oneDNN 2.6's binary_max and
//     reduction_max return the number when one operand is NaN (vmaxps); Tide
//     propagates NaN, like PyTorch.
//   - reduce Sum / Prod: oneDNN accumulates float32 sums in float32 and splits
//     them by thread; Tide promises float32 sums accumulated in double and
//     results independent of the thread count (reduce.cpp).
//   - SeluGrad: elu backward times a scale needs a second pass (eltwise
//     backward takes no post-ops in 2.6), slower than the one-pass loop.
//   - ReluGrad: oneDNN's relu backward gives NaN for an infinite or NaN g
//     where x < 0 (g * 0); Tide's (and PyTorch's) gives 0.

bool try_unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha, double beta);
bool try_matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
                Epilogue epilogue);
bool try_softmax(const ArrayView& dst, const ArrayView& src, bool log);

// Add, Sub, Mul, Div of float32 tensors: contiguous dst; each input
// contiguous or broadcast (stride 0) in some dims. Elementwise, so the result
// is the same for any thread count.
bool try_binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b);
// The *Grad ops with a matching oneDNN eltwise backward (elu, gelu erf and
// tanh, tanh and sigmoid from the output); all operands contiguous.
// grad_src = grad_dst * f'(x), with x_or_y as binary() gets it.
bool try_eltwise_backward(BinaryOp op, const ArrayView& grad_src, const ArrayView& grad_dst,
                          const ArrayView& x_or_y, double alpha);
// Layer norm over the last dim of a contiguous float32 tensor; weight and bias
// may be null. Writes mean and rstd like the loops do.
bool try_layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                    const ArrayView& x, const ArrayView& weight, const ArrayView& bias, double eps);
// grad_x only (oneDNN's backward_data). The weight and bias gradients stay in
// the caller's loops: oneDNN sums them per thread, so they would depend on the
// thread count.
bool try_layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_dst, const ArrayView& x,
                             const ArrayView& mean, const ArrayView& rstd, const ArrayView& weight);

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
