// random: fills contiguous dst from the Philox 4x32-10 stream, mirroring
// backends/cpu/random.cpp element for element (element i uses counter block
// offset + i; backends/philox.h is shared by both backends).
//
// Bit-exactness: the double arithmetic that maps a counter block to a value
// is written with _rn intrinsics, so nvcc cannot fuse a multiply and an add
// into an FMA (which rounds once instead of twice and would differ from the
// CPU), and the file is compiled with -fmad=false (CMakeLists.txt) for the
// arithmetic inside backends/philox.h. Normal's log and cos there are built
// from +, -, *, / and sqrt only (all correctly rounded on both sides), so
// every distribution gives the CPU's numbers bit for bit.
#include <type_traits>

#include "backends/cuda/device.cuh"
#include "backends/philox.h"

namespace tide::cuda::kern {

namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads)
    random_kernel(T* dst, int64_t n, Distribution dist, double a, double b, T upper, uint64_t seed,
                  uint64_t offset) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const uint64_t counter = offset + static_cast<uint64_t>(i);
    T out{};
    switch (dist) {
      case Distribution::Uniform:
        if constexpr (std::is_floating_point_v<T>) {
          // T(a + (b - a) * u), kept below `upper` (the interval is half-open).
          const double u = philox::uniform(seed, counter);
          const T v = T(__dadd_rn(a, __dmul_rn(__dsub_rn(b, a), u)));
          out = v > upper ? upper : v;
        }
        break;
      case Distribution::Normal:
        if constexpr (std::is_floating_point_v<T>) {
          out = T(__dadd_rn(a, __dmul_rn(b, philox::normal(seed, counter))));
        }
        break;
      case Distribution::Bernoulli:
        out = T(philox::uniform(seed, counter) < a);
        break;
      case Distribution::RandInt:
        if constexpr (!std::is_same_v<T, bool>) {
          const double u = philox::uniform(seed, counter);
          out = T(__dadd_rn(a, floor(__dmul_rn(u, __dsub_rn(b, a)))));
        }
        break;
    }
    dst[i] = out;
  }
}

}  // namespace

void random(void* dst, ElemType type, int64_t n, Distribution dist, double a, double b,
            double upper, uint64_t seed, uint64_t offset, Stream stream) {
  if (n == 0) return;
  const unsigned blocks = blocks_for(n);
  switch (type) {
    case ElemType::Float32:
      return random_kernel<<<blocks, kThreads, 0, stream>>>(
          static_cast<float*>(dst), n, dist, a, b, static_cast<float>(upper), seed, offset);
    case ElemType::Float64:
      return random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<double*>(dst), n, dist, a,
                                                            b, upper, seed, offset);
    case ElemType::Int64:
      return random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<int64_t*>(dst), n, dist, a,
                                                            b, int64_t{0}, seed, offset);
    case ElemType::Bool:
      return random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<bool*>(dst), n, dist, a, b,
                                                            false, seed, offset);
  }
}

}  // namespace tide::cuda::kern
