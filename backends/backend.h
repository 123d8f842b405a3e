// The backend interface: the small, listed set of primitives that a device must
// implement. Everything else in Tide (views, broadcasting, type promotion,
// autograd, composite ops such as var, logsumexp or gelu's gradient) is built
// above this line from these primitives.
//
// Contract shared by every primitive (what the tensor layer guarantees):
//   - All ArrayViews live on the backend's device; `dst` never aliases an input
//     unless a primitive says so.
//   - Elementwise primitives receive inputs already broadcast to dst's shape
//     (broadcast dims have stride 0) and already promoted to the compute dtype.
//   - Strides are in elements and may be anything (negative excluded), including
//     0; dst is freshly allocated and contiguous unless stated otherwise.
//   - Sizes may be zero; a primitive on an empty dst does nothing.
//   - Results do not depend on the thread count (reductions use a fixed
//     blocking), so the same seed gives the same numbers everywhere.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/types.h"

namespace tide {

// A strided window onto device memory: what a primitive reads or writes.
struct ArrayView {
  void* data = nullptr;  // points at element [0, 0, ..., 0]
  DType dtype = DType::Float32;
  Shape shape;
  Shape strides;  // in elements

  int rank() const { return shape.size(); }
  int64_t numel() const { return shape.numel(); }
  bool is_contiguous() const {
    if (numel() == 0) return true;  // nothing to address (PyTorch's convention)
    int64_t expected = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

// ---------------------------------------------------------------------------
// The op lists. Each list is an X-macro: X(Name, "name"). The enums and name
// tables are generated from them, and the static_asserts make sure that adding
// an op without updating the count (and so every table and test) fails to
// compile.
// ---------------------------------------------------------------------------

// dst = f(src; alpha, beta). Float dtypes unless noted (Neg/Abs/Sign/Square
// also accept int64; LogicalNot takes and returns bool).
#define TIDE_UNARY_OPS(X)                                         \
  X(Neg, "neg")                                                   \
  X(Abs, "abs")                                                   \
  X(Sign, "sign")                                                 \
  X(Square, "square")                                             \
  X(Exp, "exp")                                                   \
  X(Log, "log")                                                   \
  X(Log1p, "log1p")                                               \
  X(Expm1, "expm1")                                               \
  X(Sqrt, "sqrt")                                                 \
  X(Rsqrt, "rsqrt")                                               \
  X(Reciprocal, "reciprocal")                                     \
  X(Sin, "sin")                                                   \
  X(Cos, "cos")                                                   \
  X(Tanh, "tanh")                                                 \
  X(Sigmoid, "sigmoid")                                           \
  X(Erf, "erf")                                                   \
  X(Relu, "relu")                                                 \
  X(Silu, "silu")                                                 \
  X(GeluErf, "gelu")       /* x * Phi(x) */                       \
  X(GeluTanh, "gelu_tanh") /* tanh approximation */               \
  X(Elu, "elu")            /* alpha */                            \
  X(Selu, "selu")                                                 \
  X(Softplus, "softplus")    /* alpha = beta, beta = threshold */ \
  X(PowScalar, "pow_scalar") /* x ** alpha */                     \
  X(Clamp, "clamp")          /* clamp to [alpha, beta] */         \
  X(Affine, "affine")        /* alpha * x + beta */               \
  X(LogicalNot, "logical_not")

// dst = f(a, b; alpha, beta). a and b have the same dtype; comparisons and
// logical ops write bool. The *Grad ops are activation derivatives g * f'(x)
// (or g * f'(y) from the output y where noted), which autograd uses as fused
// backward kernels.
#define TIDE_BINARY_OPS(X)                                                            \
  X(Add, "add")                                                                       \
  X(Sub, "sub")                                                                       \
  X(Mul, "mul")                                                                       \
  X(Div, "div")                                                                       \
  X(Maximum, "maximum")                                                               \
  X(Minimum, "minimum")                                                               \
  X(Pow, "pow")                                                                       \
  X(Eq, "eq")                                                                         \
  X(Ne, "ne")                                                                         \
  X(Lt, "lt")                                                                         \
  X(Le, "le")                                                                         \
  X(Gt, "gt")                                                                         \
  X(Ge, "ge")                                                                         \
  X(LogicalAnd, "logical_and")                                                        \
  X(LogicalOr, "logical_or")                                                          \
  X(ReluGrad, "relu_grad")                                                            \
  X(SiluGrad, "silu_grad")                                                            \
  X(GeluErfGrad, "gelu_grad")                                                         \
  X(GeluTanhGrad, "gelu_tanh_grad")                                                   \
  X(EluGrad, "elu_grad") /* alpha */                                                  \
  X(SeluGrad, "selu_grad")                                                            \
  X(SoftplusGrad, "softplus_grad")               /* alpha = beta, beta = threshold */ \
  X(SigmoidGradFromOutput, "sigmoid_grad")       /* b is y = sigmoid(x) */            \
  X(TanhGradFromOutput, "tanh_grad")             /* b is y = tanh(x) */               \
  X(SeluGradFromOutput, "selu_grad_from_output") /* b is y = selu(x) */

// Reductions over the dims where dst has size 1 and src does not.
#define TIDE_REDUCE_OPS(X) \
  X(Sum, "sum")            \
  X(Prod, "prod")          \
  X(Max, "max")            \
  X(Min, "min")

// Activations that matmul may apply to its output (oneDNN post-ops,
// cuBLASLt epilogues). Only those whose derivative is recoverable from the
// output are listed, so a fused Linear+activation can still be trained.
#define TIDE_EPILOGUE_OPS(X) \
  X(None, "none")            \
  X(Relu, "relu")            \
  X(Tanh, "tanh")            \
  X(Sigmoid, "sigmoid")      \
  X(Selu, "selu")

#define TIDE_ENUM_ENTRY(name, str) name,
#define TIDE_NAME_ENTRY(name, str) str,
#define TIDE_COUNT_ENTRY(name, str) +1

enum class UnaryOp : uint8_t { TIDE_UNARY_OPS(TIDE_ENUM_ENTRY) };
enum class BinaryOp : uint8_t { TIDE_BINARY_OPS(TIDE_ENUM_ENTRY) };
enum class ReduceOp : uint8_t { TIDE_REDUCE_OPS(TIDE_ENUM_ENTRY) };
enum class Epilogue : uint8_t { TIDE_EPILOGUE_OPS(TIDE_ENUM_ENTRY) };

inline constexpr int kNumUnaryOps = 0 TIDE_UNARY_OPS(TIDE_COUNT_ENTRY);
inline constexpr int kNumBinaryOps = 0 TIDE_BINARY_OPS(TIDE_COUNT_ENTRY);
inline constexpr int kNumReduceOps = 0 TIDE_REDUCE_OPS(TIDE_COUNT_ENTRY);
inline constexpr int kNumEpilogues = 0 TIDE_EPILOGUE_OPS(TIDE_COUNT_ENTRY);
static_assert(kNumUnaryOps == 27, "update the unary name table users and tests");
static_assert(kNumBinaryOps == 25, "update the binary name table users and tests");
static_assert(kNumReduceOps == 4, "update the reduce name table users and tests");
static_assert(kNumEpilogues == 5, "update the epilogue name table users and tests");

const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);
const char* op_name(Epilogue op);

// True for binary ops that write bool.
inline constexpr bool produces_bool(BinaryOp op) {
  return op >= BinaryOp::Eq && op <= BinaryOp::LogicalOr;
}

// What a device's allocator holds (memory_stats()). bytes_in_use counts blocks
// handed out and not yet returned; bytes_cached counts blocks a caching
// allocator keeps for reuse (0 on the CPU, where malloc does the caching).
struct MemoryStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes_in_use = 0;
  size_t bytes_cached = 0;
  uint64_t num_allocations = 0;  // calls to allocate() since the process started
};

// The distributions the counter-based generator can fill a tensor with.
enum class Distribution : uint8_t {
  Uniform,    // [a, b)
  Normal,     // mean a, standard deviation b
  Bernoulli,  // 1 with probability a (bool, int64 or float dst)
  RandInt,    // integers in [a, b) (int64 or float dst)
};

// A recorded sequence of device work that can be launched again as one unit
// (a CUDA Graph). Replaying reads and writes the same memory the captured work
// did, so inputs are refreshed by copying into the captured tensors.
class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  virtual void replay() = 0;
};

// ---------------------------------------------------------------------------
// The primitives
// ---------------------------------------------------------------------------
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // --- memory ---
  // Returns memory aligned to 64 bytes, or throws tide::Error naming the size.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual MemoryStats memory_stats() const = 0;
  // Sets peak_bytes_in_use to the current bytes_in_use.
  virtual void reset_peak_memory_stats() = 0;
  // Byte copies between this device and the host (same device for CPU).
  virtual void copy_to_host(void* host_dst, const void* src, size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t nbytes) = 0;

  // --- execution ---
  // Waits until all work issued to the device has finished (a no-op on the
  // CPU, whose primitives return when done).
  virtual void synchronize() {}
  // Graph capture: between begin_capture() and end_capture() the work this
  // thread issues is recorded instead of run (and memory allocated meanwhile
  // stays reserved for the graph). Devices without graphs throw tide::Error.
  virtual void begin_capture();
  virtual std::unique_ptr<DeviceGraph> end_capture();

  // --- elementwise ---
  // dst = src converted to dst.dtype; src has dst's shape (stride 0 where broadcast).
  virtual void copy(const ArrayView& dst, const ArrayView& src) = 0;
  // dst = value (converted to dst.dtype). dst may be strided.
  virtual void fill(const ArrayView& dst, double value) = 0;
  virtual void unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha,
                     double beta) = 0;
  virtual void binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                      double alpha, double beta) = 0;
  // dst = cond ? a : b; cond is bool.
  virtual void where(const ArrayView& dst, const ArrayView& cond, const ArrayView& a,
                     const ArrayView& b) = 0;

  // --- reductions and scans ---
  // dst has src's rank; dims where dst has size 1 and src does not are reduced.
  // Sums are accumulated in double for float32 (and pairwise in blocks), so
  // large float32 sums stay accurate.
  virtual void reduce(ReduceOp op, const ArrayView& dst, const ArrayView& src) = 0;
  // Index (int64) of the max (or min) along `dim`; dst has src's rank with
  // size 1 at dim. Ties give the first index; NaN counts as the maximum.
  virtual void arg_reduce(bool is_max, const ArrayView& dst, const ArrayView& src, int dim) = 0;
  virtual void cumsum(const ArrayView& dst, const ArrayView& src, int dim) = 0;

  // --- linear algebra ---
  // dst[..., M, N] = epilogue(a[..., M, K] @ b[..., K, N] + bias[N]).
  // Batch dims of a and b are already broadcast to dst's (stride 0). bias is
  // optional (data == nullptr) and then contiguous of shape [N].
  virtual void matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                      const ArrayView& bias, Epilogue epilogue) = 0;
  // The weight gradients of a Linear layer y = x @ W^T + b, both from one
  // grad_out: weight_grad[N, K] = grad_out[M, N]^T @ input[M, K] and, when
  // its data is non-null, bias_grad[N] = grad_out summed over the M rows (one
  // cuBLASLt call with the BGRADB epilogue). Float dtypes, all the same;
  // grad_out and input may be strided, weight_grad and bias_grad are
  // contiguous. bias_grad is accurate like a matmul with K = M (float32 may
  // accumulate in float32, unlike reduce()). The default composes matmul
  // (over a transposed view, no copy) and reduce; the CPU uses it, CUDA
  // overrides it with one cuBLASLt call and falls back to it.
  virtual void linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                                  const ArrayView& grad_out, const ArrayView& input);

  // --- normalisation ---
  // Softmax (or log-softmax) along the last dim of a contiguous src.
  virtual void softmax(const ArrayView& dst, const ArrayView& src, bool log) = 0;
  // grad_src from grad_dst and the forward output dst (all contiguous).
  virtual void softmax_backward(const ArrayView& grad_src, const ArrayView& grad_dst,
                                const ArrayView& dst, bool log) = 0;
  // Layer norm over the last dim of contiguous x [R, C]: dst = (x - mean) *
  // rstd * weight + bias; writes mean [R] and rstd [R] for the backward.
  // weight and bias are optional (data == nullptr).
  virtual void layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                          const ArrayView& x, const ArrayView& weight, const ArrayView& bias,
                          double eps) = 0;
  // grad_x, and (when their data is non-null) grad_weight, grad_bias.
  virtual void layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_weight,
                                   const ArrayView& grad_bias, const ArrayView& grad_dst,
                                   const ArrayView& x, const ArrayView& mean, const ArrayView& rstd,
                                   const ArrayView& weight) = 0;

  // --- indexing ---  (indices are int64 and are bounds-checked: Error on a bad one)
  // dst = src.index_select(dim, index): dst.shape[dim] == index.numel().
  virtual void index_select(const ArrayView& dst, const ArrayView& src, int dim,
                            const ArrayView& index) = 0;
  // dst[i][j][k] = src[i][index[i][j][k]][k] (for dim = 1); index has dst's shape.
  virtual void gather(const ArrayView& dst, const ArrayView& src, int dim,
                      const ArrayView& index) = 0;
  // dst[i][index[i][j][k]][k] += src[i][j][k] (for dim = 1), in place on dst.
  // Deterministic: contributions are added in index order.
  virtual void scatter_add(const ArrayView& dst, int dim, const ArrayView& index,
                           const ArrayView& src) = 0;

  // --- random numbers ---
  // Fills contiguous dst from the Philox 4x32-10 stream (key = seed); element i
  // uses counter block `offset + i`, so the result is independent of threads and
  // identical on every backend (see backends/philox.h).
  virtual void random(const ArrayView& dst, Distribution dist, double a, double b, uint64_t seed,
                      uint64_t offset) = 0;
};

// The backend for a device. Throws tide::Error if that device is unavailable.
Backend& backend_for(Device device);
// Lets a device backend (the CUDA library) register itself at load time.
void register_backend(DeviceKind kind, Backend* backend);
// Or register a factory that backend_for calls while no backend is registered
// for that kind: the CUDA library registers one at load time, so nothing
// touches the GPU until a CUDA device is first asked for. The factory returns
// the backend for `device` (backend_for then remembers it), or throws
// tide::Error saying why the device is unavailable.
using BackendFactory = Backend& (*)(Device device);
void register_backend_factory(DeviceKind kind, BackendFactory factory);

}  // namespace tide
