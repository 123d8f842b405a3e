// copy (with dtype conversion), fill and where: the elementwise kernels that
// do no arithmetic.
#include <type_traits>

#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

// Converts like PyTorch's .to(dtype): to bool means "is non-zero".
template <typename Out, typename In>
__host__ __device__ inline Out convert(In x) {
  if constexpr (std::is_same_v<Out, bool>) {
    return x != In(0);
  } else {
    return static_cast<Out>(x);
  }
}

// Calls fn with a value of the C++ type of `t` (like tide::dispatch_dtype).
template <typename Fn>
void dispatch(ElemType t, Fn&& fn) {
  switch (t) {
    case ElemType::Bool:
      return fn(bool{});
    case ElemType::Int64:
      return fn(int64_t{});
    case ElemType::Float32:
      return fn(float{});
    case ElemType::Float64:
      return fn(double{});
  }
}

template <typename Out, typename In>
struct Convert {
  __device__ Out operator()(In x) const { return convert<Out>(x); }
};

template <typename T>
struct Fill {
  T* dst;
  T value;
  __device__ void operator()(const int64_t (&o)[1]) const { dst[o[0]] = value; }
};

template <typename T>
struct Where {
  T* dst;
  const bool* cond;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&o)[4]) const {
    dst[o[0]] = cond[o[1]] ? a[o[2]] : b[o[3]];
  }
};

}  // namespace

void copy(const Loop<2>& loop, void* dst, ElemType dst_type, const void* src, ElemType src_type,
          Stream stream) {
  dispatch(dst_type, [&](auto out_tag) {
    using Out = decltype(out_tag);
    dispatch(src_type, [&](auto in_tag) {
      using In = decltype(in_tag);
      map1(loop, static_cast<Out*>(dst), static_cast<const In*>(src), stream, Convert<Out, In>{});
    });
  });
}

void fill(const Loop<1>& loop, void* dst, ElemType type, double value, Stream stream) {
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    for_each(loop, stream, Fill<T>{static_cast<T*>(dst), convert<T>(value)});
  });
}

void where(const Loop<4>& loop, void* dst, const void* cond, const void* a, const void* b,
           ElemType type, Stream stream) {
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    for_each(loop, stream,
             Where<T>{static_cast<T*>(dst), static_cast<const bool*>(cond),
                      static_cast<const T*>(a), static_cast<const T*>(b)});
  });
}

}  // namespace tide::cuda::kern
