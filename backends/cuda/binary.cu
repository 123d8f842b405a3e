// binary: dst = f(a, b; alpha, beta), with the formulas of
// backends/cpu/binary.cpp. a and b share a dtype; comparisons and logical ops
// write bool. The *Grad ops are g * f'(x) with a = g and b = x (or b = y, the
// forward output, for the *FromOutput ones).
#include "backends/cuda/device.cuh"

namespace tide::cuda::kern {

namespace {

// Comparisons and logical ops, for any input type; false if op is not one.
template <typename T>
bool compare_or_logical(Binary op, const Loop<3>& loop, bool* d, const T* a, const T* b,
                        Stream st) {
  auto run = [&](auto f) {
    map2(loop, d, a, b, st, f);
    return true;
  };
  switch (op) {
    case Binary::Eq:
      return run([] __device__(T x, T y) { return x == y; });
    case Binary::Ne:
      return run([] __device__(T x, T y) { return x != y; });
    case Binary::Lt:
      return run([] __device__(T x, T y) { return x < y; });
    case Binary::Le:
      return run([] __device__(T x, T y) { return x <= y; });
    case Binary::Gt:
      return run([] __device__(T x, T y) { return x > y; });
    case Binary::Ge:
      return run([] __device__(T x, T y) { return x >= y; });
    case Binary::LogicalAnd:
      return run([] __device__(T x, T y) { return x != T(0) && y != T(0); });
    case Binary::LogicalOr:
      return run([] __device__(T x, T y) { return x != T(0) || y != T(0); });
    default:
      return false;
  }
}

template <typename T>
void binary_float(Binary op, const Loop<3>& loop, void* dst, const T* a, const T* b, T alpha,
                  T beta, Stream st) {
  if (compare_or_logical<T>(op, loop, static_cast<bool*>(dst), a, b, st)) return;
  T* d = static_cast<T*>(dst);
  auto run = [&](auto f) { map2(loop, d, a, b, st, f); };
  switch (op) {
    case Binary::Add:
      return run([] __device__(T x, T y) { return x + y; });
    case Binary::Sub:
      return run([] __device__(T x, T y) { return x - y; });
    case Binary::Mul:
      return run([] __device__(T x, T y) { return x * y; });
    case Binary::Div:
      return run([] __device__(T x, T y) { return x / y; });
    case Binary::Maximum:
      return run([] __device__(T x, T y) { return scalar::nan_max(x, y); });
    case Binary::Minimum:
      return run([] __device__(T x, T y) { return scalar::nan_min(x, y); });
    case Binary::Pow:
      return run([] __device__(T x, T y) { return fm::pow(x, y); });
    case Binary::ReluGrad:
      return run([] __device__(T g, T x) { return scalar::relu_grad(g, x); });
    case Binary::SiluGrad:
      return run([] __device__(T g, T x) {
        T s = sigmoid(x);
        return g * s * (T(1) + x * (T(1) - s));
      });
    case Binary::GeluErfGrad:
      return run([] __device__(T g, T x) {
        T cdf = T(0.5) * (T(1) + fm::erf(x * T(scalar::kSqrtHalf)));
        T pdf = T(scalar::kInvSqrt2Pi) * fm::exp(T(-0.5) * x * x);
        return g * (cdf + x * pdf);
      });
    case Binary::GeluTanhGrad:
      return run([] __device__(T g, T x) {
        T inner = T(scalar::kSqrt2OverPi) * (x + T(scalar::kGeluTanhKappa) * x * x * x);
        T t = fm::tanh(inner);
        T d_inner = T(scalar::kSqrt2OverPi) * (T(1) + T(3 * scalar::kGeluTanhKappa) * x * x);
        return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * d_inner);
      });
    case Binary::EluGrad:
      return run([alpha] __device__(T g, T x) { return x <= T(0) ? g * alpha * fm::exp(x) : g; });
    case Binary::SeluGrad:
      return run([] __device__(T g, T x) {
        return x <= T(0) ? g * T(scalar::kSeluScale * scalar::kSeluAlpha) * fm::exp(x)
                         : g * T(scalar::kSeluScale);
      });
    case Binary::SoftplusGrad:  // alpha = beta, beta = threshold
      return run([alpha, beta] __device__(T g, T x) {
        return x * alpha > beta ? g : g * sigmoid(x * alpha);
      });
    case Binary::SigmoidGradFromOutput:
      return run([] __device__(T g, T y) { return scalar::sigmoid_grad_from_output(g, y); });
    case Binary::TanhGradFromOutput:
      return run([] __device__(T g, T y) { return scalar::tanh_grad_from_output(g, y); });
    case Binary::SeluGradFromOutput:
      return run([] __device__(T g, T y) { return scalar::selu_grad_from_output(g, y); });
    default:
      return;  // comparisons handled above
  }
}

void binary_int64(Binary op, const Loop<3>& loop, void* dst, const int64_t* a, const int64_t* b,
                  Stream st) {
  using T = int64_t;
  using U = uint64_t;  // wrapping arithmetic (signed overflow is undefined)
  if (compare_or_logical<T>(op, loop, static_cast<bool*>(dst), a, b, st)) return;
  T* d = static_cast<T*>(dst);
  auto run = [&](auto f) { map2(loop, d, a, b, st, f); };
  switch (op) {
    case Binary::Add:
      return run([] __device__(T x, T y) { return T(U(x) + U(y)); });
    case Binary::Sub:
      return run([] __device__(T x, T y) { return T(U(x) - U(y)); });
    case Binary::Mul:
      return run([] __device__(T x, T y) { return T(U(x) * U(y)); });
    case Binary::Maximum:
      return run([] __device__(T x, T y) { return x > y ? x : y; });
    case Binary::Minimum:
      return run([] __device__(T x, T y) { return x < y ? x : y; });
    case Binary::Pow:
      return run([] __device__(T x, T y) { return scalar::int_pow(x, y); });
    default:
      return;  // rejected by the host
  }
}

// bool arithmetic as in PyTorch: add is "or", mul is "and".
void binary_bool(Binary op, const Loop<3>& loop, bool* d, const bool* a, const bool* b, Stream st) {
  if (compare_or_logical<bool>(op, loop, d, a, b, st)) return;
  switch (op) {
    case Binary::Add:
    case Binary::Maximum:
      return map2(loop, d, a, b, st, [] __device__(bool x, bool y) { return x || y; });
    case Binary::Mul:
    case Binary::Minimum:
      return map2(loop, d, a, b, st, [] __device__(bool x, bool y) { return x && y; });
    default:
      return;  // rejected by the host
  }
}

}  // namespace

void binary(Binary op, const Loop<3>& loop, void* dst, const void* a, const void* b, ElemType type,
            double alpha, double beta, Stream stream) {
  switch (type) {
    case ElemType::Float32:
      return binary_float<float>(op, loop, dst, static_cast<const float*>(a),
                                 static_cast<const float*>(b), static_cast<float>(alpha),
                                 static_cast<float>(beta), stream);
    case ElemType::Float64:
      return binary_float<double>(op, loop, dst, static_cast<const double*>(a),
                                  static_cast<const double*>(b), alpha, beta, stream);
    case ElemType::Int64:
      return binary_int64(op, loop, dst, static_cast<const int64_t*>(a),
                          static_cast<const int64_t*>(b), stream);
    case ElemType::Bool:
      return binary_bool(op, loop, static_cast<bool*>(dst), static_cast<const bool*>(a),
                         static_cast<const bool*>(b), stream);
  }
}

}  // namespace tide::cuda::kern
