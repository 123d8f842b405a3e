// unary: dst = f(src; alpha, beta), with the formulas of backends/cpu/unary.cpp.
// One kernel per (op, dtype); each handles strided and contiguous operands.
#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

template <typename T>
void unary_float(Unary op, const Loop<2>& loop, T* d, const T* s, T alpha, T beta, Stream st) {
  auto run = [&](auto f) { map1(loop, d, s, st, f); };
  switch (op) {
    case Unary::Neg:
      return run([] __device__(T x) { return -x; });
    case Unary::Abs:
      return run([] __device__(T x) { return fm::abs(x); });
    case Unary::Sign:
      return run([] __device__(T x) { return T((T(0) < x) - (x < T(0))); });  // NaN -> 0
    case Unary::Square:
      return run([] __device__(T x) { return x * x; });
    case Unary::Exp:
      return run([] __device__(T x) { return fm::exp(x); });
    case Unary::Log:
      return run([] __device__(T x) { return fm::log(x); });
    case Unary::Log1p:
      return run([] __device__(T x) { return fm::log1p(x); });
    case Unary::Expm1:
      return run([] __device__(T x) { return fm::expm1(x); });
    case Unary::Sqrt:
      return run([] __device__(T x) { return fm::sqrt(x); });
    case Unary::Rsqrt:
      return run([] __device__(T x) { return T(1) / fm::sqrt(x); });
    case Unary::Reciprocal:
      return run([] __device__(T x) { return T(1) / x; });
    case Unary::Sin:
      return run([] __device__(T x) { return fm::sin(x); });
    case Unary::Cos:
      return run([] __device__(T x) { return fm::cos(x); });
    case Unary::Tanh:
      return run([] __device__(T x) { return fm::tanh(x); });
    case Unary::Sigmoid:
      return run([] __device__(T x) { return sigmoid(x); });
    case Unary::Erf:
      return run([] __device__(T x) { return fm::erf(x); });
    case Unary::Relu:
      return run([] __device__(T x) { return scalar::relu(x); });
    case Unary::Silu:
      return run([] __device__(T x) { return x / (T(1) + fm::exp(-x)); });
    case Unary::GeluErf:
      return run(
          [] __device__(T x) { return x * T(0.5) * (T(1) + fm::erf(x * T(scalar::kSqrtHalf))); });
    case Unary::GeluTanh:
      return run([] __device__(T x) {
        T inner = T(scalar::kSqrt2OverPi) * (x + T(scalar::kGeluTanhKappa) * x * x * x);
        return T(0.5) * x * (T(1) + fm::tanh(inner));
      });
    case Unary::Elu:
      return run([alpha] __device__(T x) { return x > T(0) ? x : alpha * fm::expm1(x); });
    case Unary::Selu:
      return run([] __device__(T x) {
        return T(scalar::kSeluScale) * (x > T(0) ? x : T(scalar::kSeluAlpha) * fm::expm1(x));
      });
    case Unary::Softplus:  // alpha = beta, beta = threshold
      return run([alpha, beta] __device__(T x) {
        return x * alpha > beta ? x : fm::log1p(fm::exp(x * alpha)) / alpha;
      });
    case Unary::PowScalar:
      // The exponents the CPU (and PyTorch) special-case, so results agree exactly.
      if (alpha == T(2)) return run([] __device__(T x) { return x * x; });
      if (alpha == T(3)) return run([] __device__(T x) { return x * x * x; });
      if (alpha == T(1)) return run([] __device__(T x) { return x; });
      if (alpha == T(0.5)) return run([] __device__(T x) { return fm::sqrt(x); });
      if (alpha == T(-0.5)) return run([] __device__(T x) { return T(1) / fm::sqrt(x); });
      if (alpha == T(-1)) return run([] __device__(T x) { return T(1) / x; });
      if (alpha == T(-2)) return run([] __device__(T x) { return T(1) / (x * x); });
      return run([alpha] __device__(T x) { return fm::pow(x, alpha); });
    case Unary::Clamp:  // NaN stays NaN
      return run(
          [alpha, beta] __device__(T x) { return x < alpha ? alpha : (x > beta ? beta : x); });
    case Unary::Affine:
      return run([alpha, beta] __device__(T x) { return alpha * x + beta; });
    case Unary::LogicalNot:
      return;  // rejected by the host
  }
}

void unary_int64(Unary op, const Loop<2>& loop, int64_t* d, const int64_t* s, Stream st) {
  using T = int64_t;
  auto run = [&](auto f) { map1(loop, d, s, st, f); };
  switch (op) {
    case Unary::Neg:
      return run([] __device__(T x) { return scalar::wrapping_neg(x); });
    case Unary::Abs:
      return run([] __device__(T x) { return scalar::wrapping_abs(x); });
    case Unary::Sign:
      return run([] __device__(T x) { return T((0 < x) - (x < 0)); });
    case Unary::Square:
      return run([] __device__(T x) { return scalar::wrapping_square(x); });
    default:
      return;  // rejected by the host
  }
}

}  // namespace

void unary(Unary op, const Loop<2>& loop, void* dst, const void* src, ElemType type, double alpha,
           double beta, Stream stream) {
  switch (type) {
    case ElemType::Float32:
      return unary_float<float>(op, loop, static_cast<float*>(dst), static_cast<const float*>(src),
                                static_cast<float>(alpha), static_cast<float>(beta), stream);
    case ElemType::Float64:
      return unary_float<double>(op, loop, static_cast<double*>(dst),
                                 static_cast<const double*>(src), alpha, beta, stream);
    case ElemType::Int64:
      return unary_int64(op, loop, static_cast<int64_t*>(dst), static_cast<const int64_t*>(src),
                         stream);
    case ElemType::Bool: {  // LogicalNot
      auto* d = static_cast<bool*>(dst);
      auto* s = static_cast<const bool*>(src);
      return map1(loop, d, s, stream, [] __device__(bool x) { return !x; });
    }
  }
}

}  // namespace tide::cuda::kern
