// Compiler settings for the files that hold CPU kernels: include it first.
#pragma once

// Let GCC assume float comparisons do not trap, so that `c ? x : y` on floats
// becomes a vector blend and loops over vec_math.h functions vectorize, and
// that sqrt need not set errno, so sqrt loops vectorize too. (Tide never reads
// the floating-point exception flags or errno.) IEEE results are unchanged.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif

// The innermost loops are compiled three times, for AVX-512, AVX2+FMA and the
// x86-64 baseline, and the dynamic loader picks the one the CPU supports, so
// one portable binary still runs 16-wide loops on a recent Xeon.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TIDE_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TIDE_VECTOR_CLONES
#endif

// For small helpers that must be inlined into the cloned loops above (an
// out-of-line call would stop the loop from vectorizing).
#define TIDE_ALWAYS_INLINE [[gnu::always_inline]] inline
