// random: fills contiguous dst from the Philox 4x32-10 stream. Element i uses
// counter block offset + i (see backends/philox.h), so every element is computed
// independently and the result is the same for any thread count or backend.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/philox.h"

namespace tide::cpu {

namespace {

// Philox costs ~10 multiply rounds per element: worth threads early.
constexpr int64_t kRandomGrain = 8192;

// out[i] = f(first + i): independent elements with no branches (philox.h is
// written for this), so the compiler vectorizes the whole generator.
template <typename T, typename F>
TIDE_VECTOR_CLONES void fill_run_indexed(T* out, uint64_t first, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(first + static_cast<uint64_t>(i));
}

template <typename T, typename F>
void fill_indexed(const ArrayView& dst, F f) {
  T* out = dst.ptr<T>();
  parallel_for(dst.numel(), kRandomGrain, [&](int64_t begin, int64_t end) {
    fill_run_indexed(out + begin, static_cast<uint64_t>(begin), end - begin, f);
  });
}

}  // namespace

void CpuBackend::random(const ArrayView& dst, Distribution dist, double a, double b, uint64_t seed,
                        uint64_t offset) {
  checks::check_random(dst, dist);
  if (dst.numel() == 0) return;
  dispatch_dtype(dst.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (dist) {
      case Distribution::Uniform:
        if constexpr (std::is_floating_point_v<T>) {
          // Rounding a double just below b to float32 can give b itself; keep
          // the interval half-open.
          const T hi = T(b) > T(a) ? std::nextafter(T(b), T(a)) : T(b);
          fill_indexed<T>(dst, [=](uint64_t i) {
            T v = T(a + (b - a) * philox::uniform(seed, offset + i));
            return v > hi ? hi : v;
          });
        }
        break;
      case Distribution::Normal:
        if constexpr (std::is_floating_point_v<T>) {
          fill_indexed<T>(dst,
                          [=](uint64_t i) { return T(a + b * philox::normal(seed, offset + i)); });
        }
        break;
      case Distribution::Bernoulli:
        fill_indexed<T>(dst, [=](uint64_t i) { return T(philox::uniform(seed, offset + i) < a); });
        break;
      case Distribution::RandInt:
        if constexpr (!std::is_same_v<T, bool>) {
          fill_indexed<T>(dst, [=](uint64_t i) {
            return T(a + std::floor(philox::uniform(seed, offset + i) * (b - a)));
          });
        }
        break;
    }
  });
}

}  // namespace tide::cpu
