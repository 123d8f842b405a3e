// unary: dst = f(src; alpha, beta). The formulas follow PyTorch's CPU kernels.
#include "backends/cpu/kernel_config.h"  // first: compiler settings for kernels

#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/onednn.h"

namespace tide::cpu {

namespace {

[[noreturn]] void fail_dtype(UnaryOp op, const ArrayView& dst, const ArrayView& src) {
  fail("{}: unsupported dtypes (input {}, output {})", op_name(op), src.dtype, dst.dtype);
}

template <typename T>
void unary_float(UnaryOp op, const ArrayView& dst, const ArrayView& src, T alpha, T beta) {
  // Cheap ops are memory bound; costly ones (a transcendental per element)
  // are worth threads at smaller sizes.
  auto cheap = [&](auto f) { map1<T, T>(dst, src, f, kGrainCheap); };
  auto costly = [&](auto f) { map1<T, T>(dst, src, f, kGrainCostly); };
  switch (op) {
    case UnaryOp::Neg:
      return cheap([](T x) { return -x; });
    case UnaryOp::Abs:
      return cheap([](T x) { return std::abs(x); });
    case UnaryOp::Sign:
      return cheap([](T x) { return T((T(0) < x) - (x < T(0))); });  // NaN -> 0
    case UnaryOp::Square:
      return cheap([](T x) { return x * x; });
    case UnaryOp::Exp:
      return costly([](T x) { return fm::exp(x); });
    case UnaryOp::Log:
      return costly([](T x) { return fm::log(x); });
    case UnaryOp::Log1p:
      return costly([](T x) { return fm::log1p(x); });
    case UnaryOp::Expm1:
      return costly([](T x) { return fm::expm1(x); });
    case UnaryOp::Sqrt:
      return cheap([](T x) { return std::sqrt(x); });
    case UnaryOp::Rsqrt:
      return cheap([](T x) { return T(1) / std::sqrt(x); });
    case UnaryOp::Reciprocal:
      return cheap([](T x) { return T(1) / x; });
    case UnaryOp::Sin:
      return costly([](T x) { return std::sin(x); });
    case UnaryOp::Cos:
      return costly([](T x) { return std::cos(x); });
    case UnaryOp::Tanh:
      return costly([](T x) { return fm::tanh(x); });
    case UnaryOp::Sigmoid:
      return costly([](T x) { return sigmoid(x); });
    case UnaryOp::Erf:
      return costly([](T x) { return fm::erf(x); });
    case UnaryOp::Relu:
      return cheap([](T x) { return scalar::relu(x); });
    case UnaryOp::Silu:
      return costly([](T x) { return x / (T(1) + fm::exp(-x)); });
    case UnaryOp::GeluErf:
      return costly([](T x) { return x * T(0.5) * (T(1) + fm::erf(x * T(scalar::kSqrtHalf))); });
    case UnaryOp::GeluTanh:
      return costly([](T x) {
        T inner = T(scalar::kSqrt2OverPi) * (x + T(scalar::kGeluTanhKappa) * x * x * x);
        return T(0.5) * x * (T(1) + fm::tanh(inner));
      });
    case UnaryOp::Elu:
      return costly([alpha](T x) { return x > T(0) ? x : alpha * fm::expm1(x); });
    case UnaryOp::Selu:
      return costly([](T x) {
        return T(scalar::kSeluScale) * (x > T(0) ? x : T(scalar::kSeluAlpha) * fm::expm1(x));
      });
    case UnaryOp::Softplus:  // alpha = beta, beta = threshold
      return costly([alpha, beta](T x) {
        return x * alpha > beta ? x : fm::log1p(fm::exp(x * alpha)) / alpha;
      });
    case UnaryOp::PowScalar:
      // The exponents PyTorch special-cases, for speed and exact results.
      if (alpha == T(2)) return cheap([](T x) { return x * x; });
      if (alpha == T(3)) return cheap([](T x) { return x * x * x; });
      if (alpha == T(1)) return cheap([](T x) { return x; });
      if (alpha == T(0.5)) return cheap([](T x) { return std::sqrt(x); });
      if (alpha == T(-0.5)) return cheap([](T x) { return T(1) / std::sqrt(x); });
      if (alpha == T(-1)) return cheap([](T x) { return T(1) / x; });
      if (alpha == T(-2)) return cheap([](T x) { return T(1) / (x * x); });
      return costly([alpha](T x) { return std::pow(x, alpha); });
    case UnaryOp::Clamp:  // NaN stays NaN
      return cheap([alpha, beta](T x) { return x < alpha ? alpha : (x > beta ? beta : x); });
    case UnaryOp::Affine:
      return cheap([alpha, beta](T x) { return alpha * x + beta; });
    case UnaryOp::LogicalNot:
      break;
  }
  fail_dtype(op, dst, src);
}

void unary_int64(UnaryOp op, const ArrayView& dst, const ArrayView& src) {
  auto run = [&](auto f) { map1<int64_t, int64_t>(dst, src, f); };
  switch (op) {
    case UnaryOp::Neg:
      return run([](int64_t x) { return scalar::wrapping_neg(x); });
    case UnaryOp::Abs:
      return run([](int64_t x) { return scalar::wrapping_abs(x); });
    case UnaryOp::Sign:
      return run([](int64_t x) { return int64_t((0 < x) - (x < 0)); });
    case UnaryOp::Square:
      return run([](int64_t x) { return scalar::wrapping_square(x); });
    default:
      fail_dtype(op, dst, src);
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha,
                       double beta) {
  const bool bool_op = op == UnaryOp::LogicalNot;
  if (bool_op ? (src.dtype != DType::Bool || dst.dtype != DType::Bool) : src.dtype != dst.dtype)
    fail_dtype(op, dst, src);
  check_same_shape(op_name(op), dst, src);
  const int64_t n = dst.numel();
  if (n == 0) return;
  switch (dst.dtype) {
    case DType::Float32:
      if (n >= onednn::kEltwiseMinElements && onednn::try_unary(op, dst, src, alpha, beta)) return;
      return unary_float<float>(op, dst, src, static_cast<float>(alpha), static_cast<float>(beta));
    case DType::Float64:
      return unary_float<double>(op, dst, src, alpha, beta);
    case DType::Int64:
      return unary_int64(op, dst, src);
    case DType::Bool:
      if (!bool_op) fail_dtype(op, dst, src);
      return map1<bool, bool>(dst, src, [](bool x) { return !x; });
  }
}

}  // namespace tide::cpu
