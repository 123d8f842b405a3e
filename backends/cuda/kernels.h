// The interface between the CUDA backend's host code and its kernels.
//
// The backend is split in two halves:
//   *.cpp  host code, compiled by the C++ compiler: argument checks (the same
//          tide::Error messages as the CPU backend), planning (coalescing
//          dims, choosing a reduction strategy), memory, streams, cuBLASLt.
//   *.cu   kernels and their launchers, compiled by nvcc.
// This header is all the two halves share. It includes no other Tide header:
// nvcc's C++ front end cannot compile fmt's compile-time format checks, which
// backends/types.h pulls in. So the op enums are mirrored here (cuda_backend.cpp
// static_asserts that every name and value matches backends/backend.h), and
// arrays are described by plain structs.
//
// Launchers only enqueue work on `stream`; the caller checks cudaGetLastError.
#pragma once

#include <cstdint>

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace tide::cuda::kern {

using Stream = CUstream_st*;

inline constexpr int kMaxRank = 8;  // == tide::kMaxDims

// Mirrors tide::DType (same order and values).
enum class ElemType : uint8_t { Bool = 0, Int64 = 1, Float32 = 2, Float64 = 3 };

// Mirrors of the X-macro op lists in backends/backend.h (same order).
enum class Unary : uint8_t {
  Neg,
  Abs,
  Sign,
  Square,
  Exp,
  Log,
  Log1p,
  Expm1,
  Sqrt,
  Rsqrt,
  Reciprocal,
  Sin,
  Cos,
  Tanh,
  Sigmoid,
  Erf,
  Relu,
  Silu,
  GeluErf,
  GeluTanh,
  Elu,
  Selu,
  Softplus,
  PowScalar,
  Clamp,
  Affine,
  LogicalNot
};
enum class Binary : uint8_t {
  Add,
  Sub,
  Mul,
  Div,
  Maximum,
  Minimum,
  Pow,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  LogicalAnd,
  LogicalOr,
  ReluGrad,
  SiluGrad,
  GeluErfGrad,
  GeluTanhGrad,
  EluGrad,
  SeluGrad,
  SoftplusGrad,
  SigmoidGradFromOutput,
  TanhGradFromOutput,
  SeluGradFromOutput
};
enum class Reduce : uint8_t { Sum, Prod, Max, Min };
enum class Epilogue : uint8_t { None, Relu, Tanh, Sigmoid, Selu };
enum class Distribution : uint8_t { Uniform, Normal, Bernoulli, RandInt };

// N operands walked over one shared iteration space, after the host has
// dropped size-1 dims and merged dims that are contiguous in every operand
// (a contiguous tensor becomes rank 1). Passed to kernels by value.
// Element i of the space (row-major) lives at sum_d coord_d * strides[k][d]
// in operand k.
template <int N>
struct Loop {
  int rank = 0;
  int64_t numel = 1;
  bool contiguous = true;  // rank <= 1 and every operand has stride 1: offset == i
  int64_t sizes[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};
};

// --- elementwise (elementwise.cu, unary.cu, binary.cu) ---
// loop operands: dst first, then the inputs in argument order.
void copy(const Loop<2>& loop, void* dst, ElemType dst_type, const void* src, ElemType src_type,
          Stream stream);
void fill(const Loop<1>& loop, void* dst, ElemType type, double value, Stream stream);
// dst and src share `type` (bool for LogicalNot).
void unary(Unary op, const Loop<2>& loop, void* dst, const void* src, ElemType type, double alpha,
           double beta, Stream stream);
// a and b share `type`; dst is bool for comparisons and logical ops.
void binary(Binary op, const Loop<3>& loop, void* dst, const void* a, const void* b, ElemType type,
            double alpha, double beta, Stream stream);
void where(const Loop<4>& loop, void* dst, const void* cond, const void* a, const void* b,
           ElemType type, Stream stream);

// --- reductions and scans (reduce.cu) ---
// How one reduction is split. Each output reduces `reduced.numel` elements in
// `n_chunks` fixed chunks of `chunk` elements (chosen from the shape only, so
// results never depend on the GPU); with more than one chunk, per-chunk
// results go to `partial` ([outputs][n_chunks] accumulators of 8 bytes) and a
// second kernel combines them in chunk order. No float atomics: the result is
// bit-for-bit reproducible.
struct ReducePlan {
  Loop<2> kept;     // operands: dst, src; numel = number of outputs
  Loop<1> reduced;  // operand: src; numel = elements per output
  int64_t chunk = 1;
  int64_t n_chunks = 1;
  // true: a block of 256 threads reduces each (output, chunk) (long contiguous
  // reductions); false: one thread walks each (output, chunk) sequentially
  // (short reductions, or column sums where neighbouring threads read
  // neighbouring columns).
  bool block_per_output = false;
};
inline constexpr int kReduceThreads = 256;
// Sums and products: float types accumulate in double, int64/bool in int64
// (bool inputs give int64 outputs). Max/min keep the input type.
void reduce(Reduce op, const ReducePlan& plan, void* dst, ElemType dst_type, const void* src,
            ElemType src_type, void* partial, Stream stream);

// Walks `lines` (all dims but the scanned one; operands dst, src), each line
// `length` elements with the given strides along the scanned dim.
struct LinePlan {
  Loop<2> lines;
  int64_t length = 0;
  int64_t dst_stride = 0;
  int64_t src_stride = 0;
};
// dst (int64) = index of the first max/min of each line; NaN wins.
void arg_reduce(bool is_max, const LinePlan& plan, int64_t* dst, const void* src, ElemType type,
                Stream stream);
// Sequential cumulative sums per line (double accumulation for float32, as on
// the CPU, so the results are identical). bool src gives int64 dst.
void cumsum(const LinePlan& plan, void* dst, ElemType dst_type, const void* src, ElemType src_type,
            Stream stream);

// --- normalisation (normalization.cu); contiguous rows of `cols` elements ---
void softmax(void* dst, const void* src, int64_t rows, int64_t cols, bool log, ElemType type,
             Stream stream);
void softmax_backward(void* grad_src, const void* grad_dst, const void* dst, int64_t rows,
                      int64_t cols, bool log, ElemType type, Stream stream);
// weight and bias may be null.
void layer_norm(void* dst, void* mean, void* rstd, const void* x, const void* weight,
                const void* bias, int64_t rows, int64_t cols, double eps, ElemType type,
                Stream stream);
// grad_weight / grad_bias may be null; `scratch` holds 2 * cols *
// layer_norm_param_chunks(rows) doubles when either is wanted.
int64_t layer_norm_param_chunks(int64_t rows);
void layer_norm_backward(void* grad_x, void* grad_weight, void* grad_bias, const void* grad_dst,
                         const void* x, const void* mean, const void* rstd, const void* weight,
                         int64_t rows, int64_t cols, ElemType type, double* scratch, Stream stream);

// --- indexing (indexing.cu) ---
// Out-of-range indices are never followed: the kernels skip them and record
// the first one seen in `error` ([0] = 1 once set, [1] = the index value),
// which the host reads back (see CudaBackend::check_index_error).
// dst[p] = src[p with its `dim` coordinate replaced by index[p]]; operands of
// `loop`: dst, index, src (src's stride along dim set to 0).
void gather(const Loop<3>& loop, void* dst, const int64_t* index, const void* src,
            int64_t src_dim_stride, int64_t dim_size, int elem_bytes, int64_t* error,
            Stream stream);
// Records the first index outside [0, size) of the int64 array in `loop`.
void check_indices(const Loop<1>& loop, const int64_t* index, int64_t size, int64_t* error,
                   Stream stream);
// For each line (operands: index, src, dst with dst's stride along dim set
// to 0), adds src[j] into dst[index[j]] for j = 0..length-1 in order: one
// thread per line, so no two threads touch the same dst element and the sums
// are in index order (deterministic, and identical to the CPU).
struct ScatterPlan {
  Loop<3> lines;
  int64_t length = 0;
  int64_t index_stride = 0;  // along dim
  int64_t src_stride = 0;    // along dim
  int64_t dst_dim_stride = 0;
  int64_t dim_size = 0;
};
void scatter_add(const ScatterPlan& plan, void* dst, const int64_t* index, const void* src,
                 ElemType type, int64_t* error, Stream stream);

// --- random numbers (random.cu) ---
// Fills n contiguous elements exactly as backends/cpu/random.cpp does.
// `upper` is the largest value a uniform float may take (CPU's nextafter).
void random(void* dst, ElemType type, int64_t n, Distribution dist, double a, double b,
            double upper, uint64_t seed, uint64_t offset, Stream stream);

// --- matmul helpers (matmul_kernels.cu) ---
// dst[p] = epilogue(dst[p] + bias[last coordinate of p]) in place (float
// types); bias may be null. Operand of `loop`: dst; `cols` is dst's last size.
void bias_epilogue(const Loop<1>& loop, void* dst, const void* bias, int64_t cols,
                   Epilogue epilogue, ElemType type, Stream stream);
// int64 matmul (cuBLASLt has none): one thread per output; `batches` walks the
// batch dims (operands dst, a, b); strides in elements.
struct GemmPlan {
  Loop<3> batches;
  int64_t m = 0, n = 0, k = 0;
  int64_t a_row = 0, a_col = 0, b_row = 0, b_col = 0, c_row = 0, c_col = 0;
};
void matmul_int64(const GemmPlan& plan, int64_t* dst, const int64_t* a, const int64_t* b,
                  const int64_t* bias, Stream stream);

}  // namespace tide::cuda::kern
