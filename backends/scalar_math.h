// Scalar formulas that the CPU and CUDA backends share: each is defined once
// here and called from the kernels of both (backends/cpu/*.cpp and
// backends/cuda/*.cu), so the two backends cannot drift apart.
//
// Only formulas built from +, -, *, / and comparisons live here. Those that
// call exp, tanh, erf, ... stay in each backend, because the transcendental
// differs on purpose: the CPU's float32 uses the vectorizable polynomials of
// backends/cpu/vec_math.h, CUDA the device math library.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backends/host_device.h"

namespace tide::scalar {

inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
inline constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;  // sqrt(2 / pi)
inline constexpr double kGeluTanhKappa = 0.044715;
inline constexpr double kSqrtHalf = 0.70710678118654752440084436210485;    // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;  // 1 / sqrt(2 pi)

// max/min that return NaN if either side is NaN (torch.maximum semantics).
template <typename T>
TIDE_HOST_DEVICE_INLINE T nan_max(T a, T b) {
  return a != a ? a : (b != b ? b : (a > b ? a : b));
}
template <typename T>
TIDE_HOST_DEVICE_INLINE T nan_min(T a, T b) {
  return a != a ? a : (b != b ? b : (a < b ? a : b));
}

// One step of a NaN-propagating max (kIsMax) or min reduction (torch.amax /
// torch.amin): the first NaN seen wins, and on a tie the accumulator is kept.
template <bool kIsMax, typename T>
TIDE_HOST_DEVICE_INLINE T nan_extremum_step(T acc, T x) {
  if constexpr (std::is_same_v<T, bool>)
    return kIsMax ? (acc || x) : (acc && x);
  else if (acc != acc || x != x)
    return acc != acc ? acc : x;
  else
    return (kIsMax ? x > acc : x < acc) ? x : acc;
}

// int64 negation, absolute value and square that wrap on overflow (like
// PyTorch) instead of being undefined behaviour: the arithmetic is unsigned.
TIDE_HOST_DEVICE_INLINE int64_t wrapping_neg(int64_t x) {
  return static_cast<int64_t>(uint64_t{0} - static_cast<uint64_t>(x));
}
TIDE_HOST_DEVICE_INLINE int64_t wrapping_abs(int64_t x) {
  return x < 0 ? wrapping_neg(x) : x;
}
TIDE_HOST_DEVICE_INLINE int64_t wrapping_square(int64_t x) {
  return static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(x));
}

// Integer power by repeated squaring (wrapping on overflow, like PyTorch).
// A negative exponent gives the truncated value of 1 / base^|e|: 1 for base 1,
// +-1 for base -1, else 0.
TIDE_HOST_DEVICE_INLINE int64_t int_pow(int64_t base, int64_t exponent) {
  if (exponent < 0) {
    if (base == 1) return 1;
    if (base == -1) return (exponent & 1) ? -1 : 1;
    return 0;
  }
  uint64_t result = 1, b = static_cast<uint64_t>(base);
  for (uint64_t e = static_cast<uint64_t>(exponent); e != 0; e >>= 1) {
    if (e & 1) result *= b;
    b *= b;
  }
  return static_cast<int64_t>(result);
}

// max(x, 0) that keeps NaN (x < 0 is false for NaN).
template <typename T>
TIDE_HOST_DEVICE_INLINE T relu(T x) {
  return x < T(0) ? T(0) : x;
}

// Backward formulas g * f'(x), with x the input (relu_grad) or y = f(x) the
// forward output (the *_from_output ones).

// 0 at x == 0, like PyTorch's threshold_backward.
template <typename T>
TIDE_HOST_DEVICE_INLINE T relu_grad(T g, T x) {
  return x <= T(0) ? T(0) : g;
}
template <typename T>
TIDE_HOST_DEVICE_INLINE T sigmoid_grad_from_output(T g, T y) {
  return g * (T(1) - y) * y;
}
template <typename T>
TIDE_HOST_DEVICE_INLINE T tanh_grad_from_output(T g, T y) {
  return g * (T(1) - y * y);
}
// y > 0 iff x > 0; below, y = s*a*(e^x - 1), so f'(x) = s*a*e^x = y + s*a.
template <typename T>
TIDE_HOST_DEVICE_INLINE T selu_grad_from_output(T g, T y) {
  return y > T(0) ? g * T(kSeluScale) : g * (y + T(kSeluScale * kSeluAlpha));
}

}  // namespace tide::scalar
