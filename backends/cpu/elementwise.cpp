// copy, fill and where: the elementwise primitives that do no arithmetic.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cstring>
#include <type_traits>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"

namespace tide::cpu {

namespace {

// Converts like PyTorch's .to(dtype): to bool means "is non-zero".
template <typename Out, typename In>
inline Out convert(In x) {
  if constexpr (std::is_same_v<Out, bool>) {
    return x != In(0);
  } else {
    return static_cast<Out>(x);
  }
}

}  // namespace

void CpuBackend::copy(const ArrayView& dst, const ArrayView& src) {
  check_same_shape("copy", dst, src);
  if (dst.numel() == 0) return;
  dispatch_dtype(dst.dtype, [&](auto out_tag) {
    using Out = decltype(out_tag);
    dispatch_dtype(src.dtype, [&](auto in_tag) {
      using In = decltype(in_tag);
      map1<Out, In>(dst, src, [](In x) { return convert<Out>(x); });
    });
  });
}

void CpuBackend::fill(const ArrayView& dst, double value) {
  if (dst.numel() == 0) return;
  dispatch_dtype(dst.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = convert<T>(value);
    map0<T>(dst, [v] { return v; });
  });
}

void CpuBackend::where(const ArrayView& dst, const ArrayView& cond, const ArrayView& a,
                       const ArrayView& b) {
  checks::check_where(dst, cond, a, b);
  if (dst.numel() == 0) return;
  dispatch_dtype(dst.dtype, [&](auto tag) {
    using T = decltype(tag);
    // A bitwise blend instead of `c ? x : y`: random masks (as in activation
    // backwards) made the branch mispredict on about half of the elements.
    map3<T, bool, T, T>(dst, cond, a, b, [](bool c, T x, T y) {
      using Bits = std::conditional_t<sizeof(T) == 8, uint64_t,
                                      std::conditional_t<sizeof(T) == 4, uint32_t, uint8_t>>;
      Bits bx, by, mask = Bits(0) - Bits(c);
      std::memcpy(&bx, &x, sizeof(T));
      std::memcpy(&by, &y, sizeof(T));
      Bits r = (bx & mask) | (by & ~mask);
      T out;
      std::memcpy(&out, &r, sizeof(T));
      return out;
    });
  });
}

}  // namespace tide::cpu
