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

#if defined(__CUDACC__)
#define TIDE_HOST_DEVICE __host__ __device__
#else
#define TIDE_HOST_DEVICE
#endif

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
  if (m > 1.4142135623730950488) {
    m *= 0.5;
    ++e;
  }
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double series = 1.0 / 23;
  for (int k = 21; k >= 1; k -= 2) series = series * s2 + 1.0 / k;
  // ln 2 split so that e * kLn2Hi is exact (kLn2Hi has 32 significant bits).
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  return e * kLn2Hi + (e * kLn2Lo + 2.0 * s * series);
}

// cos(2 pi u) for u in [0, 1): reduced exactly (Sterbenz) to w in [0, 1/8]
// and evaluated as cos or sin of 2 pi w by Taylor series on [0, pi/4]
// (truncation below 1e-17).
TIDE_HOST_DEVICE inline double portable_cos_2pi(double u) {
  double w = u > 0.5 ? 1.0 - u : u;  // cos(2 pi u) = cos(2 pi (1 - u)); w in [0, 1/2]
  double sign = 1.0;
  if (w > 0.25) {  // cos(2 pi w) = -cos(2 pi (1/2 - w))
    w = 0.5 - w;
    sign = -1.0;
  }
  const bool use_sin = w > 0.125;  // cos(2 pi w) = sin(2 pi (1/4 - w))
  if (use_sin) w = 0.25 - w;
  const double x = 6.283185307179586476925 * w, x2 = x * x;
  double r;
  if (use_sin) {  // x - x^3/3! + ... - x^19/19!
    double term = 1.0;
    for (int k = 19; k >= 3; k -= 2) term = 1.0 - term * x2 / (k * (k - 1));
    r = x * term;
  } else {  // 1 - x^2/2! + ... + x^18/18!
    double term = 1.0;
    for (int k = 18; k >= 2; k -= 2) term = 1.0 - term * x2 / (k * (k - 1));
    r = term;
  }
  return sign * r;
}

// A standard normal by Box-Muller (the cosine branch), with u1 kept away from 0.
TIDE_HOST_DEVICE inline double normal(uint64_t key, uint64_t counter) {
  Block b = generate(key, counter);
  double u1 = 1.0 - to_unit(b.x[0], b.x[1]);  // (0, 1]
  double u2 = to_unit(b.x[2], b.x[3]);
  return std::sqrt(-2.0 * portable_log(u1)) * portable_cos_2pi(u2);
}

}  // namespace tide::philox
