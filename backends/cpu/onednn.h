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

bool try_unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha, double beta);
bool try_matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
                Epilogue epilogue);
bool try_softmax(const ArrayView& dst, const ArrayView& src, bool log);

// Number of primitives (and known failures) currently cached; for tests.
size_t cached_plans();

}  // namespace tide::cpu::onednn
