// The machine's FP32 FMA peak, measured: every thread runs a loop of
// independent fused multiply-adds on vector registers, so the FMA units never
// wait for a result (latency 4 cycles x 2 units = 8 FMAs in flight; we keep 16
// independent accumulators). The achieved GFLOP/s of the flow benchmarks are
// reported as a fraction of this number.
//
// Both the AVX-512 and the AVX2 loops are compiled (per-function target
// attributes, so the rest of the build needs no -mavx512f) and the widest one
// the CPU supports is used.
#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <cstdint>

namespace tide_bench {

namespace {

constexpr int kAccumulators = 16;

// acc = acc * a + b converges to b / (1 - a) = 1: no overflow, no denormals.
constexpr float kMul = 0.999999f;
constexpr float kAdd = 1e-6f;

volatile float g_sink = 0;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations, float seed) {
  __m512 acc[kAccumulators];
  for (int j = 0; j < kAccumulators; ++j) acc[j] = _mm512_set1_ps(seed + 0.01f * j);
  const __m512 a = _mm512_set1_ps(kMul), b = _mm512_set1_ps(kAdd);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kAccumulators; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 total = acc[0];
  for (int j = 1; j < kAccumulators; ++j) total = _mm512_add_ps(total, acc[j]);
  return _mm512_reduce_add_ps(total);  // used, so the loop cannot be removed
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations, float seed) {
  __m256 acc[kAccumulators];
  for (int j = 0; j < kAccumulators; ++j) acc[j] = _mm256_set1_ps(seed + 0.01f * j);
  const __m256 a = _mm256_set1_ps(kMul), b = _mm256_set1_ps(kAdd);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kAccumulators; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 total = acc[0];
  for (int j = 1; j < kAccumulators; ++j) total = _mm256_add_ps(total, acc[j]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, total);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

}  // namespace

// Peak FP32 GFLOP/s with `threads` threads (every core when 0), from the best
// of a few timed runs of about `seconds` each. Sets *vector_bits to 512 or 256.
double measure_peak_gflops(int threads, double seconds, int* vector_bits) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (vector_bits != nullptr) *vector_bits = avx512 ? 512 : 256;
  if (threads <= 0) threads = omp_get_num_procs();
  const int lanes = avx512 ? 16 : 8;
  const double flops_per_iteration = 2.0 * lanes * kAccumulators;  // an FMA is 2 flops

  auto run = [&](int64_t iterations) {
    float sink = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      const float seed = 0.5f + 0.001f * omp_get_thread_num();
      const float r = avx512 ? fma_loop_avx512(iterations, seed) : fma_loop_avx2(iterations, seed);
#pragma omp atomic
      sink += r;
    }
    const auto stop = std::chrono::steady_clock::now();
    g_sink = sink;  // observable, so the loops cannot be removed
    return std::chrono::duration<double>(stop - start).count();
  };

  // Calibrate the iteration count to the requested duration, then keep the
  // best of five runs (a loaded machine can only slow a run down).
  int64_t iterations = 1 << 16;
  double elapsed = run(iterations);
  while (elapsed < seconds / 4) {
    iterations *= 4;
    elapsed = run(iterations);
  }
  iterations = static_cast<int64_t>(iterations * seconds / elapsed) + 1;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t = run(iterations);
    const double gflops = flops_per_iteration * iterations * threads / t / 1e9;
    if (gflops > best) best = gflops;
  }
  return best;
}

}  // namespace tide_bench
