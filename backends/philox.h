// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator. Output block i is a pure function of
// (key, counter = i), so any element of a random tensor can be computed
// independently: by any thread, on any device, in any order.
//
// How Tide maps blocks to elements (shared by every backend):
//   element i of a random fill uses block (offset + i) and its first two words
//   u0, u1 as one 64-bit value; uniforms take its top 53 bits as a double in
//   [0, 1); normals use Box-Muller on two such doubles built from (u0,u1) and
//   (u2,u3). This wastes part of each block but keeps the mapping simple.
//
// Same numbers on every device: the Box-Muller log and cosine below are built
// from +, -, *, / and sqrt only, which IEEE 754 rounds identically everywhere,
// instead of the math library's log and cos, whose last bit differs between
// glibc and CUDA. The files that call this are compiled without fused
// multiply-add contraction (-ffp-contract=off on the host, -fmad=false for
// nvcc; see CMakeLists.txt), so each operation rounds the same way too.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backends/host_device.h"

namespace tide::philox {

struct Block {
  uint32_t x[4];
};

TIDE_HOST_DEVICE inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The 10-round Philox 4x32 bijection of a 128-bit counter under a 64-bit key.
TIDE_HOST_DEVICE inline Block generate(uint64_t key, uint64_t counter) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, hi0, lo0);
    mulhilo(kMul1, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kWeyl0, k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// A double in [0, 1) from the top 53 bits of (hi, lo).
TIDE_HOST_DEVICE inline double to_unit(uint32_t hi, uint32_t lo) {
  uint64_t bits = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

TIDE_HOST_DEVICE inline double uniform(uint64_t key, uint64_t counter) {
  Block b = generate(key, counter);
  return to_unit(b.x[0], b.x[1]);
}

// log(u) for u in [2^-53, 1] (normal doubles): u = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| <=
// 0.172, by its odd series to s^23 (truncation below 1e-19).
TIDE_HOST_DEVICE inline double portable_log(double u) {
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;  // m in [1, 2)
  double m;
  memcpy(&m, &bits, sizeof m);
  const bool halve = m > 1.4142135623730950488;  // a select, not a branch: loops vectorize
  m = halve ? m * 0.5 : m;
  e += halve ? 1 : 0;
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double series = 1.0 / 23;
  for (int k = 21; k >= 1; k -= 2) series = series * s2 + 1.0 / k;
  // ln 2 split so that e * kLn2Hi is exact (kLn2Hi has 32 significant bits).
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  return e * kLn2Hi + (e * kLn2Lo + 2.0 * s * series);
}

// cos(2 pi u) for u in [0, 1): reduced exactly (Sterbenz) to w in [0, 1/8]
// and evaluated as cos or sin of 2 pi w by their Taylor polynomials on
// [0, pi/4] in Horner form (truncation below 1e-17). Both polynomials are
// computed and one is selected, with no branches: the CPU loop over a random
// fill then vectorizes, and GPU threads do not diverge.
TIDE_HOST_DEVICE inline double portable_cos_2pi(double u) {
  // (-1)^k / (2k)! and (-1)^k / (2k+1)!, k = 0..9.
  constexpr double kCos[10] = {1.0,
                               -5.00000000000000000000e-1,
                               4.16666666666666666667e-2,
                               -1.38888888888888888889e-3,
                               2.48015873015873015873e-5,
                               -2.75573192239858906526e-7,
                               2.08767569878680989792e-9,
                               -1.14707455977297247139e-11,
                               4.77947733238738529744e-14,
                               -1.56192069685862264622e-16};
  constexpr double kSin[10] = {1.0,
                               -1.66666666666666666667e-1,
                               8.33333333333333333333e-3,
                               -1.98412698412698412698e-4,
                               2.75573192239858906526e-6,
                               -2.50521083854417187751e-8,
                               1.60590438368216145994e-10,
                               -7.64716373181981647590e-13,
                               2.81145725434552076320e-15,
                               -8.22063524662432971696e-18};
  double w = u > 0.5 ? 1.0 - u : u;  // cos(2 pi u) = cos(2 pi (1 - u)); w in [0, 1/2]
  const double sign = w > 0.25 ? -1.0 : 1.0;
  w = w > 0.25 ? 0.5 - w : w;      // cos(2 pi w) = -cos(2 pi (1/2 - w))
  const bool use_sin = w > 0.125;  // cos(2 pi w) = sin(2 pi (1/4 - w))
  w = use_sin ? 0.25 - w : w;
  const double x = 6.283185307179586476925 * w, x2 = x * x;
  double c = kCos[9], s = kSin[9];
  for (int k = 8; k >= 0; --k) {
    c = c * x2 + kCos[k];
    s = s * x2 + kSin[k];
  }
  return sign * (use_sin ? x * s : c);
}

// A standard normal by Box-Muller (the cosine branch), with u1 kept away from 0.
TIDE_HOST_DEVICE inline double normal(uint64_t key, uint64_t counter) {
  Block b = generate(key, counter);
  double u1 = 1.0 - to_unit(b.x[0], b.x[1]);  // (0, 1]
  double u2 = to_unit(b.x[2], b.x[3]);
  return std::sqrt(-2.0 * portable_log(u1)) * portable_cos_2pi(u2);
}

}  // namespace tide::philox
