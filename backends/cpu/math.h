// Scalar formulas shared by several CPU kernels (and matching PyTorch). Those
// that the CUDA backend shares too live in backends/scalar_math.h.
#pragma once

#include <cmath>

#include "backends/cpu/vec_math.h"
#include "backends/scalar_math.h"

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

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + fm::exp(-x));
}

}  // namespace tide::cpu
