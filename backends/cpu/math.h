// Scalar formulas shared by several CPU kernels (and matching PyTorch).
#pragma once

#include <cmath>
#include <cstdint>

#include "backends/cpu/vec_math.h"

namespace tide::cpu {

// Transcendentals by element type: float32 uses the vectorizable versions of
// vec_math.h, float64 keeps libm's correctly rounded ones.
namespace fm {
inline float exp(float x) {
  return vec::exp(x);
}
inline double exp(double x) {
  return std::exp(x);
}
inline float expm1(float x) {
  return vec::expm1(x);
}
inline double expm1(double x) {
  return std::expm1(x);
}
inline float log(float x) {
  return vec::log(x);
}
inline double log(double x) {
  return std::log(x);
}
inline float log1p(float x) {
  return vec::log1p(x);
}
inline double log1p(double x) {
  return std::log1p(x);
}
inline float tanh(float x) {
  return vec::tanh(x);
}
inline double tanh(double x) {
  return std::tanh(x);
}
inline float erf(float x) {
  return vec::erf(x);
}
inline double erf(double x) {
  return std::erf(x);
}
}  // namespace fm

inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
inline constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;  // sqrt(2 / pi)
inline constexpr double kGeluTanhKappa = 0.044715;
inline constexpr double kSqrtHalf = 0.70710678118654752440084436210485;    // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;  // 1 / sqrt(2 pi)

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + fm::exp(-x));
}

// max/min that return NaN if either side is NaN (torch.maximum semantics).
template <typename T>
inline T nan_max(T a, T b) {
  return a != a ? a : (b != b ? b : (a > b ? a : b));
}
template <typename T>
inline T nan_min(T a, T b) {
  return a != a ? a : (b != b ? b : (a < b ? a : b));
}

// Integer power by repeated squaring (wrapping on overflow, like PyTorch).
// A negative exponent gives the truncated value of 1 / base^|e|: 1 for base 1,
// +-1 for base -1, else 0.
inline int64_t int_pow(int64_t base, int64_t exponent) {
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

}  // namespace tide::cpu
