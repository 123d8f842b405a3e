// float32 exp, expm1, log, log1p, tanh, erf written with plain arithmetic,
// compares and selects only, so the compiler can vectorize loops that call
// them (a libm call per element cannot be vectorized and costs ~5 ns).
// GCC only turns the float ?: selects into vector blends when it may assume
// that comparisons do not trap, so files using these start with
// #pragma GCC optimize("no-trapping-math") (see kernel_config.h).
// Accuracy: within a few ulp of libm for exp, log and tanh; erf to 2e-7
// absolute. NaN in gives NaN out; overflow gives inf.
//
// The methods are the classic Cephes ones: reduce the argument with exact
// steps (x = n ln2 + r, x = m 2^e), then a short polynomial on a small interval.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

#include "backends/cpu/kernel_config.h"

namespace tide::cpu::vec {

// 2^n for integral n in [-126, 127], built directly in the exponent bits.
TIDE_ALWAYS_INLINE float pow2i(float n) {
  return std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

// Round to the nearest integer with adds only (valid for |x| < 2^22).
TIDE_ALWAYS_INLINE float round_nearest(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (x + kMagic) - kMagic;
}

TIDE_ALWAYS_INLINE float exp(float x) {
  constexpr float kMax = 88.72283935546875f, kMin = -87.33654022216796875f;
  // Clamp (and replace NaN) so the exponent stays representable; the real
  // answer for out-of-range inputs is patched in at the end.
  float xc = x > kMax ? kMax : (x < kMin ? kMin : x);
  xc = x != x ? 0.0f : xc;
  const float n = round_nearest(xc * 1.44269504088896341f);
  // r = x - n ln2, with ln2 split in two so the product is exact.
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n overflows the exponent bits for n = 128 (x just below kMax): apply
  // one factor of 2 separately.
  const bool top = n > 127.0f;
  float y = p * (top ? 2.0f : 1.0f) * pow2i(top ? 127.0f : n);
  y = x > kMax ? std::numeric_limits<float>::infinity() : y;
  y = x < kMin ? 0.0f : y;
  return x != x ? x : y;
}

// exp(x) - 1 without the cancellation near 0: a Taylor polynomial for |x| < 0.5.
TIDE_ALWAYS_INLINE float expm1(float x) {
  float p = 1.0f / 5040;
  p = p * x + 1.0f / 720;
  p = p * x + 1.0f / 120;
  p = p * x + 1.0f / 24;
  p = p * x + 1.0f / 6;
  p = p * x + 0.5f;
  const float small = p * x * x + x;
  const float big = exp(x) - 1.0f;
  return (x > -0.5f && x < 0.5f) ? small : big;
}

TIDE_ALWAYS_INLINE float log(float x) {
  // x = m * 2^e with m in [sqrt(1/2), sqrt(2)); subnormals are scaled up first.
  const bool tiny = x < std::numeric_limits<float>::min();
  const float xs = tiny ? x * 8388608.0f : x;  // 2^23
  const int32_t bits = std::bit_cast<int32_t>(xs);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = std::bit_cast<float>((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  m = low ? m + m - 1.0f : m - 1.0f;
  e = low ? e - 1 : e;
  const float fe = static_cast<float>(e) - (tiny ? 23.0f : 0.0f);
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y = y - 2.12194440e-4f * fe;
  y = y - 0.5f * z;
  y = m + y + 0.693359375f * fe;
  y = x == 0.0f ? -std::numeric_limits<float>::infinity() : y;
  y = x < 0.0f ? std::numeric_limits<float>::quiet_NaN() : y;
  y = x == std::numeric_limits<float>::infinity() ? x : y;
  return x != x ? x : y;
}

// log(1 + x) = log(u) * x / (u - 1) with u = 1 + x: the factor cancels the
// rounding of u exactly (Goldberg's trick).
TIDE_ALWAYS_INLINE float log1p(float x) {
  const float u = 1.0f + x;
  const float d = u - 1.0f;
  const float y = log(u) * (x / (d == 0.0f ? 1.0f : d));
  const float r = d == 0.0f ? x : y;
  return x == std::numeric_limits<float>::infinity() ? x : r;
}

TIDE_ALWAYS_INLINE float tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  // Small |x|: odd polynomial. Otherwise 1 - 2 / (exp(2|x|) + 1).
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float e = exp(2.0f * (ax > 10.0f ? 10.0f : ax));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : big;  // NaN: small is NaN
}

// erf: its Taylor series for |x| < 0.5, else Abramowitz and Stegun 7.1.26,
// 1 - exp(-x^2) * (polynomial in t = 1 / (1 + p|x|)); absolute error < 3e-7.
TIDE_ALWAYS_INLINE float erf(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  float series = -1.0f / 1320.0f;       // -1 / (5! * 11)
  series = series * z + 1.0f / 216.0f;  //  1 / (4! * 9)
  series = series * z - 1.0f / 42.0f;   // -1 / (3! * 7)
  series = series * z + 1.0f / 10.0f;   //  1 / (2! * 5)
  series = series * z - 1.0f / 3.0f;    // -1 / (1! * 3)
  series = series * z + 1.0f;
  const float small = 1.128379167095512574f * x * series;  // 2 / sqrt(pi)
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float q = 1.061405429f;
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  float big = 1.0f - q * t * exp(-z);
  big = x < 0.0f ? -big : big;
  return ax < 0.5f ? small : big;  // NaN: small is NaN
}

}  // namespace tide::cpu::vec
