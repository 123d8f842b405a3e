// binary: dst = f(a, b; alpha, beta). a and b share a dtype; comparisons and
// logical ops write bool. The *Grad ops are g * f'(x) with a = g and b = x (or
// b = y, the forward output, for the *FromOutput ones), as in PyTorch's
// backward kernels.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/onednn.h"

namespace tide::cpu {

namespace {

[[noreturn]] void fail_dtype(BinaryOp op, const ArrayView& dst, const ArrayView& a,
                             const ArrayView& b) {
  fail("{}: unsupported dtypes (inputs {} and {}, output {})", op_name(op), a.dtype, b.dtype,
       dst.dtype);
}

// Comparisons and logical ops: any input dtype, bool output. They return true
// when they handled op.
template <typename T>
bool compare_or_logical(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b) {
  auto run = [&](auto f) { map2<bool, T, T>(dst, a, b, f); };
  switch (op) {
    case BinaryOp::Eq:
      run([](T x, T y) { return x == y; });
      return true;
    case BinaryOp::Ne:
      run([](T x, T y) { return x != y; });
      return true;
    case BinaryOp::Lt:
      run([](T x, T y) { return x < y; });
      return true;
    case BinaryOp::Le:
      run([](T x, T y) { return x <= y; });
      return true;
    case BinaryOp::Gt:
      run([](T x, T y) { return x > y; });
      return true;
    case BinaryOp::Ge:
      run([](T x, T y) { return x >= y; });
      return true;
    case BinaryOp::LogicalAnd:
      run([](T x, T y) { return x != T(0) && y != T(0); });
      return true;
    case BinaryOp::LogicalOr:
      run([](T x, T y) { return x != T(0) || y != T(0); });
      return true;
    default:
      return false;
  }
}

template <typename T>
void binary_float(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                  T alpha, T beta) {
  auto cheap = [&](auto f) { map2<T, T, T>(dst, a, b, f, kGrainCheap); };
  auto costly = [&](auto f) { map2<T, T, T>(dst, a, b, f, kGrainCostly); };
  switch (op) {
    case BinaryOp::Add:
      return cheap([](T x, T y) { return x + y; });
    case BinaryOp::Sub:
      return cheap([](T x, T y) { return x - y; });
    case BinaryOp::Mul:
      return cheap([](T x, T y) { return x * y; });
    case BinaryOp::Div:
      return cheap([](T x, T y) { return x / y; });
    case BinaryOp::Maximum:
      return cheap([](T x, T y) { return scalar::nan_max(x, y); });
    case BinaryOp::Minimum:
      return cheap([](T x, T y) { return scalar::nan_min(x, y); });
    case BinaryOp::Pow:
      return costly([](T x, T y) { return std::pow(x, y); });
    case BinaryOp::ReluGrad:
      return cheap([](T g, T x) { return scalar::relu_grad(g, x); });
    case BinaryOp::SiluGrad:
      return costly([](T g, T x) {
        T s = sigmoid(x);
        return g * s * (T(1) + x * (T(1) - s));
      });
    case BinaryOp::GeluErfGrad:
      return costly([](T g, T x) {
        T cdf = T(0.5) * (T(1) + fm::erf(x * T(scalar::kSqrtHalf)));
        T pdf = T(scalar::kInvSqrt2Pi) * fm::exp(T(-0.5) * x * x);
        return g * (cdf + x * pdf);
      });
    case BinaryOp::GeluTanhGrad:
      return costly([](T g, T x) {
        T inner = T(scalar::kSqrt2OverPi) * (x + T(scalar::kGeluTanhKappa) * x * x * x);
        T t = fm::tanh(inner);
        T d_inner = T(scalar::kSqrt2OverPi) * (T(1) + T(3 * scalar::kGeluTanhKappa) * x * x);
        return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * d_inner);
      });
    case BinaryOp::EluGrad:
      return costly([alpha](T g, T x) { return x <= T(0) ? g * alpha * fm::exp(x) : g; });
    case BinaryOp::SeluGrad:
      return costly([](T g, T x) {
        return x <= T(0) ? g * T(scalar::kSeluScale * scalar::kSeluAlpha) * fm::exp(x)
                         : g * T(scalar::kSeluScale);
      });
    case BinaryOp::SoftplusGrad:  // alpha = beta, beta = threshold
      return costly(
          [alpha, beta](T g, T x) { return x * alpha > beta ? g : g * sigmoid(x * alpha); });
    case BinaryOp::SigmoidGradFromOutput:
      return cheap([](T g, T y) { return scalar::sigmoid_grad_from_output(g, y); });
    case BinaryOp::TanhGradFromOutput:
      return cheap([](T g, T y) { return scalar::tanh_grad_from_output(g, y); });
    case BinaryOp::SeluGradFromOutput:
      return cheap([](T g, T y) { return scalar::selu_grad_from_output(g, y); });
    default:
      break;
  }
  if (!compare_or_logical<T>(op, dst, a, b)) fail_dtype(op, dst, a, b);
}

// int64 Div is refused: the tensor layer promotes integer division to float32
// before calling, and a division by zero could not be reported from inside a
// parallel loop.
void binary_int64(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b) {
  using T = int64_t;
  auto run = [&](auto f) { map2<T, T, T>(dst, a, b, f); };
  // Wrapping arithmetic through uint64 (signed overflow is undefined in C++).
  using U = uint64_t;
  switch (op) {
    case BinaryOp::Add:
      return run([](T x, T y) { return T(U(x) + U(y)); });
    case BinaryOp::Sub:
      return run([](T x, T y) { return T(U(x) - U(y)); });
    case BinaryOp::Mul:
      return run([](T x, T y) { return T(U(x) * U(y)); });
    case BinaryOp::Maximum:
      return run([](T x, T y) { return x > y ? x : y; });
    case BinaryOp::Minimum:
      return run([](T x, T y) { return x < y ? x : y; });
    case BinaryOp::Pow:
      return run([](T x, T y) { return scalar::int_pow(x, y); });
    default:
      break;
  }
  if (!compare_or_logical<T>(op, dst, a, b)) fail_dtype(op, dst, a, b);
}

// bool arithmetic as in PyTorch: add is "or", mul is "and".
void binary_bool(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b) {
  auto run = [&](auto f) { map2<bool, bool, bool>(dst, a, b, f); };
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Maximum:
      return run([](bool x, bool y) { return x || y; });
    case BinaryOp::Mul:
    case BinaryOp::Minimum:
      return run([](bool x, bool y) { return x && y; });
    default:
      break;
  }
  if (!compare_or_logical<bool>(op, dst, a, b)) fail_dtype(op, dst, a, b);
}

}  // namespace

void CpuBackend::binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                        double alpha, double beta) {
  const DType out_dtype = produces_bool(op) ? DType::Bool : a.dtype;
  if (a.dtype != b.dtype || dst.dtype != out_dtype) fail_dtype(op, dst, a, b);
  check_same_shape(op_name(op), dst, a);
  check_same_shape(op_name(op), dst, b);
  const int64_t n = dst.numel();
  if (n == 0) return;
  switch (a.dtype) {
    case DType::Float32:
      // gelu gradients through oneDNN where it is faster (numbers in onednn.h,
      // also why add, mul, ... stay here).
      if (n >= onednn::kEltwiseBackwardMinElements && onednn::try_eltwise_backward(op, dst, a, b))
        return;
      return binary_float<float>(op, dst, a, b, static_cast<float>(alpha),
                                 static_cast<float>(beta));
    case DType::Float64:
      return binary_float<double>(op, dst, a, b, alpha, beta);
    case DType::Int64:
      return binary_int64(op, dst, a, b);
    case DType::Bool:
      return binary_bool(op, dst, a, b);
  }
}

}  // namespace tide::cpu
