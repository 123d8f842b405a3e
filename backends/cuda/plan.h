// Host-side planning shared by the CUDA backend's .cpp files: turning
// ArrayViews into the plain structs of kernels.h.
#pragma once

#include <array>

#include "backends/backend.h"
#include "backends/cuda/kernels.h"

namespace tide::cuda {

inline kern::ElemType elem(DType t) {
  return static_cast<kern::ElemType>(t);
}

// A Loop over `shape` with one stride list per operand. Size-1 dims are
// dropped and neighbouring dims merged wherever every operand allows it
// (stride[d] == stride[d + 1] * size[d + 1]), so a contiguous tensor becomes
// a rank-1 loop and the kernels divide as little as possible.
template <int N>
kern::Loop<N> make_loop(const Shape& shape, const std::array<const Shape*, N>& strides) {
  kern::Loop<N> loop;
  loop.numel = shape.numel();
  if (loop.numel == 0) return loop;
  // Built innermost first, then reversed.
  int64_t sizes[kMaxDims];
  int64_t st[N][kMaxDims];
  int rank = 0;
  for (int d = shape.size() - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    bool merge = rank > 0;
    for (int k = 0; merge && k < N; ++k)
      merge = (*strides[k])[d] == st[k][rank - 1] * sizes[rank - 1];
    if (merge) {
      sizes[rank - 1] *= shape[d];
    } else {
      sizes[rank] = shape[d];
      for (int k = 0; k < N; ++k) st[k][rank] = (*strides[k])[d];
      ++rank;
    }
  }
  loop.rank = rank;
  for (int i = 0; i < rank; ++i) {
    loop.sizes[i] = sizes[rank - 1 - i];
    for (int k = 0; k < N; ++k) loop.strides[k][i] = st[k][rank - 1 - i];
  }
  loop.contiguous = rank == 0;
  if (rank == 1) {
    loop.contiguous = true;
    for (int k = 0; k < N; ++k) loop.contiguous = loop.contiguous && loop.strides[k][0] == 1;
  }
  return loop;
}

// The loop over one view.
inline kern::Loop<1> loop_of(const ArrayView& v) {
  return make_loop<1>(v.shape, {&v.strides});
}

}  // namespace tide::cuda
